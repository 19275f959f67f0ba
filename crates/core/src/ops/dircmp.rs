//! Compare two directory trees entry by entry: type, content, mode, mtime and symlink target. Used by the
//! demo, the disaster drill and the tests to prove a restore is exact.

use crate::error::{Error, Result};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Compared {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub bytes: u64,
}

fn differ(path: &Path, what: impl Into<String>) -> Error {
    Error::corrupt(path.display().to_string(), format!("differs from the original: {}", what.into()))
}

fn same_content(a: &Path, b: &Path) -> Result<bool> {
    let mut fa = std::io::BufReader::new(std::fs::File::open(a).map_err(|e| Error::io("open", a, e))?);
    let mut fb = std::io::BufReader::new(std::fs::File::open(b).map_err(|e| Error::io("open", b, e))?);
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = fa.read(&mut ba).map_err(|e| Error::io("read", a, e))?;
        if n == 0 {
            let mut one = [0u8; 1];
            return Ok(fb.read(&mut one).map_err(|e| Error::io("read", b, e))? == 0);
        }
        if fb.read_exact(&mut bb[..n]).is_err() || ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

/// Check that `copy` holds exactly what `original` holds. Directory mtimes are compared too.
pub fn compare(original: &Path, copy: &Path) -> Result<Compared> {
    let mut c = Compared::default();
    compare_into(original, copy, &mut c)?;
    Ok(c)
}

fn compare_into(a: &Path, b: &Path, c: &mut Compared) -> Result<()> {
    let ma = std::fs::symlink_metadata(a).map_err(|e| Error::io("stat", a, e))?;
    let mb = std::fs::symlink_metadata(b).map_err(|_| differ(b, "missing"))?;
    if ma.file_type() != mb.file_type() {
        return Err(differ(b, "another file type"));
    }
    if ma.file_type().is_symlink() {
        if std::fs::read_link(a).ok() != std::fs::read_link(b).ok() {
            return Err(differ(b, "symlink target"));
        }
        c.symlinks += 1;
    } else {
        if ma.mode() != mb.mode() {
            return Err(differ(b, format!("mode {:o} instead of {:o}", mb.mode(), ma.mode())));
        }
        if ma.is_file() {
            if ma.size() != mb.size() || !same_content(a, b)? {
                return Err(differ(b, "content"));
            }
            c.files += 1;
            c.bytes += ma.size();
        } else if ma.is_dir() {
            let mut names: Vec<_> = std::fs::read_dir(a)
                .map_err(|e| Error::io("read dir", a, e))?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<std::io::Result<_>>()
                .map_err(|e| Error::io("read dir", a, e))?;
            names.sort();
            let count_b = std::fs::read_dir(b).map_err(|e| Error::io("read dir", b, e))?.count();
            if count_b != names.len() {
                return Err(differ(b, format!("{count_b} entries instead of {}", names.len())));
            }
            for n in &names {
                compare_into(&a.join(n), &b.join(n), c)?;
            }
            c.dirs += 1;
        }
    }
    if (ma.mtime(), ma.mtime_nsec()) != (mb.mtime(), mb.mtime_nsec()) {
        return Err(differ(b, "mtime"));
    }
    Ok(())
}
