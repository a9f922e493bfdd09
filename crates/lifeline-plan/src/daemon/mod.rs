//! `lifeline daemon`: runs the plan's schedules. Each job is a child process (`lifeline run SOURCE
//! --job J --json`), so a job's memory returns to the system when it ends, a stuck job can be
//! killed without harming the daemon, and the daemon runs exactly what a Kubernetes CronJob runs.
//!
//! Rules: one source never runs two jobs at once (a slot that comes while it runs waits, once);
//! at most `max_concurrent_jobs` run across sources; a slot missed while the daemon was down runs
//! once at start; a failed job is retried with a doubling delay; SIGHUP reloads the plan (a bad one
//! is refused and the old one keeps running); SIGTERM lets running jobs finish within
//! `stop_timeout`, then kills them — a killed backup leaves the repository as it was, plus
//! unreferenced data that prune collects.

mod rotation;
mod server;
mod state;

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use chrono::{DateTime, Utc};
use lifeline_repo::Repository;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::metrics::Metrics;
use crate::notify::{self, Event, EventKind};
use crate::plan::{self, JobKind, Plan};
use crate::report::{JobReport, Outcome};
use crate::{open, survey};
use rotation::Rotation;
use state::Shared;

/// How often the repository is surveyed between jobs (RPO ages are computed at every scrape).
const SURVEY_EVERY: Duration = Duration::from_secs(60);

pub struct DaemonRequest {
    /// The plan file.
    pub plan_path: PathBuf,
    /// The lifeline executable the jobs run as.
    pub exe: PathBuf,
    /// `--pg-bin`, handed to the jobs.
    pub pg_bin: Option<PathBuf>,
}

enum Message {
    Signal(i32),
    Finished {
        source: String,
        job: JobKind,
        report: Box<JobReport>,
    },
    Surveyed(Box<Surveyed>),
    /// `key rotate` ended: whether it succeeded, and what it said.
    Rotated {
        ok: bool,
        message: String,
    },
}

/// A survey, and the repositories read again when their keys were rotated since they were opened
/// (snapshots sealed under an epoch a handle does not know would look foreign to it).
struct Surveyed {
    survey: survey::Survey,
    repo: Option<Arc<Repository>>,
    copies: Option<Arc<Vec<(String, Repository)>>>,
}

struct Running {
    pid: u32,
    started: Instant,
}

/// Read, parse and check a plan; every problem is in the error. Also returns the text read.
pub fn load_checked(path: &Path) -> anyhow::Result<(Plan, String)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read plan file {}", path.display()))?;
    let plan = Plan::parse(path, &text)?;
    let problems = plan::check(&plan, path, &text);
    if !problems.is_empty() {
        let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
        bail!(
            "the plan has {} problem(s):\n  {}",
            list.len(),
            list.join("\n  ")
        );
    }
    Ok((plan, text))
}

/// The plan in force, where the jobs read it: a private copy of the text the daemon last accepted.
/// Jobs are processes of their own that read their plan from a file; given the user's file they
/// would run whatever it says now — a plan a reload refused, or an edit not yet reloaded.
/// Paths in the plan mean the same in the copy: none is relative to the plan file.
struct PlanCopy {
    /// Private to this user (0700): the plan may name key files. Removed when the daemon ends.
    dir: tempfile::TempDir,
    path: PathBuf,
}

impl PlanCopy {
    fn create(text: &str) -> anyhow::Result<PlanCopy> {
        let dir = tempfile::Builder::new()
            .prefix("lifeline-daemon-")
            .tempdir()
            .context("cannot create a directory for the jobs' copy of the plan")?;
        let copy = PlanCopy {
            path: dir.path().join("plan.toml"),
            dir,
        };
        copy.write(text)?;
        Ok(copy)
    }

    /// Replaces the copy by a rename: a job starting meanwhile reads the old plan or the new one.
    fn write(&self, text: &str) -> anyhow::Result<()> {
        let tmp = self.dir.path().join("plan.toml.new");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &self.path))
            .with_context(|| format!("cannot write the jobs' plan {}", self.path.display()))
    }
}

struct Daemon {
    request: DaemonRequest,
    shared: Arc<Shared>,
    tx: mpsc::Sender<Message>,
    plan_copy: PlanCopy,
    /// When each (source, job) is next due.
    due: BTreeMap<(String, JobKind), DateTime<Utc>>,
    /// Consecutive failures per (source, job), for the retry delay.
    failures: BTreeMap<(String, JobKind), u32>,
    running: BTreeMap<String, Running>,
    repo: Arc<Repository>,
    copies: Arc<Vec<(String, Repository)>>,
    surveying: bool,
    last_survey: Instant,
    /// `[keys] rotate_every`, when set.
    rotation: Option<Rotation>,
}

pub fn run(request: DaemonRequest) -> anyhow::Result<()> {
    let (plan, text) = load_checked(&request.plan_path)?;
    let plan_copy = PlanCopy::create(&text)?;
    let repo = Arc::new(open::open(&plan.repository)?);
    let copies = Arc::new(open_copies(&plan));
    let metrics = Metrics::new();
    metrics.declare(&plan);
    let shared = Arc::new(Shared::new(plan, metrics, &request.plan_path));
    let (tx, rx) = mpsc::channel();
    let listen = shared.plan().metrics.listen.clone();
    if let Some(addr) = listen {
        server::spawn(&addr, Arc::clone(&shared))?;
        tracing::info!("serving /metrics, / and /api/status on http://{addr}");
    }
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .context("cannot install signal handlers")?;
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for s in signals.forever() {
                if tx.send(Message::Signal(s)).is_err() {
                    break;
                }
            }
        });
    }
    let mut daemon = Daemon {
        request,
        shared,
        tx,
        plan_copy,
        due: BTreeMap::new(),
        failures: BTreeMap::new(),
        running: BTreeMap::new(),
        repo,
        copies,
        surveying: false,
        last_survey: Instant::now(),
        rotation: None,
    };
    daemon.rotation = daemon.shared.plan().keys.rotate_every.map(Rotation::new);
    daemon.schedule_all(true)?;
    daemon.start_survey();
    daemon.main_loop(&rx)
}

fn open_copies(plan: &Plan) -> Vec<(String, Repository)> {
    plan.copies
        .iter()
        .filter_map(|c| {
            let url = c.url.clone().unwrap_or_default();
            match open::open(c) {
                Ok(r) => Some((url, r)),
                Err(e) => {
                    tracing::warn!("copy target {url} cannot be opened for metrics: {e:#}");
                    None
                }
            }
        })
        .collect()
}

impl Daemon {
    /// Set every (source, job)'s next time. At start, a slot missed since the job last succeeded
    /// (or a job that never ran) is due now, once.
    fn schedule_all(&mut self, at_start: bool) -> anyhow::Result<()> {
        let now = Utc::now();
        let last = if at_start {
            survey::newest_by_job(&self.repo)?
        } else {
            BTreeMap::new()
        };
        let plan = self.shared.plan();
        let mut due = BTreeMap::new();
        for source in &plan.sources {
            for js in plan.schedules(source).map_err(anyhow::Error::msg)? {
                let key = (source.name.clone(), js.job);
                let next = js.schedule.next_after(now);
                // A drill leaves no snapshot to judge a missed slot by: it waits for its next one.
                let when = if at_start && js.job == JobKind::Drill {
                    next
                } else if at_start {
                    match last.get(&key) {
                        Some(t) if js.schedule.next_after(*t).is_some_and(|n| n > now) => next,
                        _ => {
                            tracing::info!(source = %source.name, job = js.job.as_str(), "missed while the daemon was down (or never ran): runs now, once");
                            Some(now)
                        }
                    }
                } else {
                    // A reload keeps what is already due.
                    self.due.get(&key).copied().filter(|d| *d <= now).or(next)
                };
                if let Some(when) = when {
                    let e = due.entry(key).or_insert(when);
                    *e = (*e).min(when);
                }
            }
        }
        self.due = due;
        self.publish_next_runs();
        Ok(())
    }

    fn publish_next_runs(&self) {
        let mut next: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
        for ((source, _), when) in &self.due {
            let e = next.entry(source.clone()).or_insert(*when);
            *e = (*e).min(*when);
        }
        self.shared.set_next_runs(next);
    }

    fn main_loop(&mut self, rx: &mpsc::Receiver<Message>) -> anyhow::Result<()> {
        loop {
            self.start_due_jobs();
            self.start_due_rotation();
            self.kill_overdue_jobs();
            if self.last_survey.elapsed() >= SURVEY_EVERY {
                self.start_survey();
            }
            let wait = self.wait_time();
            match rx.recv_timeout(wait) {
                Ok(Message::Signal(SIGHUP)) => self.reload(),
                Ok(Message::Signal(_)) => return self.stop(rx),
                Ok(Message::Finished {
                    source,
                    job,
                    report,
                }) => self.finished(source, job, *report),
                Ok(Message::Surveyed(s)) => self.surveyed(*s),
                Ok(Message::Rotated { ok, message }) => self.rotated(ok, message),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => bail!("daemon channel closed"),
            }
        }
    }

    /// Until the earliest due job (when it could start), the next survey, or a running job's
    /// timeout check; never busy.
    fn wait_time(&self) -> Duration {
        let now = Utc::now();
        let mut wait = SURVEY_EVERY.saturating_sub(self.last_survey.elapsed());
        let capacity = self.running.len() < self.shared.plan().daemon.max_concurrent_jobs;
        for ((source, _), when) in &self.due {
            if capacity && !self.running.contains_key(source) {
                let d = (*when - now).to_std().unwrap_or(Duration::ZERO);
                wait = wait.min(d);
            }
        }
        if !self.running.is_empty() {
            wait = wait.min(Duration::from_secs(5));
        }
        if let Some(when) = self.rotation.as_ref().and_then(Rotation::when) {
            wait = wait.min((when - now).to_std().unwrap_or(Duration::ZERO));
        }
        wait.max(Duration::from_millis(20))
    }

    fn start_due_jobs(&mut self) {
        let now = Utc::now();
        let max = self.shared.plan().daemon.max_concurrent_jobs;
        let mut ready: Vec<((String, JobKind), DateTime<Utc>)> = self
            .due
            .iter()
            .filter(|(_, when)| **when <= now)
            .map(|(k, w)| (k.clone(), *w))
            .collect();
        ready.sort_by_key(|(_, w)| *w);
        for ((source, job), _) in ready {
            if self.running.len() >= max || self.running.contains_key(&source) {
                continue;
            }
            // A full and an incremental due together: the full one serves both.
            if job == JobKind::Incremental
                && self
                    .due
                    .get(&(source.clone(), JobKind::Full))
                    .is_some_and(|w| *w <= now)
            {
                self.advance(&source, job, now);
                continue;
            }
            match self.spawn(&source, job) {
                Ok(pid) => {
                    self.running.insert(
                        source.clone(),
                        Running {
                            pid,
                            started: Instant::now(),
                        },
                    );
                    self.shared.set_running(&source, true);
                }
                Err(e) => {
                    tracing::error!(source = %source, "cannot start the job: {e:#}");
                }
            }
            self.advance(&source, job, now);
        }
        self.publish_next_runs();
    }

    /// The next slot after `now` of this (source, job).
    fn advance(&mut self, source: &str, job: JobKind, now: DateTime<Utc>) {
        let plan = self.shared.plan();
        let next = plan
            .source(source)
            .and_then(|s| plan.schedules(s).ok())
            .into_iter()
            .flatten()
            .filter(|js| js.job == job)
            .filter_map(|js| js.schedule.next_after(now))
            .min();
        let key = (source.to_string(), job);
        match next {
            Some(n) => {
                self.due.insert(key, n);
            }
            None => {
                self.due.remove(&key);
            }
        }
    }

    fn spawn(&self, source: &str, job: JobKind) -> anyhow::Result<u32> {
        let mut cmd = Command::new(&self.request.exe);
        cmd.arg("--config")
            .arg(&self.plan_copy.path)
            .args(["run", source, "--job", job.as_str(), "--json"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            // A group of its own, so a kill reaches what the job started too (a command source's
            // shell, pg_basebackup), not only `lifeline run`: left alone they would keep running.
            .process_group(0);
        if let Some(bin) = &self.request.pg_bin {
            cmd.arg("--pg-bin").arg(bin);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot run {}", self.request.exe.display()))?;
        let pid = child.id();
        tracing::info!(source, job = job.as_str(), pid, "job started");
        let tx = self.tx.clone();
        let source = source.to_string();
        let plan = self.shared.plan();
        std::thread::spawn(move || {
            let started = Utc::now();
            let report = match child.wait_with_output() {
                Ok(out) => serde_json::from_slice::<JobReport>(&out.stdout).unwrap_or_else(|_| {
                    ended_without_report(&plan, &source, job, started, &out.status.to_string())
                }),
                Err(e) => ended_without_report(&plan, &source, job, started, &e.to_string()),
            };
            let _ = tx.send(Message::Finished {
                source,
                job,
                report: Box::new(report),
            });
        });
        Ok(pid)
    }

    fn kill_overdue_jobs(&self) {
        let limit = self.shared.plan().daemon.job_timeout;
        for (source, r) in &self.running {
            if r.started.elapsed() > limit {
                tracing::error!(source = %source, "job ran longer than job_timeout ({}s): killed", limit.as_secs());
                kill(r.pid);
            }
        }
    }

    fn finished(&mut self, source: String, job: JobKind, report: JobReport) {
        self.running.remove(&source);
        self.shared.set_running(&source, false);
        let key = (source.clone(), job);
        let plan = self.shared.plan();
        let was_failing = self.shared.is_failing(&source);
        match report.outcome {
            Outcome::Failure => {
                let n = self.failures.entry(key.clone()).or_insert(0);
                *n += 1;
                let msg = report.message.clone().unwrap_or_default();
                tracing::error!(source = %source, job = job.as_str(), attempt = *n, "job failed: {msg}");
                if *n <= plan.daemon.retries {
                    let delay = plan.daemon.retry_delay * 2u32.saturating_pow(*n - 1);
                    let retry = Utc::now()
                        + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
                    let e = self.due.entry(key).or_insert(retry);
                    *e = (*e).min(retry);
                    tracing::info!(source = %source, "retry {} of {} in {}s", *n, plan.daemon.retries, delay.as_secs());
                }
                if !was_failing {
                    self.notify(EventKind::Failure, &report);
                }
            }
            Outcome::Success | Outcome::Partial => {
                self.failures.remove(&key);
                tracing::info!(source = %source, job = job.as_str(), snapshot = report.snapshot.as_deref().unwrap_or(""), seconds = report.duration_seconds, "job finished");
                if was_failing {
                    self.notify(EventKind::Recovery, &report);
                }
            }
        }
        self.shared.record(report);
        self.publish_next_runs();
        self.start_survey();
    }

    /// Deliveries run on their own thread: a slow webhook never delays a job.
    fn notify(&self, kind: EventKind, report: &JobReport) {
        let targets = self.shared.plan().notify.clone();
        if targets.is_empty() {
            return;
        }
        let report = report.clone();
        std::thread::spawn(move || {
            let host = lifeline_repo::hostname();
            notify::deliver(
                &targets,
                &Event {
                    kind,
                    report: &report,
                    host: &host,
                },
            );
        });
    }

    fn start_survey(&mut self) {
        self.last_survey = Instant::now();
        if self.surveying {
            return;
        }
        self.surveying = true;
        let (tx, plan, repo, copies) = (
            self.tx.clone(),
            self.shared.plan(),
            Arc::clone(&self.repo),
            Arc::clone(&self.copies),
        );
        std::thread::spawn(move || {
            let fresh_repo = survey::refreshed_if_rotated(&repo).map(Arc::new);
            let fresh_copies = copies
                .iter()
                .any(|(_, r)| matches!(r.new_epoch(), Ok(Some(_))))
                .then(|| {
                    let list: Vec<(String, Repository)> = copies
                        .iter()
                        .map(|(url, r)| {
                            (
                                url.clone(),
                                survey::refreshed_if_rotated(r).unwrap_or_else(|| r.clone()),
                            )
                        })
                        .collect();
                    Arc::new(list)
                });
            let s = survey::survey(
                &plan,
                fresh_repo.as_deref().unwrap_or(&repo),
                fresh_copies.as_deref().unwrap_or(&copies),
            )
            .unwrap_or_else(|e| {
                tracing::warn!("repository survey failed: {e:#}");
                survey::Survey::default()
            });
            let _ = tx.send(Message::Surveyed(Box::new(Surveyed {
                survey: s,
                repo: fresh_repo,
                copies: fresh_copies,
            })));
        });
    }

    fn surveyed(&mut self, s: Surveyed) {
        self.surveying = false;
        if let Some(repo) = s.repo {
            tracing::info!("the repository's keys were rotated: its keyring is read again");
            self.repo = repo;
        }
        if let Some(copies) = s.copies {
            self.copies = copies;
        }
        let primary = self.shared.plan().repository.url.clone();
        if let (Some(rotation), Some(keys)) = (
            self.rotation.as_mut(),
            primary.and_then(|url| s.survey.key_epochs.get(&url)),
        ) {
            rotation.surveyed(keys.current_created);
        }
        self.shared.set_survey(s.survey);
    }

    /// Start `key rotate` when the current epoch has reached `[keys] rotate_every`.
    fn start_due_rotation(&mut self) {
        let Some(rotation) = self.rotation.as_mut() else {
            return;
        };
        if rotation.when().is_none_or(|w| w > Utc::now()) {
            return;
        }
        let mut cmd = Command::new(&self.request.exe);
        cmd.arg("--config")
            .arg(&self.plan_copy.path)
            .args(["key", "rotate", "--if-older-than"])
            .arg(format!("{}s", rotation.every.as_secs().max(1)))
            .arg("--json")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                let delay = rotation.failed(self.shared.plan().daemon.retry_delay);
                tracing::error!(
                    "cannot run {} key rotate: {e}; trying again in {}s",
                    self.request.exe.display(),
                    delay.as_secs()
                );
                return;
            }
        };
        rotation.started();
        tracing::info!(
            pid = child.id(),
            "the current key epoch reached [keys] rotate_every: rotating"
        );
        let tx = self.tx.clone();
        std::thread::spawn(move || {
            let (ok, message) = match child.wait_with_output() {
                Ok(out) if out.status.success() => {
                    let report: serde_json::Value =
                        serde_json::from_slice(&out.stdout).unwrap_or_default();
                    let message = if report["rotated"] == serde_json::Value::Bool(true) {
                        format!(
                            "rotated: epoch {} (tag {}) is current",
                            report["epoch"], report["tag"]
                        )
                    } else {
                        format!("not rotated: epoch {} is younger than rotate_every (rotated meanwhile)", report["epoch"])
                    };
                    (true, message)
                }
                Ok(out) => {
                    let stderr = String::from_utf8_lossy(&out.stderr);
                    let last = stderr
                        .lines()
                        .rev()
                        .find(|l| !l.trim().is_empty())
                        .unwrap_or("");
                    (false, format!("key rotate failed ({}): {last}", out.status))
                }
                Err(e) => (false, format!("key rotate: {e}")),
            };
            let _ = tx.send(Message::Rotated { ok, message });
        });
    }

    fn rotated(&mut self, ok: bool, message: String) {
        let retry_delay = self.shared.plan().daemon.retry_delay;
        if let Some(rotation) = self.rotation.as_mut() {
            if ok {
                rotation.succeeded();
                tracing::info!("{message}");
            } else {
                let delay = rotation.failed(retry_delay);
                tracing::error!("{message}; trying again in {}s", delay.as_secs());
            }
        }
        // Reads the new epoch: the handles' keyrings, the metrics and the next due time.
        self.start_survey();
    }

    fn reload(&mut self) {
        match load_checked(&self.request.plan_path) {
            Ok((plan, text)) => {
                let old = self.shared.plan();
                if plan.metrics.listen != old.metrics.listen {
                    tracing::warn!(
                        "[metrics] listen changed: the new address takes effect after a restart"
                    );
                }
                let repo = if plan.repository.url != old.repository.url {
                    match open::open(&plan.repository) {
                        Ok(r) => Some(Arc::new(r)),
                        Err(e) => {
                            return self.refuse_reload(format!(
                                "the new repository cannot be opened: {e:#}"
                            ));
                        }
                    }
                } else {
                    None
                };
                // Before anything changes: jobs must never run a plan the daemon does not.
                if let Err(e) = self.plan_copy.write(&text) {
                    return self.refuse_reload(format!("{e:#}"));
                }
                if let Some(repo) = repo {
                    self.repo = repo;
                }
                self.copies = Arc::new(open_copies(&plan));
                let every = plan.keys.rotate_every;
                self.shared.replace_plan(plan);
                match (self.rotation.as_mut(), every) {
                    (Some(r), Some(every)) => r.every = every,
                    (_, every) => self.rotation = every.map(Rotation::new),
                }
                // Dates the current epoch against the new period.
                self.start_survey();
                if let Err(e) = self.schedule_all(false) {
                    tracing::error!("rescheduling after reload: {e:#}");
                }
                tracing::info!("plan reloaded from {}", self.request.plan_path.display());
            }
            Err(e) => self.refuse_reload(format!("{e:#}")),
        }
    }

    /// The old plan keeps running; /healthz says why the new one was not taken.
    fn refuse_reload(&self, why: String) {
        tracing::error!("plan reload refused, the old plan keeps running: {why}");
        self.shared.reload_refused(why);
    }

    /// SIGTERM: no new jobs; running ones get `stop_timeout` to finish, then are killed.
    fn stop(&mut self, rx: &mpsc::Receiver<Message>) -> anyhow::Result<()> {
        let timeout = self.shared.plan().daemon.stop_timeout;
        if !self.running.is_empty() {
            tracing::info!(
                "stopping: waiting up to {}s for {} running job(s)",
                timeout.as_secs(),
                self.running.len()
            );
        }
        let deadline = Instant::now() + timeout;
        while !self.running.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                for (source, r) in &self.running {
                    tracing::warn!(source = %source, "abandoned at shutdown: the repository keeps what it had before this job");
                    kill(r.pid);
                }
                break;
            }
            match rx.recv_timeout(left) {
                Ok(Message::Finished {
                    source,
                    job,
                    report,
                }) => self.finished(source, job, *report),
                Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// Kills a job and every process it started (its process group, see `spawn`).
fn kill(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

fn ended_without_report(
    plan: &Plan,
    source: &str,
    job: JobKind,
    started: DateTime<Utc>,
    status: &str,
) -> JobReport {
    let now = Utc::now();
    let mut report = crate::job::started_report(plan, source, job, started);
    report.finished = now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    report.duration_seconds = (now - started).num_milliseconds() as f64 / 1000.0;
    report.outcome = Outcome::Failure;
    report.message = Some(format!(
        "the job ended without a report ({status}); see the daemon's log"
    ));
    report
}
