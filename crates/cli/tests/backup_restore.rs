//! End to end through the binary: what goes in comes out exactly, and unchanged data costs nearly nothing.

use crate::common::*;
use mvault_core::dircmp;

#[test]
fn restore_is_exact_for_every_kind_of_entry() {
    let t = tempfile::tempdir().unwrap();
    let (vault, src, target) = (t.path().join("vault"), t.path().join("data"), t.path().join("out"));
    sample_tree(&src);
    init(&vault);
    let b = json(&vault, &["backup", src.to_str().unwrap(), "--tag", "run=1"]);
    let id = b["snapshot_id"].as_str().unwrap().to_string();
    assert_eq!(b["summary"]["files"], 6);
    assert_eq!(b["summary"]["symlinks"], 2);

    ok(&vault, &["restore", &id[..8], "--target", target.to_str().unwrap(), "--verify"]);
    let c = dircmp::compare(&src, &restored(&target, &src)).unwrap();
    assert_eq!((c.files, c.symlinks), (6, 2));
    // Without the final flush the same bytes, modes and mtimes come back (the flush is all it skips).
    let unsynced = t.path().join("out-no-sync");
    ok(&vault, &["restore", &id[..8], "--target", unsynced.to_str().unwrap(), "--no-sync"]);
    let c = dircmp::compare(&src, &restored(&unsynced, &src)).unwrap();
    assert_eq!((c.files, c.symlinks), (6, 2));

    let snaps = json(&vault, &["snapshots"]);
    assert_eq!(snaps.as_array().unwrap().len(), 1);
    assert_eq!(snaps[0]["tags"][0], "run=1");
    assert_eq!(snaps[0]["paths"][0], src.to_str().unwrap());
}

#[test]
fn include_glob_restores_only_matching_paths() {
    let t = tempfile::tempdir().unwrap();
    let (vault, src, target) = (t.path().join("vault"), t.path().join("data"), t.path().join("out"));
    sample_tree(&src);
    init(&vault);
    ok(&vault, &["backup", src.to_str().unwrap()]);
    let glob = format!("{}/sub/**/*.json", src.display());
    ok(&vault, &["restore", "latest", "--target", target.to_str().unwrap(), "--include", &glob]);
    let r = restored(&target, &src);
    assert!(r.join("sub/deeper/compressible.json").is_file());
    assert!(!r.join("sub/medium.bin").exists());
    assert!(!r.join("small.txt").exists());
    // a whole directory by name
    let target2 = t.path().join("out2");
    ok(
        &vault,
        &["restore", "latest", "--target", target2.to_str().unwrap(), "--include", &format!("{}/sub", src.display())],
    );
    dircmp::compare(&src.join("sub"), &restored(&target2, &src).join("sub")).unwrap();
    let err =
        fails(&vault, &["restore", "latest", "--target", target2.to_str().unwrap(), "--include", "/no/such/*"], 1);
    assert!(err.contains("no path in the snapshot matches"), "{err}");
}

#[test]
fn ls_lists_absolute_paths() {
    let t = tempfile::tempdir().unwrap();
    let (vault, src) = (t.path().join("vault"), t.path().join("data"));
    sample_tree(&src);
    init(&vault);
    ok(&vault, &["backup", src.to_str().unwrap()]);
    let all = json(&vault, &["ls", "latest"]);
    let paths: Vec<&str> = all.as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert!(paths.contains(&format!("{}/sub/medium.bin", src.display()).as_str()), "{paths:?}");
    let link = all.as_array().unwrap().iter().find(|e| e["path"].as_str().unwrap().ends_with("/link")).unwrap();
    assert_eq!(link["target"], "small.txt");
    let sub = json(&vault, &["ls", "latest", &format!("{}/sub", src.display())]);
    assert_eq!(sub.as_array().unwrap().len(), 4, "{sub}");
    fails(&vault, &["ls", "latest", "/not/there"], 1);
}

#[test]
fn unchanged_backup_adds_almost_nothing_and_reads_nothing() {
    let t = tempfile::tempdir().unwrap();
    let (vault, src) = (t.path().join("vault"), t.path().join("data"));
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..200u64 {
        std::fs::write(src.join(format!("f{i}")), random_bytes(20_000 + (i as usize * 997) % 300_000, i)).unwrap();
    }
    write_random_file(&src.join("big.bin"), 64 << 20, 99);
    init(&vault);
    let first = json(&vault, &["backup", src.to_str().unwrap()]);
    let size1 = dir_size(&vault);
    let second = json(&vault, &["backup", src.to_str().unwrap()]);
    let size2 = dir_size(&vault);
    assert_eq!(second["summary"]["files_read"], 0, "unchanged files must not be read again");
    assert_eq!(second["parent"], first["snapshot_id"]);
    assert!(((size2 - size1) as f64) < 0.01 * size1 as f64, "second backup added {} bytes to {size1}", size2 - size1);

    // Change 1 MiB in the middle of the big file: the next backup adds little.
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(src.join("big.bin")).unwrap();
        f.seek(SeekFrom::Start(32 << 20)).unwrap();
        f.write_all(&random_bytes(1 << 20, 12345)).unwrap();
    }
    let third = json(&vault, &["backup", src.to_str().unwrap()]);
    let size3 = dir_size(&vault);
    assert_eq!(third["summary"]["files_read"], 1);
    assert!(size3 - size2 < 10 << 20, "1 MiB change added {} bytes", size3 - size2);
    let target = t.path().join("out");
    ok(&vault, &["restore", "latest", "--target", target.to_str().unwrap(), "--verify"]);
    dircmp::compare(&src, &restored(&target, &src)).unwrap();
}

#[test]
fn several_paths_and_nested_paths() {
    let t = tempfile::tempdir().unwrap();
    let vault = t.path().join("vault");
    let (a, b) = (t.path().join("a"), t.path().join("b/c"));
    sample_tree(&a);
    sample_tree(&b);
    init(&vault);
    // a nested duplicate of a path is absorbed by its parent
    ok(&vault, &["backup", a.to_str().unwrap(), b.to_str().unwrap(), a.join("sub").to_str().unwrap()]);
    let target = t.path().join("out");
    ok(&vault, &["restore", "latest", "--target", target.to_str().unwrap()]);
    dircmp::compare(&a, &restored(&target, &a)).unwrap();
    dircmp::compare(&b, &restored(&target, &b)).unwrap();
}

#[test]
fn keys_can_be_added_removed_and_changed() {
    let t = tempfile::tempdir().unwrap();
    let vault = t.path().join("vault");
    init(&vault);
    let o = cmd(&vault, &["key", "add"]).env("MVAULT_NEW_PASSWORD", "second").output().unwrap();
    assert!(o.status.success());
    let keys = json(&vault, &["key", "list"]);
    assert_eq!(keys.as_array().unwrap().len(), 2);
    let second_id =
        keys.as_array().unwrap().iter().find(|k| k["current"] == false).unwrap()["id"].as_str().unwrap().to_string();
    // the second passphrase opens the vault too
    let o = cmd(&vault, &["snapshots"]).env("MVAULT_PASSWORD", "second").output().unwrap();
    assert!(o.status.success());
    // the key in use cannot be removed; another one can
    let current =
        keys.as_array().unwrap().iter().find(|k| k["current"] == true).unwrap()["id"].as_str().unwrap().to_string();
    fails(&vault, &["key", "remove", &current], 2);
    ok(&vault, &["key", "remove", &second_id[..8]]);
    let o = cmd(&vault, &["snapshots"]).env("MVAULT_PASSWORD", "second").output().unwrap();
    assert_eq!(o.status.code(), Some(1), "removed key must no longer open the vault");
    // passwd: the old passphrase stops working, the new one works
    let o = cmd(&vault, &["key", "passwd"]).env("MVAULT_NEW_PASSWORD", "third").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = fails(&vault, &["snapshots"], 1);
    assert!(err.contains("wrong passphrase"), "{err}");
    let o = cmd(&vault, &["snapshots"]).env("MVAULT_PASSWORD", "third").output().unwrap();
    assert!(o.status.success());
}
