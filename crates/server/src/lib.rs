//! `mvault server`: the vault behind an HTTPS API for many tenants (DESIGN.md section 8, docs/API.md).
//!
//! The server holds the master key (unlocked at start) and nothing else of its own: tenants, token hashes
//! and the audit log are sealed objects under `system/` on the stores, so any number of instances can
//! serve the same stores. Clients chunk and hash locally with their tenant's id key and upload only the
//! chunks the server lacks; the server checks each, encrypts it under the tenant's keys and packs it.

pub mod api;
pub mod audit;
pub mod auth;
pub mod frames;
pub mod limits;
pub mod metrics;
pub mod registry;
pub mod s3;
pub mod schedule;
pub mod tls;

use mvault_core::Repo;
use mvault_core::{Error, Result};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Largest request body (an upload batch): clients send batches of at most 32 MiB.
pub const MAX_BODY: usize = 96 << 20;
/// How long a token record is trusted from memory before it is read again (revocations by another
/// instance take effect within this time; this instance's own take effect at once).
const TOKEN_CACHE: Duration = Duration::from_secs(1);
/// Unknown token ids remembered at most.
const UNKNOWN_TOKENS: usize = 100_000;
/// How long a tenant's record (its limits) is trusted from memory: a limit set through one instance holds on
/// every other within this time, and a tenant deleted through one is gone from all.
const RECORD_CACHE: Duration = Duration::from_secs(1);

/// Told the server's https URL, the S3 gateway's (if it has one) and the certificate file clients should
/// trust, once both listen.
pub type Announce = Box<dyn FnOnce(&str, Option<&str>, &std::path::Path) + Send>;

pub struct ServerOptions {
    pub listen: SocketAddr,
    /// The S3 gateway's own listener (s3/), if any.
    pub s3_listen: Option<SocketAddr>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Where the self-signed certificate is kept between runs.
    pub state_dir: PathBuf,
    /// Called once the server listens.
    pub announce: Announce,
    /// Scheduled jobs (`--config FILE`, section `[schedule]`).
    pub config: schedule::Config,
}

/// One tenant as the server holds it: its repo (keys, index) and its registry record.
pub struct Tenant {
    pub repo: RwLock<Repo>,
    /// The registry record and when it was read (`App::tenant` reads it again after RECORD_CACHE).
    record: Mutex<(registry::TenantRecord, Instant)>,
    /// Uploads of a tenant run side by side (shared); a prune of its index and its deletion wait for them
    /// and hold them off (exclusive). The quota needs no lock: each write reserves its bytes in the catalog.
    pub writes: RwLock<()>,
    /// Snapshot commits of a tenant on this instance, one at a time (the max_snapshots check).
    pub commits: Mutex<()>,
    /// The tenant's S3 buckets, loaded on first use (s3/); every change is written before it is applied.
    pub s3: Mutex<Option<mvault_core::buckets::State>>,
    /// Multipart uploads in progress: what part 1 told about the file, for the later parts (s3/).
    pub s3_models: Mutex<HashMap<String, tokio::sync::watch::Sender<Option<s3::PartModel>>>>,
}

#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Usage {
    /// Stored bytes after dedup and compression (before redundancy).
    pub bytes: u64,
    pub chunks: u64,
}

impl Tenant {
    /// Stored bytes and chunks, from the catalog's counters (one query, whatever the tenant holds).
    pub fn usage(&self) -> Result<Usage> {
        let (bytes, chunks) = self.repo.read().expect("tenant repo").index_usage()?;
        Ok(Usage { bytes, chunks })
    }

    pub fn limits(&self) -> registry::Limits {
        self.record.lock().expect("record").0.limits.clone()
    }

    /// Hold `bytes` of the tenant's max_bytes for a write about to happen, against what is stored and what
    /// writers on every instance hold (one catalog transaction). No quota: nothing to hold (`None`).
    /// `repo` is the tenant's, as the caller holds it.
    pub fn reserve(
        &self,
        repo: &Repo,
        bytes: u64,
    ) -> Result<std::result::Result<Option<mvault_core::Reservation>, mvault_core::QuotaRefused>> {
        let Some(max) = self.limits().max_bytes else { return Ok(Ok(None)) };
        Ok(repo.reserve_quota(bytes, max)?.map(Some))
    }

    /// The registry record as this instance last read it.
    pub fn record(&self) -> registry::TenantRecord {
        self.record.lock().expect("record").0.clone()
    }

    /// Read the record again if it is older than RECORD_CACHE (another instance may have changed it).
    /// A store that cannot answer leaves the record as it was; a record gone means the tenant is. The lock
    /// is held across the read, so concurrent requests wait for one read instead of making their own.
    fn refresh(&self, sys: &Repo, name: &str) -> Result<()> {
        let mut held = self.record.lock().expect("record");
        if held.1.elapsed() < RECORD_CACHE {
            return Ok(());
        }
        match registry::load(sys, name) {
            Ok(record) => held.0 = record,
            Err(e @ Error::NotFound { .. }) => return Err(e),
            Err(_) => {}
        }
        held.1 = Instant::now();
        Ok(())
    }

    /// A record this instance has just saved.
    pub fn set_record(&self, record: registry::TenantRecord) {
        *self.record.lock().expect("record") = (record, Instant::now());
    }
}

pub struct App {
    pub base: Repo,
    pub sys: Repo,
    tenants: RwLock<HashMap<String, Arc<Tenant>>>,
    tokens: Mutex<HashMap<String, (auth::TokenRecord, Instant)>>,
    /// Token ids found in no record lately: asked again after TOKEN_CACHE, so a client sending unknown ids
    /// costs no store read per request.
    unknown_tokens: Mutex<HashMap<String, Instant>>,
    pub audit: audit::Chain,
    pub metrics: metrics::Metrics,
    pub jobs: schedule::JobStats,
    limiter: limits::RateLimiter,
    /// How long S3 versions are kept once overwritten or deleted, and incomplete multipart uploads
    /// (config `[s3] keep_noncurrent`, `abort_uploads_after`).
    pub s3_retention: (Duration, Duration),
}

impl App {
    pub fn new(base: Repo) -> Result<App> {
        let sys = base.system()?;
        let audit = audit::Chain::new("server", &sys)?;
        Ok(App {
            base,
            sys,
            tenants: RwLock::default(),
            tokens: Mutex::default(),
            unknown_tokens: Mutex::default(),
            audit,
            metrics: metrics::Metrics::default(),
            jobs: schedule::JobStats::default(),
            limiter: limits::RateLimiter::default(),
            s3_retention: (schedule::DEFAULT_KEEP_NONCURRENT, schedule::DEFAULT_KEEP_NONCURRENT),
        })
    }

    /// A tenant by name, loaded on first use. Unknown (or shredded) tenants are NotFound.
    pub fn tenant(&self, name: &str) -> Result<Arc<Tenant>> {
        let known = self.tenants.read().expect("tenants").get(name).cloned();
        if let Some(t) = known {
            if let Err(e) = t.refresh(&self.sys, name) {
                // Deleted through another instance.
                self.forget_tenant(name);
                return Err(e);
            }
            return Ok(t);
        }
        let record = registry::load(&self.sys, name)?;
        let repo = self.base.for_tenant(name)?;
        let t = Arc::new(Tenant {
            repo: RwLock::new(repo),
            record: Mutex::new((record, Instant::now())),
            writes: RwLock::new(()),
            commits: Mutex::new(()),
            s3: Mutex::new(None),
            s3_models: Mutex::default(),
        });
        Ok(self.tenants.write().expect("tenants").entry(name.to_string()).or_insert(t).clone())
    }

    fn forget_tenant(&self, name: &str) {
        self.tenants.write().expect("tenants").remove(name);
        self.tokens.lock().expect("tokens").retain(|_, (t, _)| t.tenant.as_deref() != Some(name));
    }

    fn token(&self, id: &str) -> Option<auth::TokenRecord> {
        if let Some((t, at)) = self.tokens.lock().expect("tokens").get(id) {
            if at.elapsed() < TOKEN_CACHE {
                return Some(t.clone());
            }
        }
        if self.unknown_tokens.lock().expect("unknown tokens").get(id).is_some_and(|at| at.elapsed() < TOKEN_CACHE) {
            return None;
        }
        match auth::load(&self.sys, id) {
            Ok(t) => {
                self.remember_token(t.clone());
                Some(t)
            }
            Err(e) => {
                if matches!(e, Error::NotFound { .. }) {
                    let mut unknown = self.unknown_tokens.lock().expect("unknown tokens");
                    // Bounded: a flood of fresh ids costs one store read each, never unbounded memory.
                    if unknown.len() >= UNKNOWN_TOKENS {
                        unknown.retain(|_, at| at.elapsed() < TOKEN_CACHE);
                        if unknown.len() >= UNKNOWN_TOKENS {
                            unknown.clear();
                        }
                    }
                    unknown.insert(id.to_string(), Instant::now());
                }
                None
            }
        }
    }

    fn remember_token(&self, token: auth::TokenRecord) {
        self.tokens.lock().expect("tokens").insert(token.id.clone(), (token, Instant::now()));
    }

    /// Gauges computed at scrape time: per-tenant usage and store health.
    fn render_gauges(&self, out: &mut String) {
        use std::fmt::Write;
        self.jobs.render(out);
        out.push_str("# HELP mvault_tenant_stored_bytes Stored bytes per tenant (after dedup and compression).\n");
        out.push_str("# TYPE mvault_tenant_stored_bytes gauge\n");
        // Copy the tenants out first: usage() takes each tenant's lock, and the map's must not wait on it.
        let tenants: Vec<(String, Arc<Tenant>)> =
            self.tenants.read().expect("tenants").iter().map(|(n, t)| (n.clone(), t.clone())).collect();
        for (name, t) in tenants {
            // A catalog that cannot answer leaves the tenant's line out rather than reporting 0.
            if let Ok(usage) = t.usage() {
                let _ = writeln!(out, "mvault_tenant_stored_bytes{{tenant=\"{name}\"}} {}", usage.bytes);
            }
        }
        out.push_str("# HELP mvault_store_up Whether a store answered (1) or is marked down (0).\n");
        out.push_str("# TYPE mvault_store_up gauge\n");
        for (i, s) in self.base.config.stores.iter().enumerate() {
            let up = self.base.stores().get(i).is_some_and(|st| st.exists("config").is_ok());
            let _ = writeln!(out, "mvault_store_up{{store=\"{}\"}} {}", s.id, up as u8);
        }
    }
}

/// Serve until SIGINT or SIGTERM; then stop accepting, let requests in flight (uploads included) finish,
/// and flush the audit log.
pub fn run(base: Repo, opts: ServerOptions) -> Result<()> {
    let mut app = App::new(base)?;
    app.s3_retention = opts.config.s3.retention()?;
    let app = Arc::new(app);
    let (config, cert_path) = tls::server_config(&opts)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("mvault-server")
        .enable_all()
        .build()
        .map_err(|e| Error::Usage(format!("start the server runtime: {e}")))?;
    let flusher = app.clone();
    let serving = app.clone();
    let serving_s3 = app.clone();
    let scheduling = app.clone();
    let result = rt.block_on(async move {
        let handle = axum_server::Handle::new();
        let router = api::router(serving).into_make_service_with_connect_info::<SocketAddr>();
        let tls = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(config));
        let server = listener(opts.listen, tls.clone()).handle(handle.clone()).serve(router);
        let server = tokio::spawn(server);
        let bound =
            handle.listening().await.ok_or_else(|| Error::Usage(format!("cannot listen on {}", opts.listen)))?;
        // The S3 gateway: its own listener, the same certificate, the same graceful stop.
        let s3_handle = axum_server::Handle::new();
        let s3_server = match opts.s3_listen {
            Some(addr) => {
                let svc = axum::Router::new()
                    .fallback_service(s3::service(serving_s3))
                    .into_make_service_with_connect_info::<SocketAddr>();
                let srv = listener(addr, tls).handle(s3_handle.clone()).serve(svc);
                let srv = tokio::spawn(srv);
                let b = s3_handle.listening().await.ok_or_else(|| Error::Usage(format!("cannot listen on {addr}")))?;
                Some((srv, format!("https://{b}")))
            }
            None => None,
        };
        (opts.announce)(&format!("https://{bound}"), s3_server.as_ref().map(|s| s.1.as_str()), &cert_path);
        schedule::start(scheduling, opts.config);
        // Audit records are flushed every second, and once more at the end.
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let a = flusher.clone();
                let _ = tokio::task::spawn_blocking(move || a.audit.flush(&a.sys)).await;
            }
        });
        shutdown_signal().await;
        handle.graceful_shutdown(Some(Duration::from_secs(60)));
        s3_handle.graceful_shutdown(Some(Duration::from_secs(60)));
        if let Some((srv, _)) = s3_server {
            srv.await
                .map_err(|e| Error::Usage(format!("S3 gateway task: {e}")))?
                .map_err(|e| Error::Usage(format!("S3 gateway: {e}")))?;
        }
        server
            .await
            .map_err(|e| Error::Usage(format!("server task: {e}")))?
            .map_err(|e| Error::Usage(format!("server: {e}")))?;
        Ok::<(), Error>(())
    });
    rt.shutdown_timeout(Duration::from_secs(5));
    if let Err(e) = app.audit.flush(&app.sys) {
        eprintln!("mvault server: audit records could not be written at shutdown: {e}");
    }
    result
}

/// A TLS listener whose connections send at once (TCP_NODELAY): without it a small answer's body waited on
/// the client's delayed ACK of its headers, and a GET of a small object took 23-36 ms against 1.6 ms for a
/// HEAD, whose answer is one write.
fn listener(
    addr: SocketAddr,
    tls: axum_server::tls_rustls::RustlsConfig,
) -> axum_server::Server<SocketAddr, axum_server::tls_rustls::RustlsAcceptor<axum_server::accept::NoDelayAcceptor>> {
    let acceptor =
        axum_server::tls_rustls::RustlsAcceptor::new(tls).acceptor(axum_server::accept::NoDelayAcceptor::new());
    axum_server::bind(addr).acceptor(acceptor)
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
