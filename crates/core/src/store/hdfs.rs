//! HDFS stores, through the hdfs-native client (no JVM): `hdfs://NAMENODE:PORT/PATH` or, for HA NameNodes,
//! `hdfs://NAMESERVICE/PATH` with the nameservice described in a Hadoop client configuration directory.
//!
//! The client is used directly rather than through OpenDAL, whose HDFS service passes on only a NameNode and a
//! root: a store here needs its own Hadoop configuration directory (HA nameservices, the NameNode's Kerberos
//! principal, `dfs.data.transfer.protection`) and its own Kerberos credentials, never the vault's.
//!
//! Settings, from the URL's query or from the local settings file's `"hdfs"` section keyed by the URL's
//! authority (`{"hdfs": {"mvaultns": {"conf_dir": ..., "principal": ..., "keytab": ...}}}`), the URL winning:
//! - `conf_dir`: the directory of `core-site.xml` and `hdfs-site.xml` (else `$HADOOP_CONF_DIR`, else
//!   `$HADOOP_HOME/etc/hadoop`);
//! - `principal`, `keytab`, `ccache`: the Kerberos client identity (else the default ticket cache, as
//!   after `kinit`); the KDC comes from `krb5.conf` (`$KRB5_CONFIG`);
//! - `user`: the HDFS user on clusters without Kerberos (else `$HADOOP_USER_NAME`, else the login name).
//!
//! Writes go to `NAME.tmp-RANDOM` beside the object and are renamed over it once closed, so an object appears
//! whole or not at all, as on a local directory; a crashed writer's temporary is swept like any other.

use crate::error::{Error, Result};
use crate::store::Store;
use hdfs_native::{Client, ClientBuilder, HdfsError, WriteOptions};
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

/// Longest any one call may take before the store counts as down for it (a stopped NameNode that still
/// accepts connections, a hung DataNode pipeline).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// hdfs-native rebuilds a pipeline when a DataNode fails in the middle of a block, but it does not abandon a
/// new block whose first DataNode cannot be reached and ask for another without it, as Hadoop's own client
/// does. The NameNode goes on offering a DataNode that has just died until it misses its heartbeats (ten
/// heartbeat intervals plus two rechecks: 10 min 30 s with Hadoop's defaults, seconds on a tuned cluster),
/// though each new block lands on it only with odds replication/DataNodes. So a put that failed in a pipeline
/// after the NameNode had opened the file is written again to a fresh temporary, up to `PIPELINE_RETRIES`
/// times with pauses doubling from `PIPELINE_RETRY_FIRST` to `PIPELINE_RETRY_MAX` (25.5 s of pauses in all),
/// before the error reaches the vault, which then counts the store as down for that pack. A put the NameNode
/// itself refused is not retried: that store is down now.
const PIPELINE_RETRIES: u32 = 6;
const PIPELINE_RETRY_FIRST: Duration = Duration::from_millis(500);
const PIPELINE_RETRY_MAX: Duration = Duration::from_secs(10);

/// The settings a store may carry; anything else in the query is refused, so a typo is not silently ignored.
const SETTINGS: [&str; 5] = ["conf_dir", "principal", "keytab", "ccache", "user"];

pub struct HdfsStore {
    url: String,
    client: Client,
    /// The store's directory in HDFS, without a trailing slash (`""` for the file system's root).
    root: String,
}

/// Open `hdfs://AUTHORITY[/PATH][?key=value&...]`.
pub fn open(url: &str) -> Result<HdfsStore> {
    let bad = |why: &str| Error::Usage(format!("store URL {url:?}: {why}"));
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let rest = base.strip_prefix("hdfs://").ok_or_else(|| bad("not an hdfs:// URL"))?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if authority.is_empty() {
        return Err(bad("no NameNode or nameservice (hdfs://HOST:PORT/PATH or hdfs://NAMESERVICE/PATH)"));
    }
    let mut settings: BTreeMap<String, String> = local_settings(authority)?;
    for kv in query.split('&').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').ok_or_else(|| bad("query parameters are key=value"))?;
        if !SETTINGS.contains(&k) {
            return Err(bad(&format!("unknown parameter {k:?} (one of {})", SETTINGS.join(", "))));
        }
        settings.insert(k.to_string(), v.to_string());
    }
    // The client's NameNode retries default to Hadoop's (15 attempts, sleeps growing to 15 s): minutes before a
    // stopped NameNode counts as down. A few quick ones still ride through an HA failover.
    let mut b = ClientBuilder::new()
        .with_url(format!("hdfs://{authority}"))
        .with_io_runtime(super::runtime::runtime().clone())
        .with_config([
            ("dfs.client.failover.max.attempts", "6"),
            ("dfs.client.failover.sleep.base.millis", "200"),
            ("dfs.client.failover.sleep.max.millis", "2000"),
        ]);
    if let Some(dir) = settings.get("conf_dir") {
        if !std::path::Path::new(dir).is_dir() {
            return Err(bad(&format!("conf_dir {dir:?} is not a directory")));
        }
        b = b.with_config_dir(dir);
    }
    if let Some(p) = settings.get("principal") {
        b = b.with_kerberos_principal(p);
    }
    if let Some(k) = settings.get("keytab") {
        if !std::path::Path::new(k).is_file() {
            return Err(bad(&format!("keytab {k:?} is not a readable file")));
        }
        b = b.with_kerberos_keytab(k);
    }
    if let Some(c) = settings.get("ccache") {
        b = b.with_kerberos_cache(c);
    }
    if let Some(u) = settings.get("user") {
        b = b.with_user(u);
    }
    let client = b.build().map_err(|e| bad(&e.to_string()))?;
    let root = format!("/{}", path.trim_matches('/'));
    Ok(HdfsStore { url: url.to_string(), client, root: root.trim_end_matches('/').to_string() })
}

/// This machine's settings for the HDFS authority, from the local settings file (see
/// `store::settings::settings_path`); an absent file or section is no settings.
fn local_settings(authority: &str) -> Result<BTreeMap<String, String>> {
    let Some(v) = super::settings::local_settings_json()? else { return Ok(BTreeMap::new()) };
    let Some(entry) = v["hdfs"][authority].as_object() else { return Ok(BTreeMap::new()) };
    let mut out = BTreeMap::new();
    for (k, v) in entry {
        let where_ = || format!("local settings, hdfs {authority:?}, {k:?}");
        if !SETTINGS.contains(&k.as_str()) {
            return Err(Error::Usage(format!("{}: unknown setting (one of {})", where_(), SETTINGS.join(", "))));
        }
        let s = v.as_str().ok_or_else(|| Error::Usage(format!("{}: not a string", where_())))?;
        out.insert(k.clone(), s.to_string());
    }
    Ok(out)
}

impl HdfsStore {
    fn full(&self, path: &str) -> String {
        format!("{}/{}", self.root, path.trim_start_matches('/'))
    }

    fn err(&self, op: &'static str, path: &str, err: HdfsError) -> Error {
        match err {
            // Opening a missing file comes back as the NameNode's Java exception, not as FileNotFound.
            HdfsError::FileNotFound(_) => Error::not_found(format!("{}/{path}", self.url)),
            HdfsError::RPCError(ref class, _) if class.ends_with(".FileNotFoundException") => {
                Error::not_found(format!("{}/{path}", self.url))
            }
            err => Error::Store { store: self.url.clone(), op, path: path.to_string(), source: io_error(err) },
        }
    }

    /// Run one call on the I/O runtime, bounded by `CALL_TIMEOUT`.
    fn call<T>(&self, op: &'static str, path: &str, call: impl Future<Output = hdfs_native::Result<T>>) -> Result<T> {
        match super::runtime::runtime().block_on(async { tokio::time::timeout(CALL_TIMEOUT, call).await }) {
            Ok(r) => r.map_err(|e| self.err(op, path, e)),
            Err(_) => Err(self.timed_out(op, path)),
        }
    }

    /// Write `parts` to `tmp` and rename it over `full`. The error says whether the NameNode had already
    /// opened the file, that is whether the failure was in a DataNode pipeline.
    async fn write_whole(&self, tmp: &str, full: &str, parts: &[&[u8]]) -> std::result::Result<(), WriteFailure> {
        let opts = WriteOptions::default().overwrite(true).create_parent(true);
        let mut w = self.client.create(tmp, opts).await.map_err(WriteFailure::NameNode)?;
        for part in parts.iter().filter(|p| !p.is_empty()) {
            w.write_bytes(bytes::Bytes::copy_from_slice(part)).await.map_err(WriteFailure::Pipeline)?;
        }
        w.close().await.map_err(WriteFailure::Pipeline)?;
        crate::fault::point("store-put-before-rename");
        self.client.rename(tmp, full, true).await.map_err(WriteFailure::NameNode)
    }

    /// One attempt at a put: a fresh temporary, written and renamed, removed again if the write failed.
    fn put_once(&self, path: &str, full: &str, parts: &[&[u8]]) -> std::result::Result<(), (Error, bool)> {
        let mut suffix = [0u8; 8];
        crate::random::fill_random(&mut suffix);
        let tmp = format!("{full}.tmp-{}", hex::encode(suffix));
        let written = super::runtime::runtime()
            .block_on(async { tokio::time::timeout(CALL_TIMEOUT, self.write_whole(&tmp, full, parts)).await });
        let (e, pipeline) = match written {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(WriteFailure::NameNode(e))) => (self.err("put", path, e), false),
            Ok(Err(WriteFailure::Pipeline(e))) => (self.err("put", path, e), true),
            Err(_) => (self.timed_out("put", path), false),
        };
        // Best effort: a temporary left behind is swept later like a crashed writer's.
        let _ = self.call("delete", path, self.client.delete(&tmp, false));
        Err((e, pipeline))
    }

    fn timed_out(&self, op: &'static str, path: &str) -> Error {
        Error::Store {
            store: self.url.clone(),
            op,
            path: path.to_string(),
            source: std::io::Error::new(std::io::ErrorKind::TimedOut, format!("no answer in {CALL_TIMEOUT:?}")),
        }
    }
}

/// Where a write failed: at the NameNode (the store is down for this call) or in a DataNode pipeline after the
/// NameNode had opened the file (worth another try, see `PIPELINE_RETRIES`).
enum WriteFailure {
    NameNode(HdfsError),
    Pipeline(HdfsError),
}

/// An hdfs-native error as the I/O error a `Store` error carries, with a hint where the fix is known.
fn io_error(err: HdfsError) -> std::io::Error {
    let kind = match &err {
        HdfsError::IOError(io) => io.kind(),
        _ => std::io::ErrorKind::Other,
    };
    let text = err.to_string();
    let lower = text.to_ascii_lowercase();
    let hint = if lower.contains("gss") || lower.contains("kerberos") || lower.contains("sasl") {
        " (Kerberos: get a ticket with kinit, or name principal= and keytab= in the store URL or the local \
         settings file; KRB5_CONFIG names the realm's krb5.conf)"
    } else {
        ""
    };
    std::io::Error::new(kind, format!("{}{hint}", text.lines().next().unwrap_or("").trim()))
}

impl Store for HdfsStore {
    fn url(&self) -> &str {
        &self.url
    }

    fn get(&self, path: &str) -> Result<Vec<u8>> {
        let full = self.full(path);
        self.call("get", path, async {
            let r = self.client.read(&full).await?;
            Ok(r.read_range(0, r.file_length()).await?.to_vec())
        })
    }

    fn get_range(&self, path: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let full = self.full(path);
        let (size, bytes) = self.call("get", path, async {
            let r = self.client.read(&full).await?;
            let size = r.file_length() as u64;
            if offset.saturating_add(len) > size {
                return Ok((size, Vec::new()));
            }
            Ok((size, r.read_range(offset as usize, len as usize).await?.to_vec()))
        })?;
        if bytes.len() as u64 != len {
            return Err(Error::corrupt(
                format!("{}/{path}", self.url),
                format!("truncated: wanted {len} bytes at {offset}, the object has {size}"),
            ));
        }
        Ok(bytes)
    }

    fn put_parts(&self, path: &str, parts: &[&[u8]]) -> Result<()> {
        let full = self.full(path);
        let mut pause = PIPELINE_RETRY_FIRST;
        for attempt in 0.. {
            match self.put_once(path, &full, parts) {
                Ok(()) => return Ok(()),
                Err((e, pipeline)) if !pipeline || attempt == PIPELINE_RETRIES => return Err(e),
                Err(_) => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(PIPELINE_RETRY_MAX);
                }
            }
        }
        unreachable!("the loop returns on its last attempt")
    }

    fn delete(&self, path: &str) -> Result<()> {
        match self.call("delete", path, self.client.delete(&self.full(path), false)) {
            Ok(_) | Err(Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        Ok(self.list_sized(prefix)?.into_iter().map(|(n, _)| n).collect())
    }

    fn list_sized(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        let dir = self.full(prefix.trim_end_matches('/'));
        let statuses = match self.call("list", prefix, self.client.list_status(&dir, true)) {
            Ok(s) => s,
            Err(Error::NotFound { .. }) => return Ok(vec![]),
            Err(e) => return Err(e),
        };
        let base = format!("{}/", self.root);
        let mut out: Vec<(String, u64)> = statuses
            .into_iter()
            .filter(|s| !s.isdir)
            .map(|s| {
                // Recursive listings name entries by their path below `dir`; make them relative to the root.
                let abs = if s.path.starts_with('/') { s.path } else { format!("{dir}/{}", s.path) };
                (abs.strip_prefix(&base).unwrap_or(&abs).to_string(), s.length as u64)
            })
            .collect();
        out.sort();
        Ok(out)
    }

    fn exists(&self, path: &str) -> Result<bool> {
        match self.call("stat", path, self.client.get_file_info(&self.full(path))) {
            Ok(s) => Ok(!s.isdir),
            Err(Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn modified(&self, path: &str) -> Result<Option<std::time::SystemTime>> {
        let status = self.call("stat", path, self.client.get_file_info(&self.full(path)))?;
        Ok(Some(std::time::UNIX_EPOCH + std::time::Duration::from_millis(status.modification_time)))
    }

    fn create(&self) -> Result<()> {
        // The store's directory is made here (its parent must be writable by this user); this is also the
        // first call that meets the NameNode, so a wrong address or credential is reported now.
        let root = if self.root.is_empty() { "/".to_string() } else { self.root.clone() };
        self.call("create", "", self.client.mkdirs(&root, 0o755, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_or_say_why_not() {
        assert!(open("hdfs://127.0.0.1:9000/vault").is_ok());
        assert!(open("hdfs://127.0.0.1:9000/vault?user=mvault").is_ok());
        let e = open("hdfs:///vault").err().unwrap().to_string();
        assert!(e.contains("no NameNode"), "{e}");
        let e = open("hdfs://nn:8020/v?password=x").err().unwrap().to_string();
        assert!(e.contains("unknown parameter \"password\""), "{e}");
        let e = open("hdfs://nn:8020/v?keytab=/nonexistent/k.keytab").err().unwrap().to_string();
        assert!(e.contains("keytab") && e.contains("nonexistent"), "{e}");
        let e = open("hdfs://nn:8020/v?conf_dir=/nonexistent").err().unwrap().to_string();
        assert!(e.contains("conf_dir"), "{e}");
    }

    #[test]
    fn object_paths_sit_under_the_root() {
        let s = open("hdfs://127.0.0.1:9000/a/b/").unwrap();
        assert_eq!(s.full("packs/x"), "/a/b/packs/x");
        let s = open("hdfs://127.0.0.1:9000").unwrap();
        assert_eq!(s.full("config"), "/config");
    }
}
