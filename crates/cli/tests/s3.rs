//! ModelVault over a real S3 server: erasure coding across several Garage processes and fs stores, with a
//! Garage process killed in the middle of a backup and in the middle of a restore.

use crate::common::garage::{self, Garage};
use crate::common::*;
use mvault_core::dircmp;
use std::path::Path;

fn s3_cmd(vault: &str, args: &[&str]) -> std::process::Command {
    let mut c = cmd(Path::new(vault), args);
    c.env("AWS_ACCESS_KEY_ID", garage::KEY_ID).env("AWS_SECRET_ACCESS_KEY", garage::SECRET);
    c
}

fn s3_ok(vault: &str, args: &[&str]) -> String {
    let o = s3_cmd(vault, args).output().unwrap();
    assert!(
        o.status.success(),
        "mvault {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn ec_over_garage_and_fs_loses_nothing_when_a_garage_dies_mid_backup_and_mid_restore() {
    let t = tempfile::tempdir().unwrap();
    let mut nodes: Vec<Garage> = (0..3).map(|i| Garage::start(&t.path().join(format!("garage{i}")))).collect();
    for (i, g) in nodes.iter().enumerate() {
        g.bucket(&format!("mvault-{i}"));
    }
    // 4+2 over 3 Garage servers and 3 local directories, each in its own failure domain.
    let mut stores: Vec<String> = nodes
        .iter()
        .enumerate()
        .map(|(i, g)| format!("{}#domain=garage{i}", g.url(&format!("mvault-{i}"), "vault")))
        .collect();
    for i in 0..3 {
        stores.push(format!("{}#domain=disk{i}", t.path().join(format!("fs{i}")).display()));
    }
    let vault = nodes[0].url("mvault-0", "vault");
    let mut init = vec!["init", "--ec", "4+2", "--pack-size", "2MiB"];
    for s in &stores {
        init.push("--store");
        init.push(s);
    }
    s3_ok(&vault, &init);

    let src = t.path().join("data");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..12u64 {
        write_random_file(&src.join(format!("ckpt-{i}.bin")), 6 << 20, 900 + i);
    }
    sample_tree(&src.join("configs"));

    // Kill one Garage while the backup runs: the backup completes on the other five stores.
    let paused =
        spawn_paused(s3_cmd(&vault, &["backup", src.to_str().unwrap(), "--quiet"]), "pack-written", 3, t.path());
    nodes[1].kill();
    let status = paused.resume();
    assert!(status.success(), "backup must survive a lost store");
    nodes[1].restart();
    let o = s3_cmd(&vault, &["--json", "status"]).output().unwrap();
    assert_eq!(o.status.code(), Some(3), "lost redundancy is damage repair mends: exit 3");
    let st: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(st["unreadable_packs"] == 0, "{st}");
    assert!(st["degraded_packs"].as_u64().unwrap() > 0, "the Garage must have died mid-backup: {st}");

    // Kill another Garage while a restore runs: the restore completes, byte for byte.
    let target = t.path().join("out");
    let restore = s3_cmd(&vault, &["restore", "latest", "--target", target.to_str().unwrap(), "--verify", "--quiet"]);
    let paused = spawn_paused(restore, "restore-chunk-written", 8, t.path());
    nodes[2].kill();
    assert!(paused.resume().success(), "restore must survive a lost store");
    dircmp::compare(&src, &restored(&target, &src)).unwrap();
    nodes[2].restart();

    // Heal: shards missed while the first Garage was down are rebuilt; afterwards scrub is clean.
    s3_ok(&vault, &["repair"]);
    let clean: serde_json::Value = serde_json::from_str(&s3_ok(&vault, &["--json", "scrub"])).unwrap();
    assert_eq!(clean["missing"].as_array().unwrap().len(), 0, "{clean}");
    assert_eq!(clean["corrupt"].as_array().unwrap().len(), 0, "{clean}");

    // The vault opens from a single surviving store's URL: one local directory, with two Garages gone.
    nodes[0].kill();
    nodes[1].kill();
    let fs2 = t.path().join("fs2");
    let target2 = t.path().join("out2");
    s3_ok(fs2.to_str().unwrap(), &["restore", "latest", "--target", target2.to_str().unwrap(), "--verify"]);
    dircmp::compare(&src, &restored(&target2, &src)).unwrap();
}

#[test]
fn s3_credentials_come_from_the_environment_or_local_settings_never_the_vault() {
    let t = tempfile::tempdir().unwrap();
    let g = Garage::start(&t.path().join("garage"));
    g.bucket("mvault-settings");
    let s3 = g.url("mvault-settings", "v");
    // an fs store beside the bucket, so the config every store holds can be searched as plain bytes
    let local = t.path().join("local");
    let vault = local.to_str().unwrap().to_string();
    let env = |c: &mut std::process::Command| {
        c.env_remove("AWS_ACCESS_KEY_ID").env_remove("AWS_SECRET_ACCESS_KEY").env("MVAULT_CONFIG_DIR", t.path());
    };
    // without credentials: a clear error naming the store
    let mut c = cmd(Path::new(&vault), &["init", "--replicas", "2", "--store", &s3]);
    env(&mut c);
    let o = c.output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("s3://mvault-settings"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // from the local settings file
    std::fs::write(
        t.path().join("stores.json"),
        format!(
            r#"{{ "s3": {{ "mvault-settings": {{ "access_key_id": "{}", "secret_access_key": "{}" }} }} }}"#,
            garage::KEY_ID,
            garage::SECRET
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let mut c = cmd(Path::new(&vault), args);
        env(&mut c);
        let o = c.output().unwrap();
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    };
    run(&["init", "--replicas", "2", "--store", &s3]);
    let src = t.path().join("src");
    sample_tree(&src);
    run(&["backup", src.to_str().unwrap()]);
    // the credentials are nowhere in the vault: the local store holds the same config and metadata as the bucket
    for id_or_secret in [garage::KEY_ID, garage::SECRET] {
        let found = std::process::Command::new("grep").args(["-r", "-l", id_or_secret]).arg(&local).output().unwrap();
        assert!(found.stdout.is_empty(), "credentials stored in the vault: {}", String::from_utf8_lossy(&found.stdout));
    }
    std::fs::remove_dir_all(&local).unwrap();
    // the bucket alone holds a whole copy
    let target = t.path().join("out");
    let mut c = cmd(Path::new(&s3), &["restore", "latest", "--target", target.to_str().unwrap(), "--verify"]);
    env(&mut c);
    assert!(c.output().unwrap().status.success());
    mvault_core::dircmp::compare(&src, &restored(&target, &src)).unwrap();
}
