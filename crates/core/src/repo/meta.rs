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

    pub(crate) fn open_object(&self, kind: Kind, path: &str, bytes: &[u8]) -> Result<Vec<u8>> {
        object::open(&self.vault_id, &self.tenant, |v| self.keys.get(&v), kind, path, bytes, MAX_META_PLAIN)
    }

    pub(crate) fn seal_object(&self, kind: Kind, path: &str, plain: &[u8]) -> Vec<u8> {
        object::seal(&self.vault_id, &self.tenant, self.current_keys(), kind, path, plain)
    }

    /// Leftover temporary objects of killed writers.
    pub fn list_temporaries(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for (i, s) in self.stores.iter().enumerate() {
            if !self.is_down(i) {
                out.extend(s.list("")?.into_iter().filter(|n| n.contains(".tmp-")).map(|n| format!("{}/{n}", s.url())));
            }
        }
        Ok(out)
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
