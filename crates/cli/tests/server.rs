//! The server, attacked from outside: tests/server/attack.sh drives the CLI and curl against a real
//! `mvault server` on 127.0.0.1 (isolation between tenants, roles, 401s, quotas, rate limits, dedup
//! before the network, audit verify, shredding). This test runs it with this build's binary.

use std::process::Command;

#[test]
fn the_attack_script_finds_every_door_shut() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/server/attack.sh");
    let out = Command::new("bash")
        .arg(script)
        .env("MVAULT_BIN", env!("CARGO_BIN_EXE_mvault"))
        .env_remove("MVAULT_VAULT")
        .env_remove("MVAULT_TOKEN")
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "attack.sh failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("all attack checks passed"), "{stdout}");
}

#[test]
fn concurrent_tenants_back_up_and_restore_exactly_under_load() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/server/load.sh");
    let out = Command::new("bash")
        .arg(script)
        .env("MVAULT_BIN", env!("CARGO_BIN_EXE_mvault"))
        .env_remove("MVAULT_VAULT")
        .env_remove("MVAULT_TOKEN")
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "load.sh failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("load test passed"), "{stdout}");
}
