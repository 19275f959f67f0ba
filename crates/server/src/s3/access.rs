//! Who may do what: the secret of an access key for SigV4, then the role table and the token's rate limits.

use super::blocking;
use super::body::content_length;
use super::errors::{s3err, slow_down};
use super::trace::{note, TraceSlot};
use crate::auth::{self, Action, TokenRecord};
use crate::App;
use s3s::auth::{S3Auth, SecretKey};
use s3s::{s3_error, S3Error, S3ErrorCode, S3Result};
use std::sync::Arc;

/// The role table's action for an S3 operation (docs/S3.md lists them).
pub(super) fn action_of(op: &str) -> &'static [Action] {
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
        | "HeadObject"
        | "GetObjectAttributes" => &[Action::ListSnapshots],
        "GetObject" => &[Action::ReadData],
        "CopyObject" => &[Action::ReadData, Action::Append],
        "PutObject"
        | "CreateMultipartUpload"
        | "UploadPart"
        | "CompleteMultipartUpload"
        | "AbortMultipartUpload"
        | "CreateBucket"
        | "PutBucketVersioning" => &[Action::Append],
        "DeleteObject" | "DeleteObjects" | "DeleteBucket" => &[Action::Forget],
        // Everything else answers NotImplemented; a valid key is still required to hear it.
        _ => &[],
    }
}

impl App {
    /// The token record of an S3 access key, if it may be used now.
    pub(super) fn s3_key(&self, access_key: &str) -> Option<TokenRecord> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    fn allowed(role: Role, op: &str) -> bool {
        action_of(op).iter().all(|a| role.may(*a))
    }

    #[test]
    fn every_operation_the_gateway_implements_is_in_the_role_table() {
        // The operations are the `async fn`s of ops.rs; one added without a row here would be open to every
        // key, whatever its role.
        let ops = include_str!("ops.rs");
        let mut seen = 0;
        for line in ops.lines() {
            let Some(rest) = line.trim_start().strip_prefix("async fn ") else { continue };
            let name: String =
                rest.split('(').next().unwrap().split('_').map(|w| w[..1].to_uppercase() + &w[1..]).collect();
            if name == "PostObject" {
                continue; // refused with NotImplemented before any work
            }
            assert!(!action_of(&name).is_empty(), "{name} has no row in the role table");
            seen += 1;
        }
        assert!(seen >= 20, "found only {seen} operations in ops.rs");
    }

    #[test]
    fn a_reader_reads_and_lists_but_never_changes_anything() {
        for op in ["ListBuckets", "ListObjectsV2", "HeadObject", "GetObject", "ListParts"] {
            assert!(allowed(Role::Reader, op), "{op}");
        }
        for op in
            ["PutObject", "UploadPart", "CopyObject", "DeleteObject", "DeleteObjects", "CreateBucket", "DeleteBucket"]
        {
            assert!(!allowed(Role::Reader, op), "{op}");
        }
    }

    #[test]
    fn an_appender_adds_but_never_reads_data_back_or_deletes() {
        for op in ["PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload", "HeadObject"] {
            assert!(allowed(Role::Appender, op), "{op}");
        }
        // A copy reads its source: an appender may not copy what it could not GET.
        for op in ["GetObject", "CopyObject", "DeleteObject", "DeleteObjects", "DeleteBucket"] {
            assert!(!allowed(Role::Appender, op), "{op}");
        }
    }

    #[test]
    fn writers_and_admins_do_everything_and_the_operator_touches_no_data() {
        for op in ["GetObject", "PutObject", "CopyObject", "DeleteObjects", "DeleteBucket", "ListObjectVersions"] {
            assert!(allowed(Role::Writer, op) && allowed(Role::Admin, op), "{op}");
            assert!(!allowed(Role::Operator, op), "{op}");
        }
    }
}
