//! Around the whole S3 service: the audit record and the metrics of every request, refused ones included.

use super::body::content_length;
use crate::auth::{self};
use crate::{audit, App};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

/// What the access check and the operation learned about a request, for the audit record `Traced` writes.
#[derive(Default)]
pub struct Trace {
    pub(super) op: String,
    pub(super) token: Option<String>,
    pub(super) tenant: Option<String>,
    pub(super) detail: String,
    pub(super) bytes_out: u64,
}

pub(super) type TraceSlot = Arc<Mutex<Trace>>;

pub(super) fn note(slot: Option<&TraceSlot>, work: impl FnOnce(&mut Trace)) {
    if let Some(s) = slot {
        work(&mut s.lock().expect("trace"));
    }
}

/// (a bad signature never reaches the operations, but it reaches this).
/// Around the whole S3 service: the audit record and metrics of every request, refused ones included
/// (a bad signature never reaches the operations, but it reaches this).
#[derive(Clone)]
pub struct Traced {
    pub svc: s3s::service::S3Service,
    pub app: Arc<App>,
}

/// The access key id a SigV4 request names (for the audit record of a request that failed its signature).
pub(super) fn access_key_in(headers: &http::HeaderMap) -> Option<String> {
    let v = headers.get("authorization")?.to_str().ok()?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_access_key_of_a_sigv4_header_is_found_for_the_audit_record() {
        let mut h = http::HeaderMap::new();
        assert_eq!(access_key_in(&h), None);
        let sig = "AWS4-HMAC-SHA256 Credential=MVAKEXAMPLE/20261207/us-east-1/s3/aws4_request, \
                   SignedHeaders=host;x-amz-date, Signature=abc";
        h.insert("authorization", http::HeaderValue::from_static(sig));
        assert_eq!(access_key_in(&h).as_deref(), Some("MVAKEXAMPLE"));
        h.insert("authorization", http::HeaderValue::from_static("Bearer something"));
        assert_eq!(access_key_in(&h), None);
    }
}
