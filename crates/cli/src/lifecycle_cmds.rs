//! Lifecycle commands: forget and prune.

use crate::commands::open;
use crate::{ui, Global};
use clap::{Args, Subcommand};
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

fn stale_reporter(g: &Global) -> impl Fn(&str) + '_ {
    move |m: &str| {
        if !g.quiet {
            eprintln!("mvault: warning: {m}");
        }
    }
}

pub fn forget(g: &Global, a: ForgetArgs) -> Result<i32> {
    let policy = Policy {
        last: a.keep_last,
        hourly: a.keep_hourly,
        daily: a.keep_daily,
        weekly: a.keep_weekly,
        monthly: a.keep_monthly,
        yearly: a.keep_yearly,
        within: a.keep_within.map(Into::into),
        tags: a.keep_tag.clone(),
    };
    let opts =
        ForgetOptions { policy, ids: a.snapshots.clone(), group_by: GroupBy::parse(&a.group_by)?, dry_run: a.dry_run };
    let repo = open(g)?;
    let report = {
        let _lock = repo.lock(false, "forget", &stale_reporter(g))?;
        prune::forget(&repo, &opts)?
    };
    let pruned = if a.prune && !a.dry_run {
        Some(prune::prune(&repo, &PruneOptions::default(), &stale_reporter(g))?)
    } else {
        None
    };
    if g.json {
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
        let verb = if a.dry_run { "would remove" } else { "removed" };
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

fn print_plan(p: &prune::PrunePlan) {
    let verb = if p.dry_run { "would" } else { "did" };
    println!(
        "prune ({verb}): {} packs; delete {} unused and {} unindexed, repack {} ({} live moved); {} of blobs and {} of shards freed; {} index files replaced; {:.1}s",
        p.packs,
        p.packs_to_delete,
        p.packs_unindexed,
        p.packs_to_repack,
        ui::size(p.live_bytes_repacked),
        ui::size(p.bytes_freed),
        ui::size(p.stored_bytes_freed),
        p.index_files_replaced,
        p.seconds
    );
}

pub fn prune(g: &Global, a: PruneArgs) -> Result<i32> {
    let pct: f64 =
        a.repack_unused.trim_end_matches('%').parse().ok().filter(|p| (0.0..=100.0).contains(p)).ok_or_else(|| {
            Error::Usage(format!("--repack-unused {:?}: expected a percentage like 50%", a.repack_unused))
        })?;
    let repo = open(g)?;
    let plan =
        prune::prune(&repo, &PruneOptions { dry_run: a.dry_run, repack_unused: pct / 100.0 }, &stale_reporter(g))?;
    if g.json {
        ui::print_json(&plan);
    } else {
        print_plan(&plan);
    }
    Ok(0)
}

#[derive(Subcommand)]
pub enum TenantCommand {
    /// Start a new key version for the tenant; with --rewrite, re-encrypt all its data under it and delete
    /// the old versions (resumable: run it again after an interruption).
    Rekey {
        /// The tenant (local vaults have one: default).
        #[arg(default_value = "default")]
        tenant: String,
        #[arg(long)]
        rewrite: bool,
        /// Only finish an interrupted rewrite; do not start yet another version.
        #[arg(long, requires = "rewrite")]
        resume: bool,
    },
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

pub fn tenant(g: &Global, c: TenantCommand) -> Result<i32> {
    match c {
        TenantCommand::Rekey { tenant, rewrite, resume } => {
            let mut repo = open(g)?;
            if tenant != repo.tenant {
                return Err(Error::NotFound(format!("tenant {tenant} (this vault's local tenant is {})", repo.tenant)));
            }
            let r = repo.rekey(!resume, rewrite, &stale_reporter(g))?;
            if g.json {
                ui::print_json(&r);
            } else {
                println!(
                    "tenant {}: new writes use key version {}; {} packs and {} snapshots re-encrypted; old versions removed: {:?} ({:.1}s)",
                    r.tenant, r.new_version, r.packs_rewritten, r.snapshots_rewritten, r.old_versions_removed, r.seconds
                );
            }
            Ok(0)
        }
    }
}

pub fn drill(g: &Global, a: DrillArgs) -> Result<i32> {
    let loc = g.vault.clone().ok_or_else(|| Error::Usage("no vault given: pass --vault or set MVAULT_VAULT".into()))?;
    let pw = ui::passphrase(g.password_file.as_deref())?;
    let opts = mvault_core::drill::DrillOptions { without: a.without, snapshot: a.snapshot, scratch: a.scratch };
    let r = mvault_core::drill::drill(&loc, &pw, &opts)?;
    if g.json {
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
