//! Index files (MVIX): ChunkId -> where its blob lives. One file per writer session.
//!
//! Version 1 entries are fixed-size. Version 2, written only when some entry is a delta (codec 3), adds the
//! base ChunkId after each delta entry, so prune and check know what a delta needs without decrypting it. The
//! encoding stays canonical: a file with no delta is always version 1, and a version 2 file must hold one.

use super::pack::{BlobType, Codec};
use super::wire::{Reader, Writer};
use crate::error::Result;
use crate::ids::{ChunkId, PackId};

const MAGIC: &[u8; 4] = b"MVIX";
const ENTRY_LEN: usize = 32 + 16 + 1 + 1 + 4 + 4 + 4 + 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    pub pack: PackId,
    pub blob_type: BlobType,
    pub codec: Codec,
    /// The blob's position in its pack's table: its nonce and part of its AAD.
    pub index: u32,
    pub offset: u32,
    pub length: u32,
    pub raw_length: u32,
    /// For a delta blob: the chunk it is XORed against (which must stay live as long as this one).
    pub base: Option<ChunkId>,
}

pub fn encode(entries: &[(ChunkId, Location)]) -> Vec<u8> {
    let version = if entries.iter().any(|(_, l)| l.base.is_some()) { 2 } else { 1 };
    let mut w = Writer::with_header(MAGIC, version);
    w.u32(entries.len() as u32);
    for (id, l) in entries {
        w.bytes(&id.0)
            .bytes(&l.pack.0)
            .u8(l.blob_type as u8)
            .u8(l.codec as u8)
            .u32(l.index)
            .u32(l.offset)
            .u32(l.length)
            .u32(l.raw_length);
        if let Some(b) = &l.base {
            w.bytes(&b.0);
        }
    }
    w.into_vec()
}

pub fn parse(bytes: &[u8]) -> Result<Vec<(ChunkId, Location)>> {
    let mut r = Reader::new(bytes, "index");
    let version = match r.header(MAGIC, 2) {
        Ok(()) => 2,
        Err(_) => {
            r = Reader::new(bytes, "index");
            r.header(MAGIC, 1)?;
            1
        }
    };
    let n = r.count(ENTRY_LEN)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let id = ChunkId(r.array()?);
        let pack = PackId(r.array()?);
        let t = r.u8()?;
        let blob_type = BlobType::from_u8(t).ok_or_else(|| r.err(format!("unknown blob type {t}")))?;
        let c = r.u8()?;
        let codec = Codec::from_u8(c).ok_or_else(|| r.err(format!("unknown codec {c}")))?;
        let (index, offset, length, raw_length) = (r.u32()?, r.u32()?, r.u32()?, r.u32()?);
        let base = match (codec, version) {
            (Codec::Delta, 2) => Some(ChunkId(r.array()?)),
            (Codec::Delta, _) => return Err(r.err("a delta entry in a version 1 index")),
            _ => None,
        };
        out.push((id, Location { pack, blob_type, codec, index, offset, length, raw_length, base }));
    }
    if version == 2 && !out.iter().any(|(_, l)| l.base.is_some()) {
        return Err(r.err("a version 2 index without a delta entry (not canonical)"));
    }
    r.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(raw in proptest::collection::vec((any::<[u8; 32]>(), any::<[u8; 16]>(), 0u8..4, any::<u32>(), any::<u32>(), any::<u32>()), 0..30)) {
            let entries: Vec<_> = raw.into_iter().map(|(c, p, t, o, l, r)| (ChunkId(c), Location {
                pack: PackId(p), blob_type: if t == 1 { BlobType::Tree } else { BlobType::Data },
                codec: Codec::from_u8(t).unwrap(), index: o / 3, offset: o, length: l, raw_length: r,
                base: (t == 3).then_some(ChunkId(p.repeat(2).try_into().unwrap())),
            })).collect();
            prop_assert_eq!(parse(&encode(&entries)).unwrap(), entries);
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse(&bytes);
        }
    }
}
