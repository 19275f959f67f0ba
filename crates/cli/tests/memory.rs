//! Memory stays bounded whatever the file size: backup and restore of a 4 GiB file peak under 300 MiB RSS.
//! Peak RSS is the kernel's own figure for the child process (wait4 rusage), not an estimate.
//!
//! The file is 4 GiB of unique chunks but mostly holes, and is restored `--sparse`, so the test needs
//! well under 1 GiB of disk: a CI machine once had less than 4 GiB free and failed writing a dense one.
//! Every byte still goes through chunking, hashing, compression, encryption and back.

use crate::common::*;

/// Exit code and peak RSS of a child, both from the kernel's wait4 (std's own wait would not give the rusage).
#[allow(clippy::zombie_processes)]
#[allow(unsafe_code)] // test only: std has no wait with rusage
fn peak_rss_mib(mut command: std::process::Command) -> (i32, u64) {
    let child = command.stdout(std::process::Stdio::null()).spawn().unwrap();
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain integers, for which all-zero bytes are a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our own unreaped child; status and ru are live, exclusive out-pointers for the call.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    assert_eq!(r, pid, "wait4 failed");
    (libc::WEXITSTATUS(status), ru.ru_maxrss as u64 / 1024)
}

#[test]
fn four_gib_file_backup_and_restore_stay_under_300_mib() {
    let t = tempfile::tempdir().unwrap();
    let (vault, src, target) = (t.path().join("vault"), t.path().join("data"), t.path().join("out"));
    std::fs::create_dir_all(&src).unwrap();
    write_sparse_random_file(&src.join("weights.bin"), 4 << 30, 1 << 20, 64 << 10, 77);
    init(&vault);

    let (code, backup_mib) = peak_rss_mib(cmd(&vault, &["backup", src.to_str().unwrap(), "--quiet"]));
    assert_eq!(code, 0, "backup failed");
    // The restore is checked by --verify against the snapshot's keyed hashes, so the source can go.
    std::fs::remove_dir_all(&src).unwrap();
    let (code, restore_mib) = peak_rss_mib(cmd(
        &vault,
        &["restore", "latest", "--target", target.to_str().unwrap(), "--verify", "--sparse", "--quiet"],
    ));
    assert_eq!(code, 0, "restore failed");
    let out = restored(&target, &src).join("weights.bin");
    assert_eq!(std::fs::metadata(&out).unwrap().len(), 4 << 30);
    let disk = allocated(&out);
    eprintln!("restored file takes {} MiB of disk", disk >> 20);
    assert!(disk < 1 << 30, "--sparse restore wrote the holes: {disk} bytes allocated");
    eprintln!("peak RSS: backup {backup_mib} MiB, restore {restore_mib} MiB");
    assert!(backup_mib < 300, "backup peak RSS {backup_mib} MiB");
    assert!(restore_mib < 300, "restore peak RSS {restore_mib} MiB");
}
