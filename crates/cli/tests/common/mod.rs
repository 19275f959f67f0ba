//! Helpers for the end-to-end tests: run the real `mvault` binary against real directories.

pub mod garage;
pub mod minidfs;
pub mod postgres;

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const PASS: &str = "correct horse battery staple";

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_mvault-test"))
}

/// The program that ships, on which the test hooks have no effect.
pub fn shipped_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_mvault"))
}

/// A command for `mvault --vault VAULT ARGS...` with the passphrase in the environment.
pub fn cmd(vault: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.arg("--vault")
        .arg(vault)
        .args(args)
        .env("MVAULT_PASSWORD", PASS)
        .env_remove("MVAULT_VAULT")
        .env_remove("MVAULT_NEW_PASSWORD");
    c
}

pub fn run(vault: &Path, args: &[&str]) -> Output {
    cmd(vault, args).output().expect("run mvault")
}

/// Run and require success; returns stdout.
pub fn ok(vault: &Path, args: &[&str]) -> String {
    let o = run(vault, args);
    assert!(
        o.status.success(),
        "mvault {args:?} failed ({}):\n{}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).expect("utf-8 output")
}

pub fn json(vault: &Path, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    serde_json::from_str(&ok(vault, &a)).expect("valid JSON output")
}

/// Run and require failure with exit code `code`; returns stderr.
pub fn fails(vault: &Path, args: &[&str], code: i32) -> String {
    let o = run(vault, args);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(code), "mvault {args:?}: expected exit {code}, got {}; stderr:\n{err}", o.status);
    assert!(!err.contains("panicked"), "mvault {args:?} panicked:\n{err}");
    err
}

pub fn init(vault: &Path) {
    ok(vault, &["init"]);
}

/// Deterministic pseudo-random bytes (xorshift64*), fast enough for gigabytes.
pub fn fill(buf: &mut [u8], seed: u64) {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for c in buf.chunks_mut(8) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let v = x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
        c.copy_from_slice(&v[..c.len()]);
    }
}

pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    fill(&mut v, seed);
    v
}

/// Write a file of `size` pseudo-random bytes in 8 MiB pieces (bounded memory).
pub fn write_random_file(path: &Path, size: u64, seed: u64) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut buf = vec![0u8; 8 << 20];
    let mut left = size;
    let mut s = seed;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        fill(&mut buf[..n], s);
        f.write_all(&buf[..n]).unwrap();
        left -= n as u64;
        s += 1;
    }
}

/// A `size`-byte file that is mostly holes: every `period` bytes start with `island` pseudo-random bytes,
/// the rest is never written. Every chunk of it is still unique, but it takes `size * island / period`
/// of disk (CI machines may have little), and so does its backup once zstd has seen the zeros.
pub fn write_sparse_random_file(path: &Path, size: u64, period: u64, island: usize, seed: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::create(path).unwrap();
    f.set_len(size).unwrap();
    let mut buf = vec![0u8; island];
    for (i, at) in (0..size).step_by(period as usize).enumerate() {
        let n = (size - at).min(island as u64) as usize;
        fill(&mut buf[..n], seed + i as u64);
        f.write_all_at(&buf[..n], at).unwrap();
    }
}

/// Bytes the file takes on disk (holes are free).
pub fn allocated(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().blocks() * 512
}

pub fn set_mtime(path: &Path, secs: i64, nsec: u32) {
    let t = filetime::FileTime::from_unix_time(secs, nsec);
    filetime::set_symlink_file_times(path, t, t).unwrap();
}

/// A small tree with every kind of entry the vault must keep exactly.
pub fn sample_tree(root: &Path) {
    std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
    std::fs::write(root.join("empty"), b"").unwrap();
    std::fs::write(root.join("small.txt"), b"hello vault\n").unwrap();
    std::fs::write(root.join("sub/medium.bin"), random_bytes(3 << 20, 1)).unwrap();
    std::fs::write(root.join("sub/deeper/compressible.json"), "{\"k\": 1}\n".repeat(50_000)).unwrap();
    let weird = root.join(std::ffi::OsStr::from_bytes(b"name with spaces, \xff\xfe bytes\nand newline"));
    std::fs::write(&weird, b"odd name").unwrap();
    std::os::unix::fs::symlink("small.txt", root.join("link")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", root.join("dangling")).unwrap();
    std::fs::set_permissions(root.join("small.txt"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(root.join("script.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(root.join("script.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(root.join("sub/deeper"), std::fs::Permissions::from_mode(0o700)).unwrap();
    set_mtime(&root.join("small.txt"), 1_600_000_000, 123_456_789);
    set_mtime(&weird, 1_500_000_000, 0);
    set_mtime(&root.join("link"), 1_400_000_000, 5);
    set_mtime(&root.join("sub/deeper"), 1_300_000_000, 42);
}

/// Where a backed-up absolute path lands under a restore target.
pub fn restored(target: &Path, original: &Path) -> PathBuf {
    target.join(original.strip_prefix("/").unwrap())
}

pub fn dir_size(path: &Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(path).unwrap().flatten() {
        let t = e.file_type().unwrap();
        if t.is_dir() {
            n += dir_size(&e.path());
        } else if t.is_file() {
            n += e.metadata().unwrap().len();
        }
    }
    n
}

/// Every object file under a vault directory whose path contains `part`.
pub fn objects(vault: &Path, part: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![vault.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().contains(part) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

pub fn flip_byte(path: &Path, offset: usize) {
    let mut b = std::fs::read(path).unwrap();
    let i = offset.min(b.len() - 1);
    b[i] ^= 0x01;
    std::fs::write(path, b).unwrap();
}

/// A process stopped at a named fault point (`MVAULT_TEST_PAUSE`, crates/core/src/fault.rs) in the middle of
/// its work: the test makes its outage there, then lets it go on.
pub struct Paused {
    file: PathBuf,
    pub child: std::process::Child,
}

/// Spawn `command` and return once it has reached the `pass`-th pass of `point` and waits there. Fails the test if the
/// process ends first (the point was never reached: the data is too small for the pass asked for).
pub fn spawn_paused(mut command: Command, point: &str, pass: u64, scratch: &Path) -> Paused {
    let file = scratch.join(format!("paused-{point}-{pass}-{}", std::process::id()));
    let _ = std::fs::remove_file(&file);
    command.env("MVAULT_TEST_PAUSE", format!("{point}@{pass}")).env("MVAULT_TEST_PAUSE_FILE", &file);
    let mut child = command.spawn().expect("spawn mvault");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    while !file.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the process ended ({status}) before pass {pass} of the fault point {point}");
        }
        assert!(std::time::Instant::now() < deadline, "no pass {pass} of {point} in 10 minutes");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    Paused { file, child }
}

impl Paused {
    /// Let the process go on and wait for it to end.
    pub fn resume(mut self) -> std::process::ExitStatus {
        std::fs::remove_file(&self.file).expect("remove the pause file");
        self.child.wait().expect("wait for mvault")
    }
}
