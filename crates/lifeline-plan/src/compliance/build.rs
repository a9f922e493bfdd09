//! The report computed from the audit trail and the drill records: a pure function of its inputs,
//! so the same trail read from the primary or from its copy in another region gives the same
//! report.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::{DateTime, Duration, SecondsFormat, Utc};

use lifeline_repo::audit::{AuditRecord, EventResult};
use lifeline_repo::drill::{CheckResult, DrillRecord};

use super::model::*;
use super::text::{self, percent, when};

/// The commands whose runs are backups: `lifeline backup` (and `lifeline run`'s jobs), PostgreSQL
/// base backups and logical dumps.
const BACKUP_ACTIONS: [&str; 3] = ["backup", "pg backup", "pg dump"];
/// PostgreSQL's `archive_command`: one operation per WAL segment archived.
const WAL_PUSH_ACTION: &str = "pg wal-push";
const TARGET_PERCENT: f64 = 100.0;
/// The seeds' key rotation period.
pub const ROTATION_DAYS: i64 = 90;
/// The only cipher the repository format seals with (format.md §5).
pub const ALGORITHM: &str = "AES-256-GCM";
/// A failed drill writes its record, then its audit event; an event this long after the record's
/// end still belongs to it.
const DRILL_EVENT_SLACK_MINUTES: i64 = 10;

/// Compute the report for `inputs.month`.
pub fn build(inputs: &Inputs) -> MonthlyReport {
    let month = inputs.month;
    let trail = Trail::read(inputs);
    let drills = Drills::read(inputs);
    let mut out = Findings::default();

    if trail.unreadable_times > 0 {
        out.finding(
            Section::Integrity,
            format!(
                "Audit records whose time cannot be read: {}; they are left out of every \
                 section.",
                trail.unreadable_times
            ),
        );
    }
    if drills.unreadable_times > 0 {
        out.finding(
            Section::RecoveryTests,
            format!(
                "Drill records whose start time cannot be read: {}; they are left out.",
                drills.unreadable_times
            ),
        );
    }

    let backups = backups(&trail, inputs, &mut out);
    let recovery_tests = recovery_tests(&drills, inputs, &mut out);
    let integrity = integrity(&trail, &drills, inputs, &mut out);
    let encryption = encryption(&trail, inputs, &mut out);
    let retention = retention(&trail, inputs, &mut out);
    let copies = copies(&trail, &mut out);
    let wal = wal(&trail, &drills, inputs, &mut out);
    let failures = failures(&trail, &drills);

    if !trail.refused.is_empty() {
        let mut seen: BTreeMap<(String, String, &str), usize> = BTreeMap::new();
        for e in &trail.refused {
            *seen
                .entry((
                    e.action().to_string(),
                    e.by(),
                    e.detail("refused").unwrap_or_default(),
                ))
                .or_default() += 1;
        }
        let list: Vec<String> = seen
            .into_iter()
            .map(|((action, by, role), n)| format!("{action} by {by} as `{role}` ({n})"))
            .collect();
        out.note(format!(
            "{} refused because the credential's role does not allow them, and left out of the \
             figures: {}.",
            text::count(trail.refused.len() as u64, "operation"),
            list.join(", ")
        ));
    }
    if inputs.sources.is_empty() {
        out.note(
            "No plan was given: sources that never ran and sources without a recovery test \
             cannot be named, and drill targets come from the drill records alone."
                .into(),
        );
    }
    let imported: BTreeSet<&str> = trail
        .in_month()
        .filter_map(|e| e.record.entry.origin.as_ref())
        .map(|o| o.repository.as_str())
        .collect();
    if !imported.is_empty() {
        out.note(format!(
            "{} of the month came from the trail of {} (imported by copy); they count like \
             the repository's own.",
            text::count(integrity.trail.imported_in_month as u64, "record"),
            imported.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }

    // Findings are collected section by section; a stable sort keeps each section's own order.
    out.findings.sort_by_key(|f| f.section);
    MonthlyReport {
        header: Header {
            month,
            period_start: rfc3339(month.start()),
            period_end: rfc3339(month.end()),
            repository: inputs.repository.clone(),
            generated_at: rfc3339(inputs.generated_at),
            lifeline_version: env!("CARGO_PKG_VERSION").to_string(),
        },
        summary: Summary {
            verdict: if out.findings.is_empty() {
                Verdict::Met
            } else {
                Verdict::NotMet
            },
            findings: out.findings,
            notes: out.notes,
        },
        backups,
        recovery_tests,
        integrity,
        encryption,
        retention,
        copies,
        wal,
        failures,
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[derive(Default)]
struct Findings {
    findings: Vec<Finding>,
    notes: Vec<String>,
}

impl Findings {
    fn finding(&mut self, section: Section, text: String) {
        self.findings.push(Finding { section, text });
    }

    fn note(&mut self, text: String) {
        self.notes.push(text);
    }
}

/// One record of the trail with its time read.
struct Event<'a> {
    time: DateTime<Utc>,
    in_month: bool,
    record: &'a AuditRecord,
}

impl Event<'_> {
    fn action(&self) -> &str {
        &self.record.entry.event.action
    }

    fn target(&self) -> &str {
        &self.record.entry.event.target
    }

    fn result(&self) -> EventResult {
        self.record.entry.event.result
    }

    fn detail(&self, key: &str) -> Option<&str> {
        self.record.entry.event.details.get(key).map(String::as_str)
    }

    /// The plan's source it ran for: `details.source`, else its target.
    fn source(&self) -> &str {
        self.detail("source").unwrap_or_else(|| self.target())
    }

    fn time_text(&self) -> &str {
        &self.record.entry.time
    }

    fn by(&self) -> String {
        format!(
            "{}@{}",
            self.record.entry.username, self.record.entry.hostname
        )
    }

    fn cause(&self) -> String {
        self.record
            .entry
            .event
            .error
            .clone()
            .unwrap_or_else(|| "no cause recorded".to_string())
    }

    fn is_backup(&self) -> bool {
        BACKUP_ACTIONS.contains(&self.action())
    }

    fn activity(&self) -> Activity {
        Activity {
            time: self.time_text().to_string(),
            action: self.action().to_string(),
            target: self.target().to_string(),
            result: self.result(),
            by: self.by(),
        }
    }

    fn failure(&self) -> Failure {
        Failure {
            time: self.time_text().to_string(),
            action: self.action().to_string(),
            target: self.target().to_string(),
            result: self.result(),
            cause: self.cause(),
            by: self.by(),
            origin: self
                .record
                .entry
                .origin
                .as_ref()
                .map(|o| o.repository.clone()),
        }
    }
}

/// The trail up to the month's end; later records are ignored (a report made months later says
/// what was known at the month's end, apart from the holds and keys in force now).
struct Trail<'a> {
    events: Vec<Event<'a>>,
    unreadable_times: usize,
    /// Operations of the month refused because the credential's role does not allow them: left out
    /// of every figure (nothing was attempted on the data), and named in a note.
    refused: Vec<Event<'a>>,
}

impl<'a> Trail<'a> {
    fn read(inputs: &'a Inputs) -> Trail<'a> {
        let month = inputs.month;
        let mut events = Vec::new();
        let mut unreadable_times = 0;
        let mut refused = Vec::new();
        // A record imported twice (two copies reading the same trail) is one operation.
        let mut imported = HashSet::new();
        for record in &inputs.records {
            if let Some(origin) = &record.entry.origin {
                if !imported.insert((origin.repository.as_str(), origin.record)) {
                    continue;
                }
            }
            let Some(time) = text::parse_time(&record.entry.time) else {
                unreadable_times += 1;
                continue;
            };
            if time < month.end() {
                let event = Event {
                    time,
                    in_month: month.contains(time),
                    record,
                };
                if event.detail("refused").is_some() {
                    if event.in_month {
                        refused.push(event);
                    }
                } else {
                    events.push(event);
                }
            }
        }
        // The trail is oldest first by its own order; records imported from a copy's source may
        // interleave, so order by time for "last success" and the failures list.
        events.sort_by_key(|e| e.time);
        refused.sort_by_key(|e| e.time);
        Trail {
            events,
            unreadable_times,
            refused,
        }
    }

    fn in_month(&self) -> impl Iterator<Item = &Event<'a>> {
        self.events.iter().filter(|e| e.in_month)
    }

    fn up_to_end(&self) -> impl Iterator<Item = &Event<'a>> {
        self.events.iter()
    }
}

/// The drill records started before the month's end, oldest first.
struct Drills<'a> {
    all: Vec<(DateTime<Utc>, &'a DrillRecord)>,
    unreadable_times: usize,
    month: super::month::Month,
}

impl<'a> Drills<'a> {
    fn read(inputs: &'a Inputs) -> Drills<'a> {
        let mut all = Vec::new();
        let mut unreadable_times = 0;
        for drill in &inputs.drills {
            match text::parse_time(&drill.started) {
                Some(t) if t < inputs.month.end() => all.push((t, drill)),
                Some(_) => {}
                None => unreadable_times += 1,
            }
        }
        all.sort_by_key(|(t, _)| *t);
        Drills {
            all,
            unreadable_times,
            month: inputs.month,
        }
    }

    fn in_month(&self) -> impl Iterator<Item = &'a DrillRecord> + '_ {
        self.all
            .iter()
            .filter(|(t, _)| self.month.contains(*t))
            .map(|(_, d)| *d)
    }
}

fn planned<'a>(inputs: &'a Inputs, name: &str) -> Option<&'a PlannedSource> {
    inputs.sources.iter().find(|s| s.name == name)
}

fn rate(ok: usize, attempts: usize) -> Option<f64> {
    (attempts > 0).then(|| ok as f64 * 100.0 / attempts as f64)
}

#[derive(Default)]
struct Tally {
    attempts: usize,
    ok: usize,
    partial: usize,
    failed: usize,
}

impl Tally {
    fn count(&mut self, result: EventResult) {
        self.attempts += 1;
        match result {
            EventResult::Ok => self.ok += 1,
            EventResult::Partial => self.partial += 1,
            EventResult::Failed => self.failed += 1,
        }
    }
}

fn backups(trail: &Trail, inputs: &Inputs, out: &mut Findings) -> Backups {
    #[derive(Default)]
    struct Source {
        kind: Option<String>,
        tier: Option<String>,
        planned: bool,
        tally: Tally,
        bytes_added: u64,
        last_success: Option<String>,
    }
    let mut sources: BTreeMap<String, Source> = BTreeMap::new();
    for s in &inputs.sources {
        sources.insert(
            s.name.clone(),
            Source {
                kind: Some(s.kind.clone()),
                tier: s.tier.clone(),
                planned: true,
                ..Source::default()
            },
        );
    }
    let mut last_success: BTreeMap<&str, &str> = BTreeMap::new();
    let mut total = Tally::default();
    for e in trail.up_to_end().filter(|e| e.is_backup()) {
        if e.result() == EventResult::Ok {
            last_success.insert(e.source(), e.time_text());
        }
        if !e.in_month {
            continue;
        }
        let source = sources.entry(e.source().to_string()).or_default();
        if !source.planned {
            source.kind = e.detail("kind").map(String::from).or(source.kind.take());
            source.tier = e.detail("tier").map(String::from).or(source.tier.take());
        }
        source.tally.count(e.result());
        total.count(e.result());
        // A count that does not parse adds nothing rather than failing the report.
        source.bytes_added += e
            .detail("bytes_added")
            .and_then(|b| b.parse::<u64>().ok())
            .unwrap_or(0);
    }
    for (name, source) in sources.iter_mut() {
        source.last_success = last_success.get(name.as_str()).map(|t| t.to_string());
    }

    let success_rate_percent = rate(total.ok, total.attempts);
    match success_rate_percent {
        None => out.finding(
            Section::Backups,
            "No backup was recorded this month.".into(),
        ),
        Some(r) if r < TARGET_PERCENT => out.finding(
            Section::Backups,
            format!(
                "Backup success rate {} (target 100%): {} failed and {} partial of {} backups.",
                percent(r),
                total.failed,
                total.partial,
                total.attempts
            ),
        ),
        Some(_) => {}
    }
    let sources: Vec<SourceBackups> = sources
        .into_iter()
        .map(|(name, s)| SourceBackups {
            source: name,
            kind: s.kind,
            tier: s.tier,
            planned: s.planned,
            attempts: s.tally.attempts,
            ok: s.tally.ok,
            partial: s.tally.partial,
            failed: s.tally.failed,
            success_rate_percent: rate(s.tally.ok, s.tally.attempts),
            bytes_added: s.bytes_added,
            last_success: s.last_success,
        })
        .collect();
    for s in &sources {
        if s.attempts == 0 {
            out.finding(
                Section::Backups,
                format!(
                    "{}: no backup was recorded this month (last success: {}).",
                    s.source,
                    text::when_or_never(s.last_success.as_deref())
                ),
            );
        } else if s.ok < s.attempts {
            out.finding(
                Section::Backups,
                format!(
                    "{}: {} of {} backups succeeded ({}); {} failed, {} partial.",
                    s.source,
                    s.ok,
                    s.attempts,
                    text::percent_or_dash(s.success_rate_percent),
                    s.failed,
                    s.partial
                ),
            );
        }
    }
    Backups {
        target_percent: TARGET_PERCENT,
        attempts: total.attempts,
        ok: total.ok,
        partial: total.partial,
        failed: total.failed,
        success_rate_percent,
        sources,
    }
}

fn recovery_tests(drills: &Drills, inputs: &Inputs, out: &mut Findings) -> RecoveryTests {
    let results: Vec<DrillResult> = drills
        .in_month()
        .map(|d| {
            let plan = planned(inputs, &d.source);
            // A drill run without a plan carries no targets; the plan's are the yardstick then.
            let rto_target = d
                .rto_target_seconds
                .or(plan.and_then(|p| p.rto_target_seconds));
            let rpo_target = d
                .rpo_target_seconds
                .or(plan.and_then(|p| p.rpo_target_seconds));
            let count = |r: CheckResult| d.checks.iter().filter(|c| c.result == r).count();
            DrillResult {
                started: d.started.clone(),
                finished: d.finished.clone(),
                source: d.source.clone(),
                kind: d.kind.clone(),
                tier: d.tier.clone().or(plan.and_then(|p| p.tier.clone())),
                group: d.group.clone(),
                snapshot: d.snapshot.clone(),
                recovery_point: d.recovery_point.clone(),
                rto_seconds: d.rto_seconds,
                rto_target_seconds: rto_target,
                rto_met: rto_target.map(|t| d.rto_seconds <= t),
                rpo_seconds: d.rpo_seconds,
                rpo_target_seconds: rpo_target,
                rpo_met: rpo_target.map(|t| d.rpo_seconds <= t),
                checks: d.checks.len(),
                checks_warned: count(CheckResult::Warn),
                checks_failed: count(CheckResult::Fail),
                passed: d.passed,
                error: d.error.clone(),
            }
        })
        .collect();

    for r in &results {
        let at = format!("{} ({})", r.source, when(&r.started));
        if !r.passed {
            out.finding(
                Section::RecoveryTests,
                format!(
                    "The recovery test of {at} failed: {}",
                    r.error.as_deref().unwrap_or("no reason recorded.")
                ),
            );
            continue;
        }
        // A drill that passed its own targets can still miss the plan's (it ran without them).
        if let (Some(false), Some(target)) = (r.rto_met, r.rto_target_seconds) {
            out.finding(
                Section::RecoveryTests,
                format!(
                    "The recovery test of {at} took {} against an RTO target of {}.",
                    text::duration(r.rto_seconds),
                    text::duration(target)
                ),
            );
        }
        if let (Some(false), Some(target)) = (r.rpo_met, r.rpo_target_seconds) {
            out.finding(
                Section::RecoveryTests,
                format!(
                    "The recovery test of {at} restored data {} old against an RPO target of {}.",
                    text::duration(r.rpo_seconds),
                    text::duration(target)
                ),
            );
        }
    }

    let tested: HashSet<&str> = results.iter().map(|r| r.source.as_str()).collect();
    let untested: Vec<UntestedSource> = inputs
        .sources
        .iter()
        .filter(|s| !tested.contains(s.name.as_str()))
        .map(|s| UntestedSource {
            source: s.name.clone(),
            kind: s.kind.clone(),
            tier: s.tier.clone(),
            rto_target_seconds: s.rto_target_seconds,
            last_drill: drills
                .all
                .iter()
                .rev()
                .find(|(_, d)| d.source == s.name)
                .map(|(_, d)| d.started.clone()),
        })
        .collect();
    for u in &untested {
        out.finding(
            Section::RecoveryTests,
            format!(
                "{}{}: no recovery test this month (last: {}).",
                u.source,
                u.tier
                    .as_deref()
                    .map(|t| format!(" ({t})"))
                    .unwrap_or_default(),
                text::when_or_never(u.last_drill.as_deref())
            ),
        );
    }
    if results.is_empty() && inputs.sources.is_empty() {
        out.finding(
            Section::RecoveryTests,
            "No recovery test (drill) ran this month.".into(),
        );
    }
    let passed = results.iter().filter(|r| r.passed).count();
    RecoveryTests {
        failed: results.len() - passed,
        passed,
        drills: results,
        untested,
    }
}

fn integrity(trail: &Trail, drills: &Drills, inputs: &Inputs, out: &mut Findings) -> Integrity {
    let checks: Vec<CheckRun> = trail
        .in_month()
        .filter(|e| e.action() == "check")
        .map(|e| CheckRun {
            time: e.time_text().to_string(),
            target: e.target().to_string(),
            result: e.result(),
            problems: e.detail("problems").and_then(|p| p.parse().ok()),
            cause: e.record.entry.event.error.clone(),
        })
        .collect();
    let with_problems: Vec<&CheckRun> = checks
        .iter()
        .filter(|c| c.result != EventResult::Ok || c.problems.is_some_and(|p| p > 0))
        .collect();
    if checks.is_empty() {
        out.finding(
            Section::Integrity,
            "No repository check ran this month.".into(),
        );
    }
    for c in &with_problems {
        let problems = match c.problems {
            Some(n) => text::count(n, "problem"),
            None => "problems".to_string(),
        };
        out.finding(
            Section::Integrity,
            format!(
                "The repository check of {} found {problems}{}",
                when(&c.time),
                c.cause
                    .as_deref()
                    .map(|cause| format!(": {cause}"))
                    .unwrap_or_else(|| ".".into())
            ),
        );
    }

    let month_drills: Vec<&DrillRecord> = drills.in_month().collect();
    let drills_passed = month_drills.iter().filter(|d| d.passed).count();
    let drill_checks = month_drills.iter().map(|d| d.checks.len()).sum();
    let drill_checks_failed = month_drills
        .iter()
        .flat_map(|d| &d.checks)
        .filter(|c| c.result == CheckResult::Fail)
        .count();

    let t = &inputs.trail;
    let verified = t.authenticated && t.problems.is_empty();
    if !t.authenticated {
        out.finding(
            Section::Integrity,
            "The audit trail's authentication was not checked (it was read without the \
             repository's key)."
                .into(),
        );
    }
    for problem in &t.problems {
        out.finding(
            Section::Integrity,
            format!("The audit trail did not verify: {problem}"),
        );
    }
    Integrity {
        checks_with_problems: with_problems.len(),
        checks,
        drills_passed,
        drills_failed: month_drills.len() - drills_passed,
        drill_checks,
        drill_checks_failed,
        trail: TrailVerification {
            records: t.records,
            records_in_month: trail.in_month().count(),
            imported_in_month: trail
                .in_month()
                .filter(|e| e.record.entry.origin.is_some())
                .count(),
            authenticated: t.authenticated,
            problems: t.problems.clone(),
            heads: t.heads.clone(),
            verified,
        },
    }
}

fn encryption(trail: &Trail, inputs: &Inputs, out: &mut Findings) -> Encryption {
    let as_of = inputs.generated_at.min(inputs.month.end());
    let mut epochs: Vec<(&KeyEpoch, Option<DateTime<Utc>>)> = inputs
        .key_epochs
        .iter()
        .map(|e| (e, text::parse_time(&e.created)))
        .collect();
    epochs.sort_by_key(|(e, _)| e.epoch);
    // Destroyed by `as_of` (format.md §3.2): a destroy time that cannot be read counts as done.
    let destroyed_by = |e: &KeyEpoch| {
        e.destroyed
            .as_deref()
            .is_some_and(|d| text::parse_time(d).is_none_or(|d| d <= as_of))
    };
    // New data is sealed under the newest epoch (format.md §3.1): the newest one that existed and
    // was not destroyed.
    let current_epoch = epochs
        .iter()
        .filter(|(e, created)| created.is_some_and(|c| c <= as_of) && !destroyed_by(e))
        .map(|(e, _)| e.epoch)
        .max();
    let epochs: Vec<EpochStatus> = epochs
        .into_iter()
        .map(|(e, created)| {
            let (state, age_days) = match created {
                _ if destroyed_by(e) => (EpochState::Destroyed, None),
                None => (EpochState::Unknown, None),
                Some(c) if c > as_of => (EpochState::Later, None),
                Some(c) => (
                    if Some(e.epoch) == current_epoch {
                        EpochState::Current
                    } else {
                        EpochState::Superseded
                    },
                    Some((as_of - c).num_days()),
                ),
            };
            EpochStatus {
                epoch: e.epoch,
                created: e.created.clone(),
                destroyed: e.destroyed.clone().filter(|_| destroyed_by(e)),
                age_days,
                state,
                overdue: state == EpochState::Current
                    && age_days.is_some_and(|a| a > ROTATION_DAYS),
            }
        })
        .collect();

    if inputs.key_epochs.is_empty() {
        out.finding(
            Section::Encryption,
            "The key epochs could not be read: the age of the encryption key is unknown.".into(),
        );
    } else if current_epoch.is_none() {
        out.finding(
            Section::Encryption,
            "No key epoch in use during the month could be identified.".into(),
        );
    }
    for e in &epochs {
        if e.overdue {
            let age = e.age_days.unwrap_or_default();
            out.finding(
                Section::Encryption,
                format!(
                    "Key epoch {} was {age} days old on {}: the {ROTATION_DAYS}-day rotation is \
                     overdue by {} days.",
                    e.epoch,
                    as_of.format("%Y-%m-%d"),
                    age - ROTATION_DAYS
                ),
            );
        }
        if e.state == EpochState::Unknown {
            out.finding(
                Section::Encryption,
                format!(
                    "Key epoch {} has a creation time that cannot be read ({:?}).",
                    e.epoch, e.created
                ),
            );
        }
    }
    Encryption {
        algorithm: ALGORITHM.to_string(),
        rotation_days: ROTATION_DAYS,
        as_of: rfc3339(as_of),
        current_epoch,
        epochs,
        key_changes: trail
            .in_month()
            .filter(|e| e.action() == "key" || e.action().starts_with("key "))
            .map(Event::activity)
            .collect(),
    }
}

fn retention(trail: &Trail, inputs: &Inputs, out: &mut Findings) -> Retention {
    let mut sources: BTreeMap<&str, RetentionRuns> = BTreeMap::new();
    let (mut prune_runs, mut prune_failed) = (0, 0);
    for e in trail.in_month() {
        match e.action() {
            "forget" => {
                let runs = sources.entry(e.source()).or_insert_with(|| RetentionRuns {
                    source: e.source().to_string(),
                    runs: 0,
                    failed: 0,
                    snapshots_removed: 0,
                });
                runs.runs += 1;
                if e.result() != EventResult::Ok {
                    runs.failed += 1;
                }
                runs.snapshots_removed += e
                    .detail("removed")
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
            }
            "prune" => {
                prune_runs += 1;
                if e.result() != EventResult::Ok {
                    prune_failed += 1;
                }
            }
            _ => {}
        }
    }
    let sources: Vec<RetentionRuns> = sources.into_values().collect();
    for s in sources.iter().filter(|s| s.failed > 0) {
        out.finding(
            Section::Retention,
            format!(
                "Retention (forget) of {} did not complete in {} of {} runs.",
                s.source, s.failed, s.runs
            ),
        );
    }
    if prune_failed > 0 {
        out.finding(
            Section::Retention,
            format!("Prune did not complete in {prune_failed} of {prune_runs} runs."),
        );
    }
    if sources.is_empty() {
        out.note("No retention run (forget) was recorded this month.".into());
    }
    Retention {
        sources,
        prune_runs,
        prune_failed,
        holds: inputs.holds.clone(),
        hold_changes: trail
            .in_month()
            .filter(|e| e.action() == "hold" || e.action().starts_with("hold "))
            .map(Event::activity)
            .collect(),
    }
}

fn copies(trail: &Trail, out: &mut Findings) -> Copies {
    #[derive(Default)]
    struct Destination {
        tally: Tally,
        last_success: Option<String>,
    }
    let mut destinations: BTreeMap<&str, Destination> = BTreeMap::new();
    for e in trail.up_to_end().filter(|e| e.action() == "copy") {
        let to = e.detail("to").unwrap_or_else(|| e.target());
        let d = destinations.entry(to).or_default();
        if e.in_month {
            d.tally.count(e.result());
        }
        if e.result() == EventResult::Ok {
            d.last_success = Some(e.time_text().to_string());
        }
    }
    let destinations: Vec<CopyDestination> = destinations
        .into_iter()
        .map(|(to, d)| CopyDestination {
            destination: to.to_string(),
            runs: d.tally.attempts,
            ok: d.tally.ok,
            partial: d.tally.partial,
            failed: d.tally.failed,
            last_success: d.last_success,
        })
        .collect();
    if destinations.iter().all(|d| d.runs == 0) {
        out.finding(
            Section::Copies,
            "No copy to a second region was recorded this month.".into(),
        );
    }
    for d in &destinations {
        if d.runs == 0 {
            out.finding(
                Section::Copies,
                format!(
                    "No copy to {} ran this month (last success: {}).",
                    d.destination,
                    text::when_or_never(d.last_success.as_deref())
                ),
            );
        } else if d.ok < d.runs {
            out.finding(
                Section::Copies,
                format!(
                    "Copy to {}: {} of {} runs did not complete.",
                    d.destination,
                    d.runs - d.ok,
                    d.runs
                ),
            );
        }
    }
    Copies { destinations }
}

/// Whether `text` names WAL as a word (`WAL`, `pg_wal`, `WAL-G`), not inside `wallet` or `walk`.
fn mentions_wal(text: &str) -> bool {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .any(|word| word.eq_ignore_ascii_case("wal"))
}

fn wal(trail: &Trail, drills: &Drills, inputs: &Inputs, out: &mut Findings) -> WalContinuity {
    let checks: Vec<WalCheck> = drills
        .in_month()
        .flat_map(|d| {
            d.checks
                .iter()
                .filter(|c| c.name.to_ascii_lowercase().starts_with("wal"))
                .map(move |c| WalCheck {
                    time: d.started.clone(),
                    source: d.source.clone(),
                    snapshot: d.snapshot.clone(),
                    name: c.name.clone(),
                    result: c.result,
                    detail: c
                        .message
                        .clone()
                        .or_else(|| match (&c.expected, &c.actual) {
                            (Some(e), Some(a)) => Some(format!("expected {e}, found {a}")),
                            _ => None,
                        }),
                })
        })
        .collect();
    let is_postgres = |e: &Event| {
        e.detail("kind")
            .or_else(|| planned(inputs, e.source()).map(|p| p.kind.as_str()))
            == Some("postgres")
    };
    let failures: Vec<Failure> = trail
        .in_month()
        .filter(|e| e.result() != EventResult::Ok)
        .filter(|e| {
            e.action() == WAL_PUSH_ACTION
                || (matches!(e.action(), "backup" | "pg backup")
                    && is_postgres(e)
                    && mentions_wal(&e.cause()))
        })
        .map(Event::failure)
        .collect();
    let segments_archived = trail
        .in_month()
        .filter(|e| e.action() == WAL_PUSH_ACTION && e.result() == EventResult::Ok)
        .count();

    for c in checks.iter().filter(|c| c.result == CheckResult::Fail) {
        out.finding(
            Section::Wal,
            format!(
                "WAL check \"{}\" of the {} recovery test ({}) failed{}",
                c.name,
                c.source,
                when(&c.time),
                c.detail
                    .as_deref()
                    .map(|d| format!(": {d}"))
                    .unwrap_or_else(|| ".".into())
            ),
        );
    }
    for f in &failures {
        out.finding(
            Section::Wal,
            format!(
                "{} of {} failed ({}): {}",
                f.action,
                f.target,
                when(&f.time),
                f.cause
            ),
        );
    }
    let status = if !failures.is_empty() || checks.iter().any(|c| c.result == CheckResult::Fail) {
        WalStatus::Broken
    } else if checks.is_empty() {
        out.note("No recovery test checked WAL continuity this month.".into());
        WalStatus::NotTested
    } else {
        WalStatus::Continuous
    };
    WalContinuity {
        status,
        segments_archived,
        checks,
        failures,
    }
}

fn failures(trail: &Trail, drills: &Drills) -> Vec<Failure> {
    let failed_drills: Vec<&DrillRecord> = drills.in_month().filter(|d| !d.passed).collect();
    // A failed drill writes a drill record and an audit event; the record says more, so the
    // event it explains is not listed twice.
    let explained = |e: &Event| {
        e.action() == "drill"
            && failed_drills.iter().any(|d| {
                d.source == e.source()
                    && text::parse_time(&d.started).is_some_and(|s| s <= e.time)
                    && text::parse_time(&d.finished)
                        .is_some_and(|f| e.time <= f + Duration::minutes(DRILL_EVENT_SLACK_MINUTES))
            })
    };
    let mut all: Vec<(DateTime<Utc>, Failure)> = trail
        .in_month()
        .filter(|e| e.result() != EventResult::Ok && !explained(e))
        .map(|e| (e.time, e.failure()))
        .collect();
    for (started, d) in drills
        .all
        .iter()
        .filter(|(t, d)| drills.month.contains(*t) && !d.passed)
    {
        all.push((
            *started,
            Failure {
                time: d.started.clone(),
                action: "drill".into(),
                target: format!("{} snapshot {}", d.source, text::short_id(&d.snapshot)),
                result: EventResult::Failed,
                cause: d.error.clone().unwrap_or_else(|| drill_cause(d)),
                by: format!("{}@{}", d.stamp.username, d.stamp.hostname),
                origin: None,
            },
        ));
    }
    all.sort_by_key(|(t, _)| *t);
    all.into_iter().map(|(_, f)| f).collect()
}

/// A failed drill's cause when its record states none: its first failed step or check.
fn drill_cause(d: &DrillRecord) -> String {
    if let Some(step) = d.steps.iter().find(|s| !s.ok) {
        return format!(
            "step \"{}\" failed{}",
            step.name,
            step.message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        );
    }
    if let Some(check) = d.checks.iter().find(|c| c.result == CheckResult::Fail) {
        return format!(
            "check \"{}\" failed{}",
            check.name,
            check
                .message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        );
    }
    "no reason recorded".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wal_is_a_word_not_a_syllable() {
        assert!(mentions_wal("WAL segment 000000010000000000000003 missing"));
        assert!(mentions_wal("could not read pg_wal/00000001"));
        assert!(mentions_wal("wal-push refused"));
        assert!(!mentions_wal("wallet service timed out"));
        assert!(!mentions_wal("walk of /data failed"));
    }
}
