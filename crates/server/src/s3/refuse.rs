//! No wrong success: a request that asks for something the gateway does not do exactly is refused, before any
//! byte is read or stored, with the error S3 clients expect, naming the header. What is accepted is done:
//! `x-amz-acl: private` (every object is private to its tenant), `x-amz-server-side-encryption: AES256`
//! (every byte at rest is AES-256-GCM encrypted under keys the server holds, which is what SSE-S3 promises),
//! storage class `STANDARD`. SSE-C is refused: the gateway would have to keep the customer's key to serve
//! ranges and parts (docs/S3.md).

use s3s::dto::*;
use s3s::{s3_error, S3Result};

/// The headers of an object write that the gateway does not implement, gathered from any of the inputs that
/// carry them (PutObject, CreateMultipartUpload, CopyObject, UploadPart).
#[derive(Default)]
pub(super) struct Asked<'a> {
    pub acl: Option<&'a str>,
    pub grants: bool,
    pub sse: Option<&'a str>,
    pub sse_kms: bool,
    pub sse_c: bool,
    pub bucket_key: bool,
    pub tagging: bool,
    pub object_lock: bool,
    pub storage_class: Option<&'a str>,
    pub website_redirect: bool,
    pub write_offset: bool,
}

impl Asked<'_> {
    pub fn check(&self) -> S3Result<()> {
        if let Some(acl) = self.acl.filter(|a| !matches!(*a, "private" | "bucket-owner-full-control")) {
            return Err(s3_error!(
                NotImplemented,
                "x-amz-acl {acl}: objects are private to their tenant; only `private` is accepted"
            ));
        }
        let refused = [
            (self.grants, "x-amz-grant-* (ACL grants)"),
            (self.sse_kms, "SSE-KMS (x-amz-server-side-encryption-aws-kms-key-id / -context)"),
            (self.sse_c, "SSE-C (x-amz-server-side-encryption-customer-*)"),
            (self.bucket_key, "x-amz-server-side-encryption-bucket-key-enabled"),
            (self.tagging, "x-amz-tagging (object tags)"),
            (self.object_lock, "x-amz-object-lock-* (object lock)"),
            (self.website_redirect, "x-amz-website-redirect-location"),
            (self.write_offset, "x-amz-write-offset-bytes (appends)"),
        ];
        if let Some((_, what)) = refused.iter().find(|(asked, _)| *asked) {
            return Err(s3_error!(NotImplemented, "{what} is not supported by this gateway; nothing was stored"));
        }
        if let Some(sse) = self.sse.filter(|s| *s != ServerSideEncryption::AES256) {
            return Err(s3_error!(
                NotImplemented,
                "x-amz-server-side-encryption {sse}: only AES256 (the gateway's own encryption at rest) is supported"
            ));
        }
        if let Some(class) = self.storage_class.filter(|c| *c != StorageClass::STANDARD) {
            return Err(s3_error!(InvalidStorageClass, "storage class {class}: only STANDARD is offered"));
        }
        Ok(())
    }
}

/// The `Asked` of an object write: PutObject, CreateMultipartUpload and CopyObject carry the same headers
/// under the same names (s3s gives each its own input type).
macro_rules! asked_of_write {
    ($i:expr) => {
        Asked {
            acl: $i.acl.as_ref().map(|a| a.as_str()),
            grants: $i.grant_full_control.is_some()
                || $i.grant_read.is_some()
                || $i.grant_read_acp.is_some()
                || $i.grant_write_acp.is_some(),
            sse: $i.server_side_encryption.as_ref().map(|s| s.as_str()),
            sse_kms: $i.ssekms_key_id.is_some() || $i.ssekms_encryption_context.is_some(),
            sse_c: $i.sse_customer_algorithm.is_some()
                || $i.sse_customer_key.is_some()
                || $i.sse_customer_key_md5.is_some(),
            bucket_key: $i.bucket_key_enabled == Some(true),
            tagging: $i.tagging.is_some(),
            object_lock: $i.object_lock_mode.is_some()
                || $i.object_lock_retain_until_date.is_some()
                || $i.object_lock_legal_hold_status.is_some(),
            storage_class: $i.storage_class.as_ref().map(|c| c.as_str()),
            website_redirect: $i.website_redirect_location.is_some(),
            write_offset: false,
        }
    };
}

pub(super) fn put(i: &PutObjectInput) -> S3Result<()> {
    Asked { write_offset: i.write_offset_bytes.is_some(), ..asked_of_write!(i) }.check()
}

pub(super) fn create_upload(i: &CreateMultipartUploadInput) -> S3Result<()> {
    asked_of_write!(i).check()
}

pub(super) fn copy(i: &CopyObjectInput) -> S3Result<()> {
    let asked = asked_of_write!(i);
    let source_sse_c = i.copy_source_sse_customer_algorithm.is_some() || i.copy_source_sse_customer_key.is_some();
    Asked { sse_c: asked.sse_c || source_sse_c, tagging: asked.tagging || i.tagging_directive.is_some(), ..asked }
        .check()
}

pub(super) fn part(i: &UploadPartInput) -> S3Result<()> {
    Asked {
        sse_c: i.sse_customer_algorithm.is_some() || i.sse_customer_key.is_some() || i.sse_customer_key_md5.is_some(),
        ..Default::default()
    }
    .check()
}

/// Encryption headers belong to writes; on a read S3 answers 400 rather than ignore them.
pub(super) fn read_with_write_headers(headers: &http::HeaderMap) -> S3Result<()> {
    for h in ["x-amz-server-side-encryption", "x-amz-server-side-encryption-aws-kms-key-id"] {
        if headers.contains_key(h) {
            return Err(s3_error!(InvalidArgument, "{h} is for writes; a read names no encryption"));
        }
    }
    Ok(())
}

/// Reads with an SSE-C key: no object here was written with one, so the key cannot be the right one.
pub(super) fn read_with_customer_key(algorithm: Option<&str>, key: Option<&str>) -> S3Result<()> {
    if algorithm.is_some() || key.is_some() {
        return Err(s3_error!(
            InvalidRequest,
            "SSE-C is not supported by this gateway: no object was written with a customer key"
        ));
    }
    Ok(())
}

pub(super) fn create_bucket(i: &CreateBucketInput) -> S3Result<()> {
    if i.object_lock_enabled_for_bucket == Some(true) {
        return Err(s3_error!(NotImplemented, "object lock (x-amz-bucket-object-lock-enabled) is not supported yet"));
    }
    if let Some(acl) = i.acl.as_ref().map(|a| a.as_str()).filter(|a| *a != "private") {
        return Err(s3_error!(NotImplemented, "x-amz-acl {acl}: buckets are private to their tenant"));
    }
    let grants = i.grant_full_control.is_some()
        || i.grant_read.is_some()
        || i.grant_read_acp.is_some()
        || i.grant_write.is_some()
        || i.grant_write_acp.is_some();
    if grants {
        return Err(s3_error!(NotImplemented, "x-amz-grant-* (ACL grants) is not supported by this gateway"));
    }
    if let Some(o) = i.object_ownership.as_ref().map(|o| o.as_str()).filter(|o| *o == "ObjectWriter") {
        return Err(s3_error!(NotImplemented, "x-amz-object-ownership {o}: objects belong to the bucket's tenant"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_done_passes_and_everything_else_is_refused_by_name() {
        assert!(Asked {
            acl: Some("private"),
            sse: Some("AES256"),
            storage_class: Some("STANDARD"),
            ..Default::default()
        }
        .check()
        .is_ok());
        let refused = |a: Asked| a.check().unwrap_err();
        let e = refused(Asked { acl: Some("public-read"), ..Default::default() });
        assert_eq!(e.code(), &s3s::S3ErrorCode::NotImplemented);
        assert!(e.message().unwrap().contains("public-read"));
        assert!(refused(Asked { sse_c: true, ..Default::default() }).message().unwrap().contains("SSE-C"));
        assert!(refused(Asked { sse: Some("aws:kms"), ..Default::default() }).message().unwrap().contains("aws:kms"));
        assert!(refused(Asked { tagging: true, ..Default::default() }).message().unwrap().contains("tagging"));
        assert!(refused(Asked { object_lock: true, ..Default::default() }).message().unwrap().contains("object lock"));
        let e = refused(Asked { storage_class: Some("GLACIER"), ..Default::default() });
        assert_eq!(e.code(), &s3s::S3ErrorCode::InvalidStorageClass);
    }
}
