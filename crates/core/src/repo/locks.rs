//! Vault locks: `backup` and `check` hold a shared lock, `prune` (and `forget --prune`) an exclusive one, so
//! prune never deletes a pack that a running backup is about to reference.
//!
//! A lock is a small plaintext JSON object `locks/<id>` on every store: host, pid, the process's start time and
//! the host's boot id, user, kind, times. It names no data, so it is not encrypted. A holder refreshes it in
//! the background; a lock whose expiry has passed, or whose process on this same host is gone (no such pid, a
//! pid now used by a process that started at another time, or a host that has rebooted since), is stale: it
//! is reported and ignored, and removed by `prune`, `repair` and `unlock`. Acquiring writes our lock first and
//! then looks for conflicting ones, so two racing lockers can both back off but never both proceed.

use crate::error::{Error, Result};
use crate::ids::ObjectId;
use crate::repo::Repo;
use crate::store::Store;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How long a lock lives without a refresh. A temporary object older than this is no write in flight.
pub(crate) const TTL: Duration = Duration::from_secs(15 * 60);
const REFRESH: Duration = Duration::from_secs(60);

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LockInfo {
    pub kind: String,
    pub host: String,
    pub pid: u32,
    /// When the process started, in clock ticks after boot (`/proc/PID/stat` field 22): with `boot_id`, it
    /// tells the holder from a later process that was given the same pid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<u64>,
    /// The host's boot (`/proc/sys/kernel/random/boot_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    pub user: String,
    pub operation: String,
    pub created: String,
    pub expires: String,
}

impl LockInfo {
    fn exclusive(&self) -> bool {
        self.kind == "exclusive"
    }

    /// Why the lock is stale, if it is: expired, or held by a process of this host that no longer runs.
    pub fn stale_because(&self, now: SystemTime) -> Option<&'static str> {
        if humantime::parse_rfc3339(&self.expires).map(|e| e < now).unwrap_or(true) {
            return Some("expired");
        }
        if self.host != crate::repo::hostname() {
            return None;
        }
        if self.boot_id.is_some() && self.boot_id != boot_id() {
            return Some("its host has rebooted since");
        }
        match process_start(self.pid) {
            None => Some("its process is gone"),
            Some(t) if self.started.is_some_and(|s| s != t) => Some("its pid now belongs to another process"),
            Some(_) => None,
        }
    }

    pub fn stale(&self, now: SystemTime) -> bool {
        self.stale_because(now).is_some()
    }

    /// "shared lock of `backup` by user@host pid 42, since TIME", for messages.
    pub fn describe(&self) -> String {
        format!(
            "{} lock of `{}` by {}@{} pid {}, since {}",
            self.kind, self.operation, self.user, self.host, self.pid, self.created
        )
    }
}

/// A process's start time in clock ticks after boot, or None if no such process runs.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces or parentheses itself.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok().map(|s| s.trim().to_string())
}

/// What `unlock` did with one lock.
#[derive(Debug, serde::Serialize)]
pub struct Unlocked {
    pub path: String,
    pub lock: LockInfo,
    /// Why it was stale; None for a live lock.
    pub stale: Option<&'static str>,
    pub removed: bool,
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
        started: process_start(std::process::id()),
        boot_id: boot_id(),
        user: std::env::var("USER").unwrap_or_else(|_| "unknown".into()),
        operation: operation.into(),
        created: humantime::format_rfc3339_seconds(now).to_string(),
        expires: humantime::format_rfc3339_seconds(now + TTL).to_string(),
    }
}

impl Repo {
    /// Remove the stale locks (every lock with `all`), reporting each lock found and what was done with it.
    pub fn unlock(&self, all: bool) -> Result<Vec<Unlocked>> {
        let now = SystemTime::now();
        let mut out = Vec::new();
        for (path, lock) in self.locks()? {
            let stale = lock.stale_because(now);
            let removed = all || stale.is_some();
            if removed {
                self.delete_meta(&path)?;
            }
            out.push(Unlocked { path, lock, stale, removed });
        }
        Ok(out)
    }

    /// Remove the stale locks; returns how many there were.
    pub fn remove_stale_locks(&self) -> Result<u64> {
        Ok(self.unlock(false)?.iter().filter(|u| u.removed).count() as u64)
    }

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
        let mut stale = Vec::new();
        for (p, l) in others.iter().filter(|(p, _)| *p != path) {
            if let Some(why) = l.stale_because(now) {
                stale.push((p, l, why));
                continue;
            }
            if exclusive || l.exclusive() {
                release(&stores);
                return Err(Error::Locked { holder: l.describe(), expires: l.expires.clone(), path: p.clone() });
            }
        }
        match stale.as_slice() {
            [] => {}
            [(p, l, why)] => {
                report(&format!("stale {} ({why}) ignored: {p}; `mvault unlock` removes it", l.describe()))
            }
            [(p, l, why), ..] => report(&format!(
                "{} stale locks ignored (one: {}, {why}: {p}); `mvault unlock` removes them",
                stale.len(),
                l.describe()
            )),
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
