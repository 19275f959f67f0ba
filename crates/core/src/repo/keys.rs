//! The vault's keys as `Repo` sees them: key files (add, remove, change passphrase), the master key's id,
//! and the tenant keys, loaded per version.

use super::{user_and_host, Repo};
use crate::crypto::{KdfParams, TenantKeys};
use crate::error::{Error, Result};
use crate::format::keyfile::KeyFile;
use crate::format::tenantkey;

impl Repo {
    /// Short id of the master key, in tenant key object names, so objects wrapped by a previous master key
    /// (during `key rotate`) sit beside the current ones without being confused with them.
    pub fn mk_id(&self) -> String {
        hex::encode(&self.mk.derive(&[], "mvault/v1/mk-id").expose()[..8])
    }

    pub fn tenant_key_path(&self, version: u32) -> String {
        format!("tenants/{}/keys/{version}.{}", self.tenant, self.mk_id())
    }

    pub(crate) fn load_tenant_keys(&mut self) -> Result<()> {
        let prefix = format!("tenants/{}/keys", self.tenant);
        let mk_id = self.mk_id();
        for name in self.list_meta(&prefix)? {
            let Some((v, id)) = name.rsplit('/').next().and_then(|f| f.split_once('.')) else { continue };
            let Ok(v) = v.parse::<u32>() else { continue };
            if id != mk_id {
                continue; // wrapped by another (previous) master key
            }
            let secret =
                self.read_meta(&name, |b| tenantkey::unwrap(&self.vault_id, &self.mk, &self.tenant, v, b, &name))?;
            self.keys.insert(v, TenantKeys::derive(v, &secret.tk, &secret.id_seed));
        }
        if self.keys.is_empty() {
            return Err(Error::not_found(format!("{prefix}: tenant {} has no keys", self.tenant)));
        }
        Ok(())
    }

    /// The keys new data is written under.
    pub fn current_keys(&self) -> &TenantKeys {
        self.keys.values().next_back().expect("a tenant always has a key")
    }

    pub fn keys_for(&self, version: u32) -> Option<&TenantKeys> {
        self.keys.get(&version)
    }

    pub fn key_files(&self) -> Result<Vec<KeyFile>> {
        let mut out = Vec::new();
        for name in self.list_meta("keys")? {
            out.push(self.read_meta(&name, |b| KeyFile::parse(b).map_err(|e| e.in_object(&name)))?);
        }
        Ok(out)
    }

    pub fn add_key(&self, passphrase: &[u8], kdf: KdfParams) -> Result<KeyFile> {
        let (user, host) = user_and_host();
        let kf = KeyFile::create(&self.vault_id, &self.mk, passphrase, kdf, &host, &user)?;
        self.write_meta(&format!("keys/{}", kf.id), &kf.to_bytes())?;
        Ok(kf)
    }

    pub fn remove_key(&self, id_prefix: &str) -> Result<String> {
        let keys = self.key_files()?;
        let matches: Vec<&KeyFile> = keys.iter().filter(|k| k.id.starts_with(id_prefix)).collect();
        let kf = match matches.as_slice() {
            [] => return Err(Error::not_found(format!("key {id_prefix}"))),
            [k] => *k,
            _ => return Err(Error::Usage(format!("key prefix {id_prefix:?} is ambiguous"))),
        };
        if kf.id == self.key_id {
            return Err(Error::Usage(format!("key {} is the one this command was opened with; open with another key to remove it, or use `key passwd`", kf.id)));
        }
        self.delete_meta(&format!("keys/{}", kf.id))?;
        Ok(kf.id.clone())
    }

    /// Replace the key file in use with one under a new passphrase. The new file is written before the old
    /// one is removed, so a crash in between leaves both, never neither.
    pub fn change_passphrase(&mut self, new_passphrase: &[u8], kdf: KdfParams) -> Result<KeyFile> {
        let kf = self.add_key(new_passphrase, kdf)?;
        let old = std::mem::replace(&mut self.key_id, kf.id.clone());
        self.delete_meta(&format!("keys/{old}"))?;
        Ok(kf)
    }
}
