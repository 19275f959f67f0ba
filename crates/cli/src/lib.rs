//! `mvault`: the ModelVault command line. Each subcommand is a thin layer over `mvault_core`; this crate
//! owns argument parsing, passphrases, progress bars and output (human or `--json`).
//!
//! Two programs share this library: `mvault` (src/main.rs), the one that ships, and `mvault-test`
//! (src/bin/mvault-test.rs, built only with the `test-hooks` feature the test suite turns on), which alone
//! lets the environment drive fault points and the clock (`mvault_core::enable_test_hooks`).
//!
//! Layout: this file holds the argument tree and the one dispatcher (`run`); `cmd/` has one module per
//! command group, which never imports another group; the modules they share are `args` (argument types and
//! parsers), `open` (opening the vault), `print` (output), `ui` (progress, passphrases) and `client` (the
//! HTTPS client of remote mode).

mod args;
mod client;
mod cmd;
mod open;
mod print;
mod ui;

use clap::{Args, Parser, Subcommand};
use mvault_core::Result;
use std::path::PathBuf;

/// ModelVault keeps AI model artifacts (weights, checkpoints, datasets) in encrypted, deduplicated,
/// point-in-time snapshots.
///
/// Start with `mvault demo` for a guided run. A vault is a directory (or a store URL); give it with
/// --vault or MVAULT_VAULT. The passphrase comes from MVAULT_PASSWORD, --password-file or a prompt.
#[derive(Parser)]
#[command(name = "mvault", version, propagate_version = true, max_term_width = 110)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Clone)]
pub struct Global {
    /// The vault: a directory path or a store URL such as fs:/backups/vault; or a server,
    /// https://HOST:PORT, with the token in MVAULT_TOKEN (remote mode); or several instances of one
    /// server, https://A:PORT,https://B:PORT (a request moves to the next when one cannot be reached).
    #[arg(long, global = true, env = "MVAULT_VAULT", value_name = "LOC")]
    pub vault: Option<String>,
    /// Remote mode: trust this CA certificate (PEM), such as the server's self-signed one.
    #[arg(long, global = true, env = "MVAULT_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Read the passphrase from the first line of this file (instead of MVAULT_PASSWORD or a prompt).
    #[arg(long, global = true, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Print machine-readable JSON on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// No progress bars and no informational messages on stderr.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Where the chunk index is kept: `embedded` (a SQLite file per vault in ~/.cache/mvault, or
    /// $MVAULT_CACHE_DIR), `sqlite:PATH`, `postgres://USER@HOST/DB` (shared by many servers and admin
    /// commands), or `memory` (every index file read by each command, as before the catalog). The stores
    /// always hold the index too: any catalog can be rebuilt from them.
    #[arg(long, global = true, env = "MVAULT_CATALOG", value_name = "CATALOG", default_value = "embedded")]
    pub catalog: mvault_core::CatalogArg,
}

#[derive(Subcommand)]
pub enum Command {
    /// Guided end-to-end run: make a vault in a temporary directory, back up a sample model twice,
    /// restore it, verify every byte and report the space saved.
    Demo(cmd::demo::DemoArgs),
    /// Create a new vault at --vault (plus any --store).
    Init(cmd::vault::InitArgs),
    /// Back up files and directories into a new snapshot.
    ///
    /// Unchanged files (same size, mtime and inode as in the previous snapshot of the same host and paths)
    /// are not read again; content already in the vault is not stored again.
    Backup(args::BackupArgs),
    /// List snapshots, oldest first.
    Snapshots,
    /// List the files of a snapshot (by id prefix or `latest`), optionally only under PATH.
    Ls(args::LsArgs),
    /// What changed between two snapshots: files added, removed and modified, the bytes each stores that
    /// the other does not, and with --tensors every tensor of every model file (max change, share changed).
    Diff(args::DiffArgs),
    /// Show a model file (safetensors, GGUF, PyTorch zip) tensor by tensor: dtype, shape, size, the ratio
    /// ModelVault stores it at and the entropy bound for float tensors, and the codec's speed on one core.
    Inspect(cmd::model::InspectArgs),
    /// Restore a snapshot under a target directory: a backup of /data/x restores to TARGET/data/x.
    Restore(args::RestoreArgs),
    /// Verify the vault: structure always; with --read-data every byte of every pack.
    Check(cmd::vault::CheckArgs),
    /// Manage the key files (passphrases) that open the vault.
    #[command(subcommand)]
    Key(cmd::vault::KeyCommand),
    /// Remove snapshots by id or by a retention policy (locked snapshots are always kept).
    ///
    /// Example: mvault forget --keep-hourly 24 --keep-daily 7 --keep-weekly 4 --keep-monthly 12 --prune
    Forget(cmd::lifecycle::ForgetArgs),
    /// Delete data no snapshot needs: unreferenced packs go, mostly-empty packs are repacked, and what
    /// killed writers left (temporary objects older than the lock expiry, stale locks) is removed.
    Prune(cmd::lifecycle::PruneArgs),
    /// Remove stale locks: of processes on this host that are gone, and expired ones of other hosts.
    ///
    /// A process killed on another host holds its lock until it expires (15 minutes after its last
    /// refresh); `--remove-all` removes every lock at once, after saying whose each is.
    Unlock(cmd::lifecycle::UnlockArgs),
    /// Tenant keys: `tenant rekey [--rewrite]` starts a new key version for new writes.
    #[command(subcommand)]
    Tenant(args::TenantCommand),
    /// Disaster-recovery drill: restore the latest snapshot from the stores alone (minus --without-store),
    /// verify every byte, and report the time to recover.
    Drill(cmd::lifecycle::DrillArgs),
    /// Copy snapshots to another vault (offsite), re-encrypted under its keys; only missing data is sent.
    ///
    /// The target's passphrase comes from --to-password-file or MVAULT_TO_PASSWORD.
    Copy(cmd::lifecycle::CopyArgs),
    /// Watch a directory of training checkpoints (DIR/step-N/): back up each new one, once it has settled,
    /// as its own snapshot tagged step=N.
    Watch(cmd::lifecycle::WatchArgs),
    /// List, add or remove the stores that hold the vault's shards.
    #[command(subcommand)]
    Store(cmd::heal::StoreCommand),
    /// The catalog that holds the chunk index (see --catalog): `catalog status` shows what it holds per
    /// tenant, `catalog rebuild` reads it again from the index files on the stores.
    #[command(subcommand)]
    Catalog(cmd::catalog::CatalogCommand),
    /// Read every shard on every store and check its hash; --repair rebuilds what is missing or rotten.
    Scrub(cmd::heal::ScrubArgs),
    /// Rebuild shards that are missing (a lost store, a failed write) and copy metadata to every store.
    Repair(args::ThrottleArgs),
    /// Move shards to the stores placement now picks (after `store add` or `store remove`).
    Rebalance(args::ThrottleArgs),
    /// Each store's health, usage and fill, degraded packs, and the vault's durability.
    Status(cmd::heal::StatusArgs),
    /// How likely is loss: availability and yearly durability of a k+m layout, beside the naive product.
    ///
    /// Without --ec, the vault's own layout and store figures are used (needs --vault).
    Durability(cmd::heal::DurabilityArgs),
    /// Serve the vault over HTTPS to many tenants (see docs/API.md). Stops cleanly on SIGINT or SIGTERM.
    ///
    /// Example: mvault --vault /srv/vault server --listen 127.0.0.1:8443
    Server(cmd::server::ServerArgs),
    /// API tokens: `token create --role operator` (locally, with the vault's passphrase) makes the first
    /// one; over a server, an operator makes tenant admins and an admin makes its tenant's tokens.
    #[command(subcommand)]
    Token(args::TokenCommand),
    /// The server's audit log: `audit show [--tenant T]` and `audit verify` (finds edits, removals and
    /// reordering).
    #[command(subcommand)]
    Audit(args::AuditCommand),
    /// Freeze an S3 bucket (served by `server --s3-listen`) as a normal snapshot, keys as paths: then
    /// forget, prune, lock, copy, drill and restore apply to it.
    SnapshotBucket(cmd::server::SnapshotBucketArgs),
    /// This machine's single-core AES-256-GCM, BLAKE3 and zstd speeds on a sample of FILE (or of synthetic
    /// float weights): the raw limits bench/run compares mvault's throughput with.
    Speed(cmd::vault::SpeedArgs),
}

/// Rust ignores SIGPIPE, so `mvault ls | head` would panic in println! once the reader goes away. A reader
/// that stopped listening is not an error of ours: leave quietly with the shell's SIGPIPE status.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info.payload().downcast_ref::<String>().map(String::as_str).unwrap_or_default();
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

/// glibc's malloc raises its mmap threshold each time a large block is freed, after which multi-MiB pack
/// and chunk buffers come from the heap and stay there, fragmented: the S3 gateway with 8 parallel part
/// uploads peaked at 400-600 MiB this way, and at 131 MiB with the threshold fixed at 1 MiB. Buffers above
/// the fixed threshold are always their own mappings, returned to the system when freed. It is 4 MiB rather
/// than 1 MiB because each fresh mapping costs a page fault and a page clear per 4 KiB, and chunks (about a
/// MiB each) would pay that on every decode: at 1 MiB, `inspect` decoded BF16 at 0.40 GB/s, at 4 MiB at
/// 0.44-0.53 GB/s, with the gateway's peak at 144 MiB (tests/server/s3.sh) and a 4 GiB backup's at 76 MiB.
/// A fixed mmap threshold also freezes the trim threshold at 128 KiB: every freed chunk buffer at the top
/// of the heap went back to the system and the next one faulted its pages in again (`inspect` decoded FP32
/// at 0.9-1.0 GB/s, and at 1.7-2.1 GB/s with the heap's free top kept up to 32 MiB).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)] // one of the workspace's named exceptions
fn fix_malloc_mmap_threshold() {
    // SAFETY: mallopt only sets allocator parameters; it is called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 32 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn fix_malloc_mmap_threshold() {}

/// The one dispatcher: a server URL as `--vault` sends the command over HTTPS (remote mode), anything else
/// runs it on the vault here.
fn run(cli: Cli) -> Result<i32> {
    let g = &cli.global;
    if let Some(url) = g.vault.as_deref().filter(|v| v.starts_with("https://")) {
        return cmd::remote::run(g, url, cli.command);
    }
    match cli.command {
        Command::Server(a) => cmd::server::server(g, a),
        Command::Token(c) => cmd::server::token_local(g, c),
        Command::Audit(c) => cmd::server::audit_local(g, c),
        Command::SnapshotBucket(a) => cmd::server::snapshot_bucket_local(g, a),
        Command::Speed(a) => cmd::vault::speed(g, a),
        Command::Demo(a) => cmd::demo::run(g, a),
        Command::Init(a) => cmd::vault::init(g, a),
        Command::Backup(a) => cmd::vault::backup(g, a),
        Command::Snapshots => cmd::vault::snapshots(g),
        Command::Ls(a) => cmd::vault::ls(g, a),
        Command::Diff(a) => cmd::model::diff(g, a),
        Command::Inspect(a) => cmd::model::inspect(g, a),
        Command::Restore(a) => cmd::vault::restore(g, a),
        Command::Check(a) => cmd::vault::check(g, a),
        Command::Key(k) => cmd::vault::key(g, k),
        Command::Store(c) => cmd::heal::store(g, c),
        Command::Catalog(c) => cmd::catalog::catalog(g, c),
        Command::Forget(a) => cmd::lifecycle::forget(g, a),
        Command::Unlock(a) => cmd::lifecycle::unlock(g, a),
        Command::Tenant(c) => cmd::tenant::tenant(g, c),
        Command::Drill(a) => cmd::lifecycle::drill(g, a),
        Command::Copy(a) => cmd::lifecycle::copy(g, a),
        Command::Watch(a) => cmd::lifecycle::watch(g, a),
        Command::Prune(a) => cmd::lifecycle::prune(g, a),
        Command::Scrub(a) => cmd::heal::scrub(g, a),
        Command::Repair(a) => cmd::heal::repair(g, a),
        Command::Rebalance(a) => cmd::heal::rebalance(g, a),
        Command::Status(a) => cmd::heal::status(g, a),
        Command::Durability(a) => cmd::heal::durability(g, a),
    }
}

/// Whether the program lets the environment drive its fault points and clock.
#[derive(Clone, Copy, PartialEq)]
pub enum TestHooks {
    Off,
    /// The test binary only (the hooks exist only in a build with the `test-hooks` feature).
    #[cfg(feature = "test-hooks")]
    FromEnvironment,
}

/// The program: parse the arguments, run the command, exit with its code.
pub fn main(hooks: TestHooks) {
    #[cfg(feature = "test-hooks")]
    if hooks == TestHooks::FromEnvironment {
        mvault_core::enable_test_hooks();
    }
    let _ = hooks;
    fix_malloc_mmap_threshold();
    quiet_on_closed_stdout();
    // One TLS crypto provider for the process (OpenDAL's transport also links aws-lc; ring is used).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let code = match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mvault: error: {e}");
            // 2 is for a command the user must change; a lock or an outage (exit 1) passes by itself.
            match e {
                mvault_core::Error::Usage(_) => 2,
                _ => 1,
            }
        }
    };
    // The I/O runtime goes first: no store call may still be running while `exit` finalizes C libraries.
    mvault_core::shutdown_io();
    std::process::exit(code);
}
