//! PyTorch checkpoints (`torch.save` since 1.6): a zip archive holding `<name>/data.pkl` (the pickled structure)
//! and one entry per tensor storage (`<name>/data/<key>`), written uncompressed ("stored") and 64-byte aligned.
//! We read only the zip structure: the end-of-central-directory record (zip64 too), the central directory, and
//! each entry's local header, to find where every stored entry's bytes lie. Each stored entry then becomes its
//! own stream for chunking, so a storage dedups wherever it sits in any checkpoint. The pickle is never run.

use super::{read_range, Format, Layout, Source, TensorInfo};
use crate::error::{Error, Result};

pub const LOCAL_MAGIC: &[u8] = b"PK\x03\x04";
const EOCD_SIG: u64 = 0x0605_4b50;
const EOCD64_LOCATOR_SIG: u64 = 0x0706_4b50;
const EOCD64_SIG: u64 = 0x0606_4b50;
const CENTRAL_SIG: u64 = 0x0201_4b50;
const LOCAL_SIG: u64 = 0x0403_4b50;
const EOCD_LEN: u64 = 22;
const CENTRAL_LEN: usize = 46;
const LOCAL_LEN: u64 = 30;

fn bad(why: impl Into<String>) -> Error {
    Error::malformed("pytorch-zip", why)
}

fn le16(bytes: &[u8], at: usize) -> u64 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]]) as u64
}
fn le32(bytes: &[u8], at: usize) -> u64 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as u64
}
fn le64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// Where the central directory lies and how many entries it has.
fn central_directory(src: &(impl Source + ?Sized)) -> Result<(u64, u64, u64)> {
    let len = src.len();
    if len < EOCD_LEN {
        return Err(bad("too short for a zip archive"));
    }
    // The EOCD record ends the file, followed only by a comment of at most 65535 bytes.
    let tail_len = len.min(EOCD_LEN + 65535);
    let tail = read_range(src, "pytorch-zip", len - tail_len, tail_len)?;
    let at = (0..=tail.len() - EOCD_LEN as usize)
        .rev()
        .find(|&i| le32(&tail, i) == EOCD_SIG && i + EOCD_LEN as usize + le16(&tail, i + 20) as usize == tail.len())
        .ok_or_else(|| bad("no end-of-central-directory record"))?;
    let eocd_pos = len - tail_len + at as u64;
    let (mut entries, mut cd_size, mut cd_offset) = (le16(&tail, at + 10), le32(&tail, at + 12), le32(&tail, at + 16));
    if entries == 0xffff || cd_size == 0xffff_ffff || cd_offset == 0xffff_ffff {
        let loc_pos = eocd_pos.checked_sub(20).ok_or_else(|| bad("zip64 locator missing"))?;
        let loc = read_range(src, "pytorch-zip", loc_pos, 20)?;
        if le32(&loc, 0) != EOCD64_LOCATOR_SIG {
            return Err(bad("zip64 locator missing"));
        }
        let e64 = read_range(src, "pytorch-zip", le64(&loc, 8), 56)?;
        if le32(&e64, 0) != EOCD64_SIG {
            return Err(bad("zip64 end record missing"));
        }
        (entries, cd_size, cd_offset) = (le64(&e64, 32), le64(&e64, 40), le64(&e64, 48));
    }
    if cd_offset.checked_add(cd_size).is_none_or(|e| e > eocd_pos) {
        return Err(bad(format!("central directory at {cd_offset} (+{cd_size}) runs past its end record")));
    }
    if entries > cd_size / CENTRAL_LEN as u64 {
        return Err(bad(format!("{entries} entries cannot fit in a {cd_size}-byte central directory")));
    }
    Ok((cd_offset, cd_size, entries))
}

/// Parse and check a PyTorch zip checkpoint: a well-formed zip whose entries lie inside the file without
/// overlapping, one of them `data.pkl`. Every stored (uncompressed) entry becomes a tensor region.
pub fn parse(src: &(impl Source + ?Sized)) -> Result<Layout> {
    let (cd_offset, cd_size, entries) = central_directory(src)?;
    let cd = read_range(src, "pytorch-zip", cd_offset, cd_size)?;
    let mut pos = 0usize;
    let mut regions = Vec::new();
    let mut has_pickle = false;
    for _ in 0..entries {
        let h = cd.get(pos..pos + CENTRAL_LEN).ok_or_else(|| bad("central directory truncated"))?;
        if le32(h, 0) != CENTRAL_SIG {
            return Err(bad(format!("central directory entry at {} has a bad signature", cd_offset + pos as u64)));
        }
        let (method, mut csize, mut usize_) = (le16(h, 10), le32(h, 20), le32(h, 24));
        let (nlen, xlen, clen) = (le16(h, 28) as usize, le16(h, 30) as usize, le16(h, 32) as usize);
        let mut local = le32(h, 42);
        let var =
            cd.get(pos + CENTRAL_LEN..pos + CENTRAL_LEN + nlen + xlen + clen).ok_or_else(|| bad("entry truncated"))?;
        let name = String::from_utf8(var[..nlen].to_vec()).map_err(|_| bad("entry name is not UTF-8"))?;
        // Zip64: the extra field 0x0001 carries, in order, whichever of the three sizes were saturated.
        let mut extra = &var[nlen..nlen + xlen];
        while extra.len() >= 4 {
            let (id, n) = (le16(extra, 0), le16(extra, 2) as usize);
            let body = extra.get(4..4 + n).ok_or_else(|| bad(format!("{name}: extra field truncated")))?;
            if id == 1 {
                let mut at = 0;
                for field in [&mut usize_, &mut csize, &mut local] {
                    if *field == 0xffff_ffff {
                        *field = body
                            .get(at..at + 8)
                            .map(|b| le64(b, 0))
                            .ok_or_else(|| bad(format!("{name}: zip64 field missing")))?;
                        at += 8;
                    }
                }
            }
            extra = &extra[4 + n..];
        }
        pos += CENTRAL_LEN + nlen + xlen + clen;
        has_pickle |= name == "data.pkl" || name.ends_with("/data.pkl");
        let lh = read_range(src, "pytorch-zip", local, LOCAL_LEN)?;
        if le32(&lh, 0) != LOCAL_SIG {
            return Err(bad(format!("{name}: local header at {local} has a bad signature")));
        }
        let start = local + LOCAL_LEN + le16(&lh, 26) + le16(&lh, 28);
        let end = start
            .checked_add(csize)
            .filter(|e| *e <= cd_offset)
            .ok_or_else(|| bad(format!("{name}: data runs past the archive")))?;
        if method == 0 {
            if csize != usize_ {
                return Err(bad(format!("{name}: stored entry with sizes {csize} and {usize_}")));
            }
            regions.push(TensorInfo { name, dtype: "storage".into(), shape: vec![], start, end, unit: 1, float: None });
        }
    }
    if !has_pickle {
        return Err(bad("no data.pkl: a zip archive, but not a PyTorch checkpoint"));
    }
    Layout::checked(Format::PyTorchZip, src.len(), regions)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A minimal torch.save-like archive of stored entries.
    pub(crate) fn sample(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut f = Vec::new();
        let mut central = Vec::new();
        for (name, data) in entries {
            let off = f.len() as u32;
            f.extend((LOCAL_SIG as u32).to_le_bytes()); // then version, flags, method 0, time, date, crc
            f.extend([20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            f.extend((data.len() as u32).to_le_bytes());
            f.extend((data.len() as u32).to_le_bytes());
            f.extend((name.len() as u16).to_le_bytes());
            f.extend(0u16.to_le_bytes());
            f.extend(name.as_bytes());
            f.extend(*data);
            central.extend((CENTRAL_SIG as u32).to_le_bytes());
            central.extend([20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            central.extend((data.len() as u32).to_le_bytes());
            central.extend((data.len() as u32).to_le_bytes());
            central.extend((name.len() as u16).to_le_bytes());
            central.extend([0u8; 12]);
            central.extend(off.to_le_bytes());
            central.extend(name.as_bytes());
        }
        let cd_off = f.len() as u32;
        f.extend(&central);
        f.extend((EOCD_SIG as u32).to_le_bytes());
        f.extend([0u8; 4]);
        f.extend((entries.len() as u16).to_le_bytes());
        f.extend((entries.len() as u16).to_le_bytes());
        f.extend((central.len() as u32).to_le_bytes());
        f.extend(cd_off.to_le_bytes());
        f.extend(0u16.to_le_bytes());
        f
    }

    #[test]
    fn stored_entries_become_regions() {
        let f = sample(&[("ckpt/data.pkl", b"\x80\x02}q\x00."), ("ckpt/data/0", &[7u8; 40]), ("ckpt/version", b"3\n")]);
        let l = parse(f.as_slice()).unwrap();
        assert_eq!(l.tensors.len(), 3);
        let t = &l.tensors[1];
        assert_eq!(t.name, "ckpt/data/0");
        assert_eq!(&f[t.start as usize..t.end as usize], &[7u8; 40]);
    }

    #[test]
    fn zips_without_a_pickle_and_truncations_are_errors() {
        assert!(parse(sample(&[("a.txt", b"hi")]).as_slice()).is_err());
        let f = sample(&[("x/data.pkl", b"p"), ("x/data/0", &[1u8; 16])]);
        for cut in 0..f.len() {
            assert!(parse(&f[..cut]).is_err(), "cut at {cut} accepted");
        }
    }

    proptest! {
        #[test]
        fn flipped_bytes_never_panic(i in 0usize..400, x in 1u8..=255) {
            let mut f = sample(&[("x/data.pkl", b"pickle"), ("x/data/0", &[1u8; 64]), ("x/data/1", &[2u8; 8])]);
            let i = i % f.len();
            f[i] ^= x;
            if let Ok(l) = parse(f.as_slice()) {
                prop_assert!(l.tensors.iter().all(|t| t.end <= f.len() as u64));
            }
        }
    }
}
