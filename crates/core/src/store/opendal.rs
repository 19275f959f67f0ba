//! Stores reached through OpenDAL: S3 (any S3-compatible service) and memory (tests); and the one I/O runtime
//! that drives every async client (OpenDAL's and HDFS's).
//!
//! OpenDAL is async; the vault's pipeline is threads. One small multi-threaded tokio runtime, made on first
//! use, drives every OpenDAL call with `block_on` from the calling thread. Each operator carries a retry
//! layer (two quick retries with jitter) and a timeout layer, so a dead endpoint costs well under a second
//! before the store counts as down for the rest of the command.

use crate::error::{Error, Result};
use crate::store::Store;
use opendal::layers::{RetryLayer, TimeoutLayer};
use opendal::Operator;
use std::collections::BTreeMap;
use std::future::IntoFuture;
use std::sync::Mutex;
use std::time::Duration;

pub struct OpendalStore {
    url: String,
    op: Operator,
}

fn layered(op: Operator) -> Operator {
    op.layer(TimeoutLayer::new().with_timeout(Duration::from_secs(60)).with_io_timeout(Duration::from_secs(15)))
        .layer(RetryLayer::new().with_max_times(2).with_min_delay(Duration::from_millis(50)).with_jitter())
}

/// Parse `s3://bucket/prefix?endpoint=...&region=...`.
pub fn open(url: &str) -> Result<OpendalStore> {
    // OpenDAL's process-wide HTTP transport (reqwest), installed once.
    static HTTP: std::sync::Once = std::sync::Once::new();
    HTTP.call_once(opendal::install_default);
    let bad = |why: &str| Error::Usage(format!("store URL {url:?}: {why}"));
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut params: BTreeMap<&str, &str> = BTreeMap::new();
    for kv in query.split('&').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').ok_or_else(|| bad("query parameters are key=value"))?;
        params.insert(k, v);
    }
    let op = if let Some(rest) = base.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad("no bucket"));
        }
        let mut b = opendal::services::S3::default().bucket(bucket).root(&format!("/{}", prefix.trim_matches('/')));
        b = b.region(params.get("region").copied().unwrap_or("us-east-1"));
        if let Some(e) = params.get("endpoint") {
            b = b.endpoint(e);
        }
        for k in params.keys() {
            if !["endpoint", "region"].contains(k) {
                return Err(bad(&format!(
                    "unknown parameter {k:?} (endpoint, region); credentials come from the environment"
                )));
            }
        }
        // Credentials: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or the AWS config files), loaded by OpenDAL,
        // else this machine's local settings for the bucket. Never the vault.
        if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
            if let Some((id, secret)) = local_credentials(bucket)? {
                b = b.access_key_id(&id).secret_access_key(&secret);
            }
        }
        b = b.disable_ec2_metadata();
        Operator::new(b).map_err(|e| bad(&e.to_string()))?
    } else {
        return Err(bad("not an s3:// URL"));
    };
    Ok(OpendalStore { url: url.to_string(), op: layered(op) })
}

fn local_credentials(bucket: &str) -> Result<Option<(String, String)>> {
    let Some(v) = super::settings::local_settings_json()? else { return Ok(None) };
    let entry = &v["s3"][bucket];
    match (entry["access_key_id"].as_str(), entry["secret_access_key"].as_str()) {
        (Some(id), Some(secret)) => Ok(Some((id.to_string(), secret.to_string()))),
        _ => Ok(None),
    }
}

/// A named in-memory store: every open of the same name in this process sees the same objects.
pub fn memory(name: &str) -> Result<OpendalStore> {
    static REGISTRY: Mutex<BTreeMap<String, Operator>> = Mutex::new(BTreeMap::new());
    let mut reg = REGISTRY.lock().expect("memory store registry");
    let op = match reg.get(name) {
        Some(op) => op.clone(),
        None => {
            let op = Operator::new(opendal::services::Memory::default())
                .map_err(|e| Error::Usage(format!("memory store: {e}")))?;
            reg.insert(name.to_string(), op.clone());
            op
        }
    };
    Ok(OpendalStore { url: format!("memory:{name}"), op })
}

impl OpendalStore {
    fn err(&self, op: &'static str, path: &str, err: opendal::Error) -> Error {
        if err.kind() == opendal::ErrorKind::NotFound {
            return Error::not_found(format!("{}/{path}", self.url));
        }
        Error::Store {
            store: self.url.clone(),
            op,
            path: path.to_string(),
            source: std::io::Error::other(err.to_string()),
        }
    }
}

impl Store for OpendalStore {
    fn url(&self) -> &str {
        &self.url
    }

    fn get(&self, path: &str) -> Result<Vec<u8>> {
        super::runtime::runtime().block_on(self.op.read(path)).map(|b| b.to_vec()).map_err(|e| self.err("get", path, e))
    }

    fn get_range(&self, path: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let b = super::runtime::runtime()
            .block_on(self.op.read_with(path).range(offset..offset + len).into_future())
            .map_err(|e| self.err("get", path, e))?
            .to_vec();
        if b.len() as u64 != len {
            return Err(Error::corrupt(
                format!("{}/{path}", self.url),
                format!("truncated: wanted {len} bytes at {offset}, got {}", b.len()),
            ));
        }
        Ok(b)
    }

    fn put_parts(&self, path: &str, parts: &[&[u8]]) -> Result<()> {
        // One PUT: the object appears whole or not at all. (The request body is owned, so the parts are
        // copied once here whatever their number.)
        let body = parts.concat();
        super::runtime::runtime().block_on(self.op.write(path, body)).map(|_| ()).map_err(|e| self.err("put", path, e))
    }

    fn delete(&self, path: &str) -> Result<()> {
        match super::runtime::runtime().block_on(self.op.delete(path)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.err("delete", path, e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        Ok(self.list_sized(prefix)?.into_iter().map(|(n, _)| n).collect())
    }

    fn list_sized(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        let dir = if prefix.is_empty() { "/".to_string() } else { format!("{}/", prefix.trim_end_matches('/')) };
        let entries = match super::runtime::runtime().block_on(self.op.list_with(&dir).recursive(true).into_future()) {
            Ok(e) => e,
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(self.err("list", prefix, e)),
        };
        let mut out: Vec<(String, u64)> = entries
            .into_iter()
            .filter(|e| e.metadata().mode().is_file())
            .map(|e| (e.path().trim_start_matches('/').to_string(), e.metadata().content_length()))
            .collect();
        out.sort();
        Ok(out)
    }

    fn exists(&self, path: &str) -> Result<bool> {
        super::runtime::runtime().block_on(self.op.exists(path)).map_err(|e| self.err("stat", path, e))
    }

    fn modified(&self, path: &str) -> Result<Option<std::time::SystemTime>> {
        let meta = super::runtime::runtime().block_on(self.op.stat(path)).map_err(|e| self.err("stat", path, e))?;
        Ok(meta.last_modified().map(std::time::SystemTime::from))
    }

    fn create(&self) -> Result<()> {
        // Buckets and HDFS directories are made by their owners; check that this one answers.
        super::runtime::runtime()
            .block_on(self.op.list_with("/").limit(1).into_future())
            .map(|_| ())
            .map_err(|e| self.err("check", "/", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_store_contract_through_opendal() {
        let s = memory("contract").unwrap();
        s.put("a/b/c", b"hello").unwrap();
        s.put("a/d", b"x").unwrap();
        assert_eq!(s.get("a/b/c").unwrap(), b"hello");
        assert_eq!(s.get_range("a/b/c", 1, 3).unwrap(), b"ell");
        s.put_parts("a/e", &[b"he", b"", b"llo"]).unwrap();
        assert_eq!(s.get("a/e").unwrap(), b"hello");
        s.delete("a/e").unwrap();
        assert_eq!(s.list("a").unwrap(), vec!["a/b/c".to_string(), "a/d".to_string()]);
        assert_eq!(s.list_sized("").unwrap().len(), 2);
        assert!(matches!(s.get("nope"), Err(Error::NotFound { .. })));
        s.delete("a/d").unwrap();
        assert!(!s.exists("a/d").unwrap());
        assert_eq!(memory("contract").unwrap().get("a/b/c").unwrap(), b"hello", "same name, same objects");
    }

    #[test]
    fn urls_parse_or_say_why_not() {
        assert!(open("s3://bucket/prefix?endpoint=http://127.0.0.1:3900&region=garage").is_ok());
        assert!(open("s3:///nobucket").is_err());
        assert!(open("s3://b?secret=x").is_err(), "credentials never go in a URL");
        assert!(open("hdfs://127.0.0.1:9000/vault").is_err(), "HDFS is not an OpenDAL store");
    }
}
