//! Lifecycle commands: forget, prune, drill, copy and watch.

use crate::open::{open, stale_reporter};
use crate::{ui, Global};
use clap::Args;
use mvault_core::prune::{self, ForgetOptions, GroupBy, PruneOptions};
use mvault_core::retention::Policy;
use mvault_core::{Error, Result};
use serde_json::json;
use std::path::PathBuf;

#[derive(Args)]
pub struct ForgetArgs {
    /// Snapshots to remove, by id prefix (locked ones are refused).
    pub snapshots: Vec<String>,
    /// Keep the N newest snapshots.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_last: usize,
    /// Keep the newest snapshot of each of the N newest hours that have one.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_hourly: usize,
    /// Keep the newest snapshot of each of the N newest days (UTC).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_daily: usize,
    /// Keep the newest snapshot of each of the N newest ISO weeks.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_weekly: usize,
    /// Keep the newest snapshot of each of the N newest months.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_monthly: usize,
    /// Keep the newest snapshot of each of the N newest years.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_yearly: usize,
    /// Keep every snapshot taken within this long of the group's newest (e.g. 14d).
    #[arg(long, value_name = "DURATION")]
    pub keep_within: Option<humantime::Duration>,
    /// Keep every snapshot with this tag (e.g. release=1); repeatable.
    #[arg(long, value_name = "TAG")]
    pub keep_tag: Vec<String>,
    /// Apply the policy separately to each group of snapshots sharing these: host, paths, tags.
    #[arg(long, value_name = "KEYS", default_value = "host,paths")]
    pub group_by: String,
    /// Run `prune` afterwards.
    #[arg(long)]
    pub prune: bool,
    /// Show what would be removed, remove nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args)]
pub struct PruneArgs {
    /// Show the plan and the space it would free, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Repack a pack when at least this share of it is unused (default 50%).
    #[arg(long, value_name = "P%", default_value = "50%")]
    pub repack_unused: String,
}

pub fn forget(global: &Global, args: ForgetArgs) -> Result<i32> {
    let policy = Policy {
        last: args.keep_last,
        hourly: args.keep_hourly,
        daily: args.keep_daily,
        weekly: args.keep_weekly,
        monthly: args.keep_monthly,
        yearly: args.keep_yearly,
        within: args.keep_within.map(Into::into),
        tags: args.keep_tag.clone(),
    };
    let opts = ForgetOptions {
        policy,
        ids: args.snapshots.clone(),
        group_by: GroupBy::parse(&args.group_by)?,
        dry_run: args.dry_run,
    };
    let repo = open(global)?;
    let report = {
        let _lock = repo.lock(false, "forget", &stale_reporter(global))?;
        prune::forget(&repo, &opts)?
    };
    let pruned = if args.prune && !args.dry_run {
        Some(prune::prune(&repo, &PruneOptions::default(), &stale_reporter(global))?)
    } else {
        None
    };
    if global.json {
        ui::print_json(&json!({ "forget": report, "prune": pruned }));
    } else {
        let mut group = None;
        for d in &report.decisions {
            if group.as_ref() != Some(&d.group) {
                println!("group {}:", if d.group.is_empty() { "(all)" } else { &d.group });
                group = Some(d.group.clone());
            }
            println!("  {} {}  {}", if d.keep { "keep  " } else { "remove" }, &d.id[..8], d.reasons.join(", "));
        }
        let verb = if args.dry_run { "would remove" } else { "removed" };
        println!("{verb} {} snapshot(s)", report.removed.len());
        if let Some(p) = &pruned {
            print_plan(p);
        }
    }
    if !report.refused_locked.is_empty() {
        eprintln!("mvault: error: locked snapshots cannot be forgotten: {}", report.refused_locked.join(", "));
        return Ok(1);
    }
    Ok(0)
}

fn print_plan(plan: &prune::PrunePlan) {
    let verb = if plan.dry_run { "would" } else { "did" };
    println!(
        "prune ({verb}): {} packs; delete {} unused and {} unindexed, repack {} ({} live moved); {} of garbage blobs and {} of shards freed; {} live kept, {} garbage left in packs below the threshold; {} index files replaced; {} temporaries ({}) and {} stale locks removed; {:.1}s",
        plan.packs,
        plan.packs_to_delete,
        plan.packs_unindexed,
        plan.packs_to_repack,
        ui::size(plan.live_bytes_repacked),
        ui::size(plan.bytes_freed),
        ui::size(plan.stored_bytes_freed),
        ui::size(plan.live_bytes),
        ui::size(plan.dead_bytes_kept),
        plan.index_files_replaced,
        plan.temporaries_removed,
        ui::size(plan.temporary_bytes_removed),
        plan.stale_locks_removed,
        plan.seconds
    );
}

#[derive(Args)]
pub struct UnlockArgs {
    /// Remove every lock, live ones too, after saying whose each is. Only when you know their processes are
    /// gone (a host that died less than 15 minutes ago): a live prune or backup would be left unprotected.
    #[arg(long)]
    pub remove_all: bool,
}

/// Remove stale locks: those whose process on this host is gone (or whose pid another process now has), and
/// expired ones of any host; `--remove-all` removes every lock.
pub fn unlock(global: &Global, args: UnlockArgs) -> Result<i32> {
    let repo = open(global)?;
    let done = repo.unlock(args.remove_all)?;
    if global.json {
        ui::print_json(&done);
        return Ok(0);
    }
    for u in &done {
        let state = match (u.stale, u.removed) {
            (Some(why), _) => format!("stale ({why})"),
            (None, true) => "LIVE, removed as asked".to_string(),
            (None, false) => format!("live, kept (expires {})", u.lock.expires),
        };
        println!("{}: {}: {state}", u.path, u.lock.describe());
    }
    let removed = done.iter().filter(|u| u.removed).count();
    println!("{removed} of {} locks removed", done.len());
    if done.iter().any(|u| !u.removed) {
        println!(
            "a live lock of a process that is gone from another host lapses when it expires; `mvault unlock \
             --remove-all` removes it now"
        );
    }
    Ok(0)
}

pub fn prune(global: &Global, args: PruneArgs) -> Result<i32> {
    let pct: f64 =
        args.repack_unused.trim_end_matches('%').parse().ok().filter(|p| (0.0..=100.0).contains(p)).ok_or_else(
            || Error::Usage(format!("--repack-unused {:?}: expected a percentage like 50%", args.repack_unused)),
        )?;
    let repo = open(global)?;
    let plan = prune::prune(
        &repo,
        &PruneOptions { dry_run: args.dry_run, repack_unused: pct / 100.0 },
        &stale_reporter(global),
    )?;
    if global.json {
        ui::print_json(&plan);
    } else {
        print_plan(&plan);
    }
    Ok(0)
}

#[derive(Args)]
pub struct DrillArgs {
    /// Treat this store (id or URL) as lost: it is never read. Repeatable.
    #[arg(long = "without-store", value_name = "ID")]
    pub without: Vec<String>,
    /// Restore this snapshot instead of the latest.
    #[arg(long, value_name = "SNAP")]
    pub snapshot: Option<String>,
    /// Restore here and keep it (default: a temporary directory, removed afterwards).
    #[arg(long, value_name = "DIR")]
    pub scratch: Option<PathBuf>,
}

pub fn drill(global: &Global, args: DrillArgs) -> Result<i32> {
    let loc =
        global.vault.clone().ok_or_else(|| Error::Usage("no vault given: pass --vault or set MVAULT_VAULT".into()))?;
    let pw = ui::passphrase(global.password_file.as_deref())?;
    let opts =
        mvault_core::drill::DrillOptions { without: args.without, snapshot: args.snapshot, scratch: args.scratch };
    let r = mvault_core::drill::drill(&loc, &pw, &opts)?;
    if global.json {
        ui::print_json(&r);
    } else {
        println!("drill: recovered snapshot {} ({}) of tenant {}", &r.snapshot[..8], r.snapshot_time, r.tenant);
        println!(
            "  stores: {} in the vault, treated as lost: {}",
            r.stores,
            if r.stores_lost.is_empty() { "none".into() } else { r.stores_lost.join(", ") }
        );
        println!("  {} files, {} restored and every byte verified", r.files, ui::size(r.bytes));
        println!(
            "  time to recover {:.2}s (open {:.2}s, restore {:.2}s), {:.1} MiB/s",
            r.recovery_seconds, r.open_seconds, r.restore_seconds, r.throughput_mib_s
        );
    }
    Ok(if r.verified { 0 } else { 1 })
}

#[derive(Args)]
pub struct CopyArgs {
    /// Snapshots to copy (id prefixes or `latest`); all when none is given.
    pub snapshots: Vec<String>,
    /// The target vault (a directory or store URL).
    #[arg(long, value_name = "LOC")]
    pub to: String,
    /// The target's passphrase file (else MVAULT_TO_PASSWORD).
    #[arg(long, value_name = "FILE")]
    pub to_password_file: Option<PathBuf>,
}

#[derive(Args)]
pub struct WatchArgs {
    /// The directory training writes checkpoints into (as step-N, checkpoint-N or ckpt-N folders).
    pub dir: PathBuf,
    /// How often to look for new checkpoints.
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub interval: humantime::Duration,
    /// A checkpoint is backed up once no file in it has changed for this long.
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    pub settle: humantime::Duration,
    /// After each backup, keep only the N newest checkpoints' snapshots (locked ones always stay).
    #[arg(long, value_name = "N")]
    pub keep_last: Option<usize>,
    /// Look once and exit (for cron and tests).
    #[arg(long)]
    pub once: bool,
}

pub fn copy(global: &Global, args: CopyArgs) -> Result<i32> {
    let src = open(global)?;
    let pw = match &args.to_password_file {
        Some(f) => ui::passphrase(Some(f))?,
        None => std::env::var("MVAULT_TO_PASSWORD").map(String::into_bytes).map_err(|_| {
            Error::Usage("no passphrase for the target: pass --to-password-file or set MVAULT_TO_PASSWORD".into())
        })?,
    };
    let opts = mvault_core::OpenOptions { catalog: global.catalog.clone(), ..Default::default() };
    let mut dst = mvault_core::Repo::open_with(&args.to, &pw, &opts)?;
    let progress = mvault_core::copy::Progress::default();
    let pb = ui::bar(None, "{spinner} copying {msg} [{elapsed_precise}]", global.quiet || global.json);
    let r = ui::with_progress(
        &pb,
        |pb| {
            use std::sync::atomic::Ordering::Relaxed;
            pb.set_message(format!(
                "{} snapshots, {} read, {} sent",
                progress.snapshots_done.load(Relaxed),
                ui::size(progress.bytes_read.load(Relaxed)),
                ui::size(progress.bytes_sent.load(Relaxed))
            ))
        },
        || mvault_core::copy::copy(&src, &mut dst, &args.snapshots, &progress, &stale_reporter(global)),
    )?;
    if global.json {
        ui::print_json(&r);
    } else {
        for (s, d) in &r.copied {
            println!("copied {} -> {}", &s[..8], &d[..8]);
        }
        println!(
            "{} copied, {} already there; {} chunks ({}) sent, {} already in the target; {:.1}s",
            r.copied.len(),
            r.already_there.len(),
            r.chunks_sent,
            ui::size(r.bytes_sent),
            r.chunks_already_there,
            r.seconds
        );
    }
    Ok(0)
}

/// The step number of a checkpoint folder name: step-N, step_N, stepN, checkpoint-N, ckpt-N.
fn step_of(name: &str) -> Option<u64> {
    let lower = name.to_ascii_lowercase();
    for prefix in ["checkpoint", "ckpt", "step"] {
        if let Some(rest) = lower.strip_prefix(prefix) {
            let digits = rest.trim_start_matches(['-', '_']);
            if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) {
                return digits.parse().ok();
            }
        }
    }
    None
}

/// The newest modification time of anything under `path`.
fn newest_mtime(path: &std::path::Path) -> std::io::Result<std::time::SystemTime> {
    let md = std::fs::symlink_metadata(path)?;
    let mut newest = md.modified()?;
    if md.is_dir() {
        for e in std::fs::read_dir(path)? {
            newest = newest.max(newest_mtime(&e?.path())?);
        }
    }
    Ok(newest)
}

pub fn watch(global: &Global, args: WatchArgs) -> Result<i32> {
    use mvault_core::backup::{self, BackupOptions};
    let dir = std::path::absolute(&args.dir).map_err(|e| Error::io("resolve", &args.dir, e))?;
    if !dir.is_dir() {
        return Err(Error::Usage(format!("{} is not a directory", dir.display())));
    }
    let mut repo = open(global)?;
    let watch_tag = format!("watch={}", dir.display());
    loop {
        // What is done is read from the vault each round, so a restarted watcher never repeats a checkpoint.
        let (snaps, _) = repo.snapshots()?;
        let done: std::collections::BTreeSet<u64> = snaps
            .iter()
            .filter(|(_, s)| s.tags.contains(&watch_tag))
            .filter_map(|(_, s)| s.tags.iter().find_map(|t| t.strip_prefix("step=")).and_then(|n| n.parse().ok()))
            .collect();
        let mut todo: Vec<(u64, PathBuf)> = std::fs::read_dir(&dir)
            .map_err(|e| Error::io("read dir", &dir, e))?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .filter_map(|e| step_of(&e.file_name().to_string_lossy()).map(|n| (n, e.path())))
            .filter(|(n, _)| !done.contains(n))
            .collect();
        todo.sort();
        // With --keep-last N, a checkpoint older than the N newest (done or pending) would be forgotten at
        // once; skipping it also keeps a forgotten checkpoint from being taken again.
        if let Some(keep) = args.keep_last {
            let mut all: Vec<u64> = done.iter().copied().chain(todo.iter().map(|t| t.0)).collect();
            all.sort_unstable();
            let floor = all.len().checked_sub(keep).map(|i| all[i]).unwrap_or(0);
            todo.retain(|(n, _)| *n >= floor);
        }
        let now = std::time::SystemTime::now();
        for (step, path) in todo {
            let settled =
                newest_mtime(&path).map(|t| now.duration_since(t).unwrap_or_default() >= *args.settle).unwrap_or(false);
            if !settled {
                continue;
            }
            let opts = BackupOptions {
                paths: vec![path.clone()],
                tags: vec![watch_tag.clone(), format!("step={step}")],
                ..Default::default()
            };
            let quiet = global.quiet;
            let warn = move |e: &Error| {
                if !quiet {
                    eprintln!("mvault: warning: {e}");
                }
            };
            let r = backup::backup(&mut repo, &opts, &backup::Progress::default(), &warn)?;
            if !global.quiet {
                eprintln!(
                    "mvault: step {step}: snapshot {} ({} files, {} new)",
                    &r.id.to_hex()[..8],
                    r.snapshot.summary.files,
                    ui::size(r.snapshot.summary.new_bytes)
                );
            }
            if let Some(keep) = args.keep_last {
                let (snaps, _) = repo.snapshots()?;
                let mut mine: Vec<(u64, String)> = snaps
                    .iter()
                    .filter(|(_, s)| s.tags.contains(&watch_tag))
                    .filter_map(|(id, s)| {
                        s.tags
                            .iter()
                            .find_map(|t| t.strip_prefix("step="))
                            .and_then(|n| n.parse().ok())
                            .map(|n| (n, id.to_hex()))
                    })
                    .collect();
                mine.sort();
                let drop_n = mine.len().saturating_sub(keep);
                let ids: Vec<String> = mine[..drop_n].iter().map(|(_, id)| id.clone()).collect();
                if !ids.is_empty() {
                    let opts =
                        ForgetOptions { policy: Policy::default(), ids, group_by: GroupBy::default(), dry_run: false };
                    let r = prune::forget(&repo, &opts)?;
                    if !global.quiet && !r.removed.is_empty() {
                        eprintln!(
                            "mvault: forgot {} older checkpoint snapshot(s) (--keep-last {keep})",
                            r.removed.len()
                        );
                    }
                }
            }
        }
        if args.once {
            return Ok(0);
        }
        std::thread::sleep(*args.interval);
    }
}
