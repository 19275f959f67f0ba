//! Shard objects (MVSH): one of the k+m pieces of a pack, with a header that lets any reader check it alone.

use super::wire::{Reader, Writer};
use crate::error::{Error, Result};
use crate::ids::PackId;

const MAGIC: &[u8; 4] = b"MVSH";
pub const HEADER_LEN: usize = 5 + 16 + 1 + 1 + 1 + 8 + 8 + 32;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardHeader {
    pub pack_id: PackId,
    pub index: u8,
    pub k: u8,
    pub m: u8,
    pub pack_length: u64,
    pub shard_length: u64,
    pub hash: [u8; 32],
}

impl ShardHeader {
    pub fn new(
        pack_id: PackId,
        index: u8,
        data_shards: u8,
        parity_shards: u8,
        pack_length: u64,
        payload: &[u8],
    ) -> Self {
        ShardHeader {
            pack_id,
            index,
            k: data_shards,
            m: parity_shards,
            pack_length,
            shard_length: payload.len() as u64,
            hash: *blake3::hash(payload).as_bytes(),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_header(MAGIC, 1);
        w.bytes(&self.pack_id.0)
            .u8(self.index)
            .u8(self.k)
            .u8(self.m)
            .u64(self.pack_length)
            .u64(self.shard_length)
            .bytes(&self.hash);
        w.into_vec()
    }

    /// Parse the fixed-size header at the start of `bytes` (which may be just the header).
    pub fn parse(bytes: &[u8]) -> Result<ShardHeader> {
        let mut r = Reader::new(bytes, "shard");
        r.header(MAGIC, 1)?;
        let h = ShardHeader {
            pack_id: PackId(r.array()?),
            index: r.u8()?,
            k: r.u8()?,
            m: r.u8()?,
            pack_length: r.u64()?,
            shard_length: r.u64()?,
            hash: r.array()?,
        };
        if h.k == 0 || h.index as usize >= h.k as usize + h.m as usize {
            return Err(r.err(format!("shard index {} outside k={} m={}", h.index, h.k, h.m)));
        }
        if h.pack_length > (h.k as u64).saturating_mul(h.shard_length) {
            return Err(r.err(format!("pack length {} exceeds k x shard length", h.pack_length)));
        }
        Ok(h)
    }

    /// Parse a whole shard object and check its payload length and hash.
    pub fn parse_verified(bytes: &[u8]) -> Result<(ShardHeader, &[u8])> {
        let h = Self::parse(bytes)?;
        let payload = &bytes[HEADER_LEN..];
        if payload.len() as u64 != h.shard_length {
            return Err(Error::corrupt(
                "shard",
                format!("payload is {} bytes, header says {}", payload.len(), h.shard_length),
            ));
        }
        if blake3::hash(payload) != blake3::Hash::from(h.hash) {
            return Err(Error::corrupt("shard", "payload hash mismatch (bit rot or tampering)"));
        }
        Ok((h, payload))
    }
}

/// A full shard object: header then payload.
pub fn encode(header: &ShardHeader, payload: &[u8]) -> Vec<u8> {
    let mut v = header.to_bytes();
    v.extend_from_slice(payload);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(payload in proptest::collection::vec(any::<u8>(), 0..2000), idx in 0u8..3) {
            let h = ShardHeader::new(PackId::random(), idx, 2, 1, payload.len() as u64, &payload);
            let obj = encode(&h, &payload);
            prop_assert_eq!(obj.len(), HEADER_LEN + payload.len());
            let (p, pl) = ShardHeader::parse_verified(&obj).unwrap();
            prop_assert_eq!(p, h);
            prop_assert_eq!(pl, &payload[..]);
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = ShardHeader::parse_verified(&bytes);
        }
    }

    #[test]
    fn flipped_and_truncated_detected() {
        let payload = vec![7u8; 100];
        let h = ShardHeader::new(PackId::random(), 0, 1, 0, 100, &payload);
        let obj = encode(&h, &payload);
        for i in 0..obj.len() {
            let mut bad = obj.clone();
            bad[i] ^= 1;
            assert!(ShardHeader::parse_verified(&bad).map(|(p, _)| p != h).unwrap_or(true), "flip at {i} undetected");
        }
        assert!(ShardHeader::parse_verified(&obj[..obj.len() - 1]).is_err());
    }
}
