//! The float codec's speed on one core, best of 15 runs, for comparing codec changes on a noisy machine:
//! the whole BF16 grouped codec, and the Huffman and rANS coders alone on the exponent planes, in 1 MiB pieces.
//!
//!     cargo run --release -p mvault-core --example codec_speed -- MODEL.safetensors   # a BF16 safetensors file
//!
//! `mvault inspect` reports the same codec per tensor piece with its allocations; this isolates the coder.

use mvault_core::format::FloatKind;
use mvault_core::format::{grouped, huffman, rans};
use std::time::Instant;

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: codec_speed BF16.safetensors");
        std::process::exit(2);
    };
    let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let hl = u64::from_le_bytes(data[..8].try_into().unwrap()) as usize;
    let body = &data[8 + hl..];
    let body = &body[..body.len() / 2 * 2];
    let piece = 1 << 20;
    let exps: Vec<Vec<u8>> =
        body.chunks(piece).map(|c| c.chunks_exact(2).map(|e| (e[1] << 1) | (e[0] >> 7)).collect()).collect();
    let hs: Vec<_> = exps.iter().map(|p| rans::histogram(p)).collect();
    let syms: usize = exps.iter().map(|e| e.len()).sum();
    let (mut be, mut bd) = (f64::MAX, f64::MAX);
    let mut size = 0;
    for _ in 0..15 {
        let t = Instant::now();
        let re: Vec<Vec<u8>> = exps.iter().zip(&hs).map(|(p, h)| rans::encode(p, h)).collect();
        be = be.min(t.elapsed().as_secs_f64());
        size = re.iter().map(|e| e.len()).sum();
        let t = Instant::now();
        for (p, e) in exps.iter().zip(&re) {
            let d = rans::decode(e, p.len(), "x").unwrap();
            assert_eq!(d.len(), p.len());
        }
        bd = bd.min(t.elapsed().as_secs_f64());
    }
    let lens: Vec<_> = hs.iter().map(huffman::code_lengths).collect();
    let (mut he, mut hd) = (f64::MAX, f64::MAX);
    let mut hsize = 0;
    let mut back = Vec::new();
    for _ in 0..15 {
        let t = Instant::now();
        let enc: Vec<Vec<u8>> = exps.iter().zip(&lens).map(|(p, l)| huffman::encode(p, l)).collect();
        he = he.min(t.elapsed().as_secs_f64());
        hsize = enc.iter().map(|e| e.len()).sum();
        let t = Instant::now();
        for (p, e) in exps.iter().zip(&enc) {
            huffman::decode_into(e, p.len(), "x", &mut back).unwrap();
            assert_eq!(back.len(), p.len());
        }
        hd = hd.min(t.elapsed().as_secs_f64());
    }
    // Encoded pieces are dropped as they are made, as a backup hands each to its pack and frees it; keeping
    // them all would time fresh memory's page faults instead of the codec.
    let encs: Vec<Vec<u8>> = body.chunks(piece).map(|c| grouped::encode(FloatKind::Bf16, c)).collect();
    let gsize = encs.iter().map(|e| e.len()).sum::<usize>();
    let (mut ge, mut gd) = (f64::MAX, f64::MAX);
    for _ in 0..15 {
        let t = Instant::now();
        for c in body.chunks(piece) {
            std::hint::black_box(grouped::encode(FloatKind::Bf16, c));
        }
        ge = ge.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        for (c, e) in body.chunks(piece).zip(&encs) {
            let d = grouped::decode(e, c.len(), "x").unwrap();
            assert_eq!(d.len(), c.len());
        }
        gd = gd.min(t.elapsed().as_secs_f64());
    }
    let gb = body.len() as f64 / 1e9;
    println!(
        "grouped bf16: enc {:.3} GB/s dec {:.3} GB/s ratio {:.4}",
        gb / ge,
        gb / gd,
        body.len() as f64 / gsize as f64
    );
    println!(
        "huffman: enc {:.3} Gsym/s dec {:.3} Gsym/s size {}",
        syms as f64 / he / 1e9,
        syms as f64 / hd / 1e9,
        hsize
    );
    println!("rans: enc {:.3} Gsym/s dec {:.3} Gsym/s size {}", syms as f64 / be / 1e9, syms as f64 / bd / 1e9, size);
}
