//! A backup killed with SIGKILL at any moment leaves every earlier snapshot restorable and the vault
//! consistent (at worst some unreferenced packs, which `check` reports as warnings, not errors).

use crate::common::*;
use mvault_core::dircmp;

#[test]
fn sigkill_during_backup_never_harms_earlier_snapshots() {
    let t = tempfile::tempdir().unwrap();
    let (vault, first, second) = (t.path().join("vault"), t.path().join("first"), t.path().join("second"));
    sample_tree(&first);
    std::fs::create_dir_all(&second).unwrap();
    for i in 0..6u64 {
        write_random_file(&second.join(format!("shard-{i}.bin")), 40 << 20, 1000 + i);
    }
    for i in 0..300u64 {
        std::fs::write(second.join(format!("small-{i}.json")), format!("{{\"i\": {i}}}\n").repeat(100 + i as usize))
            .unwrap();
    }
    init(&vault);
    let a = json(&vault, &["backup", first.to_str().unwrap()]);
    let a_id = a["snapshot_id"].as_str().unwrap().to_string();

    // Crash at a spread of steps: after the first packs, further on (a rerun resumes from the packs the
    // crashed runs left, so each round gets further into the data), and between the last pack and the index
    // or the snapshot.
    let points = [
        "pack-written@1",
        "pack-written@2",
        "pack-written@3",
        "pack-written@2",
        "backup-index-written",
        "backup-snapshot-written",
    ];
    for (round, point) in points.iter().enumerate() {
        let o = cmd(&vault, &["backup", second.to_str().unwrap(), "--quiet"])
            .env("MVAULT_TEST_CRASH", point)
            .output()
            .unwrap();
        assert!(!o.status.success(), "round {round}: the backup must have crashed at {point}");
        let c = json(&vault, &["check"]);
        assert_eq!(c["ok"], true, "round {round} (crash at {point}): vault inconsistent: {c}");
        let target = t.path().join(format!("out-{round}"));
        ok(&vault, &["restore", &a_id, "--target", target.to_str().unwrap(), "--verify"]);
        dircmp::compare(&first, &restored(&target, &first)).unwrap();
        std::fs::remove_dir_all(&target).unwrap();
        let snaps = json(&vault, &["snapshots"]);
        for s in snaps.as_array().unwrap() {
            let id = s["id"].as_str().unwrap();
            if id != a_id {
                // any snapshot that exists is complete
                let out = t.path().join("partial-check");
                ok(&vault, &["restore", id, "--target", out.to_str().unwrap(), "--verify"]);
                dircmp::compare(&second, &restored(&out, &second)).unwrap();
                std::fs::remove_dir_all(&out).unwrap();
            }
        }
    }

    // After all that, a backup runs to the end and everything verifies byte for byte.
    ok(&vault, &["backup", second.to_str().unwrap()]);
    assert_eq!(json(&vault, &["check", "--read-data"])["ok"], true);
    let target = t.path().join("final");
    ok(&vault, &["restore", "latest", "--target", target.to_str().unwrap()]);
    dircmp::compare(&second, &restored(&target, &second)).unwrap();
}
