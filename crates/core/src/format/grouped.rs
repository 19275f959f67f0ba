//! The byte-grouped float codec (codec 2). Float weights barely compress as they are: each element's exponent
//! (a few bits of real information, most values near 1/sqrt(fan-in)) is interleaved with mantissa bits that are
//! close to random. Pulling the exponents into a plane of their own gives an entropy coder (format/rans.rs) a
//! skewed alphabet it shrinks to within a fraction of a percent of its Shannon limit, while planes that would
//! not shrink (the low mantissa bytes) are kept raw without being coded at all.
//!
//! Encoded form (documented in docs/FORMAT.md):
//! `u8 transform | per plane: u8 plane_codec (0 raw, 1 rANS) | u32 length | bytes` then the tail, the
//! `raw_length % element_size` bytes that do not make a whole element, raw. Each plane holds one byte per
//! element. Transforms, with planes in order:
//! - 1 BF16: exponent (8 bits); sign and 7 mantissa bits.
//! - 2 F16: high byte (sign, 5 exponent bits, 2 mantissa bits); low byte.
//! - 3 F32: exponent (8 bits); sign and mantissa bits 22-16; mantissa bits 15-8; mantissa bits 7-0.

use super::rans;
use crate::error::{Error, Result};
use crate::model::FloatKind;

fn transform_id(k: FloatKind) -> u8 {
    match k {
        FloatKind::Bf16 => 1,
        FloatKind::F16 => 2,
        FloatKind::F32 => 3,
    }
}

fn transform_kind(id: u8) -> Option<FloatKind> {
    match id {
        1 => Some(FloatKind::Bf16),
        2 => Some(FloatKind::F16),
        3 => Some(FloatKind::F32),
        _ => None,
    }
}

/// Split whole elements into planes (one byte per element per plane); one pass per plane, which the
/// compiler vectorises.
fn split(kind: FloatKind, data: &[u8]) -> Vec<Vec<u8>> {
    fn plane(data: &[u8], size: usize, f: impl Fn(&[u8]) -> u8) -> Vec<u8> {
        data.chunks_exact(size).map(f).collect()
    }
    match kind {
        FloatKind::Bf16 => {
            vec![plane(data, 2, |c| (c[1] << 1) | (c[0] >> 7)), plane(data, 2, |c| (c[1] & 0x80) | (c[0] & 0x7f))]
        }
        FloatKind::F16 => vec![plane(data, 2, |c| c[1]), plane(data, 2, |c| c[0])],
        FloatKind::F32 => vec![
            plane(data, 4, |c| (c[3] << 1) | (c[2] >> 7)),
            plane(data, 4, |c| (c[3] & 0x80) | (c[2] & 0x7f)),
            plane(data, 4, |c| c[1]),
            plane(data, 4, |c| c[0]),
        ],
    }
}

/// Interleave planes back into elements.
fn join(kind: FloatKind, planes: &[Vec<u8>], out: &mut [u8]) {
    match kind {
        FloatKind::Bf16 => {
            for ((o, &e), &sm) in out.chunks_exact_mut(2).zip(&planes[0]).zip(&planes[1]) {
                o[0] = (e << 7) | (sm & 0x7f);
                o[1] = (sm & 0x80) | (e >> 1);
            }
        }
        FloatKind::F16 => {
            for ((o, &hi), &lo) in out.chunks_exact_mut(2).zip(&planes[0]).zip(&planes[1]) {
                o[0] = lo;
                o[1] = hi;
            }
        }
        FloatKind::F32 => {
            let p = (&planes[0], &planes[1], &planes[2], &planes[3]);
            for (i, o) in out.chunks_exact_mut(4).enumerate() {
                let (e, sm) = (p.0[i], p.1[i]);
                o[0] = p.3[i];
                o[1] = p.2[i];
                o[2] = (e << 7) | (sm & 0x7f);
                o[3] = (sm & 0x80) | (e >> 1);
            }
        }
    }
}

/// Encode `data` as float elements of `kind`. Each plane is entropy-coded where its order-0 entropy
/// (measured first, which costs only a histogram) promises a gain of at least 2%, and kept raw otherwise or
/// when coding did not pay. The caller compares the result with the other codecs and keeps the smallest.
pub fn encode(kind: FloatKind, data: &[u8]) -> Vec<u8> {
    let whole = data.len() / kind.size() * kind.size();
    let mut out = Vec::with_capacity(data.len() / 2 + 64);
    out.push(transform_id(kind));
    for plane in split(kind, &data[..whole]) {
        let hist = rans::histogram(&plane);
        let promising =
            !plane.is_empty() && rans::estimate(&hist, plane.len() as u64) + 800.0 < plane.len() as f64 * 0.98;
        let coded = promising.then(|| rans::encode(&plane, &hist)).filter(|c| c.len() < plane.len());
        let (codec, body) = match &coded {
            Some(c) => (1u8, c.as_slice()),
            None => (0u8, plane.as_slice()),
        };
        out.push(codec);
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(body);
    }
    out.extend_from_slice(&data[whole..]);
    out
}

/// Decode a grouped blob of `raw_length` bytes. Any inconsistency (unknown transform, a plane of the wrong
/// length, trailing or missing bytes) is an error naming `object`.
pub fn decode(encoded: &[u8], raw_length: usize, object: &str) -> Result<Vec<u8>> {
    let bad = |why: String| Error::corrupt(object, format!("grouped codec: {why}"));
    let (&t, mut rest) = encoded.split_first().ok_or_else(|| bad("empty".into()))?;
    let kind = transform_kind(t).ok_or_else(|| bad(format!("unknown transform {t}")))?;
    let n = raw_length / kind.size();
    let mut planes = Vec::with_capacity(kind.size());
    for p in 0..kind.size() {
        if rest.len() < 5 {
            return Err(bad(format!("plane {p} header missing")));
        }
        let codec = rest[0];
        let len = u32::from_le_bytes(rest[1..5].try_into().expect("4 bytes")) as usize;
        let body = rest.get(5..5 + len).ok_or_else(|| bad(format!("plane {p} runs past the blob")))?;
        let plane = match codec {
            0 => body.to_vec(),
            1 => rans::decode(body, n, object)?,
            c => return Err(bad(format!("plane {p}: unknown codec {c}"))),
        };
        if plane.len() != n {
            return Err(bad(format!("plane {p} holds {} elements, expected {n}", plane.len())));
        }
        planes.push(plane);
        rest = &rest[5 + len..];
    }
    if rest.len() != raw_length - n * kind.size() {
        return Err(bad(format!("tail of {} bytes, expected {}", rest.len(), raw_length - n * kind.size())));
    }
    let mut out = vec![0u8; raw_length];
    join(kind, &planes, &mut out[..n * kind.size()]);
    out[n * kind.size()..].copy_from_slice(rest);
    Ok(out)
}

/// The exponent field of every whole element, as a histogram over its 2^bits values.
pub fn exponent_histogram(kind: FloatKind, data: &[u8], hist: &mut Vec<u64>) {
    hist.resize(1 << kind.exponent_bits(), 0);
    match kind {
        FloatKind::Bf16 => {
            data.chunks_exact(2).for_each(|c| hist[((u16::from_le_bytes([c[0], c[1]]) >> 7) & 0xff) as usize] += 1)
        }
        FloatKind::F16 => data.chunks_exact(2).for_each(|c| hist[((c[1] >> 2) & 0x1f) as usize] += 1),
        FloatKind::F32 => {
            data.chunks_exact(4).for_each(|c| hist[((c[3] as usize) << 1 | (c[2] >> 7) as usize) & 0xff] += 1)
        }
    }
}

/// The entropy bound in bytes for `elements` floats with this exponent histogram: the Shannon limit of the
/// exponent plane (order-0) plus every sign and mantissa bit kept raw.
pub fn entropy_bound(kind: FloatKind, hist: &[u64]) -> f64 {
    let n: u64 = hist.iter().sum();
    if n == 0 {
        return 0.0;
    }
    let h: f64 = hist.iter().filter(|&&c| c > 0).map(|&c| c as f64 / n as f64).map(|p| -p * p.log2()).sum();
    let raw_bits = (kind.size() * 8) as f64 - kind.exponent_bits() as f64;
    n as f64 * (h + raw_bits) / 8.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::synth::{bf16_bytes, f32_bytes, weights_f32};
    use proptest::prelude::*;

    fn f16_bytes(v: &[f32]) -> Vec<u8> {
        // Truncating conversion, good enough for test data: sign, rebased 5-bit exponent, top 10 mantissa bits.
        v.iter()
            .flat_map(|f| {
                let b = f.to_bits();
                let e = (((b >> 23) & 0xff) as i32 - 127 + 15).clamp(0, 31) as u32;
                ((((b >> 16) & 0x8000) | (e << 10) | ((b >> 13) & 0x3ff)) as u16).to_le_bytes()
            })
            .collect()
    }

    #[test]
    fn weights_shrink_close_to_the_entropy_bound() {
        let w = weights_f32(1 << 18, 7, 0.05);
        for (kind, data) in
            [(FloatKind::Bf16, bf16_bytes(&w)), (FloatKind::F32, f32_bytes(&w)), (FloatKind::F16, f16_bytes(&w))]
        {
            let enc = encode(kind, &data);
            assert_eq!(decode(&enc, data.len(), "t").unwrap(), data);
            let mut hist = Vec::new();
            exponent_histogram(kind, &data, &mut hist);
            let bound = entropy_bound(kind, &hist);
            assert!(enc.len() < data.len(), "{kind:?} did not shrink");
            if kind != FloatKind::F16 {
                // Exponent split: within 3% of the order-0 bound (F16 splits by byte, so its bound differs).
                assert!((enc.len() as f64) < bound * 1.03, "{kind:?}: {} bytes vs bound {bound:.0}", enc.len());
            }
        }
    }

    #[test]
    fn lies_in_the_encoding_are_errors() {
        let data = bf16_bytes(&weights_f32(1000, 3, 0.1));
        let enc = encode(FloatKind::Bf16, &data);
        assert!(decode(&enc, data.len() + 2, "t").is_err(), "longer raw length");
        assert!(decode(&enc[..enc.len() - 1], data.len(), "t").is_err(), "truncated");
        let mut t = enc.clone();
        t[0] = 9;
        assert!(decode(&t, data.len(), "t").is_err(), "unknown transform");
        assert!(decode(&[], 0, "t").is_err());
    }

    proptest! {
        #[test]
        fn round_trips_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..2000), k in 0u8..3) {
            let kind = [FloatKind::Bf16, FloatKind::F16, FloatKind::F32][k as usize];
            let enc = encode(kind, &data);
            prop_assert_eq!(decode(&enc, data.len(), "t").unwrap(), data);
        }

        #[test]
        fn any_encoding_decodes_or_fails_cleanly(enc in proptest::collection::vec(any::<u8>(), 0..300), len in 0usize..600) {
            if let Ok(d) = decode(&enc, len, "t") {
                prop_assert_eq!(d.len(), len);
            }
        }
    }
}
