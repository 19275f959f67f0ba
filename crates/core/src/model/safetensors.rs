//! safetensors: u64 little-endian header length N, N bytes of JSON (tensor name -> dtype, shape, data_offsets
//! relative to the data section; optional `__metadata__` of string values), then the tensor data. The writer
//! pads the JSON with spaces to a multiple of 8, as the reference implementation does.

use super::{read_range, Format, Layout, Source, TensorInfo};
use crate::error::{Error, Result};
use crate::format::FloatKind;
use std::collections::BTreeMap;
use std::io::Write;

/// The largest header we accept (the reference implementation's cap).
pub const MAX_HEADER: u64 = 100_000_000;

/// Bytes per element of a safetensors dtype.
pub fn dtype_size(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E4M3" | "F8_E5M2" | "F8_E8M0" => 1,
        "U16" | "I16" | "F16" | "BF16" => 2,
        "U32" | "I32" | "F32" => 4,
        "U64" | "I64" | "F64" => 8,
        _ => return None,
    })
}

pub fn float_kind(dtype: &str) -> Option<FloatKind> {
    match dtype {
        "BF16" => Some(FloatKind::Bf16),
        "F16" => Some(FloatKind::F16),
        "F32" => Some(FloatKind::F32),
        _ => None,
    }
}

/// Parse and check a safetensors file. Every rule is checked: header length within bounds and the file, a JSON
/// object of tensors with known dtypes and string metadata, shape x element size equal to the byte range
/// (with overflow checks), and ranges that tile the data section exactly: no gap, overlap or trailing byte.
pub fn parse(src: &(impl Source + ?Sized)) -> Result<Layout> {
    let bad = |why: String| Error::malformed("safetensors", why);
    let file_len = src.len();
    let n = u64::from_le_bytes(read_range(src, "safetensors", 0, 8)?.try_into().expect("8 bytes"));
    if n > MAX_HEADER || n > file_len - 8 {
        return Err(bad(format!("header length {n} exceeds the 100 MB limit or the file")));
    }
    let header = read_range(src, "safetensors", 8, n)?;
    let json: serde_json::Value = serde_json::from_slice(&header).map_err(|e| bad(format!("header JSON: {e}")))?;
    let obj = json.as_object().ok_or_else(|| bad("header is not a JSON object".into()))?;
    let data_start = 8 + n;
    let data_len = file_len - data_start;
    let mut tensors = Vec::new();
    for (name, v) in obj {
        if name == "__metadata__" {
            let meta = v.as_object().ok_or_else(|| bad("__metadata__ is not an object".into()))?;
            if let Some((k, _)) = meta.iter().find(|(_, v)| !v.is_string()) {
                return Err(bad(format!("metadata {k:?} is not a string")));
            }
            continue;
        }
        let dtype = v["dtype"].as_str().ok_or_else(|| bad(format!("{name}: no dtype")))?;
        let size = dtype_size(dtype).ok_or_else(|| bad(format!("{name}: unknown dtype {dtype:?}")))?;
        let shape: Vec<u64> = v["shape"]
            .as_array()
            .ok_or_else(|| bad(format!("{name}: no shape")))?
            .iter()
            .map(|d| d.as_u64().ok_or_else(|| bad(format!("{name}: shape holds a non-integer"))))
            .collect::<Result<_>>()?;
        let offs = v["data_offsets"]
            .as_array()
            .filter(|a| a.len() == 2)
            .ok_or_else(|| bad(format!("{name}: data_offsets is not [start, end]")))?;
        let (s, e) = match (offs[0].as_u64(), offs[1].as_u64()) {
            (Some(s), Some(e)) if s <= e && e <= data_len => (s, e),
            _ => return Err(bad(format!("{name}: data_offsets out of range"))),
        };
        let elems = shape
            .iter()
            .try_fold(1u64, |acc, d| acc.checked_mul(*d))
            .ok_or_else(|| bad(format!("{name}: shape overflows")))?;
        let bytes = elems.checked_mul(size).ok_or_else(|| bad(format!("{name}: size overflows")))?;
        if bytes != e - s {
            return Err(bad(format!("{name}: {dtype} {shape:?} is {bytes} bytes but its range holds {}", e - s)));
        }
        tensors.push(TensorInfo {
            name: name.clone(),
            dtype: dtype.to_string(),
            shape,
            start: data_start + s,
            end: data_start + e,
            unit: size,
            float: float_kind(dtype),
        });
    }
    tensors.sort_by_key(|t| (t.start, t.end));
    let mut pos = data_start;
    for t in &tensors {
        if t.start != pos {
            return Err(bad(format!(
                "{}: starts at {} but the data before it ends at {pos} (gap or overlap)",
                t.name, t.start
            )));
        }
        pos = t.end;
    }
    if pos != file_len {
        return Err(bad(format!("{} bytes after the last tensor", file_len - pos)));
    }
    Layout::checked(Format::Safetensors, file_len, tensors)
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{bf16_bytes, f32_bytes, weights_f32};
    use proptest::prelude::*;

    fn file(tensors: &[Tensor]) -> Vec<u8> {
        let mut out = Vec::new();
        write_safetensors(&mut out, tensors, &BTreeMap::new()).unwrap();
        out
    }

    fn header_file(json: &str, data: usize) -> Vec<u8> {
        let mut out = (json.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(json.as_bytes());
        out.resize(out.len() + data, 0);
        out
    }

    #[test]
    fn parses_what_the_writer_wrote() {
        let t = vec![
            Tensor { name: "z".into(), dtype: "F32", shape: vec![2, 3], data: f32_bytes(&weights_f32(6, 1, 0.02)) },
            Tensor { name: "a".into(), dtype: "BF16", shape: vec![4], data: bf16_bytes(&weights_f32(4, 2, 0.02)) },
            Tensor { name: "e".into(), dtype: "F16", shape: vec![0], data: vec![] },
        ];
        let f = file(&t);
        let l = parse(f.as_slice()).unwrap();
        let names: Vec<&str> = l.tensors.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["z", "a", "e"], "sorted by offset, not by name");
        assert_eq!(l.tensors[0].len(), 24);
        assert_eq!(l.tensors[1].float, Some(FloatKind::Bf16));
        assert_eq!(l.tensors[1].unit, 2);
        assert_eq!(l.tensors[2].end as usize, f.len());
    }

    #[test]
    fn every_broken_rule_is_an_error() {
        let cases = [
            (r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, 4, "range past the data"),
            (r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, 8, "shape disagrees"),
            (r#"{"a":{"dtype":"F31","shape":[2],"data_offsets":[0,8]}}"#, 8, "unknown dtype"),
            (r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, 12, "trailing bytes"),
            (r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, 8, "gap at the start"),
            (
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
                8,
                "overlap",
            ),
            (r#"{"a":{"dtype":"U8","shape":[4294967296,4294967296,2],"data_offsets":[0,0]}}"#, 0, "overflow"),
            (r#"{"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,0]}}"#, 0, "negative dim"),
            (r#"{"__metadata__":{"k":1}}"#, 0, "non-string metadata"),
            (r#"[1,2]"#, 0, "not an object"),
            (r#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[1,0]}}"#, 1, "reversed range"),
        ];
        for (json, data, why) in cases {
            assert!(parse(header_file(json, data).as_slice()).is_err(), "{why} was accepted");
        }
        assert!(parse(b"\xff\xff\xff\xff\xff\xff\xff\x7f{}".as_slice()).is_err(), "huge header length");
        assert!(parse(b"\x02\0\0".as_slice()).is_err(), "short file");
        assert!(parse(header_file(r#"{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}"#, 2).as_slice()).is_ok());
    }

    proptest! {
        /// Any byte string: an error or a layout whose tensors tile the file exactly.
        #[test]
        fn any_bytes_parse_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(l) = parse(bytes.as_slice()) {
                prop_assert_eq!(l.tensors.last().map_or(l.file_len, |t| t.end), bytes.len() as u64);
            }
        }

        #[test]
        fn written_files_round_trip(sizes in proptest::collection::vec(0usize..40, 0..6)) {
            let t: Vec<Tensor> = sizes.iter().enumerate().map(|(i, n)| Tensor {
                name: format!("t{i}"), dtype: "BF16", shape: vec![*n as u64], data: vec![i as u8; n * 2],
            }).collect();
            let f = file(&t);
            let l = parse(f.as_slice()).unwrap();
            prop_assert_eq!(l.tensors.len(), t.len());
            for (a, b) in l.tensors.iter().zip(&t) {
                prop_assert_eq!(&f[a.start as usize..a.end as usize], b.data.as_slice());
            }
        }
    }

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
