//! Deterministic weight-like data for the demo and the tests (no model download needed).

/// Weight-like values: roughly normal with small variance, from a seeded generator (xorshift).
pub fn weights_f32(len: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 40) as f32 / (1u64 << 24) as f32
    };
    (0..len).map(|_| ((next() + next() + next() + next()) - 2.0) * scale).collect()
}

/// Incompressible bytes from a seeded generator (xorshift).
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

pub fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|f| f.to_le_bytes()).collect()
}

/// bfloat16: the top half of an f32 (rounded to nearest even).
pub fn bf16_bytes(values: &[f32]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|f| {
            let b = f.to_bits();
            let r = b.wrapping_add(0x7fff + ((b >> 16) & 1));
            ((r >> 16) as u16).to_le_bytes()
        })
        .collect()
}
