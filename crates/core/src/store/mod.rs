//! Stores: the places bytes live. One small trait so the rest of the code does not care whether a store is a
//! local directory (this module), an OpenDAL operator over S3 or memory (`opendal.rs`) or an HDFS file
//! system (`hdfs.rs`).
//!
//! Every `put` is atomic: the object is there whole or not at all. On `fs:` that is temp file + fsync +
//! rename + fsync of the directory, so a SIGKILL or power cut never leaves a half object under its name, and
//! a pack is durable before the index that names it is written. (OpenDAL's fs service does not sync the
//! directory after its rename, which is why `fs:` is ours.) A store whose directory is gone is down, not
//! empty, and writes never recreate it.

pub mod hdfs;
pub mod opendal;
pub(crate) mod runtime;
pub mod settings;

use crate::error::{Error, Result};
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub trait Store: Send + Sync {
    /// The URL this store was opened from, for messages.
    fn url(&self) -> &str;
    fn get(&self, path: &str) -> Result<Vec<u8>>;
    fn get_range(&self, path: &str, offset: u64, len: u64) -> Result<Vec<u8>>;
    /// `get` into a buffer the caller reuses (its old contents are replaced).
    fn get_into(&self, path: &str, buf: &mut Vec<u8>) -> Result<()> {
        *buf = self.get(path)?;
        Ok(())
    }
    /// Write an object whole (readers see all of it or none), replacing any object of that name.
    fn put(&self, path: &str, bytes: &[u8]) -> Result<()> {
        self.put_parts(path, &[bytes])
    }
    /// `put` of the parts one after another, without joining them in memory first (a shard's header and a
    /// 16 MiB pack).
    fn put_parts(&self, path: &str, parts: &[&[u8]]) -> Result<()>;
    fn delete(&self, path: &str) -> Result<()>;
    /// Every object name under `prefix` (a directory-like prefix without trailing slash), recursively.
    fn list(&self, prefix: &str) -> Result<Vec<String>>;
    fn exists(&self, path: &str) -> Result<bool>;
    /// When an object was last written, if the store keeps that (prune's sweep of interrupted writes uses it
    /// to tell a crashed writer's temporary from one being written now).
    fn modified(&self, path: &str) -> Result<Option<std::time::SystemTime>>;
    /// Prepare an empty store (make the directory, the bucket prefix...). Only `init` and `store add` call it.
    fn create(&self) -> Result<()> {
        Ok(())
    }
    /// Every object under `prefix` with its size in bytes.
    fn list_sized(&self, prefix: &str) -> Result<Vec<(String, u64)>>;
}

/// Open a store from a URL:
/// - `fs:/dir` or a plain directory path: a local directory (our own atomic, fsync'ed writer);
/// - `s3://BUCKET[/PREFIX]?endpoint=URL&region=R`: an S3 bucket through OpenDAL; credentials come from the
///   environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, or the usual AWS config), never the vault;
/// - `hdfs://NAMENODE:PORT/PATH` or `hdfs://NAMESERVICE/PATH`: HDFS through the native (no JVM) client, with
///   per-store Hadoop configuration and Kerberos credentials (`hdfs.rs`);
/// - `memory:NAME`: an in-process store for tests (same name, same objects, within one process).
pub fn open(url: &str) -> Result<Arc<dyn Store>> {
    if let Some(name) = url.strip_prefix("memory:") {
        return Ok(Arc::new(crate::store::opendal::memory(name)?));
    }
    if url.starts_with("s3://") {
        return Ok(Arc::new(crate::store::opendal::open(url)?));
    }
    if url.starts_with("hdfs://") {
        return Ok(Arc::new(crate::store::hdfs::open(url)?));
    }
    if let Some((scheme, _)) = url.split_once("://") {
        return Err(Error::Usage(format!(
            "store URL {url:?}: unknown scheme {scheme:?} (use fs:, s3://, hdfs:// or memory:)"
        )));
    }
    let path = url.strip_prefix("fs:").unwrap_or(url);
    if path.is_empty() {
        return Err(Error::Usage("empty store path".into()));
    }
    let abs = std::path::absolute(path).map_err(|e| Error::io("resolve", path, e))?;
    Ok(Arc::new(FsStore { root: abs.clone(), url: format!("fs:{}", abs.display()) }))
}

/// A store as given on the command line: `URL[#domain=D,weight=W,afr=P,availability=A]`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StoreArg {
    pub url: String,
    pub domain: Option<String>,
    pub weight: Option<u32>,
    pub afr: Option<f64>,
    pub availability: Option<f64>,
}

impl std::str::FromStr for StoreArg {
    type Err = Error;
    fn from_str(text: &str) -> Result<StoreArg> {
        let (url, opts) = match text.rsplit_once('#') {
            Some((u, o)) if o.contains('=') => (u, o),
            _ => (text, ""),
        };
        let mut a = StoreArg { url: url.to_string(), ..Default::default() };
        for kv in opts.split(',').filter(|kv| !kv.is_empty()) {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| Error::Usage(format!("store {text:?}: expected key=value, got {kv:?}")))?;
            let bad = |what: &str| Error::Usage(format!("store {text:?}: {k}={v:?} is not {what}"));
            match k {
                "domain" if !v.is_empty() => a.domain = Some(v.to_string()),
                "weight" => {
                    a.weight = Some(v.parse().ok().filter(|w| *w > 0).ok_or_else(|| bad("a positive integer"))?)
                }
                "afr" => {
                    a.afr = Some(
                        v.parse()
                            .ok()
                            .filter(|x: &f64| (0.0..=10.0).contains(x))
                            .ok_or_else(|| bad("a rate between 0 and 10"))?,
                    )
                }
                "availability" => {
                    a.availability = Some(
                        v.parse().ok().filter(|x: &f64| (0.0..=1.0).contains(x)).ok_or_else(|| bad("a probability"))?,
                    )
                }
                _ => {
                    return Err(Error::Usage(format!(
                        "store {text:?}: unknown option {k:?} (domain, weight, afr, availability)"
                    )))
                }
            }
        }
        Ok(a)
    }
}

impl StoreArg {
    /// The config entry for this store; a store without a domain is its own failure domain.
    pub fn to_spec(&self, id: String) -> crate::format::config::StoreSpec {
        let mut s = crate::format::config::StoreSpec::new(
            id.clone(),
            self.url.clone(),
            self.domain.clone().unwrap_or(id),
            self.weight.unwrap_or(1),
        );
        if let Some(a) = self.afr {
            s.afr = a;
        }
        if let Some(a) = self.availability {
            s.availability = a;
        }
        s
    }
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
    fn err(&self, op: &'static str, path: &str, err: std::io::Error) -> Error {
        // A missing root is a store outage (an unmounted disk, a removed directory), not a missing object.
        if err.kind() == std::io::ErrorKind::NotFound && !self.root.is_dir() {
            let gone = std::io::Error::new(std::io::ErrorKind::NotFound, "the store's directory is gone (store down)");
            return Error::Store { store: self.url.clone(), op, path: path.to_string(), source: gone };
        }
        if err.kind() == std::io::ErrorKind::NotFound && op != "put" {
            return Error::not_found(format!("{}/{path}", self.url));
        }
        Error::Store { store: self.url.clone(), op, path: path.to_string(), source: err }
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

    fn get_into(&self, path: &str, buf: &mut Vec<u8>) -> Result<()> {
        let mut f = fs::File::open(self.full(path)).map_err(|e| self.err("get", path, e))?;
        buf.clear();
        f.read_to_end(buf).map_err(|e| self.err("read", path, e))?;
        Ok(())
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

    fn put_parts(&self, path: &str, parts: &[&[u8]]) -> Result<()> {
        if !self.root.is_dir() {
            return Err(self.err("put", path, std::io::Error::from(std::io::ErrorKind::NotFound)));
        }
        let full = self.full(path);
        let dir = full.parent().expect("object paths have a parent");
        crate::private::dir_all(dir).map_err(|e| self.err("put", path, e))?;
        let mut suffix = [0u8; 8];
        crate::random::fill_random(&mut suffix);
        let tmp = full.with_file_name(format!(
            "{}.tmp-{}",
            full.file_name().and_then(|n| n.to_str()).unwrap_or("obj"),
            hex::encode(suffix)
        ));
        let result = (|| -> std::io::Result<()> {
            let mut f = crate::private::new_file(&tmp)?;
            for part in parts {
                f.write_all(part)?;
            }
            f.sync_all()?;
            crate::fault::point("store-put-before-rename");
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
        Ok(self.list_sized(prefix)?.into_iter().map(|(n, _)| n).collect())
    }

    fn create(&self) -> Result<()> {
        crate::private::dir_all(&self.root).map_err(|e| Error::Store {
            store: self.url.clone(),
            op: "create",
            path: String::new(),
            source: e,
        })
    }

    fn list_sized(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        if !self.root.is_dir() {
            return Err(self.err("list", prefix, std::io::Error::from(std::io::ErrorKind::NotFound)));
        }
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
                    let size = ent.metadata().map(|m| m.len()).unwrap_or(0);
                    out.push((child, size));
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

    fn modified(&self, path: &str) -> Result<Option<std::time::SystemTime>> {
        match fs::metadata(self.full(path)).and_then(|m| m.modified()) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::not_found(format!("{}/{path}", self.url))),
            Err(e) => Err(self.err("stat", path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise(store: &dyn Store) {
        store.put("a/b/c", b"hello").unwrap();
        store.put("a/d", b"x").unwrap();
        assert_eq!(store.get("a/b/c").unwrap(), b"hello");
        assert_eq!(store.get_range("a/b/c", 1, 3).unwrap(), b"ell");
        assert!(store.get_range("a/b/c", 3, 3).is_err());
        store.put_parts("a/e", &[b"he", b"", b"llo"]).unwrap();
        assert_eq!(store.get("a/e").unwrap(), b"hello", "parts are written in order, nothing between them");
        store.delete("a/e").unwrap();
        assert_eq!(store.list("a").unwrap(), vec!["a/b/c".to_string(), "a/d".to_string()]);
        assert!(matches!(store.get("nope"), Err(Error::NotFound { .. })));
        store.delete("a/d").unwrap();
        assert!(!store.exists("a/d").unwrap());
    }

    #[test]
    fn fs_store_contract() {
        let d = tempfile::tempdir().unwrap();
        let s = open(d.path().join("store").to_str().unwrap()).unwrap();
        assert!(matches!(s.put("a", b"x"), Err(Error::Store { .. })), "a store never created is down");
        s.create().unwrap();
        exercise(&*s);
        std::fs::remove_dir_all(d.path().join("store")).unwrap();
        assert!(matches!(s.get("a/b/c"), Err(Error::Store { .. })), "a removed store is down, not empty");
        assert!(matches!(s.put("a/b/c", b"x"), Err(Error::Store { .. })), "writes must not recreate a removed store");
        assert!(s.list("a").is_err());
    }

    #[test]
    fn store_args_parse() {
        let a: StoreArg = "fs:/x/y#domain=rack1,weight=3,afr=0.02".parse().unwrap();
        assert_eq!(
            (a.url.as_str(), a.domain.as_deref(), a.weight, a.afr),
            ("fs:/x/y", Some("rack1"), Some(3), Some(0.02))
        );
        let b: StoreArg = "/plain/dir".parse().unwrap();
        assert_eq!(b.url, "/plain/dir");
        assert!("fs:/x#weight=0".parse::<StoreArg>().is_err());
        assert!("fs:/x#colour=red".parse::<StoreArg>().is_err());
    }

    #[test]
    fn memory_store_contract() {
        exercise(&*open("memory:store-contract").unwrap());
    }

    #[test]
    fn unknown_schemes_are_refused() {
        assert!(matches!(open("ftp://x/y"), Err(Error::Usage(_))));
    }
}
