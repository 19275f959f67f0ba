//! Metadata objects: sealed, small, and written to every store with a quorum; read from the first store that
//! has them. Here too is the set of stores that are down for this command, which every store call honours.

use super::{Repo, MAX_META_PLAIN};
use crate::error::{Error, Result};
use crate::format::object::{self, Kind};

impl Repo {
    pub fn write_meta(&self, path: &str, bytes: &[u8]) -> Result<()> {
        let mut written = 0;
        let mut first_err = None;
        for (i, s) in self.stores.iter().enumerate() {
            if self.is_down(i) {
                continue;
            }
            match s.put(path, bytes) {
                Ok(()) => written += 1,
                Err(e) => {
                    self.note_failure(i, &e);
                    first_err.get_or_insert(e);
                }
            }
        }
        // Metadata lives on every store; enough copies to outlast m store losses make the write good,
        // and `repair` copies it to the stores that missed it.
        let quorum = (self.config.redundancy.m as usize + 1).min(self.stores.len());
        if written < quorum {
            return Err(first_err.unwrap_or_else(|| Error::Unavailable {
                what: path.to_string(),
                reason: "no store is up to write to".into(),
            }));
        }
        Ok(())
    }

    pub fn read_meta<T>(&self, path: &str, parse: impl Fn(&[u8]) -> Result<T>) -> Result<T> {
        let mut first_err = None;
        for (i, s) in self.stores.iter().enumerate() {
            if self.is_down(i) {
                continue;
            }
            match s.get(path).inspect_err(|e| self.note_failure(i, e)).and_then(|b| parse(&b)) {
                Ok(v) => return Ok(v),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.unwrap_or_else(|| Error::not_found(path.to_string())))
    }

    pub fn list_meta(&self, prefix: &str) -> Result<Vec<String>> {
        let mut all = std::collections::BTreeSet::new();
        let mut listed = 0;
        let mut first_err = None;
        for (i, s) in self.stores.iter().enumerate() {
            if self.is_down(i) {
                continue;
            }
            match s.list(prefix) {
                Ok(names) => {
                    listed += 1;
                    all.extend(names.into_iter().filter(|n| !n.contains(".tmp-")));
                }
                Err(e) => {
                    self.note_failure(i, &e);
                    first_err.get_or_insert(e);
                }
            }
        }
        if listed == 0 {
            return Err(first_err.unwrap_or_else(|| Error::Unavailable {
                what: format!("listing {prefix}"),
                reason: "no store is up".into(),
            }));
        }
        Ok(all.into_iter().collect())
    }

    pub fn delete_meta(&self, path: &str) -> Result<()> {
        for (i, s) in self.stores.iter().enumerate() {
            if !self.is_down(i) {
                s.delete(path).inspect_err(|e| self.note_failure(i, e))?;
            }
        }
        Ok(())
    }

    /// A store that failed with anything but "no such object" is down for the rest of this command.
    pub(crate) fn note_failure(&self, store: usize, err: &Error) {
        if let Error::Store { source, .. } = err {
            self.down.lock().expect("down set").entry(store).or_insert_with(|| source.to_string());
        }
    }

    pub fn is_down(&self, store: usize) -> bool {
        self.down.lock().expect("down set").contains_key(&store)
    }

    /// Why a store is down ("" if it is not): the first failure this session saw on it.
    pub(crate) fn down_reason(&self, store: usize) -> String {
        self.down.lock().expect("down set").get(&store).cloned().unwrap_or_default()
    }

    /// Which stores are down, why, and what brings each back, for a message: a local directory that is gone
    /// is named with what to create (an empty one will do: `repair` fills it).
    pub(crate) fn down_stores_advice(&self) -> String {
        let mut parts = Vec::new();
        for (i, s) in self.stores.iter().enumerate().filter(|(i, _)| self.is_down(*i)) {
            let id = &self.config.stores[i].id;
            let advice = match s.url().strip_prefix("fs:") {
                Some(dir) if !std::path::Path::new(dir).is_dir() => format!(
                    "its directory {dir} does not exist: if the disk is mounted, create it (`mkdir -p {dir}`; an \
                     empty one will do) and run `mvault repair` again"
                ),
                _ => "bring it back (or replace it with `mvault store add` and `mvault store remove`) and run \
                      `mvault repair` again"
                    .to_string(),
            };
            parts.push(format!("store {id} ({}) is down ({}); {advice}", s.url(), self.down_reason(i)));
        }
        if parts.is_empty() {
            "every store that could take it already holds a shard of this pack; add a store".to_string()
        } else {
            parts.join("; ")
        }
    }

    pub(crate) fn open_object(&self, kind: Kind, path: &str, bytes: &[u8]) -> Result<Vec<u8>> {
        object::open(&self.vault_id, &self.tenant, |v| self.keys.get(&v), kind, path, bytes, MAX_META_PLAIN)
    }

    pub(crate) fn seal_object(&self, kind: Kind, path: &str, plain: &[u8]) -> Vec<u8> {
        object::seal(&self.vault_id, &self.tenant, self.current_keys(), kind, path, plain)
    }

    /// Temporary objects on the stores that are up: the `NAME.tmp-RANDOM` files a writer renames over its
    /// object once written, left behind by a writer that was killed (or still being written).
    pub fn temporaries(&self) -> Result<Vec<Temporary>> {
        let now = crate::repo::now();
        let mut out = Vec::new();
        for (i, s) in self.stores.iter().enumerate() {
            if self.is_down(i) {
                continue;
            }
            for (name, size) in s.list_sized("")?.into_iter().filter(|(n, _)| n.contains(".tmp-")) {
                let age = match s.modified(&name) {
                    Ok(t) => t.map(|t| now.duration_since(t).unwrap_or_default()),
                    Err(Error::NotFound { .. }) => continue, // renamed or removed meanwhile
                    Err(e) => return Err(e),
                };
                out.push(Temporary { store: i, name, size, age });
            }
        }
        Ok(out)
    }

    /// Remove the temporaries of interrupted writes: those older than the lock expiry, which no live writer
    /// can still own (it would have refreshed its lock, and no write lasts that long). Younger ones may be
    /// writes in flight and stay. Returns the number removed and their bytes.
    pub fn sweep_temporaries(&self) -> Result<(u64, u64)> {
        let (mut n, mut bytes) = (0, 0);
        for t in self.temporaries()?.into_iter().filter(Temporary::abandoned) {
            self.stores[t.store].delete(&t.name)?;
            n += 1;
            bytes += t.size;
        }
        Ok((n, bytes))
    }

    /// Every metadata object name (what each store holds a copy of).
    pub fn metadata_names(&self) -> Result<Vec<String>> {
        let mut names = self.list_meta("keys")?;
        for sub in ["keys", "index", "snapshots", "degraded"] {
            names.extend(self.list_meta(&format!("tenants/{}/{sub}", self.tenant))?);
        }
        Ok(names)
    }

    /// Fail unless every store is up: deletions must reach every copy, or `repair` would copy the deleted
    /// object back from the store that missed the delete.
    pub fn require_all_stores(&self, what: &str) -> Result<()> {
        for (i, s) in self.stores.iter().enumerate() {
            if let Err(e) = s.list("keys") {
                self.note_failure(i, &e);
            }
            if self.is_down(i) {
                return Err(Error::Usage(format!(
                    "{what} needs every store up so deletions reach every copy; store {} ({}) is down",
                    self.config.stores[i].id,
                    s.url()
                )));
            }
        }
        Ok(())
    }

    /// Write the config (MAC'd by the master key) to every store that is up.
    pub fn save_config(&self) -> Result<()> {
        self.write_meta("config", &self.config.to_bytes(&self.mk))
    }
}

/// A temporary object on a store.
#[derive(Debug)]
pub struct Temporary {
    pub store: usize,
    pub name: String,
    pub size: u64,
    /// How long since it was last written (None if the store does not say).
    pub age: Option<std::time::Duration>,
}

impl Temporary {
    /// Older than the lock expiry: a killed writer's, which `prune` and `repair` remove.
    pub fn abandoned(&self) -> bool {
        self.age.is_some_and(|a| a > super::locks::TTL)
    }
}
