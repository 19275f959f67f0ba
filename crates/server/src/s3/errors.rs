//! Core errors and missing things as the S3 errors a client can act on (docs/S3.md, "Errors").

use mvault_core::Error;
use s3s::{S3Error, S3ErrorCode};

/// A core error as the S3 error a client can act on.
pub(super) fn s3err(err: Error) -> S3Error {
    match err {
        // A prune holding the vault passes: the client should slow down and retry, not give up.
        Error::Locked { .. } => S3Error::with_message(S3ErrorCode::SlowDown, err.to_string()),
        // Stores that are away come back: retry later.
        Error::Store { .. } | Error::Unavailable { .. } => {
            S3Error::with_message(S3ErrorCode::ServiceUnavailable, err.to_string())
        }
        Error::BodyMismatch { .. } | Error::BodyRead { .. } => {
            S3Error::with_message(S3ErrorCode::IncompleteBody, err.to_string())
        }
        Error::Usage(m) => S3Error::with_message(S3ErrorCode::InvalidRequest, m),
        other => S3Error::with_message(S3ErrorCode::InternalError, other.to_string()),
    }
}

pub(super) fn slow_down(limited: crate::limits::Limited) -> S3Error {
    let mut e = S3Error::with_message(
        S3ErrorCode::SlowDown,
        format!("rate limit {} of {} exceeded; retry in {:.1} s", limited.limit, limited.rate, limited.retry_after),
    );
    let mut h = http::HeaderMap::new();
    let secs = format!("{}", limited.retry_after.ceil().max(1.0) as u64);
    h.insert(http::header::RETRY_AFTER, http::HeaderValue::from_str(&secs).expect("digits"));
    h.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/xml"));
    e.set_headers(h);
    e
}

pub(super) fn no_bucket(bucket: &str) -> S3Error {
    S3Error::with_message(S3ErrorCode::NoSuchBucket, format!("no bucket {bucket}"))
}

pub(super) fn no_key(key: &str) -> S3Error {
    S3Error::with_message(S3ErrorCode::NoSuchKey, format!("no object {key}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(err: Error) -> S3ErrorCode {
        s3err(err).code().clone()
    }

    #[test]
    fn a_held_lock_tells_the_client_to_slow_down_and_retry() {
        let e = Error::Locked { holder: "prune".into(), expires: "soon".into(), path: "locks/x".into() };
        assert_eq!(code_of(e), S3ErrorCode::SlowDown);
    }

    #[test]
    fn stores_away_are_a_service_unavailable() {
        let e = Error::Unavailable { what: "pack p".into(), reason: "no store is up".into() };
        assert_eq!(code_of(e), S3ErrorCode::ServiceUnavailable);
        let e = Error::Store {
            store: "fs:/x".into(),
            op: "put",
            path: "packs/p".into(),
            source: std::io::Error::other("down"),
        };
        assert_eq!(code_of(e), S3ErrorCode::ServiceUnavailable);
    }

    #[test]
    fn a_short_or_broken_body_is_an_incomplete_body() {
        let e = Error::BodyMismatch { object: "k".into(), declared: 10, got: 3 };
        assert_eq!(code_of(e), S3ErrorCode::IncompleteBody);
        let e = Error::BodyRead { object: "k".into(), source: std::io::Error::other("reset") };
        assert_eq!(code_of(e), S3ErrorCode::IncompleteBody);
    }

    #[test]
    fn bad_usage_is_the_clients_and_anything_else_is_ours() {
        assert_eq!(code_of(Error::Usage("no such thing".into())), S3ErrorCode::InvalidRequest);
        let e = Error::Corrupt { object: "pack p".into(), reason: "tag".into() };
        assert_eq!(code_of(e), S3ErrorCode::InternalError);
    }

    #[test]
    fn a_rate_limit_names_itself_and_says_when_to_retry() {
        let e = slow_down(crate::limits::Limited { limit: "requests", rate: 5.0, retry_after: 0.2 });
        assert_eq!(e.code(), &S3ErrorCode::SlowDown);
        assert!(e.message().unwrap_or_default().contains("requests"));
        let headers = e.headers().expect("headers");
        // Retry-After is whole seconds and never 0 (a client would retry at once).
        assert_eq!(headers.get(http::header::RETRY_AFTER).unwrap(), "1");
    }
}
