//! GGUF v2/v3 (llama.cpp's format): magic `GGUF`, u32 version, u64 tensor count, u64 key-value count, the
//! key-values (typed, arrays included), the tensor infos (name, dims, ggml type, offset), then the data section
//! at the next multiple of `general.alignment` (default 32), each tensor at an aligned offset within it.
//! Everything is little-endian; strings are a u64 length and UTF-8 bytes.

use super::{Format, Layout, Source, TensorInfo};
use crate::error::{Error, Result};
use crate::format::FloatKind;

pub const MAGIC: &[u8] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;
const MAX_DIMS: u32 = 4;

/// (name, elements per block, bytes per block) of the ggml types we know. A tensor of any other type makes the
/// file malformed for us (it is then stored as plain bytes).
fn ggml_type(type_id: u32) -> Option<(&'static str, u64, u64)> {
    Some(match type_id {
        0 => ("F32", 1, 4),
        1 => ("F16", 1, 2),
        2 => ("Q4_0", 32, 18),
        3 => ("Q4_1", 32, 20),
        6 => ("Q5_0", 32, 22),
        7 => ("Q5_1", 32, 24),
        8 => ("Q8_0", 32, 34),
        9 => ("Q8_1", 32, 36),
        10 => ("Q2_K", 256, 84),
        11 => ("Q3_K", 256, 110),
        12 => ("Q4_K", 256, 144),
        13 => ("Q5_K", 256, 176),
        14 => ("Q6_K", 256, 210),
        15 => ("Q8_K", 256, 292),
        24 => ("I8", 1, 1),
        25 => ("I16", 1, 2),
        26 => ("I32", 1, 4),
        27 => ("I64", 1, 8),
        28 => ("F64", 1, 8),
        30 => ("BF16", 1, 2),
        _ => return None,
    })
}

/// A forward reader over a `Source` that fetches in blocks, with every read checked against the file length.
struct Cursor<'a, S: Source + ?Sized> {
    src: &'a S,
    pos: u64,
    buf: Vec<u8>,
    buf_start: u64,
}

impl<'a, S: Source + ?Sized> Cursor<'a, S> {
    fn bad(&self, why: impl std::fmt::Display) -> Error {
        Error::malformed("gguf", format!("at byte {}: {why}", self.pos))
    }

    fn take(&mut self, len: u64) -> Result<Vec<u8>> {
        if self.src.len().saturating_sub(self.pos) < len {
            return Err(self.bad(format!("{len} bytes needed, the file ends first")));
        }
        let in_buf = self.pos >= self.buf_start && self.pos + len <= self.buf_start + self.buf.len() as u64;
        if !in_buf {
            let want = len.max(1 << 16).min(self.src.len() - self.pos);
            self.buf = super::read_range(self.src, "gguf", self.pos, want)?;
            self.buf_start = self.pos;
        }
        let s = (self.pos - self.buf_start) as usize;
        self.pos += len;
        Ok(self.buf[s..s + len as usize].to_vec())
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn string(&mut self) -> Result<String> {
        let n = self.u64()?;
        let b = self.take(n)?;
        String::from_utf8(b).map_err(|_| self.bad("string is not UTF-8"))
    }

    /// Skip one value of `ty`; returns it as u64 when it is an unsigned integer (for `general.alignment`).
    fn value(&mut self, ty: u32, depth: u32) -> Result<Option<u64>> {
        let fixed = |ty| match ty {
            0 | 1 | 7 => Some(1),
            2 | 3 => Some(2),
            4..=6 => Some(4),
            10..=12 => Some(8),
            _ => None,
        };
        if let Some(n) = fixed(ty) {
            let b = self.take(n)?;
            return Ok(match ty {
                4 => Some(u32::from_le_bytes(b.try_into().expect("4")) as u64),
                10 => Some(u64::from_le_bytes(b.try_into().expect("8"))),
                _ => None,
            });
        }
        match ty {
            8 => {
                self.string()?;
            }
            9 if depth == 0 => {
                let et = self.u32()?;
                let count = self.u64()?;
                match fixed(et) {
                    Some(n) => {
                        let total = count.checked_mul(n).ok_or_else(|| self.bad("array size overflows"))?;
                        if self.src.len().saturating_sub(self.pos) < total {
                            return Err(self.bad(format!("array of {count} runs past the end of the file")));
                        }
                        self.pos += total;
                    }
                    None => {
                        // Each element takes at least 8 bytes (a string length or a nested header).
                        if count > self.src.len().saturating_sub(self.pos) / 8 {
                            return Err(self.bad(format!("array of {count} cannot fit in the file")));
                        }
                        for _ in 0..count {
                            self.value(et, depth + 1)?;
                        }
                    }
                }
            }
            9 => return Err(self.bad("arrays nested deeper than one level")),
            _ => return Err(self.bad(format!("unknown value type {ty}"))),
        }
        Ok(None)
    }
}

/// Parse and check a GGUF file: magic, version 2 or 3, counts that fit in the file, every key-value, tensor
/// infos with at most 4 dims, a known ggml type, an element count that fills whole blocks, no overflow, an
/// offset aligned and inside the file, and no two tensors overlapping.
pub fn parse(src: &(impl Source + ?Sized)) -> Result<Layout> {
    let mut c = Cursor { src, pos: 0, buf: Vec::new(), buf_start: 0 };
    if c.take(4)? != MAGIC {
        return Err(c.bad("not a GGUF file (magic)"));
    }
    let version = c.u32()?;
    if !(2..=3).contains(&version) {
        return Err(c.bad(format!("version {version} is not supported (2 and 3 are)")));
    }
    let n_tensors = c.u64()?;
    let n_kv = c.u64()?;
    // The smallest key-value is 13 bytes and the smallest tensor info 28: counts beyond that are lies.
    if n_kv > src.len() / 13 || n_tensors > src.len() / 28 {
        return Err(c.bad(format!("{n_kv} key-values and {n_tensors} tensors cannot fit in the file")));
    }
    let mut alignment = DEFAULT_ALIGNMENT;
    for _ in 0..n_kv {
        let key = c.string()?;
        let ty = c.u32()?;
        let v = c.value(ty, 0)?;
        if key == "general.alignment" {
            alignment = v.filter(|a| *a > 0 && a.is_power_of_two()).ok_or_else(|| c.bad("bad general.alignment"))?;
        }
    }
    let mut infos = Vec::new();
    for _ in 0..n_tensors {
        let name = c.string()?;
        let n_dims = c.u32()?;
        if n_dims > MAX_DIMS {
            return Err(c.bad(format!("{name}: {n_dims} dims (at most {MAX_DIMS})")));
        }
        let shape = (0..n_dims).map(|_| c.u64()).collect::<Result<Vec<u64>>>()?;
        let ty = c.u32()?;
        let offset = c.u64()?;
        let (tname, block, block_bytes) =
            ggml_type(ty).ok_or_else(|| c.bad(format!("{name}: unknown ggml type {ty}")))?;
        let elems = shape
            .iter()
            .try_fold(1u64, |a, d| a.checked_mul(*d))
            .ok_or_else(|| c.bad(format!("{name}: shape overflows")))?;
        if shape.first().is_some_and(|d| d % block != 0) {
            return Err(c.bad(format!("{name}: first dim is not a multiple of the {tname} block of {block}")));
        }
        let bytes = (elems / block).checked_mul(block_bytes).ok_or_else(|| c.bad(format!("{name}: size overflows")))?;
        if offset % alignment != 0 {
            return Err(c.bad(format!("{name}: offset {offset} is not aligned to {alignment}")));
        }
        let float = match tname {
            "F32" => Some(FloatKind::F32),
            "F16" => Some(FloatKind::F16),
            "BF16" => Some(FloatKind::Bf16),
            _ => None,
        };
        infos.push((name, tname, shape, offset, bytes, block_bytes, float));
    }
    let data_start = c.pos.div_ceil(alignment).checked_mul(alignment).ok_or_else(|| c.bad("data start overflows"))?;
    let mut tensors = Vec::with_capacity(infos.len());
    for (name, tname, shape, offset, bytes, unit, float) in infos {
        let start = data_start.checked_add(offset);
        let end = start.and_then(|s| s.checked_add(bytes)).filter(|e| *e <= src.len());
        let (Some(start), Some(end)) = (start, end) else {
            return Err(Error::malformed("gguf", format!("{name}: data runs past the end of the file")));
        };
        tensors.push(TensorInfo { name, dtype: tname.into(), shape, start, end, unit, float });
    }
    Layout::checked(Format::Gguf, src.len(), tensors)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s(out: &mut Vec<u8>, text: &str) {
        out.extend((text.len() as u64).to_le_bytes());
        out.extend(text.as_bytes());
    }

    /// A small valid GGUF v3: an alignment key, a string array, and two tensors (F32 [8], Q8_0 [32, 2]).
    pub(crate) fn sample() -> Vec<u8> {
        let mut f = b"GGUF".to_vec();
        f.extend(3u32.to_le_bytes());
        f.extend(2u64.to_le_bytes());
        f.extend(2u64.to_le_bytes());
        s(&mut f, "general.alignment");
        f.extend(4u32.to_le_bytes());
        f.extend(64u32.to_le_bytes());
        s(&mut f, "tokenizer.tokens");
        f.extend(9u32.to_le_bytes());
        f.extend(8u32.to_le_bytes());
        f.extend(2u64.to_le_bytes());
        s(&mut f, "a");
        s(&mut f, "bc");
        s(&mut f, "w");
        f.extend(1u32.to_le_bytes());
        f.extend(8u64.to_le_bytes());
        f.extend(0u32.to_le_bytes());
        f.extend(0u64.to_le_bytes());
        s(&mut f, "q");
        f.extend(2u32.to_le_bytes());
        f.extend(32u64.to_le_bytes());
        f.extend(2u64.to_le_bytes());
        f.extend(8u32.to_le_bytes());
        f.extend(64u64.to_le_bytes());
        f.resize(f.len().div_ceil(64) * 64, 0);
        f.extend([1u8; 32]);
        f.resize(f.len() + 32, 0);
        f.extend([2u8; 68]);
        f
    }

    #[test]
    fn parses_a_valid_file() {
        let f = sample();
        let l = parse(f.as_slice()).unwrap();
        assert_eq!(l.tensors.len(), 2);
        let (w, q) = (&l.tensors[0], &l.tensors[1]);
        assert_eq!((w.name.as_str(), w.float, w.len(), w.start % 64), ("w", Some(FloatKind::F32), 32, 0));
        assert_eq!((q.dtype.as_str(), q.unit, q.len(), q.start - w.start), ("Q8_0", 34, 68, 64));
        assert_eq!(&f[q.start as usize..q.end as usize], &[2u8; 68]);
    }

    #[test]
    fn truncations_and_lies_are_errors() {
        let f = sample();
        for cut in 0..f.len() {
            assert!(parse(&f[..cut]).is_err(), "truncated at {cut} was accepted");
        }
        let mut v1 = f.clone();
        v1[4] = 1;
        assert!(parse(v1.as_slice()).is_err(), "version 1");
        let mut many = f.clone();
        many[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(parse(many.as_slice()).is_err(), "huge tensor count");
    }

    proptest! {
        #[test]
        fn any_bytes_parse_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut f = b"GGUF\x03\0\0\0".to_vec();
            f.extend(bytes);
            if let Ok(l) = parse(f.as_slice()) {
                prop_assert!(l.tensors.iter().all(|t| t.end <= f.len() as u64));
            }
        }

        #[test]
        fn flipped_bytes_never_panic(i in 0usize..400, x in 1u8..=255) {
            let mut f = sample();
            let i = i % f.len();
            f[i] ^= x;
            if let Ok(l) = parse(f.as_slice()) {
                prop_assert!(l.tensors.iter().all(|t| t.end <= f.len() as u64));
            }
        }
    }
}
