//! Snapshots and trees: saving, re-sealing, loading, listing and finding snapshots by id prefix or `latest`.

use super::{Repo, SnapshotList};
use crate::error::{Error, Result};
use crate::format::object::Kind;
use crate::format::snapshot::Snapshot;
use crate::format::tree;
use crate::ids::{ChunkId, SnapshotId};

impl Repo {
    pub fn load_tree(&self, id: &ChunkId) -> Result<Vec<tree::Node>> {
        tree::parse(&self.read_blob(id)?).map_err(|e| e.in_object(&format!("tree {id}")))
    }

    pub fn snapshot_path(&self, id: &SnapshotId) -> String {
        format!("tenants/{}/snapshots/{id}", self.tenant)
    }

    pub fn save_snapshot(&self, snap: &Snapshot) -> Result<SnapshotId> {
        let id = SnapshotId::random();
        let path = self.snapshot_path(&id);
        self.write_meta(&path, &self.seal_object(Kind::Snapshot, &path, &snap.to_bytes()))?;
        Ok(id)
    }

    /// Seal a snapshot again under the current key version, at its own path (tenant rekey).
    pub fn resave_snapshot(&self, id: &SnapshotId, snap: &Snapshot) -> Result<()> {
        let path = self.snapshot_path(id);
        self.write_meta(&path, &self.seal_object(Kind::Snapshot, &path, &snap.to_bytes()))
    }

    pub fn load_snapshot(&self, id: &SnapshotId) -> Result<Snapshot> {
        let path = self.snapshot_path(id);
        self.read_meta(&path, |b| {
            Snapshot::parse(&self.open_object(Kind::Snapshot, &path, b)?).map_err(|e| e.in_object(&path))
        })
    }

    /// Every snapshot id on the stores, sorted.
    pub fn snapshot_ids(&self) -> Result<Vec<SnapshotId>> {
        let names = self.list_meta(&format!("tenants/{}/snapshots", self.tenant))?;
        Ok(names.iter().filter_map(|n| n.rsplit('/').next()).filter_map(|h| SnapshotId::from_hex(h).ok()).collect())
    }

    /// All readable snapshots, oldest first, and the errors of those that are not.
    pub fn snapshots(&self) -> Result<(SnapshotList, Vec<Error>)> {
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        for id in self.snapshot_ids()? {
            match self.load_snapshot(&id) {
                Ok(s) => ok.push((id, s)),
                Err(e) => bad.push(e),
            }
        }
        ok.sort_by(|a, b| a.1.system_time().cmp(&b.1.system_time()).then(a.0.cmp(&b.0)));
        Ok((ok, bad))
    }

    /// Resolve `latest` or a unique id prefix.
    pub fn find_snapshot(&self, spec: &str) -> Result<(SnapshotId, Snapshot)> {
        if spec == "latest" {
            let (all, _) = self.snapshots()?;
            return all
                .into_iter()
                .next_back()
                .ok_or_else(|| Error::not_found("latest snapshot: the vault has no snapshots"));
        }
        let spec_l = spec.to_ascii_lowercase();
        let matches: Vec<SnapshotId> =
            self.snapshot_ids()?.into_iter().filter(|id| id.to_hex().starts_with(&spec_l)).collect();
        match matches.as_slice() {
            [] => Err(Error::not_found(format!("snapshot {spec}"))),
            [id] => Ok((*id, self.load_snapshot(id)?)),
            _ => Err(Error::Usage(format!("snapshot prefix {spec:?} is ambiguous: {} snapshots match", matches.len()))),
        }
    }
}
