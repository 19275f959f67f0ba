//! Printing shared by local and remote commands: snapshot lists, tree listings, restores, diffs, tokens,
//! audit records, bucket snapshots (human text, or JSON with `--json`).

use crate::args::{DiffArgs, LsArgs, RestoreArgs};
use crate::{ui, Global};
use mvault_core::diff::{self, TensorStatus};
use mvault_core::format::tree::NodeKind;
use mvault_core::restore::{self, RestoreOptions};
use mvault_core::{Error, Result};
use mvault_server::audit;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;

/// The snapshot list, as text or JSON (local and remote mode print the same).
pub fn print_snapshots(
    global: &Global,
    all: &[(mvault_core::ids::SnapshotId, mvault_core::format::snapshot::Snapshot)],
) {
    if global.json {
        let v: Vec<_> = all
            .iter()
            .map(|(id, s)| {
                json!({ "id": id.to_hex(), "time": s.time, "host": s.host, "tags": s.tags, "paths": s.paths,
                        "tree": s.tree, "parent": s.parent, "locked_until": s.locked_until, "summary": s.summary })
            })
            .collect();
        ui::print_json(&v);
    } else {
        println!("{:<10} {:<20} {:<16} {:>10} {:>8}  paths", "id", "time", "host", "size", "files");
        for (id, s) in all {
            let time: String = s.time.chars().take(19).collect::<String>().replace('T', " ");
            println!(
                "{:<10} {:<20} {:<16} {:>10} {:>8}  {}",
                &id.to_hex()[..8],
                time,
                s.host,
                ui::size(s.summary.bytes),
                s.summary.files,
                s.paths.join(" ")
            );
        }
        println!("{} snapshots", all.len());
    }
}

pub fn mode_string(kind: &NodeKind, mode: u32) -> String {
    let t = match kind {
        NodeKind::Dir { .. } => 'd',
        NodeKind::Symlink { .. } => 'l',
        NodeKind::File { .. } => '-',
    };
    let mut s = String::from(t);
    for (i, c) in "rwxrwxrwx".chars().enumerate() {
        s.push(if mode & (1 << (8 - i)) != 0 { c } else { '-' });
    }
    s
}

/// List a snapshot's tree from any blob source (the vault, or a server).
pub fn print_ls(
    global: &Global,
    src: &dyn mvault_core::BlobSource,
    root: &mvault_core::ids::ChunkId,
    args: LsArgs,
) -> Result<i32> {
    let entries = restore::list(src, root)?;
    let prefix = args.path.as_deref().map(|p| p.trim_end_matches('/').as_bytes().to_vec());
    let under = |p: &[u8]| match &prefix {
        None => true,
        Some(x) => p == x.as_slice() || (p.starts_with(x) && p.get(x.len()) == Some(&b'/')),
    };
    let mut out = Vec::new();
    for (path, n) in entries.iter().filter(|(p, _)| under(p)) {
        let p = String::from_utf8_lossy(path).into_owned();
        let t = humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(n.mtime_sec.max(0) as u64),
        )
        .to_string();
        if global.json {
            let kind = match &n.kind {
                NodeKind::Dir { .. } => "dir",
                NodeKind::File { .. } => "file",
                NodeKind::Symlink { .. } => "symlink",
            };
            let target = match &n.kind {
                NodeKind::Symlink { target } => Some(String::from_utf8_lossy(target).into_owned()),
                _ => None,
            };
            out.push(json!({ "path": p, "type": kind, "mode": n.mode & 0o7777, "size": n.size, "mtime": t, "target": target }));
        } else {
            let link = match &n.kind {
                NodeKind::Symlink { target } => format!(" -> {}", String::from_utf8_lossy(target)),
                _ => String::new(),
            };
            println!("{} {:>12} {} {}{}", mode_string(&n.kind, n.mode), n.size, &t[..19].replace('T', " "), p, link);
        }
    }
    if global.json {
        ui::print_json(&out);
    }
    if prefix.is_some() && !entries.iter().any(|(p, _)| under(p)) {
        return Err(Error::not_found(format!("{} in snapshot {}", args.path.unwrap_or_default(), args.snapshot)));
    }
    Ok(0)
}

/// Restore a snapshot from any blob source (the vault, or a server), with progress and the same report.
pub fn restore_from(
    global: &Global,
    src: &dyn mvault_core::BlobSource,
    id: &mvault_core::ids::SnapshotId,
    snap: &mvault_core::format::snapshot::Snapshot,
    args: RestoreArgs,
) -> Result<i32> {
    let total = snap.summary.bytes;
    let opts = RestoreOptions {
        target: args.target.clone(),
        include: args.include,
        verify: args.verify,
        threads: 0,
        sparse: args.sparse,
        no_sync: args.no_sync,
    };
    let progress = restore::Progress::default();
    let pb = ui::bar(
        Some(total),
        "{spinner} restoring [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        global.quiet || global.json,
    );
    let summary = ui::with_progress(
        &pb,
        |pb| pb.set_position(progress.bytes.load(Ordering::Relaxed)),
        || restore::restore(src, &snap.tree_id()?, &opts, &progress),
    )?;
    if global.json {
        ui::print_json(&json!({ "snapshot_id": id.to_hex(), "target": args.target, "summary": summary }));
    } else {
        println!(
            "restored snapshot {} to {}: {} files ({}), {} dirs, {} symlinks in {:.1}s{}",
            &id.to_hex()[..8],
            args.target.display(),
            summary.files,
            ui::size(summary.bytes),
            summary.dirs,
            summary.symlinks,
            summary.seconds,
            if args.verify { "; every file verified" } else { "" }
        );
    }
    Ok(0)
}

pub fn ratio(bytes: u64, stored: f64) -> String {
    if stored <= 0.0 {
        "-".into()
    } else {
        format!("{:.3}x", bytes as f64 / stored)
    }
}

/// Compare two snapshots read from any blob source (the vault, or a server) and print the report.
pub fn print_diff(
    global: &Global,
    repo: &dyn mvault_core::BlobSource,
    sa: &mvault_core::format::snapshot::Snapshot,
    sb: &mvault_core::format::snapshot::Snapshot,
    args: DiffArgs,
) -> Result<i32> {
    // Snapshots of one directory each (checkpoints step-1/, step-2/) compare relative to that directory.
    let bases = match (sa.paths.as_slice(), sb.paths.as_slice()) {
        ([pa], [pb]) if pa != pb => Some((pa.as_str(), pb.as_str())),
        _ => None,
    };
    let r = diff::diff(repo, &sa.tree_id()?, &sb.tree_id()?, bases, args.tensors)?;
    if let (Some((pa, pb)), false) = (bases, global.json) {
        println!("comparing {pa} with {pb}");
    }
    if global.json {
        ui::print_json(&r);
        return Ok(0);
    }
    for (mark, list) in [("+", &r.added), ("-", &r.removed), ("M", &r.modified)] {
        for p in list {
            println!("{mark}    {p}");
        }
    }
    if args.tensors && !r.tensors.is_empty() {
        println!();
        println!("{:<9} {:<56} {:>6} {:>14} {:>10}", "tensor", "name", "dtype", "max |change|", "changed");
        for t in &r.tensors {
            let status = match t.status {
                TensorStatus::Added => "added",
                TensorStatus::Removed => "removed",
                TensorStatus::Changed => "changed",
                TensorStatus::Unchanged => "same",
            };
            let max = t.max_abs_change.map(|m| format!("{m:.3e}")).unwrap_or_default();
            let frac = t.changed_fraction.map(|f| format!("{:.2}%", f * 100.0)).unwrap_or_default();
            println!("{:<9} {:<56} {:>6} {:>14} {:>10}", status, format!("{}:{}", t.file, t.name), t.dtype, max, frac);
        }
        let count = |s: TensorStatus| r.tensors.iter().filter(|t| t.status == s).count();
        println!(
            "tensors: {} changed, {} unchanged, {} added, {} removed",
            count(TensorStatus::Changed),
            count(TensorStatus::Unchanged),
            count(TensorStatus::Added),
            count(TensorStatus::Removed)
        );
    }
    println!(
        "files: {} added, {} removed, {} modified, {} unchanged; stored only by {}: {}, only by {}: {}",
        r.added.len(),
        r.removed.len(),
        r.modified.len(),
        r.unchanged_files,
        args.snapshot_a,
        ui::size(r.a_only_bytes),
        args.snapshot_b,
        ui::size(r.b_only_bytes)
    );
    Ok(0)
}

pub fn print_token(global: &Global, value: &Value) {
    if global.json {
        ui::print_json(value);
    } else if let Some(key) = value["access_key_id"].as_str().filter(|_| value.get("secret_access_key").is_some()) {
        println!("AWS_ACCESS_KEY_ID={key}");
        println!("AWS_SECRET_ACCESS_KEY={}", value["secret_access_key"].as_str().unwrap_or_default());
        eprintln!(
            "S3 key ({} of {}): the secret is shown once, keep it safe",
            value["role"].as_str().unwrap_or_default(),
            value["tenant"].as_str().unwrap_or_default()
        );
    } else {
        println!("{}", value["token"].as_str().unwrap_or_default());
        eprintln!(
            "token {} ({} of {}): shown once, keep it safe; use it as MVAULT_TOKEN",
            value["id"].as_str().unwrap_or_default(),
            value["role"].as_str().unwrap_or_default(),
            value["tenant"].as_str().unwrap_or("the system")
        );
    }
}

pub fn print_list(global: &Global, value: &Value) {
    if global.json {
        ui::print_json(value);
    } else {
        for item in value.as_array().into_iter().flatten() {
            println!("{item}");
        }
    }
}

pub fn print_audit(global: &Global, recs: &[(String, audit::Record)]) {
    if global.json {
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

pub fn report_verify(global: &Global, rep: &Value) -> i32 {
    let problems = rep["problems"].as_array().map(Vec::len).unwrap_or(0);
    if global.json {
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

pub fn print_bucket_snapshot(global: &Global, value: &Value) {
    if global.json {
        ui::print_json(value);
        return;
    }
    println!(
        "snapshot {} of bucket {}: {} objects, {} bytes",
        value["id"].as_str().unwrap_or_default(),
        value["bucket"].as_str().unwrap_or_default(),
        value["objects"],
        value["bytes"]
    );
    for k in value["skipped"].as_array().into_iter().flatten() {
        eprintln!("mvault: warning: key {k} cannot be a path in a file tree; left out of the snapshot");
    }
}
