//! Model files: strict parsers for safetensors, GGUF and PyTorch zip checkpoints, and the one layout they all
//! produce (where each tensor lies and how wide its elements are), which tensor-aligned chunking follows.
//!
//! The parsers read untrusted bytes: every length is checked against the file before anything is allocated or
//! read, and any inconsistency is an error. A file that fails to parse is backed up as a plain file (with a
//! warning when it claimed to be a model file); a layout is never trusted beyond choosing chunk boundaries and
//! a codec, so a lying header can cost compression but never correctness (the chunk bytes are what is stored).

pub mod gguf;
pub mod ptzip;
pub mod safetensors;

use crate::error::{Error, Result};
use crate::format::FloatKind;
use std::path::Path;

/// One tensor of a parsed model file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    /// The file format's own name for the element type ("BF16", "Q4_0", "storage" for zip entries).
    pub dtype: String,
    pub shape: Vec<u64>,
    /// Absolute byte range in the file.
    pub start: u64,
    pub end: u64,
    /// Chunk boundaries inside the tensor fall on multiples of this (the element, or the quantization block).
    pub unit: u64,
    /// Set for float tensors the byte-grouped codec can split.
    pub float: Option<FloatKind>,
}

impl TensorInfo {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Safetensors,
    Gguf,
    PyTorchZip,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Safetensors => "safetensors",
            Format::Gguf => "gguf",
            Format::PyTorchZip => "pytorch-zip",
        }
    }
}

/// Where the tensors of a model file lie. Tensors are sorted by offset and do not overlap; the bytes between
/// them (headers, padding, metadata) are the file's other regions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub format: Format,
    pub file_len: u64,
    pub tensors: Vec<TensorInfo>,
}

impl Layout {
    /// Check the invariants every parser promises; parsers call it last.
    fn checked(format: Format, file_len: u64, mut tensors: Vec<TensorInfo>) -> Result<Layout> {
        tensors.sort_by_key(|t| (t.start, t.end));
        let mut pos = 0;
        for t in &tensors {
            if t.start < pos || t.end < t.start || t.end > file_len || t.unit == 0 {
                return Err(Error::malformed(
                    format.name(),
                    format!("tensor {} overlaps another or the file end", t.name),
                ));
            }
            pos = t.end;
        }
        Ok(Layout { format, file_len, tensors })
    }
}

/// Random access to the bytes being parsed: a file, or a byte slice in tests and fuzz targets.
pub trait Source {
    fn len(&self) -> u64;
    /// Exactly `len` bytes at `offset`; callers have checked the range against `len()`.
    fn read_at(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>>;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Source for [u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }
    fn read_at(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        let s = usize::try_from(offset).ok().and_then(|o| self.get(o..o.checked_add(len)?));
        s.map(|s| s.to_vec()).ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))
    }
}

impl Source for std::fs::File {
    fn len(&self) -> u64 {
        self.metadata().map(|m| m.len()).unwrap_or(0)
    }
    fn read_at(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0; len];
        self.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }
}

/// Read a checked range, turning a short read into a format error.
pub(crate) fn read_range(src: &(impl Source + ?Sized), what: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
    let end = offset.checked_add(len).filter(|e| *e <= src.len());
    let Some(n) = usize::try_from(len).ok().filter(|_| end.is_some()) else {
        return Err(Error::malformed(what, format!("{len} bytes at offset {offset} run past the end of the file")));
    };
    src.read_at(offset, n).map_err(|e| Error::malformed(what, format!("read at {offset}: {e}")))
}

/// What a file turned out to be.
pub enum Detected {
    /// Not a model file by name or magic: chunk it as plain bytes.
    Plain,
    Model(Layout),
    /// It looked like a model file but did not parse: back it up as plain bytes and say why.
    Malformed(Error),
}

/// Recognise a model file by magic bytes or extension and parse its layout. Only a file that claims to be a
/// model (magic or extension) can be `Malformed`; any other file that fails is simply `Plain`.
pub fn detect(path: &Path, src: &(impl Source + ?Sized)) -> Detected {
    let ext = path.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()).unwrap_or_default();
    let magic = if src.len() >= 4 { src.read_at(0, 4).unwrap_or_default() } else { Vec::new() };
    let outcome = |r: Result<Layout>, claimed: bool| match r {
        Ok(l) => Detected::Model(l),
        Err(e) if claimed => Detected::Malformed(e),
        Err(_) => Detected::Plain,
    };
    if magic == gguf::MAGIC {
        return outcome(gguf::parse(src), true);
    }
    if magic == ptzip::LOCAL_MAGIC {
        let claimed = matches!(ext.as_str(), "pt" | "pth" | "ckpt" | "bin");
        return outcome(ptzip::parse(src), claimed);
    }
    if ext == "safetensors" {
        return outcome(safetensors::parse(src), true);
    }
    if ext == "gguf" || matches!(ext.as_str(), "pt" | "pth" | "ckpt") {
        return Detected::Malformed(Error::malformed(ext, "the magic bytes do not match the file name's format"));
    }
    Detected::Plain
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_read_exactly_or_fail() {
        let b: &[u8] = b"hello";
        assert_eq!(b.read_at(1, 3).unwrap(), b"ell");
        assert!(b.read_at(3, 3).is_err());
        assert!(b.read_at(u64::MAX, 1).is_err());
        assert!(read_range(b, "x", 4, u64::MAX).is_err());
    }

    #[test]
    fn plain_files_stay_plain_and_liars_are_named() {
        assert!(matches!(detect(Path::new("notes.txt"), b"GGU not a model".as_slice()), Detected::Plain));
        assert!(matches!(
            detect(Path::new("x.safetensors"), b"\x05\0\0\0\0\0\0\0{}".as_slice()),
            Detected::Malformed(_)
        ));
        assert!(matches!(detect(Path::new("x.bin"), b"GGUF\x03\0\0\0".as_slice()), Detected::Malformed(_)));
        assert!(matches!(detect(Path::new("x.gguf"), b"plain text".as_slice()), Detected::Malformed(_)));
    }
}
