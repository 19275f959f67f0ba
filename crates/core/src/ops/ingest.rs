//! Blobs that arrive from a client (the server's upload path): the client chunked and hashed them with the
//! tenant's id key and sent only those the server lacked. Here each is checked (its ChunkId must be the
//! tenant's keyed hash of its bytes, a tree must parse), encoded like a local backup's blobs, and only then,
//! once the caller has checked the quota against the encoded size, packed, encrypted and written.
//!
//! A batch is durable when `store` returns: packs first, then one index file naming them, so a broken
//! connection loses at most the batch in flight and a retry re-sends only what is still missing.

use crate::error::{Error, Result};
use crate::format::pack::{self, BlobType, Codec};
use crate::format::snapshot::Snapshot;
use crate::format::tree::{self, NodeKind};
use crate::format::FloatKind;
use crate::ids::{ChunkId, SnapshotId};
use crate::ops::backup::{FullPack, Packing};
use crate::repo::Repo;
use std::collections::HashSet;

/// Compression level of uploaded blobs: the same as local backups.
const ZSTD_LEVEL: i32 = 3;

/// One blob as the client sent it.
pub struct Incoming {
    pub blob_type: BlobType,
    pub id: ChunkId,
    /// A float dtype hint from the client's model parser (it only picks the codec tried).
    pub float: Option<FloatKind>,
    pub data: Vec<u8>,
}

/// A checked and encoded blob, not yet written.
pub struct Prepared {
    blob_type: BlobType,
    id: ChunkId,
    codec: Codec,
    encoded: Vec<u8>,
    raw_length: u32,
}

/// Check and encode a batch. Blobs the tenant already has (or that repeat within the batch) are dropped.
pub fn prepare(repo: &Repo, items: Vec<Incoming>) -> Result<Vec<Prepared>> {
    let keys = repo.current_keys();
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(items.len());
    for it in items {
        if u32::try_from(it.data.len()).is_err() {
            return Err(Error::Usage(format!("blob {}: {} bytes is too large", it.id, it.data.len())));
        }
        if keys.chunk_id(&it.data) != it.id {
            return Err(Error::Usage(format!(
                "blob {}: its bytes do not hash to its id under this tenant's key",
                it.id
            )));
        }
        if it.blob_type == BlobType::Tree {
            tree::parse(&it.data).map_err(|e| Error::Usage(format!("tree {}: {e}", it.id)))?;
        }
        if repo.has_chunk(&it.id) || !seen.insert(it.id) {
            continue;
        }
        let (codec, encoded) = pack::encode_as(&it.data, ZSTD_LEVEL, it.float);
        out.push(Prepared { blob_type: it.blob_type, id: it.id, codec, encoded, raw_length: it.data.len() as u32 });
    }
    Ok(out)
}

/// What a prepared batch will add to the tenant's stored bytes (before redundancy), for the quota check.
pub fn encoded_bytes(items: &[Prepared]) -> u64 {
    items.iter().map(|p| p.encoded.len() as u64 + crate::crypto::TAG_LEN as u64).sum()
}

/// Pack, encrypt and write a prepared batch, then its index file. Returns the bytes written to the stores.
pub fn store(repo: &Repo, items: Vec<Prepared>) -> Result<u64> {
    let mut written = 0;
    let mut entries = Vec::with_capacity(items.len());
    let mut packing = Packing::new(repo);
    let mut write = |(builder, mut e): FullPack| -> Result<()> {
        let (id, bytes, _) = builder.finish();
        written += repo.write_pack(&id, &bytes)?.0;
        entries.append(&mut e);
        Ok(())
    };
    for p in items {
        if let Some(full) = packing.add(p.blob_type, p.codec, p.id, &p.encoded, p.raw_length, None) {
            write(full)?;
        }
    }
    if let Some(last) = packing.finish() {
        write(last)?;
    }
    written += repo.write_index(entries)?;
    Ok(written)
}

/// Check that everything a snapshot's tree references is stored in this tenant, as the right blob type,
/// so a client cannot commit a snapshot naming data it never uploaded (or another tenant's ids, which are
/// simply not in this tenant's index). Returns the ids that are missing (empty when the tree is whole).
pub fn missing_references(repo: &Repo, root: &ChunkId) -> Result<Vec<ChunkId>> {
    let mut missing = Vec::new();
    let mut stack = vec![*root];
    let mut seen = HashSet::new();
    let has = |id: &ChunkId, t: BlobType| repo.lookup(id).ok().flatten().is_some_and(|l| l.blob_type == t);
    if !has(root, BlobType::Tree) {
        return Ok(vec![*root]);
    }
    while let Some(t) = stack.pop() {
        if !seen.insert(t) {
            continue;
        }
        for node in repo.load_tree(&t)? {
            match node.kind {
                NodeKind::Dir { subtree } => {
                    if has(&subtree, BlobType::Tree) {
                        stack.push(subtree);
                    } else {
                        missing.push(subtree);
                    }
                }
                NodeKind::File { chunks } => missing.extend(chunks.into_iter().filter(|c| !has(c, BlobType::Data))),
                NodeKind::Symlink { .. } => {}
            }
        }
    }
    missing.sort();
    missing.dedup();
    Ok(missing)
}

/// Save a snapshot a client describes, once its tree is known whole.
pub fn commit_snapshot(repo: &Repo, snap: &Snapshot) -> Result<SnapshotId> {
    let root = snap.tree_id()?;
    let missing = missing_references(repo, &root)?;
    if let Some(first) = missing.first() {
        return Err(Error::Usage(format!(
            "snapshot references {} blobs this tenant does not have (first: {first}); upload them first",
            missing.len()
        )));
    }
    repo.save_snapshot(snap)
}
