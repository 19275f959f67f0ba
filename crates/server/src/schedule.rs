//! Jobs the server runs on its own (`mvault server --config FILE`, section `[schedule]`): retention
//! (`forget`), `prune`, `scrub` and offsite `copy`, each at its interval, one run at a time per job. Every run
//! is an audit record (action `job.<kind>`, time its start, result 200 or 500 with the error) and shows in
//! `/metrics` (`mvault_job_runs_total{job,result}`, `mvault_job_last_success_timestamp_seconds{job}`).
//! Instances with the same schedule over one shared catalog run each job once per period between them (a
//! lease in the catalog, `Repo::claim`); an instance that finds the job claimed skips that turn.
//!
//! ```toml
//! [[schedule.job]]
//! kind = "forget"          # forget | prune | scrub | copy | snapshot-bucket
//! every = "1d"             # humantime: 90s, 6h, 1d ...
//! tenant = "team-a"        # forget, prune, scrub, copy: one tenant (default: every tenant)
//! keep_last = 7            # forget: keep_last/hourly/daily/weekly/monthly/yearly, keep_within, keep_tag
//! keep_daily = 14
//!
//! [[schedule.job]]
//! kind = "copy"
//! every = "1d"
//! tenant = "team-a"
//! to = "/mnt/offsite/vault"          # the offsite vault (any store URL)
//! to_password_file = "/etc/mvault/offsite.pw"
//!
//! [[schedule.job]]
//! kind = "snapshot-bucket"  # freeze an S3 bucket as a snapshot
//! every = "1h"
//! tenant = "team-a"
//! bucket = "checkpoints"
//!
//! [s3]
//! keep_noncurrent = "7d"     # overwritten/deleted S3 versions are kept this long (expired before prune)
//! abort_uploads_after = "7d" # multipart uploads never completed are dropped after this long
//! ```

use crate::{audit, App};
use mvault_core::prune::{self, ForgetOptions, PruneOptions};
use mvault_core::retention::Policy;
use mvault_core::{Error, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub schedule: Schedule,
    #[serde(default)]
    pub s3: S3Config,
}

/// Noncurrent S3 versions are kept this long by default.
pub const DEFAULT_KEEP_NONCURRENT: Duration = Duration::from_secs(7 * 86_400);

/// `[s3]`: the gateway's retention, applied before each prune job: overwritten and deleted versions, and
/// multipart uploads never completed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// humantime, e.g. "7d" (the default) or "0s" to drop old versions at the next prune.
    pub keep_noncurrent: Option<String>,
    /// humantime; default "7d".
    pub abort_uploads_after: Option<String>,
}

impl S3Config {
    /// (keep noncurrent versions, abort incomplete uploads after).
    pub fn retention(&self) -> Result<(Duration, Duration)> {
        let parse = |name: &str, v: &Option<String>| match v {
            None => Ok(DEFAULT_KEEP_NONCURRENT),
            Some(s) => humantime::parse_duration(s).map_err(|e| Error::Usage(format!("[s3] {name} = {s:?}: {e}"))),
        };
        Ok((parse("keep_noncurrent", &self.keep_noncurrent)?, parse("abort_uploads_after", &self.abort_uploads_after)?))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    #[serde(default)]
    pub job: Vec<Job>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Forget,
    Prune,
    Scrub,
    Copy,
    /// Freeze an S3 bucket as a snapshot (`tenant` and `bucket`).
    SnapshotBucket,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Forget => "forget",
            Kind::Prune => "prune",
            Kind::Scrub => "scrub",
            Kind::Copy => "copy",
            Kind::SnapshotBucket => "snapshot-bucket",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Job {
    pub kind: Kind,
    pub every: String,
    pub tenant: Option<String>,
    #[serde(default)]
    pub keep_last: usize,
    #[serde(default)]
    pub keep_hourly: usize,
    #[serde(default)]
    pub keep_daily: usize,
    #[serde(default)]
    pub keep_weekly: usize,
    #[serde(default)]
    pub keep_monthly: usize,
    #[serde(default)]
    pub keep_yearly: usize,
    pub keep_within: Option<String>,
    #[serde(default)]
    pub keep_tag: Vec<String>,
    /// scrub: also rebuild what is missing or rotten.
    #[serde(default)]
    pub repair: bool,
    /// copy: the target vault and the file holding its passphrase.
    pub to: Option<String>,
    pub to_password_file: Option<PathBuf>,
    /// snapshot-bucket: the bucket.
    pub bucket: Option<String>,
}

impl Job {
    pub fn interval(&self) -> Result<Duration> {
        let d: Duration = humantime::parse_duration(&self.every)
            .map_err(|e| Error::Usage(format!("schedule: every = {:?}: {e}", self.every)))?;
        if d < Duration::from_secs(1) {
            return Err(Error::Usage(format!("schedule: every = {:?} is shorter than a second", self.every)));
        }
        Ok(d)
    }

    fn policy(&self) -> Result<Policy> {
        Ok(Policy {
            last: self.keep_last,
            hourly: self.keep_hourly,
            daily: self.keep_daily,
            weekly: self.keep_weekly,
            monthly: self.keep_monthly,
            yearly: self.keep_yearly,
            within: self
                .keep_within
                .as_deref()
                .map(|w| humantime::parse_duration(w).map_err(|e| Error::Usage(format!("schedule: keep_within: {e}"))))
                .transpose()?,
            tags: self.keep_tag.clone(),
        })
    }

    /// Check a job before the server starts, so a bad config stops it with a clear message.
    fn validate(&self) -> Result<()> {
        self.interval()?;
        match self.kind {
            Kind::Forget if self.policy()?.is_empty() => {
                Err(Error::Usage("schedule: a forget job needs a policy (keep_last, keep_daily, ...)".into()))
            }
            Kind::Copy if self.to.is_none() || self.to_password_file.is_none() || self.tenant.is_none() => {
                Err(Error::Usage("schedule: a copy job needs `tenant`, `to` and `to_password_file`".into()))
            }
            Kind::SnapshotBucket if self.tenant.is_none() || self.bucket.is_none() => {
                Err(Error::Usage("schedule: a snapshot-bucket job needs `tenant` and `bucket`".into()))
            }
            _ => Ok(()),
        }
    }

    fn name(&self, index: usize) -> String {
        format!("{}-{index}", self.kind.name())
    }
}

pub fn load(path: &std::path::Path) -> Result<Config> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
    let cfg: Config = toml::from_str(&text).map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
    for j in &cfg.schedule.job {
        j.validate().map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
    }
    Ok(cfg)
}

/// Job outcomes for `/metrics`: (runs by result, last success as Unix seconds).
#[derive(Default)]
pub struct JobStats {
    inner: Mutex<BTreeMap<String, (u64, u64, u64)>>,
}

impl JobStats {
    fn record(&self, job: &str, ok: bool) {
        let mut m = self.inner.lock().expect("job stats");
        let e = m.entry(job.to_string()).or_default();
        if ok {
            e.0 += 1;
            e.2 = crate::auth::now();
        } else {
            e.1 += 1;
        }
    }

    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let m = self.inner.lock().expect("job stats");
        out.push_str(
            "# HELP mvault_job_runs_total Scheduled job runs by result.\n# TYPE mvault_job_runs_total counter\n",
        );
        for (job, (ok, failed, _)) in m.iter() {
            let _ = writeln!(out, "mvault_job_runs_total{{job=\"{job}\",result=\"ok\"}} {ok}");
            let _ = writeln!(out, "mvault_job_runs_total{{job=\"{job}\",result=\"error\"}} {failed}");
        }
        out.push_str("# HELP mvault_job_last_success_timestamp_seconds When a job last succeeded.\n");
        out.push_str("# TYPE mvault_job_last_success_timestamp_seconds gauge\n");
        for (job, (_, _, last)) in m.iter() {
            let _ = writeln!(out, "mvault_job_last_success_timestamp_seconds{{job=\"{job}\"}} {last}");
        }
    }
}

impl App {
    /// The tenants a job covers.
    fn job_tenants(&self, job: &Job) -> Result<Vec<String>> {
        match &job.tenant {
            Some(t) => Ok(vec![t.clone()]),
            None => Ok(crate::registry::list(&self.sys)?.into_iter().map(|r| r.name).collect()),
        }
    }

    /// Run one job once; returns a one-line summary.
    pub fn run_job(&self, job: &Job) -> Result<String> {
        let quiet = |_: &str| {};
        let mut parts = Vec::new();
        for name in self.job_tenants(job)? {
            // Each run works on its own view of the tenant, so requests are never held up by a long job.
            let repo = self.base.for_tenant(&name)?;
            match job.kind {
                Kind::Forget => {
                    let opts = ForgetOptions {
                        policy: job.policy()?,
                        ids: vec![],
                        group_by: Default::default(),
                        dry_run: false,
                    };
                    let r = prune::forget(&repo, &opts)?;
                    parts.push(format!("{name}: {} snapshots removed", r.removed.len()));
                }
                Kind::Prune => {
                    let t = self.tenant(&name)?;
                    // S3 versions past their retention go first, so prune frees their chunks.
                    let expired = t.expire_versions(self.s3_retention.0, self.s3_retention.1)?;
                    let _no_writers = t.writes.write().expect("tenant writes");
                    // The tenant's index stays locked until it is read again: no S3 upload may dedup against
                    // a chunk this prune deletes (uploads in flight hold the vault's shared lock, so this
                    // prune fails at once under them instead).
                    let mut view = t.repo.write().expect("tenant repo");
                    let plan = prune::prune(&repo, &PruneOptions::default(), &quiet);
                    // Prune rewrote this tenant's index (a failed one may have too): read it again.
                    *view = self.base.for_tenant(&name)?;
                    drop(view);
                    let plan = plan?;
                    if expired > 0 {
                        parts.push(format!("{name}: {expired} S3 versions or uploads expired"));
                    }
                    parts.push(format!("{name}: {}", serde_json::to_string(&plan).unwrap_or_default()));
                }
                Kind::Scrub => {
                    let r = repo.scrub(job.repair, None, &Default::default())?;
                    parts.push(format!(
                        "{name}: {} shards checked, {} missing, {} corrupt, {} repaired",
                        r.shards_checked,
                        r.missing.len(),
                        r.corrupt.len(),
                        r.shards_repaired
                    ));
                }
                Kind::Copy => {
                    let (to, pwf) = (job.to.as_deref().unwrap_or_default(), job.to_password_file.as_deref());
                    let pw = std::fs::read_to_string(pwf.unwrap_or(std::path::Path::new("")))
                        .map_err(|e| Error::Usage(format!("copy job: password file: {e}")))?;
                    let mut dst = mvault_core::Repo::open(to, pw.lines().next().unwrap_or_default().as_bytes())?;
                    let r = mvault_core::copy::copy(&repo, &mut dst, &[], &Default::default(), &quiet)?;
                    parts.push(format!("{name}: {} snapshots copied to {to}", r.copied.len()));
                }
                Kind::SnapshotBucket => {
                    let bucket = job.bucket.as_deref().unwrap_or_default();
                    // The vault's shared lock while the snapshot's trees are written and it is saved.
                    let _lock = self.base.lock(false, "scheduled snapshot-bucket", &quiet)?;
                    let made = self.tenant(&name)?.snapshot_bucket(bucket, &[])?;
                    parts.push(format!("{name}: bucket {bucket} snapshot {} ({} objects)", made.id, made.objects));
                }
            }
        }
        Ok(parts.join("; "))
    }
}

/// Start every job's loop on the server's runtime.
pub fn start(app: Arc<App>, cfg: Config) {
    for (i, job) in cfg.schedule.job.into_iter().enumerate() {
        let app = app.clone();
        let name = job.name(i);
        let every = job.interval().expect("validated at load");
        let job = Arc::new(job);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let (a, j, claim_name) = (app.clone(), job.clone(), name.clone());
                // A run's record carries its start.
                let started = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
                // Instances with the same schedule on one shared catalog run each job once per period between
                // them: the one that claims it runs, the others skip this turn.
                let out =
                    tokio::task::spawn_blocking(move || match a.sys.claim(&format!("job {claim_name}"), every)? {
                        mvault_core::Claim::Taken => Ok(None),
                        _held => a.run_job(&j).map(Some),
                    })
                    .await;
                let (ok, detail) = match out {
                    Ok(Ok(None)) => continue,
                    Ok(Ok(Some(s))) => (true, s),
                    Ok(Err(e)) => (false, e.to_string()),
                    Err(e) => (false, format!("job panicked: {e}")),
                };
                app.jobs.record(&name, ok);
                app.audit.append(audit::Record {
                    time: started,
                    action: format!("job.{}", job.kind.name()),
                    target: name.clone(),
                    tenant: job.tenant.clone(),
                    client: "scheduler".into(),
                    result: if ok { 200 } else { 500 },
                    detail,
                    ..Default::default()
                });
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mvault_core::crypto::KdfParams;
    use mvault_core::format::pack::BlobType;
    use mvault_core::format::snapshot::Snapshot;
    use mvault_core::format::tree::{self, Node, NodeKind};
    use mvault_core::ingest::{self, Incoming};
    use mvault_core::{InitOptions, Repo};

    fn vault(path: &std::path::Path) -> Repo {
        let opts = InitOptions { kdf: KdfParams { m_kib: 64, t: 1, p: 1 }, ..Default::default() };
        Repo::init(path.to_str().unwrap(), b"pw", &opts).unwrap()
    }

    /// A snapshot of one file holding `data`, made the way the server's upload path makes one.
    fn snapshot(app: &App, tenant: &str, data: &[u8]) {
        let t = app.tenant(tenant).unwrap();
        let repo = t.repo.read().unwrap();
        let keys = repo.current_keys().clone();
        let chunk = keys.chunk_id(data);
        let node = Node {
            name: b"f".to_vec(),
            kind: NodeKind::File { chunks: vec![chunk] },
            mode: 0o644,
            mtime_sec: 0,
            mtime_nsec: 0,
            size: data.len() as u64,
            dev: 0,
            inode: 0,
        };
        let tree_bytes = tree::encode(&[node]);
        let root = keys.chunk_id(&tree_bytes);
        let items = vec![
            Incoming { blob_type: BlobType::Data, id: chunk, float: None, data: data.to_vec() },
            Incoming { blob_type: BlobType::Tree, id: root, float: None, data: tree_bytes },
        ];
        let prepared = ingest::prepare(&repo, items).unwrap();
        ingest::store(&repo, prepared).unwrap();
        let snap = Snapshot {
            version: 1,
            time: humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string(),
            host: "h".into(),
            tags: vec![],
            paths: vec!["/f".into()],
            tree: root.to_hex(),
            parent: None,
            locked_until: None,
            summary: Default::default(),
            original: None,
        };
        ingest::commit_snapshot(&repo, &snap).unwrap();
    }

    fn job(toml_text: &str) -> Job {
        let cfg: Config = toml::from_str(toml_text).unwrap();
        let j = cfg.schedule.job.into_iter().next().unwrap();
        j.validate().unwrap();
        j
    }

    #[test]
    fn configs_are_checked_before_the_server_starts() {
        for bad in [
            "[[schedule.job]]\nkind = \"forget\"\nevery = \"1d\"\n",
            "[[schedule.job]]\nkind = \"copy\"\nevery = \"1d\"\n",
            "[[schedule.job]]\nkind = \"copy\"\nevery = \"1d\"\nto = \"/x\"\nto_password_file = \"/p\"\n",
            "[[schedule.job]]\nkind = \"scrub\"\nevery = \"soon\"\n",
            "[[schedule.job]]\nkind = \"scrub\"\nevery = \"10ms\"\n",
            "[[schedule.job]]\nkind = \"snapshot-bucket\"\nevery = \"1h\"\ntenant = \"a\"\n",
        ] {
            let cfg: Config = toml::from_str(bad).unwrap();
            assert!(cfg.schedule.job[0].validate().is_err(), "{bad}");
        }
        assert!(toml::from_str::<Config>("[[schedule.job]]\nkind = \"defrag\"\nevery = \"1d\"\n").is_err());
        assert!(toml::from_str::<Config>("[[schedule.job]]\nkind = \"scrub\"\nevery = \"1d\"\ntypo = 1\n").is_err());
        let s3: Config = toml::from_str("[s3]\nkeep_noncurrent = \"2h\"\n").unwrap();
        assert_eq!(s3.s3.retention().unwrap(), (Duration::from_secs(7200), DEFAULT_KEEP_NONCURRENT));
        let bad: Config = toml::from_str("[s3]\nabort_uploads_after = \"later\"\n").unwrap();
        assert!(bad.s3.retention().is_err());
    }

    #[test]
    fn forget_prune_scrub_and_copy_jobs_do_their_work() {
        let d = tempfile::tempdir().unwrap();
        let base = vault(&d.path().join("v"));
        let app = App::new(base).unwrap();
        crate::registry::create(&app.base, &app.sys, "a", Default::default()).unwrap();
        for i in 0..3u8 {
            snapshot(&app, "a", &vec![i; 50_000]);
        }
        let count = |app: &App| app.tenant("a").unwrap().repo.read().unwrap().snapshots().unwrap().0.len();
        assert_eq!(count(&app), 3);

        let out = app.run_job(&job("[[schedule.job]]\nkind = \"forget\"\nevery = \"1h\"\nkeep_last = 1\n")).unwrap();
        assert!(out.contains("a: 2 snapshots removed"), "{out}");
        assert_eq!(count(&app), 1);

        let before = app.tenant("a").unwrap().usage().unwrap().bytes;
        app.run_job(&job("[[schedule.job]]\nkind = \"prune\"\nevery = \"1h\"\ntenant = \"a\"\n")).unwrap();
        let after = app.tenant("a").unwrap().usage().unwrap().bytes;
        assert!(after < before, "prune left {after} of {before} bytes");

        let out = app.run_job(&job("[[schedule.job]]\nkind = \"scrub\"\nevery = \"1h\"\n")).unwrap();
        assert!(out.contains("0 missing, 0 corrupt"), "{out}");

        let offsite = d.path().join("offsite");
        vault(&offsite);
        let pwf = d.path().join("pw");
        std::fs::write(&pwf, "pw\n").unwrap();
        let copy = format!(
            "[[schedule.job]]\nkind = \"copy\"\nevery = \"1h\"\ntenant = \"a\"\nto = {:?}\nto_password_file = {:?}\n",
            offsite.to_str().unwrap(),
            pwf.to_str().unwrap()
        );
        let out = app.run_job(&job(&copy)).unwrap();
        assert!(out.contains("1 snapshots copied"), "{out}");
        let there = Repo::open(offsite.to_str().unwrap(), b"pw").unwrap();
        assert_eq!(there.snapshots().unwrap().0.len(), 1);
    }
}
