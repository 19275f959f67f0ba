//! The disaster-recovery drill: prove that the vault can be recovered from the stores alone (minus the ones
//! named as lost) and a passphrase, by restoring the latest snapshot to a scratch directory, verifying every
//! byte against its keyed hash, and timing it.

use crate::error::{Error, Result};
use crate::ops::restore::{self, RestoreOptions};
use crate::repo::Repo;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Debug, Default, serde::Serialize)]
pub struct DrillReport {
    pub tenant: String,
    pub snapshot: String,
    pub snapshot_time: String,
    pub stores: usize,
    pub stores_lost: Vec<String>,
    pub files: u64,
    pub bytes: u64,
    pub open_seconds: f64,
    pub restore_seconds: f64,
    pub recovery_seconds: f64,
    pub throughput_mib_s: f64,
    pub verified: bool,
    pub scratch: Option<PathBuf>,
}

pub struct DrillOptions {
    /// Stores to treat as lost (ids or URLs).
    pub without: Vec<String>,
    /// Snapshot to restore (default: latest).
    pub snapshot: Option<String>,
    /// Where to restore; default a temporary directory, removed afterwards.
    pub scratch: Option<PathBuf>,
}

pub fn drill(location: &str, passphrase: &[u8], opts: &DrillOptions) -> Result<DrillReport> {
    let start = Instant::now();
    let open = crate::repo::OpenOptions { without: opts.without.clone(), ..Default::default() };
    let repo = Repo::open_with(location, passphrase, &open)?;
    let open_seconds = start.elapsed().as_secs_f64();
    let (id, snap) = repo.find_snapshot(opts.snapshot.as_deref().unwrap_or("latest"))?;
    let tmp;
    let target = match &opts.scratch {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::Builder::new()
                .prefix("mvault-drill-")
                .tempdir()
                .map_err(|e| Error::io("create", "scratch directory", e))?;
            tmp.path().to_path_buf()
        }
    };
    let r = restore::restore(
        &repo,
        &snap.tree_id()?,
        &RestoreOptions { target: target.clone(), verify: true, ..Default::default() },
        &restore::Progress::default(),
    )?;
    let total = start.elapsed().as_secs_f64();
    Ok(DrillReport {
        tenant: repo.tenant.clone(),
        snapshot: id.to_hex(),
        snapshot_time: snap.time.clone(),
        stores: repo.config.stores.len(),
        stores_lost: opts.without.clone(),
        files: r.files,
        bytes: r.bytes,
        open_seconds,
        restore_seconds: r.seconds,
        recovery_seconds: total,
        throughput_mib_s: r.bytes as f64 / (1 << 20) as f64 / r.seconds.max(1e-9),
        verified: r.verified_files == r.files,
        scratch: opts.scratch.clone(),
    })
}
