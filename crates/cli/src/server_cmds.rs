//! `mvault server`, tokens, tenants, the audit log, and remote mode (`--vault https://...`).
//!
//! Admin commands work two ways: locally, with the vault's passphrase (how the first operator token is
//! made), and over a server with a token. Both go through the same functions of the server crate, so a
//! tenant made either way is the same tenant.

use crate::commands::{open, print_ls, print_snapshots, restore_from, BackupArgs, RestoreArgs};
use crate::lifecycle_cmds::TenantCommand;
use crate::remote::{self, Client, RemoteSource};
use crate::{ui, Command, Global};
use clap::{Args, Subcommand};
use mvault_core::format::snapshot::Snapshot;
use mvault_core::ids::SnapshotId;
use mvault_core::{Error, Result};
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

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Make a token; it is printed once and only its hash is kept.
    Create {
        #[arg(long)]
        role: String,
        /// The tenant (not for operator tokens; an admin's tokens are for its own tenant).
        #[arg(long)]
        tenant: Option<String>,
        /// Expire after this long (e.g. 30d, 12h).
        #[arg(long, value_name = "DURATION")]
        ttl: Option<humantime::Duration>,
        #[arg(long, default_value = "")]
        label: String,
        /// An S3 access key (id and secret, shown once) for the S3 gateway instead of a bearer token.
        #[arg(long)]
        s3: bool,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token by id: it is refused from then on.
    Revoke { id: String },
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Print audit records, oldest first.
    Show {
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Check every chain of records end to end; exit 1 if anything was edited, removed or reordered.
    Verify,
}

#[derive(Args, Default)]
pub struct LimitArgs {
    /// Stored bytes after dedup and compression (e.g. 10GiB).
    #[arg(long, value_name = "SIZE")]
    pub max_bytes: Option<String>,
    #[arg(long, value_name = "N")]
    pub max_snapshots: Option<u64>,
    /// Requests per second, per token.
    #[arg(long, value_name = "N")]
    pub rps: Option<f64>,
    /// Bytes per second uploaded, per token (e.g. 50MiB).
    #[arg(long, value_name = "SIZE")]
    pub bps: Option<String>,
}

impl LimitArgs {
    fn limits(&self) -> Result<registry::Limits> {
        Ok(registry::Limits {
            max_bytes: self.max_bytes.as_deref().map(crate::heal_cmds::parse_size).transpose()?,
            max_snapshots: self.max_snapshots,
            requests_per_second: self.rps,
            bytes_per_second: self.bps.as_deref().map(crate::heal_cmds::parse_size).transpose()?,
        })
    }
}

pub fn server(g: &Global, a: ServerArgs) -> Result<i32> {
    let repo = open(g)?;
    let state_dir = a.state_dir.unwrap_or_else(|| {
        std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| ".".into()).join(".config/mvault/server")
    });
    let json = g.json;
    let config = match &a.config {
        Some(f) => mvault_server::schedule::load(f)?,
        None => Default::default(),
    };
    let opts = mvault_server::ServerOptions {
        config,
        listen: a.listen,
        s3_listen: a.s3_listen,
        tls_cert: a.tls_cert,
        tls_key: a.tls_key,
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

fn print_token(g: &Global, v: &Value) {
    if g.json {
        ui::print_json(v);
    } else if let Some(key) = v["access_key_id"].as_str().filter(|_| v.get("secret_access_key").is_some()) {
        println!("AWS_ACCESS_KEY_ID={key}");
        println!("AWS_SECRET_ACCESS_KEY={}", v["secret_access_key"].as_str().unwrap_or_default());
        eprintln!(
            "S3 key ({} of {}): the secret is shown once, keep it safe",
            v["role"].as_str().unwrap_or_default(),
            v["tenant"].as_str().unwrap_or_default()
        );
    } else {
        println!("{}", v["token"].as_str().unwrap_or_default());
        eprintln!(
            "token {} ({} of {}): shown once, keep it safe; use it as MVAULT_TOKEN",
            v["id"].as_str().unwrap_or_default(),
            v["role"].as_str().unwrap_or_default(),
            v["tenant"].as_str().unwrap_or("the system")
        );
    }
}

fn print_list(g: &Global, v: &Value) {
    if g.json {
        ui::print_json(v);
    } else {
        for item in v.as_array().into_iter().flatten() {
            println!("{item}");
        }
    }
}

/// A local admin action goes into the audit log too, as a chain of its own.
fn audit_local_action(sys: &mvault_core::Repo, action: &str, target: &str, tenant: Option<&str>) -> Result<()> {
    let chain = audit::Chain::new("cli");
    chain.append(audit::Record {
        action: action.into(),
        target: target.into(),
        tenant: tenant.map(str::to_string),
        client: format!("cli@{}", mvault_core::hostname()),
        result: 0,
        ..Default::default()
    });
    chain.flush(sys).map(|_| ())
}

pub fn token_local(g: &Global, c: TokenCommand) -> Result<i32> {
    let repo = open(g)?;
    let sys = repo.system()?;
    match c {
        TokenCommand::Create { role, tenant, ttl, label, s3 } => {
            let role: Role = role.parse()?;
            if let Some(t) = &tenant {
                registry::load(&sys, t)?;
            }
            let (v, rec) = auth::issue(&sys, tenant.as_deref(), role, ttl.map(|d| d.as_secs()), &label, s3)?;
            audit_local_action(&sys, "token.create", &format!("token {}", rec.id), tenant.as_deref())?;
            print_token(g, &v);
        }
        TokenCommand::List => {
            let v: Vec<Value> = auth::list(&sys)?.iter().map(auth::TokenRecord::public).collect();
            print_list(g, &Value::Array(v));
        }
        TokenCommand::Revoke { id } => {
            let mut rec = auth::load(&sys, &id)?;
            rec.revoked = true;
            auth::save(&sys, &rec)?;
            audit_local_action(&sys, "token.revoke", &format!("token {id}"), rec.tenant.as_deref())?;
            print_list(g, &json!([rec.public()]));
        }
    }
    Ok(0)
}

pub fn tenant_local(g: &Global, c: TenantCommand) -> Result<i32> {
    let repo = open(g)?;
    let sys = repo.system()?;
    let v = match c {
        TenantCommand::Create { name, limits } => {
            let rec = registry::create(&repo, &sys, &name, limits.limits()?)?;
            audit_local_action(&sys, "tenant.create", &format!("tenant {name}"), Some(&name))?;
            json!(rec)
        }
        TenantCommand::List => json!(registry::list(&sys)?),
        TenantCommand::Limits { name, limits } => {
            let mut rec = registry::load(&sys, &name)?;
            rec.limits = limits.limits()?;
            registry::save(&sys, &rec)?;
            audit_local_action(&sys, "tenant.limits", &format!("tenant {name}"), Some(&name))?;
            json!(rec)
        }
        TenantCommand::Delete { name, shred } => {
            if !shred {
                return Err(Error::Usage("deleting a tenant destroys its keys and data: add --shred".into()));
            }
            let (k, o) = registry::shred(&repo, &sys, &name)?;
            audit_local_action(&sys, "tenant.delete", &format!("tenant {name}"), Some(&name))?;
            json!({ "tenant": name, "key_objects_deleted": k, "objects_deleted": o })
        }
        TenantCommand::Rekey { .. } => unreachable!("rekey is handled by the lifecycle commands"),
    };
    print_list(g, &if v.is_array() { v } else { json!([v]) });
    Ok(0)
}

fn print_audit(g: &Global, recs: &[(String, audit::Record)]) {
    if g.json {
        ui::print_json(&recs.iter().map(|(c, r)| json!({"chain": c, "record": r})).collect::<Vec<_>>());
    } else {
        for (_, r) in recs {
            println!(
                "{} {:<16} {:<10} {:<16} {:<40} {} {}",
                r.time,
                r.action,
                r.tenant.as_deref().unwrap_or("-"),
                r.token.as_deref().unwrap_or("-"),
                r.target,
                r.result,
                r.detail
            );
        }
    }
}

fn report_verify(g: &Global, rep: &Value) -> i32 {
    let problems = rep["problems"].as_array().map(Vec::len).unwrap_or(0);
    if g.json {
        ui::print_json(rep);
    } else {
        for p in rep["problems"].as_array().into_iter().flatten() {
            println!("problem: {}", p.as_str().unwrap_or_default());
        }
        println!("{} chains, {} records, {problems} problems", rep["chains"], rep["records"]);
    }
    if problems == 0 {
        0
    } else {
        1
    }
}

pub fn audit_local(g: &Global, c: AuditCommand) -> Result<i32> {
    let repo = open(g)?;
    let sys = repo.system()?;
    match c {
        AuditCommand::Show { tenant } => {
            print_audit(g, &audit::show(&sys, tenant.as_deref())?);
            Ok(0)
        }
        AuditCommand::Verify => Ok(report_verify(g, &json!(audit::verify(&sys)?))),
    }
}

fn snapshot_of(v: &Value) -> Result<(SnapshotId, Snapshot)> {
    let id = SnapshotId::from_hex(v["id"].as_str().unwrap_or_default())?;
    let s: Snapshot =
        serde_json::from_value(v.clone()).map_err(|e| Error::malformed("snapshot from the server", e.to_string()))?;
    Ok((id, s))
}

/// Remote mode: the commands that make sense against a server, over its API.
pub fn remote(g: &Global, url: &str, cmd: Command) -> Result<i32> {
    let client = Client::connect(url, g.tls_ca.as_deref())?;
    match cmd {
        Command::Backup(a) => remote_backup(g, &client, a),
        Command::Snapshots => {
            let all: Vec<(SnapshotId, Snapshot)> =
                client.snapshots()?.iter().map(snapshot_of).collect::<Result<_>>()?;
            print_snapshots(g, &all);
            Ok(0)
        }
        Command::Ls(a) => {
            let (_, snap) = snapshot_of(&client.snapshot(&a.snapshot)?)?;
            let src = RemoteSource::new(&client)?;
            print_ls(g, &src, &snap.tree_id()?, a)
        }
        Command::Restore(a) => remote_restore(g, &client, a),
        Command::Diff(a) => {
            let (_, sa) = snapshot_of(&client.snapshot(&a.snapshot_a)?)?;
            let (_, sb) = snapshot_of(&client.snapshot(&a.snapshot_b)?)?;
            let mut src = RemoteSource::new(&client)?;
            src.prefetch_lengths(&sa.tree_id()?)?;
            src.prefetch_lengths(&sb.tree_id()?)?;
            crate::model_cmds::print_diff(g, &src, &sa, &sb, a)
        }
        Command::Forget(a) => {
            let policy = a.keep_last + a.keep_hourly + a.keep_daily + a.keep_weekly + a.keep_monthly + a.keep_yearly
                > 0
                || a.keep_within.is_some()
                || !a.keep_tag.is_empty();
            if policy || a.prune || a.dry_run || a.snapshots.is_empty() {
                return Err(Error::Usage(
                    "against a server, forget takes snapshot ids only (retention policies run locally)".into(),
                ));
            }
            let v = client.post("/v1/snapshots/forget", &json!({ "ids": a.snapshots }))?;
            if g.json {
                ui::print_json(&v);
            } else {
                for id in v["removed"].as_array().into_iter().flatten() {
                    println!("removed snapshot {}", id.as_str().unwrap_or_default());
                }
                for id in v["refused_locked"].as_array().into_iter().flatten() {
                    println!("kept locked snapshot {}", id.as_str().unwrap_or_default());
                }
            }
            Ok(0)
        }
        Command::Token(c) => {
            match c {
                TokenCommand::Create { role, tenant, ttl, label, s3 } => {
                    let body = json!({
                        "role": role, "tenant": tenant, "ttl": ttl.map(|d| d.as_secs()), "label": label, "s3": s3,
                    });
                    print_token(g, &client.post("/v1/tokens", &body)?);
                }
                TokenCommand::List => print_list(g, &client.get("/v1/tokens")?),
                TokenCommand::Revoke { id } => print_list(g, &json!([client.delete(&format!("/v1/tokens/{id}"))?])),
            }
            Ok(0)
        }
        Command::SnapshotBucket(a) => {
            let v = client.post(&format!("/v1/buckets/{}/snapshot", a.bucket), &json!({ "tags": a.tags }))?;
            print_bucket_snapshot(g, &v);
            Ok(0)
        }
        Command::Tenant(c) => {
            let v = match c {
                TenantCommand::Create { name, limits } => {
                    client.post("/v1/tenants", &json!({ "name": name, "limits": limits.limits()? }))?
                }
                TenantCommand::List => client.get("/v1/tenants")?,
                TenantCommand::Limits { name, limits } => {
                    client.put(&format!("/v1/tenants/{name}/limits"), &json!(limits.limits()?))?
                }
                TenantCommand::Delete { name, shred } => {
                    if !shred {
                        return Err(Error::Usage("deleting a tenant destroys its keys and data: add --shred".into()));
                    }
                    client.delete(&format!("/v1/tenants/{name}?shred=true"))?
                }
                TenantCommand::Rekey { .. } => {
                    return Err(Error::Usage("tenant rekey runs locally, with the vault's passphrase".into()))
                }
            };
            print_list(g, &if v.is_array() { v } else { json!([v]) });
            Ok(0)
        }
        Command::Audit(c) => match c {
            AuditCommand::Show { tenant } => {
                let path = match tenant {
                    Some(t) => format!("/v1/audit?tenant={t}"),
                    None => "/v1/audit".into(),
                };
                let v = client.get(&path)?;
                let recs: Vec<(String, audit::Record)> = v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|x| {
                        Some((x["chain"].as_str()?.to_string(), serde_json::from_value(x["record"].clone()).ok()?))
                    })
                    .collect();
                print_audit(g, &recs);
                Ok(0)
            }
            AuditCommand::Verify => Ok(report_verify(g, &client.get("/v1/audit/verify")?)),
        },
        _ => Err(Error::Usage(
            "this command works on a vault, not over a server: give --vault a directory or store URL".into(),
        )),
    }
}

fn remote_backup(g: &Global, client: &Client, a: BackupArgs) -> Result<i32> {
    if a.lock_for.is_some() || a.lock_until.is_some() || a.base.is_some() {
        return Err(Error::Usage("--lock-for, --lock-until and --base are not available over a server yet".into()));
    }
    let warn = |e: &Error| {
        if !g.quiet {
            eprintln!("mvault: warning: {e}");
        }
    };
    let r = remote::backup(client, &a.paths, &a.tags, a.host.clone(), &warn)?;
    if g.json {
        ui::print_json(&r);
    } else {
        println!(
            "snapshot {} saved: {} files ({}), {} of {} chunks sent ({}) in {:.1}s",
            &r.snapshot[..8.min(r.snapshot.len())],
            r.summary.files,
            ui::size(r.summary.bytes),
            r.chunks_sent,
            r.chunks_read,
            ui::size(r.bytes_sent),
            r.summary.seconds
        );
    }
    Ok(0)
}

fn remote_restore(g: &Global, client: &Client, a: RestoreArgs) -> Result<i32> {
    let (id, snap) = snapshot_of(&client.snapshot(&a.snapshot)?)?;
    let mut src = RemoteSource::new(client)?;
    src.prefetch_lengths(&snap.tree_id()?)?;
    restore_from(g, &src, &id, &snap, a)
}

/// `snapshot-bucket` on a vault: the bucket's records as the stores hold them (every change a gateway
/// acknowledged is there), frozen as a snapshot of the tenant.
pub fn snapshot_bucket_local(g: &Global, a: SnapshotBucketArgs) -> Result<i32> {
    let base = open(g)?;
    let repo = base.for_tenant(&a.tenant)?;
    let _lock = repo.lock(false, "snapshot-bucket", &|m| eprintln!("mvault: {m}"))?;
    let state = mvault_core::buckets::load(&repo)?;
    let (_, made, _) = mvault_core::snapshot_bucket(&repo, &state, &a.bucket, &a.tags)?;
    print_bucket_snapshot(g, &json!(made));
    Ok(0)
}

fn print_bucket_snapshot(g: &Global, v: &Value) {
    if g.json {
        ui::print_json(v);
        return;
    }
    println!(
        "snapshot {} of bucket {}: {} objects, {} bytes",
        v["id"].as_str().unwrap_or_default(),
        v["bucket"].as_str().unwrap_or_default(),
        v["objects"],
        v["bytes"]
    );
    for k in v["skipped"].as_array().into_iter().flatten() {
        eprintln!("mvault: warning: key {k} cannot be a path in a file tree; left out of the snapshot");
    }
}
