//! The HTTP API (docs/API.md): routing, and one request path that every endpoint goes through:
//! authenticate the bearer token from the headers before any body is read (`authenticate_first`), check the
//! role table, apply the token's rate limits, run the handler on a blocking thread (the core is
//! synchronous), then record the request in the audit log and the metrics.
//!
//! Every data request is scoped to the token's tenant: ids are looked up in that tenant's index and
//! snapshots only, so another tenant's ids are simply not found, whatever they are.

use crate::auth::{self, Action, Refused, Role, TokenRecord};
use crate::{audit, frames, registry, App};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::Router;
use mvault_core::format::snapshot::Snapshot;
use mvault_core::ids::ChunkId;
use mvault_core::{ingest, Error};
use serde::Deserialize;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// An answer that is not a success: a status and a JSON body with at least `error`.
pub struct ApiError {
    status: StatusCode,
    body: Value,
    retry_after: Option<f64>,
}

impl ApiError {
    pub fn new(status: StatusCode, msg: impl Into<String>) -> Self {
        ApiError { status, body: json!({ "error": msg.into() }), retry_after: None }
    }
}

/// How long a client is told to wait before retrying a request that met a lock or stores that were away.
const RETRY_AFTER_S: f64 = 5.0;

impl From<Error> for ApiError {
    /// The variant decides the status, never the message. A lock conflict is 409 with Retry-After and the
    /// lock's holder and expiry in the body (`"kind": "locked"`), so a remote CLI rebuilds the same
    /// `Error::Locked`; stores that are away are 503 with Retry-After (`"kind": "unavailable"`).
    fn from(err: Error) -> Self {
        let status = match &err {
            Error::NotFound { .. } | Error::NoVault(_) => StatusCode::NOT_FOUND,
            Error::Usage(_) | Error::Malformed { .. } | Error::BodyMismatch { .. } | Error::BodyRead { .. } => {
                StatusCode::BAD_REQUEST
            }
            Error::AlreadyExists(_) | Error::Locked { .. } => StatusCode::CONFLICT,
            Error::Store { .. } | Error::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut out = ApiError::new(status, err.to_string());
        if err.is_transient() {
            out.retry_after = Some(RETRY_AFTER_S);
        }
        match err {
            Error::Locked { holder, expires, path } => {
                out.body["kind"] = json!("locked");
                out.body["holder"] = json!(holder);
                out.body["expires"] = json!(expires);
                out.body["path"] = json!(path);
            }
            Error::Unavailable { .. } | Error::Store { .. } => out.body["kind"] = json!("unavailable"),
            _ => {}
        }
        out
    }
}

pub enum Reply {
    Json(Value),
    Bytes(Vec<u8>),
    Text(String),
}

/// Who is asking: the token's record (tenant, role) once it verified.
pub struct Principal {
    pub token: TokenRecord,
}

impl Principal {
    fn tenant(&self) -> Result<&str, ApiError> {
        self.token
            .tenant
            .as_deref()
            .ok_or_else(|| ApiError::new(StatusCode::FORBIDDEN, "an operator token has no tenant"))
    }
}

/// What the request path needs to know about one request before running it.
struct Req {
    name: &'static str,
    action: Action,
    target: String,
    headers: HeaderMap,
    client: SocketAddr,
    bytes_in: u64,
}

fn bearer(headers: &HeaderMap) -> Result<&str, Refused> {
    let v = headers.get("authorization").ok_or(Refused::Missing)?;
    let v = v.to_str().map_err(|_| Refused::Malformed)?;
    v.strip_prefix("Bearer ").ok_or(Refused::Malformed)
}

impl App {
    /// Verify the bearer token; the reason for a refusal goes to the audit log only.
    fn authenticate(&self, headers: &HeaderMap) -> Result<TokenRecord, (Refused, Option<String>)> {
        let token = bearer(headers).map_err(|r| (r, None))?;
        let (id, secret) = auth::parse(token).ok_or((Refused::Malformed, None))?;
        let rec = self.token(id).ok_or((Refused::Unknown, Some(id.to_string())))?;
        auth::check(&rec, &secret).map_err(|r| (r, Some(id.to_string())))?;
        if let Some(t) = &rec.tenant {
            if self.tenant(t).is_err() {
                return Err((Refused::TenantGone, Some(id.to_string())));
            }
        }
        Ok(rec)
    }

    fn run(self: &Arc<Self>, request: Req, work: impl FnOnce(&Principal) -> Result<Reply, ApiError>) -> Response {
        let start = Instant::now();
        let mut rec = audit::Record {
            action: request.name.into(),
            target: request.target.clone(),
            client: request.client.ip().to_string(),
            bytes: request.bytes_in,
            ..Default::default()
        };
        let result = match self.authenticate(&request.headers) {
            Err((why, id)) => {
                rec.token = id;
                rec.detail = why.to_string();
                Err(ApiError::new(StatusCode::UNAUTHORIZED, "missing, invalid, expired or revoked token"))
            }
            Ok(token) => {
                rec.token = Some(token.id.clone());
                rec.tenant = token.tenant.clone();
                let p = Principal { token };
                if !p.token.role.may(request.action) {
                    Err(ApiError::new(
                        StatusCode::FORBIDDEN,
                        format!("a {} token may not {}", p.token.role, request.name.replace('.', " ")),
                    ))
                } else if let Err(l) = self.admit(&p, request.bytes_in) {
                    Err(l)
                } else {
                    work(&p)
                }
            }
        };
        let (status, response, bytes_out) = match result {
            Ok(Reply::Json(v)) => {
                let body = serde_json::to_vec(&v).expect("json");
                let n = body.len() as u64;
                (StatusCode::OK, ([("content-type", "application/json")], body).into_response(), n)
            }
            Ok(Reply::Bytes(b)) => {
                let n = b.len() as u64;
                (StatusCode::OK, ([("content-type", "application/octet-stream")], b).into_response(), n)
            }
            Ok(Reply::Text(t)) => {
                let n = t.len() as u64;
                (StatusCode::OK, ([("content-type", "text/plain; version=0.0.4")], t).into_response(), n)
            }
            Err(e) => {
                if rec.detail.is_empty() {
                    rec.detail = e.body["error"].as_str().unwrap_or_default().to_string();
                }
                let mut resp = (e.status, axum::Json(e.body.clone())).into_response();
                if e.status == StatusCode::UNAUTHORIZED {
                    resp.headers_mut().insert("www-authenticate", HeaderValue::from_static("Bearer"));
                }
                if let Some(s) = e.retry_after {
                    if let Ok(v) = HeaderValue::from_str(&format!("{}", s.ceil().max(1.0) as u64)) {
                        resp.headers_mut().insert("retry-after", v);
                    }
                }
                (e.status, resp, 0)
            }
        };
        rec.result = status.as_u16();
        self.audit.append(rec);
        self.metrics.observe(request.name, status.as_u16(), request.bytes_in, bytes_out, start.elapsed().as_secs_f64());
        response
    }

    /// The token's tenant's rate limits: one request, and the request's body bytes.
    fn admit(&self, principal: &Principal, bytes: u64) -> Result<(), ApiError> {
        self.throttle(&principal.token, 1.0, bytes)?.map_err(limited)
    }

    /// Charge `requests` requests and `bytes` bytes to a token's rate limits (the HTTP API and the S3
    /// gateway both go through here). The outer error is a tenant that cannot be loaded.
    pub(crate) fn throttle(
        &self,
        token: &TokenRecord,
        requests: f64,
        bytes: u64,
    ) -> mvault_core::Result<Result<(), crate::limits::Limited>> {
        let Some(t) = &token.tenant else { return Ok(Ok(())) };
        let limits = self.tenant(t)?.limits();
        if requests > 0.0 {
            if let Err(l) = self.limiter.admit(&token.id, "requests", requests, limits.requests_per_second) {
                return Ok(Err(l));
            }
        }
        Ok(self.limiter.admit(&token.id, "bytes", bytes as f64, limits.bytes_per_second.map(|b| b as f64)))
    }

    /// The tenant a data request is about: always the token's own.
    fn own_tenant(&self, principal: &Principal) -> Result<Arc<crate::Tenant>, ApiError> {
        Ok(self.tenant(principal.tenant()?)?)
    }

    /// Charge `bytes` (sent or received) to the token's bytes_per_second.
    fn admit_bytes(&self, principal: &Principal, bytes: u64) -> Result<(), ApiError> {
        self.throttle(&principal.token, 0.0, bytes)?.map_err(limited)
    }
}

/// 507: a quota would be exceeded; the body names the limit, the quota, the usage and what was asked for.
fn quota_exceeded(limit: &str, quota: u64, usage: u64, requested: u64, what: String) -> ApiError {
    ApiError {
        status: StatusCode::INSUFFICIENT_STORAGE,
        body: json!({
            "error": format!("quota {limit} exceeded: {what}"),
            "limit": limit, "quota": quota, "usage": usage, "requested": requested,
        }),
        retry_after: None,
    }
}

fn limited(limited: crate::limits::Limited) -> ApiError {
    ApiError {
        status: StatusCode::TOO_MANY_REQUESTS,
        body: json!({
            "error": format!("rate limit {} of {} exceeded; retry in {:.1} s", limited.limit, limited.rate, limited.retry_after),
            "limit": limited.limit, "rate": limited.rate, "retry_after": limited.retry_after,
        }),
        retry_after: Some(limited.retry_after),
    }
}

type St = State<Arc<App>>;
type Client = ConnectInfo<SocketAddr>;

/// Run a request on a blocking thread (the core is synchronous, and may block on stores).
async fn blocking(
    app: Arc<App>,
    request: Req,
    work: impl FnOnce(&App, &Principal) -> Result<Reply, ApiError> + Send + 'static,
) -> Response {
    let app2 = app.clone();
    let (name, target, client) = (request.name, request.target.clone(), request.client);
    let audit = app.clone();
    tokio::task::spawn_blocking(move || app2.run(request, |p| work(&app, p))).await.unwrap_or_else(|_| {
        // A handler that panicked still leaves its trace.
        audit.audit.append(audit::Record {
            action: name.into(),
            target,
            client: client.ip().to_string(),
            result: 500,
            detail: "handler failed".into(),
            ..Default::default()
        });
        audit.metrics.observe(name, 500, 0, 0, 0.0);
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "handler failed").into_response()
    })
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body)).into_response()
    }
}

fn req(
    name: &'static str,
    action: Action,
    target: impl Into<String>,
    headers: HeaderMap,
    client: Client,
    bytes_in: u64,
) -> Req {
    Req { name, action, target: target.into(), headers, client: client.0, bytes_in }
}

fn chunk_id(text: &str) -> Result<ChunkId, ApiError> {
    ChunkId::from_hex(text).map_err(|_| ApiError::new(StatusCode::NOT_FOUND, format!("no blob {text:?}")))
}

fn json_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("request body: {e}")))
}

/// The largest body of any request but an upload batch (JSON: ids, snapshot records, limits).
pub const SMALL_BODY: usize = 8 << 20;

/// Check the token from the headers before the body is read: a request without a valid token is answered
/// 401 at once, whatever it is still sending, and costs no body's memory; a token whose role cannot upload
/// is refused a body over SMALL_BODY (413) before it arrives. The handler checks the token again (from the
/// cache, no store read) with the role and limits for its action.
async fn authenticate_first(
    State(app): St,
    ConnectInfo(client): Client,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if request.uri().path() == "/healthz" {
        return next.run(request).await;
    }
    let headers = request.headers().clone();
    let checking = app.clone();
    let verdict = tokio::task::spawn_blocking(move || checking.authenticate(&headers)).await;
    let declared = request
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let refusal = match verdict {
        Ok(Ok(token)) if declared > SMALL_BODY as u64 && !token.role.may(Action::Append) => Some((
            Some(token.id.clone()),
            format!("a {} token may not send a body over {} bytes", token.role, SMALL_BODY),
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request bodies of a {} token: at most {SMALL_BODY} bytes", token.role),
            ),
        )),
        Ok(Ok(_)) => None,
        Ok(Err((why, id))) => Some((
            id,
            why.to_string(),
            ApiError::new(StatusCode::UNAUTHORIZED, "missing, invalid, expired or revoked token"),
        )),
        Err(_) => Some((
            None,
            "authentication failed".into(),
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "authentication failed"),
        )),
    };
    let Some((token, detail, error)) = refusal else { return next.run(request).await };
    let (head, body) = request.into_parts();
    tokio::spawn(linger(body));
    let request = head;
    let status = error.status;
    app.audit.append(audit::Record {
        action: "http.request".into(),
        target: format!("{} {}", request.method, request.uri.path()),
        client: client.ip().to_string(),
        token,
        result: status.as_u16(),
        detail,
        ..Default::default()
    });
    app.metrics.observe("http.request", status.as_u16(), 0, 0, 0.0);
    let mut response = error.into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert("www-authenticate", HeaderValue::from_static("Bearer"));
    }
    response
}

/// How much of a refused request's body is read and dropped, and for how long, before its connection closes.
const LINGER_BYTES: usize = 4 << 20;
const LINGER_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// A lingering close, as nginx makes one: read and drop what the client is still sending, for a moment, so it
/// sees the refusal. Closing with its bytes unread would reset the connection, and a reset makes the client's
/// system drop the answer it had received. Nothing is kept, and an endless sender is cut off after
/// LINGER_TIME or LINGER_BYTES.
async fn linger(body: axum::body::Body) {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let mut read = 0;
    let _ = tokio::time::timeout(LINGER_TIME, async {
        while let Some(Ok(data)) = stream.next().await {
            read += data.len();
            if read >= LINGER_BYTES {
                break;
            }
        }
    })
    .await;
}

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/v1/tenants", get(tenants_list).post(tenants_create))
        .route("/v1/tenants/{name}", delete(tenants_delete))
        .route("/v1/tenants/{name}/limits", put(tenants_limits))
        .route("/v1/tokens", get(tokens_list).post(tokens_create))
        .route("/v1/tokens/{id}", delete(tokens_revoke))
        .route("/v1/audit", get(audit_show))
        .route("/v1/audit/verify", get(audit_verify))
        .route("/v1/tenant", get(tenant_info))
        .route("/v1/tenant/id-key", get(tenant_id_key))
        .route("/v1/chunks/missing", post(chunks_missing))
        .route("/v1/chunks/stat", post(chunks_stat))
        .route("/v1/chunks", post(chunks_upload).layer(axum::extract::DefaultBodyLimit::max(crate::MAX_BODY)))
        .route("/v1/blobs/{id}", get(blob_get))
        .route("/v1/snapshots", get(snapshots_list).post(snapshots_create))
        .route("/v1/snapshots/forget", post(snapshots_forget))
        .route("/v1/snapshots/{id}", get(snapshot_get))
        .route("/v1/buckets/{bucket}/snapshot", post(bucket_snapshot))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(axum::extract::DefaultBodyLimit::max(SMALL_BODY))
        .layer(axum::middleware::from_fn_with_state(app.clone(), authenticate_first))
        .with_state(app)
}

// ---- operator: metrics, tenants, audit ----

async fn metrics(State(app): St, headers: HeaderMap, client: Client) -> Response {
    blocking(app, req("metrics", Action::System, "/metrics", headers, client, 0), |app, _| {
        let mut s = String::new();
        app.metrics.render(&mut s);
        app.render_gauges(&mut s);
        Ok(Reply::Text(s))
    })
    .await
}

async fn tenants_list(State(app): St, headers: HeaderMap, client: Client) -> Response {
    blocking(app, req("tenant.list", Action::System, "tenants", headers, client, 0), |app, _| {
        let mut out = Vec::new();
        for rec in registry::list(&app.sys)? {
            let usage = app.tenant(&rec.name).and_then(|t| t.usage()).unwrap_or_default();
            out.push(json!({ "name": rec.name, "created": rec.created, "limits": rec.limits, "usage": usage }));
        }
        Ok(Reply::Json(Value::Array(out)))
    })
    .await
}

#[derive(Deserialize)]
struct TenantCreate {
    name: String,
    #[serde(default)]
    limits: registry::Limits,
}

async fn tenants_create(State(app): St, headers: HeaderMap, client: Client, body: Bytes) -> Response {
    let n = body.len() as u64;
    blocking(app, req("tenant.create", Action::System, "tenants", headers, client, n), move |app, _| {
        let tc: TenantCreate = json_body(&body)?;
        let rec = registry::create(&app.base, &app.sys, &tc.name, tc.limits)?;
        Ok(Reply::Json(json!(rec)))
    })
    .await
}

#[derive(Deserialize)]
struct ShredQuery {
    #[serde(default)]
    shred: bool,
}

async fn tenants_delete(
    State(app): St,
    headers: HeaderMap,
    client: Client,
    Path(name): Path<String>,
    Query(q): Query<ShredQuery>,
) -> Response {
    blocking(app, req("tenant.delete", Action::System, format!("tenant {name}"), headers, client, 0), move |app, _| {
        if !q.shred {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "deleting a tenant destroys its keys and data: add ?shred=true",
            ));
        }
        // Uploads and commits of the tenant in progress finish first, and none start until it is gone.
        let t = app.tenant(&name)?;
        let _no_writers = t.writes.write().expect("tenant writes");
        let (keys, objects) = registry::shred(&app.base, &app.sys, &name)?;
        app.forget_tenant(&name);
        Ok(Reply::Json(json!({ "tenant": name, "key_objects_deleted": keys, "objects_deleted": objects })))
    })
    .await
}

async fn tenants_limits(
    State(app): St,
    headers: HeaderMap,
    client: Client,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let n = body.len() as u64;
    blocking(app, req("tenant.limits", Action::System, format!("tenant {name}"), headers, client, n), move |app, _| {
        let limits: registry::Limits = json_body(&body)?;
        let mut rec = registry::load(&app.sys, &name)?;
        rec.limits = limits;
        registry::save(&app.sys, &rec)?;
        if let Ok(t) = app.tenant(&name) {
            t.set_record(rec.clone());
        }
        Ok(Reply::Json(json!(rec)))
    })
    .await
}

#[derive(Deserialize)]
struct AuditQuery {
    tenant: Option<String>,
}

async fn audit_show(State(app): St, headers: HeaderMap, client: Client, Query(q): Query<AuditQuery>) -> Response {
    blocking(app, req("audit.show", Action::System, "audit", headers, client, 0), move |app, _| {
        app.audit.flush(&app.sys)?;
        let recs = audit::show(&app.sys, q.tenant.as_deref())?;
        Ok(Reply::Json(json!(recs
            .into_iter()
            .map(|(chain, r)| json!({"chain": chain, "record": r}))
            .collect::<Vec<_>>())))
    })
    .await
}

async fn audit_verify(State(app): St, headers: HeaderMap, client: Client) -> Response {
    blocking(app, req("audit.verify", Action::System, "audit", headers, client, 0), |app, _| {
        app.audit.flush(&app.sys)?;
        Ok(Reply::Json(json!(audit::verify(&app.sys)?)))
    })
    .await
}

// ---- tokens: the operator for any tenant, a tenant's admin for its own ----

#[derive(Deserialize)]
struct TokenCreate {
    tenant: Option<String>,
    role: Role,
    /// Seconds until it expires.
    ttl: Option<u64>,
    #[serde(default)]
    label: String,
    /// An S3 access key instead of a bearer token.
    #[serde(default)]
    s3: bool,
}

async fn tokens_create(State(app): St, headers: HeaderMap, client: Client, body: Bytes) -> Response {
    let n = body.len() as u64;
    blocking(app, req("token.create", Action::Tokens, "tokens", headers, client, n), move |app, p| {
        let mut tc: TokenCreate = json_body(&body)?;
        if p.token.role == Role::Admin {
            let own = p.tenant()?;
            if tc.tenant.as_deref().is_some_and(|t| t != own) || tc.role == Role::Operator {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "an admin token makes tokens for its own tenant only",
                ));
            }
            tc.tenant = Some(own.to_string());
        }
        if let Some(t) = &tc.tenant {
            app.tenant(t)?;
        }
        let (v, rec) = auth::issue(&app.sys, tc.tenant.as_deref(), tc.role, tc.ttl, &tc.label, tc.s3)?;
        app.remember_token(rec);
        Ok(Reply::Json(v))
    })
    .await
}

async fn tokens_list(State(app): St, headers: HeaderMap, client: Client) -> Response {
    blocking(app, req("token.list", Action::Tokens, "tokens", headers, client, 0), |app, p| {
        let all = auth::list(&app.sys)?;
        let mine = all.iter().filter(|t| p.token.role == Role::Operator || t.tenant == p.token.tenant);
        Ok(Reply::Json(Value::Array(mine.map(TokenRecord::public).collect())))
    })
    .await
}

async fn tokens_revoke(State(app): St, headers: HeaderMap, client: Client, Path(id): Path<String>) -> Response {
    blocking(app, req("token.revoke", Action::Tokens, format!("token {id}"), headers, client, 0), move |app, p| {
        let mut rec = auth::load(&app.sys, &id)?;
        if p.token.role != Role::Operator && rec.tenant != p.token.tenant {
            return Err(ApiError::new(StatusCode::NOT_FOUND, format!("no token {id}")));
        }
        rec.revoked = true;
        auth::save(&app.sys, &rec)?;
        app.remember_token(rec.clone());
        Ok(Reply::Json(rec.public()))
    })
    .await
}

// ---- tenant data ----

async fn tenant_info(State(app): St, headers: HeaderMap, client: Client) -> Response {
    blocking(app, req("tenant.info", Action::TenantInfo, "tenant", headers, client, 0), |app, p| {
        let t = app.own_tenant(p)?;
        let rec = t.record();
        Ok(Reply::Json(json!({ "name": rec.name, "limits": rec.limits, "usage": t.usage()? })))
    })
    .await
}

async fn tenant_id_key(State(app): St, headers: HeaderMap, client: Client) -> Response {
    blocking(app, req("tenant.id-key", Action::TenantInfo, "tenant id key", headers, client, 0), |app, p| {
        let t = app.own_tenant(p)?;
        let repo = t.repo.read().expect("tenant repo");
        Ok(Reply::Json(
            json!({ "id_key": hex::encode(repo.current_keys().id_key().expose()), "chunker": repo.config.chunker }),
        ))
    })
    .await
}

#[derive(Deserialize)]
struct Ids {
    ids: Vec<String>,
}

/// Which of the given ids this tenant lacks. Only the caller's tenant's index is consulted, so the
/// answer says nothing about any other tenant's data.
async fn chunks_missing(State(app): St, headers: HeaderMap, client: Client, body: Bytes) -> Response {
    let n = body.len() as u64;
    blocking(app, req("chunks.missing", Action::Append, "chunks", headers, client, n), move |app, p| {
        let ids: Ids = json_body(&body)?;
        let t = app.own_tenant(p)?;
        let repo = t.repo.read().expect("tenant repo");
        // One batched lookup for the whole list (one round trip per batch on PostgreSQL); a malformed id
        // counts as missing, so the client sends it and hears why.
        let parsed: Vec<Option<ChunkId>> = ids.ids.iter().map(|s| ChunkId::from_hex(s).ok()).collect();
        let wanted: Vec<ChunkId> = parsed.iter().flatten().copied().collect();
        let mut found = repo.lookup_many(&wanted)?.into_iter();
        let missing: Vec<&String> = ids
            .ids
            .iter()
            .zip(&parsed)
            .filter(|(_, id)| id.is_none() || found.next().flatten().is_none())
            .map(|(s, _)| s)
            .collect();
        Ok(Reply::Json(json!({ "missing": missing })))
    })
    .await
}

async fn chunks_stat(State(app): St, headers: HeaderMap, client: Client, body: Bytes) -> Response {
    let n = body.len() as u64;
    blocking(app, req("chunks.stat", Action::ReadData, "chunks", headers, client, n), move |app, p| {
        let ids: Ids = json_body(&body)?;
        let t = app.own_tenant(p)?;
        let repo = t.repo.read().expect("tenant repo");
        let parsed: Vec<Option<ChunkId>> = ids.ids.iter().map(|s| ChunkId::from_hex(s).ok()).collect();
        let wanted: Vec<ChunkId> = parsed.iter().flatten().copied().collect();
        let mut found = repo.lookup_many(&wanted)?.into_iter();
        let locs: Vec<_> = parsed.iter().map(|id| id.and_then(|_| found.next().flatten())).collect();
        let lengths: Vec<Option<u32>> = locs.iter().map(|l| l.map(|l| l.raw_length)).collect();
        let stored: Vec<Option<u32>> = locs.iter().map(|l| l.map(|l| l.length)).collect();
        Ok(Reply::Json(json!({ "lengths": lengths, "stored": stored })))
    })
    .await
}

/// Store a batch of blobs. The quota is checked against the batch's encoded size before anything is
/// written; over it, nothing of the batch is kept (507).
async fn chunks_upload(State(app): St, headers: HeaderMap, client: Client, body: Bytes) -> Response {
    let n = body.len() as u64;
    blocking(app, req("chunks.upload", Action::Append, "chunks", headers, client, n), move |app, p| {
        let items = frames::parse(&body)?;
        let received = items.len();
        let t = app.own_tenant(p)?;
        // Beside the tenant's other uploads, on this instance and on every other.
        let _writing = t.writes.read().expect("tenant writes");
        let repo = t.repo.read().expect("tenant repo");
        let prepared = ingest::prepare(&repo, items)?;
        let adding = ingest::encoded_bytes(&prepared);
        // Held until the batch's index file is in (and so in the usage counters), then given back.
        let _reserved = t.reserve(&repo, adding)?.map_err(|refused| {
            quota_exceeded("max_bytes", refused.max, refused.stored + refused.reserved, adding, refused.to_string())
        })?;
        let stored = prepared.len();
        // The vault's shared lock, as a local backup holds it: a prune (which takes the exclusive one) cannot
        // run between these packs being written and a snapshot naming them.
        let _lock = app.base.lock(false, "server upload", &|_| {})?;
        let written = ingest::store(&repo, prepared)?;
        Ok(Reply::Json(json!({ "received": received, "stored": stored, "bytes_written": written })))
    })
    .await
}

async fn blob_get(State(app): St, headers: HeaderMap, client: Client, Path(id): Path<String>) -> Response {
    blocking(app, req("blob.read", Action::ReadData, format!("blob {id}"), headers, client, 0), move |app, p| {
        let id = chunk_id(&id)?;
        let t = app.own_tenant(p)?;
        let repo = t.repo.read().expect("tenant repo");
        let Some(loc) = repo.lookup(&id)? else {
            return Err(ApiError::new(StatusCode::NOT_FOUND, format!("no blob {id}")));
        };
        // Downloads count against the token's bytes_per_second too.
        app.admit_bytes(p, loc.raw_length as u64)?;
        Ok(Reply::Bytes(repo.read_blob(&id)?))
    })
    .await
}

fn snapshot_json(id: &mvault_core::ids::SnapshotId, snapshot: &Snapshot) -> Value {
    let mut v = json!(snapshot);
    v["id"] = json!(id.to_hex());
    v
}

async fn snapshots_list(State(app): St, headers: HeaderMap, client: Client) -> Response {
    blocking(app, req("snapshot.list", Action::ListSnapshots, "snapshots", headers, client, 0), |app, p| {
        let t = app.own_tenant(p)?;
        let (list, _) = t.repo.read().expect("tenant repo").snapshots()?;
        Ok(Reply::Json(Value::Array(list.iter().map(|(id, s)| snapshot_json(id, s)).collect())))
    })
    .await
}

async fn snapshot_get(State(app): St, headers: HeaderMap, client: Client, Path(spec): Path<String>) -> Response {
    blocking(
        app,
        req("snapshot.get", Action::ListSnapshots, format!("snapshot {spec}"), headers, client, 0),
        move |app, p| {
            let t = app.own_tenant(p)?;
            let (id, s) = t.repo.read().expect("tenant repo").find_snapshot(&spec)?;
            Ok(Reply::Json(snapshot_json(&id, &s)))
        },
    )
    .await
}

/// Add a snapshot whose tree the client uploaded. Every blob it references must be in this tenant.
async fn snapshots_create(State(app): St, headers: HeaderMap, client: Client, body: Bytes) -> Response {
    let n = body.len() as u64;
    blocking(app, req("snapshot.create", Action::Append, "snapshots", headers, client, n), move |app, p| {
        let mut snap: Snapshot = json_body(&body)?;
        let t = app.own_tenant(p)?;
        let _writing = t.writes.read().expect("tenant writes");
        let _one_commit = t.commits.lock().expect("tenant commits");
        let _lock = app.base.lock(false, "server snapshot", &|_| {})?;
        let repo = t.repo.read().expect("tenant repo");
        if let Some(max) = t.limits().max_snapshots {
            let have = repo.snapshots()?.0.len() as u64;
            if have >= max {
                return Err(quota_exceeded(
                    "max_snapshots",
                    max,
                    have,
                    1,
                    format!("{have} snapshots of {max} allowed"),
                ));
            }
        }
        // The server keeps time and lock fields; a client cannot backdate or lock through this call.
        snap.version = 1;
        snap.time = humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string();
        snap.locked_until = None;
        snap.original = None;
        let missing = ingest::missing_references(&repo, &snap.tree_id()?)?;
        if !missing.is_empty() {
            return Err(ApiError {
                status: StatusCode::CONFLICT,
                body: json!({
                    "error": format!("the snapshot references {} blobs this tenant does not have; upload them first", missing.len()),
                    "missing": missing.iter().take(1000).map(|m| m.to_hex()).collect::<Vec<_>>(),
                }),
                retry_after: None,
            });
        }
        let id = repo.save_snapshot(&snap)?;
        Ok(Reply::Json(snapshot_json(&id, &snap)))
    })
    .await
}

async fn snapshots_forget(State(app): St, headers: HeaderMap, client: Client, body: Bytes) -> Response {
    let n = body.len() as u64;
    blocking(app, req("snapshot.forget", Action::Forget, "snapshots", headers, client, n), move |app, p| {
        let ids: Ids = json_body(&body)?;
        let t = app.own_tenant(p)?;
        let repo = t.repo.read().expect("tenant repo");
        let opts = mvault_core::prune::ForgetOptions {
            policy: Default::default(),
            ids: ids.ids,
            group_by: Default::default(),
            dry_run: false,
        };
        let report = mvault_core::prune::forget(&repo, &opts)?;
        Ok(Reply::Json(json!(report)))
    })
    .await
}

#[derive(Deserialize, Default)]
struct BucketSnapshot {
    #[serde(default)]
    tags: Vec<String>,
}

/// Freeze one of the tenant's S3 buckets as a snapshot (`mvault snapshot-bucket` over a server).
async fn bucket_snapshot(
    State(app): St,
    headers: HeaderMap,
    client: Client,
    Path(bucket): Path<String>,
    body: Bytes,
) -> Response {
    let n = body.len() as u64;
    blocking(
        app,
        req("bucket.snapshot", Action::Append, format!("bucket {bucket}"), headers, client, n),
        move |app, p| {
            let b: BucketSnapshot = if body.is_empty() { Default::default() } else { json_body(&body)? };
            let t = app.own_tenant(p)?;
            // As an upload: the vault's shared lock while the snapshot's trees are written and it is saved.
            let _lock = app.base.lock(false, "server bucket snapshot", &|_| {})?;
            Ok(Reply::Json(json!(t.snapshot_bucket(&bucket, &b.tags)?)))
        },
    )
    .await
}
