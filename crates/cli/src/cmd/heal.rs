//! Commands of the distributed-storage layer: stores, scrub, repair, rebalance, status, durability.

use crate::args::{parse_ec, ThrottleArgs};
use crate::open::open;
use crate::{ui, Global};
use clap::{Args, Subcommand};
use mvault_core::durability;
use mvault_core::heal::{self, HealReport};
use mvault_core::StoreArg;
use mvault_core::{Error, Result};
use serde_json::json;
use std::sync::atomic::Ordering;

#[derive(Subcommand)]
pub enum StoreCommand {
    /// List the stores with their domain and weight.
    List,
    /// Add a store: URL[#domain=D,weight=W,afr=P,availability=A]. Run `mvault rebalance` afterwards.
    Add { spec: StoreArg },
    /// Remove a store by id. Its shards are first copied to the stores that take its place; with --force
    /// (the store is dead) they are not, and `mvault repair` rebuilds them from the others.
    Remove {
        id: String,
        #[arg(long)]
        force: bool,
    },
}

#[derive(Args)]
pub struct ScrubArgs {
    /// Rebuild missing or rotten shards right away.
    #[arg(long)]
    pub repair: bool,
    #[command(flatten)]
    pub limit: ThrottleArgs,
}

#[derive(Args)]
pub struct StatusArgs {
    /// Time to repair a failed store, for the durability model (e.g. 24h, 6.5days).
    #[arg(long, value_name = "DURATION", default_value = "24h")]
    pub mttr: humantime::Duration,
}

#[derive(Args)]
pub struct DurabilityArgs {
    /// A hypothetical layout instead of the vault's: K data + M recovery shards.
    #[arg(long, value_name = "K+M")]
    pub ec: Option<String>,
    /// Annual failure rate of each store (a fraction, e.g. 0.014); one value applies to all. Repeatable.
    #[arg(long, value_name = "P")]
    pub afr: Vec<f64>,
    /// Probability that each store is up at a given moment; one value applies to all. Repeatable.
    #[arg(long, value_name = "A")]
    pub availability: Vec<f64>,
    /// Time to repair a failed store.
    #[arg(long, value_name = "DURATION", default_value = "24h")]
    pub mttr: humantime::Duration,
}

pub fn store(global: &Global, command: StoreCommand) -> Result<i32> {
    let mut repo = open(global)?;
    match command {
        StoreCommand::List => {
            if global.json {
                ui::print_json(&repo.config.stores);
            } else {
                println!("{:<5} {:<12} {:>6} {:>7}  url", "id", "domain", "weight", "afr");
                for s in &repo.config.stores {
                    println!("{:<5} {:<12} {:>6} {:>7.4}  {}", s.id, s.domain, s.weight, s.afr, s.url);
                }
                println!("layout: k={} m={}", repo.config.redundancy.k, repo.config.redundancy.m);
            }
        }
        StoreCommand::Add { spec } => {
            let s = repo.add_store(&spec)?;
            if global.json {
                ui::print_json(&s);
            } else {
                println!(
                    "added store {} ({}, domain {}, weight {}); run `mvault rebalance` to move shards onto it",
                    s.id, s.url, s.domain, s.weight
                );
            }
        }
        StoreCommand::Remove { id, force } => {
            let moved = repo.remove_store(&id, force)?;
            if global.json {
                ui::print_json(&json!({ "removed": id, "shards_moved": moved }));
            } else {
                println!("removed store {id}; {moved} shards copied to their new stores");
                if force {
                    println!("run `mvault repair` to rebuild the shards it held");
                }
            }
        }
    }
    Ok(0)
}

fn heal_run(global: &Global, what: &str, run: impl FnOnce(&heal::Progress) -> Result<HealReport>) -> Result<i32> {
    let progress = heal::Progress::default();
    let pb = ui::bar(
        Some(0),
        &format!("{{spinner}} {what} [{{bar:30}}] {{pos}}/{{len}} packs [{{elapsed_precise}}] {{msg}}"),
        global.quiet || global.json,
    );
    let report = ui::with_progress(
        &pb,
        |pb| {
            pb.set_length(progress.total.load(Ordering::Relaxed));
            pb.set_position(progress.done.load(Ordering::Relaxed));
        },
        || run(&progress),
    )?;
    let failed = !report.unrecoverable.is_empty();
    if global.json {
        ui::print_json(&report);
    } else {
        for p in report.corrupt.iter() {
            println!(
                "corrupt: pack {} shard {} on store {}: {}",
                p.pack,
                p.shard,
                p.store.as_deref().unwrap_or("?"),
                p.reason
            );
        }
        for p in report.missing.iter() {
            println!("missing: pack {} shard {} ({})", p.pack, p.shard, p.reason);
        }
        for p in &report.unrecoverable {
            println!("UNRECOVERABLE: pack {p} has fewer than k good shards on the stores that are up");
        }
        println!(
            "{what}: {} packs, {} shards checked, {} missing, {} corrupt, {} repaired, {} moved, {} written, {} metadata copies, {:.1}s",
            report.packs,
            report.shards_checked,
            report.missing.len(),
            report.corrupt.len(),
            report.shards_repaired,
            report.shards_moved,
            ui::size(report.bytes_written),
            report.metadata_copied,
            report.seconds
        );
    }
    if failed {
        eprintln!(
            "mvault: error: {} pack(s) cannot be rebuilt from the stores that are up",
            report.unrecoverable.len()
        );
        return Ok(1);
    }
    if report.unrepaired > 0 {
        // Damage this run found and left: cron and monitoring must not read it as healthy.
        if !global.json {
            eprintln!(
                "mvault: {} shard(s) missing or corrupt and not repaired: run `mvault repair` (or `scrub --repair`)",
                report.unrepaired
            );
        }
        return Ok(EXIT_DAMAGE);
    }
    Ok(0)
}

/// The exit code of a command that found damage it did not repair and that can be repaired (README).
pub const EXIT_DAMAGE: i32 = 3;

pub fn scrub(global: &Global, args: ScrubArgs) -> Result<i32> {
    let l = args.limit.bytes_per_second()?;
    let repo = open(global)?;
    let code = heal_run(global, "scrub", |p| repo.scrub(args.repair, l, p))?;
    Ok(code)
}

pub fn repair(global: &Global, args: ThrottleArgs) -> Result<i32> {
    let l = args.bytes_per_second()?;
    let repo = open(global)?;
    heal_run(global, "repair", |p| repo.repair(l, p))
}

pub fn rebalance(global: &Global, args: ThrottleArgs) -> Result<i32> {
    let l = args.bytes_per_second()?;
    let repo = open(global)?;
    heal_run(global, "rebalance", |p| repo.rebalance(l, p))
}

fn days(duration: &humantime::Duration) -> f64 {
    duration.as_secs_f64() / 86400.0
}

fn print_durability(durability: &durability::Durability, availability: f64, naive: f64, stores: usize) {
    println!(
        "layout {}+{} over {} stores, repair window {:.2} days",
        durability.k, durability.m, stores, durability.repair_days
    );
    println!(
        "  availability  P(at least {} of {} stores up)   {:.12}  ({:.1} nines)",
        durability.k,
        durability.k + durability.m,
        availability,
        durability::nines_of(availability)
    );
    println!(
        "  naive product P(every store up)             {:.12}  ({:.1} nines)  <- no redundancy",
        naive,
        durability::nines_of(naive)
    );
    println!(
        "  yearly durability                           {:.1} nines  (loss per year {:.3e})",
        durability.nines, durability.loss_per_year
    );
    println!("  mean time to data loss                      {:.3e} years", durability.mttdl_years);
}

pub fn status(global: &Global, args: StatusArgs) -> Result<i32> {
    let repo = open(global)?;
    let st = repo.status(days(&args.mttr))?;
    if global.json {
        ui::print_json(&st);
    } else {
        println!(
            "{:<5} {:<10} {:<5} {:>6} {:>12} {:>8} {:>6}  url",
            "id", "domain", "up", "weight", "used", "shards", "fill"
        );
        for s in &st.stores {
            println!(
                "{:<5} {:<10} {:<5} {:>6} {:>12} {:>8} {:>6.2}  {}",
                s.id,
                s.domain,
                if s.up { "up" } else { "DOWN" },
                s.weight,
                ui::size(s.bytes),
                s.shards,
                s.fill_ratio,
                s.url
            );
        }
        println!("{} packs, {} degraded, {} unreadable", st.packs, st.degraded_packs, st.unreadable_packs);
        let d = &st.durability;
        print_durability(&d.yearly, d.availability, d.naive_product, st.stores.len());
        println!("  a pack survives the loss of {} whole failure domain(s)", d.domain_tolerance);
    }
    // Exit codes as for check: 1 for packs that cannot be read, 3 for lost redundancy `repair` restores.
    if st.unreadable_packs > 0 {
        if !global.json {
            eprintln!("mvault: error: {} packs cannot be read from the stores that are up", st.unreadable_packs);
        }
        return Ok(1);
    }
    if let Some(d) = st.shortfall.describe() {
        if !global.json {
            eprintln!("mvault: error: redundancy lost: {d}");
        }
        return Ok(3);
    }
    Ok(0)
}

fn per_store(values: &[f64], count: usize, default: f64, what: &str) -> Result<Vec<f64>> {
    match values.len() {
        0 => Ok(vec![default; count]),
        1 => Ok(vec![values[0]; count]),
        l if l == count => Ok(values.to_vec()),
        l => Err(Error::Usage(format!("{l} values of --{what} for {count} stores: give one, or one per store"))),
    }
}

pub fn durability(global: &Global, args: DurabilityArgs) -> Result<i32> {
    let repair_days = days(&args.mttr);
    if repair_days <= 0.0 {
        return Err(Error::Usage("--mttr must be positive".into()));
    }
    let (k, n, afr, avail) = match &args.ec {
        Some(ec) => {
            let (k, m) = parse_ec(ec)?;
            let n = k as usize + m as usize;
            let afr = per_store(&args.afr, n, mvault_core::format::config::default_afr(), "afr")?;
            let avail =
                per_store(&args.availability, n, mvault_core::format::config::default_availability(), "availability")?;
            (k as usize, n, afr, avail)
        }
        None => {
            let repo = open(global)?;
            let d = repo.layout_durability(repo.list_packs()?.iter(), repair_days);
            if global.json {
                ui::print_json(&d);
            } else {
                print_durability(&d.yearly, d.availability, d.naive_product, repo.config.stores.len());
            }
            return Ok(0);
        }
    };
    if afr.iter().any(|x| !(0.0..=10.0).contains(x)) || avail.iter().any(|x| !(0.0..=1.0).contains(x)) {
        return Err(Error::Usage("--afr must be a rate in [0, 10], --availability a probability".into()));
    }
    let d = durability::yearly(&afr, k, repair_days);
    let availability = durability::availability(&avail, k);
    let naive = durability::naive_product(&avail);
    // The same raw capacity spent on replication, for comparison.
    let copies = (n as f64 / k as f64).round().max(1.0) as usize;
    let rep = durability::yearly(&afr[..copies.min(afr.len())], 1, repair_days);
    if global.json {
        ui::print_json(&json!({ "k": k, "m": n - k, "availability": availability, "naive_product": naive, "yearly": d,
                                "replication_equivalent": { "copies": copies, "yearly": rep } }));
    } else {
        print_durability(&d, availability, naive, n);
        println!("  {copies}-way replication (about the same storage overhead): {:.1} nines", rep.nines);
    }
    Ok(0)
}
