//! The source contract for Redis: capture, and a drill that lays the snapshot out in the scratch
//! directory, starts a `redis-server` on it and compares its keys with the recorded counts (from
//! the RDB, and again from the AOF when one was captured).

use std::path::{Path, PathBuf};
use std::time::Duration;

use lifeline_repo::drill::{Check, CheckResult};
use lifeline_repo::Repository;

use super::capture::{capture, CaptureRequest};
use super::client::ConnectOptions;
use super::compare::{self, Verdict};
use super::error::Result;
use super::restore::{self, AofLayout, Expected, LoadFrom};
use super::server::{self, StartRequest};
use crate::drill::{DrillRequest, Drilled, Recorder, CLEANUP};
use crate::source::{Captured, Error, Source};
use crate::Progress;

/// A Redis server, captured through the replication protocol.
pub struct RedisSource {
    pub connect: ConnectOptions,
    pub aof_dir: Option<PathBuf>,
    /// The `redis-server` drills start.
    pub server_program: PathBuf,
}

impl Source for RedisSource {
    fn kind(&self) -> &'static str {
        super::KIND
    }

    fn capture(
        &self,
        _repo: &Repository,
        writer: &lifeline_repo::Writer<'_>,
        progress: &dyn Progress,
    ) -> Result<Captured, Error> {
        let request = CaptureRequest {
            connect: &self.connect,
            aof_dir: self.aof_dir.as_deref(),
            rewrite_wait: Duration::from_secs(600),
        };
        Ok(Captured {
            snapshot: capture(writer, &request, progress)?,
            excluded: 0,
        })
    }

    fn drill(
        &self,
        repo: &Repository,
        request: &DrillRequest<'_>,
        progress: &dyn Progress,
    ) -> Result<Drilled, Error> {
        Ok(drill(repo, request, &self.server_program, progress))
    }
}

/// Lay out, start from the RDB (and from the AOF), compare, stop, remove.
pub fn drill(
    repo: &Repository,
    request: &DrillRequest<'_>,
    program: &Path,
    progress: &dyn Progress,
) -> Drilled {
    let mut steps = Recorder::default();
    let snapshot = request.snapshot;
    let dir = request.scratch.join("redis");
    let laid = steps.step(
        "restore",
        || {
            let reader = repo.reader()?;
            restore::lay_out(&reader, snapshot, &dir, progress)
        },
        |l| {
            format!(
                "{} file(s), {} bytes, into {}",
                l.files,
                l.bytes,
                l.dir.display()
            )
        },
    );
    if let Some(laid) = laid {
        steps.drilled.recovery_point = Some(snapshot.timestamp());
        steps.drilled.restored = vec![request.id];
        let mut loads = vec![LoadFrom::Rdb];
        if laid.aof.is_some() {
            loads.push(LoadFrom::Aof);
        }
        for from in loads {
            start_and_compare(
                &mut steps,
                request,
                program,
                &laid.dir,
                laid.aof.as_ref(),
                from,
            );
        }
    }
    steps.step(
        CLEANUP,
        || remove(&dir).map_err(|e| super::Error::file(&dir, e)),
        |_| format!("removed {}", dir.display()),
    );
    steps.drilled
}

fn start_and_compare(
    steps: &mut Recorder,
    request: &DrillRequest<'_>,
    program: &Path,
    dir: &Path,
    aof: Option<&AofLayout>,
    from: LoadFrom,
) {
    let label = from.as_str();
    let Some(expected) = steps.step(
        &format!("records ({label})"),
        || restore::expected(request.snapshot, from),
        |e| format!("{} database(s) recorded", e.counts.len()),
    ) else {
        return;
    };
    let start = StartRequest {
        program,
        dir,
        aof: if from == LoadFrom::Aof { aof } else { None },
        timeout: request.timeout,
        databases: server::databases_for(&expected.counts),
    };
    let Some(mut running) = steps.step(
        &format!("start from the {label}"),
        || server::start(&start),
        |r| format!("redis-server loaded the {label} on port {}", r.port),
    ) else {
        return;
    };
    if let Ok(info) = running.info() {
        if let Some(v) = info.get("redis_version") {
            steps
                .drilled
                .versions
                .insert("redis-server".into(), v.to_string());
        }
    }
    if let Some(found) = steps.step(
        &format!("compare ({label})"),
        || running.key_counts(),
        |c| format!("{} database(s) with keys", c.len()),
    ) {
        for check in checks(&expected, &found, label) {
            steps.drilled.checks.push(check);
        }
    }
    steps.step(
        &format!("stop ({label})"),
        || running.stop(),
        |_| "redis-server stopped".into(),
    );
}

/// One check per database: a difference fails when the counts are exact, warns otherwise.
fn checks(expected: &Expected, found: &compare::KeyCounts, label: &str) -> Vec<Check> {
    let compared = compare::compare(&expected.counts, found);
    if compared.is_empty() {
        return vec![Check {
            name: format!("keys ({label})"),
            result: CheckResult::Pass,
            expected: Some("0".into()),
            actual: Some("0".into()),
            message: Some("no keys recorded, none loaded".into()),
        }];
    }
    compared
        .iter()
        .map(|c| Check {
            name: format!("keys {} ({label})", c.db),
            result: match c.verdict {
                Verdict::Equal => CheckResult::Pass,
                Verdict::ExpiredSince => CheckResult::Warn,
                Verdict::Differ if expected.exact => CheckResult::Fail,
                Verdict::Differ => CheckResult::Warn,
            },
            expected: Some(c.expected.keys.to_string()),
            actual: Some(c.found.keys.to_string()),
            message: Some(if c.verdict == Verdict::Differ && !expected.exact {
                format!("{} (the recorded counts are approximate)", c.describe())
            } else {
                c.describe()
            }),
        })
        .collect()
}

fn remove(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}
