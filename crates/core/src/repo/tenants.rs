//! Tenants: the unit of isolation. Each has its own keys (`tenants/<t>/keys/`), so its own ChunkIds and dedup
//! domain, and its own prefix in every store. Local use has the one tenant `default`; the server creates more.
//!
//! `_system` is a tenant no user can name: its keys seal the server's own objects under `system/` (tenant
//! registry, token hashes, audit segments), so `key rotate` rewraps them like any tenant's keys.

use crate::crypto::SecretKey;
use crate::error::{Error, Result};
use crate::format::object::Kind;
use crate::format::tenantkey;
use crate::repo::Repo;

/// The tenant whose keys seal the server's objects under `system/`.
pub const SYSTEM_TENANT: &str = "_system";

/// Tenant names: 1-63 of `a-z 0-9 -`, starting with a letter or digit (safe as a path segment and a label).
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

fn check_name(name: &str) -> Result<()> {
    if name == SYSTEM_TENANT || valid_name(name) {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "tenant name {name:?}: use 1-63 of a-z, 0-9 and '-', starting with a letter or digit"
        )))
    }
}

impl Repo {
    /// The same vault, opened as another tenant: its keys and index are loaded, nothing else is shared but
    /// the stores and the master key. A tenant without keys (never created, or shredded) is NotFound.
    pub fn for_tenant(&self, tenant: &str) -> Result<Repo> {
        check_name(tenant)?;
        let mut r = self.sibling(tenant)?;
        r.load_tenant_keys()?;
        r.load_index()?;
        Ok(r)
    }

    /// The tenant names that have keys on the stores (`_system` excluded).
    pub fn tenant_names(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = self
            .list_meta("tenants")?
            .iter()
            .filter_map(|p| p.strip_prefix("tenants/")?.split_once("/keys/").map(|(t, _)| t.to_string()))
            .filter(|t| t != SYSTEM_TENANT)
            .collect();
        names.dedup();
        Ok(names)
    }

    /// Give a new tenant its first key. Refuses a name that already has keys.
    pub fn create_tenant(&self, tenant: &str) -> Result<()> {
        check_name(tenant)?;
        if !self.list_meta(&format!("tenants/{tenant}/keys"))?.is_empty() {
            return Err(Error::Usage(format!("tenant {tenant} exists already")));
        }
        let secret = tenantkey::TenantSecret { tk: SecretKey::random(), id_seed: SecretKey::random() };
        let r = self.sibling(tenant)?;
        self.write_meta(&r.tenant_key_path(1), &tenantkey::wrap(&self.vault_id, &self.mk, tenant, 1, &secret))
    }

    /// Crypto-shred a tenant: first delete every version of its keys on every store (from then on its data
    /// cannot be decrypted by anyone), then everything under its prefix. Needs every store up, so no copy of
    /// a key survives on a store that was away. Returns (key objects, other objects) deleted.
    pub fn shred_tenant(&self, tenant: &str) -> Result<(u64, u64)> {
        check_name(tenant)?;
        if tenant == SYSTEM_TENANT {
            return Err(Error::Usage("the system tenant cannot be shredded".into()));
        }
        // Every store must be up before the first key goes: a key left on a store that was away would
        // keep the tenant's data readable.
        self.require_all_stores("tenant delete --shred")?;
        let (mut keys, mut other) = (0, 0);
        for pass in ["keys", ""] {
            let prefix = if pass.is_empty() { format!("tenants/{tenant}") } else { format!("tenants/{tenant}/keys") };
            for (i, s) in self.stores().iter().enumerate() {
                let names = s.list(&prefix).inspect_err(|e| self.note_failure(i, e)).map_err(|e| {
                    Error::Usage(format!("shredding tenant {tenant} needs every store up; {}: {e}", s.url()))
                })?;
                for n in names {
                    s.delete(&n)?;
                    if pass == "keys" {
                        keys += 1;
                    } else {
                        other += 1;
                    }
                }
            }
        }
        // The catalog forgets the tenant too: its ids and locations name nothing any more.
        self.catalog.for_tenant(&self.config.vault_id, tenant)?.clear()?;
        Ok((keys, other))
    }

    /// Write a sealed metadata object of this tenant (for the system tenant: registry, tokens, audit).
    pub fn write_sealed(&self, kind: Kind, path: &str, plain: &[u8]) -> Result<()> {
        self.write_meta(path, &self.seal_object(kind, path, plain))
    }

    /// Read and open a sealed metadata object of this tenant.
    pub fn read_sealed(&self, kind: Kind, path: &str) -> Result<Vec<u8>> {
        self.read_meta(path, |b| self.open_object(kind, path, b))
    }

    /// The system tenant's view of the vault, creating its key on first use.
    pub fn system(&self) -> Result<Repo> {
        match self.for_tenant(SYSTEM_TENANT) {
            Err(Error::NotFound { .. }) => {
                self.create_tenant(SYSTEM_TENANT)?;
                self.for_tenant(SYSTEM_TENANT)
            }
            r => r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::KdfParams;
    use crate::format::pack::BlobType;
    use crate::ops::ingest::{self, Incoming};
    use crate::repo::InitOptions;

    fn vault(dir: &tempfile::TempDir) -> Repo {
        let opts = InitOptions { kdf: KdfParams { m_kib: 64, t: 1, p: 1 }, ..Default::default() };
        Repo::init(dir.path().join("v").to_str().unwrap(), b"pw", &opts).unwrap()
    }

    /// Store one blob in a tenant the way the server does; returns its id.
    fn put(repo: &mut Repo, data: &[u8]) -> crate::ids::ChunkId {
        let id = repo.current_keys().chunk_id(data);
        let items = vec![Incoming { blob_type: BlobType::Data, id, float: None, data: data.to_vec() }];
        let prepared = ingest::prepare(repo, items).unwrap();
        ingest::store(repo, prepared).unwrap();
        id
    }

    #[test]
    fn tenants_have_their_own_ids_and_cannot_read_each_other() {
        let d = tempfile::tempdir().unwrap();
        let base = vault(&d);
        base.create_tenant("a").unwrap();
        base.create_tenant("b").unwrap();
        assert!(base.create_tenant("a").is_err(), "a tenant is created once");
        assert!(base.create_tenant("../x").is_err() && base.create_tenant("A").is_err(), "names are checked");
        assert!(base.for_tenant("Bad/Name").is_err());
        let (mut a, b) = (base.for_tenant("a").unwrap(), base.for_tenant("b").unwrap());
        let id = put(&mut a, b"tenant a's weights");
        assert_ne!(b.current_keys().chunk_id(b"tenant a's weights"), id, "the same bytes get another id in b");
        assert!(b.lookup(&id).unwrap().is_none() && b.read_blob(&id).is_err(), "b cannot see a's chunk");
        assert_eq!(base.for_tenant("a").unwrap().read_blob(&id).unwrap(), b"tenant a's weights");
        assert_eq!(base.tenant_names().unwrap(), vec!["a".to_string(), "b".to_string(), "default".to_string()]);
    }

    #[test]
    fn a_shredded_tenant_cannot_be_read_with_any_remaining_key() {
        let d = tempfile::tempdir().unwrap();
        let base = vault(&d);
        base.create_tenant("b").unwrap();
        let mut b = base.for_tenant("b").unwrap();
        let id = put(&mut b, &vec![7u8; 100_000]);
        let loc = b.lookup(&id).unwrap().unwrap();
        // Keep a copy of b's pack and index bytes, as an attacker who copied the disk would.
        let root = d.path().join("v");
        let copies: Vec<(std::path::PathBuf, Vec<u8>)> = walk(&root.join("tenants/b"))
            .into_iter()
            .filter(|p| !p.to_string_lossy().contains("/keys/"))
            .map(|p| {
                let bytes = std::fs::read(&p).unwrap();
                (p, bytes)
            })
            .collect();
        assert!(!copies.is_empty());
        let (keys, _) = base.shred_tenant("b").unwrap();
        assert!(keys >= 1);
        assert!(walk(&root.join("tenants/b")).is_empty(), "nothing of b is left on the store");
        assert!(matches!(base.for_tenant("b"), Err(Error::NotFound { .. })), "b has no keys any more");
        // Put the copied bytes back: no remaining key (default's, the system tenant's) opens them.
        for (p, bytes) in &copies {
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
        }
        let sys = base.system().unwrap();
        for other in [&base, &sys] {
            let mut as_b = other.sibling("b").unwrap();
            as_b.keys = other.keys.clone();
            // As a fresh process would find it: the catalog has not seen b's files (the last pass wrote one).
            as_b.catalog.clear().unwrap();
            let loaded = as_b.load_index();
            assert!(loaded.is_err() || !as_b.index_errors.is_empty(), "b's index opened with another tenant's key");
            assert!(as_b.lookup(&id).unwrap().is_none());
            // Even told exactly where the blob is, another key cannot open it.
            as_b.write_index(vec![(id, loc)]).unwrap();
            assert!(as_b.read_blob(&id).is_err(), "b's blob decrypted with another tenant's key");
        }
    }

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    out.extend(walk(&p));
                } else {
                    out.push(p);
                }
            }
        }
        out
    }
}
