//! `mvault server`, tokens, the audit log and `snapshot-bucket` on the local vault (tenants are `cmd::tenant`,
//! the same commands over a server `cmd::remote`).
//!
//! Admin commands work two ways: locally, with the vault's passphrase (how the first operator token is
//! made), and over a server with a token. Both go through the same functions of the server crate, so a
//! tenant made either way is the same tenant.

use crate::args::{AuditCommand, TokenCommand};
use crate::open::{audit_local_action, open};
use crate::print::*;
use crate::Global;
use clap::Args;
use mvault_core::Result;
use mvault_server::auth::{self, Role};
use mvault_server::{audit, registry};
use serde_json::{json, Value};
use std::path::PathBuf;

#[derive(Args)]
pub struct ServerArgs {
    /// Address to listen on (port 0 picks a free one; the URL is printed).
    #[arg(long, default_value = "127.0.0.1:8443", value_name = "ADDR")]
    pub listen: std::net::SocketAddr,
    /// TLS certificate (PEM). Without it and --tls-key, a self-signed one for localhost is made and kept in
    /// --state-dir; clients trust it with --tls-ca.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Where the self-signed certificate is kept.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Server config (TOML): a `[schedule]` of forget, prune, scrub, copy and snapshot-bucket jobs, and
    /// `[s3] keep_noncurrent` (see docs/API.md and docs/S3.md).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Also serve the S3 gateway (HTTPS, same certificate) on this address; keys come from
    /// `token create --s3`. Example: --s3-listen 127.0.0.1:9443
    #[arg(long, value_name = "ADDR")]
    pub s3_listen: Option<std::net::SocketAddr>,
}

#[derive(Args)]
pub struct SnapshotBucketArgs {
    /// The S3 bucket to freeze.
    pub bucket: String,
    /// The bucket's tenant (locally; over a server it is the token's).
    #[arg(long, default_value = "default")]
    pub tenant: String,
    /// Extra tags for the snapshot (it is always tagged bucket:<name>).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
}

pub fn server(global: &Global, args: ServerArgs) -> Result<i32> {
    let repo = open(global)?;
    let state_dir = args.state_dir.unwrap_or_else(|| {
        std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| ".".into()).join(".config/mvault/server")
    });
    let json = global.json;
    let config = match &args.config {
        Some(f) => mvault_server::schedule::load(f)?,
        None => Default::default(),
    };
    let opts = mvault_server::ServerOptions {
        config,
        listen: args.listen,
        s3_listen: args.s3_listen,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        state_dir,
        announce: Box::new(move |url, s3, cert| {
            if json {
                println!("{}", json!({ "listen": url, "s3": s3, "cert": cert }));
            } else {
                println!("mvault server listening on {url} (certificate {})", cert.display());
                if let Some(s3) = s3 {
                    println!("S3 gateway listening on {s3}");
                }
            }
            use std::io::Write;
            let _ = std::io::stdout().flush();
        }),
    };
    mvault_server::run(repo, opts)?;
    Ok(0)
}

pub fn token_local(global: &Global, command: TokenCommand) -> Result<i32> {
    let repo = open(global)?;
    let sys = repo.system()?;
    match command {
        TokenCommand::Create { role, tenant, ttl, label, s3 } => {
            let role: Role = role.parse()?;
            if let Some(t) = &tenant {
                registry::load(&sys, t)?;
            }
            let (v, rec) = auth::issue(&sys, tenant.as_deref(), role, ttl.map(|d| d.as_secs()), &label, s3)?;
            audit_local_action(&sys, "token.create", &format!("token {}", rec.id), tenant.as_deref())?;
            print_token(global, &v);
        }
        TokenCommand::List => {
            let v: Vec<Value> = auth::list(&sys)?.iter().map(auth::TokenRecord::public).collect();
            print_list(global, &Value::Array(v));
        }
        TokenCommand::Revoke { id } => {
            let mut rec = auth::load(&sys, &id)?;
            rec.revoked = true;
            auth::save(&sys, &rec)?;
            audit_local_action(&sys, "token.revoke", &format!("token {id}"), rec.tenant.as_deref())?;
            print_list(global, &json!([rec.public()]));
        }
    }
    Ok(0)
}

pub fn audit_local(global: &Global, command: AuditCommand) -> Result<i32> {
    let repo = open(global)?;
    let sys = repo.system()?;
    match command {
        AuditCommand::Show { tenant } => {
            print_audit(global, &audit::show(&sys, tenant.as_deref())?);
            Ok(0)
        }
        AuditCommand::Verify => Ok(report_verify(global, &json!(audit::verify(&sys)?))),
    }
}

/// `snapshot-bucket` on a vault: the bucket's records as the stores hold them (every change a gateway
/// acknowledged is there), frozen as a snapshot of the tenant.
pub fn snapshot_bucket_local(global: &Global, args: SnapshotBucketArgs) -> Result<i32> {
    let base = open(global)?;
    let repo = base.for_tenant(&args.tenant)?;
    let _lock = repo.lock(false, "snapshot-bucket", &|m| eprintln!("mvault: {m}"))?;
    let state = mvault_core::buckets::load(&repo)?;
    let (_, made, _) = mvault_core::snapshot_bucket(&repo, &state, &args.bucket, &args.tags)?;
    print_bucket_snapshot(global, &json!(made));
    Ok(0)
}
