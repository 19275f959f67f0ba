//! Offsite copy between vaults, and the checkpoint watcher.

use crate::common::*;
use mvault_core::dircmp;
use std::time::Duration;

#[test]
fn copy_sends_only_missing_data_resumes_and_restores_identical_in_the_target() {
    let t = tempfile::tempdir().unwrap();
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    let src = t.path().join("data");
    sample_tree(&src);
    write_random_file(&src.join("weights.bin"), 24 << 20, 5);
    init(&a);
    ok(&b, &["init", "--pack-size", "2MiB"]);
    ok(&a, &["backup", src.to_str().unwrap()]);
    let copy = |extra: &[(&str, &str)]| {
        let mut c = cmd(&a, &["--json", "copy", "--to", b.to_str().unwrap()]);
        c.env("MVAULT_TO_PASSWORD", PASS);
        for (k, v) in extra {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    // Crash the first copy after its third pack (of about a dozen) is in the target: what it stored is kept
    // and not sent again.
    let crashed = copy(&[("MVAULT_TEST_CRASH", "pack-written@3")]);
    assert!(!crashed.status.success(), "the first copy must have crashed part-way");
    assert!(objects(&b, "packs/").len() >= 3, "the crashed copy's packs stay in the target");
    let o = copy(&[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["copied"].as_array().unwrap().len(), 1, "{r}");
    // Restores identical from the target alone.
    let target = t.path().join("out");
    ok(&b, &["restore", "latest", "--target", target.to_str().unwrap(), "--verify"]);
    dircmp::compare(&src, &restored(&target, &src)).unwrap();
    assert_eq!(json(&b, &["check", "--read-data"])["ok"], true);

    // Incremental: a second snapshot with a small change sends only the change.
    std::fs::write(src.join("small.txt"), b"changed\n").unwrap();
    ok(&a, &["backup", src.to_str().unwrap()]);
    let o = copy(&[]);
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["copied"].as_array().unwrap().len(), 1, "only the new snapshot: {r}");
    assert_eq!(r["already_there"].as_array().unwrap().len(), 1);
    assert!(r["bytes_sent"].as_u64().unwrap() < 1 << 20, "sent {r}");
    // Nothing left to copy.
    let r: serde_json::Value = serde_json::from_slice(&copy(&[]).stdout).unwrap();
    assert!(r["copied"].as_array().unwrap().is_empty());
    // The target's own key does not open the source and vice versa: they are different vaults.
    let err = fails(&b, &["copy", "--to", b.to_str().unwrap()], 2);
    assert!(err.contains("passphrase") || err.contains("same vault"), "{err}");
}

#[test]
fn watch_backs_up_each_settled_checkpoint_once_and_applies_retention() {
    let t = tempfile::tempdir().unwrap();
    let (vault, runs) = (t.path().join("vault"), t.path().join("run"));
    init(&vault);
    for step in [100, 200] {
        let d = runs.join(format!("step-{step}"));
        std::fs::create_dir_all(&d).unwrap();
        write_random_file(&d.join("model.bin"), 2 << 20, step);
        std::fs::write(d.join("trainer_state.json"), format!("{{\"step\": {step}}}")).unwrap();
        set_mtime(&d.join("model.bin"), 1_700_000_000, 0);
        set_mtime(&d.join("trainer_state.json"), 1_700_000_000, 0);
        set_mtime(&d, 1_700_000_000, 0);
    }
    // a checkpoint still being written
    let fresh = runs.join("step-300");
    std::fs::create_dir_all(&fresh).unwrap();
    std::fs::write(fresh.join("model.bin"), b"partial").unwrap();
    std::fs::create_dir_all(runs.join("logs")).unwrap(); // not a checkpoint

    ok(&vault, &["watch", runs.to_str().unwrap(), "--once", "--settle", "60s"]);
    let tags = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()))
            .filter(|t| t.starts_with("step="))
            .collect()
    };
    assert_eq!(tags(&json(&vault, &["snapshots"])), vec!["step=100", "step=200"]);
    // run again: nothing twice
    ok(&vault, &["watch", runs.to_str().unwrap(), "--once", "--settle", "60s"]);
    assert_eq!(json(&vault, &["snapshots"]).as_array().unwrap().len(), 2);
    // once step-300 settles it is taken, and --keep-last 2 drops step-100
    set_mtime(&fresh.join("model.bin"), 1_700_000_000, 0);
    set_mtime(&fresh, 1_700_000_000, 0);
    ok(&vault, &["watch", runs.to_str().unwrap(), "--once", "--settle", "60s", "--keep-last", "2"]);
    assert_eq!(tags(&json(&vault, &["snapshots"])), vec!["step=200", "step=300"]);
    // a long-running watcher killed and restarted does not repeat work
    let d = runs.join("step-400");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("model.bin"), b"w400").unwrap();
    let mut child = cmd(
        &vault,
        &["watch", runs.to_str().unwrap(), "--interval", "200ms", "--settle", "0s", "--keep-last", "3", "--quiet"],
    )
    .spawn()
    .unwrap();
    // Kill it once it has taken step-400 (its progress signal: the snapshot is listed).
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    while !tags(&json(&vault, &["snapshots"])).contains(&"step=400".to_string()) {
        assert!(child.try_wait().unwrap().is_none(), "the watcher ended by itself");
        assert!(std::time::Instant::now() < deadline, "the watcher never took step-400");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().ok();
    child.wait().unwrap();
    ok(&vault, &["watch", runs.to_str().unwrap(), "--once", "--settle", "0s", "--keep-last", "3"]);
    assert_eq!(tags(&json(&vault, &["snapshots"])), vec!["step=200", "step=300", "step=400"]);
    let target = t.path().join("out");
    ok(&vault, &["restore", "latest", "--target", target.to_str().unwrap(), "--verify"]);
    dircmp::compare(&d, &restored(&target, &d)).unwrap();
}
