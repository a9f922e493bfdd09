//! Restore drills of plan sources (`lifeline drill`, and the daemon's `drill = "…"` schedules): pick
//! the recovery point, let the source's kind restore and check it in a scratch directory, measure the
//! achieved RTO and RPO against the source's tier, and leave a sealed drill record — plus, when the
//! target was usable, a verification record so `--keep-verified` counts the snapshot as verified.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
use lifeline_repo::audit::{Access, EventResult};
use lifeline_repo::drill::{self, Check, CheckResult, DrillRecord};
use lifeline_repo::record::{Record as _, Stamp};
use lifeline_repo::snapshot::Snapshot;
use lifeline_repo::{verification, Id, Repository};
use lifeline_sources::drill::{DrillRequest, Drilled};
use lifeline_sources::postgres::catalog::{self, keys};
use lifeline_sources::Progress;
use serde::Serialize;

use crate::job::{self, source_filter};
use crate::open;
use crate::plan::{JobKind, Plan, SourceDef};
use crate::report::{JobReport, Outcome};

/// How long a restored server may take to start and recover, unless the caller says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);

/// What to drill beyond the plan's defaults.
#[derive(Debug, Clone)]
pub struct DrillOptions<'a> {
    /// Restore the snapshot with this ID prefix instead of the newest (one source only).
    pub snapshot: Option<&'a str>,
    /// PostgreSQL base backups: recover to this time; other kinds: the newest snapshot taken at or
    /// before it.
    pub time: Option<DateTime<FixedOffset>>,
    /// Overrides the plan's `[postgres] bin_dir`.
    pub pg_bin: Option<&'a Path>,
    /// The shell command a restored PostgreSQL server fetches WAL with (`lifeline --config PLAN pg
    /// wal-fetch %f %p`): the binary knows its own path and the plan's, this layer does not.
    pub restore_command: Option<&'a str>,
    pub timeout: Duration,
    /// A recovery-point group: the sources are drilled together (to `time`), each record names it
    /// and the report gives the group's RTO.
    pub group: Option<&'a str>,
}

impl Default for DrillOptions<'_> {
    fn default() -> Self {
        DrillOptions {
            snapshot: None,
            time: None,
            pg_bin: None,
            restore_command: None,
            timeout: DEFAULT_TIMEOUT,
            group: None,
        }
    }
}

/// The drill of one source.
#[derive(Debug, Clone, Serialize)]
pub struct SourceDrill {
    pub source: String,
    /// The stored drill record's ID (hex); `None` when it could not be stored.
    pub record_id: Option<String>,
    /// The verification record (scope `restore`) of the snapshots the drill proved usable (hex).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification_id: Option<String>,
    pub passed: bool,
    /// Why it did not pass, one sentence each: failed steps and checks, missed targets.
    pub reasons: Vec<String>,
    pub record: DrillRecord,
}

/// The drills of one `lifeline drill` run.
#[derive(Debug, Clone, Serialize)]
pub struct DrillReport {
    /// Every drill passed.
    pub passed: bool,
    pub sources: Vec<SourceDrill>,
    /// With `--group`: its name and the time from the first drill's start to the last one's
    /// verified target (the sources are restored one after another).
    pub group: Option<String>,
    pub group_rto_seconds: Option<f64>,
}

impl DrillReport {
    /// The drill records, for the audit trail.
    pub fn records(&self) -> Vec<&DrillRecord> {
        self.sources.iter().map(|s| &s.record).collect()
    }
}

/// Drill the named sources of `plan`, one after another. Fails only when the repository cannot be
/// opened or a name is not a source; everything else is a failed drill in the report.
pub fn drill(
    plan: &Plan,
    names: &[String],
    options: &DrillOptions<'_>,
    progress: &dyn Progress,
) -> anyhow::Result<DrillReport> {
    let mut sources = Vec::new();
    for name in names {
        let Some(source) = plan.source(name) else {
            let known: Vec<&str> = plan.sources.iter().map(|s| s.name.as_str()).collect();
            bail!(
                "the plan has no source {name:?}; its sources are: {}",
                known.join(", ")
            );
        };
        sources.push(source);
    }
    if options.snapshot.is_some() && sources.len() != 1 {
        bail!("a snapshot ID names one source's snapshot: drill one source with it");
    }
    let repo = open::open(&plan.repository)?;
    repo.require_read("a restore drill")?;
    let clock = Instant::now();
    let mut drills: Vec<SourceDrill> = Vec::new();
    // The last drill's cleanup is not part of the group's recovery.
    let mut group_rto = 0.0;
    for source in sources {
        let drill = drill_source(plan, &repo, source, options, progress);
        group_rto = clock.elapsed().as_secs_f64() - cleanup_of(&drill.record);
        for warning in audit_drill(&repo, plan, &drill) {
            tracing::warn!("{warning}");
        }
        drills.push(drill);
    }
    Ok(DrillReport {
        passed: drills.iter().all(|d| d.passed),
        sources: drills,
        group: options.group.map(String::from),
        group_rto_seconds: options.group.map(|_| group_rto.max(0.0)),
    })
}

/// A drill as a job of the plan (`lifeline run SOURCE --job drill`, what the daemon's drill
/// schedule runs): the same drill, reported like a backup job.
pub fn job(
    plan: &Plan,
    source: &SourceDef,
    options: &DrillOptions<'_>,
    progress: &dyn Progress,
) -> JobReport {
    let started = Utc::now();
    let mut report = job::started_report(plan, &source.name, JobKind::Drill, started);
    match drill(plan, std::slice::from_ref(&source.name), options, progress) {
        Ok(drilled) => {
            if let Some(d) = drilled.sources.first() {
                report.snapshot =
                    (!d.record.snapshot.is_empty()).then(|| d.record.snapshot.clone());
                report.verified = Some(d.passed);
                if !d.passed {
                    report.outcome = Outcome::Failure;
                    report.message = Some(d.reasons.join("; "));
                }
            }
        }
        Err(e) => {
            report.outcome = Outcome::Failure;
            report.message = Some(format!("{e:#}"));
        }
    }
    let finished = Utc::now();
    report.finished = time_text(finished);
    report.duration_seconds = (finished - started).num_milliseconds() as f64 / 1000.0;
    report
}

/// Drill one source in an opened repository: restore, check, judge, record.
pub fn drill_source(
    plan: &Plan,
    repo: &Repository,
    source: &SourceDef,
    options: &DrillOptions<'_>,
    progress: &dyn Progress,
) -> SourceDrill {
    let started = Utc::now();
    let clock = Instant::now();
    let tier = plan.class_of(source).and_then(|(class, tier)| {
        tier.map(|t| (class.tier.clone(), t.rto.as_secs_f64(), t.rpo.as_secs_f64()))
    });
    let mut record = DrillRecord {
        stamp: Stamp::now(DrillRecord::TYPE),
        source: source.name.clone(),
        kind: source.kind.as_str().into(),
        group: options.group.map(String::from),
        tier: tier.as_ref().map(|(name, _, _)| name.clone()),
        snapshot: String::new(),
        recovery_point: String::new(),
        started: time_text(started),
        finished: String::new(),
        rto_seconds: 0.0,
        rpo_seconds: 0.0,
        rto_target_seconds: tier.as_ref().map(|(_, rto, _)| *rto),
        rpo_target_seconds: tier.as_ref().map(|(_, _, rpo)| *rpo),
        steps: Vec::new(),
        checks: Vec::new(),
        versions: [(
            "lifeline".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        )]
        .into(),
        passed: false,
        error: None,
    };
    let mut reasons = Vec::new();
    let mut judge_rpo = true;
    let mut usable: Vec<Id> = Vec::new();
    match run(plan, repo, source, options, progress) {
        Err(e) => reasons.push(format!("{e:#}")),
        Ok((chosen, drilled)) => {
            record.snapshot = chosen.id.to_hex();
            judge_rpo = chosen.newest;
            let rto = (clock.elapsed().as_secs_f64() - drilled.cleanup_seconds).max(0.0);
            record.rto_seconds = rto;
            if let Some(point) = drilled.recovery_point {
                record.recovery_point = point.to_rfc3339_opts(SecondsFormat::Millis, true);
                record.rpo_seconds = (started - point.with_timezone(&Utc))
                    .num_milliseconds()
                    .max(0) as f64
                    / 1000.0;
            }
            reasons.extend(drilled.failures());
            if drilled.usable() {
                usable.clone_from(&drilled.restored);
            }
            record.steps = drilled.steps;
            record.checks = drilled.checks;
            record.versions.extend(drilled.versions);
        }
    }
    if !judge_rpo {
        // An older point was asked for: its age is the choice, not the source's RPO.
        record.rpo_target_seconds = None;
    }
    if reasons.is_empty() {
        reasons.extend(missed_targets(&record));
    }
    let finished = Utc::now();
    record.finished = time_text(finished);
    record.passed = reasons.is_empty();
    record.error = (!reasons.is_empty()).then(|| reasons.join("; "));
    let record_id = match drill::save(repo, &record) {
        Ok(id) => Some(id.to_hex()),
        Err(e) => {
            reasons.push(format!("the drill record could not be stored: {e}"));
            None
        }
    };
    let mut verification_id = None;
    if !usable.is_empty() {
        match verification::save(repo, verification::restored(&usable)) {
            Ok(id) => verification_id = Some(id.to_hex()),
            Err(e) => reasons.push(format!(
                "the restore could not be recorded as a verification: {e}"
            )),
        }
    }
    SourceDrill {
        source: source.name.clone(),
        record_id,
        verification_id,
        passed: reasons.is_empty(),
        reasons,
        record,
    }
}

/// Seconds the drill's cleanup step took (not part of any recovery time).
fn cleanup_of(record: &DrillRecord) -> f64 {
    record
        .steps
        .iter()
        .filter(|s| s.name == lifeline_sources::drill::CLEANUP)
        .map(|s| s.seconds)
        .sum()
}

/// The audit record of one drill: the snapshot it read, the drill record it wrote, its figures.
fn audit_drill(repo: &Repository, plan: &Plan, drill: &SourceDrill) -> Vec<String> {
    let record = &drill.record;
    let mut event = lifeline_repo::audit::Event::new("drill", &drill.source);
    event.detail("source", &drill.source);
    event.detail("kind", &record.kind);
    if let Some(tier) = &record.tier {
        event.detail("tier", tier);
    }
    if let Some(group) = &record.group {
        event.detail("group", group);
    }
    event.detail("passed", drill.passed);
    event.detail("rto_seconds", record.rto_seconds);
    event.detail("rpo_seconds", record.rpo_seconds);
    if let Some(t) = record.rto_target_seconds {
        event.detail("rto_target_seconds", t);
    }
    if let Some(t) = record.rpo_target_seconds {
        event.detail("rpo_target_seconds", t);
    }
    if !record.snapshot.is_empty() {
        event.touch(Access::Read, "snapshot", &record.snapshot);
    }
    if let Some(id) = &drill.record_id {
        event.touch(Access::Wrote, "drill", id);
    }
    // Listed so that `audit verify` can tell when the record is deleted (format.md §14).
    if let Some(id) = &drill.verification_id {
        event.touch(Access::Wrote, "verification", id);
    }
    if !drill.passed {
        event.result = EventResult::Failed;
        event.error = Some(drill.reasons.join("; "));
    }
    match crate::audit::record(repo, &event, &plan.audit) {
        Ok(recorded) => recorded.warnings,
        Err(e) => vec![format!(
            "the audit record of the drill of {} was not written: {e}",
            drill.source
        )],
    }
}

/// The targets a usable drill missed, one sentence each.
fn missed_targets(record: &DrillRecord) -> Vec<String> {
    let tier = record.tier.as_deref().unwrap_or("its tier");
    let mut missed = Vec::new();
    if let Some(target) = record.rto_target_seconds {
        if record.rto_seconds > target {
            missed.push(format!(
                "RTO target missed: the restore took {} to a verified target, {tier} allows {}",
                duration_text(record.rto_seconds),
                duration_text(target)
            ));
        }
    }
    if let Some(target) = record.rpo_target_seconds {
        if record.rpo_seconds > target {
            missed.push(format!(
                "RPO target missed: the newest recovery point was {} old, {tier} allows {}",
                duration_text(record.rpo_seconds),
                duration_text(target)
            ));
        }
    }
    missed
}

/// The snapshot a drill restores.
#[derive(Debug)]
struct Chosen {
    id: Id,
    snapshot: Snapshot,
    /// It is the source's newest recovery point (so its age is the source's RPO).
    newest: bool,
}

/// Choose the snapshot and let the source's kind drill it in a private scratch directory.
fn run(
    plan: &Plan,
    repo: &Repository,
    source: &SourceDef,
    options: &DrillOptions<'_>,
    progress: &dyn Progress,
) -> anyhow::Result<(Chosen, Drilled)> {
    let bin_dir = options
        .pg_bin
        .map(Path::to_path_buf)
        .or_else(|| plan.postgres.bin_dir.clone());
    let drilled_source = job::build(source, JobKind::Backup, bin_dir)?;
    let chosen = choose(repo, source, drilled_source.kind(), options)?;
    let scratch = scratch_dir()?;
    let request = DrillRequest {
        id: chosen.id,
        snapshot: &chosen.snapshot,
        time: options.time,
        scratch: scratch.path(),
        checks: &source.checks,
        restore_command: options.restore_command,
        timeout: options.timeout,
    };
    let drilled = drilled_source
        .drill(repo, &request, progress)
        .with_context(|| format!("drill of source {}", source.name))?;
    Ok((chosen, drilled))
}

/// A private (0700: it holds restored data) directory under `$TMPDIR`, removed when dropped.
fn scratch_dir() -> anyhow::Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .prefix("lifeline-drill-")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
        .with_context(|| {
            format!(
                "cannot create a scratch directory in {}; set TMPDIR to a writable directory with room for the restore",
                std::env::temp_dir().display()
            )
        })
}

/// The snapshot to restore: the one asked for, or the newest of the source's kind (at or before
/// `--time`).
fn choose(
    repo: &Repository,
    source: &SourceDef,
    kind: &str,
    options: &DrillOptions<'_>,
) -> anyhow::Result<Chosen> {
    let filter = source_filter(&source.name);
    let mut mine: Vec<(Id, Snapshot)> = repo
        .load_snapshots()?
        .items
        .into_iter()
        .filter(|(_, s)| s.kind == kind && filter.matches(s))
        .collect();
    mine.sort_by_key(|(id, s)| (s.timestamp(), *id));
    let newest = mine.last().map(|(id, _)| *id);
    let (id, snapshot) = if let Some(prefix) = options.snapshot {
        let (id, snapshot) = repo.find_snapshot_filtered(prefix, &filter)?;
        if snapshot.kind != kind {
            bail!(
                "snapshot {} is a {} snapshot; source {} is drilled from {kind} snapshots",
                id.short(),
                snapshot.kind,
                source.name
            );
        }
        (id, snapshot)
    } else if let Some(t) = options.time {
        mine.into_iter()
            .rev()
            .find(|(_, s)| reaches(s, kind, &t))
            .with_context(|| {
                format!(
                    "source {} has no {kind} snapshot complete by {}; `lifeline snapshots --tag source={}` lists them",
                    source.name,
                    t.to_rfc3339(),
                    source.name
                )
            })?
    } else {
        mine.pop().with_context(|| {
            format!(
                "the repository holds no {kind} snapshot of source {} (tag source={}): run `lifeline run {}` first",
                source.name, source.name, source.name
            )
        })?
    };
    // With a time, the point restored is that time, not the newest.
    let newest = options.time.is_none() && (kind == catalog::KIND || newest == Some(id));
    Ok(Chosen {
        id,
        snapshot,
        newest,
    })
}

/// Whether a snapshot can give the state at `t`: a base backup complete by then (recovery goes on
/// from it), any other snapshot taken by then.
fn reaches(snapshot: &Snapshot, kind: &str, t: &DateTime<FixedOffset>) -> bool {
    if kind == catalog::KIND {
        snapshot
            .source
            .get(keys::STOP_TIME)
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .is_some_and(|stop| stop <= *t)
    } else {
        snapshot.timestamp() <= *t
    }
}

fn time_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `3 ms`, `12.3 s`, `4 min 10 s`, `2 h 5 min`: durations in sentences.
pub fn duration_text(seconds: f64) -> String {
    if seconds < 1.0 {
        return format!("{:.0} ms", seconds * 1000.0);
    }
    if seconds < 60.0 {
        return format!("{seconds:.1} s");
    }
    let whole = seconds.round() as u64;
    let (h, m, s) = (whole / 3600, whole % 3600 / 60, whole % 60);
    match (h, m, s) {
        (0, m, s) => format!("{m} min {s} s"),
        (h, m, _) => format!("{h} h {m} min"),
    }
}

/// Counts of a drill's checks by result: (pass, warn, fail).
pub fn tally(checks: &[Check]) -> (usize, usize, usize) {
    let count = |r: CheckResult| checks.iter().filter(|c| c.result == r).count();
    (
        count(CheckResult::Pass),
        count(CheckResult::Warn),
        count(CheckResult::Fail),
    )
}

/// The newest drill record of each source, and each source's newest passed one: what the metrics
/// and status read. Records that cannot be read are skipped (with a warning).
pub fn newest_records(
    repo: &Repository,
) -> anyhow::Result<std::collections::BTreeMap<String, (DrillRecord, Option<DrillRecord>)>> {
    let (records, damaged) = drill::load_all(repo)?;
    for key in damaged {
        tracing::warn!("ignoring drill record {key}: it cannot be read (run `lifeline check`)");
    }
    let mut out: std::collections::BTreeMap<String, (DrillRecord, Option<DrillRecord>)> =
        std::collections::BTreeMap::new();
    // Oldest first: later records replace earlier ones.
    for stored in records {
        let r = stored.record;
        let entry = out
            .entry(r.source.clone())
            .or_insert_with(|| (r.clone(), None));
        if r.passed {
            entry.1 = Some(r.clone());
        }
        entry.0 = r;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(rto: f64, rpo: f64) -> DrillRecord {
        DrillRecord {
            stamp: Stamp::now(DrillRecord::TYPE),
            source: "app".into(),
            kind: "postgres".into(),
            group: None,
            tier: Some("tier1".into()),
            snapshot: "00".into(),
            recovery_point: String::new(),
            started: String::new(),
            finished: String::new(),
            rto_seconds: rto,
            rpo_seconds: rpo,
            rto_target_seconds: Some(900.0),
            rpo_target_seconds: Some(300.0),
            steps: Vec::new(),
            checks: Vec::new(),
            versions: Default::default(),
            passed: false,
            error: None,
        }
    }

    #[test]
    fn each_missed_target_is_named_with_both_figures() {
        assert!(missed_targets(&record(899.0, 300.0)).is_empty());
        let missed = missed_targets(&record(901.0, 3600.0));
        assert_eq!(
            missed,
            [
                "RTO target missed: the restore took 15 min 1 s to a verified target, tier1 allows 15 min 0 s",
                "RPO target missed: the newest recovery point was 1 h 0 min old, tier1 allows 5 min 0 s"
            ]
        );
        let mut unjudged = record(1.0, 1e9);
        unjudged.rpo_target_seconds = None;
        assert!(missed_targets(&unjudged).is_empty());
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(duration_text(0.0012), "1 ms");
        assert_eq!(duration_text(12.34), "12.3 s");
        assert_eq!(duration_text(250.0), "4 min 10 s");
        assert_eq!(duration_text(7500.0), "2 h 5 min");
    }
}
