//! The write path: a request body chunked, encoded and packed while it streams in, under the quota.

use super::body::ChanReader;
use super::checksums::Wanted;
use super::errors::s3err;
use super::parts::PartPlan;
use super::trace::note;
use super::{now_ms, random_id, Caller, Gateway, MAX_PUT};
use crate::{App, Tenant};
use bytes::Bytes;
use futures::StreamExt;
use mvault_core::buckets::Version;
use mvault_core::ids::ChunkId;
use mvault_core::objects;
use mvault_core::Error;
use s3s::dto::*;
use s3s::TrailingHeaders;
use s3s::{s3_error, S3Error, S3ErrorCode, S3Result};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Object bodies stored at once (PUTs and parts): one per core of the machine this is sized for. Each holds
/// a pack being filled and a chunk buffer (about 40 MiB with the shard copies of a pack write).
pub(super) static WRITERS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

impl Gateway {
    /// Store a request body as an object (or part) of the caller's tenant: chunked, encoded and packed on
    /// a blocking thread while the body streams in; quota checked before each pack is written. The new
    /// blobs are in the tenant's index when this returns; the caller records the version or part.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn store_body(
        &self,
        caller: &Caller,
        key: &str,
        len: Option<i64>,
        body: Option<StreamingBlob>,
        content_md5: Option<&str>,
        sums: (Wanted, Option<TrailingHeaders>),
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
        // The checksums' verdict, sent once the whole body has passed; the writer waits for it before it
        // records anything.
        let (verdict_tx, verdict_rx) = tokio::sync::oneshot::channel();
        let (wanted, trailers) = sums;
        let mut hasher = (!wanted.is_empty()).then(|| wanted.hasher());
        let (app, tenant, key2) = (self.0.clone(), caller.tenant.clone(), key.to_string());
        let job = tokio::task::spawn_blocking(move || {
            write_object(&app, &tenant, &key2, len as u64, rx, plan, want_md5, verdict_rx, record)
        });
        let mut body =
            body.unwrap_or_else(|| StreamingBlob::wrap(futures::stream::empty::<Result<Bytes, std::io::Error>>()));
        let mut body_err = None;
        loop {
            // A client that stops sending holds a writer slot and the vault's shared lock: not for long.
            let chunk = match tokio::time::timeout(BODY_IDLE, body.next()).await {
                Ok(Some(caller)) => caller,
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
                    if let Some(h) = &mut hasher {
                        h.update(&b);
                    }
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
        if body_err.is_none() {
            let verdict = match hasher {
                Some(h) => wanted.verify(h.finalize(), trailers.and_then(|t| t.take()).as_ref()),
                None => Ok(Default::default()),
            };
            let _ = verdict_tx.send(verdict);
        }
        let written = job.await.map_err(|_| s3_error!(InternalError, "the object writer failed"))?;
        if let Some(e) = body_err {
            // s3s reports a bad payload hash or a broken chunk signature as the stream's last item.
            return Err(match e.downcast::<S3Error>() {
                Ok(s3) => *s3,
                Err(e) => S3Error::with_message(S3ErrorCode::IncompleteBody, format!("reading the body: {e}")),
            });
        }
        let (w, v) = written?;
        note(caller.trace.as_ref(), |t| {
            t.detail = format!("{} bytes, {} new, {} stored", w.size, w.new_bytes, w.stored_bytes)
        });
        Ok((w, v))
    }
}

/// What records a stored body (a version, or a part), with its verified checksums, run before the vault's
/// shared lock is released.
pub(super) type Recorder =
    Box<dyn FnOnce(&Tenant, &objects::Written, BTreeMap<String, String>) -> S3Result<Option<Version>> + Send>;

/// How long a body may send nothing before the upload is dropped.
pub(super) const BODY_IDLE: Duration = Duration::from_secs(60);

/// The blocking half of `store_body`.
#[allow(clippy::too_many_arguments)]
pub(super) fn write_object(
    app: &App,
    tenant: &Tenant,
    key: &str,
    len: u64,
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, String>>,
    plan: PartPlan,
    want_md5: Option<Vec<u8>>,
    verdict: tokio::sync::oneshot::Receiver<S3Result<BTreeMap<String, String>>>,
    record: Recorder,
) -> S3Result<(objects::Written, Option<Version>)> {
    let view = tenant.repo.read().expect("tenant repo").view_without_index().map_err(s3err)?;
    let known = |id: &ChunkId| tenant.repo.read().expect("tenant repo").has_chunk(id);
    // Each pack's bytes are reserved in the catalog before it is written, and held until the object's index
    // file is in: writers of the tenant on every instance are counted.
    let mut reserved = Vec::new();
    let mut over_quota = None;
    let mut admit = |bytes: u64| -> mvault_core::Result<()> {
        let repo = tenant.repo.read().expect("tenant repo");
        match tenant.reserve(&repo, bytes)? {
            Ok(held) => {
                reserved.extend(held);
                Ok(())
            }
            Err(refused) => {
                let msg = format!("quota max_bytes exceeded: {refused}");
                over_quota = Some(msg.clone());
                Err(Error::Usage(msg))
            }
        }
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
        Ok((w, _entries)) => {
            if want_md5.is_some_and(|m| m[..] != w.md5[..]) {
                Err(s3_error!(BadDigest, "the body does not match its Content-MD5"))
            } else {
                match verdict.blocking_recv() {
                    // Recorded while the vault's shared lock is held: no prune between the packs and the record.
                    Ok(Ok(sums)) => record(tenant, &w, sums).map(|v| (w, v)),
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err(s3_error!(IncompleteBody, "the body ended early")),
                }
            }
        }
        Err(e) => Err(match over_quota.take() {
            Some(msg) => S3Error::with_message(S3ErrorCode::AccessDenied, msg),
            None => s3err(e),
        }),
    };
    drop(reserved);
    out
}

pub(super) fn version_of(
    written: &objects::Written,
    etag: String,
    content_type: Option<String>,
    metadata: Option<Metadata>,
) -> Version {
    Version {
        id: random_id(),
        tree: Some(written.tree.to_hex()),
        size: written.size,
        etag,
        time_ms: now_ms(),
        content_type,
        metadata: metadata.unwrap_or_default().into_iter().collect(),
        ..Default::default()
    }
}

/// The standard headers of an upload that every read returns (kept per version, lower-case names).
pub(super) fn standard_headers(
    cache_control: Option<&str>,
    content_disposition: Option<&str>,
    content_encoding: Option<&str>,
    content_language: Option<&str>,
    expires: Option<&Timestamp>,
) -> BTreeMap<String, String> {
    let mut h = BTreeMap::new();
    let mut keep = |name: &str, v: Option<&str>| {
        if let Some(v) = v {
            h.insert(name.to_string(), v.to_string());
        }
    };
    keep("cache-control", cache_control);
    keep("content-disposition", content_disposition);
    // `aws-chunked` is how the request body was framed, not the object's encoding: S3 keeps the rest.
    let encoding: Vec<&str> = content_encoding
        .into_iter()
        .flat_map(|e| e.split(','))
        .map(str::trim)
        .filter(|e| *e != "aws-chunked")
        .collect();
    keep("content-encoding", (!encoding.is_empty()).then(|| encoding.join(", ")).as_deref());
    keep("content-language", content_language);
    if let Some(t) = expires {
        let mut buf = Vec::new();
        if t.format(TimestampFormat::HttpDate, &mut buf).is_ok() {
            h.insert("expires".to_string(), String::from_utf8_lossy(&buf).into_owned());
        }
    }
    h
}
