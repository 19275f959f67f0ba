//! Model files. For now: writing a real safetensors file (used by `mvault demo` and the tests) and a
//! deterministic generator of weight-like float data.
//!
//! safetensors layout: u64 little-endian header length N, N bytes of JSON (tensor name -> dtype, shape,
//! data_offsets relative to the data section; optional `__metadata__`), padded with spaces to a multiple
//! of 8, then the tensor data.

use std::collections::BTreeMap;
use std::io::Write;

pub struct Tensor {
    pub name: String,
    /// "F32", "F16" or "BF16".
    pub dtype: &'static str,
    pub shape: Vec<u64>,
    pub data: Vec<u8>,
}

pub fn write_safetensors(
    out: &mut impl Write,
    tensors: &[Tensor],
    metadata: &BTreeMap<String, String>,
) -> std::io::Result<()> {
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        header.insert("__metadata__".into(), serde_json::to_value(metadata).expect("string map"));
    }
    let mut offset = 0u64;
    for t in tensors {
        let end = offset + t.data.len() as u64;
        header.insert(
            t.name.clone(),
            serde_json::json!({ "dtype": t.dtype, "shape": t.shape, "data_offsets": [offset, end] }),
        );
        offset = end;
    }
    let mut json = serde_json::to_vec(&header).expect("header serializes");
    while !json.len().is_multiple_of(8) {
        json.push(b' ');
    }
    out.write_all(&(json.len() as u64).to_le_bytes())?;
    out.write_all(&json)?;
    for t in tensors {
        out.write_all(&t.data)?;
    }
    Ok(())
}

/// Weight-like values: roughly normal with small variance, from a seeded generator (xorshift).
pub fn weights_f32(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 40) as f32 / (1u64 << 24) as f32
    };
    (0..n).map(|_| ((next() + next() + next() + next()) - 2.0) * scale).collect()
}

pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|f| f.to_le_bytes()).collect()
}

/// bfloat16: the top half of an f32 (rounded to nearest even).
pub fn bf16_bytes(v: &[f32]) -> Vec<u8> {
    v.iter()
        .flat_map(|f| {
            let b = f.to_bits();
            let r = b.wrapping_add(0x7fff + ((b >> 16) & 1));
            ((r >> 16) as u16).to_le_bytes()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safetensors_header_is_valid() {
        let t = vec![
            Tensor { name: "a".into(), dtype: "F32", shape: vec![2, 3], data: f32_bytes(&weights_f32(6, 1, 0.02)) },
            Tensor { name: "b".into(), dtype: "BF16", shape: vec![4], data: bf16_bytes(&weights_f32(4, 2, 0.02)) },
        ];
        let mut out = Vec::new();
        write_safetensors(&mut out, &t, &BTreeMap::from([("format".to_string(), "pt".to_string())])).unwrap();
        let n = u64::from_le_bytes(out[..8].try_into().unwrap()) as usize;
        assert_eq!(n % 8, 0);
        let h: serde_json::Value = serde_json::from_slice(&out[8..8 + n]).unwrap();
        assert_eq!(h["a"]["data_offsets"], serde_json::json!([0, 24]));
        assert_eq!(h["b"]["data_offsets"], serde_json::json!([24, 32]));
        assert_eq!(out.len(), 8 + n + 32);
    }
}
