//! Shard objects (MVSH). Both entry points are fuzzed: `ShardHeader::parse` (the repo reads just the
//! header of a shard for range reads) and `ShardHeader::parse_verified` (a whole shard).
//! Invariants: an accepted header is exactly `to_bytes()` of what was parsed (canonical encoding) and obeys
//! `k >= 1`, `index < k + m`, `pack_length <= k * shard_length`; an accepted whole shard is exactly
//! `shard::encode(header, payload)`, its header equals `ShardHeader::new` over the payload, and the
//! re-encoded shard verifies again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mvault_core::format::shard::{self, ShardHeader};

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = ShardHeader::parse(data) {
        assert!(data.len() >= shard::HEADER_LEN);
        let hb = h.to_bytes();
        assert_eq!(hb.len(), shard::HEADER_LEN, "header encodes to the wrong length");
        assert_eq!(&hb[..], &data[..shard::HEADER_LEN], "header does not re-encode to the input");
        assert_eq!(ShardHeader::parse(&hb).expect("re-encoded header does not parse"), h);
        assert!(h.k >= 1 && (h.index as usize) < h.k as usize + h.m as usize);
        assert!(h.pack_length <= (h.k as u64).saturating_mul(h.shard_length));
    }

    if let Ok((h, payload)) = ShardHeader::parse_verified(data) {
        assert_eq!(payload.len() as u64, h.shard_length);
        assert_eq!(
            ShardHeader::new(h.pack_id, h.index, h.k, h.m, h.pack_length, payload),
            h,
            "verified header differs from the header of its payload"
        );
        let re = shard::encode(&h, payload);
        assert_eq!(re, data, "shard does not re-encode to the input");
        let (h2, p2) = ShardHeader::parse_verified(&re).expect("re-encoded shard does not verify");
        assert_eq!(h2, h);
        assert_eq!(p2, payload);
    }
});
