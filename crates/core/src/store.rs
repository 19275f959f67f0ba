//! Stores: the places bytes live. One small trait so the rest of the code does not care whether a store is a
//! local directory or (from the distributed-storage issue on) an OpenDAL operator over S3 or HDFS.
//!
//! Every `put` is atomic: the object is there whole or not at all. On `fs:` that is temp file + fsync +
//! rename + fsync of the directory, so a SIGKILL or power cut never leaves a half object under its name.

use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub trait Store: Send + Sync {
    /// The URL this store was opened from, for messages.
    fn url(&self) -> &str;
    fn get(&self, path: &str) -> Result<Vec<u8>>;
    fn get_range(&self, path: &str, offset: u64, len: u64) -> Result<Vec<u8>>;
    fn put(&self, path: &str, bytes: &[u8]) -> Result<()>;
    fn delete(&self, path: &str) -> Result<()>;
    /// Every object name under `prefix` (a directory-like prefix without trailing slash), recursively.
    fn list(&self, prefix: &str) -> Result<Vec<String>>;
    fn exists(&self, path: &str) -> Result<bool>;
}

/// Open a store from a URL: `fs:/dir`, a plain directory path, or `memory:NAME` (tests).
pub fn open(url: &str) -> Result<Box<dyn Store>> {
    if let Some(name) = url.strip_prefix("memory:") {
        return Ok(Box::new(MemoryStore::named(name)));
    }
    if let Some((scheme, _)) = url.split_once("://") {
        return Err(Error::Usage(format!(
            "store URL {url:?}: scheme {scheme:?} is not supported yet (use fs: or a directory path)"
        )));
    }
    let path = url.strip_prefix("fs:").unwrap_or(url);
    if path.is_empty() {
        return Err(Error::Usage("empty store path".into()));
    }
    let abs = std::path::absolute(path).map_err(|e| Error::io("resolve", path, e))?;
    Ok(Box::new(FsStore { root: abs.clone(), url: format!("fs:{}", abs.display()) }))
}

/// Normalise a user-given location to the URL recorded in the config.
pub fn normalize_url(url: &str) -> Result<String> {
    Ok(open(url)?.url().to_string())
}

pub struct FsStore {
    root: PathBuf,
    url: String,
}

impl FsStore {
    fn full(&self, path: &str) -> PathBuf {
        self.root.join(path)
    }
    fn err(&self, op: &'static str, path: &str, e: std::io::Error) -> Error {
        if e.kind() == std::io::ErrorKind::NotFound && op != "put" {
            return Error::NotFound(format!("{}/{path}", self.url));
        }
        Error::Store { store: self.url.clone(), op, path: path.to_string(), source: e }
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

impl Store for FsStore {
    fn url(&self) -> &str {
        &self.url
    }

    fn get(&self, path: &str) -> Result<Vec<u8>> {
        fs::read(self.full(path)).map_err(|e| self.err("get", path, e))
    }

    fn get_range(&self, path: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let mut f = fs::File::open(self.full(path)).map_err(|e| self.err("get", path, e))?;
        f.seek(SeekFrom::Start(offset)).map_err(|e| self.err("seek", path, e))?;
        let mut buf = Vec::with_capacity(len as usize);
        f.take(len).read_to_end(&mut buf).map_err(|e| self.err("read", path, e))?;
        if buf.len() as u64 != len {
            return Err(Error::corrupt(
                format!("{}/{path}", self.url),
                format!("truncated: wanted {len} bytes at {offset}, got {}", buf.len()),
            ));
        }
        Ok(buf)
    }

    fn put(&self, path: &str, bytes: &[u8]) -> Result<()> {
        let full = self.full(path);
        let dir = full.parent().expect("object paths have a parent");
        fs::create_dir_all(dir).map_err(|e| self.err("put", path, e))?;
        let mut suffix = [0u8; 8];
        crate::crypto::fill_random(&mut suffix);
        let tmp = full.with_file_name(format!(
            "{}.tmp-{}",
            full.file_name().and_then(|n| n.to_str()).unwrap_or("obj"),
            hex::encode(suffix)
        ));
        let result = (|| -> std::io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, &full)?;
            sync_dir(dir)
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(self.err("put", path, e));
        }
        Ok(())
    }

    fn delete(&self, path: &str) -> Result<()> {
        match fs::remove_file(self.full(path)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.err("delete", path, e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut stack = vec![prefix.trim_end_matches('/').to_string()];
        while let Some(rel) = stack.pop() {
            let rd = match fs::read_dir(self.full(&rel)) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(self.err("list", &rel, e)),
            };
            for ent in rd {
                let ent = ent.map_err(|e| self.err("list", &rel, e))?;
                let name = ent.file_name().to_string_lossy().into_owned();
                let child = if rel.is_empty() { name.clone() } else { format!("{rel}/{name}") };
                let ft = ent.file_type().map_err(|e| self.err("list", &child, e))?;
                if ft.is_dir() {
                    stack.push(child);
                } else {
                    out.push(child);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn exists(&self, path: &str) -> Result<bool> {
        match fs::metadata(self.full(path)) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.err("stat", path, e)),
        }
    }
}

/// An in-process store for tests. Stores with the same name share their objects within one process.
pub struct MemoryStore {
    url: String,
    objects: std::sync::Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
}

type Shared = std::sync::Arc<Mutex<BTreeMap<String, Vec<u8>>>>;

impl MemoryStore {
    pub fn named(name: &str) -> Self {
        static REGISTRY: Mutex<BTreeMap<String, Shared>> = Mutex::new(BTreeMap::new());
        let mut reg = REGISTRY.lock().expect("memory store registry");
        let objects = reg.entry(name.to_string()).or_default().clone();
        MemoryStore { url: format!("memory:{name}"), objects }
    }
    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        self.objects.lock().expect("memory store lock")
    }
}

impl Store for MemoryStore {
    fn url(&self) -> &str {
        &self.url
    }
    fn get(&self, path: &str) -> Result<Vec<u8>> {
        self.map().get(path).cloned().ok_or_else(|| Error::NotFound(format!("{}/{path}", self.url)))
    }
    fn get_range(&self, path: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let m = self.map();
        let v = m.get(path).ok_or_else(|| Error::NotFound(format!("{}/{path}", self.url)))?;
        let end = offset.checked_add(len).filter(|e| *e <= v.len() as u64);
        match end {
            Some(end) => Ok(v[offset as usize..end as usize].to_vec()),
            None => Err(Error::corrupt(format!("{}/{path}", self.url), "range beyond end of object")),
        }
    }
    fn put(&self, path: &str, bytes: &[u8]) -> Result<()> {
        self.map().insert(path.to_string(), bytes.to_vec());
        Ok(())
    }
    fn delete(&self, path: &str) -> Result<()> {
        self.map().remove(path);
        Ok(())
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let p = format!("{}/", prefix.trim_end_matches('/'));
        Ok(self.map().keys().filter(|k| prefix.is_empty() || k.starts_with(&p)).cloned().collect())
    }
    fn exists(&self, path: &str) -> Result<bool> {
        Ok(self.map().contains_key(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise(s: &dyn Store) {
        s.put("a/b/c", b"hello").unwrap();
        s.put("a/d", b"x").unwrap();
        assert_eq!(s.get("a/b/c").unwrap(), b"hello");
        assert_eq!(s.get_range("a/b/c", 1, 3).unwrap(), b"ell");
        assert!(s.get_range("a/b/c", 3, 3).is_err());
        assert_eq!(s.list("a").unwrap(), vec!["a/b/c".to_string(), "a/d".to_string()]);
        assert!(matches!(s.get("nope"), Err(Error::NotFound(_))));
        s.delete("a/d").unwrap();
        assert!(!s.exists("a/d").unwrap());
    }

    #[test]
    fn fs_store_contract() {
        let d = tempfile::tempdir().unwrap();
        exercise(&*open(d.path().to_str().unwrap()).unwrap());
    }

    #[test]
    fn memory_store_contract() {
        exercise(&*open("memory:store-contract").unwrap());
    }
}
