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

fn same_content(original: &Path, copy: &Path) -> Result<bool> {
    let mut fa = std::io::BufReader::new(std::fs::File::open(original).map_err(|e| Error::io("open", original, e))?);
    let mut fb = std::io::BufReader::new(std::fs::File::open(copy).map_err(|e| Error::io("open", copy, e))?);
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = fa.read(&mut ba).map_err(|e| Error::io("read", original, e))?;
        if n == 0 {
            let mut one = [0u8; 1];
            return Ok(fb.read(&mut one).map_err(|e| Error::io("read", copy, e))? == 0);
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

fn compare_into(original: &Path, copy: &Path, compared: &mut Compared) -> Result<()> {
    let ma = std::fs::symlink_metadata(original).map_err(|e| Error::io("stat", original, e))?;
    let mb = std::fs::symlink_metadata(copy).map_err(|_| differ(copy, "missing"))?;
    if ma.file_type() != mb.file_type() {
        return Err(differ(copy, "another file type"));
    }
    if ma.file_type().is_symlink() {
        if std::fs::read_link(original).ok() != std::fs::read_link(copy).ok() {
            return Err(differ(copy, "symlink target"));
        }
        compared.symlinks += 1;
    } else {
        if ma.mode() != mb.mode() {
            return Err(differ(copy, format!("mode {:o} instead of {:o}", mb.mode(), ma.mode())));
        }
        if ma.is_file() {
            if ma.size() != mb.size() || !same_content(original, copy)? {
                return Err(differ(copy, "content"));
            }
            compared.files += 1;
            compared.bytes += ma.size();
        } else if ma.is_dir() {
            let mut names: Vec<_> = std::fs::read_dir(original)
                .map_err(|e| Error::io("read dir", original, e))?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<std::io::Result<_>>()
                .map_err(|e| Error::io("read dir", original, e))?;
            names.sort();
            let count_b = std::fs::read_dir(copy).map_err(|e| Error::io("read dir", copy, e))?.count();
            if count_b != names.len() {
                return Err(differ(copy, format!("{count_b} entries instead of {}", names.len())));
            }
            for n in &names {
                compare_into(&original.join(n), &copy.join(n), compared)?;
            }
            compared.dirs += 1;
        }
    }
    if (ma.mtime(), ma.mtime_nsec()) != (mb.mtime(), mb.mtime_nsec()) {
        return Err(differ(copy, "mtime"));
    }
    Ok(())
}
