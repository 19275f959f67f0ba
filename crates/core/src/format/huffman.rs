//! A static, length-limited Huffman coder for the planes of the byte-grouped codec (plane codec 3): the fast
//! path for exponent planes.
//!
//! Why a second entropy coder beside rANS (format/rans.rs): rANS codes each symbol to a fraction of a bit,
//! but spends a multiply-shift-renormalise per symbol in both directions, about 5 cycles each here. A
//! prefix code decodes by table lookup, and because an exponent symbol takes under 3 bits on average, one
//! 11-bit lookup yields three or four symbols at once. The price is whole-bit code lengths: on MiniLM's BF16
//! exponents (2.67 bits of entropy) the limited code averages 2.72 bits, 0.5% of the BF16 element. The
//! grouped codec takes this coder only where that price is under 1% of the plane ([`worth_it`]) and rANS
//! everywhere else (a delta plane that is mostly zeros, say, where a whole bit per symbol would be a loss).
//!
//! Stream (docs/FORMAT.md): `code lengths u8[128] | u32 length of streams 0..3 x 3 | 4 bit streams`. The
//! lengths are one nibble per symbol (symbol 2i in the low nibble of byte i; 0 = absent, at most 11), and
//! must form a complete prefix code. The plane's `n` symbols are cut into four runs of `ceil(n/4)` (the last
//! shorter), each its own stream of canonical codes, least significant bit first, the last byte padded
//! with zero bits. Four independent streams let the decoder keep four lookups in flight.

use crate::error::{Error, Result};

/// The longest code, and so the decoder's lookup width: 2^11 entries of 8 bytes stay in L1 cache.
const MAX_LEN: u32 = 11;
const TABLE: usize = 1 << MAX_LEN;
const MASK: u64 = TABLE as u64 - 1;
const STREAMS: usize = 4;
/// Symbols one table entry can hold.
const PER_LOOKUP: usize = 4;
const LENGTHS_BYTES: usize = 128;
const HEADER: usize = LENGTHS_BYTES + 4 * (STREAMS - 1);

/// Code lengths for a histogram with at least two symbols, none longer than `MAX_LEN`. When plain Huffman
/// runs longer, the counts are halved (rare symbols kept at 1) until it does not: a few hundredths of a bit
/// per symbol from optimal on exponent planes, and simple enough to trust.
pub fn code_lengths(hist: &[u64; 256]) -> [u8; 256] {
    let mut counts = *hist;
    loop {
        let lengths = huffman_lengths(&counts);
        if lengths.iter().all(|&l| u32::from(l) <= MAX_LEN) {
            return lengths;
        }
        for c in counts.iter_mut().filter(|c| **c > 0) {
            *c = (*c / 2).max(1);
        }
    }
}

/// Unlimited Huffman code lengths by repeatedly merging the two lightest subtrees.
fn huffman_lengths(counts: &[u64; 256]) -> [u8; 256] {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    // Nodes 0..256 are the symbols; merged subtrees follow. `parent` leads each node to the root.
    let mut parent = vec![usize::MAX; 512];
    let mut heap: BinaryHeap<Reverse<(u64, usize)>> =
        (0..256).filter(|&s| counts[s] > 0).map(|s| Reverse((counts[s], s))).collect();
    let mut next = 256;
    while heap.len() > 1 {
        let Reverse((a, i)) = heap.pop().expect("two nodes");
        let Reverse((b, j)) = heap.pop().expect("two nodes");
        parent[i] = next;
        parent[j] = next;
        heap.push(Reverse((a + b, next)));
        next += 1;
    }
    let mut lengths = [0u8; 256];
    for s in (0..256).filter(|&s| counts[s] > 0) {
        let (mut depth, mut node) = (0u8, s);
        while parent[node] != usize::MAX {
            depth += 1;
            node = parent[node];
        }
        lengths[s] = depth;
    }
    lengths
}

/// The exact size of a plane with this histogram coded with these lengths, stream padding included.
pub fn coded_size(hist: &[u64; 256], lengths: &[u8; 256]) -> u64 {
    let bits: u64 = hist.iter().zip(lengths).map(|(&c, &l)| c * u64::from(l)).sum();
    HEADER as u64 + bits / 8 + STREAMS as u64
}

/// Whether to prefer this coder to rANS for a plane of `total` symbols: only with two symbols or more (a one-
/// symbol plane is rANS's bare table) and when it costs at most 1% of the plane beyond the entropy
/// `rans_bytes` (rANS's own estimate). Returns the code lengths to use.
pub fn worth_it(hist: &[u64; 256], total: usize, rans_bytes: f64) -> Option<[u8; 256]> {
    if hist.iter().filter(|&&c| c > 0).count() < 2 {
        return None;
    }
    let lengths = code_lengths(hist);
    (coded_size(hist, &lengths) as f64 <= rans_bytes + total as f64 / 100.0).then_some(lengths)
}

/// Canonical codes, bit-reversed for least-significant-bit-first output: `code | length << 16` per symbol.
fn encoder_codes(lengths: &[u8; 256]) -> [u32; 256] {
    let mut codes = [0u32; 256];
    let mut code = 0u32;
    for len in 1..=MAX_LEN {
        for s in 0..256 {
            if u32::from(lengths[s]) == len {
                codes[s] = (code.reverse_bits() >> (32 - len)) | (len << 16);
                code += 1;
            }
        }
        code <<= 1;
    }
    codes
}

/// Encode `data` (whose histogram gave `lengths`, from [`code_lengths`]) as plane codec 3.
pub fn encode(data: &[u8], lengths: &[u8; 256]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(data, lengths, &mut out);
    out
}

/// [`encode`], appending to `out`.
pub fn encode_into(data: &[u8], lengths: &[u8; 256], out: &mut Vec<u8>) {
    let codes = encoder_codes(lengths);
    let run = data.len().div_ceil(STREAMS).max(1);
    // Room for a run's worst case and the writer's 8-byte stores past its end.
    let room = run * MAX_LEN as usize / 8 + 16;
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        if scratch.len() < STREAMS * room {
            scratch.resize(STREAMS * room, 0);
        }
        let mut regions = scratch.chunks_exact_mut(room);
        let mut bufs: [&mut [u8]; STREAMS] = std::array::from_fn(|_| regions.next().expect("four regions"));
        let parts: [&[u8]; STREAMS] =
            std::array::from_fn(|i| &data[(i * run).min(data.len())..((i + 1) * run).min(data.len())]);
        let lens = match pair_codes(&codes) {
            Some(pairs) => write_streams(parts, &mut bufs, &codes, |v| {
                let (e0, e1) = (pairs[pair_index(v)], pairs[pair_index(v >> 16)]);
                (u64::from(e0 & 0xff_ffff) | u64::from(e1 & 0xff_ffff) << (e0 >> 24), (e0 >> 24) + (e1 >> 24))
            }),
            None => write_streams(parts, &mut bufs, &codes, |v| {
                let mut bits = 0u64;
                let mut len = 0;
                for k in 0..4 {
                    let c = codes[(v >> (8 * k)) as u8 as usize];
                    bits |= u64::from(c & 0xffff) << len;
                    len += c >> 16;
                }
                (bits, len)
            }),
        };
        out.reserve(HEADER + lens.iter().sum::<usize>());
        out.extend(lengths.chunks_exact(2).map(|pair| pair[0] | (pair[1] << 4)));
        for len in &lens[..STREAMS - 1] {
            out.extend_from_slice(&(*len as u32).to_le_bytes());
        }
        for (buf, len) in bufs.iter().zip(lens) {
            out.extend_from_slice(&buf[..len]);
        }
        if scratch.len() > KEEP_MAX {
            *scratch = Vec::new();
        }
    });
}

/// Write each part as a stream into its buffer and return the streams' lengths. `quad` codes four symbols
/// (a little-endian u32) as bits and their count.
fn write_streams(
    parts: [&[u8]; STREAMS],
    bufs: &mut [&mut [u8]; STREAMS],
    codes: &[u32; 256],
    quad: impl Fn(u32) -> (u64, u32),
) -> [usize; STREAMS] {
    let mut w = [BitWriter::default(); STREAMS];
    // Streams advance two at a time, four symbols each step, so that two independent chains of shifts and
    // adds overlap (four would not fit the registers); what the shorter last runs leave goes one at a time.
    let common = parts.iter().map(|p| p.len()).min().unwrap_or(0) / 4 * 4;
    for a in (0..STREAMS).step_by(2) {
        let b = a + 1;
        let (mut wa, mut wb) = (w[a], w[b]);
        let (low, high) = bufs.split_at_mut(b);
        let (ba, bb) = (&mut *low[a], &mut *high[0]);
        for (qa, qb) in parts[a][..common].chunks_exact(4).zip(parts[b][..common].chunks_exact(4)) {
            wa.put_bits(quad(u32::from_le_bytes(qa.try_into().expect("4 symbols"))), ba);
            wb.put_bits(quad(u32::from_le_bytes(qb.try_into().expect("4 symbols"))), bb);
        }
        (w[a], w[b]) = (wa, wb);
    }
    std::array::from_fn(|i| {
        let mut quads = parts[i][common..].chunks_exact(4);
        for q in &mut quads {
            w[i].put_bits(quad(u32::from_le_bytes(q.try_into().expect("4 symbols"))), bufs[i]);
        }
        for &s in quads.remainder() {
            let c = codes[s as usize];
            w[i].put_bits((u64::from(c & 0xffff), c >> 16), bufs[i]);
        }
        w[i].finish(bufs[i])
    })
}

/// A table of the codes of every pair of symbols, when the plane's symbols differ in their low six bits (as
/// exponent planes' few dozen do): one lookup then codes two symbols, which halves the encoder's work.
/// Entries are `code | length << 24`, the first symbol's code in the low bits.
fn pair_codes(codes: &[u32; 256]) -> Option<Box<[u32; 4096]>> {
    let mut by_low = [None; 64];
    for (s, &c) in codes.iter().enumerate().filter(|(_, &c)| c >> 16 > 0) {
        if by_low[s % 64].replace(c).is_some() {
            return None;
        }
    }
    let mut pairs = Box::new([0u32; 4096]);
    for (i, e) in pairs.iter_mut().enumerate() {
        if let (Some(first), Some(second)) = (by_low[i % 64], by_low[i / 64]) {
            *e = (first & 0xffff) | ((second & 0xffff) << (first >> 16)) | (((first >> 16) + (second >> 16)) << 24);
        }
    }
    Some(pairs)
}

/// The pair table's index for the two symbols in the low 16 bits of `pair`: their low six bits, first symbol
/// lowest.
#[inline(always)]
fn pair_index(pair: u32) -> usize {
    ((pair & 0x3f) | ((pair >> 2) & 0xfc0)) as usize
}

thread_local! {
    /// Per-thread room for the four streams being written, reused from plane to plane.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The most scratch bytes a thread keeps between planes.
const KEEP_MAX: usize = 16 << 20;

/// Bits gather in a 64-bit word. After every four symbols (at most 44 bits, on top of fewer than 8 left over)
/// the word is stored whole and the cursor advances over its complete bytes: no branch per symbol.
#[derive(Clone, Copy, Default)]
struct BitWriter {
    acc: u64,
    nbits: u32,
    at: usize,
}

impl BitWriter {
    /// Add up to 56 bits (`bits`, `count`); then store the word whole and advance over its complete bytes.
    #[inline(always)]
    fn put_bits(&mut self, (bits, count): (u64, u32), buf: &mut [u8]) {
        self.acc |= bits << self.nbits;
        self.nbits += count;
        buf[self.at..self.at + 8].copy_from_slice(&self.acc.to_le_bytes());
        let bytes = self.nbits / 8;
        self.at += bytes as usize;
        self.acc >>= bytes * 8;
        self.nbits %= 8;
    }

    /// Store what is left and return the stream's length in bytes.
    fn finish(&self, buf: &mut [u8]) -> usize {
        buf[self.at..self.at + 8].copy_from_slice(&self.acc.to_le_bytes());
        self.at + self.nbits.div_ceil(8) as usize
    }
}

/// Decode a plane codec 3 stream of `len` symbols into `out` (resized to `len`).
pub fn decode_into(enc: &[u8], symbols: usize, object: &str, out: &mut Vec<u8>) -> Result<()> {
    let bad = |why: &str| Error::corrupt(object, format!("huffman plane: {why}"));
    if enc.len() < HEADER {
        return Err(bad("header truncated"));
    }
    let mut lengths = [0u8; 256];
    for (i, &b) in enc[..LENGTHS_BYTES].iter().enumerate() {
        lengths[2 * i] = b & 15;
        lengths[2 * i + 1] = b >> 4;
    }
    let tables = Tables::new(&lengths).ok_or_else(|| bad("code lengths do not form a complete prefix code"))?;
    let mut streams: [&[u8]; STREAMS] = [&[]; STREAMS];
    let mut rest = &enc[HEADER..];
    for (i, s) in streams.iter_mut().enumerate() {
        let len = if i < STREAMS - 1 {
            let at = LENGTHS_BYTES + 4 * i;
            u32::from_le_bytes(enc[at..at + 4].try_into().expect("4 bytes")) as usize
        } else {
            rest.len()
        };
        if len > rest.len() {
            return Err(bad("stream runs past the plane"));
        }
        (*s, rest) = rest.split_at(len);
    }

    // Each stream fills its run of the output. The reused buffer is not cleared: every byte is written.
    let run = symbols.div_ceil(STREAMS).max(1);
    out.resize(symbols + PER_LOOKUP, 0);
    let mut pos = [0usize; STREAMS];
    let mut at: [usize; STREAMS] = std::array::from_fn(|i| (i * run).min(symbols));
    let end: [usize; STREAMS] = std::array::from_fn(|i| ((i + 1) * run).min(symbols));

    // The fast loop: all four streams step together, one lookup (up to four symbols) each, for as many
    // rounds as every stream can surely take without writing past its run or reading past its bytes.
    loop {
        let rounds = (0..STREAMS)
            .map(|i| {
                let by_out = (end[i] - at[i]) / PER_LOOKUP;
                let by_in = (streams[i].len().saturating_sub(8) * 8).saturating_sub(pos[i]) / MAX_LEN as usize;
                by_out.min(by_in)
            })
            .min()
            .unwrap_or(0);
        if rounds == 0 {
            break;
        }
        for _ in 0..rounds {
            for i in 0..STREAMS {
                let b = pos[i] / 8;
                let window = u64::from_le_bytes(streams[i][b..b + 8].try_into().expect("8 bytes")) >> (pos[i] % 8);
                let e = tables.multi[(window & MASK) as usize];
                out[at[i]..at[i] + PER_LOOKUP].copy_from_slice(&(e as u32).to_le_bytes());
                at[i] += (e >> 32) as u8 as usize;
                pos[i] += (e >> 40) as usize;
            }
        }
    }
    // Each stream's last symbols, one at a time, with reads past its end seen as zero bits.
    for i in 0..STREAMS {
        let s = streams[i];
        while at[i] < end[i] {
            let b = pos[i] / 8;
            let mut word = [0u8; 8];
            let avail = s.len().saturating_sub(b).min(8);
            word[..avail].copy_from_slice(&s[b.min(s.len())..b.min(s.len()) + avail]);
            let window = u64::from_le_bytes(word) >> (pos[i] % 8);
            let (sym, len) = tables.single[(window & MASK) as usize];
            out[at[i]] = sym;
            at[i] += 1;
            pos[i] += len as usize;
        }
        if pos[i] > s.len() * 8 {
            return Err(bad(&format!("stream {i} ends early")));
        }
        if pos[i].div_ceil(8) != s.len() {
            return Err(bad(&format!("stream {i} has bytes after its last symbol")));
        }
        if pos[i] % 8 != 0 && s[pos[i] / 8] >> (pos[i] % 8) != 0 {
            return Err(bad(&format!("stream {i} pads with nonzero bits")));
        }
    }
    out.truncate(symbols);
    Ok(())
}

/// Decoding tables over every `MAX_LEN`-bit window (first bit in the lowest place).
struct Tables {
    /// The window's first symbol and its code length.
    single: Box<[(u8, u8); TABLE]>,
    /// As many whole codes as fit in the window, up to four: symbols in the low 4 bytes, count in byte 4,
    /// bits used in byte 5.
    multi: Box<[u64; TABLE]>,
}

impl Tables {
    /// None unless the lengths form a complete prefix code (every window decodes) of codes at most `MAX_LEN`.
    fn new(lengths: &[u8; 256]) -> Option<Tables> {
        let kraft: u64 =
            lengths.iter().filter(|&&l| l > 0).map(|&l| 1u64 << (MAX_LEN - u32::from(l).min(MAX_LEN))).sum();
        if lengths.iter().any(|&l| u32::from(l) > MAX_LEN) || kraft != TABLE as u64 {
            return None;
        }
        let codes = encoder_codes(lengths);
        let mut single = Box::new([(0u8, 0u8); TABLE]);
        for (s, &c) in codes.iter().enumerate() {
            let len = c >> 16;
            if len == 0 {
                continue;
            }
            // Every window whose low `len` bits are this code starts with this symbol.
            let code = (c & 0xffff) as usize;
            for high in 0..1usize << (MAX_LEN - len) {
                single[code | (high << len)] = (s as u8, len as u8);
            }
        }
        let mut multi = Box::new([0u64; TABLE]);
        for (w, e) in multi.iter_mut().enumerate() {
            let (mut used, mut count, mut syms) = (0u32, 0u64, 0u64);
            while (count as usize) < PER_LOOKUP {
                // Bits above the window read as zero; a code is real only if it ends inside the window.
                let (s, len) = single[(w >> used) & (TABLE - 1)];
                if used + u32::from(len) > MAX_LEN {
                    break;
                }
                syms |= u64::from(s) << (8 * count);
                count += 1;
                used += u32::from(len);
            }
            *e = syms | (count << 32) | (u64::from(used) << 40);
        }
        Some(Tables { single, multi })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::rans;
    use proptest::prelude::*;

    fn round_trip(data: &[u8]) -> Vec<u8> {
        let hist = rans::histogram(data);
        let lengths = code_lengths(&hist);
        let enc = encode(data, &lengths);
        let mut out = vec![7u8; 3];
        decode_into(&enc, data.len(), "t", &mut out).unwrap();
        assert_eq!(out, data);
        enc
    }

    #[test]
    fn skewed_planes_shrink_to_their_code_lengths() {
        // Exponent-like: a geometric spread over 20 symbols.
        let mut x = 0x9e3779b97f4a7c15u64;
        let data: Vec<u8> = (0..100_003)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (120 + (x % 1024).leading_zeros() as u64 - 54) as u8
            })
            .collect();
        let hist = rans::histogram(&data);
        let lengths = code_lengths(&hist);
        let enc = round_trip(&data);
        let bound = coded_size(&hist, &lengths);
        assert!((bound - STREAMS as u64..=bound).contains(&(enc.len() as u64)), "{} vs {bound}", enc.len());
        let entropy = rans::estimate(&hist, data.len() as u64);
        assert!((enc.len() as f64) < entropy * 1.05 + HEADER as f64, "{} vs entropy {entropy}", enc.len());
    }

    #[test]
    fn long_codes_are_limited() {
        // Fibonacci counts make plain Huffman as deep as there are symbols.
        let mut hist = [0u64; 256];
        let (mut a, mut b) = (1u64, 1u64);
        for h in hist.iter_mut().take(40) {
            *h = a;
            (a, b) = (b, a + b);
        }
        let lengths = code_lengths(&hist);
        assert!(huffman_lengths(&hist).iter().any(|&l| u32::from(l) > MAX_LEN));
        assert!(lengths.iter().all(|&l| u32::from(l) <= MAX_LEN));
        assert!(Tables::new(&lengths).is_some(), "limited code is complete");
        let data: Vec<u8> = (0..5000u32).map(|i| (i.wrapping_mul(2654435761) % 40) as u8).collect();
        let hist = rans::histogram(&data);
        round_trip(&data);
        assert!(code_lengths(&hist).iter().all(|&l| u32::from(l) <= MAX_LEN));
    }

    #[test]
    fn short_planes_and_stream_edges_round_trip() {
        for n in [2usize, 3, 4, 5, 7, 8, 9, 15, 16, 17, 63, 64, 65, 200, 4095, 4096, 4097] {
            let data: Vec<u8> = (0..n).map(|i| [3u8, 9, 3, 3, 3, 200, 3, 9][i % 8]).collect();
            round_trip(&data);
        }
    }

    #[test]
    fn both_encoders_agree_with_the_decoder() {
        // 3 and 67 share their low six bits, so this plane is coded symbol by symbol; without 67, by pairs.
        let shared: Vec<u8> = (0..10_001u32).map(|i| [3u8, 67, 3, 9, 3, 3, 120, 9][(i * 7 % 8) as usize]).collect();
        let apart: Vec<u8> = shared.iter().map(|&s| if s == 67 { 68 } else { s }).collect();
        for (data, pairs) in [(&shared, false), (&apart, true)] {
            let codes = encoder_codes(&code_lengths(&rans::histogram(data)));
            assert_eq!(pair_codes(&codes).is_some(), pairs);
            round_trip(data);
        }
    }

    #[test]
    fn lies_in_the_stream_are_errors() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * i % 7) as u8).collect();
        let enc = round_trip(&data);
        let mut out = Vec::new();
        let err = |e: &[u8], n: usize| decode_into(e, n, "obj", &mut Vec::new()).unwrap_err().to_string();
        assert!(err(&enc[..HEADER - 1], data.len()).contains("header truncated"));
        assert!(err(&enc[..enc.len() - 1], data.len()).contains("stream 3"));
        let mut extra = enc.clone();
        extra.push(0);
        assert!(err(&extra, data.len()).contains("bytes after its last symbol"));
        let mut incomplete = enc.clone();
        incomplete[0] = 0; // drops symbols 0 and 1 from the code
        assert!(err(&incomplete, data.len()).contains("complete prefix code"));
        let mut long = enc.clone();
        long[LENGTHS_BYTES] = 0xff; // stream 0 claims more bytes than there are
        long[LENGTHS_BYTES + 1] = 0xff;
        assert!(err(&long, data.len()).contains("runs past"));
        assert!(err(&enc, data.len() + 100).contains("ends early"));
        assert!(decode_into(&enc, data.len(), "obj", &mut out).is_ok());
    }

    proptest! {
        #[test]
        fn round_trips_any_plane(data in proptest::collection::vec(0u8..12, 2..3000), extra in any::<u8>()) {
            let mut data = data;
            data.push(extra);
            if rans::histogram(&data).iter().filter(|&&c| c > 0).count() >= 2 {
                round_trip(&data);
            }
        }

        #[test]
        fn damaged_streams_decode_or_fail_cleanly(at in any::<prop::sample::Index>(), flip in 1u8..=255) {
            let data: Vec<u8> = (0..3000u32).map(|i| (i * i % 11) as u8).collect();
            let mut enc = encode(&data, &code_lengths(&rans::histogram(&data)));
            let i = at.index(enc.len());
            enc[i] ^= flip;
            let mut out = Vec::new();
            if decode_into(&enc, data.len(), "x", &mut out).is_ok() {
                prop_assert_eq!(out.len(), data.len());
            }
        }

        #[test]
        fn any_stream_decodes_or_fails_cleanly(enc in proptest::collection::vec(any::<u8>(), 0..400), n in 0usize..800) {
            let mut out = Vec::new();
            if decode_into(&enc, n, "x", &mut out).is_ok() {
                prop_assert_eq!(out.len(), n);
            }
        }
    }
}
