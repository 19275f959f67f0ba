//! A real S3 server for the tests: Garage, one single-node cluster per process, every port on 127.0.0.1.
//! Its binary is installed by `.ci/run` (`cargo install garage --locked`); a missing binary fails the test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const KEY_ID: &str = "GK0123456789abcdef01234567";
pub const SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

pub struct Garage {
    dir: PathBuf,
    cfg: PathBuf,
    child: Option<Child>,
    pub s3_port: u16,
}

fn binary() -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    for p in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(PathBuf::from)
        .chain([PathBuf::from(home).join(".cargo/bin")])
    {
        let g = p.join("garage");
        if g.is_file() {
            return g;
        }
    }
    panic!("the garage binary is not installed: run `cargo install garage --locked` (.ci/run does)");
}

/// A free port on 127.0.0.1 (bound and released; fine for tests).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Garage {
    fn cli(&self, args: &[&str]) -> String {
        let o = Command::new(binary()).arg("-c").arg(&self.cfg).args(args).output().unwrap();
        assert!(
            o.status.success(),
            "garage {args:?} failed: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    pub fn start(dir: &Path) -> Garage {
        std::fs::create_dir_all(dir).unwrap();
        let (s3, rpc, admin) = (free_port(), free_port(), free_port());
        let secret: String =
            super::random_bytes(32, s3 as u64 * 7919 + rpc as u64).iter().map(|b| format!("{b:02x}")).collect();
        let cfg = dir.join("garage.toml");
        std::fs::write(
            &cfg,
            format!(
                "metadata_dir = \"{d}/meta\"\ndata_dir = \"{d}/data\"\ndb_engine = \"sqlite\"\nreplication_factor = 1\n\
                 rpc_bind_addr = \"127.0.0.1:{rpc}\"\nrpc_public_addr = \"127.0.0.1:{rpc}\"\nrpc_secret = \"{secret}\"\n\
                 [s3_api]\ns3_region = \"garage\"\napi_bind_addr = \"127.0.0.1:{s3}\"\nroot_domain = \".s3.garage.localhost\"\n\
                 [admin]\napi_bind_addr = \"127.0.0.1:{admin}\"\n",
                d = dir.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut g = Garage { dir: dir.to_path_buf(), cfg, child: None, s3_port: s3 };
        g.run_server();
        let id = g.cli(&["node", "id", "-q"]).trim().split('@').next().unwrap().to_string();
        g.cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &id]);
        g.cli(&["layout", "apply", "--version", "1"]);
        g.cli(&["key", "import", "--yes", "-n", "mvault", KEY_ID, SECRET]);
        g
    }

    fn run_server(&mut self) {
        let log = std::fs::File::create(self.dir.join("server.log")).unwrap();
        let child = Command::new(binary())
            .arg("-c")
            .arg(&self.cfg)
            .arg("server")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = Command::new(binary())
                .arg("-c")
                .arg(&self.cfg)
                .args(["node", "id", "-q"])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if ok && std::net::TcpStream::connect(("127.0.0.1", self.s3_port)).is_ok() {
                return;
            }
            assert!(Instant::now() < deadline, "garage did not start: see {}", self.dir.join("server.log").display());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn bucket(&self, name: &str) {
        self.cli(&["bucket", "create", name]);
        self.cli(&["bucket", "allow", "--read", "--write", "--owner", name, "--key", "mvault"]);
    }

    /// The store URL of a bucket (and prefix) on this server.
    pub fn url(&self, bucket: &str, prefix: &str) -> String {
        format!("s3://{bucket}/{prefix}?endpoint=http://127.0.0.1:{}&region=garage", self.s3_port)
    }

    /// Stop the server process abruptly (SIGKILL), as a crash or a pulled cable would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().ok();
            c.wait().ok();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.run_server();
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        self.kill();
    }
}
