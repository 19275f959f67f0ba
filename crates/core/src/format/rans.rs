//! Static order-0 rANS entropy coders for the planes of the byte-grouped codec.
//!
//! Why not zstd alone: an exponent plane is a stream of nearly independent symbols from a skewed alphabet
//! (about 2.7 bits of information per byte on real weights). zstd's LZ stage finds spurious short matches in
//! such a stream and its Huffman stage rounds code lengths to whole bits; measured on MiniLM's BF16 exponents,
//! zstd -1 lands 9% above the Shannon limit and zstd -3 22% above. rANS comes within a fraction of a percent.
//! (The `rans` crate wraps C code behind an unsafe-looking API and the `ans` crate says it is not tuned for
//! speed, so this small coder, after ryg_rans's design, lives here.)
//!
//! Two stream formats, both in docs/FORMAT.md:
//! - plane codec 2, [`encode`]/[`decode`], written today: 12-bit frequencies, four interleaved 32-bit states
//!   renormalised 16 bits at a time. A state needs at most one renormalisation per symbol, so both directions
//!   run without data-dependent branches, and the decoder's slot table (one u32 per slot: symbol, frequency,
//!   offset) is 16 KiB, which stays in L1 cache. Four independent dependency chains keep the core busy.
//! - plane codec 1, [`decode_v1`], read only (vaults written before codec 2): 14-bit frequencies, two states,
//!   byte-wise renormalisation.
//!
//! Both decoders check the table sums to its scale, never read past the end, consume every byte, and end with
//! every state where the encoder started it.

use crate::error::{Error, Result};

/// Codec 2: frequencies sum to 2^12; states live in [2^15, 2^31) and move 16 bits at a time.
const SCALE: u32 = 12;
const M: u32 = 1 << SCALE;
const L: u32 = 1 << 15;
const LANES: usize = 4;

/// Codec 1 (read only): frequencies sum to 2^14; states live in [2^23, 2^31) and move a byte at a time.
const SCALE_V1: u32 = 14;
const M_V1: u32 = 1 << SCALE_V1;
const L_V1: u32 = 1 << 23;

/// Frequencies summing to `target`, every symbol present in `hist` (which must not be empty) getting at least 1.
fn normalise(hist: &[u64; 256], count: u64, target: u32) -> [u32; 256] {
    let mut f = [0u32; 256];
    let mut total = 0i64;
    for s in 0..256 {
        if hist[s] > 0 {
            f[s] = ((hist[s] as u128 * target as u128 / count as u128) as u32).max(1);
            total += f[s] as i64;
        }
    }
    // Give or take the rounding difference from the symbols that can best afford it.
    let mut diff = target as i64 - total;
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

/// The cost in bytes of coding `total` symbols with this histogram (the order-0 entropy), for choosing a codec
/// without coding.
pub fn estimate(hist: &[u64; 256], total: u64) -> f64 {
    if total == 0 {
        return 0.0;
    }
    let bits: f64 = hist.iter().filter(|&&c| c > 0).map(|&c| c as f64 * (total as f64 / c as f64).log2()).sum();
    bits / 8.0
}

/// The bytes a codec 2 plane spends besides its coded symbols: its table and final states.
pub fn table_bytes(hist: &[u64; 256]) -> f64 {
    (2 + 3 * hist.iter().filter(|&&c| c > 0).count() + 4 * LANES) as f64
}

pub fn histogram(data: &[u8]) -> [u64; 256] {
    let mut out = [0u64; 256];
    // u32 counters keep the tables small; a block of 2^30 bytes cannot overflow them.
    for block in data.chunks(1 << 30) {
        // Eight tables break the store-to-load dependency when nearby bytes repeat, as exponents do.
        let mut h = [[0u32; 256]; 8];
        let mut it = block.chunks_exact(8);
        for c in &mut it {
            let v = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            for (k, t) in h.iter_mut().enumerate() {
                t[(v >> (8 * k)) as u8 as usize] += 1;
            }
        }
        for &b in it.remainder() {
            h[0][b as usize] += 1;
        }
        for t in &h {
            for (o, &c) in out.iter_mut().zip(t) {
                *o += u64::from(c);
            }
        }
    }
    out
}

/// Per-symbol encoder constants (after ryg_rans): `x -> (x / f) * M + x % f + start` computed as
/// `x + bias + q * (M - f)` with `q = x / f` from a reciprocal, exact for every state below 2^31.
/// `x_max` is where a state must first shed `renorm_bits` (16 for codec 2, 8 for codec 1).
struct EncSymbol {
    x_max: u32,
    rcp: u32,
    shift: u32,
    bias: u32,
    cmpl: u32,
}

impl EncSymbol {
    fn new(start: u32, freq: u32, scale: u32, lower: u32, renorm_bits: u32) -> Self {
        let m = 1 << scale;
        let x_max = ((lower >> scale) << renorm_bits).wrapping_mul(freq);
        let cmpl = m - freq.min(m);
        if freq < 2 {
            // q = x - 1 for freq 1 (and unused for symbols that never occur).
            EncSymbol { x_max, rcp: u32::MAX, shift: 0, bias: start + m - 1, cmpl }
        } else {
            let mut shift = 0;
            while freq > (1u32 << shift) {
                shift += 1;
            }
            let rcp = (1u64 << (shift + 31)).div_ceil(freq as u64) as u32;
            EncSymbol { x_max, rcp, shift: shift - 1, bias: start, cmpl }
        }
    }

    /// Encode into a state that is already below `x_max`.
    #[inline(always)]
    fn put(&self, state: u32) -> u32 {
        // x / freq by multiplying with a precomputed reciprocal: a division per symbol would dominate.
        let q = (((state as u64) * self.rcp as u64) >> 32) as u32 >> self.shift;
        state.wrapping_add(self.bias).wrapping_add(q.wrapping_mul(self.cmpl))
    }
}

/// The table every plane starts with: `u16 count | count x (u8 symbol | u16 frequency)`.
fn write_table(freq: &[u32; 256], out: &mut Vec<u8>) {
    let present: Vec<usize> = (0..256).filter(|&s| freq[s] > 0).collect();
    out.extend_from_slice(&(present.len() as u16).to_le_bytes());
    for &s in &present {
        out.push(s as u8);
        out.extend_from_slice(&(freq[s] as u16).to_le_bytes());
    }
}

fn encoder_table(freq: &[u32; 256], scale: u32, lower: u32, renorm_bits: u32) -> Box<[EncSymbol; 256]> {
    let mut start = [0u32; 256];
    for s in 1..256 {
        start[s] = start[s - 1] + freq[s - 1];
    }
    Box::new(std::array::from_fn(|s| EncSymbol::new(start[s], freq[s], scale, lower, renorm_bits)))
}

/// Read a table summing to `scale_total`: each present symbol's frequency and start, and the bytes after it.
fn read_table<'a>(
    enc: &'a [u8],
    scale_total: u32,
    bad: &dyn Fn(&str) -> Error,
) -> Result<([u32; 256], [u32; 256], &'a [u8])> {
    let count = enc.get(..2).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize).ok_or_else(|| bad("no table"))?;
    if count == 0 || count > 256 {
        return Err(bad("symbol count out of range"));
    }
    let table = enc.get(2..2 + 3 * count).ok_or_else(|| bad("table truncated"))?;
    let (mut freq, mut start) = ([0u32; 256], [0u32; 256]);
    let mut acc = 0u32;
    for e in table.chunks_exact(3) {
        let (s, f) = (e[0] as usize, u16::from_le_bytes([e[1], e[2]]) as u32);
        if f == 0 || freq[s] != 0 || acc + f > scale_total {
            return Err(bad("bad frequency table"));
        }
        freq[s] = f;
        start[s] = acc;
        acc += f;
    }
    if acc != scale_total {
        return Err(bad("frequencies do not sum to the table's scale"));
    }
    Ok((freq, start, &enc[2 + 3 * count..]))
}

/// Encode a plane as plane codec 2: `table | u32 state x 4 | u16 words`, all little-endian (docs/FORMAT.md).
/// Symbol `i` goes through state `i mod 4`; the decoder takes a word for a state whenever it drops below 2^15.
pub fn encode(data: &[u8], hist: &[u64; 256]) -> Vec<u8> {
    if data.is_empty() {
        // No symbols, no table: a zero count and nothing else.
        return vec![0, 0];
    }
    let freq = normalise(hist, data.len() as u64, M);
    let mut out = Vec::with_capacity(2 + 3 * 256 + 8 * LANES + data.len() / 2 + 64);
    write_table(&freq, &mut out);
    if freq.contains(&M) {
        // One symbol: the table says it all.
        return out;
    }
    let syms = encoder_table(&freq, SCALE, L, 16);

    // rANS encodes backwards, so the words come out in reverse reading order. At most one word per symbol:
    // it is stored unconditionally and kept by advancing the cursor only when the state had to shed it,
    // which leaves no branch for the CPU to mispredict. Words gather in a small block whose index is masked
    // (so it needs no bounds check, and no register for a length) and move to `words` a block at a time.
    const BLOCK: usize = 4096;
    let mut block = [0u16; BLOCK];
    let mut words: Vec<u16> = Vec::with_capacity(data.len() / 4 + 16);
    let mut w = 0usize;
    let mut x = [L; LANES];
    #[inline(always)]
    fn step(symbol: &EncSymbol, state: &mut u32, block: &mut [u16; BLOCK], at: &mut usize) {
        let shed = *state >= symbol.x_max;
        block[*at & (BLOCK - 1)] = *state as u16;
        *at += shed as usize;
        *state = symbol.put(if shed { *state >> 16 } else { *state });
    }
    let whole = data.len() / LANES * LANES;
    for i in (whole..data.len()).rev() {
        step(&syms[data[i] as usize], &mut x[i % LANES], &mut block, &mut w);
    }
    // Blocks of BLOCK symbols at most, so no more than BLOCK words before a flush.
    words.extend_from_slice(&block[..w]);
    for part in data[..whole].rchunks(BLOCK) {
        w = 0;
        for c in part.chunks_exact(LANES).rev() {
            step(&syms[c[3] as usize], &mut x[3], &mut block, &mut w);
            step(&syms[c[2] as usize], &mut x[2], &mut block, &mut w);
            step(&syms[c[1] as usize], &mut x[1], &mut block, &mut w);
            step(&syms[c[0] as usize], &mut x[0], &mut block, &mut w);
        }
        words.extend_from_slice(&block[..w]);
    }
    for xi in x {
        out.extend_from_slice(&xi.to_le_bytes());
    }
    let at = out.len();
    out.resize(at + 2 * words.len(), 0);
    for (o, word) in out[at..].chunks_exact_mut(2).zip(words.iter().rev()) {
        o.copy_from_slice(&word.to_le_bytes());
    }
    out
}

/// Decode `len` symbols of plane codec 2; `object` names the blob in errors.
pub fn decode(enc: &[u8], len: usize, object: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    decode_into(enc, len, object, &mut out)?;
    Ok(out)
}

/// [`decode`] into `out` (resized to `len`), so a caller decoding plane after plane reuses one buffer.
pub fn decode_into(enc: &[u8], len: usize, object: &str, out: &mut Vec<u8>) -> Result<()> {
    let bad = |why: &str| Error::corrupt(object, format!("rANS plane: {why}"));
    out.clear();
    if len == 0 && enc == [0, 0] {
        return Ok(());
    }
    let (freq, start, stream) = read_table(enc, M, &bad)?;
    if let Some(only) = freq.iter().position(|&f| f == M) {
        if !stream.is_empty() {
            return Err(bad("bytes after a one-symbol table"));
        }
        out.resize(len, only as u8);
        return Ok(());
    }
    // One u32 per slot: symbol (bits 0-7), slot - start (bits 8-19), frequency (bits 20-31, below 2^12 as
    // there are at least two symbols).
    let mut slots = Box::new([0u32; M as usize]);
    for s in 0..256 {
        for (k, slot) in slots[start[s] as usize..(start[s] + freq[s]) as usize].iter_mut().enumerate() {
            *slot = s as u32 | (k as u32) << 8 | freq[s] << 20;
        }
    }
    let u32_at = |i: usize| stream.get(4 * i..4 * i + 4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")));
    let mut x = [0u32; LANES];
    for (i, xi) in x.iter_mut().enumerate() {
        *xi = u32_at(i).ok_or_else(|| bad("stream too short"))?;
    }
    // States outside [L, 2^31) are not something the encoder writes, and would overflow below.
    if x.iter().any(|&xi| !(L..1 << 31).contains(&xi)) {
        return Err(bad("initial state out of range"));
    }
    let words = &stream[4 * LANES..];
    if words.len() % 2 != 0 {
        return Err(bad("odd number of word bytes"));
    }
    let total = words.len() / 2;
    // Word `i`, or zero past the end (a corrupt stream's extra reads, caught by the final position check).
    #[inline(always)]
    fn word(words: &[u8], index: usize) -> u32 {
        words.get(2 * index..2 * index + 2).map_or(0, |b| u16::from_le_bytes([b[0], b[1]]) as u32)
    }

    // A group of four symbols: every lane decodes (independent work), then the lanes that dropped below L take
    // the next words in lane order. Only the read position is shared, and it only needs the four flags.
    #[inline(always)]
    fn group(slots: &[u32; M as usize], states: &mut [u32; LANES], words: &[u8], pos: &mut usize) -> [u8; LANES] {
        let mut syms = [0u8; LANES];
        for k in 0..LANES {
            let e = slots[(states[k] & (M - 1)) as usize];
            states[k] = (e >> 20) * (states[k] >> SCALE) + (e >> 8 & 0xfff);
            syms[k] = e as u8;
        }
        for xk in states.iter_mut() {
            let take = *xk < L;
            let renormed = (*xk << 16) | word(words, *pos);
            *xk = if take { renormed } else { *xk };
            *pos += take as usize;
        }
        syms
    }
    let mut pos = 0usize;
    out.resize(len, 0);
    let mut groups = out.chunks_exact_mut(LANES);
    for g in &mut groups {
        g.copy_from_slice(&group(&slots, &mut x, words, &mut pos));
    }
    for (lane, o) in groups.into_remainder().iter_mut().enumerate() {
        let e = slots[(x[lane] & (M - 1)) as usize];
        x[lane] = (e >> 20) * (x[lane] >> SCALE) + (e >> 8 & 0xfff);
        *o = e as u8;
        if x[lane] < L {
            x[lane] = x[lane] << 16 | word(words, pos);
            pos += 1;
        }
    }
    // Words taken past the end (read as zero) leave the position past the words' end.
    if pos != total || x != [L; LANES] {
        return Err(bad("stream does not end where it should"));
    }
    Ok(())
}

/// Decode `len` symbols of plane codec 1 (two states, byte-wise renormalisation; see FORMAT.md).
pub fn decode_v1(enc: &[u8], len: usize, object: &str) -> Result<Vec<u8>> {
    let bad = |why: &str| Error::corrupt(object, format!("rANS plane: {why}"));
    if len == 0 && enc == [0, 0] {
        return Ok(Vec::new());
    }
    let (freq, start, stream) = read_table(enc, M_V1, &bad)?;
    let mut sym = vec![0u8; M_V1 as usize];
    for s in 0..256 {
        sym[start[s] as usize..(start[s] + freq[s]) as usize].fill(s as u8);
    }
    let rd = |p: usize| stream.get(p..p + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let (Some(x0), Some(x1)) = (rd(0), rd(4)) else {
        return Err(bad("stream too short"));
    };
    let mut x = [x0, x1];
    let mut pos = 8;
    let mut step = |xi: &mut u32| -> Option<u8> {
        let slot = *xi & (M_V1 - 1);
        let s = sym[slot as usize];
        *xi = freq[s as usize].wrapping_mul(*xi >> SCALE_V1).wrapping_add(slot - start[s as usize]);
        while *xi < L_V1 {
            *xi = (*xi << 8) | *stream.get(pos)? as u32;
            pos += 1;
        }
        Some(s)
    };
    let mut out = vec![0u8; len];
    let mut pairs = out.chunks_exact_mut(2);
    for p in &mut pairs {
        p[0] = step(&mut x[0]).ok_or_else(|| bad("stream ends early"))?;
        p[1] = step(&mut x[1]).ok_or_else(|| bad("stream ends early"))?;
    }
    if let [last] = pairs.into_remainder() {
        *last = step(&mut x[0]).ok_or_else(|| bad("stream ends early"))?;
    }
    if pos != stream.len() || x != [L_V1, L_V1] {
        return Err(bad("stream does not end where it should"));
    }
    Ok(out)
}

/// The codec 1 encoder, kept only so the tests can make the streams old vaults hold.
#[cfg(test)]
pub(crate) fn encode_v1(data: &[u8], hist: &[u64; 256]) -> Vec<u8> {
    if data.is_empty() {
        return vec![0, 0];
    }
    let freq = normalise(hist, data.len() as u64, M_V1);
    let syms = encoder_table(&freq, SCALE_V1, L_V1, 8);
    let mut out = Vec::new();
    write_table(&freq, &mut out);
    let mut rev = Vec::new();
    let mut x = [L_V1, L_V1];
    let step = |xi: &mut u32, s: u8, rev: &mut Vec<u8>| {
        let e = &syms[s as usize];
        while *xi >= e.x_max {
            rev.push(*xi as u8);
            *xi >>= 8;
        }
        *xi = e.put(*xi);
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
    rev.reverse();
    out.extend_from_slice(&rev);
    out
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
        assert!(decode(&t, data.len(), "t").is_err(), "table no longer sums to 2^12");
        let mut t = enc.clone();
        let states = 2 + 3 * u16::from_le_bytes([enc[0], enc[1]]) as usize;
        let odd = decode(&[enc.clone(), vec![0]].concat(), data.len(), "t").unwrap_err().to_string();
        assert!(odd.contains("odd number of word bytes"), "{odd}");
        let cut = decode(&enc[..enc.len() - 2], data.len(), "t").unwrap_err().to_string();
        assert!(cut.contains("does not end where it should"), "{cut}");
        assert!(decode(&enc[..states + 8], data.len(), "t").is_err(), "states cut off");
        t[states + 3] |= 0x80; // state 0 at 2^31 or more
        assert!(decode(&t, data.len(), "t").is_err(), "state out of range");
        let one = encode(&[7u8; 100], &histogram(&[7u8; 100]));
        assert_eq!(one.len(), 5, "a one-symbol plane is its table");
        assert_eq!(decode(&one, 100, "t").unwrap(), vec![7u8; 100]);
        assert!(decode(&[one.clone(), vec![0]].concat(), 100, "t").is_err(), "bytes after a one-symbol table");
    }

    #[test]
    fn lengths_around_the_encoders_block_size_round_trip() {
        let mut x = 99u64;
        for n in [4095, 4096, 4097, 4099, 8191, 8192, 8195, 12289] {
            let data: Vec<u8> = (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x % 16).trailing_zeros().min(4) as u8 * 3
                })
                .collect();
            let enc = encode(&data, &histogram(&data));
            assert_eq!(decode(&enc, n, "t").unwrap(), data, "n = {n}");
        }
    }

    #[test]
    fn old_planes_still_decode() {
        let data: Vec<u8> = (0..5001u32).map(|i| (i * i % 7) as u8 + (i % 3 == 0) as u8 * 40).collect();
        let h = histogram(&data);
        let old = encode_v1(&data, &h);
        assert_eq!(decode_v1(&old, data.len(), "t").unwrap(), data);
        assert!(decode_v1(&old[..old.len() - 1], data.len(), "t").is_err());
        assert!(decode(&old, data.len(), "t").is_err(), "a codec 1 stream is not a codec 2 stream");
    }

    proptest! {
        #[test]
        fn round_trips(data in proptest::collection::vec(0u8..6, 0..3000), wide in proptest::collection::vec(any::<u8>(), 0..300)) {
            for d in [&data, &wide] {
                let enc = encode(d, &histogram(d));
                prop_assert_eq!(&decode(&enc, d.len(), "t").unwrap(), d);
                let old = encode_v1(d, &histogram(d));
                prop_assert_eq!(&decode_v1(&old, d.len(), "t").unwrap(), d);
            }
        }

        #[test]
        fn any_bytes_decode_or_fail_cleanly(enc in proptest::collection::vec(any::<u8>(), 0..200), n in 0usize..100) {
            if let Ok(d) = decode(&enc, n, "t") {
                prop_assert_eq!(d.len(), n);
            }
            if let Ok(d) = decode_v1(&enc, n, "t") {
                prop_assert_eq!(d.len(), n);
            }
        }
    }
}
