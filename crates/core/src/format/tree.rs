//! Trees (MVTR): one directory's entries, stored as a blob so unchanged directories deduplicate.

use super::wire::{Reader, Writer};
use crate::error::Result;
use crate::ids::ChunkId;

const MAGIC: &[u8; 4] = b"MVTR";
const MIN_NODE_LEN: usize = 1 + 2 + 4 + 8 + 4 + 8 + 8 + 8 + 2;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeKind {
    File { chunks: Vec<ChunkId> },
    Dir { subtree: ChunkId },
    Symlink { target: Vec<u8> },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Raw bytes of the name: any Unix file name.
    pub name: Vec<u8>,
    pub kind: NodeKind,
    pub mode: u32,
    pub mtime_sec: i64,
    pub mtime_nsec: u32,
    pub size: u64,
    pub dev: u64,
    pub inode: u64,
}

/// A name that cannot escape its directory.
pub fn valid_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name != b"."
        && name != b".."
        && !name.contains(&b'/')
        && !name.contains(&0)
        && name.len() <= u16::MAX as usize
}

pub fn encode(nodes: &[Node]) -> Vec<u8> {
    let mut w = Writer::with_header(MAGIC, 1);
    w.u32(nodes.len() as u32);
    for n in nodes {
        let tag = match n.kind {
            NodeKind::File { .. } => 0,
            NodeKind::Dir { .. } => 1,
            NodeKind::Symlink { .. } => 2,
        };
        w.u8(tag).bytes16(&n.name).u32(n.mode).i64(n.mtime_sec).u32(n.mtime_nsec).u64(n.size).u64(n.dev).u64(n.inode);
        match &n.kind {
            NodeKind::File { chunks } => {
                w.u32(chunks.len() as u32);
                for c in chunks {
                    w.bytes(&c.0);
                }
            }
            NodeKind::Dir { subtree } => {
                w.bytes(&subtree.0);
            }
            NodeKind::Symlink { target } => {
                w.bytes16(target);
            }
        }
    }
    w.into_vec()
}

pub fn parse(bytes: &[u8]) -> Result<Vec<Node>> {
    let mut r = Reader::new(bytes, "tree");
    r.header(MAGIC, 1)?;
    let n = r.count(MIN_NODE_LEN)?;
    let mut out: Vec<Node> = Vec::with_capacity(n);
    for _ in 0..n {
        let tag = r.u8()?;
        let name = r.bytes16()?.to_vec();
        if !valid_name(&name) {
            return Err(r.err(format!("invalid entry name {:?}", String::from_utf8_lossy(&name))));
        }
        if let Some(prev) = out.last() {
            if prev.name >= name {
                return Err(r.err("entries not sorted or not unique"));
            }
        }
        let (mode, mtime_sec, mtime_nsec, size, dev, inode) =
            (r.u32()?, r.i64()?, r.u32()?, r.u64()?, r.u64()?, r.u64()?);
        if mtime_nsec >= 1_000_000_000 {
            return Err(r.err("mtime nanoseconds out of range"));
        }
        let kind = match tag {
            0 => {
                let c = r.count(32)?;
                let mut chunks = Vec::with_capacity(c);
                for _ in 0..c {
                    chunks.push(ChunkId(r.array()?));
                }
                NodeKind::File { chunks }
            }
            1 => NodeKind::Dir { subtree: ChunkId(r.array()?) },
            2 => NodeKind::Symlink { target: r.bytes16()?.to_vec() },
            t => return Err(r.err(format!("unknown node kind {t}"))),
        };
        out.push(Node { name, kind, mode, mtime_sec, mtime_nsec, size, dev, inode });
    }
    r.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn node() -> impl Strategy<Value = Node> {
        let kind = prop_oneof![
            proptest::collection::vec(any::<[u8; 32]>(), 0..4)
                .prop_map(|v| NodeKind::File { chunks: v.into_iter().map(ChunkId).collect() }),
            any::<[u8; 32]>().prop_map(|c| NodeKind::Dir { subtree: ChunkId(c) }),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(|t| NodeKind::Symlink { target: t }),
        ];
        (
            proptest::collection::vec(1u8..=255, 1..20),
            kind,
            any::<u32>(),
            any::<i64>(),
            0u32..1_000_000_000,
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
        )
            .prop_map(|(name, kind, mode, s, ns, size, dev, inode)| Node {
                name,
                kind,
                mode,
                mtime_sec: s,
                mtime_nsec: ns,
                size,
                dev,
                inode,
            })
    }

    proptest! {
        #[test]
        fn round_trip(mut nodes in proptest::collection::vec(node(), 0..10)) {
            nodes.retain(|n| valid_name(&n.name));
            nodes.sort_by(|a, b| a.name.cmp(&b.name));
            nodes.dedup_by(|a, b| a.name == b.name);
            prop_assert_eq!(parse(&encode(&nodes)).unwrap(), nodes);
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse(&bytes);
        }
    }

    #[test]
    fn rejects_escaping_names() {
        for bad in [&b".."[..], b".", b"a/b", b""] {
            let n = Node {
                name: bad.to_vec(),
                kind: NodeKind::Symlink { target: vec![] },
                mode: 0,
                mtime_sec: 0,
                mtime_nsec: 0,
                size: 0,
                dev: 0,
                inode: 0,
            };
            assert!(parse(&encode(&[n])).is_err(), "{bad:?} accepted");
        }
    }
}
