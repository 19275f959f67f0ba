//! Master key rotation, tenant rekey with rewrite, and the disaster-recovery drill.

use crate::common::*;
use mvault_core::dircmp;

fn with_pass(vault: &std::path::Path, pass: &str, args: &[&str]) -> std::process::Output {
    cmd(vault, args).env("MVAULT_PASSWORD", pass).output().unwrap()
}

#[test]
fn key_rotate_keeps_the_named_passphrases_and_survives_a_crash_at_the_commit_point() {
    let t = tempfile::tempdir().unwrap();
    let (vault, src) = (t.path().join("vault"), t.path().join("data"));
    sample_tree(&src);
    init(&vault);
    ok(&vault, &["backup", src.to_str().unwrap()]);
    let o = cmd(&vault, &["key", "add"]).env("MVAULT_NEW_PASSWORD", "second").output().unwrap();
    assert!(o.status.success());
    let before: Vec<std::path::PathBuf> = objects(&vault, "keys/");
    let b_file = t.path().join("b.pass");
    std::fs::write(&b_file, "second\n").unwrap();

    // Crash right after the config commits to the new master key: both passphrases still open the vault.
    let o = cmd(&vault, &["key", "rotate", "--keep-password-file", b_file.to_str().unwrap()])
        .env("MVAULT_TEST_CRASH", "rotate-after-config")
        .output()
        .unwrap();
    assert!(!o.status.success());
    for p in [PASS, "second"] {
        let o = with_pass(&vault, p, &["snapshots"]);
        assert!(o.status.success(), "{p}: {}", String::from_utf8_lossy(&o.stderr));
    }
    // A full rotation that keeps only the passphrase in use.
    let r = json(&vault, &["key", "rotate"]);
    assert_eq!(r["new_key_files"].as_array().unwrap().len(), 1);
    let after: Vec<std::path::PathBuf> = objects(&vault, "keys/");
    for f in &before {
        assert!(!after.contains(f), "old object {} must be gone", f.display());
    }
    assert_eq!(
        with_pass(&vault, "second", &["snapshots"]).status.code(),
        Some(1),
        "a key file not kept no longer opens"
    );
    let target = t.path().join("out");
    ok(&vault, &["restore", "latest", "--target", target.to_str().unwrap(), "--verify"]);
    dircmp::compare(&src, &restored(&target, &src)).unwrap();
    assert_eq!(json(&vault, &["check", "--read-data"])["ok"], true);
}

#[test]
fn tenant_rekey_rewrites_everything_under_the_new_version_and_keeps_dedup() {
    let t = tempfile::tempdir().unwrap();
    let (vault, src) = (t.path().join("vault"), t.path().join("data"));
    sample_tree(&src);
    write_random_file(&src.join("w.bin"), 12 << 20, 3);
    init(&vault);
    ok(&vault, &["backup", src.to_str().unwrap()]);
    let v1_keys = objects(&vault, "tenants/default/keys/1.");
    assert_eq!(v1_keys.len(), 1);
    // Interrupted after the new index is written; resumed to the end.
    let o =
        cmd(&vault, &["tenant", "rekey", "--rewrite"]).env("MVAULT_TEST_CRASH", "rekey-after-index").output().unwrap();
    assert!(!o.status.success());
    assert_eq!(json(&vault, &["check", "--read-data"])["ok"], true);
    let r = json(&vault, &["tenant", "rekey", "--rewrite", "--resume"]);
    assert_eq!(r["new_version"], 2, "{r}");
    assert_eq!(r["old_versions_removed"], serde_json::json!([1]), "{r}");
    assert!(objects(&vault, "tenants/default/keys/1.").is_empty(), "version 1 is deleted once unused");
    assert_eq!(json(&vault, &["check", "--read-data"])["ok"], true);
    let target = t.path().join("out");
    ok(&vault, &["restore", "latest", "--target", target.to_str().unwrap(), "--verify"]);
    dircmp::compare(&src, &restored(&target, &src)).unwrap();
    // Same ChunkIds under the new version: backing up the same data again adds almost nothing.
    let size = dir_size(&vault);
    std::fs::write(src.join("touch"), b"x").unwrap();
    let b = json(&vault, &["backup", src.to_str().unwrap()]);
    assert!(b["summary"]["new_bytes"].as_u64().unwrap() < 100_000, "{b}");
    assert!(dir_size(&vault) - size < 200_000);
}

#[test]
fn drill_recovers_with_m_stores_lost_and_fails_loudly_beyond() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let src = root.join("data");
    sample_tree(&src);
    write_random_file(&src.join("model.bin"), 20 << 20, 8);
    let mut args: Vec<String> = vec!["init".into(), "--ec".into(), "4+2".into(), "--pack-size".into(), "2MiB".into()];
    for i in 0..6 {
        args.push("--store".into());
        args.push(format!("{}#domain=rack{}", root.join(format!("s{i}")).display(), i % 3));
    }
    let vault = root.join("s0");
    ok(&vault, &args.iter().map(String::as_str).collect::<Vec<_>>());
    ok(&vault, &["backup", src.to_str().unwrap()]);
    let scratch = root.join("scratch");
    let r = json(
        &vault,
        &["drill", "--without-store", "s2", "--without-store", "s5", "--scratch", scratch.to_str().unwrap()],
    );
    assert_eq!(r["verified"], true, "{r}");
    assert!(r["recovery_seconds"].as_f64().unwrap() > 0.0);
    assert!(r["bytes"].as_u64().unwrap() >= 20 << 20);
    dircmp::compare(&src, &restored(&scratch, &src)).unwrap();
    // the stores named lost were never touched: removing them changes nothing
    std::fs::remove_dir_all(root.join("s2")).unwrap();
    std::fs::remove_dir_all(root.join("s5")).unwrap();
    let r = json(&vault, &["drill", "--without-store", "s2", "--without-store", "s5"]);
    assert_eq!(r["verified"], true);
    // with three lost, a 4+2 vault cannot be recovered, and the drill says so
    let err = fails(&vault, &["drill", "--without-store", "s1", "--without-store", "s2", "--without-store", "s5"], 1);
    assert!(err.contains("shards"), "{err}");
}

/// The CLI under `umask 000`, as a careless service unit would run it.
fn open_umask(vault: &std::path::Path, args: &[&str]) -> std::process::Output {
    let inner = cmd(vault, args);
    let mut c = std::process::Command::new("sh");
    c.arg("-c").arg("umask 000; exec \"$0\" \"$@\"").arg(inner.get_program()).args(inner.get_args());
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    c.env("MVAULT_NEW_PASSWORD", "second").output().unwrap()
}

#[test]
fn a_vault_is_private_to_its_owner_whatever_the_umask_and_check_warns_about_an_exposed_key_file() {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().unwrap();
    let (vault, src) = (t.path().join("vault"), t.path().join("data"));
    sample_tree(&src);
    for args in [vec!["init"], vec!["backup", src.to_str().unwrap()], vec!["key", "add"]] {
        let mut all = vec!["-q"];
        all.extend(args);
        let o = open_umask(&vault, &all);
        assert!(o.status.success(), "{all:?}: {}", String::from_utf8_lossy(&o.stderr));
    }
    let mut seen = 0;
    let mut stack = vec![vault.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            let want = if p.is_dir() { 0o700 } else { 0o600 };
            assert_eq!(mode, want, "{} is {mode:o}", p.display());
            seen += 1;
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    assert!(seen > 10, "only {seen} entries in the vault");
    assert_eq!(std::fs::metadata(&vault).unwrap().permissions().mode() & 0o777, 0o700);

    // A key file made readable by others afterwards: check says so and what to run.
    let key =
        objects(&vault, "keys/").into_iter().find(|p| p.parent() == Some(&vault.join("keys"))).expect("a key file");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = json(&vault, &["check"]);
    let warnings: Vec<&str> = r["report"]["warnings"].as_array().unwrap().iter().filter_map(|w| w.as_str()).collect();
    assert!(warnings.iter().any(|w| w.contains(&key.display().to_string()) && w.contains("chmod 600")), "{warnings:?}");
}
