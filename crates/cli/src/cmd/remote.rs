//! Remote mode: `--vault https://HOST:PORT` with `MVAULT_TOKEN`. Each command goes to the server through
//! `client::Client`; what comes back is printed by the same `print` functions as a local command's.

use crate::args::{AuditCommand, BackupArgs, RestoreArgs, TenantCommand, TokenCommand};
use crate::client::{self, Client, RemoteSource};
use crate::print::*;
use crate::{ui, Command, Global};
use mvault_core::format::snapshot::Snapshot;
use mvault_core::ids::SnapshotId;
use mvault_core::{Error, Result};
use mvault_server::audit;
use serde_json::{json, Value};

fn snapshot_of(value: &Value) -> Result<(SnapshotId, Snapshot)> {
    let id = SnapshotId::from_hex(value["id"].as_str().unwrap_or_default())?;
    let s: Snapshot = serde_json::from_value(value.clone())
        .map_err(|e| Error::malformed("snapshot from the server", e.to_string()))?;
    Ok((id, s))
}

/// Remote mode: the commands that make sense against a server, over its API.
pub fn run(global: &Global, url: &str, cmd: Command) -> Result<i32> {
    let client = Client::connect(url, global.tls_ca.as_deref())?;
    match cmd {
        Command::Backup(a) => remote_backup(global, &client, a),
        Command::Snapshots => {
            let all: Vec<(SnapshotId, Snapshot)> =
                client.snapshots()?.iter().map(snapshot_of).collect::<Result<_>>()?;
            print_snapshots(global, &all);
            Ok(0)
        }
        Command::Ls(a) => {
            let (_, snap) = snapshot_of(&client.snapshot(&a.snapshot)?)?;
            let src = RemoteSource::new(&client)?;
            print_ls(global, &src, &snap.tree_id()?, a)
        }
        Command::Restore(a) => remote_restore(global, &client, a),
        Command::Diff(a) => {
            let (_, sa) = snapshot_of(&client.snapshot(&a.snapshot_a)?)?;
            let (_, sb) = snapshot_of(&client.snapshot(&a.snapshot_b)?)?;
            let mut src = RemoteSource::new(&client)?;
            src.prefetch_lengths(&sa.tree_id()?)?;
            src.prefetch_lengths(&sb.tree_id()?)?;
            crate::print::print_diff(global, &src, &sa, &sb, a)
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
            if global.json {
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
                    print_token(global, &client.post("/v1/tokens", &body)?);
                }
                TokenCommand::List => print_list(global, &client.get("/v1/tokens")?),
                TokenCommand::Revoke { id } => {
                    print_list(global, &json!([client.delete(&format!("/v1/tokens/{id}"))?]))
                }
            }
            Ok(0)
        }
        Command::SnapshotBucket(a) => {
            let v = client.post(&format!("/v1/buckets/{}/snapshot", a.bucket), &json!({ "tags": a.tags }))?;
            print_bucket_snapshot(global, &v);
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
            print_list(global, &if v.is_array() { v } else { json!([v]) });
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
                print_audit(global, &recs);
                Ok(0)
            }
            AuditCommand::Verify => Ok(report_verify(global, &client.get("/v1/audit/verify")?)),
        },
        _ => Err(Error::Usage(
            "this command works on a vault, not over a server: give --vault a directory or store URL".into(),
        )),
    }
}

fn remote_backup(global: &Global, client: &Client, args: BackupArgs) -> Result<i32> {
    if args.lock_for.is_some() || args.lock_until.is_some() || args.base.is_some() {
        return Err(Error::Usage("--lock-for, --lock-until and --base are not available over a server yet".into()));
    }
    let warn = |e: &Error| {
        if !global.quiet {
            eprintln!("mvault: warning: {e}");
        }
    };
    let r = client::backup(client, &args.paths, &args.tags, args.host.clone(), &warn)?;
    if global.json {
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

fn remote_restore(global: &Global, client: &Client, args: RestoreArgs) -> Result<i32> {
    let (id, snap) = snapshot_of(&client.snapshot(&args.snapshot)?)?;
    let mut src = RemoteSource::new(client)?;
    src.prefetch_lengths(&snap.tree_id()?)?;
    restore_from(global, &src, &id, &snap, args)
}
