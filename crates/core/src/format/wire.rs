//! Bounds-checked little-endian reading and writing shared by every binary format.
//!
//! The reader never indexes past its input and never trusts a length field before checking it against
//! the bytes that remain, which is what lets every parser promise "an error, never a panic".

use crate::error::{Error, Result};

pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, pos: 0, what }
    }

    pub fn err(&self, reason: impl Into<String>) -> Error {
        Error::malformed(self.what, format!("{} (at byte {})", reason.into(), self.pos))
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn take(&mut self, len: usize) -> Result<&'a [u8]> {
        if len > self.remaining() {
            return Err(self.err(format!("truncated: need {len} bytes, {} left", self.remaining())));
        }
        let s = &self.buf[self.pos..self.pos + len];
        self.pos += len;
        Ok(s)
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }
    pub fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    pub fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    pub fn bytes16(&mut self) -> Result<&'a [u8]> {
        let n = self.u16()? as usize;
        self.take(n)
    }
    pub fn bytes32(&mut self) -> Result<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    /// Check magic and version, the first five bytes of every format.
    pub fn header(&mut self, magic: &[u8; 4], version: u8) -> Result<()> {
        let m = self.take(4).map_err(|_| self.err("too short for a header"))?;
        if m != magic {
            return Err(self.err(format!(
                "bad magic {:?}, expected {:?}",
                String::from_utf8_lossy(m),
                std::str::from_utf8(magic).unwrap_or("?")
            )));
        }
        let v = self.u8()?;
        if v != version {
            return Err(self.err(format!("unsupported format version {v} (this build reads {version})")));
        }
        Ok(())
    }

    /// A count of items that each take at least `min_item` bytes: rejects counts the input cannot hold,
    /// so a forged count cannot make the parser reserve memory.
    pub fn count(&mut self, min_item: usize) -> Result<usize> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_item) > self.remaining() {
            return Err(self.err(format!("count {n} does not fit in {} bytes", self.remaining())));
        }
        Ok(n)
    }

    pub fn finish(&self) -> Result<()> {
        if self.remaining() != 0 {
            return Err(self.err(format!("{} trailing bytes", self.remaining())));
        }
        Ok(())
    }
}

#[derive(Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn with_header(magic: &[u8; 4], version: u8) -> Self {
        let mut w = Writer::default();
        w.buf.extend_from_slice(magic);
        w.buf.push(version);
        w
    }
    pub fn bytes(&mut self, data: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(data);
        self
    }
    pub fn u8(&mut self, value: u8) -> &mut Self {
        self.buf.push(value);
        self
    }
    pub fn u16(&mut self, value: u16) -> &mut Self {
        self.bytes(&value.to_le_bytes())
    }
    pub fn u32(&mut self, value: u32) -> &mut Self {
        self.bytes(&value.to_le_bytes())
    }
    pub fn u64(&mut self, value: u64) -> &mut Self {
        self.bytes(&value.to_le_bytes())
    }
    pub fn i64(&mut self, value: i64) -> &mut Self {
        self.bytes(&value.to_le_bytes())
    }
    /// Length-prefixed (u16) bytes; callers guarantee the length fits (names, targets, tenants).
    pub fn bytes16(&mut self, data: &[u8]) -> &mut Self {
        let n = u16::try_from(data.len()).expect("bytes16 field longer than 65535 bytes");
        self.u16(n).bytes(data)
    }
    pub fn bytes32(&mut self, data: &[u8]) -> &mut Self {
        let n = u32::try_from(data.len()).expect("bytes32 field longer than 4 GiB");
        self.u32(n).bytes(data)
    }
    pub fn into_vec(self) -> Vec<u8> {
        self.buf
    }
}
