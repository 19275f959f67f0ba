//! The catalog on a real PostgreSQL (Debian's server, started per test by common/postgres.rs): a vault whose
//! chunk index lives there backs up, dedups and restores exactly; a dropped database is rebuilt from the
//! stores with nothing lost; an outage is a clear error naming the catalog and loses nothing; quota
//! reservations from many connections never pass a quota together; and three server instances over one
//! database are one service: one index, exact quotas, limits everywhere within a second, and a client that
//! survives an instance's SIGKILL (tests/catalog/instances.sh).

use crate::common::postgres::Postgres;
use crate::common::*;
use std::path::Path;
use std::process::Command;

fn on_pg(pg: &Postgres, vault: &Path, args: &[&str]) -> Command {
    let mut c = cmd(vault, args);
    c.env("MVAULT_CATALOG", pg.url("mvault"));
    c
}

fn pg_ok(pg: &Postgres, vault: &Path, args: &[&str]) -> String {
    let o = on_pg(pg, vault, args).output().unwrap();
    assert!(
        o.status.success(),
        "mvault {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn pg_json(pg: &Postgres, vault: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&pg_ok(pg, vault, &all)).unwrap()
}

/// Chunks and bytes of the default tenant as `catalog status` reports them.
fn usage(status: &serde_json::Value) -> (u64, u64) {
    let t = status.as_array().unwrap().iter().find(|t| t["tenant"] == "default").unwrap();
    (t["chunks"].as_u64().unwrap(), t["bytes"].as_u64().unwrap())
}

#[test]
fn a_vault_on_postgres_dedups_restores_and_is_rebuilt_whole_after_its_database_is_dropped() {
    let pgdir = tempfile::tempdir().unwrap();
    let pg = Postgres::start(pgdir.path());
    let d = tempfile::tempdir().unwrap();
    let (vault, src) = (d.path().join("v"), d.path().join("src"));
    sample_tree(&src);
    write_random_file(&src.join("big.bin"), 6 << 20, 11);
    pg_ok(&pg, &vault, &["init", "--chunk-size", "64KiB"]);
    let first = pg_json(&pg, &vault, &["backup", src.to_str().unwrap()]);
    assert!(first["summary"]["new_chunks"].as_u64().unwrap() > 50);
    // The rows are in PostgreSQL, not in a cache file.
    let rows: u64 = pg.psql("mvault", "SELECT count(*) FROM chunks").parse().unwrap();
    assert!(rows >= first["summary"]["new_chunks"].as_u64().unwrap(), "{rows} rows");
    write_random_file(&src.join("more.bin"), 1 << 20, 12);
    let second = pg_json(&pg, &vault, &["backup", src.to_str().unwrap()]);
    let new = second["summary"]["new_chunks"].as_u64().unwrap();
    assert!(new > 0 && new <= 40, "only the new file's chunks are new: {new}");
    let before = usage(&pg_json(&pg, &vault, &["catalog", "status"]));
    // The vault is bound to this database: a writer given another catalog refuses before any pack, saying
    // what to pass; reading is fine.
    let refused = fails(&vault, &["backup", src.to_str().unwrap()], 2);
    let bound = format!("postgres://127.0.0.1:{}/mvault", pg.port);
    assert!(refused.contains(&bound) && refused.contains("--catalog"), "{refused}");
    assert_eq!(usage(&pg_json(&pg, &vault, &["catalog", "status"])), before, "the refused backup stored nothing");
    ok(&vault, &["snapshots"]);
    // A recount from the index files alone (the memory engine reads them all) agrees with the counters.
    let recount = json(&vault, &["--catalog", "memory", "catalog", "status"]);
    assert_eq!(usage(&recount), before);

    // The database is lost: a new empty one, and the catalog rebuilt from the stores.
    pg.dropdb("mvault");
    pg.createdb("mvault");
    let rebuilt = pg_json(&pg, &vault, &["catalog", "rebuild"]);
    assert_eq!(usage(&rebuilt), before, "the rebuilt catalog counts what was there");
    // Restored elsewhere: a restore beside the source would change its parent directory, which the
    // snapshots record, and the last backup below would then store new trees.
    let outs = tempfile::tempdir().unwrap();
    for snap in ["latest", &first["snapshot_id"].as_str().unwrap()[..8]] {
        let out = outs.path().join(format!("out-{snap}"));
        pg_ok(&pg, &vault, &["restore", snap, "--target", out.to_str().unwrap()]);
    }
    // compare fails on the first difference (type, content, mode, mtime, link target).
    let same = mvault_core::dircmp::compare(&src, &restored(&outs.path().join("out-latest"), &src)).unwrap();
    assert!(same.files >= 3, "{} files compared", same.files);
    // Old chunks still dedup: the same files again store no data, only the tree of a parent directory
    // whose mtime moved (the temporary directory's parent gains entries as other tests run).
    // (Another host has no parent snapshot, so every file is read and looked up again.)
    let again = pg_json(&pg, &vault, &["backup", "--host", "elsewhere", src.to_str().unwrap()]);
    let s = &again["summary"];
    assert!(s["files_read"].as_u64().unwrap() >= 7, "every file is read again: {again}");
    assert!(s["new_bytes"].as_u64().unwrap() < 2048, "no data chunk is stored twice: {again}");
    pg_ok(&pg, &vault, &["check"]);
}

#[test]
fn a_postgres_outage_is_a_clear_error_naming_the_catalog_and_work_resumes_after_it() {
    let pgdir = tempfile::tempdir().unwrap();
    let mut pg = Postgres::start(pgdir.path());
    let d = tempfile::tempdir().unwrap();
    let (vault, src) = (d.path().join("v"), d.path().join("src"));
    sample_tree(&src);
    pg_ok(&pg, &vault, &["init"]);
    pg_ok(&pg, &vault, &["backup", src.to_str().unwrap()]);
    let snaps_before = pg_json(&pg, &vault, &["snapshots"]).as_array().unwrap().len();

    pg.kill();
    // The recovery drill needs the stores and a key alone, no catalog.
    let drill = json(&vault, &["drill"]);
    assert!(drill["files"].as_u64().unwrap() >= 3, "{drill}");
    write_random_file(&src.join("during-outage.bin"), 2 << 20, 5);
    let o = on_pg(&pg, &vault, &["backup", src.to_str().unwrap()]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "an outage passes by itself: exit 1, not 2 ({err})");
    assert!(err.contains("the catalog (postgres") && err.lines().count() == 1, "{err}");
    assert!(!err.contains("panicked"), "{err}");

    pg.run();
    // Nothing half-written became a snapshot; the next backup stores the new file and everything checks.
    assert_eq!(pg_json(&pg, &vault, &["snapshots"]).as_array().unwrap().len(), snaps_before);
    let after = pg_json(&pg, &vault, &["backup", src.to_str().unwrap()]);
    assert!(after["summary"]["new_chunks"].as_u64().unwrap() > 0);
    pg_ok(&pg, &vault, &["check", "--read-data"]);
    let out = d.path().join("out");
    pg_ok(&pg, &vault, &["restore", "latest", "--target", out.to_str().unwrap()]);
    let same = mvault_core::dircmp::compare(&src, &restored(&out, &src)).unwrap();
    assert!(same.files >= 3, "{} files compared", same.files);
}

#[test]
fn three_server_instances_over_one_postgres_are_one_service() {
    let pgdir = tempfile::tempdir().unwrap();
    let pg = Postgres::start(pgdir.path());
    let path = format!("{}/../../tests/catalog/instances.sh", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .arg(path)
        .env("MVAULT_BIN", bin())
        .env("MVAULT_CATALOG", pg.url("mvault"))
        .env_remove("MVAULT_VAULT")
        .env_remove("MVAULT_TOKEN")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(out.status.success(), "instances.sh failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("three instances share one catalog"), "{stdout}");
}

/// Quota reservations on PostgreSQL: writers on many connections (as many instances would be) reserving at
/// once never pass the quota together, released bytes come back, and an ended lease gives its bytes back.
#[test]
fn reservations_on_postgres_never_pass_a_quota_together() {
    let pgdir = tempfile::tempdir().unwrap();
    let pg = Postgres::start(pgdir.path());
    let arg: mvault_core::CatalogArg = pg.url("mvault").parse().unwrap();
    // Four engines, each with its own pool: four instances of the server.
    let handles: Vec<mvault_core::Catalog> =
        (0..4).map(|_| mvault_core::Catalog::new(arg.open("vault-r").unwrap(), "vault-r", "q").unwrap()).collect();
    let race = |max: u64| {
        let granted = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for cat in &handles {
                for _ in 0..3 {
                    scope.spawn(|| {
                        if let Ok(r) = cat.reserve(1000, max).unwrap() {
                            granted.lock().unwrap().push(r);
                        }
                    });
                }
            }
        });
        granted.into_inner().unwrap()
    };
    let held = race(5500);
    assert_eq!(held.len(), 5, "12 writers for room of 5: {} granted", held.len());
    let refused = handles[2].reserve(1000, 5500).unwrap().err().expect("the sixth reservation is refused");
    assert_eq!((refused.stored, refused.reserved), (0, 5000));
    drop(held);
    assert_eq!(race(5500).len(), 5, "released reservations give their bytes back");
    // Reservations live in the database: a fresh connection sees the others' and cannot pass them.
    let a = handles[0].reserve(3000, 5500).unwrap().expect("room for 3000");
    let late = mvault_core::Catalog::new(arg.open("vault-r").unwrap(), "vault-r", "q").unwrap();
    assert!(late.reserve(3000, 5500).unwrap().is_err(), "a new instance passed a reservation held elsewhere");
    drop(a);
    assert!(late.reserve(3000, 5500).unwrap().is_ok());
}

/// PostgreSQL stopped while the server is in the middle of an upload (paused after writing a pack, before
/// the batch's index file): the client's backup fails with the server's 503 naming the catalog, nothing it
/// sent becomes a snapshot, and once the database is back the same backup completes and restores exactly.
#[test]
fn postgres_stopped_mid_upload_is_a_503_naming_the_catalog_and_the_server_resumes_after_it() {
    use std::io::BufRead;
    let pgdir = tempfile::tempdir().unwrap();
    let mut pg = Postgres::start(pgdir.path());
    let d = tempfile::tempdir().unwrap();
    let (vault, src, state) = (d.path().join("v"), d.path().join("src"), d.path().join("state"));
    std::fs::create_dir_all(&src).unwrap();
    write_random_file(&src.join("weights.bin"), 12 << 20, 9);
    pg_ok(&pg, &vault, &["init"]);
    pg_ok(&pg, &vault, &["tenant", "create", "a"]);
    let token = pg_json(&pg, &vault, &["token", "create", "--tenant", "a", "--role", "writer"])["token"]
        .as_str()
        .unwrap()
        .to_string();
    let pause = d.path().join("server.paused");
    let mut server = on_pg(&pg, &vault, &["--json", "server", "--listen", "127.0.0.1:0", "--state-dir"])
        .arg(&state)
        .env("MVAULT_TEST_PAUSE", "pack-written@1")
        .env("MVAULT_TEST_PAUSE_FILE", &pause)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(server.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let announced: serde_json::Value = serde_json::from_str(&line).unwrap();
    let url = announced["listen"].as_str().unwrap().to_string();
    let remote = |args: &[&str]| {
        let mut c = Command::new(bin());
        c.arg("--vault")
            .arg(&url)
            .args(args)
            .env("MVAULT_TOKEN", &token)
            .env("MVAULT_TLS_CA", state.join("server-cert.pem"));
        c.env_remove("MVAULT_VAULT").env_remove("MVAULT_CATALOG");
        c
    };
    let backup = remote(&["backup", src.to_str().unwrap()]).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while !pause.exists() {
        assert!(std::time::Instant::now() < deadline, "the server never wrote a pack");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    pg.kill();
    std::fs::remove_file(&pause).unwrap();
    let o = backup.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "an outage is exit 1: {err}");
    assert!(err.contains("the catalog (postgres") && !err.contains("panicked"), "{err}");
    println!("the backup during the outage: {}", err.trim());

    pg.run();
    let snaps = remote(&["--json", "snapshots"]).output().unwrap();
    assert!(snaps.status.success(), "{}", String::from_utf8_lossy(&snaps.stderr));
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&snaps.stdout).unwrap(), serde_json::json!([]));
    let o = remote(&["backup", src.to_str().unwrap()]).output().unwrap();
    assert!(o.status.success(), "the backup after the outage: {}", String::from_utf8_lossy(&o.stderr));
    let out = d.path().join("out");
    let o = remote(&["restore", "latest", "--target", out.to_str().unwrap()]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        std::fs::read(src.join("weights.bin")).unwrap()
            == std::fs::read(restored(&out, &src).join("weights.bin")).unwrap()
    );
    let _ = server.kill();
    let _ = server.wait();
    pg_ok(&pg, &vault, &["check", "--read-data"]);
}
