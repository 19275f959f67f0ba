//! Key rotation: a new master key (`key rotate`) and a new tenant key version (`tenant rekey`), with the
//! optional rewrite of old data under the new version.
//!
//! Rotating the master key rewraps every tenant key version and makes new key files; data is untouched. The
//! config, MAC'd by the master key, is the commit point: before it is rewritten the old master key is the
//! vault's, after it the new one is, and tenant key objects are named by the master key that wraps them, so
//! both sets coexist until the old one is deleted at the end. An interrupted rotation leaves a vault that
//! opens either way.

use crate::crypto::{KdfParams, SecretKey};
use crate::error::Result;
use crate::format::index::Location;
use crate::format::keyfile::KeyFile;
use crate::format::object;
use crate::format::tenantkey::{self, TenantSecret};
use crate::ids::{ChunkId, PackId};
use crate::repo::Repo;
use std::collections::{BTreeMap, BTreeSet, HashMap};

#[derive(Debug, Default, serde::Serialize)]
pub struct RotateReport {
    pub new_key_files: Vec<String>,
    pub removed_key_files: Vec<String>,
    pub tenant_keys_rewrapped: u64,
}

#[derive(Debug, Default, serde::Serialize)]
pub struct RekeyReport {
    pub tenant: String,
    pub new_version: u32,
    pub packs_rewritten: u64,
    pub snapshots_rewritten: u64,
    pub bucket_records_rewritten: u64,
    pub old_versions_removed: Vec<u32>,
    pub seconds: f64,
}

impl Repo {
    /// Every tenant key object wrapped by the current master key: (tenant, version, path).
    fn tenant_key_objects(&self) -> Result<Vec<(String, u32, String)>> {
        let mk_id = self.mk_id();
        let mut out = Vec::new();
        for name in self.list_meta("tenants")? {
            let parts: Vec<&str> = name.split('/').collect();
            if let ["tenants", tenant, "keys", file] = parts.as_slice() {
                if let Some((v, id)) = file.split_once('.') {
                    if let (Ok(v), true) = (v.parse::<u32>(), id == mk_id) {
                        out.push((tenant.to_string(), v, name.clone()));
                    }
                }
            }
        }
        Ok(out)
    }

    fn tenant_secret(&self, tenant: &str, version: u32, path: &str) -> Result<TenantSecret> {
        self.read_meta(path, |b| tenantkey::unwrap(&self.vault_id, &self.mk, tenant, version, b, path))
    }

    /// Replace the master key. `passphrases` are those whose key files survive (each gets a new key file);
    /// the first must be the one this session opened with. Every other key file is removed.
    pub fn rotate_master_key(&mut self, passphrases: &[Vec<u8>], kdf: KdfParams) -> Result<RotateReport> {
        self.require_all_stores("key rotate")?;
        let mut report = RotateReport::default();
        let old_key_files = self.key_files()?;
        let old_tenant_keys = self.tenant_key_objects()?; // wrapped by the current master key
        let new_mk = SecretKey::random();
        // New tenant key objects, under names the new master key's id marks.
        let mut rewrapped = Vec::new();
        for (tenant, v, path) in &old_tenant_keys {
            let secret = self.tenant_secret(tenant, *v, path)?;
            rewrapped.push((tenant.clone(), *v, tenantkey::wrap(&self.vault_id, &new_mk, tenant, *v, &secret)));
        }
        let old_mk = std::mem::replace(&mut self.mk, new_mk);
        let new_mk_id = self.mk_id();
        for (tenant, v, bytes) in &rewrapped {
            self.write_meta(&format!("tenants/{tenant}/keys/{v}.{new_mk_id}"), bytes)?;
            report.tenant_keys_rewrapped += 1;
        }
        // New key files for the passphrases that stay.
        let (user, host) = (std::env::var("USER").unwrap_or_else(|_| "unknown".into()), crate::repo::hostname());
        let mut first_id = None;
        for p in passphrases {
            let kf = KeyFile::create(&self.vault_id, &self.mk, p, kdf, &host, &user)?;
            self.write_meta(&format!("keys/{}", kf.id), &kf.to_bytes())?;
            first_id.get_or_insert(kf.id.clone());
            report.new_key_files.push(kf.id);
        }
        // Commit: the config now authenticates under the new master key.
        self.save_config()?;
        crate::fault::point("rotate-after-config");
        // Clean up what belonged to the old master key.
        for kf in &old_key_files {
            self.delete_meta(&format!("keys/{}", kf.id))?;
            report.removed_key_files.push(kf.id.clone());
        }
        // Every tenant key object not wrapped by the new master key goes, including leftovers of an
        // earlier rotation that was interrupted after its commit point.
        for name in self.list_meta("tenants")? {
            let parts: Vec<&str> = name.split('/').collect();
            if let ["tenants", _, "keys", file] = parts.as_slice() {
                if file.split_once('.').is_none_or(|(_, id)| id != new_mk_id) {
                    self.delete_meta(&name)?;
                }
            }
        }
        drop(old_mk);
        if let Some(id) = first_id {
            self.key_id = id;
        }
        Ok(report)
    }

    /// Start a new key version for this tenant: new writes use it; old data stays readable under the old
    /// versions. With `rewrite`, every pack, index file and snapshot is re-encrypted under the new version
    /// and the old versions are deleted once nothing uses them. Rerunning a rewrite resumes it.
    pub fn rekey(&mut self, new_version: bool, rewrite: bool, report_stale: &dyn Fn(&str)) -> Result<RekeyReport> {
        let start = std::time::Instant::now();
        self.require_all_stores("tenant rekey")?;
        if rewrite {
            self.require_bound_catalog()?;
        }
        let mut report = RekeyReport { tenant: self.tenant.clone(), ..Default::default() };
        if new_version {
            let current = self.current_keys().version;
            let path = self.tenant_key_path(current);
            let old = self.tenant_secret(&self.tenant.clone(), current, &path)?;
            let v = current + 1;
            let secret = TenantSecret { tk: SecretKey::random(), id_seed: old.id_seed };
            self.write_meta(
                &self.tenant_key_path(v),
                &tenantkey::wrap(&self.vault_id, &self.mk, &self.tenant.clone(), v, &secret),
            )?;
            self.keys.insert(v, crate::crypto::TenantKeys::derive(v, &secret.tk, &secret.id_seed));
        }
        report.new_version = self.current_keys().version;
        if !rewrite {
            report.seconds = start.elapsed().as_secs_f64();
            return Ok(report);
        }
        let _lock = self.lock(true, "tenant rekey --rewrite", report_stale)?;
        let current = self.current_keys().version;
        // Every pack on the stores under an older version goes: the blobs the index uses from them are
        // re-encrypted first (an interrupted earlier run may have left old packs the index no longer names).
        let mut keep: HashMap<ChunkId, Location> = HashMap::new();
        self.scan_index(&mut |id, l| {
            keep.insert(id, l);
            Ok(())
        })?;
        let inventory = self.shard_inventory()?;
        let mut old_packs: BTreeSet<PackId> = BTreeSet::new();
        for p in inventory.keys() {
            if self.pack_key_version(p)? < current {
                old_packs.insert(*p);
            }
        }
        let referenced: BTreeSet<PackId> = keep.values().map(|l| l.pack).collect();
        let to_repack: Vec<PackId> = old_packs.intersection(&referenced).copied().collect();
        crate::ops::prune::repack_blobs(self, &to_repack, &mut keep)?;
        report.packs_rewritten = to_repack.len() as u64;
        // One index under the new version, then the old index files and packs go (prune's order).
        let index_names = self.index_names()?;
        let entries: Vec<(ChunkId, Location)> = keep.into_iter().collect();
        let new_index = self.write_index_file(&entries)?;
        crate::fault::point("rekey-after-index");
        let old: Vec<String> = index_names.iter().filter(|n| **n != new_index).cloned().collect();
        self.delete_index_files(&old)?;
        for p in &old_packs {
            self.delete_pack(p, inventory.get(p).map(Vec::as_slice).unwrap_or(&[]))?;
        }
        // Snapshots: re-sealed in place under the new version.
        for id in self.snapshot_ids()? {
            let path = self.snapshot_path(&id);
            let bytes = self.read_meta(&path, |b| Ok(b.to_vec()))?;
            let (_, version, _, _) = object::parse(&bytes).map_err(|e| e.in_object(&path))?;
            if version < current {
                let snap = self.load_snapshot(&id)?;
                self.resave_snapshot(&id, &snap)?;
                report.snapshots_rewritten += 1;
            }
        }
        report.bucket_records_rewritten = crate::repo::buckets::reseal(self)?;
        // Old versions are deleted only when nothing uses them any more.
        let mut in_use: BTreeSet<u32> = BTreeSet::new();
        for p in self.list_packs()? {
            in_use.insert(self.pack_key_version(&p)?);
        }
        for name in self.index_names()?.into_iter().chain(self.snapshot_ids()?.iter().map(|i| self.snapshot_path(i))) {
            let bytes = self.read_meta(&name, |b| Ok(b.to_vec()))?;
            in_use.insert(object::parse(&bytes).map_err(|e| e.in_object(&name))?.1);
        }
        let versions: Vec<u32> = self.keys.keys().copied().filter(|v| *v < current && !in_use.contains(v)).collect();
        for v in versions {
            self.delete_meta(&self.tenant_key_path(v))?;
            self.keys.remove(&v);
            report.old_versions_removed.push(v);
        }
        report.seconds = start.elapsed().as_secs_f64();
        Ok(report)
    }

    /// The tenant key versions of the tenant's objects, for `key list` and tests: version -> count of packs.
    pub fn pack_versions(&self) -> Result<BTreeMap<u32, u64>> {
        let mut out = BTreeMap::new();
        for p in self.list_packs()? {
            *out.entry(self.pack_key_version(&p)?).or_default() += 1;
        }
        Ok(out)
    }
}
