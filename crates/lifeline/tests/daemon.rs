//! `lifeline daemon` end to end, on the real binary: a plan of files, PostgreSQL (archiving through
//! `lifeline pg wal-push`) and command sources on second-level schedules runs for a minute and its
//! metrics, scraped over HTTP, match the snapshots the repository holds; a failing source counts
//! its failures, keeps the others running and calls the webhook; SIGTERM during a backup leaves a
//! repository that passes `check`; a missed schedule runs once after a restart; a bad plan on
//! SIGHUP is refused while the old one keeps running; the status page renders in headless Chromium
//! with the right rows.
//!
//! Every test has its own directory, repository and ports. When the tests run as root, the daemon
//! and every lifeline command run as the `postgres` OS user, as PostgreSQL's archive_command does,
//! so the repository has one owner. When a test ends, even by a panic, the daemon is killed, and
//! each job it runs with all the job started (the daemon gives every job a process group).
//!
//! Needs `scripts/postgres.sh install` and `scripts/tools.sh install` and their `env` exports
//! (scripts/test.sh does all of it); without them these tests fail, they never skip.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::sleep;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::pg::{as_postgres, free_port, lifeline_bin, shared_dir, Cluster, PgVersion};
use common::pitr::{quote, s, tail};
use common::{run, run_timeout, Out, PASSWORD};
use serde_json::Value;
use tempfile::TempDir;

/// How long the daemon may take to answer its first request (it opens the repository first).
const START_WAIT: Duration = Duration::from_secs(60);

/// The RPO target of the tier every source here belongs to.
const RPO_TARGET_SECS: f64 = 300.0;

// ---------------------------------------------------------------------------
// A directory with a repository, a plan and a port for the daemon
// ---------------------------------------------------------------------------

/// `lifeline ARGS` as the postgres user (when root), nothing from the test's environment choosing
/// the repository, key or servers.
fn lifeline_cmd(args: &[&str]) -> Command {
    let mut cmd = as_postgres(lifeline_bin());
    for var in [
        "LIFELINE_REPO",
        "LIFELINE_PASSWORD_FILE",
        "LIFELINE_PASSWORD_COMMAND",
        "LIFELINE_PASSWORD",
        "LIFELINE_KEY_FILE",
        "LIFELINE_KMS_COMMAND",
        "LIFELINE_CONFIG",
        "LIFELINE_PG_BIN",
        "LIFELINE_PG_DB",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("NO_COLOR", "1").args(args);
    cmd
}

struct Lab {
    repo: PathBuf,
    password: PathBuf,
    plan: PathBuf,
    port: u16,
    dir: TempDir,
}

impl Lab {
    /// A fresh directory (writable by the postgres user) with an initialised repository.
    #[track_caller]
    fn new(name: &str) -> Lab {
        let dir = shared_dir(&format!("lifeline-daemon-{name}-"));
        let repo = dir.path().join("repo");
        let password = dir.path().join("password");
        fs::write(&password, PASSWORD).unwrap();
        run(
            &mut lifeline_cmd(&["--repo", s(&repo), "--password-file", s(&password), "init"]),
            None,
        )
        .assert_success();
        Lab {
            plan: dir.path().join("plan.toml"),
            repo,
            password,
            port: free_port(),
            dir,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A directory of a few files for a files source.
    fn data_dir(&self, rel: &str) -> PathBuf {
        let dir = self.path(rel);
        fs::create_dir_all(dir.join("sub")).unwrap();
        fs::write(dir.join("a.txt"), "alpha\n").unwrap();
        fs::write(dir.join("sub/b.bin"), common::random_bytes(7, 64 * 1024)).unwrap();
        dir
    }

    /// Writes the plan: the repository, the daemon's address, one tier and class `keep` (no
    /// retention: every snapshot stays), then `body`. Replaced by a rename, so a reload never
    /// reads half a file.
    fn write_plan(&self, body: &str) {
        let text = format!(
            "[repository]\nurl = {:?}\nkey = {{ password_file = {:?} }}\n\n\
             [metrics]\nlisten = {:?}\n\n\
             [tiers]\ngold = {{ rto = \"15m\", rpo = \"{}s\" }}\n\n\
             [classes.keep]\ntier = \"gold\"\n\n{body}",
            s(&self.repo),
            s(&self.password),
            self.addr(),
            RPO_TARGET_SECS as u64,
        );
        let tmp = self.path("plan.toml.new");
        fs::write(&tmp, text).unwrap();
        fs::rename(&tmp, &self.plan).unwrap();
    }

    /// `lifeline --config PLAN ARGS`
    fn lifeline(&self, args: &[&str]) -> Out {
        let mut all = vec!["--config", s(&self.plan)];
        all.extend_from_slice(args);
        run(&mut lifeline_cmd(&all), None)
    }

    /// The snapshots tagged `source=NAME`.
    #[track_caller]
    fn snapshots_of(&self, source: &str) -> Vec<Value> {
        let out = self.lifeline(&["snapshots", "--json"]);
        out.assert_success();
        let all = out.json();
        all.as_array()
            .unwrap_or_else(|| panic!("snapshots --json is not an array\n{}", out.describe()))
            .iter()
            .filter(|snap| snap["tags"]["source"] == source)
            .cloned()
            .collect()
    }

    #[track_caller]
    fn start_daemon(&self) -> Daemon {
        Daemon::start(self, &[])
    }
}

// ---------------------------------------------------------------------------
// The daemon process
// ---------------------------------------------------------------------------

struct Daemon {
    child: Child,
    addr: String,
    log: PathBuf,
}

impl Daemon {
    /// Starts `lifeline --config PLAN daemon`, logging into a file of the lab, and waits until it
    /// answers /healthz.
    #[track_caller]
    /// `env` is added to the daemon's environment, which its jobs inherit.
    fn start(lab: &Lab, env: &[(&str, &str)]) -> Daemon {
        // One log per start: a restarted daemon's log follows its predecessor's.
        let log = (0..)
            .map(|n| lab.path(&format!("daemon-{n}.log")))
            .find(|p| !p.exists())
            .unwrap();
        let file = File::create(&log).unwrap();
        let child = lifeline_cmd(&["--config", s(&lab.plan), "daemon"])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            // Its own group: the guard kills the daemon and its jobs together.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the daemon: {e}"));
        let mut d = Daemon {
            child,
            addr: lab.addr(),
            log,
        };
        let deadline = Instant::now() + START_WAIT;
        loop {
            if let Some(status) = d.child.try_wait().unwrap() {
                panic!(
                    "the daemon exited at start ({status})\n--- its log ---\n{}",
                    d.log()
                );
            }
            if matches!(http_get(&d.addr, "/healthz"), Ok((200, _))) {
                return d;
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not answer on {} within {START_WAIT:?}\n--- its log ---\n{}",
                d.addr,
                d.log()
            );
            sleep(Duration::from_millis(100));
        }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        tail(&self.log(), 60)
    }

    #[track_caller]
    fn assert_alive(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!(
                "the daemon exited ({status})\n--- its log ---\n{}",
                self.log_tail()
            );
        }
    }

    /// GET `path`, asserting 200.
    #[track_caller]
    fn get(&self, path: &str) -> String {
        match http_get(&self.addr, path) {
            Ok((200, body)) => body,
            Ok((code, body)) => panic!(
                "GET {path} answered {code}: {body}\n--- daemon log ---\n{}",
                self.log_tail()
            ),
            Err(e) => panic!(
                "GET {path} from {}: {e}\n--- daemon log ---\n{}",
                self.addr,
                self.log_tail()
            ),
        }
    }

    #[track_caller]
    fn metrics(&self) -> Metrics {
        Metrics(self.get("/metrics"))
    }

    #[track_caller]
    fn status(&self) -> Value {
        let body = self.get("/api/status");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("/api/status: {e}\n{body}"))
    }

    /// The `/api/status` entry of one source.
    #[track_caller]
    fn source_status(&self, name: &str) -> Value {
        let status = self.status();
        status["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|src| src["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("/api/status has no source {name}: {status:#}"))
    }

    /// Sends `signal` (TERM, HUP, ...) to the daemon alone, not to its jobs.
    #[track_caller]
    fn signal(&self, signal: &str) {
        let out = run(Command::new("kill").args(["-s", signal, &self.pid()]), None);
        out.assert_success();
    }

    /// Waits for the daemon to exit by itself.
    #[track_caller]
    fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not exit within {limit:?}\n--- its log ---\n{}",
                self.log_tail()
            );
            sleep(Duration::from_millis(50));
        }
    }

    /// Stops the daemon with SIGTERM, asserting a clean exit.
    #[track_caller]
    fn stop(mut self) {
        self.signal("TERM");
        let status = self.wait_exit(Duration::from_secs(30));
        assert!(
            status.success(),
            "the daemon exited with {status} on SIGTERM\n--- its log ---\n{}",
            self.log_tail()
        );
    }

    /// Keeps the daemon running for `time`, failing early if it dies.
    #[track_caller]
    fn run_for(&mut self, time: Duration) {
        let end = Instant::now() + time;
        while Instant::now() < end {
            self.assert_alive();
            sleep(Duration::from_millis(500).min(end.saturating_duration_since(Instant::now())));
        }
        self.assert_alive();
    }
}

impl Drop for Daemon {
    /// Never leave a daemon or one of its jobs behind, even when the test panicked.
    fn drop(&mut self) {
        // The jobs first: a killed daemon starts no more, and its exit would orphan them.
        let groups = common::children_of(self.child.id())
            .into_iter()
            .chain([self.child.id()]);
        for group in groups {
            let _ = Command::new("kill")
                .args(["-s", "KILL", "--", &format!("-{group}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.0 GET: the status code and the body.
fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let bad = || std::io::Error::other(format!("not an HTTP response: {text:?}"));
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(bad)?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(bad)?;
    Ok((code, body.to_string()))
}

/// Polls `probe` until it gives a value, failing with `what` and `context()` at the deadline.
#[track_caller]
fn wait_for<T>(
    limit: Duration,
    what: &str,
    mut probe: impl FnMut() -> Option<T>,
    context: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "waited {limit:?} for {what}\n{}",
            context()
        );
        sleep(Duration::from_millis(200));
    }
}

fn now_secs() -> f64 {
    Utc::now().timestamp_millis() as f64 / 1000.0
}

// ---------------------------------------------------------------------------
// The Prometheus text format
// ---------------------------------------------------------------------------

struct Metrics(String);

impl Metrics {
    /// The value of the series `name` whose labels include every `labels` pair.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.0.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (labelset, value) = match rest.strip_prefix('{') {
                Some(r) => r.split_once("} ")?,
                None => ("", rest.strip_prefix(' ')?),
            };
            let pairs: Vec<String> = labelset
                .split("\",")
                .map(|p| p.trim_end_matches('"').to_string())
                .collect();
            labels
                .iter()
                .all(|(k, v)| pairs.iter().any(|p| *p == format!("{k}=\"{v}")))
                .then(|| value.trim().parse().ok())?
        })
    }

    #[track_caller]
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels)
            .unwrap_or_else(|| panic!("no {name}{labels:?} in the metrics:\n{}", self.0))
    }

    /// Successful runs of a source (0 before the first).
    fn successes(&self, source: &str) -> f64 {
        self.value(
            "lifeline_runs_total",
            &[("source", source), ("result", "success")],
        )
        .unwrap_or(0.0)
    }

    fn failures(&self, source: &str) -> f64 {
        self.value("lifeline_failures_total", &[("source", source)])
            .unwrap_or(0.0)
    }
}

// ---------------------------------------------------------------------------
// 1. Files, PostgreSQL and a command for a minute: the metrics match the repository
// ---------------------------------------------------------------------------

#[test]
fn a_plan_of_three_sources_runs_for_a_minute_and_the_metrics_match() {
    let lab = Lab::new("three");
    // Not "data": the cluster's data directory goes there.
    let data = lab.data_dir("files");
    let version = PgVersion::V15;
    let archive_command = format!(
        "{} --config {} pg wal-push %p",
        quote(s(&lifeline_bin())),
        quote(s(&lab.plan))
    );
    // Declared after the lab: dropped (stopped) before its directory goes.
    let cluster = Cluster::init(
        version,
        lab.dir.path(),
        &[
            ("archive_mode", "on"),
            ("archive_command", &archive_command),
            ("archive_timeout", "5s"),
        ],
    );
    // Source name → schedule interval in seconds.
    let sources = [("docs", 5.0), ("pg", 20.0), ("state", 6.0)];
    let plan = |docs: &str, pg: &str, state: &str| {
        format!(
            "[postgres]\nbin_dir = {:?}\n\n\
             [daemon]\nmax_concurrent_jobs = 3\nretries = 0\n\n\
             [[sources]]\nname = \"docs\"\nkind = \"files\"\nclass = \"keep\"\n\
             paths = [{:?}]\nschedule = \"{docs}\"\n\n\
             [[sources]]\nname = \"pg\"\nkind = \"postgres\"\nclass = \"keep\"\n\
             db = {:?}\nbase_backup = {{ full = \"{pg}\" }}\n\n\
             [[sources]]\nname = \"state\"\nkind = \"command\"\nclass = \"keep\"\n\
             command = \"echo state; date +%s%N\"\nschedule = \"{state}\"\n",
            s(&version.bin_dir()),
            s(&data),
            cluster.url(),
        )
    };
    lab.write_plan(&plan("*/5 * * * * *", "*/20 * * * * *", "*/6 * * * * *"));
    lab.lifeline(&["plan", "check"]).assert_success();
    cluster.start();

    let mut daemon = lab.start_daemon();
    daemon.run_for(Duration::from_secs(60));

    // Scraped while jobs run: timed, then read.
    let mut times = Vec::new();
    let mut scrape = None;
    for _ in 0..5 {
        let t = Instant::now();
        scrape = Some(daemon.metrics());
        times.push(t.elapsed());
    }
    let m = scrape.unwrap();
    times.sort();
    let median = times[times.len() / 2];
    eprintln!(
        "metrics scrape: median {:.1} ms (min {:.1} ms, max {:.1} ms; target < 50 ms)",
        median.as_secs_f64() * 1000.0,
        times[0].as_secs_f64() * 1000.0,
        times[times.len() - 1].as_secs_f64() * 1000.0
    );
    assert!(
        median < Duration::from_millis(500),
        "a metrics scrape takes {median:?}"
    );
    let context = |m: &Metrics| format!("{}\n--- daemon log ---\n{}", m.0, daemon.log_tail());
    let now = now_secs();
    for (name, interval) in sources {
        let labels = [("source", name)];
        assert_eq!(
            m.failures(name),
            0.0,
            "source {name} failed\n{}",
            context(&m)
        );
        // At start (never run), then on its slots: a minute holds at least two of every schedule.
        assert!(
            m.successes(name) >= 2.0,
            "source {name} succeeded {} time(s) in a minute\n{}",
            m.successes(name),
            context(&m)
        );
        let slack = 30.0;
        let last = m.get("lifeline_last_success_timestamp_seconds", &labels);
        assert!(
            now - last < interval + slack,
            "source {name} last succeeded {:.0} s ago (every {interval} s)\n{}",
            now - last,
            context(&m)
        );
        let rpo = m.get("lifeline_rpo_seconds", &labels);
        assert!(
            (0.0..interval + slack).contains(&rpo),
            "source {name}: RPO {rpo} s for a backup every {interval} s\n{}",
            context(&m)
        );
        assert_eq!(
            m.get("lifeline_rpo_target_seconds", &labels),
            RPO_TARGET_SECS
        );
        let completed = m.get("backup_completion_time", &[("database", name)]);
        assert!(now - completed < interval + slack, "{}", context(&m));
    }
    let wal_lag = m.get("lifeline_wal_archive_lag_seconds", &[("source", "pg")]);
    assert!(
        (0.0..120.0).contains(&wal_lag),
        "WAL archive lag {wal_lag} s with archive_timeout 5s\n{}",
        context(&m)
    );
    assert!(
        m.value("lifeline_wal_archive_lag_seconds", &[("source", "docs")])
            .is_none(),
        "a files source has no WAL archive"
    );
    let repo_url = s(&lab.repo);
    assert!(
        m.get(
            "lifeline_repository_size_bytes",
            &[("repository", repo_url)]
        ) > 0.0,
        "{}",
        context(&m)
    );

    // Schedules moved to next year: the jobs under way finish, nothing new starts, and then every
    // success counted is one snapshot in the repository.
    lab.write_plan(&plan("0 0 0 1 1 *", "0 0 0 1 1 *", "0 0 0 1 1 *"));
    daemon.signal("HUP");
    let far = Utc::now() + chrono::Duration::days(1);
    wait_for(
        Duration::from_secs(120),
        "every job to finish and none to be due before next year",
        || {
            let status = daemon.status();
            status["sources"]
                .as_array()
                .unwrap()
                .iter()
                .all(|src| {
                    src["running"] == false
                        && src["next_run"]
                            .as_str()
                            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                            .is_some_and(|t| t > far)
                })
                .then_some(())
        },
        || format!("{:#}\n{}", daemon.status(), daemon.log_tail()),
    );
    // The loop records a finished job right after marking it stopped.
    sleep(Duration::from_millis(300));
    let m = daemon.metrics();
    for (name, _) in sources {
        let snapshots = lab.snapshots_of(name);
        assert_eq!(
            m.successes(name),
            snapshots.len() as f64,
            "lifeline_runs_total{{source={name:?},result=\"success\"}} against {} snapshot(s) tagged source={name}\n{}",
            snapshots.len(),
            context(&m)
        );
        assert_eq!(m.failures(name), 0.0, "{}", context(&m));
        eprintln!(
            "source {name}: {} successful run(s), as many snapshots",
            snapshots.len()
        );
    }
    daemon.stop();
    lab.lifeline(&["check"]).assert_success();
}

// ---------------------------------------------------------------------------
// 2. A failing source: counted, the others keep running, the webhook hears of it
// ---------------------------------------------------------------------------

/// A local webhook receiver: records each request's body, answers 200.
struct Receiver {
    url: String,
    bodies: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&bodies);
        // Lives as long as the test process; it only ever waits for connections.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Some(body) = Self::serve(stream) {
                    kept.lock().unwrap().push(body);
                }
            }
        });
        Receiver { url, bodies }
    }

    /// Reads one request (headers, then Content-Length bytes) and answers 200.
    fn serve(mut stream: TcpStream) -> Option<String> {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .ok()?;
        let mut raw = Vec::new();
        let mut buf = [0u8; 8192];
        let head_end = loop {
            if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = stream.read(&mut buf).ok()?;
            if n == 0 {
                return None;
            }
            raw.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while raw.len() < head_end + length {
            let n = stream.read(&mut buf).ok()?;
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&buf[..n]);
        }
        let _ =
            stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        Some(String::from_utf8_lossy(&raw[head_end..]).into_owned())
    }

    fn bodies(&self) -> Vec<Value> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .map(|b| serde_json::from_str(b).unwrap_or_else(|e| panic!("{e}: {b}")))
            .collect()
    }
}

#[test]
fn a_failing_source_counts_failures_keeps_the_others_running_and_calls_the_webhook() {
    let lab = Lab::new("failing");
    let data = lab.data_dir("data");
    let receiver = Receiver::start();
    lab.write_plan(&format!(
        "[daemon]\nretries = 0\n\n\
         [[sources]]\nname = \"good\"\nkind = \"files\"\nclass = \"keep\"\n\
         paths = [{:?}]\nschedule = \"*/2 * * * * *\"\n\n\
         [[sources]]\nname = \"bad\"\nkind = \"command\"\nclass = \"keep\"\n\
         command = \"echo disk-on-fire >&2; exit 3\"\nschedule = \"*/2 * * * * *\"\n\n\
         [[notify]]\nurl = {:?}\nretry_delay = \"200ms\"\n",
        s(&data),
        receiver.url
    ));
    let daemon = lab.start_daemon();
    let m = wait_for(
        Duration::from_secs(90),
        "two failures of `bad` and three successes of `good`",
        || {
            let m = daemon.metrics();
            (m.failures("bad") >= 2.0 && m.successes("good") >= 3.0).then_some(m)
        },
        || format!("{}\n{}", daemon.metrics().0, daemon.log_tail()),
    );
    assert_eq!(m.successes("bad"), 0.0, "{}", m.0);
    assert!(
        m.get(
            "lifeline_runs_total",
            &[("source", "bad"), ("result", "failure")]
        ) >= 2.0,
        "{}",
        m.0
    );
    assert!(m.get("backup_failures_total", &[("database", "bad")]) >= 2.0);
    assert_eq!(m.failures("good"), 0.0, "{}", m.0);
    assert!(
        now_secs()
            - m.get(
                "lifeline_last_success_timestamp_seconds",
                &[("source", "good")]
            )
            < 30.0
    );

    let event = wait_for(
        Duration::from_secs(30),
        "the webhook to receive the failure",
        || receiver.bodies().into_iter().find(|b| b["source"] == "bad"),
        || format!("bodies: {:?}\n{}", receiver.bodies(), daemon.log_tail()),
    );
    assert_eq!(event["event"], "failure", "{event:#}");
    assert_eq!(event["kind"], "command", "{event:#}");
    let message = event["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("exit status: 3") && message.contains("disk-on-fire"),
        "the message names the exit status and the command's stderr: {event:#}"
    );
    // Once per failing streak, not once per failed run; never for the good source.
    let bodies = receiver.bodies();
    assert_eq!(
        bodies.iter().filter(|b| b["source"] == "bad").count(),
        1,
        "{bodies:#?}"
    );
    assert!(bodies.iter().all(|b| b["source"] != "good"), "{bodies:#?}");
    daemon.stop();
    assert!(lab.snapshots_of("bad").is_empty());
    assert!(lab.snapshots_of("good").len() >= 3);
}

// ---------------------------------------------------------------------------
// 3. SIGTERM during a backup
// ---------------------------------------------------------------------------

/// Processes whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(cmdline) = fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(marker) {
                found.push(format!("{name}: {cmdline}"));
            }
        }
    }
    found
}

#[test]
fn sigterm_during_a_backup_leaves_a_repository_that_passes_check() {
    let lab = Lab::new("sigterm");
    // ~100 MB over 10+ s, far more than stop_timeout allows. The marker finds its processes.
    let marker = format!("slow-backup-{}", lab.port);
    lab.write_plan(&format!(
        "[daemon]\nstop_timeout = \"1s\"\n\n\
         [[sources]]\nname = \"slow\"\nkind = \"command\"\nclass = \"keep\"\n\
         command = \"for i in $(seq 100); do head -c 1000000 /dev/urandom; sleep 0.1; done # {marker}\"\n\
         schedule = \"0 2 * * *\"\n"
    ));
    // Never run before: it starts at once.
    let mut daemon = lab.start_daemon();
    wait_for(
        Duration::from_secs(60),
        "the slow job to run",
        || (daemon.source_status("slow")["running"] == true).then_some(()),
        || daemon.log_tail(),
    );
    // Well into it: the first pack has landed, more are being written.
    let data = lab.repo.join("data");
    wait_for(
        Duration::from_secs(60),
        "the slow job to write a pack",
        || (!common::regular_files_under(&data).is_empty()).then_some(()),
        || daemon.log_tail(),
    );
    assert!(
        !processes_with(&marker).is_empty(),
        "the command is not running\n{}",
        daemon.log_tail()
    );
    daemon.signal("TERM");
    let t = Instant::now();
    let status = daemon.wait_exit(Duration::from_secs(10));
    eprintln!("the daemon stopped {:?} after SIGTERM", t.elapsed());
    assert!(
        status.success(),
        "SIGTERM ended the daemon with {status}\n{}",
        daemon.log_tail()
    );
    assert!(
        daemon.log().contains("abandoned at shutdown"),
        "{}",
        daemon.log_tail()
    );
    // The abandoned job is gone, its command too.
    wait_for(
        Duration::from_secs(5),
        "the abandoned command to end",
        || processes_with(&marker).is_empty().then_some(()),
        || processes_with(&marker).join("\n"),
    );
    let check = lab.lifeline(&["check"]);
    check.assert_success();
    assert!(
        lab.snapshots_of("slow").is_empty(),
        "an abandoned backup saved a snapshot"
    );
}

// ---------------------------------------------------------------------------
// 4. A schedule missed while the daemon was down runs once
// ---------------------------------------------------------------------------

#[test]
fn a_missed_schedule_runs_once_after_restart() {
    let lab = Lab::new("missed");
    let data = lab.data_dir("data");
    lab.write_plan(&format!(
        "[[sources]]\nname = \"nightly\"\nkind = \"files\"\nclass = \"keep\"\n\
         paths = [{:?}]\nschedule = \"0 2 * * *\"\n",
        s(&data)
    ));
    // The last backup was made long ago: hundreds of nightly slots were missed since.
    lab.lifeline(&[
        "backup",
        "--time",
        "2026-01-01T00:00:00Z",
        "--tag",
        "source=nightly",
        s(&data),
    ])
    .assert_success();
    assert_eq!(lab.snapshots_of("nightly").len(), 1);

    let mut daemon = lab.start_daemon();
    wait_for(
        Duration::from_secs(60),
        "the missed job to run",
        || (daemon.metrics().successes("nightly") >= 1.0).then_some(()),
        || daemon.log_tail(),
    );
    daemon.run_for(Duration::from_secs(4));
    let m = daemon.metrics();
    assert_eq!(m.successes("nightly"), 1.0, "{}", m.0);
    assert_eq!(m.failures("nightly"), 0.0, "{}", m.0);
    assert_eq!(
        lab.snapshots_of("nightly").len(),
        2,
        "the missed slots ran once, not once each\n{}",
        daemon.log_tail()
    );
    let next = daemon.source_status("nightly")["next_run"].clone();
    assert!(
        next.as_str().is_some_and(|t| t.contains("T02:00:00")),
        "next run {next}"
    );
    daemon.stop();

    // Nothing was missed since: a restart runs nothing.
    let mut daemon = lab.start_daemon();
    daemon.run_for(Duration::from_secs(4));
    let m = daemon.metrics();
    assert_eq!(m.successes("nightly"), 0.0, "{}", m.0);
    assert_eq!(daemon.source_status("nightly")["running"], false);
    assert_eq!(lab.snapshots_of("nightly").len(), 2);
    daemon.stop();
}

/// A source's `drill` schedule: the daemon drills it like a job (a child `lifeline run --job
/// drill`), exports the drill's time and RTO, and leaves the drill on the audit record.
#[test]
fn the_daemon_drills_a_source_on_its_drill_schedule() {
    let lab = Lab::new("drill");
    let data = lab.data_dir("data");
    lab.write_plan(&format!(
        "[[sources]]\nname = \"docs\"\nkind = \"files\"\nclass = \"keep\"\n\
         paths = [{:?}]\ndrill = \"*/2 * * * * *\"\n",
        s(&data)
    ));
    lab.lifeline(&["run", "docs"]).assert_success();
    let daemon = lab.start_daemon();
    let drilled_at = wait_for(
        Duration::from_secs(60),
        "a drill to pass",
        || {
            daemon
                .metrics()
                .value(
                    "lifeline_last_verified_restore_timestamp_seconds",
                    &[("source", "docs")],
                )
                .filter(|t| *t > 0.0)
        },
        || daemon.log_tail(),
    );
    assert!((now_secs() - drilled_at).abs() < 60.0, "{drilled_at}");
    let m = daemon.metrics();
    assert!(m.get("lifeline_drill_rto_seconds", &[("source", "docs")]) > 0.0);
    assert_eq!(m.failures("docs"), 0.0, "{}", m.0);
    daemon.stop();
    // Only the backup made a snapshot; the drills are on the record.
    assert_eq!(lab.snapshots_of("docs").len(), 1);
    let log = lab.lifeline(&["audit", "log", "--json"]).json();
    assert!(
        log.as_array()
            .unwrap()
            .iter()
            .any(|r| r["action"] == "drill" && r["result"] == "ok"),
        "{log:#}"
    );
}

/// The kinds of issue 12 run on the daemon's schedules as the others do: a Redis server's RDB, a
/// bucket prefix of the test's Garage cluster (AWS_* and LIFELINE_TEST_BUCKET from scripts/test.sh,
/// inherited by the daemon), the daemon's own environment (a secret redacted) and an audit table's
/// hash-chained exports.
#[test]
fn redis_s3_config_and_audit_table_sources_run_on_the_daemons_schedules() {
    let lab = Lab::new("kinds");
    let garage = common::garage::S3Env::from_env();
    let blobs = format!("s3://{}/daemon-{}", garage.bucket, std::process::id());
    let store = lifeline_sources::s3::Bucket::open(&blobs, &Default::default()).unwrap();
    for i in 0..20 {
        let headers = lifeline_sources::s3::Headers {
            content_type: Some("application/pdf".into()),
            ..Default::default()
        };
        store
            .put(
                &format!("scans/{i}.pdf"),
                common::random_bytes(i as u64, 4096),
                &headers,
            )
            .unwrap();
    }
    let redis = common::redis::Server::start(&[]);
    let mut client = redis.client();
    common::redis::cmd(&mut client, &["SET", "session:1", "alive"]);
    let pg = Cluster::init(PgVersion::V15, lab.dir.path(), &[]);
    pg.start();
    pg.psql(
        "CREATE TABLE audit_log (id bigserial PRIMARY KEY, action text NOT NULL); \
         INSERT INTO audit_log (action) SELECT 'login ' || g FROM generate_series(1, 50) g;",
    );
    lab.write_plan(&format!(
        "[[sources]]\nname = \"sessions\"\nkind = \"redis\"\nclass = \"keep\"\n\
         url = {:?}\nschedule = \"*/3 * * * * *\"\n\n\
         [[sources]]\nname = \"blobs\"\nkind = \"s3\"\nclass = \"keep\"\n\
         bucket = {:?}\nschedule = \"*/3 * * * * *\"\n\n\
         [[sources]]\nname = \"app-env\"\nkind = \"config\"\nclass = \"keep\"\n\
         env = [\"APP_*\"]\nschedule = \"*/3 * * * * *\"\n\n\
         [[sources]]\nname = \"phi-audit\"\nkind = \"audit-table\"\nclass = \"keep\"\n\
         db = {:?}\ntable = \"audit_log\"\nwatermark = \"id\"\nschedule = \"*/3 * * * * *\"\n",
        redis.url(),
        blobs,
        pg.url(),
    ));
    lab.lifeline(&["plan", "check"]).assert_success();
    let mut daemon = Daemon::start(
        &lab,
        &[("APP_MODE", "daemon"), ("APP_API_TOKEN", "do-not-store")],
    );
    let names = ["sessions", "blobs", "app-env", "phi-audit"];
    wait_for(
        Duration::from_secs(120),
        "two successful jobs of every source",
        || {
            let m = daemon.metrics();
            names.iter().all(|n| m.successes(n) >= 2.0).then_some(())
        },
        || daemon.log_tail(),
    );
    pg.psql("INSERT INTO audit_log (action) VALUES ('logout 1');");
    wait_for(
        Duration::from_secs(60),
        "an export of the new row",
        || {
            lab.snapshots_of("phi-audit")
                .iter()
                .any(|s| s["source"]["rows"] == "1")
                .then_some(())
        },
        || daemon.log_tail(),
    );
    daemon.assert_alive();
    let m = daemon.metrics();
    for name in names {
        assert_eq!(m.failures(name), 0.0, "{name}\n{}", m.0);
    }
    daemon.stop();

    let kinds = [
        ("sessions", "redis"),
        ("blobs", "s3"),
        ("app-env", "config"),
        ("phi-audit", "audit-table"),
    ];
    for (name, kind) in kinds {
        let snaps = lab.snapshots_of(name);
        assert!(snaps.len() >= 2, "{name}: {snaps:#?}");
        assert!(
            snaps.iter().all(|s| s["kind"] == kind),
            "{name}: {snaps:#?}"
        );
    }
    // The secret never reached the repository; the record says it was redacted.
    let env = lab.lifeline(&[
        "dump",
        "--tag",
        "source=app-env",
        "latest",
        "environment.env",
    ]);
    env.assert_success();
    let text = env.stdout_str();
    assert!(text.contains("APP_MODE='daemon'"), "{text}");
    assert!(!text.contains("do-not-store"), "{text}");
    // Every exported row once, across all the exports the schedule made.
    let rows: u64 = lab
        .snapshots_of("phi-audit")
        .iter()
        .map(|s| {
            s["source"]["rows"]
                .as_str()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    assert_eq!(rows, 51);
    lab.lifeline(&["audit-table", "verify", "phi-audit"])
        .assert_success();
}

// ---------------------------------------------------------------------------
// 5. SIGHUP: a bad plan is refused, a good one is taken
// ---------------------------------------------------------------------------

#[test]
fn a_bad_plan_on_sighup_is_refused_and_the_old_plan_keeps_running() {
    let lab = Lab::new("sighup");
    let data = lab.data_dir("data");
    let docs = format!(
        "[[sources]]\nname = \"docs\"\nkind = \"files\"\nclass = \"keep\"\n\
         paths = [{:?}]\nschedule = \"*/2 * * * * *\"\n",
        s(&data)
    );
    lab.write_plan(&docs);
    let mut daemon = lab.start_daemon();
    let count = || lab.snapshots_of("docs").len();
    wait_for(
        Duration::from_secs(60),
        "a first snapshot",
        || (count() >= 1).then_some(()),
        || daemon.log_tail(),
    );

    lab.write_plan(&docs.replace("class = \"keep\"", "class = \"no-such-class\""));
    daemon.signal("HUP");
    let health = wait_for(
        Duration::from_secs(30),
        "/healthz to report the refused reload",
        || Some(daemon.get("/healthz")).filter(|h| h.contains("reload refused")),
        || daemon.log_tail(),
    );
    assert!(health.contains("no-such-class"), "{health}");
    daemon.assert_alive();
    let before = count();
    wait_for(
        Duration::from_secs(30),
        "the old plan to keep making snapshots",
        || (count() > before).then_some(()),
        || daemon.log_tail(),
    );
    assert!(daemon.log().contains("plan reload refused"));

    lab.write_plan(&format!(
        "{docs}\n[[sources]]\nname = \"state\"\nkind = \"command\"\nclass = \"keep\"\n\
         command = \"echo state\"\nschedule = \"*/2 * * * * *\"\n"
    ));
    daemon.signal("HUP");
    let names = wait_for(
        Duration::from_secs(30),
        "/api/status to list the new source",
        || {
            let status = daemon.status();
            let names: Vec<String> = status["sources"]
                .as_array()
                .unwrap()
                .iter()
                .map(|src| src["name"].as_str().unwrap().to_string())
                .collect();
            names.contains(&"state".to_string()).then_some(names)
        },
        || daemon.log_tail(),
    );
    assert_eq!(names, ["docs", "state"]);
    assert_eq!(daemon.get("/healthz"), "ok\n");
    wait_for(
        Duration::from_secs(30),
        "the new source's first snapshot",
        || (!lab.snapshots_of("state").is_empty()).then_some(()),
        || daemon.log_tail(),
    );
    daemon.stop();
}

// ---------------------------------------------------------------------------
// 5b. [keys] rotate_every: the daemon rotates on time
// ---------------------------------------------------------------------------

/// The daemon runs `key rotate` when the current epoch reaches `rotate_every`, again and again,
/// and exports the epoch's age; its surveys then read snapshots sealed under the new epochs.
#[test]
fn the_daemon_rotates_the_keys_when_the_epoch_reaches_rotate_every() {
    let lab = Lab::new("rotate");
    let data = lab.data_dir("data");
    lab.write_plan(&format!(
        "[keys]\nrotate_every = \"3s\"\n\n         [[sources]]\nname = \"docs\"\nkind = \"files\"\nclass = \"keep\"\n\
         paths = [{:?}]\nschedule = \"*/2 * * * * *\"\n",
        s(&data)
    ));
    let epochs = || -> Vec<Value> {
        let out = lab.lifeline(&["key", "list", "--json"]);
        out.assert_success();
        out.json()["epochs"].as_array().unwrap().clone()
    };
    assert_eq!(epochs().len(), 1);
    let daemon = lab.start_daemon();
    let listed = wait_for(
        Duration::from_secs(40),
        "two rotations",
        || Some(epochs()).filter(|e| e.len() >= 3),
        || daemon.log_tail(),
    );
    let numbers: Vec<u64> = listed
        .iter()
        .map(|e| e["epoch"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, (1..=numbers.len() as u64).collect::<Vec<_>>());
    let repo = s(&lab.repo).to_string();
    let m = daemon.metrics();
    let period = m.get(
        "lifeline_key_rotation_period_seconds",
        &[("repository", &repo)],
    );
    assert_eq!(period, 3.0, "{}", m.0);
    let age = m.get("lifeline_key_epoch_age_seconds", &[("repository", &repo)]);
    assert!(
        (0.0..10.0).contains(&age),
        "the current epoch is at most a rotation period (and a survey) old: {age}\n{}",
        m.0
    );
    assert!(m.get("lifeline_key_epochs", &[("repository", &repo)]) >= 3.0);
    // Backups go on under the new epochs, and the daemon's surveys read them.
    let before = m.successes("docs");
    wait_for(
        Duration::from_secs(30),
        "backups under the new epochs",
        || (daemon.metrics().successes("docs") >= before + 2.0).then_some(()),
        || daemon.log_tail(),
    );
    let rpo = daemon
        .metrics()
        .get("lifeline_rpo_seconds", &[("source", "docs")]);
    assert!(
        rpo < 60.0,
        "the survey sees the newest snapshots: RPO {rpo}"
    );
    daemon.stop();
    // Each rotation is in the audit trail, like a manual one.
    let out = lab.lifeline(&["audit", "log"]);
    out.assert_success();
    assert!(
        out.stdout_str().matches("key rotate").count() >= 2,
        "{}",
        out.describe()
    );
    lab.lifeline(&["check"]).assert_success();
}

// ---------------------------------------------------------------------------
// 6. The status page in headless Chromium
// ---------------------------------------------------------------------------

/// Chromium, from `LIFELINE_CHROMIUM`; missing, the test fails (it never skips).
#[track_caller]
fn chromium() -> PathBuf {
    let how =
        "install it with `scripts/tools.sh install`, then `eval \"$(scripts/tools.sh env)\"` \
               (scripts/test.sh does both)";
    let Some(path) = std::env::var_os("LIFELINE_CHROMIUM").filter(|v| !v.is_empty()) else {
        panic!("LIFELINE_CHROMIUM is not set: the status page test needs Chromium; {how}")
    };
    let path = PathBuf::from(path);
    assert!(
        path.is_file(),
        "LIFELINE_CHROMIUM={} does not exist: the status page test needs Chromium; {how}",
        path.display()
    );
    path
}

/// The DOM Chromium builds from `url`.
#[track_caller]
fn dump_dom(chromium: &Path, profile: &Path, url: &str) -> String {
    let out = run_timeout(
        Command::new(chromium)
            .args(["--headless", "--no-sandbox", "--disable-gpu"])
            .args(["--no-first-run", "--disable-dev-shm-usage"])
            .arg(format!("--user-data-dir={}", s(profile)))
            .args(["--dump-dom", url]),
        None,
        Duration::from_secs(120),
    );
    out.assert_success();
    let dom = out.stdout_str();
    assert!(dom.contains("</html>"), "no DOM dumped\n{}", out.describe());
    dom
}

/// The `<tr data-source="NAME" ...>...</tr>` element in `html`.
#[track_caller]
fn row<'a>(html: &'a str, name: &str) -> &'a str {
    let start = html
        .find(&format!("<tr data-source=\"{name}\""))
        .unwrap_or_else(|| panic!("no row for source {name}:\n{html}"));
    let end = html[start..].find("</tr>").unwrap() + start;
    &html[start..end]
}

/// The opening tag of `<td data-field="FIELD" ...>` in `row`.
#[track_caller]
fn cell_tag<'a>(row: &'a str, field: &str) -> &'a str {
    let start = row
        .find(&format!("<td data-field=\"{field}\""))
        .unwrap_or_else(|| panic!("no {field} cell in {row}"));
    let end = row[start..].find('>').unwrap() + start;
    &row[start..=end]
}

#[test]
fn the_status_page_renders_in_chromium_with_the_right_rows() {
    let chromium = chromium();
    let lab = Lab::new("page");
    let data = lab.data_dir("data");
    lab.write_plan(&format!(
        "[daemon]\nretries = 0\n\n\
         [[sources]]\nname = \"uploads\"\nkind = \"files\"\nclass = \"keep\"\n\
         paths = [{:?}]\nschedule = \"*/3 * * * * *\"\n\n\
         [[sources]]\nname = \"vault\"\nkind = \"command\"\nclass = \"keep\"\n\
         command = \"echo sealed-vault-refuses >&2; exit 7\"\nschedule = \"*/3 * * * * *\"\n",
        s(&data)
    ));
    let daemon = lab.start_daemon();
    wait_for(
        Duration::from_secs(60),
        "a success of uploads and a failure of vault",
        || {
            let status = daemon.status();
            let outcome = |name: &str| {
                status["sources"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|src| src["name"] == name)
                    .map(|src| src["last_run"]["outcome"].clone())
            };
            (outcome("uploads") == Some("success".into())
                && outcome("vault") == Some("failure".into()))
            .then_some(())
        },
        || daemon.log_tail(),
    );

    let dom = dump_dom(
        &chromium,
        &lab.path("chromium"),
        &format!("http://{}/", lab.addr()),
    );
    let failures_at = dom
        .find("<section class=\"failures\">")
        .unwrap_or_else(|| panic!("no recent failures section:\n{dom}"));
    let (table, failures) = dom.split_at(failures_at);
    assert_eq!(
        table.matches("<tr data-source=").count(),
        2,
        "one row per source:\n{table}"
    );
    let good = row(table, "uploads");
    let bad = row(table, "vault");
    assert!(
        cell_tag(good, "result").contains("class=\"ok\""),
        "uploads: {good}"
    );
    assert!(
        cell_tag(bad, "result").contains("class=\"failed\""),
        "vault: {bad}"
    );
    assert!(good.contains(">files<") && bad.contains(">command<"));
    let failure = row(failures, "vault");
    assert!(
        failure.contains("exit status: 7") && failure.contains("sealed-vault-refuses"),
        "the recent failure shows the command's message: {failure}"
    );
    assert!(
        !failures.contains("data-source=\"uploads\""),
        "uploads never failed: {failures}"
    );
    daemon.stop();
}
