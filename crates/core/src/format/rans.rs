//! A static order-0 rANS entropy coder for the planes of the byte-grouped codec.
//!
//! Why not zstd alone: an exponent plane is a stream of nearly independent symbols from a skewed alphabet
//! (about 2.7 bits of information per byte on real weights). zstd's LZ stage finds spurious short matches in
//! such a stream and its Huffman stage rounds code lengths to whole bits; measured on MiniLM's BF16 exponents,
//! zstd -1 lands 9% above the Shannon limit and zstd -3 22% above. rANS with 14-bit frequencies comes within a
//! fraction of a percent. (The `rans` crate wraps C code behind an unsafe-looking API and the `ans` crate says
//! it is not tuned for speed, so this small coder, after ryg_rans's byte-wise design, lives here.)
//!
//! Encoded form: `u16 symbol_count | symbol_count x (u8 symbol | u16 frequency) | stream`, frequencies summing
//! to 2^14. Two interleaved 32-bit states (even and odd positions) let the CPU overlap the two dependency chains.
//! The stream is what the decoder reads front to back: the two final states (u32 LE each), then
//! renormalisation bytes. The decoder checks that the table sums to 2^14, that it never reads past the end, that
//! it consumes every byte, and that both states end where the encoder started them.

use crate::error::{Error, Result};

const SCALE: u32 = 14;
const M: u32 = 1 << SCALE;
/// Lower bound of the normalised state interval [L, 256 L).
const L: u32 = 1 << 23;

/// Frequencies summing to M, every symbol present in `hist` (which must not be empty) getting at least 1.
fn normalise(hist: &[u64; 256], n: u64) -> [u32; 256] {
    let mut f = [0u32; 256];
    let mut total = 0i64;
    for s in 0..256 {
        if hist[s] > 0 {
            f[s] = ((hist[s] as u128 * M as u128 / n as u128) as u32).max(1);
            total += f[s] as i64;
        }
    }
    // Give or take the rounding difference from the symbols that can best afford it.
    let mut diff = M as i64 - total;
    while diff != 0 {
        let mut order: Vec<usize> = (0..256).filter(|&s| f[s] > 0).collect();
        order.sort_by_key(|&s| std::cmp::Reverse(f[s]));
        for &s in &order {
            if diff > 0 {
                f[s] += 1;
                diff -= 1;
            } else if diff < 0 && f[s] > 1 {
                f[s] -= 1;
                diff += 1;
            }
            if diff == 0 {
                break;
            }
        }
    }
    f
}

/// The cost in bytes of coding `n` symbols with this histogram (the order-0 entropy), for choosing a codec
/// without coding.
pub fn estimate(hist: &[u64; 256], n: u64) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let bits: f64 = hist.iter().filter(|&&c| c > 0).map(|&c| c as f64 * (n as f64 / c as f64).log2()).sum();
    bits / 8.0
}

pub fn histogram(data: &[u8]) -> [u64; 256] {
    // Four tables break the store-to-load dependency when neighbouring bytes repeat.
    let mut h = [[0u64; 256]; 4];
    let mut it = data.chunks_exact(4);
    for c in &mut it {
        h[0][c[0] as usize] += 1;
        h[1][c[1] as usize] += 1;
        h[2][c[2] as usize] += 1;
        h[3][c[3] as usize] += 1;
    }
    for &b in it.remainder() {
        h[0][b as usize] += 1;
    }
    let mut out = [0u64; 256];
    for (s, o) in out.iter_mut().enumerate() {
        *o = h[0][s] + h[1][s] + h[2][s] + h[3][s];
    }
    out
}

/// Per-symbol encoder constants (after ryg_rans): `x -> (x / f) * M + x % f + start` computed as
/// `x + bias + q * (M - f)` with `q = x / f` from a reciprocal, exact for every state below 2^31.
struct EncSymbol {
    x_max: u32,
    rcp: u32,
    shift: u32,
    bias: u32,
    cmpl: u32,
}

impl EncSymbol {
    fn new(start: u32, freq: u32) -> Self {
        let x_max = ((L >> SCALE) << 8).wrapping_mul(freq);
        let cmpl = M - freq.min(M);
        if freq < 2 {
            // q = x - 1 for freq 1 (and unused for symbols that never occur).
            EncSymbol { x_max, rcp: u32::MAX, shift: 0, bias: start + M - 1, cmpl }
        } else {
            let mut shift = 0;
            while freq > (1u32 << shift) {
                shift += 1;
            }
            let rcp = (1u64 << (shift + 31)).div_ceil(freq as u64) as u32;
            EncSymbol { x_max, rcp, shift: shift - 1, bias: start, cmpl }
        }
    }
}

pub fn encode(data: &[u8], hist: &[u64; 256]) -> Vec<u8> {
    if data.is_empty() {
        // No symbols, no table: a zero count and nothing else.
        return vec![0, 0];
    }
    let freq = normalise(hist, data.len().max(1) as u64);
    let mut start = [0u32; 256];
    let mut acc = 0;
    for s in 0..256 {
        start[s] = acc;
        acc += freq[s];
    }
    let syms: Vec<EncSymbol> = (0..256).map(|s| EncSymbol::new(start[s], freq[s])).collect();
    let present: Vec<usize> = (0..256).filter(|&s| freq[s] > 0).collect();
    let mut out = Vec::with_capacity(2 + present.len() * 3 + data.len() / 2 + 8);
    out.extend_from_slice(&(present.len() as u16).to_le_bytes());
    for &s in &present {
        out.push(s as u8);
        out.extend_from_slice(&(freq[s] as u16).to_le_bytes());
    }
    // rANS encodes backwards; the bytes are produced in reverse and flipped once at the end. Symbols at even
    // positions go through state 0 and odd ones through state 1.
    let mut rev = Vec::with_capacity(data.len() / 2 + 8);
    let mut x = [L, L];
    let step = |xi: &mut u32, s: u8, rev: &mut Vec<u8>| {
        let e = &syms[s as usize];
        while *xi >= e.x_max {
            rev.push(*xi as u8);
            *xi >>= 8;
        }
        // x / freq by multiplying with a precomputed reciprocal: a division per symbol would dominate.
        let q = (((*xi as u64) * e.rcp as u64) >> 32) as u32 >> e.shift;
        *xi = xi.wrapping_add(e.bias).wrapping_add(q.wrapping_mul(e.cmpl));
    };
    let pairs = data.len() / 2;
    if data.len() % 2 == 1 {
        step(&mut x[0], data[data.len() - 1], &mut rev);
    }
    for p in data[..pairs * 2].chunks_exact(2).rev() {
        step(&mut x[1], p[1], &mut rev);
        step(&mut x[0], p[0], &mut rev);
    }
    rev.extend_from_slice(&x[1].to_be_bytes());
    rev.extend_from_slice(&x[0].to_be_bytes());
    // The flip puts x0 first and turns each big-endian state into little-endian reading order.
    rev.reverse();
    out.extend_from_slice(&rev);
    out
}

/// Decode `n` symbols; `object` names the blob in errors.
pub fn decode(enc: &[u8], n: usize, object: &str) -> Result<Vec<u8>> {
    let bad = |why: &str| Error::corrupt(object, format!("rANS plane: {why}"));
    let count = enc.get(..2).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize).ok_or_else(|| bad("no table"))?;
    if count == 0 && n == 0 && enc.len() == 2 {
        return Ok(Vec::new());
    }
    if count == 0 || count > 256 {
        return Err(bad("symbol count out of range"));
    }
    let table = enc.get(2..2 + 3 * count).ok_or_else(|| bad("table truncated"))?;
    // The slot -> symbol table is 16 KiB of bytes (it stays in L1 cache, where a table of (symbol, frequency,
    // start) tuples would take 192 KiB); frequency and start are looked up per symbol in 1 KiB arrays.
    let mut freq = [0u32; 256];
    let mut start = [0u32; 256];
    let mut sym = [0u8; M as usize];
    let mut acc = 0u32;
    for e in table.chunks_exact(3) {
        let (s, f) = (e[0] as usize, u16::from_le_bytes([e[1], e[2]]) as u32);
        if f == 0 || freq[s] != 0 || acc + f > M {
            return Err(bad("bad frequency table"));
        }
        freq[s] = f;
        start[s] = acc;
        sym[acc as usize..(acc + f) as usize].fill(s as u8);
        acc += f;
    }
    if acc != M {
        return Err(bad("frequencies do not sum to 2^14"));
    }
    let stream = &enc[2 + 3 * count..];
    let rd = |p: usize| stream.get(p..p + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let (Some(x0), Some(x1)) = (rd(0), rd(4)) else {
        return Err(bad("stream too short"));
    };
    let mut x = [x0, x1];
    let mut pos = 8;
    let mut step = |xi: &mut u32| -> Option<u8> {
        let slot = *xi & (M - 1);
        let s = sym[slot as usize];
        *xi = freq[s as usize] * (*xi >> SCALE) + slot - start[s as usize];
        while *xi < L {
            *xi = (*xi << 8) | *stream.get(pos)? as u32;
            pos += 1;
        }
        Some(s)
    };
    let mut out = vec![0u8; n];
    let mut pairs = out.chunks_exact_mut(2);
    for p in &mut pairs {
        p[0] = step(&mut x[0]).ok_or_else(|| bad("stream ends early"))?;
        p[1] = step(&mut x[1]).ok_or_else(|| bad("stream ends early"))?;
    }
    if let [last] = pairs.into_remainder() {
        *last = step(&mut x[0]).ok_or_else(|| bad("stream ends early"))?;
    }
    if pos != stream.len() || x != [L, L] {
        return Err(bad("stream does not end where it should"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn skewed_data_lands_at_its_entropy() {
        let mut x = 7u64;
        let data: Vec<u8> = (0..1 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Roughly geometric: like exponents of weights.
                120 + (x % 64).trailing_zeros().min(9) as u8
            })
            .collect();
        let h = histogram(&data);
        let enc = encode(&data, &h);
        let bound = estimate(&h, data.len() as u64);
        assert!((enc.len() as f64) < bound * 1.005 + 64.0, "{} bytes vs entropy {bound:.0}", enc.len());
        assert_eq!(decode(&enc, data.len(), "t").unwrap(), data);
    }

    #[test]
    fn corrupt_streams_are_errors() {
        let data = b"abracadabra, abracadabra".repeat(20);
        let enc = encode(&data, &histogram(&data));
        assert!(decode(&enc[..enc.len() - 1], data.len(), "t").is_err());
        assert!(decode(&enc, data.len() + 1, "t").is_err());
        let mut t = enc.clone();
        t[4] ^= 1;
        assert!(decode(&t, data.len(), "t").is_err(), "table no longer sums to 2^14");
    }

    proptest! {
        #[test]
        fn round_trips(data in proptest::collection::vec(0u8..6, 0..3000), wide in proptest::collection::vec(any::<u8>(), 0..300)) {
            for d in [&data, &wide] {
                let enc = encode(d, &histogram(d));
                prop_assert_eq!(&decode(&enc, d.len(), "t").unwrap(), d);
            }
        }

        #[test]
        fn any_bytes_decode_or_fail_cleanly(enc in proptest::collection::vec(any::<u8>(), 0..200), n in 0usize..100) {
            if let Ok(d) = decode(&enc, n, "t") {
                prop_assert_eq!(d.len(), n);
            }
        }
    }
}
