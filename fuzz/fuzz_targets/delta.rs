//! Delta blobs (codec 3) on untrusted bytes: the header parser and the decoder against a base of any length.
//! Invariants: decode returns an error or exactly `raw_length` bytes; and a piece encoded with each combine
//! against a base it fits decodes back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mvault_core::format::delta::{self, Combine};
use mvault_core::ids::ChunkId;
use mvault_core::format::FloatKind;

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let raw_length = u32::from(data[0]) * 4 + u32::from(data[1] & 3);
    let rest = &data[3..];
    let (base, enc) = rest.split_at((usize::from(data[2]) * 2).min(rest.len()));
    if let Ok((h, body)) = delta::parse_header(enc, "fuzz") {
        if let Ok(out) = delta::decode(&h, body, base, raw_length, "fuzz") {
            assert_eq!(out.len(), raw_length as usize);
        }
    }
    let id = ChunkId([5; 32]);
    let offset = u32::from(data[1] >> 2);
    for (combine, float) in [
        (Combine::Xor, None),
        (Combine::Sub16, Some(FloatKind::Bf16)),
        (Combine::Sub32, Some(FloatKind::F32)),
        (Combine::WidenBf16 { offset }, Some(FloatKind::F32)),
    ] {
        let plain = match combine {
            Combine::WidenBf16 { .. } => &enc[..enc.len() / 4 * 4],
            _ => enc,
        };
        let mut b = base.to_vec();
        match combine {
            Combine::WidenBf16 { offset } => b.resize(b.len().max(2 * offset as usize + plain.len() / 2), 0),
            _ => b.resize(plain.len(), 0),
        }
        assert!(delta::fits(combine, plain.len(), b.len()));
        let d = delta::encode(plain, &id, &b, combine, 1, 1, float);
        let (h, body) = delta::parse_header(&d, "fuzz").expect("own header parses");
        assert_eq!(delta::decode(&h, body, &b, plain.len() as u32, "fuzz").expect("own delta decodes"), plain);
    }
});
