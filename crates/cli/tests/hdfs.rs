//! ModelVault over a real HDFS (Apache Hadoop's MiniDFSCluster, tests/hdfs/minidfs.sh): a vault on HDFS alone;
//! erasure coding over HDFS, a Garage S3 server and a local directory with the HDFS cluster stopped in the
//! middle of a backup and of a restore; a DataNode killed mid-backup; an HA NameNode failover mid-backup; and a
//! Kerberized cluster with encrypted data transfer. Every outage happens at a named fault point.

use crate::common::garage::{self, Garage};
use crate::common::minidfs::MiniDfs;
use crate::common::*;
use mvault_core::dircmp;
use std::path::Path;

/// A command on a vault named by URL (any of its stores), with the Garage key in the environment.
fn vcmd(vault: &str, args: &[&str]) -> std::process::Command {
    let mut c = cmd(Path::new(vault), args);
    c.env("AWS_ACCESS_KEY_ID", garage::KEY_ID).env("AWS_SECRET_ACCESS_KEY", garage::SECRET);
    c
}

fn vok(vault: &str, args: &[&str]) -> String {
    let o = vcmd(vault, args).output().unwrap();
    assert!(
        o.status.success(),
        "mvault {args:?} failed ({}):\n{}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn vjson(vault: &str, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    serde_json::from_str(&vok(vault, &a)).unwrap()
}

/// A few checkpoints of random bytes (several packs of 2 MiB) and a tree of small files.
fn data(root: &Path, files: u64, mib: u64) -> std::path::PathBuf {
    let src = root.join("data");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..files {
        write_random_file(&src.join(format!("ckpt-{i}.bin")), mib << 20, 700 + i);
    }
    sample_tree(&src.join("configs"));
    src
}

fn restore_identical(vault: &str, src: &Path, target: &Path) {
    vok(vault, &["restore", "latest", "--target", target.to_str().unwrap(), "--verify"]);
    dircmp::compare(src, &restored(target, src)).unwrap();
    std::fs::remove_dir_all(target).unwrap();
}

#[test]
fn a_vault_on_hdfs_alone_backs_up_restores_and_reads_back_every_byte() {
    let t = tempfile::tempdir().unwrap();
    let dfs = MiniDfs::start(&t.path().join("dfs"), &[]);
    let vault = format!("{}/vaults/a", dfs.url);
    vok(&vault, &["init", "--pack-size", "2MiB"]);
    let src = data(t.path(), 3, 5);
    let first = vjson(&vault, &["backup", src.to_str().unwrap()]);
    assert!(first["summary"]["bytes_stored"].as_u64().unwrap() > 15 << 20, "{first}");
    // incremental: one changed file is all the second backup stores
    std::fs::write(src.join("configs/changed.txt"), b"step 2\n").unwrap();
    let second = vjson(&vault, &["backup", src.to_str().unwrap()]);
    assert!(second["summary"]["bytes_stored"].as_u64().unwrap() < 1 << 20, "{second}");
    restore_identical(&vault, &src, &t.path().join("out"));
    let c = vjson(&vault, &["check", "--read-data"]);
    assert_eq!(c["ok"], true, "{c}");
    assert_eq!(vjson(&vault, &["snapshots"]).as_array().unwrap().len(), 2);
}

#[test]
fn ec_over_hdfs_garage_and_fs_loses_nothing_when_hdfs_stops_mid_backup_and_mid_restore() {
    let t = tempfile::tempdir().unwrap();
    let mut dfs = MiniDfs::start(&t.path().join("dfs"), &[]);
    let g = Garage::start(&t.path().join("garage"));
    g.bucket("mvault");
    let fs = t.path().join("fs");
    let hdfs = format!("{}/vault", dfs.url);
    let stores = [
        format!("{hdfs}#domain=hdfs"),
        format!("{}#domain=s3", g.url("mvault", "vault")),
        format!("{}#domain=disk", fs.display()),
    ];
    let vault = fs.to_str().unwrap().to_string();
    let mut init = vec!["init", "--ec", "2+1", "--pack-size", "2MiB"];
    for s in &stores {
        init.extend(["--store", s]);
    }
    vok(&vault, &init);
    let src = data(t.path(), 6, 4);

    // HDFS stops after the third pack: the backup goes on over the other two stores.
    let paused = spawn_paused(vcmd(&vault, &["backup", src.to_str().unwrap(), "--quiet"]), "pack-written", 3, t.path());
    dfs.stop();
    assert!(paused.resume().success(), "the backup must survive the HDFS outage");
    let o = vcmd(&vault, &["--json", "status"]).output().unwrap();
    assert_eq!(o.status.code(), Some(3), "lost redundancy is damage repair mends: exit 3");
    let st: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(st["unreadable_packs"], 0, "{st}");
    assert!(st["degraded_packs"].as_u64().unwrap() > 0, "HDFS must have stopped mid-backup: {st}");

    // With HDFS still stopped, the restore is byte-identical from the others.
    restore_identical(&vault, &src, &t.path().join("out-down"));

    // HDFS back; stopped again in the middle of a restore, which completes from the others.
    dfs.start_again();
    let target = t.path().join("out-mid");
    let restore = vcmd(&vault, &["restore", "latest", "--target", target.to_str().unwrap(), "--verify", "--quiet"]);
    let paused = spawn_paused(restore, "restore-chunk-written", 4, t.path());
    dfs.stop();
    assert!(paused.resume().success(), "the restore must survive the HDFS outage");
    dircmp::compare(&src, &restored(&target, &src)).unwrap();

    // Back again: repair writes the shards HDFS missed, then scrub finds every shard whole.
    dfs.start_again();
    let r = vjson(&vault, &["repair"]);
    assert!(r["unrecoverable"].as_array().unwrap().is_empty(), "{r}");
    assert!(r["shards_repaired"].as_u64().unwrap() > 0, "{r}");
    let scrub = vjson(&vault, &["scrub"]);
    assert_eq!(scrub["missing"].as_array().unwrap().len(), 0, "{scrub}");
    assert_eq!(scrub["corrupt"].as_array().unwrap().len(), 0, "{scrub}");
    assert_eq!(vjson(&vault, &["status"])["degraded_packs"], 0);
    // HDFS really holds its share now: with the Garage gone, HDFS and the directory rebuild every pack (2 of
    // 3 shards), those written while HDFS was down included.
    drop(g);
    restore_identical(&hdfs, &src, &t.path().join("out-healed"));
}

#[test]
fn a_datanode_killed_mid_backup_is_invisible_to_the_vault_with_replication_2() {
    let t = tempfile::tempdir().unwrap();
    // 1 MiB blocks, so every 2 MiB pack spans DataNode pipelines.
    let dfs =
        MiniDfs::start(&t.path().join("dfs"), &["--datanodes", "3", "--replication", "2", "--blocksize", "1048576"]);
    let vault = format!("{}/vault", dfs.url);
    vok(&vault, &["init", "--pack-size", "2MiB"]);
    let src = data(t.path(), 4, 4);
    let paused = spawn_paused(vcmd(&vault, &["backup", src.to_str().unwrap(), "--quiet"]), "pack-written", 2, t.path());
    // Killed, not reported: the NameNode learns of it only from missed heartbeats.
    dfs.ctl(&["kill-datanode", "0"]);
    assert!(paused.resume().success(), "a lost DataNode must not fail the backup");
    let st = vjson(&vault, &["status"]);
    assert_eq!(st["degraded_packs"], 0, "{st}");
    let c = vjson(&vault, &["check", "--read-data"]);
    assert_eq!(c["ok"], true, "{c}");
    restore_identical(&vault, &src, &t.path().join("out"));
}

#[test]
fn an_ha_namenode_failover_mid_backup_is_invisible_to_the_vault() {
    let t = tempfile::tempdir().unwrap();
    let dfs = MiniDfs::start(&t.path().join("dfs"), &["--ha"]);
    assert!(
        !dfs.url.trim_start_matches("hdfs://").contains(':'),
        "an HA cluster is named by its nameservice: {}",
        dfs.url.trim_start_matches("hdfs:")
    );
    let vault = dfs.store_url("vault");
    vok(&vault, &["init", "--pack-size", "2MiB"]);
    let src = data(t.path(), 4, 4);
    let paused = spawn_paused(vcmd(&vault, &["backup", src.to_str().unwrap(), "--quiet"]), "pack-written", 2, t.path());
    dfs.ctl(&["failover"]);
    let status = paused.resume();
    assert!(status.success(), "the backup must ride through the failover");
    let snaps = vjson(&vault, &["snapshots"]);
    assert_eq!(snaps.as_array().unwrap().len(), 1, "{snaps}");
    assert_eq!(snaps[0]["summary"]["degraded_packs"].as_u64().unwrap_or(0), 0, "{snaps}");
    let c = vjson(&vault, &["check", "--read-data"]);
    assert_eq!(c["ok"], true, "{c}");
    restore_identical(&vault, &src, &t.path().join("out"));
}

#[test]
fn kerberized_hdfs_refuses_a_client_without_a_ticket_and_serves_one_with_a_keytab_or_a_ticket() {
    let t = tempfile::tempdir().unwrap();
    let dfs = MiniDfs::start(&t.path().join("dfs"), &["--kerberos"]);
    let principal = std::fs::read_to_string(dfs.file("client.principal")).unwrap().trim().to_string();
    let keytab = dfs.file("client.keytab");
    // No ambient ticket: an empty private cache, the cluster's realm.
    let empty_cache = format!("FILE:{}", t.path().join("no-ticket.ccache").display());
    let krb = |c: &mut std::process::Command, cache: &str| {
        c.env("KRB5_CONFIG", dfs.file("krb5.conf")).env("KRB5CCNAME", cache).env_remove("KRB5_CLIENT_KTNAME");
    };
    let plain = dfs.store_url("vault");

    // Without a ticket: refused, one line naming the store, exit 1, nothing created.
    let mut c = vcmd(&plain, &["init"]);
    krb(&mut c, &empty_cache);
    let o = c.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(&dfs.url) && err.to_lowercase().contains("kerberos"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(!err.contains("panicked"), "{err}");

    // A wrong identity for the keytab: refused the same way.
    let wrong =
        format!("{plain}&principal=nobody@{}&keytab={}", principal.split('@').nth(1).unwrap(), keytab.display());
    let mut c = vcmd(&wrong, &["init"]);
    krb(&mut c, &empty_cache);
    let o = c.output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains(&dfs.url));

    // With the keytab named in the URL: served, data transfer encrypted (the cluster demands privacy).
    let with_keytab = format!("{plain}&principal={principal}&keytab={}", keytab.display());
    let run = |vault: &str, cache: &str, args: &[&str]| {
        let mut c = vcmd(vault, args);
        krb(&mut c, cache);
        let o = c.output().unwrap();
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    run(&with_keytab, &empty_cache, &["init", "--pack-size", "2MiB"]);
    let src = data(t.path(), 2, 3);
    run(&with_keytab, &empty_cache, &["backup", src.to_str().unwrap()]);
    let check: serde_json::Value =
        serde_json::from_str(&run(&with_keytab, &empty_cache, &["--json", "check", "--read-data"])).unwrap();
    assert_eq!(check["ok"], true, "{check}");

    // With a ticket from kinit in a cache (and the store's settings in the local settings file instead of
    // the URL): served too.
    let cache = format!("FILE:{}", t.path().join("ticket.ccache").display());
    let kinit = std::process::Command::new("kinit")
        .args(["-k", "-t", keytab.to_str().unwrap(), &principal])
        .env("KRB5_CONFIG", dfs.file("krb5.conf"))
        .env("KRB5CCNAME", &cache)
        .output()
        .expect("kinit (Debian's krb5-user; ./test installs it)");
    assert!(kinit.status.success(), "kinit: {}", String::from_utf8_lossy(&kinit.stderr));
    let authority = dfs.url.trim_start_matches("hdfs://").to_string();
    let settings = t.path().join("settings");
    std::fs::create_dir_all(&settings).unwrap();
    std::fs::write(
        settings.join("stores.json"),
        serde_json::json!({ "hdfs": { authority: { "conf_dir": dfs.conf_dir() } } }).to_string(),
    )
    .unwrap();
    let bare = format!("{}/vault", dfs.url);
    let target = t.path().join("out");
    let mut c = vcmd(&bare, &["restore", "latest", "--target", target.to_str().unwrap(), "--verify"]);
    krb(&mut c, &cache);
    c.env("MVAULT_CONFIG_DIR", &settings);
    let o = c.output().unwrap();
    assert!(o.status.success(), "restore with a ticket: {}", String::from_utf8_lossy(&o.stderr));
    dircmp::compare(&src, &restored(&target, &src)).unwrap();
}
