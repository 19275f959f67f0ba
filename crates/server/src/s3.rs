//! The S3 gateway (docs/S3.md): the S3 protocol (SigV4, XML, routing) is the `s3s` crate's; here are the
//! operations, over the tenant's buckets (core `buckets`) and objects (core `objects`).
//!
//! Every request goes through the same steps as the HTTP API's: `Keys` finds the secret of the access key
//! (a token record with an S3 secret); s3s checks the signature; `Access::check` applies the role table
//! and the token's rate limits; the operation runs its store work on a blocking thread; `Traced`, around
//! the whole service, writes the audit record and the metrics for every request, refused ones included.
//!
//! A tenant's bucket state lives in memory behind one lock and every change is a record written to the
//! stores before it is applied, so one gateway serves a tenant's buckets (docs/S3.md, "Known limits").
//! Object bytes are written without that lock, against an index-less view of the tenant's repo that asks
//! the shared index what is already stored, so long uploads run in parallel with everything else.

use crate::auth::{self, Action, Role, TokenRecord};
use crate::{audit, App, Tenant};
use bytes::Bytes;
use futures::StreamExt;
use mvault_core::buckets::{self, Part, Record, State, Upload, Version};
use mvault_core::ids::ChunkId;
use mvault_core::objects;
use mvault_core::Error;
use s3s::auth::{S3Auth, SecretKey};
use s3s::dto::*;
use s3s::stream::{ByteStream, RemainingLength};
use s3s::{s3_error, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, S3};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// S3's largest single PUT (and part).
const MAX_PUT: i64 = 5 << 30;
/// S3's smallest part, but for the last.
const MIN_PART: u64 = 5 << 20;
const MAX_PARTS: i32 = 10_000;
const DEFAULT_MAX_KEYS: usize = 1000;
/// Object bodies stored at once (PUTs and parts): one per core of the machine this is sized for. Each holds
/// a pack being filled and a chunk buffer (about 40 MiB with the shard copies of a pack write).
static WRITERS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// What the access check and the operation learned about a request, for the audit record `Traced` writes.
#[derive(Default)]
pub struct Trace {
    op: String,
    token: Option<String>,
    tenant: Option<String>,
    detail: String,
    bytes_out: u64,
}

type TraceSlot = Arc<Mutex<Trace>>;

fn note(slot: Option<&TraceSlot>, f: impl FnOnce(&mut Trace)) {
    if let Some(s) = slot {
        f(&mut s.lock().expect("trace"));
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn timestamp(ms: u64) -> Timestamp {
    Timestamp::from(UNIX_EPOCH + Duration::from_millis(ms))
}

fn random_id() -> String {
    let mut b = [0u8; 8];
    mvault_core::random::fill_random(&mut b);
    hex::encode(b)
}

/// A core error as the S3 error a client can act on.
fn s3err(e: Error) -> S3Error {
    match e {
        // A prune holding the vault passes: the client should slow down and retry, not give up.
        Error::Locked { .. } => S3Error::with_message(S3ErrorCode::SlowDown, e.to_string()),
        // Stores that are away come back: retry later.
        Error::Store { .. } | Error::Unavailable { .. } => {
            S3Error::with_message(S3ErrorCode::ServiceUnavailable, e.to_string())
        }
        Error::BodyMismatch { .. } | Error::BodyRead { .. } => {
            S3Error::with_message(S3ErrorCode::IncompleteBody, e.to_string())
        }
        Error::Usage(m) => S3Error::with_message(S3ErrorCode::InvalidRequest, m),
        other => S3Error::with_message(S3ErrorCode::InternalError, other.to_string()),
    }
}

/// Run store work on a blocking thread (the core is synchronous).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> S3Result<T> + Send + 'static) -> S3Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|_| s3_error!(InternalError, "the operation failed"))?
}

/// The role table's action for an S3 operation (docs/S3.md lists them).
fn action_of(op: &str) -> &'static [Action] {
    match op {
        "ListBuckets"
        | "HeadBucket"
        | "GetBucketLocation"
        | "GetBucketVersioning"
        | "ListObjects"
        | "ListObjectsV2"
        | "ListObjectVersions"
        | "ListParts"
        | "ListMultipartUploads"
        | "HeadObject" => &[Action::ListSnapshots],
        "GetObject" => &[Action::ReadData],
        "CopyObject" => &[Action::ReadData, Action::Append],
        "PutObject"
        | "CreateMultipartUpload"
        | "UploadPart"
        | "CompleteMultipartUpload"
        | "AbortMultipartUpload"
        | "CreateBucket" => &[Action::Append],
        "DeleteObject" | "DeleteObjects" | "DeleteBucket" => &[Action::Forget],
        // Everything else answers NotImplemented; a valid key is still required to hear it.
        _ => &[],
    }
}

fn slow_down(l: crate::limits::Limited) -> S3Error {
    let mut e = S3Error::with_message(
        S3ErrorCode::SlowDown,
        format!("rate limit {} of {} exceeded; retry in {:.1} s", l.limit, l.rate, l.retry_after),
    );
    let mut h = http::HeaderMap::new();
    let secs = format!("{}", l.retry_after.ceil().max(1.0) as u64);
    h.insert(http::header::RETRY_AFTER, http::HeaderValue::from_str(&secs).expect("digits"));
    h.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/xml"));
    e.set_headers(h);
    e
}

impl App {
    /// The token record of an S3 access key, if it may be used now.
    fn s3_key(&self, access_key: &str) -> Option<TokenRecord> {
        let id = auth::token_id_of_access_key(access_key)?;
        let rec = self.token(&id)?;
        let usable = rec.s3_secret.is_some()
            && !rec.revoked
            && rec.expires.is_none_or(|e| auth::now() < e)
            && rec.tenant.as_deref().is_some_and(|t| self.tenant(t).is_ok());
        usable.then_some(rec)
    }
}

/// Secrets for SigV4, from the sealed token records.
pub struct Keys(pub Arc<App>);

#[async_trait::async_trait]
impl S3Auth for Keys {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        let (app, ak) = (self.0.clone(), access_key.to_string());
        let rec = blocking(move || Ok(app.s3_key(&ak))).await?;
        match rec.and_then(|r| r.s3_secret) {
            Some(s) => Ok(SecretKey::from(s)),
            None => Err(s3_error!(InvalidAccessKeyId, "unknown, revoked or expired access key")),
        }
    }
}

/// The role table and rate limits, once the signature is known good.
pub struct Access(pub Arc<App>);

#[async_trait::async_trait]
impl s3s::access::S3Access for Access {
    async fn check(&self, cx: &mut s3s::access::S3AccessContext<'_>) -> S3Result<()> {
        let op = cx.s3_op().name().to_string();
        let slot = cx.extensions_mut().get::<TraceSlot>().cloned();
        note(slot.as_ref(), |t| t.op = op.clone());
        let Some(cred) = cx.credentials() else {
            note(slot.as_ref(), |t| t.detail = "unsigned request".into());
            return Err(s3_error!(AccessDenied, "requests must be signed with an access key"));
        };
        let bytes_in = content_length(cx.headers());
        let (app, ak) = (self.0.clone(), cred.access_key.clone());
        let rec = blocking(move || Ok(app.s3_key(&ak))).await?;
        let Some(rec) = rec else { return Err(s3_error!(InvalidAccessKeyId)) };
        note(slot.as_ref(), |t| {
            t.token = Some(rec.id.clone());
            t.tenant = rec.tenant.clone();
        });
        // The operation reads the record from here rather than loading it again.
        cx.extensions_mut().insert(rec.clone());
        if let Some(a) = action_of(&op).iter().find(|a| !rec.role.may(**a)) {
            let msg = format!("a {} key may not {op} ({a:?})", rec.role);
            note(slot.as_ref(), |t| t.detail = msg.clone());
            return Err(S3Error::with_message(S3ErrorCode::AccessDenied, msg));
        }
        let app = self.0.clone();
        match blocking(move || app.throttle(&rec, 1.0, bytes_in).map_err(s3err)).await? {
            Ok(()) => Ok(()),
            Err(l) => {
                note(slot.as_ref(), |t| t.detail = format!("rate limit {}", l.limit));
                Err(slow_down(l))
            }
        }
    }
}

/// The object length of an aws-chunked body (boto3 sends one by default), when s3s has not filled it in.
fn decoded_length(h: &http::HeaderMap) -> Option<i64> {
    h.get("x-amz-decoded-content-length")?.to_str().ok()?.parse().ok()
}

fn content_length(h: &http::HeaderMap) -> u64 {
    let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    get("x-amz-decoded-content-length").or_else(|| get("content-length")).unwrap_or(0)
}

/// The S3 operations.
pub struct Gateway(pub Arc<App>);

/// The caller's token record and tenant (the access check has already passed).
struct Caller {
    token: TokenRecord,
    tenant: Arc<Tenant>,
    trace: Option<TraceSlot>,
}

impl Gateway {
    /// NoSuchBucket unless the caller's tenant has this bucket.
    async fn require_bucket(&self, c: &Caller, name: &str) -> S3Result<()> {
        let (t, name) = (c.tenant.clone(), name.to_string());
        blocking(move || t.buckets(|st, _| st.buckets.get(&name).map(|_| ()).ok_or_else(|| no_bucket(&name)))).await
    }

    /// The key's record, as `Access::check` found it for this request, and its tenant.
    async fn caller<T>(&self, req: &S3Request<T>) -> S3Result<Caller> {
        let token = req.extensions.get::<TokenRecord>().cloned().ok_or_else(|| s3_error!(AccessDenied))?;
        let (app, name) = (self.0.clone(), token.tenant.clone().unwrap_or_default());
        let tenant = blocking(move || app.tenant(&name).map_err(s3err)).await?;
        Ok(Caller { token, tenant, trace: req.extensions.get::<TraceSlot>().cloned() })
    }
}

impl Tenant {
    /// Run `f` on the tenant's bucket state (loaded from the stores on first use), under its lock.
    fn buckets<R>(&self, f: impl FnOnce(&mut State, &mvault_core::Repo) -> S3Result<R>) -> S3Result<R> {
        // A panic elsewhere must not take the tenant's buckets down with it: the state is only changed after
        // its record is written, so what a poisoned lock holds is still consistent.
        let mut st = self.s3.lock().unwrap_or_else(|p| p.into_inner());
        let repo = self.repo.read().expect("tenant repo");
        if st.is_none() {
            *st = Some(buckets::load(&repo).map_err(s3err)?);
        }
        f(st.as_mut().expect("loaded"), &repo)
    }

    /// Write a new version of a key, unless its bucket went away while the body streamed in (a record for a
    /// missing bucket would be acknowledged and then dropped by the replay).
    /// An appender adds, never replaces: an overwrite would let retention expire what was there.
    fn put_version(&self, bucket: String, key: String, version: Version, appender: bool) -> S3Result<()> {
        self.buckets(|st, repo| {
            let b = st.buckets.get(&bucket).ok_or_else(|| no_bucket(&bucket))?;
            if appender && b.current(&key).is_some() {
                return Err(s3_error!(AccessDenied, "an appender key may not overwrite {key}, which exists"));
            }
            buckets::append(repo, st, Record::Put { bucket, key, version }).map_err(s3err)
        })
    }

    /// The retention pass: records for the versions `keep` and the uploads `uploads` no longer cover.
    pub fn expire_versions(&self, keep: Duration, uploads: Duration) -> mvault_core::Result<u64> {
        let n = self.buckets(|st, repo| {
            let recs = st.expired(keep.as_millis() as u64, uploads.as_millis() as u64, now_ms());
            let n = recs.len() as u64;
            for r in recs {
                buckets::append(repo, st, r).map_err(s3err)?;
            }
            Ok(n)
        });
        n.map_err(|e| Error::Usage(format!("bucket retention: {}", e.message().unwrap_or_default())))
    }

    /// Freeze a bucket as a snapshot (`snapshot-bucket`, the API and the scheduler).
    pub fn snapshot_bucket(&self, bucket: &str, tags: &[String]) -> mvault_core::Result<mvault_core::BucketSnapshot> {
        let state = {
            let r = self.buckets(|st, _| Ok(st.clone()));
            r.map_err(|e| Error::Usage(e.message().unwrap_or_default().to_string()))?
        };
        let (_, made, entries) =
            mvault_core::snapshot_bucket(&self.repo.read().expect("tenant repo"), &state, bucket, tags)?;
        self.repo.write().expect("tenant repo").remember_index(entries);
        Ok(made)
    }
}

fn no_bucket(b: &str) -> S3Error {
    S3Error::with_message(S3ErrorCode::NoSuchBucket, format!("no bucket {b}"))
}

fn no_key(k: &str) -> S3Error {
    S3Error::with_message(S3ErrorCode::NoSuchKey, format!("no object {k}"))
}

/// The version a GET, HEAD or copy names: the current one, or the given version id.
fn find_version(st: &State, bucket: &str, key: &str, version: Option<&str>) -> S3Result<Version> {
    let b = st.buckets.get(bucket).ok_or_else(|| no_bucket(bucket))?;
    match version {
        None => b.current(key).cloned().ok_or_else(|| no_key(key)),
        Some(v) => {
            let found = b.objects.get(key).and_then(|vs| vs.iter().find(|x| x.id == v)).cloned();
            let found = found.ok_or_else(|| s3_error!(NoSuchVersion, "no version {v} of {key}"))?;
            if found.is_delete_marker() {
                return Err(s3_error!(MethodNotAllowed, "version {v} of {key} is a delete marker"));
            }
            Ok(found)
        }
    }
}

/// How long a later part waits for part 1's header, before it is cut by content instead.
const FIRST_PART_WAIT: Duration = Duration::from_secs(10);

/// What part 1 of a multipart upload told about the file: its layout (None: not a model file) and the part
/// size, from which a later part's offset follows (clients upload equal parts but for the last).
pub type PartModel = Option<(Arc<mvault_core::model::Layout>, u64)>;

/// How a body is cut: a whole object, part 1 (which tells the others), or a later part of a model file.
enum PartPlan {
    Object,
    Plain,
    First(tokio::sync::watch::Sender<Option<PartModel>>),
    Part(Arc<mvault_core::model::Layout>, u64),
}

/// The plan for part `number` of `upload`: part 1 reads the header; a later part waits (briefly) for it.
async fn part_plan(t: &Tenant, upload: &str, number: u32) -> PartPlan {
    let tx = t.s3_models.lock().expect("part models").entry(upload.to_string()).or_default().clone();
    if number == 1 {
        return PartPlan::First(tx);
    }
    let mut rx = tx.subscribe();
    let known = tokio::time::timeout(FIRST_PART_WAIT, rx.wait_for(|v| v.is_some())).await;
    match known.ok().and_then(|r| r.ok()).and_then(|v| v.clone()).flatten() {
        Some((layout, part_size)) => PartPlan::Part(layout, (number as u64 - 1) * part_size),
        None => PartPlan::Plain,
    }
}

/// A request body as a blocking reader, fed from the async side through a small channel.
struct ChanReader {
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, String>>,
    cur: Bytes,
}

impl std::io::Read for ChanReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur.split_to(n));
        Ok(n)
    }
}

/// A response body fed by a blocking reader, with its exact length (so hyper sends Content-Length and a
/// read that fails midway breaks the connection instead of ending the body early).
struct ChanBody {
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
    left: usize,
}

impl futures::Stream for ChanBody {
    type Item = Result<Bytes, s3s::StdError>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(b))) => {
                self.left = self.left.saturating_sub(b.len());
                Poll::Ready(Some(Ok(b)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl ByteStream for ChanBody {
    fn remaining_length(&self) -> RemainingLength {
        RemainingLength::new_exact(self.left)
    }
}

impl Gateway {
    /// Store a request body as an object (or part) of the caller's tenant: chunked, encoded and packed on
    /// a blocking thread while the body streams in; quota checked before each pack is written. The new
    /// blobs are in the tenant's index when this returns; the caller records the version or part.
    #[allow(clippy::too_many_arguments)]
    async fn store_body(
        &self,
        c: &Caller,
        key: &str,
        len: Option<i64>,
        body: Option<StreamingBlob>,
        content_md5: Option<&str>,
        plan: PartPlan,
        record: Recorder,
    ) -> S3Result<(objects::Written, Option<Version>)> {
        let len = len.ok_or_else(|| s3_error!(MissingContentLength))?;
        if !(0..=MAX_PUT).contains(&len) {
            return Err(s3_error!(EntityTooLarge, "{len} bytes: at most {MAX_PUT} per request; use multipart"));
        }
        let want_md5 = match content_md5 {
            Some(b64) => Some(
                base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64)
                    .ok()
                    .filter(|d| d.len() == 16)
                    .ok_or_else(|| s3_error!(InvalidDigest, "Content-MD5 is not a base64 MD5"))?,
            ),
            None => None,
        };
        // At most WRITERS bodies are chunked and packed at once (each holds a pack being filled and a chunk
        // buffer); more wait here, before their bodies are read, so memory is bounded whatever the clients do.
        let _slot = WRITERS.acquire().await.map_err(|_| s3_error!(InternalError, "shutting down"))?;
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, String>>(8);
        let (app, tenant, key2) = (self.0.clone(), c.tenant.clone(), key.to_string());
        let job = tokio::task::spawn_blocking(move || {
            write_object(&app, &tenant, &key2, len as u64, rx, plan, want_md5, record)
        });
        let mut body =
            body.unwrap_or_else(|| StreamingBlob::wrap(futures::stream::empty::<Result<Bytes, std::io::Error>>()));
        let mut body_err = None;
        loop {
            // A client that stops sending holds a writer slot and the vault's shared lock: not for long.
            let chunk = match tokio::time::timeout(BODY_IDLE, body.next()).await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(_) => {
                    let msg = format!("no body bytes for {} s", BODY_IDLE.as_secs());
                    let _ = tx.send(Err(msg.clone())).await;
                    body_err = Some(s3s::StdError::from(msg));
                    break;
                }
            };
            match chunk {
                Ok(b) => {
                    if tx.send(Ok(b)).await.is_err() {
                        break; // the writer stopped; its error says why
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e.to_string())).await;
                    body_err = Some(e);
                    break;
                }
            }
        }
        drop(tx);
        let written = job.await.map_err(|_| s3_error!(InternalError, "the object writer failed"))?;
        if let Some(e) = body_err {
            // s3s reports a bad payload hash or a broken chunk signature as the stream's last item.
            return Err(match e.downcast::<S3Error>() {
                Ok(s3) => *s3,
                Err(e) => S3Error::with_message(S3ErrorCode::IncompleteBody, format!("reading the body: {e}")),
            });
        }
        let (w, v) = written?;
        note(c.trace.as_ref(), |t| {
            t.detail = format!("{} bytes, {} new, {} stored", w.size, w.new_bytes, w.stored_bytes)
        });
        Ok((w, v))
    }
}

/// What records a stored body (a version, or a part), run before the vault's shared lock is released.
type Recorder = Box<dyn FnOnce(&Tenant, &objects::Written) -> S3Result<Option<Version>> + Send>;

/// How long a body may send nothing before the upload is dropped.
const BODY_IDLE: Duration = Duration::from_secs(60);

/// The blocking half of `store_body`.
#[allow(clippy::too_many_arguments)]
fn write_object(
    app: &App,
    t: &Tenant,
    key: &str,
    len: u64,
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, String>>,
    plan: PartPlan,
    want_md5: Option<Vec<u8>>,
    record: Recorder,
) -> S3Result<(objects::Written, Option<Version>)> {
    let view = t.repo.read().expect("tenant repo").view_without_index();
    let known = |id: &ChunkId| t.repo.read().expect("tenant repo").lookup(id).is_some();
    let max = t.record.lock().expect("record").limits.max_bytes;
    let mut reserved = 0u64;
    let mut over_quota = None;
    let mut admit = |n: u64| -> mvault_core::Result<()> {
        if let Some(max) = max {
            let mut pending = t.s3_pending.lock().expect("pending bytes");
            let usage = t.usage().bytes;
            if usage + *pending + n > max {
                let msg =
                    format!("quota max_bytes exceeded: {usage} stored + {} being written + {n} > {max}", *pending);
                over_quota = Some(msg.clone());
                return Err(Error::Usage(msg));
            }
            *pending += n;
        }
        reserved += n;
        Ok(())
    };
    let warn = |_: &Error| {};
    // The vault's shared lock, as a backup holds it: no prune between these packs and the record naming them.
    let _lock = app.base.lock(false, "s3 put", &|_| {}).map_err(s3err)?;
    let mut tell = |l: Option<&mvault_core::model::Layout>| {
        if let PartPlan::First(tx) = &plan {
            tx.send_replace(Some(l.map(|l| (Arc::new(l.clone()), len))));
        }
    };
    let of = match &plan {
        PartPlan::Object => objects::BodyOf::Object,
        PartPlan::First(_) => objects::BodyOf::FirstPart { on_layout: &mut tell },
        PartPlan::Part(l, offset) => objects::BodyOf::Part { layout: l, offset: *offset },
        PartPlan::Plain => objects::BodyOf::Plain,
    };
    let body = ChanReader { rx, cur: Bytes::new() };
    let result = objects::write(&view, &known, key, Some(len), body, of, &mut admit, &warn);
    let out = match result {
        Ok((w, entries)) => {
            t.repo.write().expect("tenant repo").remember_index(entries);
            if want_md5.is_some_and(|m| m[..] != w.md5[..]) {
                Err(s3_error!(BadDigest, "the body does not match its Content-MD5"))
            } else {
                // Recorded while the vault's shared lock is held: no prune between the packs and the record.
                record(t, &w).map(|v| (w, v))
            }
        }
        Err(e) => Err(match over_quota.take() {
            Some(msg) => S3Error::with_message(S3ErrorCode::AccessDenied, msg),
            None => s3err(e),
        }),
    };
    if max.is_some() {
        let mut pending = t.s3_pending.lock().expect("pending bytes");
        *pending = pending.saturating_sub(reserved);
    }
    out
}

fn version_of(w: &objects::Written, etag: String, content_type: Option<String>, metadata: Option<Metadata>) -> Version {
    Version {
        id: random_id(),
        tree: Some(w.tree.to_hex()),
        size: w.size,
        etag,
        time_ms: now_ms(),
        content_type,
        metadata: metadata.unwrap_or_default().into_iter().collect(),
        upload: None,
    }
}

/// Objects of a listing: current versions whose key has `prefix`, after `after`, rolled up at `delimiter`.
/// Returns (objects, common prefixes, the last item returned if the listing was cut at `max`).
fn list_keys<'a>(
    b: &'a buckets::Bucket,
    prefix: &str,
    delimiter: Option<&str>,
    after: Option<&str>,
    max: usize,
) -> (Vec<(&'a String, &'a Version)>, Vec<String>, Option<String>) {
    let (mut objs, mut prefixes): (Vec<(&String, &Version)>, Vec<String>) = (Vec::new(), Vec::new());
    let start = match after {
        Some(a) => std::ops::Bound::Excluded(a.to_string()),
        None => std::ops::Bound::Included(prefix.to_string()),
    };
    for (key, vs) in b.objects.range::<String, _>((start, std::ops::Bound::Unbounded)) {
        if !key.starts_with(prefix) {
            if key.as_str() > prefix {
                break;
            }
            continue;
        }
        let Some(v) = vs.last().filter(|v| !v.is_delete_marker()) else { continue };
        let rolled = delimiter.filter(|d| !d.is_empty()).and_then(|d| {
            let rest = &key[prefix.len()..];
            rest.find(d).map(|i| format!("{prefix}{}", &rest[..i + d.len()]))
        });
        // Keys under a common prefix already returned (resuming after it) are skipped.
        if let (Some(p), Some(a)) = (&rolled, after) {
            if a.starts_with(p.as_str()) {
                continue;
            }
        }
        if objs.len() + prefixes.len() >= max {
            let last = prefixes.last().cloned().into_iter().chain(objs.last().map(|(k, _)| (*k).clone()));
            return (objs, prefixes, last.max());
        }
        match rolled {
            Some(p) => {
                if prefixes.last() != Some(&p) {
                    prefixes.push(p);
                }
            }
            None => objs.push((key, v)),
        }
    }
    (objs, prefixes, None)
}

fn hex_token(s: &str) -> String {
    hex::encode(s.as_bytes())
}

fn unhex_token(s: &str) -> S3Result<String> {
    hex::decode(s)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| s3_error!(InvalidArgument, "malformed continuation token"))
}

fn max_keys(m: Option<i32>) -> usize {
    m.map(|m| m.clamp(1, DEFAULT_MAX_KEYS as i32) as usize).unwrap_or(DEFAULT_MAX_KEYS)
}

fn object_entry(key: &str, v: &Version) -> Object {
    Object {
        key: Some(key.to_string()),
        size: Some(v.size as i64),
        e_tag: Some(ETag::Strong(v.etag.clone())),
        last_modified: Some(timestamp(v.time_ms)),
        storage_class: Some(ObjectStorageClass::from_static(ObjectStorageClass::STANDARD)),
        ..Default::default()
    }
}

#[async_trait::async_trait]
impl S3 for Gateway {
    /// Browser form uploads: s3s would buffer the whole file before any check; not offered.
    async fn post_object(&self, _req: S3Request<PostObjectInput>) -> S3Result<S3Response<PostObjectOutput>> {
        Err(s3_error!(NotImplemented, "browser form uploads (POST Object) are not supported; use PUT"))
    }

    async fn list_buckets(&self, req: S3Request<ListBucketsInput>) -> S3Result<S3Response<ListBucketsOutput>> {
        let c = self.caller(&req).await?;
        let t = c.tenant.clone();
        let list = blocking(move || {
            t.buckets(|st, _| {
                Ok(st
                    .buckets
                    .iter()
                    .map(|(n, b)| Bucket {
                        name: Some(n.clone()),
                        creation_date: Some(timestamp(b.created_ms)),
                        ..Default::default()
                    })
                    .collect::<Vec<_>>())
            })
        })
        .await?;
        Ok(S3Response::new(ListBucketsOutput { buckets: Some(list), ..Default::default() }))
    }

    async fn create_bucket(&self, req: S3Request<CreateBucketInput>) -> S3Result<S3Response<CreateBucketOutput>> {
        let c = self.caller(&req).await?;
        let name = req.input.bucket.clone();
        if !buckets::valid_bucket_name(&name) {
            return Err(s3_error!(InvalidBucketName, "{name}: 3-63 of a-z, 0-9, '.' and '-'"));
        }
        let t = c.tenant.clone();
        let n2 = name.clone();
        blocking(move || {
            t.buckets(|st, repo| {
                if st.buckets.contains_key(&n2) {
                    return Err(s3_error!(BucketAlreadyOwnedByYou, "bucket {n2} exists"));
                }
                buckets::append(repo, st, Record::CreateBucket { bucket: n2.clone(), time_ms: now_ms() }).map_err(s3err)
            })
        })
        .await?;
        Ok(S3Response::new(CreateBucketOutput { location: Some(format!("/{name}")) }))
    }

    async fn delete_bucket(&self, req: S3Request<DeleteBucketInput>) -> S3Result<S3Response<DeleteBucketOutput>> {
        let c = self.caller(&req).await?;
        let (t, name) = (c.tenant.clone(), req.input.bucket.clone());
        blocking(move || {
            t.buckets(|st, repo| {
                let b = st.buckets.get(&name).ok_or_else(|| no_bucket(&name))?;
                if !b.is_empty() {
                    return Err(s3_error!(
                        BucketNotEmpty,
                        "bucket {name} holds objects, versions kept by retention, or uploads in progress"
                    ));
                }
                buckets::append(repo, st, Record::DeleteBucket { bucket: name.clone() }).map_err(s3err)
            })
        })
        .await?;
        Ok(S3Response::new(DeleteBucketOutput {}))
    }

    async fn head_bucket(&self, req: S3Request<HeadBucketInput>) -> S3Result<S3Response<HeadBucketOutput>> {
        let c = self.caller(&req).await?;
        self.require_bucket(&c, &req.input.bucket).await?;
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        let c = self.caller(&req).await?;
        self.require_bucket(&c, &req.input.bucket).await?;
        Ok(S3Response::new(GetBucketLocationOutput::default()))
    }

    async fn get_bucket_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        let c = self.caller(&req).await?;
        self.require_bucket(&c, &req.input.bucket).await?;
        // Overwritten and deleted versions are always kept until retention expires them.
        Ok(S3Response::new(GetBucketVersioningOutput {
            status: Some(BucketVersioningStatus::from_static(BucketVersioningStatus::ENABLED)),
            ..Default::default()
        }))
    }

    async fn put_object(&self, mut req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
        let c = self.caller(&req).await?;
        let i = &mut req.input;
        let (bucket, key) = (i.bucket.clone(), i.key.clone());
        self.require_bucket(&c, &bucket).await?;
        let len = i.content_length.or_else(|| decoded_length(&req.headers));
        let i = &mut req.input;
        let (ct, meta, appender) = (i.content_type.clone(), i.metadata.take(), c.token.role == Role::Appender);
        let k2 = key.clone();
        let record: Recorder = Box::new(move |t, w| {
            let v = version_of(w, hex::encode(w.md5), ct, meta);
            t.put_version(bucket, k2, v.clone(), appender)?;
            Ok(Some(v))
        });
        let body = i.body.take();
        let (_, v) = self.store_body(&c, &key, len, body, i.content_md5.as_deref(), PartPlan::Object, record).await?;
        let out = v.expect("a put records a version");
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(ETag::Strong(out.etag)),
            version_id: Some(out.id),
            size: Some(out.size as i64),
            ..Default::default()
        }))
    }

    async fn get_object(&self, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
        let c = self.caller(&req).await?;
        let i = &req.input;
        let (t, bucket, key, vid) = (c.tenant.clone(), i.bucket.clone(), i.key.clone(), i.version_id.clone());
        let v = blocking(move || t.buckets(|st, _| find_version(st, &bucket, &key, vid.as_deref()))).await?;
        let range = match &i.range {
            Some(r) => Some(r.check(v.size)?),
            None => None,
        };
        let (start, end) = range.as_ref().map(|r| (r.start, r.end)).unwrap_or((0, v.size));
        let len = end - start;
        let app = self.0.clone();
        let token = c.token.clone();
        if let Err(l) = blocking(move || app.throttle(&token, 0.0, len).map_err(s3err)).await? {
            return Err(slow_down(l));
        }
        // The chunk list and lengths, then the bytes, read a chunk at a time under a short read lock.
        let t = c.tenant.clone();
        let tree = v.tree_id().map_err(s3err)?.ok_or_else(|| no_key(&i.key))?;
        let chunks = blocking(move || {
            let repo = t.repo.read().expect("tenant repo");
            let ids = objects::chunks(&*repo, &tree).map_err(s3err)?;
            ids.into_iter()
                .map(|id| match repo.lookup(&id) {
                    Some(l) => Ok((id, l.raw_length as u64)),
                    None => Err(s3err(Error::corrupt(format!("chunk {id}"), "an object names it but no index does"))),
                })
                .collect::<S3Result<Vec<_>>>()
        })
        .await?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let t = c.tenant.clone();
        tokio::task::spawn_blocking(move || {
            let mut sink = |b: Vec<u8>| {
                tx.blocking_send(Ok(Bytes::from(b))).map_err(|_| Error::Usage("the client went away".into()))
            };
            let mut read = |id: &ChunkId| t.repo.read().expect("tenant repo").read_blob(id);
            if let Err(e) = objects::read_range(&mut read, &chunks, start, end, &mut sink) {
                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
            }
        });
        note(c.trace.as_ref(), |t| t.bytes_out = len);
        Ok(S3Response::new(GetObjectOutput {
            body: Some(StreamingBlob::new(ChanBody { rx, left: len as usize })),
            content_length: Some(len as i64),
            content_range: range.map(|r| format!("bytes {}-{}/{}", r.start, r.end.saturating_sub(1), v.size)),
            accept_ranges: Some("bytes".into()),
            e_tag: Some(ETag::Strong(v.etag.clone())),
            last_modified: Some(timestamp(v.time_ms)),
            content_type: v.content_type.clone(),
            metadata: (!v.metadata.is_empty()).then(|| v.metadata.clone().into_iter().collect()),
            version_id: Some(v.id.clone()),
            ..Default::default()
        }))
    }

    async fn head_object(&self, req: S3Request<HeadObjectInput>) -> S3Result<S3Response<HeadObjectOutput>> {
        let c = self.caller(&req).await?;
        let i = &req.input;
        let (t, bucket, key, vid) = (c.tenant.clone(), i.bucket.clone(), i.key.clone(), i.version_id.clone());
        let v = blocking(move || t.buckets(|st, _| find_version(st, &bucket, &key, vid.as_deref()))).await?;
        let (len, content_range) = match &i.range {
            Some(r) => {
                let r = r.check(v.size)?;
                (r.end - r.start, Some(format!("bytes {}-{}/{}", r.start, r.end.saturating_sub(1), v.size)))
            }
            None => (v.size, None),
        };
        Ok(S3Response::new(HeadObjectOutput {
            content_length: Some(len as i64),
            content_range,
            accept_ranges: Some("bytes".into()),
            e_tag: Some(ETag::Strong(v.etag.clone())),
            last_modified: Some(timestamp(v.time_ms)),
            content_type: v.content_type.clone(),
            metadata: (!v.metadata.is_empty()).then(|| v.metadata.clone().into_iter().collect()),
            version_id: Some(v.id),
            ..Default::default()
        }))
    }

    async fn delete_object(&self, req: S3Request<DeleteObjectInput>) -> S3Result<S3Response<DeleteObjectOutput>> {
        let c = self.caller(&req).await?;
        let i = &req.input;
        let (t, bucket, key, vid) = (c.tenant.clone(), i.bucket.clone(), i.key.clone(), i.version_id.clone());
        let out = blocking(move || t.buckets(|st, repo| delete_one(st, repo, &bucket, &key, vid.as_deref()))).await?;
        Ok(S3Response::new(out))
    }

    async fn delete_objects(&self, req: S3Request<DeleteObjectsInput>) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let c = self.caller(&req).await?;
        let i = req.input;
        let quiet = i.delete.quiet.unwrap_or(false);
        let (t, bucket, objects) = (c.tenant.clone(), i.bucket.clone(), i.delete.objects);
        let out = blocking(move || {
            t.buckets(|st, repo| {
                if !st.buckets.contains_key(&bucket) {
                    return Err(no_bucket(&bucket));
                }
                let (mut deleted, mut errors) = (Vec::new(), Vec::new());
                for o in objects {
                    match delete_one(st, repo, &bucket, &o.key, o.version_id.as_deref()) {
                        Ok(d) => deleted.push(DeletedObject {
                            key: Some(o.key),
                            version_id: o.version_id,
                            delete_marker: d.delete_marker,
                            delete_marker_version_id: d.version_id,
                        }),
                        Err(e) => errors.push(s3s::dto::Error {
                            code: Some(e.code().as_str().to_string()),
                            key: Some(o.key),
                            message: e.message().map(str::to_string),
                            version_id: o.version_id,
                        }),
                    }
                }
                Ok(DeleteObjectsOutput {
                    deleted: (!quiet).then_some(deleted),
                    errors: Some(errors),
                    ..Default::default()
                })
            })
        })
        .await?;
        Ok(S3Response::new(out))
    }

    async fn list_objects_v2(&self, req: S3Request<ListObjectsV2Input>) -> S3Result<S3Response<ListObjectsV2Output>> {
        let c = self.caller(&req).await?;
        let i = req.input;
        let max = max_keys(i.max_keys);
        let after = match &i.continuation_token {
            Some(tok) => Some(unhex_token(tok)?),
            None => i.start_after.clone(),
        };
        let prefix = i.prefix.clone().unwrap_or_default();
        let (t, bucket, delim) = (c.tenant.clone(), i.bucket.clone(), i.delimiter.clone());
        let (p2, b2) = (prefix.clone(), bucket.clone());
        let (objs, prefixes, next) = blocking(move || {
            t.buckets(|st, _| {
                let b = st.buckets.get(&b2).ok_or_else(|| no_bucket(&b2))?;
                let (o, p, n) = list_keys(b, &p2, delim.as_deref(), after.as_deref(), max);
                Ok((o.into_iter().map(|(k, v)| object_entry(k, v)).collect::<Vec<_>>(), p, n))
            })
        })
        .await?;
        let key_count = (objs.len() + prefixes.len()) as i32;
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(bucket),
            prefix: Some(prefix),
            delimiter: i.delimiter,
            max_keys: Some(max as i32),
            key_count: Some(key_count),
            continuation_token: i.continuation_token,
            start_after: i.start_after,
            is_truncated: Some(next.is_some()),
            next_continuation_token: next.as_deref().map(hex_token),
            contents: Some(objs),
            common_prefixes: Some(prefixes.into_iter().map(|p| CommonPrefix { prefix: Some(p) }).collect()),
            ..Default::default()
        }))
    }

    async fn list_objects(&self, req: S3Request<ListObjectsInput>) -> S3Result<S3Response<ListObjectsOutput>> {
        let marker = req.input.marker.clone();
        let delimiter = req.input.delimiter.clone();
        let v2 = self.list_objects_v2(req.map_input(ListObjectsV2Input::from)).await?.output;
        let next_marker = v2.next_continuation_token.as_deref().map(unhex_token).transpose()?;
        Ok(S3Response::new(ListObjectsOutput {
            name: v2.name,
            prefix: v2.prefix,
            marker,
            max_keys: v2.max_keys,
            is_truncated: v2.is_truncated,
            contents: v2.contents,
            common_prefixes: v2.common_prefixes,
            delimiter,
            next_marker,
            ..Default::default()
        }))
    }

    async fn list_object_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        let c = self.caller(&req).await?;
        let i = req.input;
        let max = max_keys(i.max_keys);
        let prefix = i.prefix.clone().unwrap_or_default();
        let (t, bucket, p2, after) = (c.tenant.clone(), i.bucket.clone(), prefix.clone(), i.key_marker.clone());
        let (versions, markers, next) = blocking(move || {
            t.buckets(|st, _| {
                let b = st.buckets.get(&bucket).ok_or_else(|| no_bucket(&bucket))?;
                let (mut versions, mut markers, mut next, mut last) = (Vec::new(), Vec::new(), None, None);
                let from = after.map(std::ops::Bound::Excluded).unwrap_or(std::ops::Bound::Unbounded);
                for (key, vs) in b.objects.range::<String, _>((from, std::ops::Bound::Unbounded)) {
                    if !key.starts_with(&p2) {
                        continue;
                    }
                    if versions.len() + markers.len() + vs.len() > max && !(versions.is_empty() && markers.is_empty()) {
                        // The last key returned: the next page starts after it.
                        next = last.clone();
                        break;
                    }
                    last = Some(key.clone());
                    for (n, v) in vs.iter().enumerate().rev() {
                        let latest = n + 1 == vs.len();
                        if v.is_delete_marker() {
                            markers.push(DeleteMarkerEntry {
                                key: Some(key.clone()),
                                version_id: Some(v.id.clone()),
                                is_latest: Some(latest),
                                last_modified: Some(timestamp(v.time_ms)),
                                owner: None,
                            });
                        } else {
                            versions.push(ObjectVersion {
                                key: Some(key.clone()),
                                version_id: Some(v.id.clone()),
                                is_latest: Some(latest),
                                last_modified: Some(timestamp(v.time_ms)),
                                e_tag: Some(ETag::Strong(v.etag.clone())),
                                size: Some(v.size as i64),
                                ..Default::default()
                            });
                        }
                    }
                }
                Ok((versions, markers, next))
            })
        })
        .await?;
        Ok(S3Response::new(ListObjectVersionsOutput {
            name: Some(i.bucket),
            prefix: Some(prefix),
            max_keys: Some(max as i32),
            key_marker: i.key_marker,
            is_truncated: Some(next.is_some()),
            next_key_marker: next,
            versions: Some(versions),
            delete_markers: Some(markers),
            ..Default::default()
        }))
    }

    async fn copy_object(&self, req: S3Request<CopyObjectInput>) -> S3Result<S3Response<CopyObjectOutput>> {
        let c = self.caller(&req).await?;
        let i = req.input;
        let CopySource::Bucket { bucket: sb, key: sk, version_id: sv } = &i.copy_source else {
            return Err(s3_error!(NotImplemented, "copies from access points or outposts"));
        };
        let (sb, sk, sv) = (sb.to_string(), sk.to_string(), sv.as_deref().map(str::to_string));
        let replace = i.metadata_directive.as_ref().is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
        let (t, bucket, key) = (c.tenant.clone(), i.bucket.clone(), i.key.clone());
        let (content_type, metadata) = (i.content_type.clone(), i.metadata.clone());
        let v = blocking(move || {
            t.buckets(|st, repo| {
                // Bucket names are the caller's tenant's: another tenant's bucket is simply not found.
                let src = find_version(st, &sb, &sk, sv.as_deref())?;
                if !st.buckets.contains_key(&bucket) {
                    return Err(no_bucket(&bucket));
                }
                if !replace && sb == bucket && sk == key && sv.is_none() {
                    return Err(s3_error!(
                        InvalidRequest,
                        "copying an object onto itself needs a metadata change (x-amz-metadata-directive: REPLACE)"
                    ));
                }
                // The copy names the same tree: no bytes are read or written.
                let mut v = Version { id: random_id(), time_ms: now_ms(), upload: None, ..src };
                if replace {
                    v.content_type = content_type;
                    v.metadata = metadata.unwrap_or_default().into_iter().collect();
                }
                buckets::append(repo, st, Record::Put { bucket, key, version: v.clone() }).map_err(s3err)?;
                Ok(v)
            })
        })
        .await?;
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(ETag::Strong(v.etag)),
                last_modified: Some(timestamp(v.time_ms)),
                ..Default::default()
            }),
            version_id: Some(v.id),
            ..Default::default()
        }))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let c = self.caller(&req).await?;
        let i = req.input;
        let upload = random_id();
        let info = Upload {
            key: i.key.clone(),
            started_ms: now_ms(),
            content_type: i.content_type,
            metadata: i.metadata.unwrap_or_default().into_iter().collect(),
            parts: BTreeMap::new(),
        };
        let (t, bucket, u2) = (c.tenant.clone(), i.bucket.clone(), upload.clone());
        blocking(move || {
            t.buckets(|st, repo| {
                if !st.buckets.contains_key(&bucket) {
                    return Err(no_bucket(&bucket));
                }
                buckets::append(repo, st, Record::StartUpload { bucket, upload: u2, info }).map_err(s3err)
            })
        })
        .await?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(i.bucket),
            key: Some(i.key),
            upload_id: Some(upload),
            ..Default::default()
        }))
    }

    async fn upload_part(&self, mut req: S3Request<UploadPartInput>) -> S3Result<S3Response<UploadPartOutput>> {
        let c = self.caller(&req).await?;
        let i = &mut req.input;
        if !(1..=MAX_PARTS).contains(&i.part_number) {
            return Err(s3_error!(InvalidArgument, "part numbers run from 1 to {MAX_PARTS}"));
        }
        let (t, bucket, upload, key) = (c.tenant.clone(), i.bucket.clone(), i.upload_id.clone(), i.key.clone());
        let (b2, u2, k2) = (bucket.clone(), upload.clone(), key.clone());
        let has_first =
            blocking(move || t.buckets(|st, _| upload_of(st, &b2, &u2, &k2).map(|u| u.parts.contains_key(&1)))).await?;
        if has_first && i.part_number != 1 {
            // Part 1 is stored; if it never told this server its layout (it came before a restart), no later
            // part should wait for it.
            let mut models = c.tenant.s3_models.lock().expect("part models");
            let tx = models.entry(upload.clone()).or_default();
            if tx.borrow().is_none() {
                tx.send_replace(Some(None));
            }
        }
        let len = i.content_length.or_else(|| decoded_length(&req.headers));
        let plan = part_plan(&c.tenant, &upload, req.input.part_number as u32).await;
        let i = &mut req.input;
        let number = i.part_number as u32;
        let record: Recorder = Box::new(move |t, w| {
            let part = Part { tree: w.tree.to_hex(), size: w.size, etag: hex::encode(w.md5), time_ms: now_ms() };
            t.buckets(|st, repo| {
                // The upload may have been completed or aborted while the part streamed in.
                upload_of(st, &bucket, &upload, &key)?;
                buckets::append(repo, st, Record::Part { bucket, upload, number, part }).map_err(s3err)
            })?;
            Ok(None)
        });
        let body = i.body.take();
        let (w, _) = self.store_body(&c, &i.key, len, body, i.content_md5.as_deref(), plan, record).await?;
        let etag = hex::encode(w.md5);
        Ok(S3Response::new(UploadPartOutput { e_tag: Some(ETag::Strong(etag)), ..Default::default() }))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let c = self.caller(&req).await?;
        let i = req.input;
        let listed: Vec<(i32, String)> = i
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default()
            .into_iter()
            .map(|p| (p.part_number.unwrap_or(0), p.e_tag.map(|e| e.value().to_string()).unwrap_or_default()))
            .collect();
        if listed.is_empty() {
            return Err(s3_error!(MalformedXML, "a completion must list the parts"));
        }
        if listed.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(s3_error!(InvalidPartOrder, "parts must be listed in ascending order"));
        }
        let (t, bucket, upload, key) = (c.tenant.clone(), i.bucket.clone(), i.upload_id.clone(), i.key.clone());
        let (app, appender) = (self.0.clone(), c.token.role == Role::Appender);
        let v = blocking(move || {
            // The vault's shared lock: no prune between the new tree's pack and the record naming it.
            let _lock = app.base.lock(false, "s3 complete", &|_| {}).map_err(s3err)?;
            t.buckets(|st, repo| {
                // A completion retried after it succeeded (its answer was lost) gets the same answer.
                let done = st
                    .buckets
                    .get(&bucket)
                    .and_then(|b| b.objects.get(&key))
                    .and_then(|vs| vs.iter().rev().find(|v| v.upload.as_deref() == Some(upload.as_str())).cloned());
                if let (Some(v), Err(_)) = (done, upload_of(st, &bucket, &upload, &key)) {
                    return Ok((v, Vec::new()));
                }
                let u = upload_of(st, &bucket, &upload, &key)?;
                if appender && st.buckets[&bucket].current(&key).is_some() {
                    return Err(s3_error!(AccessDenied, "an appender key may not overwrite {key}, which exists"));
                }
                let mut trees = Vec::new();
                let (mut size, mut md5s) = (0u64, Vec::new());
                for (n, (number, etag)) in listed.iter().enumerate() {
                    let p = u.parts.get(&(*number as u32)).filter(|p| p.etag == *etag).ok_or_else(|| {
                        s3_error!(InvalidPart, "part {number} with ETag {etag} was not uploaded to {upload}")
                    })?;
                    if n + 1 < listed.len() && p.size < MIN_PART {
                        return Err(s3_error!(
                            EntityTooSmall,
                            "part {number} is {} bytes; all but the last need 5 MiB",
                            p.size
                        ));
                    }
                    trees.push(ChunkId::from_hex(&p.tree).map_err(s3err)?);
                    size += p.size;
                    md5s.extend(hex::decode(&p.etag).unwrap_or_default());
                }
                use md5::Digest;
                let etag = format!("{}-{}", hex::encode(md5::Md5::digest(&md5s)), listed.len());
                let (tree, entries) = objects::concat(repo, &trees, size).map_err(s3err)?;
                let version = Version {
                    id: random_id(),
                    tree: Some(tree.to_hex()),
                    size,
                    etag,
                    time_ms: now_ms(),
                    content_type: u.content_type.clone(),
                    metadata: u.metadata.clone(),
                    upload: Some(upload.clone()),
                };
                buckets::append(repo, st, Record::Put { bucket: bucket.clone(), key, version: version.clone() })
                    .map_err(s3err)?;
                buckets::append(repo, st, Record::EndUpload { bucket, upload: upload.clone() }).map_err(s3err)?;
                t.s3_models.lock().expect("part models").remove(&upload);
                Ok((version, entries))
            })
        })
        .await?;
        let (v, entries) = v;
        let t = c.tenant.clone();
        blocking(move || {
            t.repo.write().expect("tenant repo").remember_index(entries);
            Ok(())
        })
        .await?;
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(i.bucket.clone()),
            key: Some(i.key),
            e_tag: Some(ETag::Strong(v.etag)),
            version_id: Some(v.id),
            location: Some(format!("/{}", i.bucket)),
            ..Default::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let c = self.caller(&req).await?;
        let i = req.input;
        let (t, bucket, upload, key) = (c.tenant.clone(), i.bucket, i.upload_id, i.key);
        blocking(move || {
            t.buckets(|st, repo| {
                upload_of(st, &bucket, &upload, &key)?;
                t.s3_models.lock().expect("part models").remove(&upload);
                buckets::append(repo, st, Record::EndUpload { bucket, upload }).map_err(s3err)
            })
        })
        .await?;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    async fn list_parts(&self, req: S3Request<ListPartsInput>) -> S3Result<S3Response<ListPartsOutput>> {
        let c = self.caller(&req).await?;
        let i = req.input;
        let max = i.max_parts.map(|m| m.clamp(1, 1000)).unwrap_or(1000) as usize;
        let after = i.part_number_marker.unwrap_or(0).max(0) as u32;
        let (t, bucket, upload, key) = (c.tenant.clone(), i.bucket.clone(), i.upload_id.clone(), i.key.clone());
        let (parts, next) = blocking(move || {
            t.buckets(|st, _| {
                let u = upload_of(st, &bucket, &upload, &key)?;
                let mut parts: Vec<Part_> = u.parts.range(after + 1..).map(|(n, p)| (*n, p.clone())).collect();
                let next = (parts.len() > max).then(|| parts[max - 1].0);
                parts.truncate(max);
                Ok((parts, next))
            })
        })
        .await?;
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(i.bucket),
            key: Some(i.key),
            upload_id: Some(i.upload_id),
            max_parts: Some(max as i32),
            part_number_marker: i.part_number_marker,
            is_truncated: Some(next.is_some()),
            next_part_number_marker: next.map(|n| n as i32),
            parts: Some(
                parts
                    .into_iter()
                    .map(|(n, p)| s3s::dto::Part {
                        part_number: Some(n as i32),
                        e_tag: Some(ETag::Strong(p.etag)),
                        size: Some(p.size as i64),
                        last_modified: Some(timestamp(p.time_ms)),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }))
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let c = self.caller(&req).await?;
        let i = req.input;
        let prefix = i.prefix.clone().unwrap_or_default();
        let (t, bucket, p2) = (c.tenant.clone(), i.bucket.clone(), prefix.clone());
        let uploads = blocking(move || {
            t.buckets(|st, _| {
                let b = st.buckets.get(&bucket).ok_or_else(|| no_bucket(&bucket))?;
                let mut v: Vec<MultipartUpload> = b
                    .uploads
                    .iter()
                    .filter(|(_, u)| u.key.starts_with(&p2))
                    .map(|(id, u)| MultipartUpload {
                        key: Some(u.key.clone()),
                        upload_id: Some(id.clone()),
                        initiated: Some(timestamp(u.started_ms)),
                        ..Default::default()
                    })
                    .collect();
                v.sort_by(|a, b| (&a.key, &a.initiated).cmp(&(&b.key, &b.initiated)));
                Ok(v)
            })
        })
        .await?;
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(i.bucket),
            prefix: Some(prefix),
            is_truncated: Some(false),
            uploads: Some(uploads),
            ..Default::default()
        }))
    }
}

type Part_ = (u32, Part);

/// An upload in progress, checked to be for `key`.
fn upload_of<'a>(st: &'a State, bucket: &str, upload: &str, key: &str) -> S3Result<&'a Upload> {
    let b = st.buckets.get(bucket).ok_or_else(|| no_bucket(bucket))?;
    b.uploads
        .get(upload)
        .filter(|u| u.key == key)
        .ok_or_else(|| s3_error!(NoSuchUpload, "no upload {upload} of {key} in progress"))
}

/// Delete a key (a delete marker becomes its current version) or one version of it for good.
fn delete_one(
    st: &mut State,
    repo: &mvault_core::Repo,
    bucket: &str,
    key: &str,
    version: Option<&str>,
) -> S3Result<DeleteObjectOutput> {
    let b = st.buckets.get(bucket).ok_or_else(|| no_bucket(bucket))?;
    match version {
        Some(v) => {
            let found = b.objects.get(key).and_then(|vs| vs.iter().find(|x| x.id == v)).cloned();
            if let Some(found) = &found {
                let r = Record::Expire { bucket: bucket.into(), key: key.into(), version: v.into() };
                buckets::append(repo, st, r).map_err(s3err)?;
                return Ok(DeleteObjectOutput {
                    version_id: Some(v.into()),
                    delete_marker: found.is_delete_marker().then_some(true),
                    ..Default::default()
                });
            }
            Ok(DeleteObjectOutput { version_id: Some(v.into()), ..Default::default() })
        }
        None => {
            // Deleting a key that does not exist (or is deleted already) succeeds and changes nothing.
            if b.current(key).is_none() {
                return Ok(DeleteObjectOutput::default());
            }
            let marker = Version {
                id: random_id(),
                tree: None,
                size: 0,
                etag: String::new(),
                time_ms: now_ms(),
                content_type: None,
                metadata: BTreeMap::new(),
                upload: None,
            };
            let id = marker.id.clone();
            buckets::append(repo, st, Record::Put { bucket: bucket.into(), key: key.into(), version: marker })
                .map_err(s3err)?;
            Ok(DeleteObjectOutput { delete_marker: Some(true), version_id: Some(id), ..Default::default() })
        }
    }
}

/// Around the whole S3 service: the audit record and metrics of every request, refused ones included
/// (a bad signature never reaches the operations, but it reaches this).
#[derive(Clone)]
pub struct Traced {
    pub svc: s3s::service::S3Service,
    pub app: Arc<App>,
}

/// The access key id a SigV4 request names (for the audit record of a request that failed its signature).
fn access_key_in(h: &http::HeaderMap) -> Option<String> {
    let v = h.get("authorization")?.to_str().ok()?;
    let cred = v.split("Credential=").nth(1)?;
    Some(cred.split('/').next()?.to_string())
}

impl tower::Service<http::Request<axum::body::Body>> for Traced {
    type Response = http::Response<s3s::Body>;
    type Error = std::convert::Infallible;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: http::Request<axum::body::Body>) -> Self::Future {
        // A form upload (POST Object) would be read whole by s3s before any signature or role check.
        let form = req.method() == http::Method::POST
            && req
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
        if form {
            let app = self.app.clone();
            return Box::pin(async move {
                app.metrics.observe("s3.PostObject", 501, 0, 0, 0.0);
                let mut r = http::Response::new(s3s::Body::from(
                    "<Error><Code>NotImplemented</Code><Message>POST Object is not supported</Message></Error>"
                        .to_string(),
                ));
                *r.status_mut() = http::StatusCode::NOT_IMPLEMENTED;
                Ok(r)
            });
        }
        let slot: TraceSlot = Arc::default();
        req.extensions_mut().insert(slot.clone());
        let client = req
            .extensions()
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string())
            .unwrap_or_default();
        let bytes_in = content_length(req.headers());
        let target = format!("{} {}", req.method(), req.uri().path());
        let key_token = access_key_in(req.headers()).and_then(|k| auth::token_id_of_access_key(&k));
        let (mut svc, app) = (self.svc.clone(), self.app.clone());
        Box::pin(async move {
            let start = Instant::now();
            let resp = match tower::Service::call(&mut svc, req).await {
                Ok(r) => r,
                Err(_) => {
                    let mut r = http::Response::new(s3s::Body::empty());
                    *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                    r
                }
            };
            let status = resp.status().as_u16();
            let t = std::mem::take(&mut *slot.lock().expect("trace"));
            let action = format!("s3.{}", if t.op.is_empty() { "request" } else { &t.op });
            let detail = if t.detail.is_empty() && status >= 400 && t.op.is_empty() {
                "refused before the operation (signature, key or request)".to_string()
            } else {
                t.detail
            };
            app.audit.append(audit::Record {
                action: action.clone(),
                target,
                client,
                bytes: bytes_in,
                token: t.token.or(key_token),
                tenant: t.tenant,
                result: status,
                detail,
                ..Default::default()
            });
            let bytes_out = if status < 300 { t.bytes_out } else { 0 };
            app.metrics.observe(&action, status, bytes_in, bytes_out, start.elapsed().as_secs_f64());
            Ok(resp)
        })
    }
}

/// The S3 service with our keys, access checks and tracing.
pub fn service(app: Arc<App>) -> Traced {
    let mut b = s3s::service::S3ServiceBuilder::new(Gateway(app.clone()));
    b.set_auth(Keys(app.clone()));
    b.set_access(Access(app.clone()));
    Traced { svc: b.build(), app }
}
