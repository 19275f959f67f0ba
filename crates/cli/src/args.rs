//! Argument types and parsers that more than one command group takes (local and remote commands share
//! `BackupArgs`, `RestoreArgs`, `LsArgs` and `TenantCommand`).

use clap::{Args, Subcommand};
use mvault_core::{Error, Result};
use mvault_server::registry;
use std::path::PathBuf;

/// Parse `K+M`.
pub fn parse_ec(spec: &str) -> Result<(u8, u8)> {
    let bad = || Error::Usage(format!("--ec {spec:?}: expected K+M such as 4+2"));
    let (k, m) = spec.split_once('+').ok_or_else(bad)?;
    let (k, m): (u8, u8) = (k.trim().parse().map_err(|_| bad())?, m.trim().parse().map_err(|_| bad())?);
    if k == 0 || k as usize + m as usize > 64 {
        return Err(bad());
    }
    Ok((k, m))
}

#[derive(Args)]
pub struct BackupArgs {
    /// Files and directories to back up; they are recorded by absolute path.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// A tag for the snapshot, such as run=42 (repeatable).
    #[arg(long = "tag", value_name = "K=V")]
    pub tags: Vec<String>,
    /// Record this host name instead of the machine's.
    #[arg(long)]
    pub host: Option<String>,
    /// Lock the snapshot against deletion for this long (e.g. 30d, 12h).
    #[arg(long, value_name = "DURATION", conflicts_with = "lock_until")]
    pub lock_for: Option<humantime::Duration>,
    /// Lock the snapshot against deletion until this date (YYYY-MM-DD or RFC 3339).
    #[arg(long, value_name = "DATE")]
    pub lock_until: Option<String>,
    /// Store a changed tensor as a lossless XOR delta against its previous version (same name, dtype and
    /// shape, found in the tenant's recent snapshots) when smaller; a version more than N deltas from a whole
    /// copy is stored whole, so restores never follow a long chain. 0 turns deltas off.
    #[arg(long, value_name = "N", default_value_t = mvault_core::format::delta::DEFAULT_MAX_DEPTH)]
    pub delta_depth: u8,
    /// Take previous tensor versions from this snapshot only (id prefix or `latest`).
    #[arg(long, value_name = "SNAP")]
    pub base: Option<String>,
}

#[derive(Args)]
pub struct LsArgs {
    /// Snapshot id prefix or `latest`.
    pub snapshot: String,
    /// Only entries at or under this absolute path.
    pub path: Option<String>,
}

#[derive(Args)]
pub struct RestoreArgs {
    /// Snapshot id prefix or `latest`.
    pub snapshot: String,
    /// Directory to restore under; it is created if needed.
    #[arg(long, value_name = "DIR")]
    pub target: PathBuf,
    /// Restore only paths matching this glob (absolute, e.g. '/data/ckpt/*.safetensors'); repeatable.
    #[arg(long, value_name = "GLOB")]
    pub include: Vec<String>,
    /// Re-read every restored file and check it against the snapshot.
    #[arg(long)]
    pub verify: bool,
    /// Leave holes for whole 4 KiB blocks of zeros (disk images, padded or pruned weights): the files read
    /// the same and take less disk.
    #[arg(long)]
    pub sparse: bool,
    /// Return without flushing the restored files to disk (restic, borg and cp do not flush either): faster,
    /// but a power cut soon after may lose what was restored. By default the restore is on disk when it ends.
    #[arg(long)]
    pub no_sync: bool,
}

/// `--limit`: a bandwidth cap for scrub, repair and rebalance.
#[derive(Args)]
pub struct ThrottleArgs {
    /// Write at most this many bytes per second (e.g. 50MiB), to leave bandwidth for others.
    #[arg(long, value_name = "BYTES/S")]
    pub limit: Option<String>,
}

pub fn parse_size(text: &str) -> Result<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| Error::Usage(format!("{text:?} is not a size such as 50MiB")))?;
    let mult = match unit.trim().to_ascii_lowercase().trim_end_matches("/s") {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1048576.0,
        "g" | "gb" => 1e9,
        "gib" => 1073741824.0,
        _ => return Err(Error::Usage(format!("{text:?}: unknown unit (use B, KiB, MiB, GiB, KB, MB, GB)"))),
    };
    Ok((n * mult) as u64)
}

impl ThrottleArgs {
    /// The cap in bytes per second, if one was given.
    pub fn bytes_per_second(&self) -> Result<Option<u64>> {
        self.limit.as_deref().map(parse_size).transpose()
    }
}

/// A tenant's quota and rate limits (`tenant create`, `tenant limits`).
#[derive(Args, Default)]
pub struct QuotaArgs {
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

impl QuotaArgs {
    pub fn limits(&self) -> Result<registry::Limits> {
        Ok(registry::Limits {
            max_bytes: self.max_bytes.as_deref().map(parse_size).transpose()?,
            max_snapshots: self.max_snapshots,
            requests_per_second: self.rps,
            bytes_per_second: self.bps.as_deref().map(parse_size).transpose()?,
        })
    }
}

#[derive(Subcommand)]
pub enum TenantCommand {
    /// Create a tenant with its own keys, dedup domain and prefix in every store (operator).
    Create {
        name: String,
        #[command(flatten)]
        limits: QuotaArgs,
    },
    /// List tenants with their limits and usage (operator).
    List,
    /// Set a tenant's quotas and rate limits; unset ones become unlimited (operator).
    #[command(alias = "quota")]
    Limits {
        name: String,
        #[command(flatten)]
        limits: QuotaArgs,
    },
    /// Crypto-shred a tenant: its keys are destroyed on every store first (its data is unreadable from that
    /// moment), then its data, tokens and record (operator).
    Delete {
        name: String,
        /// Required: say that the tenant's keys and data are to be destroyed.
        #[arg(long)]
        shred: bool,
    },
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

#[derive(Args)]
pub struct DiffArgs {
    /// The older snapshot (id prefix or `latest`).
    pub snapshot_a: String,
    /// The newer snapshot.
    pub snapshot_b: String,
    /// Also compare model files tensor by tensor. Snapshots of one directory each (say checkpoints step-1/
    /// and step-2/) are compared relative to that directory.
    #[arg(long)]
    pub tensors: bool,
}
