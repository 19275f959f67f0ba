//! A real HDFS for the tests: Apache Hadoop's MiniDFSCluster (NameNodes and DataNodes in one JVM, every port
//! on 127.0.0.1), started and stopped by `tests/hdfs/minidfs.sh`, whose Maven build `./test` makes up front.
//! A missing JDK or Maven build fails the test with the script's own message.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct MiniDfs {
    dir: PathBuf,
    flags: Vec<String>,
    /// `hdfs://127.0.0.1:PORT`, or `hdfs://NAMESERVICE` for HA.
    pub url: String,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/hdfs/minidfs.sh")
}

fn run(args: &[&str]) -> String {
    let o = Command::new("bash").arg(script()).args(args).output().expect("run tests/hdfs/minidfs.sh");
    assert!(
        o.status.success(),
        "tests/hdfs/minidfs.sh {args:?} failed ({}):\n{}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

impl MiniDfs {
    /// Start a cluster in `dir` (`flags` as the script takes them: `--datanodes N`, `--ha`, `--kerberos`,
    /// `--replication R`, `--blocksize B`); returns once it accepts writes.
    pub fn start(dir: &Path, flags: &[&str]) -> MiniDfs {
        std::fs::create_dir_all(dir).unwrap();
        let flags: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
        let mut c = MiniDfs { dir: dir.to_path_buf(), flags, url: String::new() };
        c.url = c.start_again();
        c
    }

    /// Start the stopped cluster again on the same data and NameNode ports.
    pub fn start_again(&mut self) -> String {
        let mut args = vec!["start", self.dir.to_str().unwrap()];
        args.extend(self.flags.iter().map(String::as_str));
        let out = run(&args);
        out.lines().last().expect("the script prints the URL last").trim().to_string()
    }

    /// Shut the whole cluster down (its data stays for `start_again`): an outage of the store.
    pub fn stop(&self) {
        run(&["stop", self.dir.to_str().unwrap()]);
    }

    /// A control command to the running cluster: `kill-datanode I`, `failover`.
    pub fn ctl(&self, args: &[&str]) {
        let mut a = vec!["ctl", self.dir.to_str().unwrap()];
        a.extend_from_slice(args);
        run(&a);
    }

    /// The client configuration directory the cluster wrote (HA nameservice, Kerberos principals, data
    /// transfer protection).
    pub fn conf_dir(&self) -> PathBuf {
        self.dir.join("conf")
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The store URL of `path` on this cluster, with its client configuration.
    pub fn store_url(&self, path: &str) -> String {
        format!("{}/{path}?conf_dir={}", self.url, self.conf_dir().display())
    }
}

impl Drop for MiniDfs {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(script()).args(["kill", self.dir.to_str().unwrap()]).output();
    }
}
