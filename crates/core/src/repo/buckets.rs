//! Buckets: a tenant's mutable S3 namespace (docs/FORMAT.md, "Buckets").
//!
//! The state of every bucket of a tenant (its objects, their versions, multipart uploads in progress) is
//! the result of replaying a log of records, each a sealed object `tenants/<t>/s3/log/<seq>` (MVOB kind 5,
//! JSON inside). Every change is one record, written before the change is acknowledged, so a crash loses
//! nothing acknowledged. Every `CHECKPOINT` records the whole state is written as
//! `tenants/<t>/s3/state/<seq>`, and the records and checkpoints it covers are deleted.
//!
//! Object bytes are not here: each version names a tree blob (`objects`) holding its chunk list, so
//! `prune` keeps exactly the chunks that some version or upload part still names (`live_trees`).
//!
//! One writer per tenant: the server holds the state in memory and appends under a lock. Readers that are
//! not the writer (`prune`, `snapshot-bucket` run locally) replay the same objects; a replay that meets a
//! checkpoint being written starts again.

use crate::error::{Error, Result};
use crate::format::object::Kind;

use crate::ids::ChunkId;
use crate::repo::Repo;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Records between checkpoints.
pub const CHECKPOINT: u64 = 512;
/// The largest checkpoint written.
const MAX_CHECKPOINT: usize = 512 << 20;

/// Bucket names: S3's rules (3-63 of a-z 0-9 . -, starting and ending with a letter or digit, not an IP).
pub fn valid_bucket_name(name: &str) -> bool {
    let b = name.as_bytes();
    (3..=63).contains(&b.len())
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'.')
        && !name.contains("..")
        && name.parse::<std::net::Ipv4Addr>().is_err()
}

/// One version of an object, or a delete marker (`tree` None).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Version {
    pub id: String,
    /// The object's tree blob (hex ChunkId); None for a delete marker.
    pub tree: Option<String>,
    pub size: u64,
    /// The S3 ETag, without quotes.
    pub etag: String,
    /// Last modified, Unix milliseconds.
    pub time_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// The multipart upload that made this version, so a retried completion finds its result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<String>,
    /// For an object made by a multipart upload: the size of each part, in order (GET by `partNumber`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<u64>,
    /// The standard headers given at upload, returned on every read: `cache-control`, `content-disposition`,
    /// `content-encoding`, `content-language`, `expires` (lower-case names).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Checksums verified at upload, by algorithm (`CRC32`, `CRC32C`, `CRC64NVME`, `SHA1`, `SHA256`): base64,
    /// as S3 sends and returns them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub checksums: BTreeMap<String, String>,
}

impl Version {
    pub fn is_delete_marker(&self) -> bool {
        self.tree.is_none()
    }

    pub fn tree_id(&self) -> Result<Option<ChunkId>> {
        self.tree.as_deref().map(ChunkId::from_hex).transpose()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Part {
    pub tree: String,
    pub size: u64,
    pub etag: String,
    pub time_ms: u64,
    /// Checksums verified at upload (as `Version::checksums`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub checksums: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Upload {
    pub key: String,
    pub started_ms: u64,
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// The checksum algorithm the upload declared (`CRC32`, `SHA256`, ...): its parts carry one, and the
    /// object gets the composite of theirs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_algorithm: Option<String>,
    #[serde(default)]
    pub parts: BTreeMap<u32, Part>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    pub created_ms: u64,
    /// Versions of each key, oldest first; the last is the current one.
    #[serde(default)]
    pub objects: BTreeMap<String, Vec<Version>>,
    #[serde(default)]
    pub uploads: BTreeMap<String, Upload>,
}

impl Bucket {
    /// The current version of a key, unless it is deleted.
    pub fn current(&self, key: &str) -> Option<&Version> {
        self.objects.get(key)?.last().filter(|v| !v.is_delete_marker())
    }

    /// Whether the bucket holds no object: as in a versioned S3 bucket, deleted keys whose versions retention
    /// still keeps make it non-empty. (Uploads in progress do not: a deleted bucket takes them with it.)
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }
}

/// One change to a tenant's buckets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Record {
    CreateBucket {
        bucket: String,
        time_ms: u64,
    },
    DeleteBucket {
        bucket: String,
    },
    /// A new current version of a key (a delete marker for a delete).
    Put {
        bucket: String,
        key: String,
        version: Version,
    },
    /// A version removed for good (retention, or DeleteObject with a version id).
    Expire {
        bucket: String,
        key: String,
        version: String,
    },
    StartUpload {
        bucket: String,
        upload: String,
        info: Upload,
    },
    Part {
        bucket: String,
        upload: String,
        number: u32,
        part: Part,
    },
    /// A multipart upload completed (a Put precedes this) or aborted.
    EndUpload {
        bucket: String,
        upload: String,
    },
}

/// Every bucket of a tenant, as of record `seq`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub seq: u64,
    pub buckets: BTreeMap<String, Bucket>,
}

impl State {
    /// Apply one record. Records are checked by the writer before they are written; here a record that no
    /// longer applies (its bucket gone) changes nothing, so a replay is always possible.
    pub fn apply(&mut self, change: &Record) {
        match change {
            Record::CreateBucket { bucket, time_ms } => {
                self.buckets
                    .entry(bucket.clone())
                    .or_insert_with(|| Bucket { created_ms: *time_ms, ..Default::default() });
            }
            Record::DeleteBucket { bucket } => {
                self.buckets.remove(bucket);
            }
            Record::Put { bucket, key, version } => {
                if let Some(b) = self.buckets.get_mut(bucket) {
                    let vs = b.objects.entry(key.clone()).or_default();
                    vs.retain(|v| v.id != version.id);
                    vs.push(version.clone());
                }
            }
            Record::Expire { bucket, key, version } => {
                if let Some(b) = self.buckets.get_mut(bucket) {
                    if let Some(vs) = b.objects.get_mut(key) {
                        vs.retain(|v| v.id != *version);
                        if vs.is_empty() {
                            b.objects.remove(key);
                        }
                    }
                }
            }
            Record::StartUpload { bucket, upload, info } => {
                if let Some(b) = self.buckets.get_mut(bucket) {
                    b.uploads.insert(upload.clone(), info.clone());
                }
            }
            Record::Part { bucket, upload, number, part } => {
                if let Some(u) = self.buckets.get_mut(bucket).and_then(|b| b.uploads.get_mut(upload)) {
                    u.parts.insert(*number, part.clone());
                }
            }
            Record::EndUpload { bucket, upload } => {
                if let Some(b) = self.buckets.get_mut(bucket) {
                    b.uploads.remove(upload);
                }
            }
        }
    }

    /// Every tree blob a version or an upload part names.
    pub fn trees(&self) -> Result<Vec<ChunkId>> {
        let mut out = Vec::new();
        for b in self.buckets.values() {
            for v in b.objects.values().flatten() {
                out.extend(v.tree_id()?);
            }
            for u in b.uploads.values() {
                for p in u.parts.values() {
                    out.push(ChunkId::from_hex(&p.tree)?);
                }
            }
        }
        Ok(out)
    }

    /// Records that remove what retention no longer keeps: versions that stopped being current more than
    /// `keep_ms` ago, delete markers with nothing left behind them, and multipart uploads started more than
    /// `uploads_ms` ago and never completed.
    pub fn expired(&self, keep_ms: u64, uploads_ms: u64, now_ms: u64) -> Vec<Record> {
        let mut out = Vec::new();
        let old = |t: u64| now_ms.saturating_sub(t) >= keep_ms;
        for (bname, b) in &self.buckets {
            for (key, vs) in &b.objects {
                let mut left = vs.len();
                for (i, v) in vs.iter().enumerate().take(vs.len() - 1) {
                    if old(vs[i + 1].time_ms) {
                        out.push(Record::Expire { bucket: bname.clone(), key: key.clone(), version: v.id.clone() });
                        left -= 1;
                    }
                }
                let last = vs.last().expect("a key has a version");
                if left == 1 && last.is_delete_marker() {
                    out.push(Record::Expire { bucket: bname.clone(), key: key.clone(), version: last.id.clone() });
                }
            }
            for (id, u) in &b.uploads {
                if now_ms.saturating_sub(u.started_ms) >= uploads_ms {
                    out.push(Record::EndUpload { bucket: bname.clone(), upload: id.clone() });
                }
            }
        }
        out
    }
}

pub(crate) fn log_dir(repo: &Repo) -> String {
    format!("tenants/{}/s3/log", repo.tenant)
}

fn state_dir(repo: &Repo) -> String {
    format!("tenants/{}/s3/state", repo.tenant)
}

fn seq_of(name: &str) -> Option<u64> {
    name.rsplit('/').next()?.parse().ok()
}

/// Names under `dir` with their sequence numbers, in order.
pub(crate) fn numbered(repo: &Repo, dir: &str) -> Result<Vec<(u64, String)>> {
    let mut v: Vec<(u64, String)> = repo.list_meta(dir)?.into_iter().filter_map(|n| Some((seq_of(&n)?, n))).collect();
    v.sort();
    Ok(v)
}

/// Replay a tenant's bucket state from the stores.
pub fn load(repo: &Repo) -> Result<State> {
    let mut last_err = None;
    for _ in 0..5 {
        match try_load(repo) {
            Ok(s) => return Ok(s),
            // A checkpoint removed records between our listing and our reads: start again.
            Err(e @ Error::NotFound { .. }) => last_err = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_err.expect("tried"))
}

fn try_load(repo: &Repo) -> Result<State> {
    let mut state = match numbered(repo, &state_dir(repo))?.pop() {
        Some((seq, name)) => {
            let s: State = serde_json::from_slice(&repo.read_sealed(Kind::Bucket, &name)?)
                .map_err(|e| Error::corrupt(&name, format!("bucket checkpoint: {e}")))?;
            if s.seq != seq {
                return Err(Error::corrupt(&name, format!("checkpoint of record {} stored as {seq}", s.seq)));
            }
            s
        }
        None => State::default(),
    };
    for (seq, name) in numbered(repo, &log_dir(repo))? {
        if seq <= state.seq {
            continue;
        }
        if seq != state.seq + 1 {
            // A checkpoint written since we listed covers the gap (and removed its records): start again.
            if numbered(repo, &state_dir(repo))?.last().is_some_and(|(s, _)| *s > state.seq) {
                return Err(Error::not_found(format!("{name}: a newer checkpoint was written")));
            }
            return Err(Error::corrupt(
                &name,
                format!("bucket record {} is missing (records are numbered without gaps)", state.seq + 1),
            ));
        }
        let r: Record = serde_json::from_slice(&repo.read_sealed(Kind::Bucket, &name)?)
            .map_err(|e| Error::corrupt(&name, format!("bucket record: {e}")))?;
        state.apply(&r);
        state.seq = seq;
    }
    Ok(state)
}

/// Bring `state` up to what other server instances appended: every record after `state.seq`, read one by one
/// until there is no next one. `latest` is the last record any instance published in the catalog: a record
/// at or below it that is gone was folded into a checkpoint meanwhile, and the state is loaded again.
pub fn catch_up(repo: &Repo, state: &mut State, latest: u64) -> Result<()> {
    loop {
        let seq = state.seq + 1;
        let name = format!("{}/{seq:020}", log_dir(repo));
        match repo.read_sealed(Kind::Bucket, &name) {
            Ok(bytes) => {
                let r: Record =
                    serde_json::from_slice(&bytes).map_err(|e| Error::corrupt(&name, format!("bucket record: {e}")))?;
                state.apply(&r);
                state.seq = seq;
            }
            Err(Error::NotFound { .. }) if seq <= latest => {
                *state = load(repo)?;
                if state.seq < latest {
                    return Err(Error::corrupt(
                        &name,
                        format!("bucket record {latest} was published but the stores end at {}", state.seq),
                    ));
                }
            }
            Err(Error::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// Write a record, then apply it to `state`: acknowledged changes are on the stores first.
pub fn append(repo: &Repo, state: &mut State, record: Record) -> Result<()> {
    let seq = state.seq + 1;
    let path = format!("{}/{seq:020}", log_dir(repo));
    repo.write_sealed(Kind::Bucket, &path, &serde_json::to_vec(&record).expect("records serialize"))?;
    state.apply(&record);
    state.seq = seq;
    if seq.is_multiple_of(CHECKPOINT) {
        // The records stay authoritative until the checkpoint is written, so a failure here loses nothing.
        let _ = checkpoint(repo, state);
    }
    Ok(())
}

/// Write the whole state, then delete the records and older checkpoints it covers.
pub fn checkpoint(repo: &Repo, state: &State) -> Result<()> {
    let path = format!("{}/{:020}", state_dir(repo), state.seq);
    let bytes = serde_json::to_vec(state).expect("state serializes");
    // A checkpoint must open again (sealed objects open up to 1 GiB); past half that, the records stay and
    // are replayed instead.
    if bytes.len() > MAX_CHECKPOINT {
        return Err(Error::Usage(format!("bucket state of {} bytes is too large to checkpoint", bytes.len())));
    }
    repo.write_sealed(Kind::Bucket, &path, &bytes)?;
    for (seq, name) in numbered(repo, &state_dir(repo))? {
        if seq < state.seq {
            repo.delete_meta(&name)?;
        }
    }
    for (seq, name) in numbered(repo, &log_dir(repo))? {
        if seq <= state.seq {
            repo.delete_meta(&name)?;
        }
    }
    Ok(())
}

/// Re-seal every bucket record and checkpoint under the tenant's current key version (`tenant rekey
/// --rewrite`, which then deletes the old versions). Returns how many were rewritten.
pub(crate) fn reseal(repo: &Repo) -> Result<u64> {
    let current = repo.current_keys().version;
    let mut n = 0;
    for dir in [state_dir(repo), log_dir(repo)] {
        for (_, name) in numbered(repo, &dir)? {
            let bytes = repo.read_meta(&name, |b| Ok(b.to_vec()))?;
            let (_, version, _, _) = crate::format::object::parse(&bytes).map_err(|e| e.in_object(&name))?;
            if version < current {
                let plain = repo.read_sealed(Kind::Bucket, &name)?;
                repo.write_sealed(Kind::Bucket, &name, &plain)?;
                n += 1;
            }
        }
    }
    Ok(n)
}

/// The tree blobs that bucket objects and upload parts need (for prune and check).
pub fn live_trees(repo: &Repo) -> Result<Vec<ChunkId>> {
    load(repo)?.trees()
}
