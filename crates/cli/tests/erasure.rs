//! Fault injection on an erasure-coded vault: EC 4+2 over 6 fs stores in 3 failure domains. A lost store is
//! a removed directory, bit rot is a flipped byte on disk, a crash is SIGKILL.

use crate::common::*;
use mvault_core::dircmp;
use std::path::{Path, PathBuf};

struct EcVault {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    src: PathBuf,
}

impl EcVault {
    fn store(&self, index: usize) -> PathBuf {
        self.root.join(format!("s{index}"))
    }
    fn vault(&self) -> PathBuf {
        self.store(0)
    }
}

/// 6 stores, domains rack0..rack2 (two stores each), small packs so there are many of them.
fn ec_vault(data_mib: u64) -> EcVault {
    ec_vault_sized(data_mib, "1MiB", "1MiB")
}

fn ec_vault_sized(data_mib: u64, pack: &str, chunk: &str) -> EcVault {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let src = root.join("data");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..data_mib / 4 {
        write_random_file(&src.join(format!("part-{i}.bin")), 4 << 20, 500 + i);
    }
    sample_tree(&src.join("misc"));
    let mut args: Vec<String> = vec![
        "init".into(),
        "--ec".into(),
        "4+2".into(),
        "--pack-size".into(),
        pack.into(),
        "--chunk-size".into(),
        chunk.into(),
    ];
    for i in 0..6 {
        args.push("--store".into());
        args.push(format!("{}#domain=rack{}", root.join(format!("s{i}")).display(), i % 3));
    }
    let v = EcVault { _tmp: tmp, root, src };
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(&v.vault(), &a);
    ok(&v.vault(), &["backup", v.src.to_str().unwrap()]);
    v
}

fn restore_identical(vault: &Path, src: &Path, target: &Path) {
    ok(vault, &["restore", "latest", "--target", target.to_str().unwrap(), "--verify"]);
    dircmp::compare(src, &restored(target, src)).unwrap();
    std::fs::remove_dir_all(target).unwrap();
}

fn hide(path: &Path) {
    std::fs::rename(path, path.with_extension("away")).unwrap();
}
fn unhide(path: &Path) {
    std::fs::rename(path.with_extension("away"), path).unwrap();
}

#[test]
fn any_two_lost_stores_still_restore_byte_identical() {
    let v = ec_vault(24);
    // stored bytes are (k+m)/k of the packed data, plus small headers and metadata
    // stored shard bytes against packed bytes (each pack's length, from its shard headers)
    let mut stored = 0u64;
    let mut packs = std::collections::BTreeMap::new();
    for i in 0..6 {
        for f in objects(&v.store(i), "packs/") {
            let b = std::fs::read(&f).unwrap();
            stored += b.len() as u64;
            let pack_len = u64::from_le_bytes(b[24..32].try_into().unwrap());
            packs.insert(b[5..21].to_vec(), pack_len);
        }
    }
    let packed: u64 = packs.values().sum();
    let ratio = stored as f64 / packed as f64;
    assert!((ratio - 1.5).abs() < 0.03, "stored shard bytes / packed bytes = {ratio}");
    for a in 0..6 {
        for b in a + 1..6 {
            hide(&v.store(a));
            hide(&v.store(b));
            // open from any surviving store
            let survivor = (0..6).find(|i| *i != a && *i != b).unwrap();
            restore_identical(&v.store(survivor), &v.src, &v.root.join("out"));
            unhide(&v.store(a));
            unhide(&v.store(b));
        }
    }
    // three lost stores in a 4+2 layout cannot be read: a clear error, not a wrong byte
    for i in [0, 1, 2] {
        hide(&v.store(i));
    }
    let err = fails(&v.store(3), &["restore", "latest", "--target", v.root.join("out").to_str().unwrap()], 1);
    assert!(err.contains("shards") || err.contains("down"), "{err}");
    for i in [0, 1, 2] {
        unhide(&v.store(i));
    }
}

#[test]
fn bit_rot_is_found_by_scrub_and_repaired() {
    let v = ec_vault(24);
    // flip a byte in 5% of the shards on two stores
    let mut flipped = Vec::new();
    for s in [1, 4] {
        let files = objects(&v.store(s), "packs/");
        for f in files.iter().step_by(20) {
            flip_byte(f, 100 + std::fs::metadata(f).unwrap().len() as usize / 2);
            flipped.push(f.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    assert!(flipped.len() >= 2);
    restore_identical(&v.vault(), &v.src, &v.root.join("out"));
    let o = run(&v.vault(), &["--json", "scrub"]);
    // Damage found and not repaired is not success: exit 3 (README), and the report says how much.
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["unrepaired"].as_u64().unwrap(), flipped.len() as u64, "{report}");
    let mut named: Vec<String> = report["corrupt"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| format!("{}.{}", p["pack"].as_str().unwrap(), p["shard"]))
        .collect();
    named.sort();
    flipped.sort();
    assert_eq!(named, flipped, "scrub must name exactly the rotten shards");
    let r = json(&v.vault(), &["scrub", "--repair"]);
    assert_eq!(r["shards_repaired"].as_u64().unwrap(), flipped.len() as u64);
    let clean = json(&v.vault(), &["scrub"]);
    assert_eq!(clean["corrupt"].as_array().unwrap().len(), 0, "{clean}");
    assert_eq!(clean["missing"].as_array().unwrap().len(), 0, "{clean}");
    restore_identical(&v.vault(), &v.src, &v.root.join("out"));
}

#[test]
fn a_lost_store_is_rebuilt_by_repair_even_after_sigkill() {
    let v = ec_vault(40);
    let lost = v.store(2);
    std::fs::remove_dir_all(&lost).unwrap();
    std::fs::create_dir_all(&lost).unwrap(); // the replacement disk
                                             // kill repair part-way, then run it again to the end
    let o = cmd(&v.vault(), &["repair", "--quiet"]).env("MVAULT_TEST_CRASH", "heal-pack-done@3").output().unwrap();
    assert!(!o.status.success(), "repair should have crashed after its third pack");
    let r = json(&v.vault(), &["repair"]);
    assert!(r["unrecoverable"].as_array().unwrap().is_empty());
    let clean = json(&v.vault(), &["scrub"]);
    assert_eq!(clean["missing"].as_array().unwrap().len(), 0, "{clean}");
    assert_eq!(clean["corrupt"].as_array().unwrap().len(), 0, "{clean}");
    // the rebuilt store really holds its share: with two other stores gone, data is still whole
    hide(&v.store(0));
    hide(&v.store(1));
    restore_identical(&v.store(2), &v.src, &v.root.join("out"));
    unhide(&v.store(0));
    unhide(&v.store(1));
}

#[test]
fn adding_a_store_and_rebalancing_moves_about_a_seventh_and_fills_evenly() {
    // ~1000 packs of 128 KiB, so the fill of each store is an average over many placements
    let v = ec_vault_sized(128, "128KiB", "32KiB");
    let before: u64 = (0..6).map(|i| objects(&v.store(i), "packs/").len() as u64).sum();
    let s6 = v.root.join("s6");
    ok(&v.vault(), &["store", "add", &format!("{}#domain=rack3", s6.display())]);
    // kill the first rebalance part-way; the rerun completes it
    let o = cmd(&v.vault(), &["rebalance", "--quiet"]).env("MVAULT_TEST_CRASH", "heal-pack-done@100").output().unwrap();
    assert!(!o.status.success(), "rebalance should have crashed after its hundredth pack");
    ok(&v.vault(), &["rebalance"]);
    let again = json(&v.vault(), &["rebalance"]);
    assert_eq!(again["shards_moved"], 0, "a finished rebalance has nothing left to move");
    let on_new = objects(&s6, "packs/").len() as f64;
    let frac = on_new / before as f64;
    assert!((frac - 1.0 / 7.0).abs() < 0.03, "moved fraction {frac}, ideal 1/7");
    let status = json(&v.vault(), &["status"]);
    for s in status["stores"].as_array().unwrap() {
        let fill = s["fill_ratio"].as_f64().unwrap();
        assert!((fill - 1.0).abs() < 0.10, "store {} fill {fill}", s["id"]);
    }
    assert_eq!(status["degraded_packs"], 0);
    restore_identical(&s6, &v.src, &v.root.join("out"));
}

#[test]
fn backup_with_a_store_down_is_degraded_then_repaired() {
    let v = ec_vault(8);
    hide(&v.store(5));
    let more = v.root.join("more");
    std::fs::create_dir_all(&more).unwrap();
    write_random_file(&more.join("new.bin"), 6 << 20, 4242);
    let o = run(&v.vault(), &["backup", more.to_str().unwrap()]);
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("shards missing") && err.contains("mvault repair"), "the user is told: {err}");
    unhide(&v.store(5));
    let o = run(&v.vault(), &["--json", "status"]);
    assert_eq!(o.status.code(), Some(3), "lost redundancy is damage repair mends: exit 3");
    let st: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(st["degraded_packs"].as_u64().unwrap() > 0, "{st}");
    ok(&v.vault(), &["repair"]);
    let st = json(&v.vault(), &["status"]);
    assert_eq!(st["degraded_packs"], 0, "{st}");
    restore_identical(&v.vault(), &more, &v.root.join("out"));
    // removing a live store drains it first: nothing is lost even with two more stores gone
    let s6 = v.root.join("s6");
    ok(&v.vault(), &["store", "add", &format!("{}#domain=rack2", s6.display())]);
    let err = fails(&v.vault(), &["store", "remove", "s9"], 1);
    assert!(err.contains("s9"), "{err}");
    ok(&v.vault(), &["store", "remove", "s5"]);
    assert!(!v.store(5).join("config").exists(), "a removed store must not open as the vault");
    hide(&v.store(1));
    hide(&v.store(2));
    restore_identical(&v.vault(), &more, &v.root.join("out"));
}

#[test]
fn durability_command_shows_redundancy_against_the_naive_product() {
    let t = tempfile::tempdir().unwrap();
    let out = json(t.path(), &["durability", "--ec", "17+3", "--afr", "0.0041", "--mttr", "156h"]);
    let nines = out["yearly"]["nines"].as_f64().unwrap();
    assert!((10.5..11.5).contains(&nines), "{nines}");
    assert!(out["availability"].as_f64().unwrap() > out["naive_product"].as_f64().unwrap());
    let bad = fails(t.path(), &["durability", "--ec", "4+2", "--afr", "0.1", "--afr", "0.2"], 2);
    assert!(bad.contains("--afr"), "{bad}");
}

/// A store whose directory is gone: check and status say which packs lost redundancy and exit 3 (damage
/// `repair` can mend); repair says what to create, and once it exists (empty) refills it; then all is whole.
#[test]
fn lost_redundancy_is_reported_and_repair_says_what_to_create() {
    let v = ec_vault(8);
    let lost = v.store(3);
    std::fs::remove_dir_all(&lost).unwrap();
    let o = run(&v.vault(), &["check"]);
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("below full redundancy") && out.contains("lack 1 shard"), "{out}");
    let o = run(&v.vault(), &["--json", "check"]);
    assert_eq!(o.status.code(), Some(3));
    let c: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(c["ok"], false, "{c}");
    let short = &c["report"]["shortfall"];
    let packs = objects(&v.store(0), "packs/").len() as u64; // each pack has one shard on every store
    assert_eq!(short["shards_missing"].as_u64().unwrap(), packs, "{c}");
    assert_eq!(short["packs_by_missing_shards"]["1"].as_u64().unwrap(), packs, "{c}");
    assert!(short["stores_down"][0].as_str().unwrap().contains(&lost.display().to_string()), "{c}");
    let o = run(&v.vault(), &["--json", "status"]);
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stderr));
    let st: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(st["degraded_packs"].as_u64().unwrap(), packs, "{st}");

    let err = fails(&v.vault(), &["repair"], 1);
    assert!(err.contains(&format!("mkdir -p {}", lost.display())), "repair says what to create: {err}");
    std::fs::create_dir_all(&lost).unwrap();
    let r = json(&v.vault(), &["repair"]);
    assert_eq!(r["shards_repaired"].as_u64().unwrap(), packs, "{r}");
    assert_eq!(json(&v.vault(), &["check", "--read-data"])["ok"], true);
    ok(&v.vault(), &["status"]);
    restore_identical(&v.vault(), &v.src, &v.root.join("out"));
}
