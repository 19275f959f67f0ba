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
        let request_id = new_request_id();
        if let Some(refusal) = presign_out_of_bounds(req.uri().query().unwrap_or("")) {
            let app = self.app.clone();
            return Box::pin(async move {
                app.metrics.observe("s3.request", 403, 0, 0, 0.0);
                Ok(error_response(http::StatusCode::FORBIDDEN, "AccessDenied", refusal, &request_id))
            });
        }
        if let Some(uri) = sigv2_bucket_uri(&req) {
            *req.uri_mut() = uri;
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
            let resp = with_request_id(resp, &request_id).await;
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

/// SigV2 signs a bucket-level request's resource as `/BUCKET/` (S3's canonical form) while SDKs send the path
/// `/BUCKET`; s3s signs the path as sent. The request is given the canonical path, which routes the same.
fn sigv2_bucket_uri<B>(req: &http::Request<B>) -> Option<http::Uri> {
    let v2_header =
        req.headers().get("authorization").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("AWS "));
    let v2_query = req.uri().query().is_some_and(|q| q.split('&').any(|kv| kv.starts_with("AWSAccessKeyId=")));
    let path = req.uri().path();
    let one_segment = path.len() > 1 && !path[1..].contains('/');
    if !(v2_header || v2_query) || !one_segment {
        return None;
    }
    let pq = match req.uri().query() {
        Some(q) => format!("{path}/?{q}"),
        None => format!("{path}/"),
    };
    let mut parts = req.uri().clone().into_parts();
    parts.path_and_query = Some(pq.parse().ok()?);
    http::Uri::from_parts(parts).ok()
}

/// A request id as S3 gives them: 16 upper-case hex digits.
fn new_request_id() -> String {
    let mut b = [0u8; 8];
    mvault_core::random::fill_random(&mut b);
    hex::encode_upper(b)
}

/// The longest a presigned URL may live (S3's bound: seven days).
const MAX_PRESIGNED_SECS: u64 = 7 * 24 * 3600;

/// A SigV4 presigned URL whose `X-Amz-Expires` is not a lifetime S3 accepts (1 s to 7 days) is refused
/// with 403, as S3 does, before anything else; an expired one is refused by s3s's own check (403 too).
fn presign_out_of_bounds(query: &str) -> Option<String> {
    let field = |name: &str| query.split('&').find_map(|kv| kv.strip_prefix(name));
    // SigV2 (what boto3 presigns with unless told otherwise): `Expires` is the Unix time it ends.
    if field("AWSAccessKeyId=").is_some() {
        let until = field("Expires=")?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        return match until.parse::<u64>() {
            Ok(t) if t <= now => Some(format!("Expires {until}: the presigned URL has expired")),
            Ok(t) if t - now > MAX_PRESIGNED_SECS => {
                Some(format!("Expires {until}: a presigned URL lives at most {MAX_PRESIGNED_SECS} s (7 days)"))
            }
            Ok(_) => None,
            Err(_) => Some(format!("Expires {until}: not a Unix time")),
        };
    }
    let expires = field("X-Amz-Expires=")?;
    match expires.parse::<u64>() {
        Ok(secs) if (1..=MAX_PRESIGNED_SECS).contains(&secs) => None,
        Ok(secs) if secs > MAX_PRESIGNED_SECS => {
            Some(format!("X-Amz-Expires {secs}: a presigned URL lives at most {MAX_PRESIGNED_SECS} s (7 days)"))
        }
        _ => Some(format!("X-Amz-Expires {expires}: the presigned URL has expired or is not valid yet")),
    }
}

fn error_response(
    status: http::StatusCode,
    code: &str,
    message: String,
    request_id: &str,
) -> http::Response<s3s::Body> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{}</Message><RequestId>{request_id}</RequestId></Error>",
        xml_escape(&message)
    );
    let mut r = http::Response::new(s3s::Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/xml"));
    r.headers_mut().insert("x-amz-request-id", http::HeaderValue::from_str(request_id).expect("hex"));
    r
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Every response carries `x-amz-request-id` and `x-amz-id-2`, and every XML error body its `<RequestId>`
/// (what SDKs log and users quote).
async fn with_request_id(mut resp: http::Response<s3s::Body>, request_id: &str) -> http::Response<s3s::Body> {
    let h = resp.headers_mut();
    h.insert("x-amz-request-id", http::HeaderValue::from_str(request_id).expect("hex"));
    let mut host_id = [0u8; 24];
    mvault_core::random::fill_random(&mut host_id);
    let host_id = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, host_id);
    h.insert("x-amz-id-2", http::HeaderValue::from_str(&host_id).expect("base64"));
    let xml = h.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("xml"));
    if resp.status().as_u16() < 400 || !xml {
        return resp;
    }
    // Error bodies are a few hundred bytes; one that is not is passed on as it is.
    let Ok(body) = resp.body_mut().store_all_limited(64 << 10).await else { return resp };
    let text = String::from_utf8_lossy(&body);
    if text.contains("<RequestId>") || !text.contains("</Error>") {
        *resp.body_mut() = s3s::Body::from(body);
        return resp;
    }
    let with_id = text.replacen("</Error>", &format!("<RequestId>{request_id}</RequestId></Error>"), 1);
    resp.headers_mut().insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(with_id.len()));
    *resp.body_mut() = s3s::Body::from(with_id);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sigv2_bucket_request_gets_the_canonical_path_it_was_signed_with() {
        let req =
            |uri: &str, auth: &str| http::Request::builder().uri(uri).header("authorization", auth).body(()).unwrap();
        let v2 = "AWS AKID:c2ln";
        assert_eq!(sigv2_bucket_uri(&req("/bkt", v2)).unwrap().to_string(), "/bkt/");
        assert_eq!(sigv2_bucket_uri(&req("/bkt?uploads", v2)).unwrap().to_string(), "/bkt/?uploads");
        assert!(sigv2_bucket_uri(&req("/bkt/key", v2)).is_none(), "object paths are left alone");
        assert!(sigv2_bucket_uri(&req("/", v2)).is_none());
        assert!(
            sigv2_bucket_uri(&req("/bkt", "AWS4-HMAC-SHA256 Credential=x")).is_none(),
            "SigV4 signs the path as sent"
        );
    }

    #[test]
    fn presigned_lifetimes_are_bounded_as_s3_bounds_them() {
        assert_eq!(presign_out_of_bounds("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=3600"), None);
        assert_eq!(presign_out_of_bounds("X-Amz-Expires=604800"), None);
        assert!(presign_out_of_bounds("X-Amz-Expires=609901").unwrap().contains("7 days"));
        assert!(presign_out_of_bounds("X-Amz-Expires=0").is_some());
        assert!(presign_out_of_bounds("X-Amz-Expires=-7").is_some());
        assert_eq!(presign_out_of_bounds("list-type=2&prefix=a"), None, "not a presigned URL");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let v2 = |t: u64| format!("AWSAccessKeyId=A&Signature=x&Expires={t}");
        assert_eq!(presign_out_of_bounds(&v2(now + 3600)), None);
        assert!(presign_out_of_bounds(&v2(now - 7)).unwrap().contains("expired"));
        assert!(presign_out_of_bounds(&v2(now + 609_901)).unwrap().contains("7 days"));
    }

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
