//! Where trees and chunks are read from: the vault itself, or (in the CLI's remote mode) a server. Restore,
//! diff and the S3 object reads take a `&dyn BlobSource`, so they run unchanged on either.

use super::packs::KnownBases;
use super::Repo;
use crate::error::Result;
use crate::format::tree::Node;
use crate::ids::ChunkId;

/// A reader of trees and chunks.
pub trait BlobSource: Sync {
    fn load_tree(&self, id: &ChunkId) -> Result<Vec<Node>>;
    /// A chunk's plaintext, verified against its id.
    fn read_blob(&self, id: &ChunkId) -> Result<Vec<u8>>;
    /// `read_blob`, where a delta's base may be taken from `known` if it hashes to the base's id (a source
    /// that reads no deltas itself ignores it).
    fn read_blob_knowing(&self, id: &ChunkId, known: KnownBases) -> Result<Vec<u8>> {
        let _ = known;
        self.read_blob(id)
    }
    /// A chunk's plaintext length, known before it is read (restore writes chunks at their offsets).
    fn chunk_len(&self, id: &ChunkId) -> Option<u64>;
    /// What a chunk takes in the vault (after its codec and encryption, before redundancy), for diff.
    fn stored_len(&self, id: &ChunkId) -> Option<u64>;
    /// The keyed hash that names chunks (for `verify`).
    fn chunk_id(&self, data: &[u8]) -> ChunkId;
}

impl BlobSource for Repo {
    fn load_tree(&self, id: &ChunkId) -> Result<Vec<Node>> {
        Repo::load_tree(self, id)
    }
    fn read_blob(&self, id: &ChunkId) -> Result<Vec<u8>> {
        Repo::read_blob(self, id)
    }
    fn read_blob_knowing(&self, id: &ChunkId, known: KnownBases) -> Result<Vec<u8>> {
        Repo::read_blob_knowing(self, id, known)
    }
    fn chunk_len(&self, id: &ChunkId) -> Option<u64> {
        self.lookup(id).ok().flatten().map(|l| l.raw_length as u64)
    }
    fn stored_len(&self, id: &ChunkId) -> Option<u64> {
        self.lookup(id).ok().flatten().map(|l| l.length as u64)
    }
    fn chunk_id(&self, data: &[u8]) -> ChunkId {
        self.current_keys().chunk_id(data)
    }
}
