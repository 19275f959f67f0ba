//! The tenant's bucket state: loaded on first use, changed only by records written to the stores first.

use super::errors::{no_bucket, no_key, s3err};
use super::{now_ms, random_id};
use crate::Tenant;
use mvault_core::buckets::{self, Record, State, Upload, Version};
use mvault_core::Error;
use s3s::dto::*;
use s3s::{s3_error, S3Result};
use std::time::Duration;

impl Tenant {
    /// Run `work` on the tenant's bucket state (loaded from the stores on first use), under its lock.
    pub(super) fn buckets<R>(&self, work: impl FnOnce(&mut State, &mvault_core::Repo) -> S3Result<R>) -> S3Result<R> {
        // A panic elsewhere must not take the tenant's buckets down with it: the state is only changed after
        // its record is written, so what a poisoned lock holds is still consistent.
        let mut st = self.s3.lock().unwrap_or_else(|p| p.into_inner());
        let repo = self.repo.read().expect("tenant repo");
        // Instances sharing a catalog take turns on a tenant's buckets, and each first reads what the others
        // appended, so every gateway serves the same buckets.
        let shared = repo.exclusive("buckets").map_err(s3err)?;
        if st.is_none() {
            *st = Some(buckets::load(&repo).map_err(s3err)?);
        }
        let state = st.as_mut().expect("loaded");
        let Some(shared) = shared else { return work(state, &repo) };
        buckets::catch_up(&repo, state, shared.latest().map_err(s3err)?).map_err(s3err)?;
        let before = state.seq;
        let out = work(state, &repo);
        if state.seq != before {
            shared.publish(state.seq).map_err(s3err)?;
        }
        out
    }

    /// Write a new version of a key, unless its bucket went away while the body streamed in (a record for a
    /// missing bucket would be acknowledged and then dropped by the replay).
    /// An appender adds, never replaces: an overwrite would let retention expire what was there.
    /// Record a new current version of `key`, once `guard` (an appender's rule, a write's conditions) passes
    /// on the current one: checked and recorded under one lock, so racing writers cannot both pass.
    pub(super) fn put_version(
        &self,
        bucket: String,
        key: String,
        version: Version,
        guard: &dyn Fn(Option<&Version>) -> S3Result<()>,
    ) -> S3Result<()> {
        self.buckets(|st, repo| {
            let b = st.buckets.get(&bucket).ok_or_else(|| no_bucket(&bucket))?;
            guard(b.current(&key))?;
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
        let (_, made, _) = mvault_core::snapshot_bucket(&self.repo.read().expect("tenant repo"), &state, bucket, tags)?;
        Ok(made)
    }
}

/// The version a GET, HEAD or copy names: the current one, or the given version id.
pub(super) fn find_version(st: &State, bucket: &str, key: &str, version: Option<&str>) -> S3Result<Version> {
    let b = st.buckets.get(bucket).ok_or_else(|| no_bucket(bucket))?;
    match version {
        None => b.current(key).cloned().ok_or_else(|| {
            // A key whose current version is a delete marker says so, as S3 does (x-amz-delete-marker).
            match b.objects.get(key).and_then(|vs| vs.last()) {
                Some(marker) => marked(no_key(key), &marker.id),
                None => no_key(key),
            }
        }),
        Some(v) => {
            let found = b.objects.get(key).and_then(|vs| vs.iter().find(|x| x.id == v)).cloned();
            let found = found.ok_or_else(|| s3_error!(NoSuchVersion, "no version {v} of {key}"))?;
            if found.is_delete_marker() {
                return Err(marked(s3_error!(MethodNotAllowed, "version {v} of {key} is a delete marker"), v));
            }
            Ok(found)
        }
    }
}

/// An error about a delete marker, with the headers S3 gives it: `x-amz-delete-marker: true` and its version.
fn marked(mut e: s3s::S3Error, version: &str) -> s3s::S3Error {
    let mut h = http::HeaderMap::new();
    h.insert("x-amz-delete-marker", http::HeaderValue::from_static("true"));
    if let Ok(v) = http::HeaderValue::from_str(version) {
        h.insert("x-amz-version-id", v);
    }
    e.set_headers(h);
    e
}

/// An upload in progress, checked to be for `key`.
pub(super) fn upload_of<'a>(st: &'a State, bucket: &str, upload: &str, key: &str) -> S3Result<&'a Upload> {
    let b = st.buckets.get(bucket).ok_or_else(|| no_bucket(bucket))?;
    b.uploads
        .get(upload)
        .filter(|u| u.key == key)
        .ok_or_else(|| s3_error!(NoSuchUpload, "no upload {upload} of {key} in progress"))
}

/// Delete a key (a delete marker becomes its current version) or one version of it for good.
pub(super) fn delete_one(
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
                ..Default::default()
            };
            let id = marker.id.clone();
            buckets::append(repo, st, Record::Put { bucket: bucket.into(), key: key.into(), version: marker })
                .map_err(s3err)?;
            Ok(DeleteObjectOutput { delete_marker: Some(true), version_id: Some(id), ..Default::default() })
        }
    }
}
