//! A real PostgreSQL for the tests: Debian's server (`postgresql` package, installed by `./test`), one cluster
//! per test in its own directory, listening on 127.0.0.1 only, run as an unprivileged user (initdb refuses
//! root). Trust authentication for the test user: the cluster is reachable from this machine only.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Postgres {
    dir: PathBuf,
    bin: PathBuf,
    child: Option<Child>,
    pub port: u16,
}

/// Debian puts the server under /usr/lib/postgresql/<major>/bin; the newest there is used.
fn bin_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().map(|e| e.path().join("bin")).filter(|b| b.join("postgres").is_file()).collect())
        .unwrap_or_default();
    found.sort();
    found.pop().expect("PostgreSQL's server is not installed: `apt-get install postgresql` (./test does)")
}

/// Run as `nobody` when the tests run as root (as they do in CI); as the current user otherwise.
fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

fn give_to_nobody(path: &Path) {
    if is_root() {
        std::os::unix::fs::chown(path, Some(65534), Some(65534)).unwrap();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Postgres {
    pub fn start(dir: &Path) -> Postgres {
        std::fs::create_dir_all(dir).unwrap();
        let data = dir.join("data");
        give_to_nobody(dir);
        let bin = bin_dir();
        let o = as_server_user(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "mvault", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()
            .unwrap();
        assert!(o.status.success(), "initdb failed: {}", String::from_utf8_lossy(&o.stderr));
        let mut pg = Postgres { dir: dir.to_path_buf(), bin, child: None, port: free_port() };
        pg.run();
        pg.createdb("mvault");
        pg
    }

    /// Start (or start again) the server on its port and wait until it takes connections.
    pub fn run(&mut self) {
        let log = std::fs::File::create(self.dir.join("postgres.log")).unwrap();
        give_to_nobody(&self.dir.join("postgres.log"));
        let child = as_server_user(&self.bin.join("postgres"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-k"])
            .arg(&self.dir)
            .args(["-c", "fsync=off", "-c", "max_connections=200"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let start = Instant::now();
        loop {
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "mvault", "-d", "postgres"])
                .output()
                .unwrap();
            if ready.status.success() {
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "PostgreSQL did not start: {}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// An outage: the server process is killed, its data stays.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://mvault@127.0.0.1:{}/{db}", self.port)
    }

    pub fn psql(&self, db: &str, sql: &str) -> String {
        let o = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "mvault", "-d", db, "-tAc", sql])
            .output()
            .unwrap();
        assert!(o.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    pub fn createdb(&self, db: &str) {
        self.psql("postgres", &format!("CREATE DATABASE {db}"));
    }

    pub fn dropdb(&self, db: &str) {
        self.psql("postgres", &format!("DROP DATABASE {db} WITH (FORCE)"));
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.kill();
    }
}
