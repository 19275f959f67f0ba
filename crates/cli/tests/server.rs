//! The server, driven from outside by scripts that use only the CLI, curl and jq against a real `mvault
//! server` on 127.0.0.1: tests/server/attack.sh (isolation between tenants, roles, 401s, quotas, rate limits,
//! dedup before the network, shutdown mid-upload, audit verify, scheduled jobs, shredding) and
//! tests/server/load.sh (several tenants backing up and restoring at once), tests/server/locks.sh (one lock
//! conflict answered alike by the CLI, the HTTP API and S3), tests/server/s3.sh (the S3
//! gateway with boto3, s3fs and the AWS CLI, then a bucket snapshot restored), tests/server/tls.sh (sslyze
//! against both listeners), tests/server/schema.sh (schemathesis against docs/openapi.yaml). These tests run them with this build's test binary.

use crate::common::bin;
use std::process::Command;

/// Run tests/server/SCRIPT and require it to succeed and print `done`.
fn run_script(script: &str, done: &str) {
    let path = format!("{}/../../tests/server/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .arg(path)
        .env("MVAULT_BIN", bin())
        .env_remove("MVAULT_VAULT")
        .env_remove("MVAULT_TOKEN")
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "{script} failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains(done), "{stdout}");
}

#[test]
fn the_attack_script_finds_every_door_shut() {
    run_script("attack.sh", "all attack checks passed");
}

#[test]
fn concurrent_tenants_back_up_and_restore_exactly_under_load() {
    run_script("load.sh", "load test passed");
}

#[test]
fn s3_clients_store_checkpoints_and_a_bucket_snapshot_restores_them() {
    run_script("s3.sh", "all S3 gateway checks passed");
}

#[test]
fn a_lock_conflict_is_the_same_typed_answer_locally_over_http_and_over_s3() {
    run_script("locks.sh", "lock conflict checks passed");
}

#[test]
fn a_tls_scanner_finds_nothing_below_tls_1_2_and_no_weak_suite_on_either_listener() {
    run_script("tls.sh", "TLS scan found nothing");
}

#[test]
fn schemathesis_finds_every_answer_of_the_http_api_as_docs_openapi_describes_it() {
    run_script("schema.sh", "schema checks passed");
}
