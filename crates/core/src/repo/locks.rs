//! Vault locks: `backup` and `check` hold a shared lock, `prune` (and `forget --prune`) an exclusive one, so
//! prune never deletes a pack that a running backup is about to reference.
//!
//! A lock is a small plaintext JSON object `locks/<id>` on every store: host, pid, user, kind, times. It names
//! no data, so it is not encrypted. A holder refreshes it in the background; a lock whose expiry has passed,
//! or whose process on this same host is gone, is stale: it is reported and ignored (and removed by an
//! exclusive locker). Acquiring writes our lock first and then looks for conflicting ones, so two racing
//! lockers can both back off but never both proceed.

use crate::error::{Error, Result};
use crate::ids::ObjectId;
use crate::repo::Repo;
use crate::store::Store;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How long a lock lives without a refresh.
const TTL: Duration = Duration::from_secs(15 * 60);
const REFRESH: Duration = Duration::from_secs(60);

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LockInfo {
    pub kind: String,
    pub host: String,
    pub pid: u32,
    pub user: String,
    pub operation: String,
    pub created: String,
    pub expires: String,
}

impl LockInfo {
    fn exclusive(&self) -> bool {
        self.kind == "exclusive"
    }

    /// Expired, or held by a process of this host that no longer runs.
    pub fn stale(&self, now: SystemTime) -> bool {
        let expired = humantime::parse_rfc3339(&self.expires).map(|e| e < now).unwrap_or(true);
        let dead =
            self.host == crate::repo::hostname() && !std::path::Path::new(&format!("/proc/{}", self.pid)).exists();
        expired || dead
    }
}

/// A held lock; dropping it stops the refresher and deletes the lock object.
pub struct LockGuard {
    path: String,
    stores: Vec<Arc<dyn Store>>,
    stop: Arc<AtomicBool>,
    refresher: Option<std::thread::JoinHandle<()>>,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.refresher.take() {
            h.thread().unpark();
            let _ = h.join();
        }
        for s in &self.stores {
            let _ = s.delete(&self.path);
        }
    }
}

fn info(kind: &str, operation: &str) -> LockInfo {
    let now = SystemTime::now();
    LockInfo {
        kind: kind.into(),
        host: crate::repo::hostname(),
        pid: std::process::id(),
        user: std::env::var("USER").unwrap_or_else(|_| "unknown".into()),
        operation: operation.into(),
        created: humantime::format_rfc3339_seconds(now).to_string(),
        expires: humantime::format_rfc3339_seconds(now + TTL).to_string(),
    }
}

impl Repo {
    /// Every lock object on the stores that are up, with its path.
    pub fn locks(&self) -> Result<Vec<(String, LockInfo)>> {
        let mut out = Vec::new();
        for name in self.list_meta("locks")? {
            match self.read_meta(&name, |b| {
                serde_json::from_slice::<LockInfo>(b).map_err(|e| Error::malformed(&name, e.to_string()))
            }) {
                Ok(l) => out.push((name, l)),
                Err(Error::NotFound { .. }) => {} // released meanwhile
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Take a lock for `operation`. Stale locks are passed to `report` (and removed when taking an exclusive
    /// lock); a live conflicting lock is an error naming its holder.
    pub fn lock(&self, exclusive: bool, operation: &str, report: &dyn Fn(&str)) -> Result<LockGuard> {
        let kind = if exclusive { "exclusive" } else { "shared" };
        let path = format!("locks/{}", ObjectId::random());
        let mine = info(kind, operation);
        self.write_meta(&path, &serde_json::to_vec_pretty(&mine).expect("lock serializes"))?;
        let stores: Vec<Arc<dyn Store>> =
            self.stores.iter().enumerate().filter(|(i, _)| !self.is_down(*i)).map(|(_, s)| s.clone()).collect();
        let release = |stores: &[Arc<dyn Store>]| {
            for s in stores {
                let _ = s.delete(&path);
            }
        };
        let now = SystemTime::now();
        let others = match self.locks() {
            Ok(l) => l,
            Err(e) => {
                release(&stores);
                return Err(e);
            }
        };
        for (p, l) in others.iter().filter(|(p, _)| *p != path) {
            if l.stale(now) {
                report(&format!(
                    "stale {} lock {p} of {} (pid {} on {}, since {}) ignored",
                    l.kind, l.operation, l.pid, l.host, l.created
                ));
                if exclusive {
                    let _ = self.delete_meta(p);
                }
                continue;
            }
            if exclusive || l.exclusive() {
                release(&stores);
                return Err(Error::Locked {
                    holder: format!(
                        "{} lock of `{}` by {}@{} pid {}, since {}",
                        l.kind, l.operation, l.user, l.host, l.pid, l.created
                    ),
                    expires: l.expires.clone(),
                    path: p.clone(),
                });
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (stop2, stores2, path2) = (stop.clone(), stores.clone(), path.clone());
        let refresher = std::thread::spawn(move || {
            let mut me = mine;
            while !stop2.load(Ordering::Relaxed) {
                std::thread::park_timeout(REFRESH);
                if stop2.load(Ordering::Relaxed) {
                    break;
                }
                me.expires = humantime::format_rfc3339_seconds(SystemTime::now() + TTL).to_string();
                let bytes = serde_json::to_vec_pretty(&me).expect("lock serializes");
                for s in &stores2 {
                    let _ = s.put(&path2, &bytes);
                }
            }
        });
        Ok(LockGuard { path, stores, stop, refresher: Some(refresher) })
    }
}
