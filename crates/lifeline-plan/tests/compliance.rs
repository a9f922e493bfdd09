//! The monthly compliance report: built from constructed audit records and drill records (the
//! report is a pure function of them), rendered as HTML, Markdown and JSON, and the HTML opened in
//! headless Chromium — screenshot, DOM and print-to-PDF — as an auditor would open and print it.
//!
//! `docs/sample-report.md` is the Markdown rendering of `march()`: regenerate it with
//! `LIFELINE_WRITE_SAMPLE=1 cargo test -p lifeline-plan --test compliance`.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use lifeline_plan::compliance::{
    build, render_html, render_markdown, EpochState, Inputs, KeyEpoch, Month, MonthlyReport,
    PlannedSource, Section, TrailCheck, Verdict, WalStatus,
};
use lifeline_repo::audit::{AuditRecord, Entry, Event, EventResult, Origin};
use lifeline_repo::drill::{Check, CheckResult, DrillRecord, Step};
use lifeline_repo::hold::Hold;
use lifeline_repo::record::Stamp;
use lifeline_repo::Id;

// ---------------------------------------------------------------------------------------------
// Building blocks
// ---------------------------------------------------------------------------------------------

fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .with_timezone(&Utc)
}

/// A successful operation at `time`, written by backup@db1.
fn rec(time: &str, action: &str, target: &str, details: &[(&str, &str)]) -> AuditRecord {
    let mut event = Event::new(action, target);
    for (k, v) in details {
        event.detail(k, v);
    }
    AuditRecord {
        id: Id::of_stored(format!("{time} {action} {target}").as_bytes()),
        links: vec![],
        entry: Entry {
            time: time.into(),
            hostname: "db1".into(),
            username: "backup".into(),
            event,
            origin: None,
        },
    }
}

fn ended(mut r: AuditRecord, result: EventResult, cause: &str) -> AuditRecord {
    if result == EventResult::Failed {
        r.entry.event.details.remove("bytes_added");
    }
    r.entry.event.result = result;
    r.entry.event.error = Some(cause.into());
    r
}

/// A `lifeline run` backup of a plan source.
fn backup(time: &str, source: &str, kind: &str) -> AuditRecord {
    let action = if kind == "postgres" {
        "pg backup"
    } else {
        "backup"
    };
    rec(
        time,
        action,
        source,
        &[
            ("source", source),
            ("kind", kind),
            ("bytes_added", "1048576"),
        ],
    )
}

fn copy(time: &str, to: &str) -> AuditRecord {
    rec(time, "copy", to, &[("to", to)])
}

fn check(time: &str, problems: u32) -> AuditRecord {
    rec(
        time,
        "check",
        "s3://healthcare-backups/primary",
        &[("problems", &problems.to_string())],
    )
}

fn forget(time: &str, source: &str, removed: u32) -> AuditRecord {
    rec(
        time,
        "forget",
        source,
        &[("source", source), ("removed", &removed.to_string())],
    )
}

fn pass(name: &str) -> Check {
    Check {
        name: name.into(),
        result: CheckResult::Pass,
        expected: None,
        actual: None,
        message: None,
    }
}

/// A drill of `source` that started at `started`, took `rto` seconds and restored data `rpo`
/// seconds old, judged against `targets` (RTO, RPO) when it had them.
fn drill(
    source: &str,
    kind: &str,
    started: &str,
    (rto, rpo): (f64, f64),
    targets: Option<(f64, f64)>,
) -> DrillRecord {
    let start = at(started);
    let passed = targets.is_none_or(|(t_rto, t_rpo)| rto <= t_rto && rpo <= t_rpo);
    DrillRecord {
        stamp: Stamp {
            kind: "drill".into(),
            version: 1,
            time: started.into(),
            hostname: "drill1".into(),
            username: "lifeline".into(),
        },
        source: source.into(),
        kind: kind.into(),
        group: None,
        tier: None,
        snapshot: Id::of_stored(format!("{source} {started}").as_bytes()).to_hex(),
        recovery_point: (start - chrono::Duration::seconds(rpo as i64)).to_rfc3339(),
        started: started.into(),
        finished: (start + chrono::Duration::seconds(rto as i64)).to_rfc3339(),
        rto_seconds: rto,
        rpo_seconds: rpo,
        rto_target_seconds: targets.map(|t| t.0),
        rpo_target_seconds: targets.map(|t| t.1),
        steps: vec![Step {
            name: "restore".into(),
            seconds: rto,
            ok: true,
            message: None,
        }],
        checks: vec![pass("files")],
        versions: Default::default(),
        passed,
        error: (!passed).then(|| format!("the RTO of {rto}s missed the target")),
    }
}

fn source(name: &str, kind: &str, tier: &str, rto: f64, rpo: f64) -> PlannedSource {
    PlannedSource {
        name: name.into(),
        kind: kind.into(),
        tier: Some(tier.into()),
        rto_target_seconds: Some(rto),
        rpo_target_seconds: Some(rpo),
    }
}

fn verified_trail(records: usize) -> TrailCheck {
    TrailCheck {
        records,
        problems: vec![],
        heads: vec!["9f3c2a7d".repeat(8)],
        authenticated: true,
    }
}

/// Inputs for March 2025 with nothing in them yet: a fresh key, a verified trail, no plan.
fn empty_march() -> Inputs {
    Inputs {
        month: "2025-03".parse().unwrap(),
        generated_at: at("2025-04-01T06:00:00Z"),
        repository: "s3://healthcare-backups/primary".into(),
        records: vec![],
        drills: vec![],
        trail: verified_trail(0),
        key_epochs: vec![KeyEpoch {
            epoch: 1,
            created: "2025-02-15T09:00:00Z".into(),
            destroyed: None,
        }],
        holds: vec![],
        sources: vec![],
    }
}

/// One source, backed up, copied and checked every day of March, drilled once: a clean month.
fn clean_march() -> Inputs {
    let mut inputs = empty_march();
    inputs.sources = vec![source("uploads", "files", "tier2", 3600.0, 900.0)];
    for day in 1..=31 {
        let d = format!("2025-03-{day:02}");
        inputs
            .records
            .push(backup(&format!("{d}T03:00:00.000Z"), "uploads", "files"));
        inputs.records.push(copy(
            &format!("{d}T03:10:00.000Z"),
            "s3://healthcare-backups-dr/primary",
        ));
        inputs
            .records
            .push(forget(&format!("{d}T03:20:00.000Z"), "uploads", 1));
    }
    inputs.records.push(check("2025-03-15T05:00:00.000Z", 0));
    inputs.drills.push(drill(
        "uploads",
        "files",
        "2025-03-21T10:00:00Z",
        (1500.0, 600.0),
        Some((3600.0, 900.0)),
    ));
    inputs.trail = verified_trail(inputs.records.len());
    inputs
}

const PRIMARY_DR: &str = "s3://healthcare-backups-dr/primary";
const FAILED_CAUSE: &str = "pg_basebackup exited with status 1\ncaused by: connection to server \
    at \"pg-primary\" (10.0.3.12), port 5432 failed: FATAL: remaining connection slots are \
    reserved for roles with the SUPERUSER attribute";

/// The seeds' platform in March 2025: four sources backed up and copied daily, one failed
/// PostgreSQL base backup on the 14th, one partial file backup, drills of three sources (one
/// missing its RTO), weekly checks, a key epoch past the 90-day rotation and a legal hold.
/// Records just before and just after the month must not count.
fn march() -> Inputs {
    let mut inputs = empty_march();
    inputs.sources = vec![
        source("phi-postgres", "postgres", "tier1", 900.0, 300.0),
        source("knowledge-mongo", "mongodb", "tier2", 3600.0, 900.0),
        source("uploads", "files", "tier2", 3600.0, 900.0),
        source("sessions", "redis", "tier3", 14400.0, 3600.0),
    ];
    let r = &mut inputs.records;
    // February: a success before the month, and a failure that is not this month's.
    r.push(backup(
        "2025-02-28T02:00:00.000Z",
        "phi-postgres",
        "postgres",
    ));
    r.push(ended(
        backup("2025-02-28T23:59:59.999Z", "sessions", "redis"),
        EventResult::Failed,
        "February's failure: redis not reachable",
    ));
    r.push(copy("2025-02-28T02:30:00.000Z", PRIMARY_DR));
    for day in 1..=31 {
        let d = format!("2025-03-{day:02}");
        let pg = backup(&format!("{d}T02:00:05.000Z"), "phi-postgres", "postgres");
        r.push(if day == 14 {
            ended(pg, EventResult::Failed, FAILED_CAUSE)
        } else {
            pg
        });
        r.push(backup(
            &format!("{d}T02:20:00.000Z"),
            "knowledge-mongo",
            "mongodb",
        ));
        let files = backup(&format!("{d}T03:00:00.000Z"), "uploads", "files");
        r.push(if day == 20 {
            ended(
                files,
                EventResult::Partial,
                "2 files could not be read\ncaused by: /srv/uploads/tmp/intake-4411.pdf: \
                 Permission denied (os error 13)",
            )
        } else {
            files
        });
        r.push(backup(&format!("{d}T03:30:00.000Z"), "sessions", "redis"));
        r.push(copy(&format!("{d}T04:00:00.000Z"), PRIMARY_DR));
        for s in ["phi-postgres", "knowledge-mongo", "uploads", "sessions"] {
            r.push(forget(&format!("{d}T04:30:00.000Z"), s, 1));
        }
        if day % 7 == 3 {
            r.push(check(&format!("{d}T05:00:00.000Z"), 0));
        }
    }
    let mut hold = rec(
        "2025-03-12T16:02:11.000Z",
        "hold add",
        "5e1f0c2a",
        &[("reason", "Case 2025-114, counsel's request")],
    );
    hold.entry.username = "compliance".into();
    hold.entry.hostname = "admin1".into();
    r.push(hold);
    // April: after the month, ignored even though it failed.
    r.push(ended(
        backup("2025-04-01T00:00:00.000Z", "uploads", "files"),
        EventResult::Failed,
        "April's failure: disk full",
    ));
    inputs.trail = verified_trail(inputs.records.len());

    let mut pg = drill(
        "phi-postgres",
        "postgres",
        "2025-03-07T10:00:00Z",
        (372.0, 180.0),
        Some((900.0, 300.0)),
    );
    pg.tier = Some("tier1".into());
    pg.checks = vec![
        pass("rows chatbot_app.users"),
        pass("pg_amcheck"),
        pass("wal continuity 000000010000000A000000F1..000000010000000A00000102"),
    ];
    let mut files = drill(
        "uploads",
        "files",
        "2025-03-21T10:00:00Z",
        (4320.0, 420.0),
        Some((3600.0, 900.0)),
    );
    files.tier = Some("tier2".into());
    files.error = Some("RTO 1h 12m exceeded the tier2 target of 1h".into());
    inputs.drills = vec![
        // February's drill of sessions: its last, before the month.
        drill(
            "sessions",
            "redis",
            "2025-02-10T10:00:00Z",
            (600.0, 1200.0),
            Some((14400.0, 3600.0)),
        ),
        pg,
        drill(
            "knowledge-mongo",
            "mongodb",
            "2025-03-10T10:00:00Z",
            (1900.0, 500.0),
            Some((3600.0, 900.0)),
        ),
        files,
    ];
    inputs.key_epochs = vec![
        KeyEpoch {
            epoch: 1,
            created: "2024-09-01T08:00:00Z".into(),
            destroyed: None,
        },
        KeyEpoch {
            epoch: 2,
            created: "2024-12-02T08:00:00Z".into(),
            destroyed: None,
        },
    ];
    inputs.holds = vec![Hold {
        snapshot: format!("5e1f0c2a{}", "0".repeat(56)),
        reason: "Case 2025-114, counsel's request".into(),
        until: Some("2026-03-12T00:00:00Z".into()),
        since: "2025-03-12T16:02:11.000Z".into(),
        by: "compliance@admin1".into(),
        record: "ab".repeat(32),
    }];
    inputs
}

fn findings(report: &MonthlyReport, section: Section) -> Vec<&str> {
    report
        .summary
        .findings
        .iter()
        .filter(|f| f.section == section)
        .map(|f| f.text.as_str())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------------

#[test]
fn one_failed_backup_lowers_the_success_rate_and_is_named_with_its_cause() {
    let report = build(&march());
    let b = &report.backups;
    // 4 sources × 31 days; February's and April's runs are not March's.
    assert_eq!((b.attempts, b.ok, b.partial, b.failed), (124, 122, 1, 1));
    assert!(b.success_rate_percent.unwrap() < 100.0);
    assert_eq!(b.target_percent, 100.0);

    let pg = b
        .sources
        .iter()
        .find(|s| s.source == "phi-postgres")
        .unwrap();
    assert_eq!((pg.attempts, pg.ok, pg.failed), (31, 30, 1));
    assert!((pg.success_rate_percent.unwrap() - 3000.0 / 31.0).abs() < 1e-9);
    assert_eq!(pg.kind.as_deref(), Some("postgres"));
    assert_eq!(pg.tier.as_deref(), Some("tier1"));
    assert_eq!(pg.bytes_added, 30 * 1048576);
    assert_eq!(pg.last_success.as_deref(), Some("2025-03-31T02:00:05.000Z"));
    let sessions = b.sources.iter().find(|s| s.source == "sessions").unwrap();
    assert_eq!((sessions.attempts, sessions.failed), (31, 0));
    assert_eq!(sessions.success_rate_percent, Some(100.0));

    let failed: Vec<_> = report
        .failures
        .iter()
        .filter(|f| f.action == "pg backup")
        .collect();
    assert_eq!(failed.len(), 1, "{:#?}", report.failures);
    assert_eq!(failed[0].target, "phi-postgres");
    assert_eq!(failed[0].time, "2025-03-14T02:00:05.000Z");
    assert_eq!(failed[0].cause, FAILED_CAUSE);
    assert_eq!(failed[0].result, EventResult::Failed);
    assert_eq!(failed[0].by, "backup@db1");
    let partial = report
        .failures
        .iter()
        .find(|f| f.result == EventResult::Partial)
        .unwrap();
    assert_eq!(partial.target, "uploads");
    assert!(partial.cause.contains("Permission denied"));

    assert_eq!(report.summary.verdict, Verdict::NotMet);
    let backups = findings(&report, Section::Backups);
    assert!(
        backups[0].starts_with("Backup success rate 98.3% (target 100%): 1 failed and 1 partial"),
        "{backups:?}"
    );
    assert!(backups
        .iter()
        .any(|f| f.starts_with("phi-postgres: 30 of 31 backups succeeded (96.7%)")));
    assert!(!backups.iter().any(|f| f.starts_with("sessions")));

    let html = render_html(&report);
    assert!(html.contains("<strong data-field=\"success-rate\">98.3%</strong>"));
    assert!(html.contains("96.7%"));
    assert!(html.contains("remaining connection slots are reserved"));
    let md = render_markdown(&report);
    assert!(md.contains("Success rate **98.3%** of 124 backups; target 100.0%."));
    assert!(md.contains("| phi-postgres | postgres | tier1 | 31 | 30 | 0 | 1 | 96.7% |"));
    assert!(md.contains("pg_basebackup exited with status 1<br>caused by: connection"));
    let json: serde_json::Value = serde_json::to_value(&report).unwrap();
    assert_eq!(json["header"]["month"], "2025-03");
    assert_eq!(json["summary"]["verdict"], "not_met");
    assert_eq!(json["backups"]["failed"], 1);
    assert_eq!(json["failures"][0]["cause"], FAILED_CAUSE);
}

#[test]
fn a_clean_month_meets_every_control() {
    let report = build(&clean_march());
    assert_eq!(report.summary.findings, vec![], "{:#?}", report.summary);
    assert_eq!(report.summary.verdict, Verdict::Met);
    assert_eq!(report.backups.success_rate_percent, Some(100.0));
    assert!(report.failures.is_empty());
    assert_eq!(report.copies.destinations.len(), 1);
    assert_eq!(report.copies.destinations[0].runs, 31);
    assert_eq!(report.retention.sources[0].snapshots_removed, 31);
    assert_eq!(report.wal.status, WalStatus::NotTested);
    assert!(report
        .summary
        .notes
        .iter()
        .any(|n| n.contains("checked WAL continuity")));
    let html = render_html(&report);
    assert!(html.contains("<p class=\"verdict met\" data-field=\"verdict\">All controls met</p>"));
    assert!(html.contains("No operation failed this month."));
}

#[test]
fn drills_are_measured_against_targets_and_untested_sources_are_flagged() {
    let report = build(&march());
    let tests = &report.recovery_tests;
    // February's drill of sessions is not March's.
    assert_eq!(tests.drills.len(), 3);
    assert_eq!((tests.passed, tests.failed), (2, 1));
    let pg = &tests.drills[0];
    assert_eq!(pg.source, "phi-postgres");
    assert_eq!((pg.rto_met, pg.rpo_met), (Some(true), Some(true)));
    let files = &tests.drills[2];
    assert_eq!((files.source.as_str(), files.passed), ("uploads", false));
    assert_eq!(files.rto_met, Some(false));
    assert_eq!(files.rpo_met, Some(true));

    assert_eq!(tests.untested.len(), 1);
    assert_eq!(tests.untested[0].source, "sessions");
    assert_eq!(
        tests.untested[0].last_drill.as_deref(),
        Some("2025-02-10T10:00:00Z")
    );
    let found = findings(&report, Section::RecoveryTests);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0]
        .starts_with("The recovery test of uploads (2025-03-21 10:00 UTC) failed: RTO 1h 12m"));
    assert_eq!(
        found[1],
        "sessions (tier3): no recovery test this month (last: 2025-02-10 10:00 UTC)."
    );
    let failed_drill = report
        .failures
        .iter()
        .find(|f| f.action == "drill")
        .unwrap();
    assert!(failed_drill.target.starts_with("uploads snapshot "));
    assert!(failed_drill.cause.contains("exceeded the tier2 target"));
    assert_eq!(report.integrity.drills_failed, 1);
    assert_eq!(report.integrity.drill_checks, 5);
}

#[test]
fn a_drill_without_targets_is_held_to_the_plan_and_its_event_is_not_listed_twice() {
    let mut inputs = clean_march();
    // Ran without a plan: passed by its own lights, but slower than the plan's tier allows.
    inputs.drills = vec![drill(
        "uploads",
        "files",
        "2025-03-05T10:00:00Z",
        (5400.0, 600.0),
        None,
    )];
    let report = build(&inputs);
    let d = &report.recovery_tests.drills[0];
    assert_eq!(d.rto_target_seconds, Some(3600.0));
    assert_eq!(d.rto_met, Some(false));
    assert!(d.passed);
    assert_eq!(
        findings(&report, Section::RecoveryTests),
        vec![
            "The recovery test of uploads (2025-03-05 10:00 UTC) took 1h 30m against an RTO \
             target of 1h."
        ]
    );

    // A failed drill: its record and its audit event are one failure.
    let mut failed = drill(
        "uploads",
        "files",
        "2025-03-06T10:00:00Z",
        (100.0, 100.0),
        Some((3600.0, 900.0)),
    );
    failed.passed = false;
    failed.error = None;
    failed.checks.push(Check {
        name: "rows".into(),
        result: CheckResult::Fail,
        expected: Some("10".into()),
        actual: Some("9".into()),
        message: Some("one row missing".into()),
    });
    inputs.drills.push(failed);
    inputs.records.push(ended(
        rec(
            "2025-03-06T10:01:41.000Z",
            "drill",
            "uploads",
            &[("source", "uploads"), ("passed", "false")],
        ),
        EventResult::Failed,
        "check rows failed",
    ));
    let report = build(&inputs);
    let drills: Vec<_> = report
        .failures
        .iter()
        .filter(|f| f.action == "drill")
        .collect();
    assert_eq!(drills.len(), 1, "{:#?}", report.failures);
    assert_eq!(drills[0].cause, "check \"rows\" failed: one row missing");
}

#[test]
fn a_key_epoch_past_the_rotation_is_overdue() {
    let report = build(&march());
    let e = &report.encryption;
    assert_eq!(e.algorithm, "AES-256-GCM");
    assert_eq!(e.rotation_days, 90);
    // Measured at the month's end, not when the report was made.
    assert_eq!(e.as_of, "2025-04-01T00:00:00Z");
    assert_eq!(e.current_epoch, Some(2));
    assert_eq!(e.epochs[0].state, EpochState::Superseded);
    assert!(!e.epochs[0].overdue, "only the epoch in use has to rotate");
    assert_eq!(e.epochs[1].state, EpochState::Current);
    assert_eq!(e.epochs[1].age_days, Some(119));
    assert!(e.epochs[1].overdue);
    assert_eq!(
        findings(&report, Section::Encryption),
        vec![
            "Key epoch 2 was 119 days old on 2025-04-01: the 90-day rotation is overdue by 29 \
             days."
        ]
    );

    // Rotated in April: the new epoch is not March's, and March stays overdue.
    let mut inputs = march();
    inputs.generated_at = at("2025-05-02T00:00:00Z");
    inputs.key_epochs.push(KeyEpoch {
        epoch: 3,
        created: "2025-04-15T00:00:00Z".into(),
        destroyed: None,
    });
    let report = build(&inputs);
    assert_eq!(report.encryption.current_epoch, Some(2));
    assert_eq!(report.encryption.epochs[2].state, EpochState::Later);
    assert!(report.encryption.epochs[1].overdue);

    // A young key meets the control.
    let report = build(&clean_march());
    assert!(findings(&report, Section::Encryption).is_empty());
    assert_eq!(report.encryption.epochs[0].age_days, Some(44));
}

#[test]
fn a_destroyed_key_epoch_is_marked_and_never_current() {
    // Epoch 1 destroyed in March: shown as destroyed, no age, not overdue, not current.
    let mut inputs = march();
    inputs.key_epochs[0].destroyed = Some("2025-03-10T12:00:00Z".into());
    let report = build(&inputs);
    let e = &report.encryption;
    assert_eq!(e.epochs[0].state, EpochState::Destroyed);
    assert_eq!(e.epochs[0].age_days, None);
    assert!(!e.epochs[0].overdue);
    assert_eq!(
        e.epochs[0].destroyed.as_deref(),
        Some("2025-03-10T12:00:00Z")
    );
    assert_eq!(e.current_epoch, Some(2));
    let md = render_markdown(&report);
    assert!(md.contains("destroyed on 2025-03-10"), "{md}");

    // Destroyed after the month: March saw it as it was.
    let mut inputs = march();
    inputs.key_epochs[1].destroyed = Some("2025-04-20T00:00:00Z".into());
    let report = build(&inputs);
    assert_eq!(report.encryption.epochs[1].state, EpochState::Current);
    assert_eq!(report.encryption.epochs[1].destroyed, None);

    // Every epoch destroyed by the month's end: none current, and the report says so.
    let mut inputs = march();
    for k in &mut inputs.key_epochs {
        k.destroyed = Some("2025-03-20T00:00:00Z".into());
    }
    let report = build(&inputs);
    assert_eq!(report.encryption.current_epoch, None);
    assert!(findings(&report, Section::Encryption)
        .iter()
        .any(|f| f.contains("No key epoch in use")));
}

#[test]
fn records_outside_the_month_are_ignored() {
    let mut inputs = empty_march();
    inputs.sources = vec![source("uploads", "files", "tier2", 3600.0, 900.0)];
    inputs.records = vec![
        backup("2025-02-27T03:00:00.000Z", "uploads", "files"),
        ended(
            backup("2025-02-28T23:59:59.999Z", "uploads", "files"),
            EventResult::Failed,
            "february",
        ),
        backup("2025-03-01T00:00:00.000Z", "uploads", "files"),
        ended(
            backup("2025-03-31T23:59:59.999+00:00", "uploads", "files"),
            EventResult::Failed,
            "march",
        ),
        // 00:30 on 1 April in Berlin is still 31 March in UTC.
        backup("2025-04-01T00:30:00+02:00", "uploads", "files"),
        backup("2025-04-01T00:00:00.000Z", "uploads", "files"),
        ended(
            copy("2025-04-02T00:00:00.000Z", PRIMARY_DR),
            EventResult::Failed,
            "april",
        ),
        rec("yesterday", "backup", "uploads", &[]),
    ];
    let report = build(&inputs);
    let s = &report.backups.sources[0];
    assert_eq!((s.attempts, s.ok, s.failed), (3, 2, 1));
    assert_eq!(s.last_success.as_deref(), Some("2025-04-01T00:30:00+02:00"));
    let causes: Vec<&str> = report.failures.iter().map(|f| f.cause.as_str()).collect();
    assert_eq!(causes, ["march"]);
    // April's copy is unknown to March: no destination was ever seen by the month's end.
    assert!(report.copies.destinations.is_empty());
    assert_eq!(report.integrity.trail.records_in_month, 3);
    assert_eq!(
        findings(&report, Section::Integrity)[0],
        "Audit records whose time cannot be read: 1; they are left out of every section."
    );
}

#[test]
fn a_month_with_nothing_recorded_is_not_met_and_says_why() {
    let mut inputs = empty_march();
    inputs.key_epochs.clear();
    inputs.trail.authenticated = false;
    inputs.trail.problems = vec!["record 3f2a… links to a record that is missing".into()];
    let report = build(&inputs);
    assert_eq!(report.summary.verdict, Verdict::NotMet);
    let all: Vec<&str> = report
        .summary
        .findings
        .iter()
        .map(|f| f.text.as_str())
        .collect();
    assert_eq!(
        all,
        [
            "No backup was recorded this month.",
            "No recovery test (drill) ran this month.",
            "No repository check ran this month.",
            "The audit trail's authentication was not checked (it was read without the \
             repository's key).",
            "The audit trail did not verify: record 3f2a… links to a record that is missing",
            "The key epochs could not be read: the age of the encryption key is unknown.",
            "No copy to a second region was recorded this month.",
        ]
    );
    assert!(report
        .summary
        .notes
        .iter()
        .any(|n| n.starts_with("No plan was given")));
    assert!(!report.integrity.trail.verified);
    // Every renderer copes with empty sections.
    let html = render_html(&report);
    assert!(html.contains("No backup was recorded this month."));
    assert!(render_markdown(&report).contains("The key epochs could not be read."));
}

#[test]
fn imported_records_count_once_and_say_where_they_came_from() {
    let mut inputs = clean_march();
    let origin = Origin {
        repository: "s3://healthcare-backups/primary".into(),
        record: Id([7; 32]),
    };
    let mut imported = ended(
        backup("2025-03-09T12:00:00.000Z", "uploads", "files"),
        EventResult::Failed,
        "imported failure",
    );
    imported.entry.origin = Some(origin);
    // The same record imported by two copy runs.
    inputs.records.push(imported.clone());
    inputs.records.push(imported);
    let report = build(&inputs);
    assert_eq!(report.backups.attempts, 32);
    assert_eq!(report.backups.failed, 1);
    assert_eq!(report.integrity.trail.imported_in_month, 1);
    let failure = report
        .failures
        .iter()
        .find(|f| f.cause == "imported failure")
        .unwrap();
    assert_eq!(
        failure.origin.as_deref(),
        Some("s3://healthcare-backups/primary")
    );
    assert!(report.summary.notes.iter().any(|n| n
        == "1 record of the month came from the trail of s3://healthcare-backups/primary \
            (imported by copy); they count like the repository's own."));
    assert!(
        render_html(&report).contains("backup@db1 (imported from s3://healthcare-backups/primary)")
    );
}

#[test]
fn wal_continuity_comes_from_drill_checks_and_wal_failures() {
    let report = build(&march());
    assert_eq!(report.wal.status, WalStatus::Continuous);
    assert_eq!(report.wal.checks.len(), 1);
    assert!(report.wal.checks[0].name.starts_with("wal continuity"));
    assert!(
        report.wal.failures.is_empty(),
        "the failed backup's cause is not about WAL"
    );

    let mut inputs = march();
    inputs.records.push(ended(
        backup("2025-03-18T02:00:00.000Z", "phi-postgres", "postgres"),
        EventResult::Failed,
        "requested WAL segment 0000000100000000000000A3 has already been removed",
    ));
    inputs.records.push(ended(
        backup("2025-03-18T03:00:00.000Z", "uploads", "files"),
        EventResult::Failed,
        "wal directory mentioned by a files source is not a WAL failure of PostgreSQL",
    ));
    inputs.records.push(ended(
        backup("2025-03-18T04:00:00.000Z", "phi-postgres", "postgres"),
        EventResult::Failed,
        "wallet service timed out",
    ));
    inputs.records.push(ended(
        rec(
            "2025-03-19T01:00:00.000Z",
            "pg wal-push",
            "pg_wal/0000000100000000000000A4",
            &[],
        ),
        EventResult::Failed,
        "repository not reachable",
    ));
    inputs.records.push(rec(
        "2025-03-19T01:05:00.000Z",
        "pg wal-push",
        "pg_wal/0000000100000000000000A4",
        &[],
    ));
    inputs.drills[1].checks[2].result = CheckResult::Fail;
    inputs.drills[1].checks[2].message = Some("segment 000000010000000A000000F7 missing".into());
    let report = build(&inputs);
    assert_eq!(report.wal.status, WalStatus::Broken);
    assert_eq!(report.wal.segments_archived, 1);
    let causes: Vec<&str> = report
        .wal
        .failures
        .iter()
        .map(|f| f.cause.as_str())
        .collect();
    assert_eq!(
        causes,
        [
            "requested WAL segment 0000000100000000000000A3 has already been removed",
            "repository not reachable"
        ]
    );
    let wal = findings(&report, Section::Wal);
    assert_eq!(wal.len(), 3, "{wal:?}");
    assert!(wal[0].contains("failed: segment 000000010000000A000000F7 missing"));
}

#[test]
fn copies_name_each_destination_and_a_silent_one_is_a_finding() {
    let mut inputs = clean_march();
    // A second destination copied to in February, never in March.
    inputs.records.insert(
        0,
        copy(
            "2025-02-20T04:00:00.000Z",
            "s3://healthcare-backups-eu/primary",
        ),
    );
    let last = inputs.records.len() - 1;
    inputs.records[last - 2] = ended(
        copy("2025-03-31T03:10:00.000Z", PRIMARY_DR),
        EventResult::Failed,
        "503 Service Unavailable",
    );
    let report = build(&inputs);
    let d = &report.copies.destinations;
    assert_eq!(d.len(), 2);
    assert_eq!(d[0].destination, "s3://healthcare-backups-dr/primary");
    assert_eq!((d[0].runs, d[0].ok, d[0].failed), (31, 30, 1));
    assert_eq!(
        d[0].last_success.as_deref(),
        Some("2025-03-30T03:10:00.000Z")
    );
    assert_eq!(d[1].runs, 0);
    assert_eq!(
        findings(&report, Section::Copies),
        vec![
            "Copy to s3://healthcare-backups-dr/primary: 1 of 31 runs did not complete.",
            "No copy to s3://healthcare-backups-eu/primary ran this month (last success: \
             2025-02-20 04:00 UTC).",
        ]
    );
}

#[test]
fn checks_with_problems_and_retention_failures_are_findings() {
    let mut inputs = clean_march();
    inputs.records.push(check("2025-03-22T05:00:00.000Z", 2));
    inputs.records.push(ended(
        rec(
            "2025-03-23T05:00:00.000Z",
            "prune",
            "s3://healthcare-backups/primary",
            &[],
        ),
        EventResult::Failed,
        "lost the race with a backup",
    ));
    inputs.records.push(ended(
        forget("2025-03-24T05:00:00.000Z", "uploads", 0),
        EventResult::Failed,
        "snapshot list unreadable",
    ));
    let report = build(&inputs);
    assert_eq!(report.integrity.checks.len(), 2);
    assert_eq!(report.integrity.checks_with_problems, 1);
    assert_eq!(
        findings(&report, Section::Integrity),
        vec!["The repository check of 2025-03-22 05:00 UTC found 2 problems."]
    );
    assert_eq!(
        findings(&report, Section::Retention),
        vec![
            "Retention (forget) of uploads did not complete in 1 of 32 runs.",
            "Prune did not complete in 1 of 1 runs."
        ]
    );
}

/// A backup host's write-only credential trying to read: refused before anything was read, so
/// no control counts it (a refused `check` is no check with problems), and a note names it.
#[test]
fn operations_refused_by_role_are_left_out_of_the_figures_and_named() {
    let mut inputs = clean_march();
    for (time, action) in [
        ("2025-03-22T05:00:00.000Z", "check"),
        ("2025-03-22T05:01:00.000Z", "restore"),
        ("2025-03-22T05:02:00.000Z", "restore"),
    ] {
        inputs.records.push(ended(
            rec(time, action, "uploads", &[("refused", "backup")]),
            EventResult::Failed,
            "this credential's role is `backup`: restore needs a credential of role `admin` or `restore`",
        ));
    }
    inputs.trail = verified_trail(inputs.records.len());
    let report = build(&inputs);
    assert_eq!(report.summary.findings, vec![], "{:#?}", report.summary);
    assert_eq!(report.summary.verdict, Verdict::Met);
    assert_eq!(report.integrity.checks.len(), 1);
    assert!(report.failures.is_empty(), "{:#?}", report.failures);
    let note = report
        .summary
        .notes
        .iter()
        .find(|n| n.contains("refused"))
        .unwrap_or_else(|| panic!("no note names the refusals: {:#?}", report.summary.notes));
    assert!(note.starts_with("3 operations refused"), "{note}");
    assert!(
        note.contains("check by backup@db1 as `backup` (1)")
            && note.contains("restore by backup@db1 as `backup` (2)"),
        "{note}"
    );
}

#[test]
fn every_string_from_the_trail_is_escaped() {
    let mut inputs = clean_march();
    inputs.sources[0].name = "up<b>loads|x".into();
    inputs.records.push(ended(
        backup("2025-03-09T12:00:00.000Z", "up<b>loads|x", "files"),
        EventResult::Failed,
        "<script>alert(1)</script> | *bold* & `code`",
    ));
    let report = build(&inputs);
    let html = render_html(&report);
    assert!(!html.contains("<script>"));
    assert!(!html.contains("<b>"));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; | *bold* &amp; `code`"));
    assert!(html.contains("data-source=\"up&lt;b&gt;loads|x\""));
    let md = render_markdown(&report);
    assert!(md.contains("&lt;script&gt;alert(1)&lt;/script&gt; \\| \\*bold\\* &amp; \\`code\\`"));
    assert!(md.contains("| up&lt;b&gt;loads\\|x | files |"));
    assert!(!md.contains("<script>"));
}

#[test]
fn month_text_is_checked() {
    let err = "2025-3".parse::<Month>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid month \"2025-3\": write it as YYYY-MM, for example 2025-03"
    );
}

// ---------------------------------------------------------------------------------------------
// The committed sample
// ---------------------------------------------------------------------------------------------

/// The report of `march()` as the repository shows it. Its version is pinned so a release does
/// not change the sample.
fn sample() -> MonthlyReport {
    let mut report = build(&march());
    report.header.lifeline_version = "0.1.0".into();
    report
}

fn sample_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/sample-report.md")
}

#[test]
fn the_sample_report_in_docs_is_what_lifeline_renders() {
    let rendered = render_markdown(&sample());
    let path = sample_path();
    if std::env::var_os("LIFELINE_WRITE_SAMPLE").is_some() {
        std::fs::write(&path, &rendered).unwrap();
    }
    let committed =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        committed == rendered,
        "docs/sample-report.md is out of date: regenerate it with LIFELINE_WRITE_SAMPLE=1 cargo \
         test -p lifeline-plan --test compliance"
    );
}

// ---------------------------------------------------------------------------------------------
// In Chromium: what an auditor opens and prints
// ---------------------------------------------------------------------------------------------

/// Chromium, from `LIFELINE_CHROMIUM`; missing, the test fails (it never skips).
fn chromium() -> PathBuf {
    let how =
        "install it with `scripts/tools.sh install`, then `eval \"$(scripts/tools.sh env)\"` \
               (scripts/test.sh does both)";
    let Some(path) = std::env::var_os("LIFELINE_CHROMIUM").filter(|v| !v.is_empty()) else {
        panic!("LIFELINE_CHROMIUM is not set: the compliance report test needs Chromium; {how}")
    };
    let path = PathBuf::from(path);
    assert!(
        path.is_file(),
        "LIFELINE_CHROMIUM={} does not exist: the compliance report test needs Chromium; {how}",
        path.display()
    );
    path
}

/// Run headless Chromium on `url` with `action` (`--screenshot=…`, `--dump-dom`, …); returns
/// what it wrote to stdout. Output goes to files, not pipes: Chromium's helper processes may
/// outlive it and hold a pipe open.
fn headless(chromium: &Path, dir: &Path, name: &str, action: &[String], url: &str) -> String {
    let stdout = dir.join(format!("{name}.stdout"));
    let stderr = dir.join(format!("{name}.stderr"));
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
        ])
        .args(["--disable-dev-shm-usage", "--hide-scrollbars"])
        .arg(format!(
            "--user-data-dir={}",
            dir.join(format!("{name}.profile")).display()
        ))
        .args(action)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromium.display()));
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium {name} did not finish in 120s\n{}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        status.success(),
        "chromium {name} failed: {status}\n{}",
        std::fs::read_to_string(&stderr).unwrap_or_default()
    );
    std::fs::read_to_string(&stdout).unwrap()
}

/// Text content of `dom`: tags dropped, the entities the report writes decoded.
fn visible_text(dom: &str) -> String {
    let mut text = String::with_capacity(dom.len());
    let mut in_tag = false;
    for c in dom.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                text.push(' ');
            }
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    let text = text
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&amp;", "&");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Pages of a PDF as Chromium writes it: the page tree's `/Count`.
fn pdf_pages(pdf: &[u8]) -> usize {
    let text = String::from_utf8_lossy(pdf);
    let pages_at = text
        .find("/Type /Pages")
        .unwrap_or_else(|| panic!("no page tree in the PDF"));
    let tree_start = text[..pages_at].rfind("<<").unwrap();
    let tree_end = pages_at + text[pages_at..].find(">>").unwrap();
    let tree = &text[tree_start..tree_end];
    let count = tree
        .split("/Count")
        .nth(1)
        .unwrap_or_else(|| panic!("no /Count in the page tree: {tree}"));
    count
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unreadable /Count in the page tree: {tree}"))
}

#[test]
fn the_html_report_renders_in_chromium_and_prints_to_pdf() {
    let chromium = chromium();
    let temp = tempfile::tempdir().unwrap();
    // LIFELINE_REPORT_ARTIFACTS=DIR keeps the page, screenshot and PDF for a person to look at.
    let kept = std::env::var_os("LIFELINE_REPORT_ARTIFACTS").map(PathBuf::from);
    if let Some(kept) = &kept {
        std::fs::create_dir_all(kept).unwrap();
    }
    let dir = kept.as_deref().unwrap_or(temp.path());
    let page = dir.join("report-2025-03.html");
    std::fs::write(&page, render_html(&sample())).unwrap();
    let url = format!("file://{}", page.display());

    let screenshot = dir.join("report.png");
    headless(
        &chromium,
        dir,
        "screenshot",
        &[
            "--window-size=1240,1754".into(),
            format!("--screenshot={}", screenshot.display()),
        ],
        &url,
    );
    let png = std::fs::read(&screenshot).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let (width, height) = (
        u32::from_be_bytes(png[16..20].try_into().unwrap()),
        u32::from_be_bytes(png[20..24].try_into().unwrap()),
    );
    assert_eq!((width, height), (1240, 1754));
    // A blank page of this size compresses to a few kilobytes; text and tables do not.
    assert!(
        png.len() > 60_000,
        "the screenshot looks blank: {} bytes",
        png.len()
    );

    let dom = headless(&chromium, dir, "dom", &["--dump-dom".into()], &url);
    assert!(dom.contains("</html>"), "no DOM dumped:\n{dom}");
    assert!(!dom.contains("<script"), "the report carries no scripts");
    let text = visible_text(&dom);
    for expected in [
        "Backup compliance report · March 2025",
        "Action needed",
        "Success rate 98.3% of 124 backups; target 100.0%.",
        "phi-postgres postgres tier1 31 30 0 1 96.7%",
        "2025-03-14 02:00 UTC pg backup phi-postgres failed pg_basebackup exited with status 1 \
         caused by: connection to server at \"pg-primary\" (10.0.3.12), port 5432 failed",
        "sessions redis tier3 4h 2025-02-10 10:00 UTC",
        "2 2024-12-02 08:00 UTC 119 days (overdue) current",
        "Case 2025-114, counsel's request",
    ] {
        assert!(
            text.contains(expected),
            "the page lacks {expected:?}:\n{text}"
        );
    }

    let pdf_path = dir.join("report.pdf");
    headless(
        &chromium,
        dir,
        "pdf",
        &[
            "--no-pdf-header-footer".into(),
            format!("--print-to-pdf={}", pdf_path.display()),
        ],
        &url,
    );
    let pdf = std::fs::read(&pdf_path).unwrap();
    assert!(pdf.starts_with(b"%PDF-"), "not a PDF");
    let pages = pdf_pages(&pdf);
    assert!(pages >= 1, "{pages} pages");
    // A4 in points, from the page's own @page rule.
    assert!(
        String::from_utf8_lossy(&pdf).contains("/MediaBox [0 0 594.95996 841.91998]"),
        "the PDF's pages are not A4"
    );
}
