//! Snapshots: JSON records of a point in time, stored inside an MVOB envelope.

use crate::error::{Error, Result};
use crate::ids::ChunkId;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// Plaintext bytes of all files in the snapshot.
    pub bytes: u64,
    /// Files whose content was read (the rest were unchanged since the parent).
    pub files_read: u64,
    pub bytes_read: u64,
    pub new_chunks: u64,
    /// Plaintext bytes of chunks not yet in the vault.
    pub new_bytes: u64,
    /// Bytes this backup added to the stores (packs and index, after compression and encryption).
    pub bytes_stored: u64,
    pub unreadable: Vec<String>,
    /// Packs written with shards missing because a store was down.
    #[serde(default)]
    pub degraded_packs: u64,
    pub seconds: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Snapshot {
    pub version: u32,
    pub time: String,
    pub host: String,
    #[serde(default)]
    pub tags: Vec<String>,
    pub paths: Vec<String>,
    pub tree: String,
    pub parent: Option<String>,
    #[serde(default)]
    pub locked_until: Option<String>,
    #[serde(default)]
    pub summary: Summary,
    /// For a snapshot made by `copy`: `<source vault id>/<source snapshot id>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<String>,
}

impl Snapshot {
    pub fn tree_id(&self) -> Result<ChunkId> {
        ChunkId::from_hex(&self.tree)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("snapshot serializes")
    }

    pub fn parse(bytes: &[u8]) -> Result<Snapshot> {
        let s: Snapshot = serde_json::from_slice(bytes).map_err(|e| Error::malformed("snapshot", e.to_string()))?;
        if s.version != 1 {
            return Err(Error::malformed("snapshot", format!("unsupported version {}", s.version)));
        }
        s.tree_id()?;
        humantime::parse_rfc3339(&s.time)
            .map_err(|e| Error::malformed("snapshot", format!("time {:?}: {e}", s.time)))?;
        Ok(s)
    }

    pub fn system_time(&self) -> std::time::SystemTime {
        humantime::parse_rfc3339(&self.time).unwrap_or(std::time::UNIX_EPOCH)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(host in ".{0,20}", paths in proptest::collection::vec(".{0,20}", 0..4), files in any::<u64>()) {
            let s = Snapshot {
                version: 1, time: "2026-11-25T10:00:00.123456789Z".into(), host, tags: vec!["a=b".into()], paths,
                tree: ChunkId([3; 32]).to_hex(), parent: None, locked_until: None,
                summary: Summary { files, ..Default::default() },
                original: None,
            };
            prop_assert_eq!(Snapshot::parse(&s.to_bytes()).unwrap(), s);
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Snapshot::parse(&bytes);
        }
    }
}
