//! Index files (MVIX): ChunkId -> where its blob lives. One file per writer session.

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
}

pub fn encode(entries: &[(ChunkId, Location)]) -> Vec<u8> {
    let mut w = Writer::with_header(MAGIC, 1);
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
    }
    w.into_vec()
}

pub fn parse(bytes: &[u8]) -> Result<Vec<(ChunkId, Location)>> {
    let mut r = Reader::new(bytes, "index");
    r.header(MAGIC, 1)?;
    let n = r.count(ENTRY_LEN)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let id = ChunkId(r.array()?);
        let pack = PackId(r.array()?);
        let t = r.u8()?;
        let blob_type = BlobType::from_u8(t).ok_or_else(|| r.err(format!("unknown blob type {t}")))?;
        let c = r.u8()?;
        let codec = Codec::from_u8(c).ok_or_else(|| r.err(format!("unknown codec {c}")))?;
        out.push((
            id,
            Location {
                pack,
                blob_type,
                codec,
                index: r.u32()?,
                offset: r.u32()?,
                length: r.u32()?,
                raw_length: r.u32()?,
            },
        ));
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
        fn round_trip(raw in proptest::collection::vec((any::<[u8; 32]>(), any::<[u8; 16]>(), any::<bool>(), any::<u32>(), any::<u32>(), any::<u32>()), 0..30)) {
            let entries: Vec<_> = raw.into_iter().map(|(c, p, t, o, l, r)| (ChunkId(c), Location {
                pack: PackId(p), blob_type: if t { BlobType::Tree } else { BlobType::Data },
                codec: if t { Codec::Zstd } else { Codec::None }, index: o / 3, offset: o, length: l, raw_length: r,
            })).collect();
            prop_assert_eq!(parse(&encode(&entries)).unwrap(), entries);
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse(&bytes);
        }
    }
}
