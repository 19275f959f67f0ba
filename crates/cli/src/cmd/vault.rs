//! The vault's own commands: init, backup, snapshots, ls, restore, check, key and speed. Each opens the vault,
//! calls the core, and prints text or JSON.

use crate::args::{parse_ec, BackupArgs, LsArgs, RestoreArgs};
use crate::open::{open, vault_loc};
use crate::print::{print_ls, print_snapshots, restore_from};
use crate::ui;
use crate::Global;
use clap::{Args, Subcommand};
use mvault_core::backup::{self, BackupOptions};
use mvault_core::check::{self, ReadData};
use mvault_core::crypto::KdfParams;
use mvault_core::{Error, Result};
use mvault_core::{InitOptions, Repo};
use serde_json::json;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

#[derive(Args)]
pub struct InitArgs {
    /// A store for the vault, repeatable: URL[#domain=D,weight=W,afr=P,availability=A]. URL is a directory
    /// (fs:/dir or a plain path), s3://BUCKET/PREFIX?endpoint=URL&region=R, or hdfs://HOST:PORT/PATH.
    /// --vault is a store too (unless listed here). Stores in one domain can fail together.
    #[arg(long = "store", value_name = "URL[#domain=D,weight=W]")]
    pub stores: Vec<mvault_core::StoreArg>,
    /// Reed-Solomon: cut each pack into K data and M recovery shards, one per store; any K rebuild it.
    #[arg(long, value_name = "K+M", conflicts_with = "replicas")]
    pub ec: Option<String>,
    /// Keep N full copies of every pack, each on its own store (k=1, m=N-1).
    #[arg(long, value_name = "N")]
    pub replicas: Option<u8>,
    /// Target pack size (default 16MiB; at least 64KiB). Smaller packs suit tests and tiny vaults.
    #[arg(long, value_name = "BYTES", hide = true)]
    pub pack_size: Option<String>,
    /// Average chunk size (default 1MiB; min and max are a quarter and four times it).
    #[arg(long, value_name = "BYTES", hide = true)]
    pub chunk_size: Option<String>,
}

#[derive(Args)]
pub struct SpeedArgs {
    /// Take the sample from this file (its first --mib MiB).
    #[arg(long, value_name = "FILE")]
    pub sample: Option<PathBuf>,
    #[arg(long, default_value_t = 64)]
    pub mib: usize,
}

#[derive(Args)]
pub struct CheckArgs {
    /// Also read, decrypt and verify every blob of every pack.
    #[arg(long, conflicts_with = "read_data_subset")]
    pub read_data: bool,
    /// Read a random share of the packs, e.g. 10%.
    #[arg(long, value_name = "P%")]
    pub read_data_subset: Option<String>,
}

#[derive(Subcommand)]
pub enum KeyCommand {
    /// List the key files.
    List,
    /// Add a key file with a new passphrase (from MVAULT_NEW_PASSWORD, --new-password-file or a prompt).
    Add {
        #[arg(long, value_name = "FILE")]
        new_password_file: Option<PathBuf>,
    },
    /// Remove a key file by id prefix (not the one in use).
    Remove { id: String },
    /// Change the passphrase of the key file in use.
    Passwd {
        #[arg(long, value_name = "FILE")]
        new_password_file: Option<PathBuf>,
    },
    /// Replace the master key: tenant keys are rewrapped and key files remade; data is not touched.
    ///
    /// The key file in use gets a new one with the same passphrase; other key files are removed unless their
    /// passphrases are given with --keep-password-file.
    Rotate {
        /// A passphrase file of another key file to keep (repeatable).
        #[arg(long, value_name = "FILE")]
        keep_password_file: Vec<PathBuf>,
    },
}

pub fn speed(global: &Global, args: SpeedArgs) -> Result<i32> {
    let n = args.mib.clamp(1, 1024) << 20;
    let sample = match &args.sample {
        Some(p) => {
            use std::io::Read;
            let mut buf = Vec::with_capacity(n);
            std::fs::File::open(p)
                .and_then(|f| f.take(n as u64).read_to_end(&mut buf))
                .map_err(|e| Error::io("read", p, e))?;
            buf
        }
        None => mvault_core::synth::bf16_bytes(&mvault_core::synth::weights_f32(n / 2, 7, 0.02)),
    };
    let s = mvault_core::speed::measure(&sample, 1.0);
    if global.json {
        ui::print_json(&s);
    } else {
        let mb = |v: f64| format!("{:.0} MB/s", v / 1e6);
        println!("one core, {} sample:", ui::size(s.sample_bytes as u64));
        println!("  AES-256-GCM seal {}, open {}", mb(s.aes_256_gcm_seal), mb(s.aes_256_gcm_open));
        println!("  BLAKE3 (keyed)   {}", mb(s.blake3_keyed));
        println!(
            "  zstd -3          {} compress, {} decompress, ratio {:.3}",
            mb(s.zstd3_compress),
            mb(s.zstd_decompress),
            s.zstd3_ratio
        );
    }
    Ok(0)
}

pub fn init(global: &Global, args: InitArgs) -> Result<i32> {
    let loc = vault_loc(global)?;
    let pw = ui::passphrase(global.password_file.as_deref())?;
    ui::check_not_empty(&pw)?;
    let (k, m) = match (&args.ec, args.replicas) {
        (Some(ec), _) => parse_ec(ec)?,
        (None, Some(0)) => return Err(Error::Usage("--replicas must be at least 1".into())),
        (None, Some(n)) => (1, n - 1),
        (None, None) => (1, 0),
    };
    let mut opts =
        InitOptions { k, m, extra_stores: args.stores, catalog: global.catalog.clone(), ..Default::default() };
    if let Some(p) = &args.pack_size {
        opts.pack_size = crate::args::parse_size(p)?;
    }
    if let Some(c) = &args.chunk_size {
        let avg = crate::args::parse_size(c)? as u32;
        opts.chunker = mvault_core::format::config::ChunkerParams { min: avg / 4, avg, max: avg.saturating_mul(4) };
    }
    let repo = Repo::init(&loc, &pw, &opts)?;
    if global.json {
        ui::print_json(
            &json!({ "vault_id": repo.vault_id.to_hex(), "stores": repo.config.stores, "key_id": repo.key_id }),
        );
    } else {
        println!("created vault {} at {}", repo.vault_id, loc);
        println!("keep the passphrase safe: without it (or another key file) the data cannot be recovered");
    }
    Ok(0)
}

fn parse_lock_until(args: &BackupArgs) -> Result<Option<String>> {
    if let Some(d) = args.lock_for {
        let t = mvault_core::now() + *d;
        return Ok(Some(humantime::format_rfc3339_seconds(t).to_string()));
    }
    if let Some(s) = &args.lock_until {
        let full = if s.len() == 10 { format!("{s}T00:00:00Z") } else { s.clone() };
        let t = humantime::parse_rfc3339_weak(&full).map_err(|e| Error::Usage(format!("--lock-until {s:?}: {e}")))?;
        return Ok(Some(humantime::format_rfc3339_seconds(t).to_string()));
    }
    Ok(None)
}

pub fn backup(global: &Global, args: BackupArgs) -> Result<i32> {
    let locked_until = parse_lock_until(&args)?;
    let mut repo = open(global)?;
    let base = match &args.base {
        Some(spec) => Some(repo.find_snapshot(spec)?.0),
        None => None,
    };
    let opts = BackupOptions {
        paths: args.paths,
        tags: args.tags,
        host: args.host,
        locked_until,
        delta_depth: args.delta_depth,
        base,
        ..Default::default()
    };
    let progress = backup::Progress::default();
    let pb = ui::bar(None, "{spinner} {msg} [{elapsed_precise}]", global.quiet || global.json);
    let quiet = global.quiet;
    let warn = move |e: &Error| {
        if !quiet {
            eprintln!("mvault: warning: {e}");
        }
    };
    let result = ui::with_progress(
        &pb,
        |pb| {
            let b = progress.bytes.load(Ordering::Relaxed);
            let secs = pb.elapsed().as_secs_f64().max(0.001);
            pb.set_message(format!(
                "{} files, {} read ({}/s), {} stored",
                progress.files.load(Ordering::Relaxed),
                ui::size(b),
                ui::size((b as f64 / secs) as u64),
                ui::size(progress.bytes_stored.load(Ordering::Relaxed))
            ))
        },
        || backup::backup(&mut repo, &opts, &progress, &warn),
    )?;
    let s = &result.snapshot.summary;
    if global.json {
        ui::print_json(&json!({
            "snapshot_id": result.id.to_hex(),
            "parent": result.parent.map(|p| p.to_hex()),
            "time": result.snapshot.time,
            "paths": result.snapshot.paths,
            "summary": s,
        }));
    } else {
        println!("snapshot {} saved", result.id);
        println!(
            "  {} files, {} dirs, {} symlinks, {} total; {} files read ({}), the rest unchanged",
            s.files,
            s.dirs,
            s.symlinks,
            ui::size(s.bytes),
            s.files_read,
            ui::size(s.bytes_read)
        );
        println!(
            "  {} new chunks ({}), {} added to the vault, in {:.1}s",
            s.new_chunks,
            ui::size(s.new_bytes),
            ui::size(s.bytes_stored),
            s.seconds
        );
    }
    if s.degraded_packs > 0 && !global.quiet {
        eprintln!(
            "mvault: warning: {} pack(s) were written with shards missing (a store was down); the snapshot is safe \
             with the redundancy left; run `mvault repair` once the store is back",
            s.degraded_packs
        );
    }
    if !s.unreadable.is_empty() {
        eprintln!(
            "mvault: error: {} path(s) could not be read and are not in snapshot {}: {}",
            s.unreadable.len(),
            result.id,
            s.unreadable.join(", ")
        );
        return Ok(1);
    }
    Ok(0)
}

pub fn snapshots(global: &Global) -> Result<i32> {
    let repo = open(global)?;
    let (all, bad) = repo.snapshots()?;
    for e in &bad {
        eprintln!("mvault: warning: {e}");
    }
    print_snapshots(global, &all);
    Ok(if bad.is_empty() { 0 } else { 1 })
}

pub fn ls(global: &Global, args: LsArgs) -> Result<i32> {
    let repo = open(global)?;
    let (_, snap) = repo.find_snapshot(&args.snapshot)?;
    print_ls(global, &repo, &snap.tree_id()?, args)
}

pub fn restore(global: &Global, args: RestoreArgs) -> Result<i32> {
    let repo = open(global)?;
    let (id, snap) = repo.find_snapshot(&args.snapshot)?;
    restore_from(global, &repo, &id, &snap, args)
}

pub fn check(global: &Global, args: CheckArgs) -> Result<i32> {
    let read = match (&args.read_data, &args.read_data_subset) {
        (true, _) => ReadData::All,
        (false, Some(s)) => {
            let p: f64 = s
                .trim_end_matches('%')
                .parse()
                .map_err(|_| Error::Usage(format!("--read-data-subset {s:?}: expected a percentage like 10%")))?;
            if !(0.0..=100.0).contains(&p) {
                return Err(Error::Usage(format!("--read-data-subset {s:?}: must be between 0% and 100%")));
            }
            ReadData::Subset(p)
        }
        _ => ReadData::None,
    };
    let repo = open(global)?;
    let quiet = global.quiet;
    let _lock = repo.lock(false, "check", &|m| {
        if !quiet {
            eprintln!("mvault: warning: {m}")
        }
    })?;
    let progress = check::Progress::default();
    let pb = ui::bar(
        Some(0),
        "{spinner} reading packs [{bar:30}] {pos}/{len} [{elapsed_precise}]",
        global.quiet || global.json,
    );
    let report = ui::with_progress(
        &pb,
        |pb| {
            pb.set_length(progress.packs_total.load(Ordering::Relaxed));
            pb.set_position(progress.packs_done.load(Ordering::Relaxed));
        },
        || check::check(&repo, read, &progress),
    )?;
    if global.json {
        ui::print_json(&json!({ "ok": report.ok(), "report": report }));
    } else {
        for w in &report.warnings {
            println!("warning: {w}");
        }
        for e in &report.errors {
            println!("error: {e}");
        }
        if let Some(d) = report.shortfall.describe() {
            println!("degraded: {d}");
        }
        println!(
            "{} snapshots, {} trees, {} chunks referenced, {} index files, {} packs; {} packs read, {} blobs verified",
            report.snapshots,
            report.trees,
            report.chunks_referenced,
            report.index_files,
            report.packs,
            report.packs_read,
            report.blobs_verified
        );
        if report.errors.is_empty() {
            println!("no errors found");
        } else {
            println!("{} errors found", report.errors.len());
        }
    }
    if let Some(first) = report.errors.first() {
        if !global.json {
            eprintln!("mvault: error: check found {} error(s); the first: {first}", report.errors.len());
        }
        return Ok(1);
    }
    if let Some(d) = report.shortfall.describe() {
        if !global.json {
            eprintln!("mvault: error: redundancy lost: {d}");
        }
        return Ok(3);
    }
    Ok(0)
}

pub fn key(global: &Global, key_command: KeyCommand) -> Result<i32> {
    let mut repo = open(global)?;
    match key_command {
        KeyCommand::List => {
            let keys = repo.key_files()?;
            if global.json {
                let v: Vec<_> = keys
                    .iter()
                    .map(|key_file| json!({ "id": key_file.id, "current": key_file.id == repo.key_id, "created": key_file.created, "host": key_file.host, "user": key_file.user }))
                    .collect();
                ui::print_json(&v);
            } else {
                println!("  {:<32} {:<22} {:<12} host", "id", "created", "user");
                for key_file in &keys {
                    println!(
                        "{} {:<32} {:<22} {:<12} {}",
                        if key_file.id == repo.key_id { "*" } else { " " },
                        key_file.id,
                        key_file.created,
                        key_file.user,
                        key_file.host
                    );
                }
            }
        }
        KeyCommand::Add { new_password_file } => {
            let pw = ui::new_passphrase(new_password_file.as_deref())?;
            ui::check_not_empty(&pw)?;
            let kf = repo.add_key(&pw, KdfParams::default())?;
            println!("added key {}", kf.id);
        }
        KeyCommand::Remove { id } => {
            let removed = repo.remove_key(&id)?;
            println!("removed key {removed}");
        }
        KeyCommand::Rotate { keep_password_file } => {
            let mut passphrases = vec![ui::passphrase(global.password_file.as_deref())?];
            for f in &keep_password_file {
                passphrases.push(ui::passphrase(Some(f))?);
            }
            let r = repo.rotate_master_key(&passphrases, KdfParams::default())?;
            if global.json {
                ui::print_json(&r);
            } else {
                println!(
                    "new master key: {} tenant key(s) rewrapped, {} key file(s) made, {} old key file(s) removed",
                    r.tenant_keys_rewrapped,
                    r.new_key_files.len(),
                    r.removed_key_files.len()
                );
            }
        }
        KeyCommand::Passwd { new_password_file } => {
            let pw = ui::new_passphrase(new_password_file.as_deref())?;
            ui::check_not_empty(&pw)?;
            let kf = repo.change_passphrase(&pw, KdfParams::default())?;
            println!("passphrase changed (key {} replaces the old one)", kf.id);
        }
    }
    Ok(0)
}
