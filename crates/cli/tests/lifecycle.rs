//! Retention, locked snapshots, prune and vault locks.

use crate::common::*;
use mvault_core::backup::{self, BackupOptions};
use mvault_core::crypto::KdfParams;
use mvault_core::dircmp;
use mvault_core::retention::days_from_civil;
use mvault_core::{InitOptions, Repo};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn at(year: i64, month: u32, day: u32, hour: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(days_from_civil(year, month, day) as u64 * 86_400 + hour * 3600)
}

fn stamp(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

/// A vault made in-process with cheap Argon2 settings, so hundreds of snapshots are quick to make.
fn quick_vault(dir: &Path) -> Repo {
    let opts = InitOptions { kdf: KdfParams { m_kib: 64, t: 1, p: 1 }, ..Default::default() };
    Repo::init(dir.to_str().unwrap(), PASS.as_bytes(), &opts).unwrap()
}

fn snap_at(repo: &mut Repo, src: &Path, time: SystemTime, locked_until: Option<SystemTime>) {
    std::fs::write(src.join("stamp.txt"), stamp(time)).unwrap();
    let opts = BackupOptions {
        paths: vec![src.to_path_buf()],
        time: Some(time),
        locked_until: locked_until.map(stamp),
        ..Default::default()
    };
    backup::backup(repo, &opts, &backup::Progress::default(), &|e| panic!("{e}")).unwrap();
}

#[test]
fn a_year_of_snapshots_then_forget_keeps_exactly_the_policy_set() {
    let t = tempfile::tempdir().unwrap();
    let (vault, src) = (t.path().join("vault"), t.path().join("ckpt"));
    std::fs::create_dir_all(&src).unwrap();
    let mut repo = quick_vault(&vault);
    // Daily at noon from 2025-11-24 to 2026-11-23, then hourly through 2026-11-24.
    let first = days_from_civil(2025, 11, 24);
    let last = days_from_civil(2026, 11, 23);
    for day in first..=last {
        let (y, m, d) = mvault_core::retention::civil_from_days(day);
        snap_at(&mut repo, &src, at(y, m, d, 12), None);
    }
    for h in 0..24 {
        snap_at(&mut repo, &src, at(2026, 11, 24, h), None);
    }
    // One old snapshot locked until 2027: no policy, no id, no prune may remove it.
    snap_at(&mut repo, &src, at(2025, 12, 15, 18), Some(at(2027, 1, 1, 0)));
    drop(repo);

    let now = "2026-11-25T00:00:00Z";
    let forget = |args: &[&str]| cmd(&vault, args).env("MVAULT_TEST_NOW", now).output().unwrap();
    let policy = [
        "--keep-hourly",
        "24",
        "--keep-daily",
        "7",
        "--keep-weekly",
        "4",
        "--keep-monthly",
        "12",
        "--keep-yearly",
        "2",
    ];
    let mut args = vec!["--json", "forget"];
    args.extend(policy);
    let o = forget(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // The expected set, worked out by hand from the calendar:
    let mut expected: BTreeSet<String> = BTreeSet::new();
    for h in 0..24 {
        expected.insert(stamp(at(2026, 11, 24, h))); // hourly 24 (also daily, weekly W48, monthly, yearly)
    }
    for d in 18..=23 {
        expected.insert(stamp(at(2026, 11, d, 12))); // daily 7: Nov 24 .. Nov 18 (Nov 22 is also week 47's)
    }
    expected.insert(stamp(at(2026, 11, 15, 12))); // weekly: W46 ends Sunday Nov 15
    expected.insert(stamp(at(2026, 11, 8, 12))); // weekly: W45 ends Sunday Nov 8
    for (y, m, d) in [
        (2026, 10, 31),
        (2026, 9, 30),
        (2026, 8, 31),
        (2026, 7, 31),
        (2026, 6, 30),
        (2026, 5, 31),
        (2026, 4, 30),
        (2026, 3, 31),
        (2026, 2, 28),
        (2026, 1, 31),
        (2025, 12, 31),
    ] {
        expected.insert(stamp(at(y, m, d, 12))); // monthly 12 (Dec 31 2025 is also yearly 2025)
    }
    expected.insert(stamp(at(2025, 12, 15, 18))); // locked
    assert_eq!(expected.len(), 24 + 6 + 2 + 11 + 1);

    let snaps = json(&vault, &["snapshots"]);
    let kept: BTreeSet<String> = snaps
        .as_array()
        .unwrap()
        .iter()
        .map(|s| stamp(humantime::parse_rfc3339(s["time"].as_str().unwrap()).unwrap()))
        .collect();
    assert_eq!(kept, expected);

    // The locked snapshot survives every attempt: by id, by a policy that keeps nothing, and prune.
    let locked = snaps.as_array().unwrap().iter().find(|s| s["locked_until"].is_string()).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let o = forget(&["forget", &locked[..10]]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("locked"), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(forget(&["forget", "--keep-last", "1", "--prune"]).status.success());
    let left: Vec<String> = json(&vault, &["snapshots"])
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left.len(), 2, "the newest and the locked one");
    assert!(left.contains(&locked));
    let target = t.path().join("out");
    ok(&vault, &["restore", &locked[..10], "--target", target.to_str().unwrap(), "--verify"]);
    assert_eq!(
        std::fs::read_to_string(restored(&target, &src).join("stamp.txt")).unwrap(),
        stamp(at(2025, 12, 15, 18))
    );
    // Once the lock has expired, it can go.
    let o = cmd(&vault, &["forget", &locked[..10]]).env("MVAULT_TEST_NOW", "2027-01-02T00:00:00Z").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Five snapshots of a growing, changing tree; forget three, prune: space comes back, the rest restores.
#[test]
fn prune_frees_the_garbage_and_keeps_every_kept_snapshot_whole_even_when_killed() {
    let t = tempfile::tempdir().unwrap();
    let vault = t.path().join("vault");
    ok(&vault, &["init", "--pack-size", "4MiB"]);
    let mut sources = Vec::new();
    for i in 0..5u64 {
        let src = t.path().join(format!("v{i}"));
        std::fs::create_dir_all(&src).unwrap();
        write_random_file(&src.join("shared.bin"), 6 << 20, 1); // the same in every version
        write_random_file(&src.join("unique.bin"), 10 << 20, 100 + i); // different in every version
        sample_tree(&src.join("meta"));
        ok(&vault, &["backup", src.to_str().unwrap()]);
        sources.push(src);
    }
    let ids: Vec<String> = json(&vault, &["snapshots"])
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    let before = dir_size(&vault);
    ok(&vault, &["forget", &ids[0], &ids[1], &ids[3]]);
    let forgotten = dir_size(&vault);
    let dry = json(&vault, &["prune", "--dry-run"]);
    assert!(dry["bytes_freed"].as_u64().unwrap() > 25 << 20, "{dry}");
    assert_eq!(dir_size(&vault), forgotten, "a dry run changes nothing");

    // Crash a plain prune at a spread of its steps, each run picking up what the one before left; every time,
    // what is kept stays whole.
    for point in ["prune-after-new-index", "prune-mid-index-delete@1", "prune-mid-pack-delete@1"] {
        let o = cmd(&vault, &["prune", "--quiet"]).env("MVAULT_TEST_CRASH", point).output().unwrap();
        assert!(!o.status.success(), "prune should have crashed at {point}");
        let c = json(&vault, &["check", "--read-data"]);
        assert_eq!(c["ok"], true, "after a crash at {point}: {c}");
    }
    // And crash at every step of prune's write order, rerunning after each.
    for point in [
        "prune-after-repack",
        "prune-after-new-index",
        "prune-mid-index-delete",
        "prune-after-index-delete",
        "prune-mid-pack-delete",
    ] {
        let o = cmd(&vault, &["prune", "--repack-unused", "1%"]).env("MVAULT_TEST_CRASH", point).output().unwrap();
        assert!(!o.status.success(), "{point}: prune should have crashed there");
        let c = json(&vault, &["check", "--read-data"]);
        assert_eq!(c["ok"], true, "after a crash at {point}: {c}");
        for (i, id) in [(2usize, &ids[2]), (4, &ids[4])] {
            let target = t.path().join(format!("crash{i}"));
            ok(&vault, &["restore", id, "--target", target.to_str().unwrap(), "--verify"]);
            dircmp::compare(&sources[i], &restored(&target, &sources[i])).unwrap();
            std::fs::remove_dir_all(&target).unwrap();
        }
        // the garbage that the last backup of v4 left behind: a fresh snapshot of changed data, forgotten
        let extra = t.path().join("extra");
        std::fs::create_dir_all(&extra).unwrap();
        write_random_file(&extra.join("x.bin"), 3 << 20, point.len() as u64);
        let b = json(&vault, &["backup", extra.to_str().unwrap()]);
        ok(&vault, &["forget", b["snapshot_id"].as_str().unwrap()]);
    }
    let p = json(&vault, &["prune"]);
    let after = dir_size(&vault);
    // three unique 10 MiB files are garbage (random data does not compress)
    assert!(before - after > 28 << 20, "freed only {} bytes: {p}", before - after);
    assert_eq!(json(&vault, &["check", "--read-data"])["ok"], true);
    assert_eq!(json(&vault, &["prune", "--dry-run"])["packs_to_delete"], 0, "nothing left to prune");
    for (i, id) in [(2usize, &ids[2]), (4, &ids[4])] {
        let target = t.path().join(format!("out{i}"));
        ok(&vault, &["restore", id, "--target", target.to_str().unwrap(), "--verify"]);
        dircmp::compare(&sources[i], &restored(&target, &sources[i])).unwrap();
    }
}

#[test]
fn a_live_lock_blocks_prune_and_a_stale_one_is_reported_and_ignored() {
    let t = tempfile::tempdir().unwrap();
    let vault = t.path().join("vault");
    init(&vault);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string();
    let lock = |pid: u32, expires: &str| {
        format!(
            r#"{{"kind":"shared","host":"{host}","pid":{pid},"user":"test","operation":"backup","created":"2026-11-25T00:00:00Z","expires":"{expires}"}}"#
        )
    };
    std::fs::create_dir_all(vault.join("locks")).unwrap();
    // a live backup (this test process is alive)
    std::fs::write(vault.join("locks/aaaa"), lock(std::process::id(), "2999-01-01T00:00:00Z")).unwrap();
    // A lock passes by itself: exit 1 (a failure to retry), not 2 (a command to change).
    let err = fails(&vault, &["prune"], 1);
    assert!(err.contains("the vault is locked") && err.contains("backup"), "{err}");
    // a backup killed long ago: its process is gone
    std::fs::write(vault.join("locks/aaaa"), lock(999_999_999, "2999-01-01T00:00:00Z")).unwrap();
    let o = run(&vault, &["prune"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("stale"), "stale locks are reported");
    assert!(!vault.join("locks/aaaa").exists(), "and removed by the exclusive locker");
}

/// The program that ships reads no test hook: a fake clock cannot lift a snapshot lock and a crash point
/// does not crash it. The same steps with the test binary show the hooks are real (so this test can fail).
#[test]
fn the_shipped_program_ignores_the_test_clock_and_crash_points() {
    let t = tempfile::tempdir().unwrap();
    let (vault, src) = (t.path().join("vault"), t.path().join("data"));
    sample_tree(&src);
    init(&vault);
    // The same command line and environment as `cmd`, run by the shipped program.
    let shipped = |args: &[&str]| {
        let test_cmd = cmd(&vault, args);
        let mut c = std::process::Command::new(shipped_bin());
        c.args(test_cmd.get_args()).env_remove("MVAULT_VAULT");
        for (k, v) in test_cmd.get_envs() {
            if let Some(v) = v {
                c.env(k, v);
            }
        }
        c
    };
    // A crash point on the way of every backup: the shipped program passes it.
    let o = shipped(&["--json", "backup", "--lock-for", "30d", src.to_str().unwrap()])
        .env("MVAULT_TEST_CRASH", "backup-index-written")
        .output()
        .unwrap();
    assert!(o.status.success(), "the shipped program crashed at a test point: {}", String::from_utf8_lossy(&o.stderr));
    let locked =
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["snapshot_id"].as_str().unwrap().to_string();
    let o = cmd(&vault, &["backup", src.to_str().unwrap()])
        .env("MVAULT_TEST_CRASH", "backup-index-written")
        .output()
        .unwrap();
    assert!(!o.status.success(), "the test binary did not stop at its crash point");

    // A clock a century ahead: the shipped program still sees the lock.
    let far = "2126-01-01T00:00:00Z";
    let o = shipped(&["forget", &locked]).env("MVAULT_TEST_NOW", far).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("locked"), "{}", String::from_utf8_lossy(&o.stderr));
    let o = shipped(&["--json", "snapshots"]).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains(&locked), "the locked snapshot is gone");
    let o = cmd(&vault, &["forget", &locked]).env("MVAULT_TEST_NOW", far).output().unwrap();
    assert!(o.status.success(), "the test binary's clock did not move: {}", String::from_utf8_lossy(&o.stderr));
}
