//! Bad input gets a one-line error naming the object, a non-zero exit, and never a panic or a lost byte.

use crate::common::*;
use mvault_core::dircmp;
use std::path::Path;

fn vault_with_backup(root: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (vault, src) = (root.join("vault"), root.join("data"));
    sample_tree(&src);
    init(&vault);
    ok(&vault, &["backup", src.to_str().unwrap()]);
    (vault, src)
}

#[test]
fn wrong_passphrase_is_one_clear_error() {
    let t = tempfile::tempdir().unwrap();
    let (vault, _) = vault_with_backup(t.path());
    let o = cmd(&vault, &["snapshots"]).env("MVAULT_PASSWORD", "not it").output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("wrong passphrase"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

#[test]
fn missing_and_foreign_vaults() {
    let t = tempfile::tempdir().unwrap();
    let err = fails(&t.path().join("nothing"), &["snapshots"], 1);
    assert!(err.contains("no vault at"), "{err}");
    let foreign = t.path().join("foreign");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("config"), b"this is a restic repository, honest").unwrap();
    let err = fails(&foreign, &["snapshots"], 1);
    assert!(err.contains("not a ModelVault vault"), "{err}");
    // init refuses to overwrite
    let (vault, _) = vault_with_backup(t.path());
    let err = fails(&vault, &["init"], 1);
    assert!(err.contains("already exists"), "{err}");
    // usage errors exit 2
    let o = std::process::Command::new(bin()).args(["backup"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
}

/// One flipped byte anywhere in a pack, an index file or a snapshot is found by `check --read-data`, which
/// names the object, and restore refuses rather than writing a wrong byte.
#[test]
fn flipped_bytes_are_reported_by_check_naming_the_object() {
    let t = tempfile::tempdir().unwrap();
    let (vault, _) = vault_with_backup(t.path());
    let out = json(&vault, &["check", "--read-data"]);
    assert_eq!(out["ok"], true, "{out}");

    for (kind, name_part) in [("packs/", "packs"), ("/index/", "index"), ("/snapshots/", "snapshots")] {
        let files = objects(&vault, kind);
        assert!(!files.is_empty(), "no {kind} objects");
        for f in &files {
            let original = std::fs::read(f).unwrap();
            // a few positions: header, middle, last byte
            for pos in [2, original.len() / 2, original.len() - 1] {
                flip_byte(f, pos);
                let o = run(&vault, &["check", "--read-data"]);
                let stdout = String::from_utf8_lossy(&o.stdout);
                let stderr = String::from_utf8_lossy(&o.stderr);
                assert_eq!(
                    o.status.code(),
                    Some(1),
                    "flip at {pos} of {} not detected:\n{stdout}\n{stderr}",
                    f.display()
                );
                let id = f.file_name().unwrap().to_string_lossy();
                let id = id.split('.').next().unwrap();
                assert!(
                    stdout.contains(id) && stdout.contains(name_part),
                    "error must name {name_part} {id}:\n{stdout}"
                );
                assert!(!stderr.contains("panicked"));
                std::fs::write(f, &original).unwrap();
            }
        }
    }
    assert_eq!(json(&vault, &["check", "--read-data"])["ok"], true);
}

#[test]
fn rotten_pack_makes_restore_fail_loudly_not_silently() {
    let t = tempfile::tempdir().unwrap();
    let (vault, _) = vault_with_backup(t.path());
    let pack = &objects(&vault, "packs/")[0];
    let len = std::fs::metadata(pack).unwrap().len() as usize;
    flip_byte(pack, len / 3);
    let err = fails(&vault, &["restore", "latest", "--target", t.path().join("out").to_str().unwrap()], 1);
    assert!(err.contains("integrity check failed") && err.contains("packs/"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn truncated_objects_are_errors() {
    let t = tempfile::tempdir().unwrap();
    let (vault, _) = vault_with_backup(t.path());
    for part in ["packs/", "/index/", "/snapshots/"] {
        let f = &objects(&vault, part)[0];
        let original = std::fs::read(f).unwrap();
        std::fs::write(f, &original[..original.len() / 2]).unwrap();
        let o = run(&vault, &["check", "--read-data"]);
        assert_eq!(o.status.code(), Some(1), "truncated {part} not detected");
        std::fs::write(f, &original).unwrap();
        std::fs::write(f, b"").unwrap();
        let o = run(&vault, &["check", "--read-data"]);
        assert_eq!(o.status.code(), Some(1), "empty {part} not detected");
        std::fs::write(f, &original).unwrap();
    }
}

#[test]
fn corrupted_config_or_key_file_refuses_to_open() {
    let t = tempfile::tempdir().unwrap();
    let (vault, _) = vault_with_backup(t.path());
    let cfg = vault.join("config");
    let original = std::fs::read(&cfg).unwrap();
    // flip a byte inside the JSON: parses, but the MAC fails
    let pos = original.iter().position(|&b| b == b'"').unwrap() + 1;
    flip_byte(&cfg, pos);
    let err = fails(&vault, &["snapshots"], 1);
    assert!(err.contains("config"), "{err}");
    std::fs::write(&cfg, &original).unwrap();
    let key = &objects(&vault, "keys/")[0];
    std::fs::write(key, b"{ not json").unwrap();
    let err = fails(&vault, &["snapshots"], 1);
    assert!(err.contains("keys/"), "{err}");
}

/// An unreadable file is reported by name, the rest is saved, and the exit code says something failed.
#[test]
fn unreadable_source_file_is_named_and_the_rest_is_saved() {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().unwrap();
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let (vault, src) = (t.path().join("vault"), t.path().join("data"));
    sample_tree(&src);
    let secret = src.join("secret.bin");
    std::fs::write(&secret, b"no access").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o000)).unwrap();
    init(&vault);
    // Root reads anything, so run the backup as an unprivileged user when we are root.
    let mut c = cmd(&vault, &["backup", src.to_str().unwrap()]);
    // The temporary directory is ours, so its owner is our effective user.
    if std::os::unix::fs::MetadataExt::uid(&t.path().metadata().unwrap()) == 0 {
        chown_tree(t.path(), 65534);
        let mut s = std::process::Command::new("setpriv");
        s.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(bin())
            .arg("--vault")
            .arg(&vault)
            .arg("backup")
            .arg(&src)
            .env("MVAULT_PASSWORD", PASS);
        c = s;
    }
    let o = c.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("secret.bin") && err.contains("ermission denied"), "{err}");
    assert!(!err.contains("panicked"));
    // the snapshot holds everything else
    let target = t.path().join("out");
    ok(&vault, &["restore", "latest", "--target", target.to_str().unwrap()]);
    let r = restored(&target, &src);
    assert!(!r.join("secret.bin").exists());
    std::fs::remove_file(&secret).unwrap();
    set_mtime(&src, 0, 0);
    set_mtime(&r, 0, 0);
    dircmp::compare(&src, &r).unwrap();
}

fn chown_tree(path: &Path, uid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(uid)).unwrap();
    if std::fs::symlink_metadata(path).unwrap().is_dir() {
        for e in std::fs::read_dir(path).unwrap().flatten() {
            chown_tree(&e.path(), uid);
        }
    }
}

/// A full target disk: restore stops with a one-line error naming the file, exit 1, no panic.
/// The full disk is a real 4 MiB tmpfs (mounting needs root, which CI has).
#[test]
fn full_target_disk_is_a_clear_error() {
    let t = tempfile::tempdir().unwrap();
    let (vault, src) = (t.path().join("vault"), t.path().join("data"));
    std::fs::create_dir_all(&src).unwrap();
    write_random_file(&src.join("big.bin"), 16 << 20, 5);
    init(&vault);
    ok(&vault, &["backup", src.to_str().unwrap()]);
    let mnt = t.path().join("small");
    std::fs::create_dir_all(&mnt).unwrap();
    let m =
        std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"]).arg(&mnt).status().unwrap();
    assert!(m.success(), "this test needs root to mount a small tmpfs");
    let o = run(&vault, &["restore", "latest", "--target", mnt.to_str().unwrap()]);
    let _ = std::process::Command::new("umount").arg(&mnt).status();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("No space left on device") && err.contains("big.bin"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

/// A full vault disk during backup: the backup fails cleanly, earlier snapshots stay restorable.
#[test]
fn full_vault_disk_fails_backup_and_keeps_earlier_snapshots() {
    let t = tempfile::tempdir().unwrap();
    let mnt = t.path().join("vaultdisk");
    std::fs::create_dir_all(&mnt).unwrap();
    let m = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=24m", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(m.success(), "this test needs root to mount a small tmpfs");
    let vault = mnt.join("vault");
    let (small, big) = (t.path().join("small"), t.path().join("big"));
    sample_tree(&small);
    std::fs::create_dir_all(&big).unwrap();
    write_random_file(&big.join("huge.bin"), 64 << 20, 9);
    init(&vault);
    ok(&vault, &["backup", small.to_str().unwrap()]);
    let err = fails(&vault, &["backup", big.to_str().unwrap()], 1);
    assert!(err.contains("No space left on device"), "{err}");
    let target = t.path().join("out");
    let snaps = json(&vault, &["snapshots"]);
    assert_eq!(snaps.as_array().unwrap().len(), 1);
    ok(&vault, &["restore", "latest", "--target", target.to_str().unwrap(), "--verify"]);
    let _ = std::process::Command::new("umount").arg(&mnt).status();
    dircmp::compare(&small, &restored(&target, &small)).unwrap();
}

/// `mvault snapshots | head -0`: the reader is gone before mvault prints; that is not an error of ours and
/// must not panic (Rust ignores SIGPIPE, so println! would).
#[test]
fn a_closed_stdout_is_a_quiet_exit_not_a_panic() {
    let d = tempfile::tempdir().unwrap();
    let vault = d.path().join("vault");
    init(&vault);
    let mut child = cmd(&vault, &["snapshots"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(141), "{err}");
}
