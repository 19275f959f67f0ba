//! Prune gives back every byte it frees, and what crashed writers leave (garbage in packs, temporary objects,
//! locks) is cleaned by the next prune or `unlock`. Sizes are measured on disk; crashes are the program's
//! own fault points; locks of other hosts and of reused pids are lock objects written as such a host would.

use crate::common::*;
use mvault_core::dircmp;
use std::path::{Path, PathBuf};

/// Bytes of every pack shard of the vault at `vault` (a single fs store).
fn pack_bytes(vault: &Path) -> u64 {
    objects(vault, "packs/")
        .iter()
        .filter(|p| !p.to_string_lossy().contains(".tmp-"))
        .map(|p| p.metadata().unwrap().len())
        .sum()
}

/// A tree of 24 files of 96-480 KiB, in 64 KiB chunks; `cycle` rewrites four of them, removes one and adds
/// one, so each backup leaves garbage spread over the packs of earlier ones.
fn shape_tree(src: &Path, cycle: u64) {
    std::fs::create_dir_all(src).unwrap();
    if cycle == 0 {
        for i in 0..24u64 {
            write_random_file(&src.join(format!("f{i}.bin")), (96 + 16 * i) << 10, i);
        }
        return;
    }
    for k in 0..4u64 {
        let i = (cycle * 5 + k * 7) % 24;
        write_random_file(&src.join(format!("f{i}.bin")), (96 + 16 * i) << 10, 1000 * cycle + k);
    }
    let _ = std::fs::remove_file(src.join(format!("n{}.bin", cycle - 1)));
    write_random_file(&src.join(format!("n{cycle}.bin")), 200 << 10, 99_000 + cycle);
}

fn small_vault(vault: &Path) {
    ok(vault, &["init", "--chunk-size", "64KiB", "--pack-size", "1MiB"]);
}

#[test]
fn rolling_retention_stays_near_a_fresh_backup_and_repack_0_leaves_no_garbage() {
    let t = tempfile::tempdir().unwrap();
    let (vault, src) = (t.path().join("vault"), t.path().join("src"));
    small_vault(&vault);
    for cycle in 0..10 {
        shape_tree(&src, cycle);
        ok(&vault, &["backup", "--quiet", src.to_str().unwrap()]);
        let r = json(&vault, &["forget", "--keep-last", "1", "--prune"]);
        let p = &r["prune"];
        // what prune says it freed left the disk: the shards deleted less the ones repacking wrote
        assert!(p["stored_bytes_freed"].as_u64().is_some(), "{r}");
        // garbage left behind is below the threshold in every kept pack, so below it overall
        let (live, dead) = (p["live_bytes"].as_u64().unwrap(), p["dead_bytes_kept"].as_u64().unwrap());
        assert!(dead < live, "cycle {cycle}: {dead} garbage bytes left beside {live} live: {r}");
    }
    let fresh = t.path().join("fresh");
    small_vault(&fresh);
    ok(&fresh, &["backup", "--quiet", src.to_str().unwrap()]);
    let (rolled, clean) = (pack_bytes(&vault), pack_bytes(&fresh));
    // within the default threshold (50% garbage per pack): at most twice the fresh size
    assert!(rolled <= 2 * clean, "after ten cycles the packs hold {rolled} bytes, a fresh backup {clean}");

    // The same garbage is seen again by a later prune, from the packs' own tables (the index names none of it).
    let dry = json(&vault, &["prune", "--dry-run", "--repack-unused", "0%"]);
    let c = json(&vault, &["check", "--read-data"]);
    assert_eq!(
        c["report"]["bytes_unreferenced"], dry["bytes_freed"],
        "check and prune agree on the garbage: {c} {dry}"
    );
    let before = pack_bytes(&vault);
    let p = json(&vault, &["prune", "--repack-unused", "0%"]);
    let after = pack_bytes(&vault);
    assert_eq!(before - after, p["stored_bytes_freed"].as_u64().unwrap(), "freed is what left the disk: {p}");
    assert!(after as f64 <= clean as f64 * 1.02, "after --repack-unused 0%: {after} bytes against {clean} fresh");
    let c = json(&vault, &["check", "--read-data"]);
    assert_eq!(c["ok"], true, "{c}");
    assert_eq!(c["report"]["blobs_unreferenced"], 0, "{c}");
    assert!(c["report"]["blobs_verified"].as_u64().unwrap() > 0);
    let again = json(&vault, &["prune", "--dry-run", "--repack-unused", "0%"]);
    assert_eq!(again["bytes_freed"], 0, "nothing left to free: {again}");
    let target = t.path().join("out");
    ok(&vault, &["restore", "latest", "--target", target.to_str().unwrap(), "--verify"]);
    dircmp::compare(&src, &restored(&target, &src)).unwrap();
}

/// A prune that keeps a partly-dead pack (here: a threshold of 100%) writes an index naming only its live
/// blobs: the garbage in it is invisible to the index, and the next prune still finds and frees it.
#[test]
fn garbage_the_index_no_longer_names_is_freed_by_the_next_prune() {
    let t = tempfile::tempdir().unwrap();
    let (vault, src) = (t.path().join("vault"), t.path().join("src"));
    ok(&vault, &["init", "--chunk-size", "64KiB", "--pack-size", "4MiB"]);
    shape_tree(&src, 0);
    ok(&vault, &["backup", "--quiet", src.to_str().unwrap()]);
    for i in 0..12 {
        std::fs::remove_file(src.join(format!("f{i}.bin"))).unwrap();
    }
    ok(&vault, &["backup", "--quiet", src.to_str().unwrap()]);
    ok(&vault, &["forget", "--keep-last", "1"]);
    let kept = json(&vault, &["prune", "--repack-unused", "100%"]);
    assert_eq!(kept["packs_to_repack"], 0, "{kept}");
    assert!(kept["dead_bytes_kept"].as_u64().unwrap() > 500 << 10, "{kept}");
    let before = pack_bytes(&vault);
    let p = json(&vault, &["prune", "--repack-unused", "1%"]);
    assert!(p["packs_to_repack"].as_u64().unwrap() >= 1, "{p}");
    assert_eq!(p["bytes_freed"], kept["dead_bytes_kept"], "{p}");
    assert_eq!(before - pack_bytes(&vault), p["stored_bytes_freed"].as_u64().unwrap(), "{p}");
    let c = json(&vault, &["check", "--read-data"]);
    assert_eq!(c["report"]["blobs_unreferenced"], 0, "{c}");
}

fn temporaries(vault: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![vault.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().contains(".tmp-") {
                out.push(p);
            }
        }
    }
    out
}

fn in_20_minutes() -> String {
    let t = std::time::SystemTime::now() + std::time::Duration::from_secs(20 * 60);
    humantime::format_rfc3339_seconds(t).to_string()
}

#[test]
fn the_next_prune_or_repair_removes_what_killed_writers_left_but_not_a_write_in_flight() {
    let t = tempfile::tempdir().unwrap();
    let (vault, src) = (t.path().join("vault"), t.path().join("src"));
    small_vault(&vault);
    shape_tree(&src, 0);
    ok(&vault, &["backup", "--quiet", src.to_str().unwrap()]);
    // a backup killed with a shard written but not yet renamed into place: a temporary and a lock stay
    shape_tree(&src, 1);
    let o = cmd(&vault, &["backup", "--quiet", src.to_str().unwrap()])
        .env("MVAULT_TEST_CRASH", "store-put-before-rename@2")
        .output()
        .unwrap();
    assert!(!o.status.success(), "the backup should have crashed");
    // (shards are written in parallel: the others being written when it died stay too)
    let mut left = temporaries(&vault);
    left.sort();
    assert!(!left.is_empty());
    let left_bytes: u64 = left.iter().map(|p| p.metadata().unwrap().len()).sum();
    assert_eq!(std::fs::read_dir(vault.join("locks")).unwrap().count(), 1, "the killed backup's lock stays");
    let c = json(&vault, &["check"]);
    let warned = c["report"]["warnings"].as_array().unwrap().iter().any(|w| {
        let w = w.as_str().unwrap();
        w.contains(".tmp-") && w.contains("`mvault prune` removes it once older")
    });
    assert!(warned, "check says what will remove the temporary: {c}");

    // Just written, it may be a write in flight: prune leaves it, but removes the dead process's lock.
    let p = json(&vault, &["prune"]);
    assert_eq!(p["temporaries_removed"], 0, "{p}");
    assert_eq!(p["stale_locks_removed"], 1, "{p}");
    let mut still = temporaries(&vault);
    still.sort();
    assert_eq!(still, left);
    assert_eq!(std::fs::read_dir(vault.join("locks")).unwrap().count(), 0);

    // Past the lock expiry no writer can own it: the next prune removes it.
    let p = cmd(&vault, &["--json", "prune"]).env("MVAULT_TEST_NOW", in_20_minutes()).output().unwrap();
    assert!(p.status.success(), "{}", String::from_utf8_lossy(&p.stderr));
    let p: serde_json::Value = serde_json::from_slice(&p.stdout).unwrap();
    assert_eq!(p["temporaries_removed"].as_u64().unwrap(), left.len() as u64, "{p}");
    assert_eq!(p["temporary_bytes_removed"].as_u64().unwrap(), left_bytes, "{p}");
    assert!(temporaries(&vault).is_empty(), "{:?}", temporaries(&vault));

    // repair sweeps them too (an interrupted metadata write this time)
    let o = cmd(&vault, &["backup", "--quiet", src.to_str().unwrap()])
        .env("MVAULT_TEST_CRASH", "store-put-before-rename@2")
        .output()
        .unwrap();
    assert!(!o.status.success());
    let left = temporaries(&vault).len() as u64;
    assert!(left > 0);
    let r = cmd(&vault, &["--json", "repair"]).env("MVAULT_TEST_NOW", in_20_minutes()).output().unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let r: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(r["temporaries_removed"].as_u64().unwrap(), left, "{r}");
    assert_eq!(r["stale_locks_removed"], 1, "{r}");
    assert!(temporaries(&vault).is_empty());
    let c = json(&vault, &["check"]);
    assert!(c["report"]["warnings"].as_array().unwrap().iter().all(|w| !w.as_str().unwrap().contains(".tmp-")), "{c}");
}

/// A lock object as another process would have written it.
fn plant_lock(vault: &Path, name: &str, kind: &str, host: &str, pid: u32, started: Option<u64>, expires_in: i64) {
    let now = std::time::SystemTime::now();
    let expires = if expires_in >= 0 {
        now + std::time::Duration::from_secs(expires_in as u64)
    } else {
        now - std::time::Duration::from_secs((-expires_in) as u64)
    };
    let mut lock = serde_json::json!({
        "kind": kind, "host": host, "pid": pid, "user": "someone", "operation": "backup",
        "created": humantime::format_rfc3339_seconds(now - std::time::Duration::from_secs(60)).to_string(),
        "expires": humantime::format_rfc3339_seconds(expires).to_string(),
    });
    if let Some(s) = started {
        lock["started"] = s.into();
    }
    std::fs::create_dir_all(vault.join("locks")).unwrap();
    std::fs::write(vault.join("locks").join(name), serde_json::to_vec(&lock).unwrap()).unwrap();
}

fn lock_names(vault: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(vault.join("locks"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn unlock_removes_stale_locks_and_remove_all_every_lock() {
    let t = tempfile::tempdir().unwrap();
    let (vault, src) = (t.path().join("vault"), t.path().join("src"));
    small_vault(&vault);
    shape_tree(&src, 0);
    let here = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string();
    // a process of this host that has exited
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let gone_pid = gone.id();
    gone.wait().unwrap();
    // a live process of this host (the test itself), but a lock whose start time is not this process's: the
    // pid was reused
    let me = std::process::id();
    plant_lock(&vault, "a-live-elsewhere", "exclusive", "build-7", 4242, None, 600);
    plant_lock(&vault, "b-expired-elsewhere", "exclusive", "build-8", 4243, None, -60);
    plant_lock(&vault, "c-dead-here", "exclusive", &here, gone_pid, None, 600);
    plant_lock(&vault, "d-pid-reused-here", "exclusive", &here, me, Some(1), 600);

    // The live lock of another host blocks a backup: exit 1 (a failed operation), and the message says how out.
    let err = fails(&vault, &["backup", src.to_str().unwrap()], 1);
    assert!(err.contains("build-7") && err.contains("mvault unlock"), "{err}");

    let out = ok(&vault, &["unlock"]);
    assert!(out.contains("3 of 4 locks removed"), "{out}");
    assert!(out.contains("expired") && out.contains("process is gone") && out.contains("another process"), "{out}");
    assert_eq!(lock_names(&vault), vec!["a-live-elsewhere".to_string()]);
    fails(&vault, &["backup", src.to_str().unwrap()], 1);

    let out = ok(&vault, &["unlock", "--remove-all"]);
    assert!(out.contains("build-7") && out.contains("LIVE, removed"), "{out}");
    assert!(lock_names(&vault).is_empty());
    ok(&vault, &["backup", "--quiet", src.to_str().unwrap()]);

    // The lock this process would write itself names its start time, which a live holder matches: a shared
    // lock of a live process on this host with its real start time is not stale.
    let stat = std::fs::read_to_string(format!("/proc/{me}/stat")).unwrap();
    let started: u64 = stat[stat.rfind(')').unwrap() + 1..].split_whitespace().nth(19).unwrap().parse().unwrap();
    plant_lock(&vault, "e-live-here", "exclusive", &here, me, Some(started), 600);
    fails(&vault, &["backup", src.to_str().unwrap()], 1);
    let j = json(&vault, &["unlock"]);
    assert_eq!(j[0]["removed"], false, "{j}");
    assert_eq!(lock_names(&vault), vec!["e-live-here".to_string()]);
}
