//! Conditional requests, as S3 applies RFC 7232: on reads `If-Match` / `If-Unmodified-Since` fail with 412
//! and `If-None-Match` / `If-Modified-Since` with 304; on writes (PUT, CompleteMultipartUpload) `If-None-Match:
//! *` and `If-Match` fail with 412; on DELETE `If-Match` (and its time and size variants) with 412; on
//! CopyObject the `x-amz-copy-source-if-*` headers with 412. Writes are checked under the tenant's bucket
//! lock, in the same step that records the new version, so two racing writers cannot both pass.

use mvault_core::buckets::Version;
use s3s::dto::{ETagCondition, Timestamp, TimestampFormat};
use s3s::{s3_error, S3Result};

/// Whole seconds since the epoch of an HTTP date (S3's conditions compare at one-second resolution).
fn secs(t: &Timestamp) -> i64 {
    let mut buf = Vec::new();
    let _ = t.format(TimestampFormat::EpochSeconds, &mut buf);
    std::str::from_utf8(&buf).ok().and_then(|s| s.split('.').next()?.parse().ok()).unwrap_or(0)
}

fn modified_secs(v: &Version) -> i64 {
    (v.time_ms / 1000) as i64
}

fn matches(cond: &ETagCondition, v: &Version) -> bool {
    match cond {
        ETagCondition::Any => true,
        ETagCondition::ETag(e) => e.value() == v.etag,
    }
}

/// The read conditions of a GET or HEAD.
#[derive(Default)]
pub(super) struct Read<'a> {
    pub if_match: Option<&'a ETagCondition>,
    pub if_none_match: Option<&'a ETagCondition>,
    pub if_modified_since: Option<&'a Timestamp>,
    pub if_unmodified_since: Option<&'a Timestamp>,
}

impl Read<'_> {
    /// `v` is the version the read would return.
    pub fn check(&self, v: &Version) -> S3Result<()> {
        match self.if_match {
            Some(c) if !matches(c, v) => return Err(failed("If-Match", v)),
            Some(_) => {}
            None => {
                if self.if_unmodified_since.is_some_and(|t| modified_secs(v) > secs(t)) {
                    return Err(failed("If-Unmodified-Since", v));
                }
            }
        }
        match self.if_none_match {
            Some(c) if matches(c, v) => return Err(not_modified(v)),
            Some(_) => {}
            None => {
                if self.if_modified_since.is_some_and(|t| modified_secs(v) <= secs(t)) {
                    return Err(not_modified(v));
                }
            }
        }
        Ok(())
    }
}

/// 304, with the validators a cache needs to keep using its copy (RFC 7232: ETag and Last-Modified).
fn not_modified(v: &Version) -> s3s::S3Error {
    let mut e = s3_error!(NotModified, "Not Modified");
    let mut h = http::HeaderMap::new();
    if let Ok(etag) = http::HeaderValue::from_str(&format!("\"{}\"", v.etag)) {
        h.insert(http::header::ETAG, etag);
    }
    let mut date = Vec::new();
    let modified = Timestamp::from(std::time::UNIX_EPOCH + std::time::Duration::from_millis(v.time_ms));
    if modified.format(TimestampFormat::HttpDate, &mut date).is_ok() {
        if let Ok(d) = http::HeaderValue::from_bytes(&date) {
            h.insert(http::header::LAST_MODIFIED, d);
        }
    }
    e.set_headers(h);
    e
}

fn failed(header: &str, v: &Version) -> s3s::S3Error {
    s3_error!(PreconditionFailed, "{header} does not hold for the object (ETag \"{}\")", v.etag)
}

/// The conditions of a write that replaces the current version (`current`: the key's current version, if
/// it has one that is not a delete marker).
pub(super) fn write(
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    current: Option<&Version>,
    key: &str,
) -> S3Result<()> {
    if let (Some(c), Some(v)) = (if_none_match, current) {
        // `*`: any current object fails it; an ETag: the current object with that ETag does.
        if matches(c, v) {
            return Err(s3_error!(PreconditionFailed, "If-None-Match and {key} exists (ETag \"{}\")", v.etag));
        }
    }
    if let Some(c) = if_match {
        match current {
            None => return Err(s3_error!(NoSuchKey, "If-Match and there is no object {key}")),
            Some(v) if !matches(c, v) => return Err(failed("If-Match", v)),
            Some(_) => {}
        }
    }
    Ok(())
}

/// The conditions of a DELETE of the current version.
pub(super) fn delete(
    if_match: Option<&ETagCondition>,
    if_match_modified: Option<&Timestamp>,
    if_match_size: Option<i64>,
    current: Option<&Version>,
    key: &str,
) -> S3Result<()> {
    if if_match.is_none() && if_match_modified.is_none() && if_match_size.is_none() {
        return Ok(());
    }
    let Some(v) = current else {
        return Err(s3_error!(NoSuchKey, "a conditional delete and there is no object {key}"));
    };
    if if_match.is_some_and(|c| !matches(c, v)) {
        return Err(failed("If-Match", v));
    }
    if if_match_modified.is_some_and(|t| modified_secs(v) != secs(t)) {
        return Err(failed("x-amz-if-match-last-modified-time", v));
    }
    if if_match_size.is_some_and(|s| s != v.size as i64) {
        return Err(failed("x-amz-if-match-size", v));
    }
    Ok(())
}

/// CopyObject's conditions on its source: every failure is 412 (S3 does not answer 304 to a copy).
pub(super) fn copy_source(read: &Read, v: &Version) -> S3Result<()> {
    read.check(v).map_err(|e| {
        if e.code() == &s3s::S3ErrorCode::NotModified {
            failed("x-amz-copy-source-if-none-match / -if-modified-since", v)
        } else {
            e
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use s3s::dto::ETag;
    use s3s::S3ErrorCode;

    fn v(etag: &str, time_ms: u64) -> Version {
        Version { etag: etag.into(), time_ms, tree: Some("00".repeat(32)), ..Default::default() }
    }

    fn at(secs: u64) -> Timestamp {
        Timestamp::from(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
    }

    fn code(r: S3Result<()>) -> Option<S3ErrorCode> {
        r.err().map(|e| e.code().clone())
    }

    #[test]
    fn reads_follow_rfc_7232_precedence() {
        let obj = v("abc", 1_000_500);
        let yes = ETagCondition::ETag(ETag::Strong("abc".into()));
        let no = ETagCondition::ETag(ETag::Strong("zzz".into()));
        let (before, same, after) = (at(999), at(1000), at(1001));
        let r = |m, n, ms, us| Read { if_match: m, if_none_match: n, if_modified_since: ms, if_unmodified_since: us };
        assert_eq!(code(r(Some(&yes), None, None, None).check(&obj)), None);
        assert_eq!(code(r(Some(&no), None, None, None).check(&obj)), Some(S3ErrorCode::PreconditionFailed));
        assert_eq!(code(r(None, Some(&yes), None, None).check(&obj)), Some(S3ErrorCode::NotModified));
        assert_eq!(code(r(None, Some(&no), None, None).check(&obj)), None);
        assert_eq!(code(r(None, None, Some(&same), None).check(&obj)), Some(S3ErrorCode::NotModified));
        assert_eq!(code(r(None, None, Some(&before), None).check(&obj)), None);
        assert_eq!(code(r(None, None, None, Some(&before)).check(&obj)), Some(S3ErrorCode::PreconditionFailed));
        assert_eq!(code(r(None, None, None, Some(&after)).check(&obj)), None);
        // If-Match that holds overrides a failing If-Unmodified-Since; If-None-Match overrides If-Modified-Since
        assert_eq!(code(r(Some(&yes), None, None, Some(&before)).check(&obj)), None);
        assert_eq!(code(r(None, Some(&no), Some(&after), None).check(&obj)), None);
        assert_eq!(code(r(None, Some(&ETagCondition::Any), None, None).check(&obj)), Some(S3ErrorCode::NotModified));
    }

    #[test]
    fn writes_and_deletes_fail_when_their_condition_does_not_hold() {
        let obj = v("abc", 5_000);
        let yes = ETagCondition::ETag(ETag::Strong("abc".into()));
        let no = ETagCondition::ETag(ETag::Strong("zzz".into()));
        let any = ETagCondition::Any;
        assert_eq!(code(write(None, Some(&any), None, "k")), None);
        assert_eq!(code(write(None, Some(&any), Some(&obj), "k")), Some(S3ErrorCode::PreconditionFailed));
        assert_eq!(code(write(Some(&yes), None, Some(&obj), "k")), None);
        assert_eq!(code(write(Some(&no), None, Some(&obj), "k")), Some(S3ErrorCode::PreconditionFailed));
        assert_eq!(code(write(Some(&yes), None, None, "k")), Some(S3ErrorCode::NoSuchKey));
        assert_eq!(code(write(None, Some(&yes), None, "k")), None);
        assert_eq!(code(write(None, Some(&yes), Some(&obj), "k")), Some(S3ErrorCode::PreconditionFailed));
        assert_eq!(code(write(None, Some(&no), Some(&obj), "k")), None);
        assert_eq!(code(delete(None, None, None, None, "k")), None);
        assert_eq!(code(delete(Some(&no), None, None, Some(&obj), "k")), Some(S3ErrorCode::PreconditionFailed));
        assert_eq!(code(delete(Some(&yes), Some(&at(5)), Some(0), Some(&obj), "k")), None);
        assert_eq!(code(delete(None, Some(&at(6)), None, Some(&obj), "k")), Some(S3ErrorCode::PreconditionFailed));
        assert_eq!(code(delete(None, None, Some(7), Some(&obj), "k")), Some(S3ErrorCode::PreconditionFailed));
        assert_eq!(code(delete(Some(&yes), None, None, None, "k")), Some(S3ErrorCode::NoSuchKey));
    }
}
