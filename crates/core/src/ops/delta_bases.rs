//! Delta bases: for a piece of a tensor about to be stored, the newest earlier version of the same
//! tensor (same name, dtype and shape) the tenant already stores, found through recent snapshots whatever
//! file or snapshot it came from; and how deep a stored chunk already sits in its delta chain. The codec
//! itself (how a piece is stored against its base) is `format::delta`.

use crate::error::Result;
use crate::format::tree::NodeKind;
use crate::ids::{ChunkId, SnapshotId};
use crate::model::{self, Detected};
use crate::ops::diff::VaultFile;
use crate::ops::restore;
use crate::repo::Repo;
use std::collections::HashMap;
use std::path::Path;

/// How many recent snapshots the search looks through.
const CATALOG_SNAPSHOTS: usize = 8;

/// How deep a stored chunk sits in its delta chain (0 for a whole blob), from the index's base links alone:
/// no blob is read. `None` if a link is missing from the index or the chain is longer than any writer makes.
pub fn chain_depth(repo: &Repo, id: &ChunkId) -> Option<u8> {
    let mut depth = 0u8;
    // A catalog that cannot answer gives None too: the piece is then stored whole, never against a base.
    let mut loc = repo.lookup(id).ok().flatten()?;
    while let Some(base) = loc.base {
        depth = depth.checked_add(1)?;
        loc = repo.lookup(&base).ok().flatten()?;
    }
    Some(depth)
}

/// A tensor's identity for finding its previous version.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct TensorKey {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<u64>,
}

/// The tenant's stored tensors: for each (name, dtype, shape), the chunks of its newest stored version.
#[derive(Default)]
pub struct DeltaBases {
    tensors: HashMap<TensorKey, Vec<ChunkId>>,
}

fn is_model_name(path: &str) -> bool {
    let ext = Path::new(path).extension().and_then(|e| e.to_str()).unwrap_or_default().to_ascii_lowercase();
    matches!(ext.as_str(), "safetensors" | "gguf" | "pt" | "pth" | "ckpt" | "bin")
}

impl DeltaBases {
    /// Look through `snapshots` (newest first); the first version of each tensor found wins. Only model files
    /// whose tensors start and end on chunk boundaries (that is, stored with tensor-aligned chunking) count.
    /// Only their headers are read.
    pub fn build(repo: &Repo, snapshots: &[SnapshotId]) -> Result<DeltaBases> {
        let mut c = DeltaBases::default();
        for id in snapshots {
            let snap = repo.load_snapshot(id)?;
            for (path, node) in restore::list(repo, &snap.tree_id()?)? {
                let path = String::from_utf8_lossy(&path).into_owned();
                let NodeKind::File { chunks } = &node.kind else { continue };
                if !is_model_name(&path) || chunks.is_empty() {
                    continue;
                }
                let file = VaultFile::new(repo, chunks)?;
                let Detected::Model(layout) = model::detect(Path::new(&path), &file) else { continue };
                for t in layout.tensors.iter().filter(|t| !t.is_empty()) {
                    let Some(cs) = file.chunks_of(t.start, t.end) else { continue };
                    let key = TensorKey { name: t.name.clone(), dtype: t.dtype.clone(), shape: t.shape.clone() };
                    c.tensors.entry(key).or_insert_with(|| cs.iter().map(|x| x.1).collect());
                }
            }
        }
        Ok(c)
    }

    /// The newest snapshots of the tenant, any host or path, newest first.
    pub fn recent(repo: &Repo) -> Result<Vec<SnapshotId>> {
        let (list, _) = repo.snapshots()?;
        let mut all: Vec<_> = list.into_iter().collect();
        all.sort_by(|a, b| b.1.time.cmp(&a.1.time));
        Ok(all.into_iter().take(CATALOG_SNAPSHOTS).map(|(id, _)| id).collect())
    }

    pub fn get(&self, key: &TensorKey) -> Option<&[ChunkId]> {
        self.tensors.get(key).map(Vec::as_slice)
    }
}
