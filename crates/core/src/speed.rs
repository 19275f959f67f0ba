//! The machine's single-core limits for the stages of the pipeline (bench/run prints mvault's throughput
//! beside them): AES-256-GCM as ring runs it, BLAKE3 (keyed, as ChunkIds are made), and zstd at the level
//! backups use, compressing and decompressing a sample of the data being benchmarked.

use crate::crypto::{counter_nonce, SecretKey};
use std::time::Instant;

#[derive(Debug, serde::Serialize)]
pub struct Speeds {
    /// Bytes per second (10^6 = MB/s), one core each.
    pub aes_256_gcm_seal: f64,
    pub aes_256_gcm_open: f64,
    pub blake3_keyed: f64,
    pub zstd3_compress: f64,
    pub zstd_decompress: f64,
    /// compressed / original size of the sample at zstd -3.
    pub zstd3_ratio: f64,
    pub sample_bytes: usize,
}

/// Repeat `work` over `bytes` for at least `min_secs`; bytes per second.
fn rate(bytes: usize, min_secs: f64, mut work: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while n == 0 || start.elapsed().as_secs_f64() < min_secs {
        work();
        n += 1;
    }
    (bytes as u64 * n) as f64 / start.elapsed().as_secs_f64()
}

/// Measure on `sample` (at least a few MiB for stable figures), about `secs` seconds per figure.
pub fn measure(sample: &[u8], secs: f64) -> Speeds {
    let key = SecretKey::random();
    // ring's AES-256-GCM in place on one buffer, as the pack writer and reader use it (no copies measured).
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
    let aead = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key.expose()).expect("32-byte key"));
    let nonce = || Nonce::assume_unique_for_key(counter_nonce(1));
    let mut buf = sample.to_vec();
    let mut tag = aead.seal_in_place_separate_tag(nonce(), Aad::from(b"aad"), &mut buf).expect("seal");
    let seal = rate(sample.len(), secs, || {
        tag = aead.seal_in_place_separate_tag(nonce(), Aad::from(b"aad"), &mut buf).expect("seal");
    });
    // Opening needs the ciphertext the tag belongs to: seal and open in turn, and take the open's share.
    let both = rate(sample.len(), secs, || {
        let t = aead.seal_in_place_separate_tag(nonce(), Aad::from(b"aad"), &mut buf).expect("seal");
        aead.open_in_place_separate_tag(nonce(), Aad::from(b"aad"), t, &mut buf, 0..).expect("own ciphertext opens");
    });
    let _ = tag;
    let open = 1.0 / (1.0 / both - 1.0 / seal).max(1e-12);
    let blake = rate(sample.len(), secs, || {
        std::hint::black_box(blake3::keyed_hash(key.expose(), sample));
    });
    let mut z = Vec::new();
    let zc = rate(sample.len(), secs, || z = zstd::bulk::compress(sample, 3).expect("zstd"));
    let zd = rate(sample.len(), secs, || {
        std::hint::black_box(zstd::bulk::decompress(&z, sample.len()).expect("own zstd frame"));
    });
    Speeds {
        aes_256_gcm_seal: seal,
        aes_256_gcm_open: open,
        blake3_keyed: blake,
        zstd3_compress: zc,
        zstd_decompress: zd,
        zstd3_ratio: z.len() as f64 / sample.len().max(1) as f64,
        sample_bytes: sample.len(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn speeds_are_measured_and_compression_is_real() {
        let sample: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 7) as u8).collect();
        let s = super::measure(&sample, 0.01);
        for v in [s.aes_256_gcm_seal, s.aes_256_gcm_open, s.blake3_keyed, s.zstd3_compress, s.zstd_decompress] {
            assert!(v.is_finite() && v > 1e6, "{s:?}");
        }
        assert!(s.zstd3_ratio < 0.01, "a 7-byte pattern compresses to almost nothing: {s:?}");
    }
}
