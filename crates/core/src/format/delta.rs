//! Lossless checkpoint deltas (codec 3). Fine-tuning moves nearly every weight a little, so chunk dedup finds
//! nothing between two checkpoints; but a weight and its successor share sign, exponent and the top mantissa
//! bits, so their XOR is mostly zero bits, which the byte-grouped codec shrinks far below the weight itself.
//!
//! A piece of a tensor is stored as its XOR with the same piece of the newest tensor of the same name, dtype
//! and shape that the tenant already stored (`ops::delta_bases` finds it, whatever file or snapshot it came
//! from), when that is smaller than storing it whole. The ChunkId stays the hash of the piece itself, so dedup,
//! verification and restore see ordinary chunks. Chains are bounded: a delta against a delta is one level
//! deeper, and past the configured depth the piece is stored whole, so a read never follows more than that
//! many bases. The index records each delta's base (index version 2), so prune keeps bases alive.
//!
//! Encoded form: `u8 depth (>= 1) | ChunkId base | u8 inner codec (0 none, 1 zstd, 2 grouped) | inner bytes`,
//! where the inner codec decodes to `piece XOR base` (same length).

use crate::error::{Error, Result};
use crate::format::pack::{self, Codec};
use crate::format::FloatKind;
use crate::ids::ChunkId;

/// Default bound on chain length: every 4th version of a tensor is stored whole.
pub const DEFAULT_MAX_DEPTH: u8 = 4;
const HEADER: usize = 1 + 32 + 1;

#[derive(Debug)]
pub struct Header {
    pub depth: u8,
    pub base: ChunkId,
    pub inner: Codec,
    pub combine: Combine,
}

/// How a piece is predicted from its base; the inner codec stores what the prediction misses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Combine {
    /// `piece XOR base`, byte by byte (any data; what older vaults hold).
    Xor,
    /// Per little-endian 16-bit element, `zigzag(piece - base)`: a weight moved by a small step becomes a
    /// small number, where XOR spreads a carry across many bits. Trailing bytes of no whole element: XOR.
    Sub16,
    /// The same per 32-bit element.
    Sub32,
    /// An F32 piece against the BF16 version of the same tensor (a model kept in both precisions): the
    /// prediction of element `i` is BF16 element `offset + i` of the base, widened (`bits << 16`), and the
    /// inner codec stores `zigzag(piece - prediction)` per element, which needs about 17 bits where a
    /// whole F32 weight needs 26.
    WidenBf16 { offset: u32 },
}

impl Combine {
    /// The combine that suits a same-length delta of this element kind.
    pub fn for_kind(float: Option<FloatKind>) -> Combine {
        match float {
            Some(FloatKind::F32) => Combine::Sub32,
            Some(FloatKind::Bf16 | FloatKind::F16) => Combine::Sub16,
            None => Combine::Xor,
        }
    }

    fn id(self) -> u8 {
        match self {
            Combine::Xor => 0,
            Combine::Sub16 => 1,
            Combine::Sub32 => 2,
            Combine::WidenBf16 { .. } => 3,
        }
    }
}

pub fn parse_header<'a>(enc: &'a [u8], object: &str) -> Result<(Header, &'a [u8])> {
    if enc.len() < HEADER {
        return Err(Error::corrupt(object, "delta header truncated"));
    }
    let depth = enc[0];
    let base = ChunkId(enc[1..33].try_into().expect("32 bytes"));
    let inner = Codec::from_u8(enc[33] & 15).filter(|c| *c != Codec::Delta);
    let (combine, rest) = match enc[33] >> 4 {
        0 => (Combine::Xor, &enc[HEADER..]),
        1 => (Combine::Sub16, &enc[HEADER..]),
        2 => (Combine::Sub32, &enc[HEADER..]),
        3 => {
            let o = enc.get(HEADER..HEADER + 4).ok_or_else(|| Error::corrupt(object, "delta header truncated"))?;
            let offset = u32::from_le_bytes(o.try_into().expect("4 bytes"));
            (Combine::WidenBf16 { offset }, &enc[HEADER + 4..])
        }
        c => return Err(Error::corrupt(object, format!("unknown delta combine {c}"))),
    };
    match inner {
        Some(inner) if depth >= 1 => Ok((Header { depth, base, inner, combine }, rest)),
        _ => Err(Error::corrupt(object, "bad delta header")),
    }
}

fn zigzag32(delta: u32) -> u32 {
    (delta << 1) ^ ((delta as i32) >> 31) as u32
}

fn unzigzag32(zigzag: u32) -> u32 {
    (zigzag >> 1) ^ (zigzag & 1).wrapping_neg()
}

fn zigzag16(delta: u16) -> u16 {
    (delta << 1) ^ ((delta as i16) >> 15) as u16
}

fn unzigzag16(zigzag: u16) -> u16 {
    (zigzag >> 1) ^ (zigzag & 1).wrapping_neg()
}

/// What the inner codec stores for `plain` given `base_plain` (checked by the caller to fit `combine`).
fn residual(plain: &[u8], base_plain: &[u8], combine: Combine) -> Vec<u8> {
    let mut out = vec![0u8; plain.len()];
    match combine {
        Combine::Xor => out.iter_mut().zip(plain.iter().zip(base_plain)).for_each(|(o, (p, b))| *o = p ^ b),
        Combine::Sub16 => {
            for ((o, p), b) in out.chunks_exact_mut(2).zip(plain.chunks_exact(2)).zip(base_plain.chunks_exact(2)) {
                let d = u16::from_le_bytes([p[0], p[1]]).wrapping_sub(u16::from_le_bytes([b[0], b[1]]));
                o.copy_from_slice(&zigzag16(d).to_le_bytes());
            }
            xor_tail(&mut out, plain, base_plain, 2);
        }
        Combine::Sub32 => {
            for ((o, p), b) in out.chunks_exact_mut(4).zip(plain.chunks_exact(4)).zip(base_plain.chunks_exact(4)) {
                let d = u32::from_le_bytes(p.try_into().expect("4"))
                    .wrapping_sub(u32::from_le_bytes(b.try_into().expect("4")));
                o.copy_from_slice(&zigzag32(d).to_le_bytes());
            }
            xor_tail(&mut out, plain, base_plain, 4);
        }
        Combine::WidenBf16 { offset } => {
            let narrow = &base_plain[2 * offset as usize..];
            for ((o, p), b) in out.chunks_exact_mut(4).zip(plain.chunks_exact(4)).zip(narrow.chunks_exact(2)) {
                let predicted = (u16::from_le_bytes([b[0], b[1]]) as u32) << 16;
                let d = u32::from_le_bytes(p.try_into().expect("4")).wrapping_sub(predicted);
                o.copy_from_slice(&zigzag32(d).to_le_bytes());
            }
        }
    }
    out
}

/// The bytes after the last whole element: XOR.
fn xor_tail(out: &mut [u8], plain: &[u8], base: &[u8], size: usize) {
    let whole = plain.len() / size * size;
    for i in whole..plain.len() {
        out[i] = plain[i] ^ base[i];
    }
}

/// Whether `base_plain` (of `base_len` bytes) can predict a piece of `len` bytes this way.
pub fn fits(combine: Combine, len: usize, base_len: usize) -> bool {
    match combine {
        Combine::WidenBf16 { offset } => {
            len.is_multiple_of(4)
                && (offset as usize).checked_add(len / 4).and_then(|e| e.checked_mul(2)).is_some_and(|b| b <= base_len)
        }
        _ => len == base_len,
    }
}

/// Encode `plain` as a delta against `base_plain` at `depth`; `combine` must [`fits`] their lengths.
pub fn encode(
    plain: &[u8],
    base: &ChunkId,
    base_plain: &[u8],
    combine: Combine,
    depth: u8,
    level: i32,
    float: Option<FloatKind>,
) -> Vec<u8> {
    // A widened prediction's residual is F32-sized and shaped like a same-width one.
    let (inner, body) = pack::encode_as(&residual(plain, base_plain, combine), level, float);
    let mut out = Vec::with_capacity(HEADER + 4 + body.len());
    out.push(depth);
    out.extend_from_slice(&base.0);
    out.push(inner as u8 | (combine.id() << 4));
    if let Combine::WidenBf16 { offset } = combine {
        out.extend_from_slice(&offset.to_le_bytes());
    }
    out.extend_from_slice(&body);
    out
}

/// Undo a delta given its base's plaintext.
pub fn decode(header: &Header, body: &[u8], base_plain: &[u8], raw_length: u32, object: &str) -> Result<Vec<u8>> {
    if !fits(header.combine, raw_length as usize, base_plain.len()) {
        return Err(Error::corrupt(object, "delta base does not fit the piece"));
    }
    let mut x = pack::decode(header.inner, body.to_vec(), raw_length, object)?;
    match header.combine {
        Combine::Xor => x.iter_mut().zip(base_plain).for_each(|(o, b)| *o ^= b),
        Combine::Sub16 => {
            for (o, b) in x.chunks_exact_mut(2).zip(base_plain.chunks_exact(2)) {
                let v = unzigzag16(u16::from_le_bytes([o[0], o[1]])).wrapping_add(u16::from_le_bytes([b[0], b[1]]));
                o.copy_from_slice(&v.to_le_bytes());
            }
            let whole = x.len() / 2 * 2;
            x[whole..].iter_mut().zip(&base_plain[whole..]).for_each(|(o, b)| *o ^= b);
        }
        Combine::Sub32 => {
            for (o, b) in x.chunks_exact_mut(4).zip(base_plain.chunks_exact(4)) {
                let v = unzigzag32(u32::from_le_bytes(o[..4].try_into().expect("4")))
                    .wrapping_add(u32::from_le_bytes(b.try_into().expect("4")));
                o.copy_from_slice(&v.to_le_bytes());
            }
            let whole = x.len() / 4 * 4;
            x[whole..].iter_mut().zip(&base_plain[whole..]).for_each(|(o, b)| *o ^= b);
        }
        Combine::WidenBf16 { offset } => {
            let narrow = &base_plain[2 * offset as usize..];
            for (o, b) in x.chunks_exact_mut(4).zip(narrow.chunks_exact(2)) {
                let predicted = (u16::from_le_bytes([b[0], b[1]]) as u32) << 16;
                let v = unzigzag32(u32::from_le_bytes(o[..4].try_into().expect("4"))).wrapping_add(predicted);
                o.copy_from_slice(&v.to_le_bytes());
            }
        }
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{f32_bytes, weights_f32};

    #[test]
    fn a_nudged_tensor_stores_far_smaller_as_a_delta() {
        let w = weights_f32(1 << 16, 5, 0.05);
        let nudged: Vec<f32> = w.iter().zip(weights_f32(1 << 16, 6, 1.0)).map(|(a, n)| a - 2e-5 * n).collect();
        let (base, new) = (f32_bytes(&w), f32_bytes(&nudged));
        let id = ChunkId([7; 32]);
        let d = encode(&new, &id, &base, Combine::Sub32, 1, 3, Some(FloatKind::F32));
        let x = encode(&new, &id, &base, Combine::Xor, 1, 3, Some(FloatKind::F32));
        let (full_codec, full) = pack::encode_as(&new, 3, Some(FloatKind::F32));
        assert_eq!(full_codec, Codec::Grouped);
        assert!(d.len() * 10 < full.len() * 7, "delta {} vs whole {}", d.len(), full.len());
        // A difference keeps a carry in the low bits, where XOR spreads it across the element.
        assert!(d.len() < x.len(), "difference {} vs XOR {}", d.len(), x.len());
        let (h, body) = parse_header(&d, "t").unwrap();
        assert_eq!((h.depth, h.base, h.combine), (1, id, Combine::Sub32));
        assert_eq!(decode(&h, body, &base, new.len() as u32, "t").unwrap(), new);
        assert!(decode(&h, body, &base[2..], new.len() as u32, "t").is_err());
        assert!(parse_header(&d[..20], "t").is_err());
        let mut bad = d.clone();
        bad[0] = 0;
        assert!(parse_header(&bad, "t").is_err(), "depth 0");
        bad[0] = 1;
        bad[33] = 3;
        assert!(parse_header(&bad, "t").is_err(), "a delta inside a delta");
        bad[33] = 0x42;
        assert!(parse_header(&bad, "t").unwrap_err().to_string().contains("unknown delta combine 4"));
    }

    /// A model kept in F32 and in BF16: the F32 weights against their BF16 cast need little more than the
    /// 16 bits the cast dropped.
    #[test]
    fn an_f32_tensor_stores_small_against_its_bf16_cast() {
        let w = weights_f32(1 << 16, 9, 0.05);
        let f32b = f32_bytes(&w);
        let bf16: Vec<u8> = w
            .iter()
            .flat_map(|v| {
                let b = v.to_bits();
                (((b + 0x7fff + ((b >> 16) & 1)) >> 16) as u16).to_le_bytes()
            })
            .collect();
        let id = ChunkId([3; 32]);
        // The second half of the F32 elements against the BF16 piece that holds them all.
        let half = &f32b[f32b.len() / 2..];
        let combine = Combine::WidenBf16 { offset: (w.len() / 2) as u32 };
        assert!(fits(combine, half.len(), bf16.len()));
        assert!(!fits(combine, half.len() + 4, bf16.len()), "one element past the base");
        assert!(!fits(Combine::WidenBf16 { offset: u32::MAX }, half.len(), bf16.len()));
        let d = encode(half, &id, &bf16, combine, 1, 3, Some(FloatKind::F32));
        let (_, whole) = pack::encode_as(half, 3, Some(FloatKind::F32));
        assert!(d.len() * 10 < whole.len() * 7, "widened delta {} vs whole {}", d.len(), whole.len());
        let (h, body) = parse_header(&d, "t").unwrap();
        assert_eq!(h.combine, combine);
        assert_eq!(decode(&h, body, &bf16, half.len() as u32, "t").unwrap(), half);
        assert!(decode(&h, body, &bf16[..bf16.len() - 2], half.len() as u32, "t").is_err());
        assert!(parse_header(&d[..HEADER + 2], "t").is_err(), "offset truncated");
    }

    proptest::proptest! {
        #[test]
        fn every_combine_round_trips(
            plain in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
            noise in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1300),
            offset in 0u32..40,
        ) {
            let id = ChunkId([1; 32]);
            for (combine, float) in [
                (Combine::Xor, None),
                (Combine::Sub16, Some(FloatKind::Bf16)),
                (Combine::Sub32, Some(FloatKind::F32)),
                (Combine::WidenBf16 { offset }, Some(FloatKind::F32)),
            ] {
                let plain = match combine {
                    Combine::WidenBf16 { .. } => &plain[..plain.len() / 4 * 4],
                    _ => &plain[..],
                };
                let mut base = noise.clone();
                base.resize(match combine { Combine::WidenBf16 { .. } => base.len().max(2 * offset as usize + plain.len() / 2), _ => plain.len() }, 0);
                proptest::prop_assert!(fits(combine, plain.len(), base.len()));
                let d = encode(plain, &id, &base, combine, 2, 1, float);
                let (h, body) = parse_header(&d, "t").unwrap();
                proptest::prop_assert_eq!(decode(&h, body, &base, plain.len() as u32, "t").unwrap(), plain);
            }
        }
    }
}
