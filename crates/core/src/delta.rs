//! Lossless checkpoint deltas (codec 3). Fine-tuning moves nearly every weight a little, so chunk dedup finds
//! nothing between two checkpoints; but a weight and its successor share sign, exponent and the top mantissa
//! bits, so their XOR is mostly zero bits, which the byte-grouped codec shrinks far below the weight itself.
//!
//! A piece of a tensor is stored as its XOR with the same piece of the newest tensor of the same name, dtype
//! and shape that the tenant already stored (the catalog below finds it, whatever file or snapshot it came
//! from), when that is smaller than storing it whole. The ChunkId stays the hash of the piece itself, so dedup,
//! verification and restore see ordinary chunks. Chains are bounded: a delta against a delta is one level
//! deeper, and past the configured depth the piece is stored whole, so a read never follows more than that
//! many bases. The index records each delta's base (index version 2), so prune keeps bases alive.
//!
//! Encoded form: `u8 depth (>= 1) | ChunkId base | u8 inner codec (0 none, 1 zstd, 2 grouped) | inner bytes`,
//! where the inner codec decodes to `piece XOR base` (same length).

use crate::diff::VaultFile;
use crate::error::{Error, Result};
use crate::format::pack::{self, Codec};
use crate::format::tree::NodeKind;
use crate::ids::{ChunkId, SnapshotId};
use crate::model::{self, Detected, FloatKind};
use crate::repo::Repo;
use crate::restore;
use std::collections::HashMap;
use std::path::Path;

/// Default bound on chain length: every 4th version of a tensor is stored whole.
pub const DEFAULT_MAX_DEPTH: u8 = 4;
/// How many recent snapshots the catalog looks through.
const CATALOG_SNAPSHOTS: usize = 8;
const HEADER: usize = 1 + 32 + 1;

pub struct Header {
    pub depth: u8,
    pub base: ChunkId,
    pub inner: Codec,
}

pub fn parse_header<'a>(enc: &'a [u8], object: &str) -> Result<(Header, &'a [u8])> {
    if enc.len() < HEADER {
        return Err(Error::corrupt(object, "delta header truncated"));
    }
    let depth = enc[0];
    let base = ChunkId(enc[1..33].try_into().expect("32 bytes"));
    let inner = Codec::from_u8(enc[33]).filter(|c| *c != Codec::Delta);
    match inner {
        Some(inner) if depth >= 1 => Ok((Header { depth, base, inner }, &enc[HEADER..])),
        _ => Err(Error::corrupt(object, "bad delta header")),
    }
}

fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

/// Encode `plain` as a delta against `base_plain` (same length) at `depth`.
pub fn encode(
    plain: &[u8],
    base: &ChunkId,
    base_plain: &[u8],
    depth: u8,
    level: i32,
    float: Option<FloatKind>,
) -> Vec<u8> {
    let (inner, body) = pack::encode_as(&xor(plain, base_plain), level, float);
    let mut out = Vec::with_capacity(HEADER + body.len());
    out.push(depth);
    out.extend_from_slice(&base.0);
    out.push(inner as u8);
    out.extend_from_slice(&body);
    out
}

/// Undo a delta given its base's plaintext.
pub fn decode(header: &Header, body: &[u8], base_plain: &[u8], raw_length: u32, object: &str) -> Result<Vec<u8>> {
    if base_plain.len() != raw_length as usize {
        return Err(Error::corrupt(object, "delta base has a different length"));
    }
    let x = pack::decode(header.inner, body.to_vec(), raw_length, object)?;
    Ok(xor(&x, base_plain))
}

/// How deep a stored chunk sits in its delta chain (0 for a whole blob), from the index's base links alone:
/// no blob is read. `None` if a link is missing from the index or the chain is longer than any writer makes.
pub fn chain_depth(repo: &Repo, id: &ChunkId) -> Option<u8> {
    let mut depth = 0u8;
    let mut loc = repo.lookup(id)?;
    while let Some(base) = loc.base {
        depth = depth.checked_add(1)?;
        loc = repo.lookup(&base)?;
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
pub struct Catalog {
    tensors: HashMap<TensorKey, Vec<ChunkId>>,
}

fn is_model_name(p: &str) -> bool {
    let ext = Path::new(p).extension().and_then(|e| e.to_str()).unwrap_or_default().to_ascii_lowercase();
    matches!(ext.as_str(), "safetensors" | "gguf" | "pt" | "pth" | "ckpt" | "bin")
}

impl Catalog {
    /// Look through `snapshots` (newest first); the first version of each tensor found wins. Only model files
    /// whose tensors start and end on chunk boundaries (that is, stored with tensor-aligned chunking) count.
    /// Only their headers are read.
    pub fn build(repo: &Repo, snapshots: &[SnapshotId]) -> Result<Catalog> {
        let mut c = Catalog::default();
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

    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::synth::{f32_bytes, weights_f32};

    #[test]
    fn a_nudged_tensor_stores_far_smaller_as_a_delta() {
        let w = weights_f32(1 << 16, 5, 0.05);
        let nudged: Vec<f32> = w.iter().zip(weights_f32(1 << 16, 6, 1.0)).map(|(a, n)| a - 2e-5 * n).collect();
        let (base, new) = (f32_bytes(&w), f32_bytes(&nudged));
        let id = ChunkId([7; 32]);
        let d = encode(&new, &id, &base, 1, 3, Some(FloatKind::F32));
        let (full_codec, full) = pack::encode_as(&new, 3, Some(FloatKind::F32));
        assert_eq!(full_codec, Codec::Grouped);
        assert!(d.len() * 10 < full.len() * 7, "delta {} vs whole {}", d.len(), full.len());
        let (h, body) = parse_header(&d, "t").unwrap();
        assert_eq!((h.depth, h.base), (1, id));
        assert_eq!(decode(&h, body, &base, new.len() as u32, "t").unwrap(), new);
        assert!(decode(&h, body, &base[2..], new.len() as u32, "t").is_err());
        assert!(parse_header(&d[..20], "t").is_err());
        let mut bad = d.clone();
        bad[0] = 0;
        assert!(parse_header(&bad, "t").is_err(), "depth 0");
        bad[0] = 1;
        bad[33] = 3;
        assert!(parse_header(&bad, "t").is_err(), "a delta inside a delta");
    }
}
