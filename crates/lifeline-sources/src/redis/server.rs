//! A `redis-server` started on a laid-out directory, on a free loopback port: to prove a restore
//! loads, compare its keys, and either stop it or leave it running for the user.

use std::fs::File;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::client::{Client, ConnectOptions, Info};
use super::compare::KeyCounts;
use super::error::{Error, Result};
use super::restore::AofLayout;
use super::url::Target;
use super::RDB_FILE;

/// The environment variable that names the `redis-server` to run.
pub const PROGRAM_ENV: &str = "LIFELINE_REDIS_SERVER";

/// The name of the server's log in its directory.
pub const LOG_FILE: &str = "redis.log";

/// `$LIFELINE_REDIS_SERVER`, else `redis-server` from PATH.
pub fn default_program() -> PathBuf {
    std::env::var_os(PROGRAM_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("redis-server"))
}

/// How to start it.
#[derive(Debug, Clone)]
pub struct StartRequest<'a> {
    pub program: &'a Path,
    pub dir: &'a Path,
    /// Load this AOF directory (appendonly yes) instead of dump.rdb.
    pub aof: Option<&'a AofLayout>,
    /// How long loading may take.
    pub timeout: Duration,
    /// The server's `databases`: more than the default 16 when the data uses higher numbers (a
    /// server refuses an RDB with a database it does not have).
    pub databases: u64,
}

/// The `databases` setting that holds every database of `counts` (at least Redis's default 16).
pub fn databases_for(counts: &super::compare::KeyCounts) -> u64 {
    counts
        .keys()
        .filter_map(|db| db.strip_prefix("db")?.parse::<u64>().ok())
        .map(|n| n + 1)
        .max()
        .unwrap_or(0)
        .max(16)
}

/// A started server; stopped when dropped unless [`Running::detach`]ed.
pub struct Running {
    pub port: u16,
    pub pid: u32,
    pub log: PathBuf,
    child: Option<Child>,
}

/// Start the server and wait until it has loaded its data.
pub fn start(request: &StartRequest<'_>) -> Result<Running> {
    let log = request.dir.join(LOG_FILE);
    let mut last = String::new();
    // A port found free can be taken before the server binds it: then another one.
    for _ in 0..3 {
        let port = free_port()?;
        let mut cmd = Command::new(request.program);
        cmd.arg("--port")
            .arg(port.to_string())
            .args(["--bind", "127.0.0.1", "--daemonize", "no"])
            .arg("--dir")
            .arg(request.dir)
            .args(["--dbfilename", RDB_FILE])
            .arg("--databases")
            .arg(request.databases.to_string());
        match request.aof {
            Some(aof) => {
                cmd.args(["--appendonly", "yes", "--appenddirname", &aof.dir_name])
                    .args(["--appendfilename", aof.append_filename()]);
            }
            None => {
                cmd.args(["--appendonly", "no"]);
            }
        }
        let out = File::create(&log).map_err(|e| Error::file(&log, e))?;
        let err = out.try_clone().map_err(|e| Error::file(&log, e))?;
        // A process group of its own: a server left running must not die with our terminal.
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = cmd.spawn().map_err(|e| {
            Error::Server(format!(
                "cannot run {}: {e} (install Redis, or give its path with --redis-server or ${PROGRAM_ENV})",
                request.program.display()
            ))
        })?;
        let mut running = Running {
            port,
            pid: child.id(),
            log: log.clone(),
            child: Some(child),
        };
        match running.wait_loaded(request.timeout) {
            Ok(()) => return Ok(running),
            Err(Retry::Port(text)) => last = text,
            Err(Retry::Fatal(e)) => return Err(e),
        }
    }
    Err(Error::Server(format!(
        "no free port could be bound; the end of its log:\n{last}"
    )))
}

enum Retry {
    Port(String),
    Fatal(Error),
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| Error::Server(format!("no free loopback port: {e}")))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| Error::Server(format!("no free loopback port: {e}")))
}

impl Running {
    fn options(&self) -> ConnectOptions {
        ConnectOptions {
            target: Target {
                host: "127.0.0.1".into(),
                port: self.port,
                tls: false,
                user: None,
                password: None,
            },
            tls_ca_file: None,
            timeout: Duration::from_secs(10),
        }
    }

    /// A connection to it.
    pub fn client(&self) -> Result<Client> {
        Client::connect(&self.options())
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    fn wait_loaded(&mut self, timeout: Duration) -> Result<(), Retry> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    let tail = self.log_tail();
                    if tail.contains("Address already in use") {
                        return Err(Retry::Port(tail));
                    }
                    return Err(Retry::Fatal(Error::Server(format!(
                        "it exited ({status}) before it had loaded the data; the end of {}:\n{tail}",
                        self.log.display()
                    ))));
                }
            }
            if let Ok(info) = self.client().and_then(|mut c| c.info(&["persistence"])) {
                if info.get("loading") == Some("0") {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                let tail = self.log_tail();
                let _ = self.stop();
                return Err(Retry::Fatal(Error::Server(format!(
                    "it had not loaded the data after {} s; the end of {}:\n{tail}",
                    timeout.as_secs(),
                    self.log.display()
                ))));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// INFO of the running server.
    pub fn info(&self) -> Result<Info> {
        self.client()?.info(&[])
    }

    /// Its key counts.
    pub fn key_counts(&self) -> Result<KeyCounts> {
        Ok(self.client()?.info(&["keyspace"])?.keyspace())
    }

    /// Leave it running after we exit; returns its pid.
    pub fn detach(mut self) -> u32 {
        self.child = None;
        self.pid
    }

    /// Stop it without saving (its files stay as they were laid out), waiting for it to exit.
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if let Ok(mut client) = self.client() {
            // The server closes the connection instead of answering: no reply is expected.
            let _ = client.call(&[b"SHUTDOWN", b"NOSAVE"]);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return Ok(()),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => {
                    let _ = child.kill();
                    return child
                        .wait()
                        .map(|_| ())
                        .map_err(|e| Error::Server(format!("it could not be stopped: {e}")));
                }
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::warn!("the redis-server on port {} did not stop: {e}", self.port);
        }
    }
}
