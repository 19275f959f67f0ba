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

mod access;
mod body;
mod checksums;
mod conditions;
mod errors;
mod listing;
mod ops;
mod parts;
mod refuse;
mod state;
mod trace;
mod write;

pub use access::{Access, Keys};
pub use parts::PartModel;
pub use trace::{Trace, Traced};

use crate::auth::TokenRecord;
use crate::{App, Tenant};
use errors::{no_bucket, s3err};
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Result};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use trace::TraceSlot;

/// S3's largest single PUT (and part).
const MAX_PUT: i64 = 5 << 30;
/// S3's smallest part, but for the last.
const MIN_PART: u64 = 5 << 20;
const MAX_PARTS: i32 = 10_000;
const DEFAULT_MAX_KEYS: usize = 1000;

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

/// Run store work on a blocking thread (the core is synchronous).
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> S3Result<T> + Send + 'static) -> S3Result<T> {
    tokio::task::spawn_blocking(work).await.map_err(|_| s3_error!(InternalError, "the operation failed"))?
}

/// The S3 operations.
pub struct Gateway(pub Arc<App>);

/// The caller's token record and tenant (the access check has already passed).
struct Caller {
    pub(super) token: TokenRecord,
    pub(super) tenant: Arc<Tenant>,
    pub(super) trace: Option<TraceSlot>,
}

impl Caller {
    /// The tenant the caller's key belongs to (listings name it as the owner).
    fn tenant_name(&self) -> String {
        self.token.tenant.clone().unwrap_or_default()
    }
}

impl Gateway {
    /// NoSuchBucket unless the caller's tenant has this bucket.
    async fn require_bucket(&self, caller: &Caller, name: &str) -> S3Result<()> {
        let (t, name) = (caller.tenant.clone(), name.to_string());
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

/// The S3 service with our keys, access checks and tracing.
pub fn service(app: Arc<App>) -> Traced {
    let mut b = s3s::service::S3ServiceBuilder::new(Gateway(app.clone()));
    b.set_auth(Keys(app.clone()));
    b.set_access(Access(app.clone()));
    Traced { svc: b.build(), app }
}
