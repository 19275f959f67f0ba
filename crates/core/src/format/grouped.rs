//! The byte-grouped float codec (codec 2). Float weights barely compress as they are: each element's exponent
//! (a few bits of real information, most values near 1/sqrt(fan-in)) is interleaved with mantissa bits that are
//! close to random. Pulling the exponents into a plane of their own gives an entropy coder (format/rans.rs) a
//! skewed alphabet it shrinks to within a fraction of a percent of its Shannon limit, while planes that would
//! not shrink (the low mantissa bytes) are kept raw without being coded at all.
//!
//! Encoded form (documented in docs/FORMAT.md):
//! `u8 transform | per plane: u8 plane_codec (0 raw, 2 rANS, 3 Huffman; 1 older rANS, read only) | u32 length | bytes`
//! then the tail, the `raw_length % element_size` bytes that do not make a whole element, raw. Each plane
//! holds one byte per element. Transforms, with planes in order:
//! - 1 BF16: exponent (8 bits); sign and 7 mantissa bits.
//! - 2 F16: high byte (sign, 5 exponent bits, 2 mantissa bits); low byte.
//! - 3 F32: exponent (8 bits); sign and mantissa bits 22-16; mantissa bits 15-8; mantissa bits 7-0.

use super::{huffman, rans};
use crate::error::{Error, Result};
use crate::format::FloatKind;

fn transform_id(kind: FloatKind) -> u8 {
    match kind {
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

thread_local! {
    /// Plane buffers kept per thread: a chunk's planes are as big as the chunk, and fresh buffers for every
    /// chunk cost the kernel a page fault and a page clear per 4 KiB, a sixth of the codec's time.
    static PLANES: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Split whole elements into planes (one byte per element per plane), in one pass over the data.
#[cfg(test)]
fn split(kind: FloatKind, data: &[u8]) -> Vec<Vec<u8>> {
    let mut planes = Vec::new();
    split_into(kind, data, &mut planes);
    planes
}

/// [`split`] into reused buffers.
fn split_into(kind: FloatKind, data: &[u8], planes: &mut Vec<Vec<u8>>) {
    let n = data.len() / kind.size();
    planes.resize_with(kind.size(), Vec::new);
    for p in planes.iter_mut() {
        p.clear();
        p.resize(n, 0);
    }
    match kind {
        FloatKind::Bf16 => {
            let [e, sm] = &mut planes[..] else { unreachable!("two planes") };
            // On whole elements: one 16-bit load per element rather than two byte loads (measured faster).
            for ((c, e), sm) in data.chunks_exact(2).zip(e.iter_mut()).zip(sm.iter_mut()) {
                let v = u16::from_le_bytes([c[0], c[1]]);
                *e = ((v >> 7) & 0xff) as u8;
                *sm = (((v >> 8) & 0x80) | (v & 0x7f)) as u8;
            }
        }
        FloatKind::F16 => {
            let [hi, lo] = &mut planes[..] else { unreachable!("two planes") };
            for ((c, hi), lo) in data.chunks_exact(2).zip(hi.iter_mut()).zip(lo.iter_mut()) {
                *hi = c[1];
                *lo = c[0];
            }
        }
        FloatKind::F32 => {
            let [e, sm, m1, m0] = &mut planes[..] else { unreachable!("four planes") };
            let planes = e.iter_mut().zip(sm.iter_mut()).zip(m1.iter_mut().zip(m0.iter_mut()));
            for (c, ((e, sm), (m1, m0))) in data.chunks_exact(4).zip(planes) {
                let v = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                *e = (v >> 23) as u8;
                *sm = (((v >> 24) & 0x80) | ((v >> 16) & 0x7f)) as u8;
                *m1 = (v >> 8) as u8;
                *m0 = v as u8;
            }
        }
    }
}

/// Interleave planes back into elements.
fn join(kind: FloatKind, planes: &[&[u8]], out: &mut [u8]) {
    match kind {
        FloatKind::Bf16 => {
            for ((o, &e), &sm) in out.chunks_exact_mut(2).zip(planes[0].iter()).zip(planes[1].iter()) {
                let v = ((sm as u16 & 0x80) << 8) | ((e as u16) << 7) | (sm as u16 & 0x7f);
                o.copy_from_slice(&v.to_le_bytes());
            }
        }
        FloatKind::F16 => {
            for ((o, &hi), &lo) in out.chunks_exact_mut(2).zip(planes[0].iter()).zip(planes[1].iter()) {
                o[0] = lo;
                o[1] = hi;
            }
        }
        FloatKind::F32 => {
            let planes = planes[0].iter().zip(planes[1].iter()).zip(planes[2].iter().zip(planes[3].iter()));
            for (o, ((&e, &sm), (&m1, &m0))) in out.chunks_exact_mut(4).zip(planes) {
                let (e, sm) = (e as u32, sm as u32);
                let v = ((sm & 0x80) << 24) | (e << 23) | ((sm & 0x7f) << 16) | ((m1 as u32) << 8) | m0 as u32;
                o.copy_from_slice(&v.to_le_bytes());
            }
        }
    }
}

/// Encode `data` as float elements of `kind`. Each plane is entropy-coded where its order-0 entropy
/// (measured first, which costs only a histogram) promises a gain of at least 2%, and kept raw otherwise or
/// when coding did not pay. The caller compares the result with the other codecs and keeps the smallest.
pub fn encode(kind: FloatKind, data: &[u8]) -> Vec<u8> {
    let whole = data.len() / kind.size() * kind.size();
    // Never more than the data, the plane headers and a rANS table per plane: one allocation, no regrowth.
    let mut out = Vec::with_capacity(data.len() + 1024);
    out.push(transform_id(kind));
    let mut planes = PLANES.with(|p| p.take());
    split_into(kind, &data[..whole], &mut planes);
    for plane in &planes {
        let start = out.len();
        out.extend_from_slice(&[0; 5]);
        let mut codec = code_plane(plane, &mut out);
        if codec == 0 || out.len() - start - 5 >= plane.len() {
            out.truncate(start + 5);
            out.extend_from_slice(plane);
            codec = 0;
        }
        let len = (out.len() - start - 5) as u32;
        out[start] = codec;
        out[start + 1..start + 5].copy_from_slice(&len.to_le_bytes());
    }
    out.extend_from_slice(&data[whole..]);
    give_back(planes);
    out
}

/// Entropy-code `plane` onto `out` and return its plane codec, or return 0 (raw) having written nothing.
fn code_plane(plane: &[u8], out: &mut Vec<u8>) -> u8 {
    // Near-random mantissa planes are the common case: a histogram of a sample tells them apart for a
    // sixteenth of the cost, and only a promising plane pays for the full histogram.
    let mut sample = [0u64; 256];
    plane.iter().step_by(16).for_each(|&b| sample[b as usize] += 1);
    let sampled = plane.len().div_ceil(16);
    // Coding must promise a 2% gain beyond its table (800 bytes at most).
    let promising =
        |hist: &[u64; 256], n: usize, table: f64| n > 0 && rans::estimate(hist, n as u64) + table < n as f64 * 0.98;
    if plane.len() >= 4096 && !promising(&sample, sampled, 800.0 / 16.0) {
        return 0;
    }
    let hist = rans::histogram(plane);
    if !promising(&hist, plane.len(), 800.0) {
        return 0;
    }
    // Huffman where it costs under 1% of the plane more than rANS would: it decodes several symbols per
    // table lookup, two to three times as fast.
    let rans_bytes = rans::estimate(&hist, plane.len() as u64) + rans::table_bytes(&hist);
    match huffman::worth_it(&hist, plane.len(), rans_bytes) {
        Some(lengths) => {
            huffman::encode_into(plane, &lengths, out);
            3
        }
        None => {
            out.extend_from_slice(&rans::encode(plane, &hist));
            2
        }
    }
}

/// Return plane buffers to this thread's pool, unless they are too big to keep around.
fn give_back(planes: Vec<Vec<u8>>) {
    if planes.iter().map(Vec::capacity).sum::<usize>() <= KEEP_MAX {
        PLANES.with(|p| p.replace(planes));
    }
}

/// The most plane buffer bytes a thread keeps between chunks (chunks are at most 8 MiB).
const KEEP_MAX: usize = 16 << 20;

/// Decode a grouped blob of `raw_length` bytes. Any inconsistency (unknown transform, a plane of the wrong
/// length, trailing or missing bytes) is an error naming `object`.
pub fn decode(encoded: &[u8], raw_length: usize, object: &str) -> Result<Vec<u8>> {
    let bad = |why: String| Error::corrupt(object, format!("grouped codec: {why}"));
    let (&t, mut rest) = encoded.split_first().ok_or_else(|| bad("empty".into()))?;
    let kind = transform_kind(t).ok_or_else(|| bad(format!("unknown transform {t}")))?;
    let n = raw_length / kind.size();
    let mut decoded = PLANES.with(|p| p.take());
    decoded.resize_with(kind.size(), Vec::new);
    let mut raw: Vec<Option<&[u8]>> = vec![None; kind.size()];
    for p in 0..kind.size() {
        if rest.len() < 5 {
            return Err(bad(format!("plane {p} header missing")));
        }
        let codec = rest[0];
        let len = u32::from_le_bytes(rest[1..5].try_into().expect("4 bytes")) as usize;
        let body = rest.get(5..5 + len).ok_or_else(|| bad(format!("plane {p} runs past the blob")))?;
        match codec {
            0 => raw[p] = Some(body),
            1 => decoded[p] = rans::decode_v1(body, n, object)?,
            2 => rans::decode_into(body, n, object, &mut decoded[p])?,
            3 => huffman::decode_into(body, n, object, &mut decoded[p])?,
            c => return Err(bad(format!("plane {p}: unknown codec {c}"))),
        };
        let got = raw[p].map_or(decoded[p].len(), <[u8]>::len);
        if got != n {
            return Err(bad(format!("plane {p} holds {got} elements, expected {n}")));
        }
        rest = &rest[5 + len..];
    }
    if rest.len() != raw_length - n * kind.size() {
        return Err(bad(format!("tail of {} bytes, expected {}", rest.len(), raw_length - n * kind.size())));
    }
    let planes: Vec<&[u8]> = raw.iter().zip(&decoded).map(|(r, d)| r.unwrap_or(d)).collect();
    let mut out = vec![0u8; raw_length];
    join(kind, &planes, &mut out[..n * kind.size()]);
    out[n * kind.size()..].copy_from_slice(rest);
    give_back(decoded);
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
    use crate::synth::{bf16_bytes, f32_bytes, weights_f32};
    use proptest::prelude::*;

    fn f16_bytes(values: &[f32]) -> Vec<u8> {
        // Truncating conversion, good enough for test data: sign, rebased 5-bit exponent, top 10 mantissa bits.
        values
            .iter()
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
                // The exponent plane (the first) takes the fast Huffman coder, at under 1% of the bound's cost.
                assert_eq!(enc[1], 3, "{kind:?} exponent plane codec");
                // Exponent split: within 3% of the order-0 bound (F16 splits by byte, so its bound differs).
                assert!((enc.len() as f64) < bound * 1.03, "{kind:?}: {} bytes vs bound {bound:.0}", enc.len());
            }
        }
    }

    /// A plane where one symbol dominates (a delta's high bytes, say) would waste most of a bit per symbol in
    /// a prefix code: it takes rANS, and exponent planes take Huffman (above).
    #[test]
    fn skewed_planes_take_rans() {
        let data: Vec<u8> = (0..20_000u32).flat_map(|i| [(i * 7) as u8, if i % 37 == 0 { 1u8 } else { 0 }]).collect();
        let enc = encode(FloatKind::F16, &data);
        assert_eq!(enc[1], 2, "the mostly-zero high-byte plane");
        assert_eq!(decode(&enc, data.len(), "t").unwrap(), data);
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

    #[test]
    fn blobs_with_older_rans_planes_still_decode() {
        let data = bf16_bytes(&weights_f32(5000, 5, 0.05));
        let exponents: Vec<u8> = split(FloatKind::Bf16, &data).swap_remove(0);
        let old = rans::encode_v1(&exponents, &rans::histogram(&exponents));
        let new = encode(FloatKind::Bf16, &data);
        assert_eq!(new[1], 2, "the exponent plane is written as codec 2");
        let len = u32::from_le_bytes(new[2..6].try_into().unwrap()) as usize;
        let mut blob = vec![1u8, 1];
        blob.extend_from_slice(&(old.len() as u32).to_le_bytes());
        blob.extend_from_slice(&old);
        blob.extend_from_slice(&new[6 + len..]);
        assert_eq!(decode(&blob, data.len(), "t").unwrap(), data);
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
