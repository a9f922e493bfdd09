//! Real Redis servers for the end-to-end tests of the redis source.
//!
//! `redis-server` is Debian's 7.0, installed by `scripts/redis.sh install` and found through
//! `LIFELINE_REDIS_SERVER` (`eval "$(scripts/redis.sh env)"`; scripts/test.sh does both). Without it
//! the tests fail: they never skip. Every server listens on 127.0.0.1 only, on a free port, in a
//! directory of its own, and is killed when dropped.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lifeline_sources::redis::client::{Client, ConnectOptions, Reply};
use tempfile::TempDir;

/// The `redis-server` the tests run. Panics when it is missing: a missing server is a failure.
#[track_caller]
pub fn server_bin() -> PathBuf {
    let how =
        "install it with `scripts/redis.sh install`, then `eval \"$(scripts/redis.sh env)\"` \
               (scripts/test.sh does both)";
    let Some(path) = std::env::var_os("LIFELINE_REDIS_SERVER").filter(|v| !v.is_empty()) else {
        panic!("LIFELINE_REDIS_SERVER is not set: the Redis test server is missing; {how}")
    };
    let path = PathBuf::from(path);
    assert!(
        path.is_file(),
        "LIFELINE_REDIS_SERVER={} does not exist: the Redis test server is missing; {how}",
        path.display()
    );
    path
}

pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A server in a temporary directory of its own.
pub struct Server {
    pub port: u16,
    pub dir: TempDir,
    child: Child,
    /// How clients reach it (for TLS servers, the TLS port and the CA).
    pub connect: ConnectOptions,
}

impl Server {
    /// A plain server: no persistence of its own unless `extra` asks, diskless replication without
    /// the 5-second wait for more replicas, and `extra` arguments.
    #[track_caller]
    pub fn start(extra: &[&str]) -> Server {
        let port = free_port();
        let url = format!("redis://127.0.0.1:{port}");
        let connect = ConnectOptions::new(&url, None, None).expect("test URL");
        Server::start_with(port, &["--port", &port.to_string()], extra, connect)
    }

    #[track_caller]
    pub fn start_with(
        port: u16,
        listen: &[&str],
        extra: &[&str],
        connect: ConnectOptions,
    ) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = std::fs::File::create(dir.path().join("redis.log")).expect("log file");
        let child = Command::new(server_bin())
            .args(listen)
            .args([
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--repl-diskless-sync-delay",
                "0",
            ])
            .arg("--dir")
            .arg(dir.path())
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start redis-server");
        let mut server = Server {
            port,
            dir,
            child,
            connect,
        };
        server.wait_ready();
        server
    }

    #[track_caller]
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("redis-server exited ({status}):\n{}", self.log());
            }
            // Refused logins still prove it listens.
            if let Ok(mut c) = Client::connect(&self.connect) {
                if c.call(&[b"PING"]).is_ok() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not start:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A client logged in as `connect` says.
    #[track_caller]
    pub fn client(&self) -> Client {
        Client::connect(&self.connect).expect("connect to the test server")
    }

    /// The plain URL (no TLS, no credentials).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run a command, panicking on an error reply.
#[track_caller]
pub fn cmd(client: &mut Client, args: &[&str]) -> Reply {
    let bytes: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    match client.call(&bytes).expect("command sent") {
        Reply::Error(e) => panic!("{args:?} failed: {e}"),
        r => r,
    }
}

/// A string value, `None` for a missing key.
#[track_caller]
pub fn get(client: &mut Client, key: &str) -> Option<Vec<u8>> {
    match cmd(client, &["GET", key]) {
        Reply::Bulk(v) => v,
        other => panic!("GET {key}: {other:?}"),
    }
}

/// `INFO keyspace` as `(db, keys, expires)`.
#[track_caller]
pub fn keyspace(client: &mut Client) -> Vec<(String, u64, u64)> {
    client
        .info(&["keyspace"])
        .expect("INFO keyspace")
        .keyspace()
        .into_iter()
        .map(|(db, k)| (db, k.keys, k.expires))
        .collect()
}

/// A server `lifeline redis restore --start` left running: shut down when dropped.
pub struct Detached {
    pub port: u16,
    pub pid: u32,
}

impl Detached {
    pub fn client(&self) -> Client {
        let url = format!("redis://127.0.0.1:{}", self.port);
        Client::connect(&ConnectOptions::new(&url, None, None).expect("URL"))
            .expect("connect to the restored server")
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        let url = format!("redis://127.0.0.1:{}", self.port);
        if let Ok(mut c) = ConnectOptions::new(&url, None, None).and_then(|o| Client::connect(&o)) {
            let _ = c.call(&[b"SHUTDOWN", b"NOSAVE"]);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // Gone, or a zombie init will reap (its parent, lifeline, has exited).
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid));
            if stat.map_or(true, |s| s.contains(") Z ")) {
                return;
            }
            if Instant::now() >= deadline {
                let _ = Command::new("kill")
                    .args(["-9", &self.pid.to_string()])
                    .status();
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
