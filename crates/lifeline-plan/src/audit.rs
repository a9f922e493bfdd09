//! Writing the audit trail from the programme's side: every operation's record goes into the
//! repository (the evidence) and, when the plan's `[audit]` section asks, also as one JSON line to a
//! file a SIEM tails and as a row of the platform's `audit_logs` table. The repository record is the
//! one that counts; a delivery that fails is reported back as a warning, never fails the operation.

use std::io::Write;
use std::path::PathBuf;

use lifeline_repo::audit::{self, Access, Entry, Event, EventResult};

use crate::report::{JobReport, Outcome};
use lifeline_repo::{Id, Repository};
use lifeline_sources::postgres::audit_table::{self, AuditRow};
use serde::{Deserialize, Serialize};

/// The `[audit]` section of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuditOptions {
    /// Append every record as one JSON object per line to this file (for a SIEM to tail).
    pub jsonl: Option<PathBuf>,
    /// Also insert every record into the `audit_logs` table of this PostgreSQL database (a libpq URL;
    /// put the password in `~/.pgpass` or `PGPASSFILE`, not here).
    pub postgres: Option<String>,
    /// The table, `audit_logs` by default; `schema.table` to name its schema.
    #[serde(default = "default_table")]
    pub table: String,
}

fn default_table() -> String {
    "audit_logs".into()
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            jsonl: None,
            postgres: None,
            table: default_table(),
        }
    }
}

/// What recording one operation produced.
#[derive(Debug)]
pub struct Recorded {
    /// The record's name in the repository.
    pub id: Id,
    /// Deliveries that failed, one sentence each.
    pub warnings: Vec<String>,
}

/// Append `event` to `repo`'s trail, then deliver it where `options` asks.
pub fn record(
    repo: &Repository,
    event: &Event,
    options: &AuditOptions,
) -> lifeline_repo::Result<Recorded> {
    let (id, entry) = audit::append_entry(repo, event)?;
    let mut warnings = Vec::new();
    if let Some(path) = &options.jsonl {
        if let Err(e) = append_line(path, &id, &entry) {
            warnings.push(format!(
                "audit record {id} was not written to {}: {e}",
                path.display()
            ));
        }
    }
    if let Some(url) = &options.postgres {
        let table = &options.table;
        if let Err(e) = audit_table::insert(url, table, &row(&id, &entry)) {
            warnings.push(format!(
                "audit record {id} was not inserted into {table}: {e}"
            ));
        }
    }
    Ok(Recorded { id, warnings })
}

/// The records of one `lifeline run` job: its backup, each copy, and retention, appended to the
/// primary's trail; then each copy that was reached receives the trail, so the second region holds
/// the evidence of the jobs that fed it. Returns the warnings (deliveries and copies that failed).
pub fn record_job(
    repo: &Repository,
    copies: &[Repository],
    report: &JobReport,
    retention: bool,
    options: &AuditOptions,
) -> Vec<String> {
    let mut warnings = Vec::new();
    for event in job_events(report, retention) {
        match record(repo, &event, options) {
            Ok(recorded) => warnings.extend(recorded.warnings),
            Err(e) => warnings.push(format!(
                "the audit record of {} {} was not written: {e}",
                event.action, report.source
            )),
        }
    }
    for dst in copies {
        if let Err(e) = audit::import(repo, dst) {
            warnings.push(format!(
                "the audit trail was not copied to {}: {e}",
                dst.storage().location()
            ));
        }
    }
    warnings
}

/// The events a job's report stands for (docs/evidence.md lists their details).
fn job_events(report: &JobReport, retention: bool) -> Vec<Event> {
    let common = |action: &str, target: &str| {
        let mut event = Event::new(action, target);
        event.detail("source", &report.source);
        event.detail("kind", &report.kind);
        event.detail("class", &report.class);
        event.detail("tier", &report.tier);
        event.detail("job", &report.job);
        event
    };
    let mut events = Vec::new();
    let mut backup = common("backup", &report.source);
    let saved = report.snapshot.is_some() && report.verified != Some(false);
    match (&report.snapshot, saved) {
        (Some(id), true) => {
            backup.touch(Access::Wrote, "snapshot", id);
            backup.detail("bytes_added", report.bytes_added);
            if let Some(verified) = report.verified {
                backup.detail("verified", verified);
            }
            if report.outcome == Outcome::Partial {
                backup.result = EventResult::Partial;
                backup.error = report.message.clone();
            }
        }
        _ => {
            backup.result = EventResult::Failed;
            backup.error = report.message.clone();
        }
    }
    events.push(backup);
    for copy in &report.copies {
        let mut event = common("copy", &copy.target);
        event.detail("to", &copy.target);
        event.detail("snapshots", copy.snapshots);
        event.detail("bytes_added", copy.bytes_added);
        if !copy.ok {
            event.result = EventResult::Failed;
            event.error = copy.message.clone();
        }
        events.push(event);
    }
    if retention && saved {
        let mut event = common("forget", &report.source);
        event.detail("removed", report.forgotten);
        if let Some(message) = report
            .message
            .as_deref()
            .filter(|m| m.starts_with("retention"))
        {
            event.result = EventResult::Failed;
            event.error = Some(message.into());
        }
        events.push(event);
    }
    events
}

/// The JSON form of a record, as `audit log --json` prints it and the SIEM file holds it.
#[derive(Debug, Serialize)]
pub struct Line<'a> {
    pub id: String,
    #[serde(flatten)]
    pub entry: &'a Entry,
}

fn append_line(path: &std::path::Path, id: &Id, entry: &Entry) -> std::io::Result<()> {
    let line = serde_json::to_string(&Line {
        id: id.to_hex(),
        entry,
    })?;
    // One write of a whole line with O_APPEND: concurrent writers' lines never interleave.
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(format!("{line}\n").as_bytes())?;
    file.sync_data()
}

/// Operations that decrypt backup content into a place someone can read it: PHI may be accessed.
const READS_CONTENT: &[&str] = &[
    "restore",
    "dump",
    "pg restore",
    "pg restore-dump",
    "redis restore",
    "s3 restore",
    "drill",
];

/// A record in the shape of the platform's `audit_logs` rows (backup-and-recovery-guide.md).
fn row(id: &Id, entry: &Entry) -> AuditRow {
    let event = &entry.event;
    let recovery = READS_CONTENT.contains(&event.action.as_str());
    let (event_type, context) = if recovery {
        ("disaster_recovery", "hipaa_164_308_a_7_disaster_recovery")
    } else if event.action.starts_with("key ") {
        ("key_management", "hipaa_164_308_a_7")
    } else {
        ("backup_operation", "hipaa_164_308_a_7")
    };
    let result = match event.result {
        EventResult::Ok => "completed",
        EventResult::Partial => "partial",
        EventResult::Failed => "failed",
    };
    let description = match &event.error {
        Some(error) => format!("lifeline {} {result}: {error}", event.action),
        None => format!("lifeline {} of {} {result}", event.action, event.target),
    };
    AuditRow {
        event_type: event_type.into(),
        user_id: format!("{}@{}", entry.username, entry.hostname),
        action: format!("{}_{result}", event.action.replace([' ', '-'], "_")),
        resource: event.target.clone(),
        description,
        phi_accessed: recovery,
        compliance_context: context.into(),
        metadata: serde_json::json!({
            "lifeline_record": id.to_hex(),
            "time": entry.time,
            "result": event.result,
            "error": event.error,
            "touched": event.touched,
            "details": event.details,
            "origin": entry.origin,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_copy_is_its_own_failed_event_beside_a_good_backup() {
        let mut report = crate::job::started_report(
            &crate::plan::Plan::default(),
            "db",
            crate::plan::JobKind::Backup,
            chrono::Utc::now(),
        );
        report.snapshot = Some("ab".repeat(32));
        report.outcome = Outcome::Failure;
        report.message = Some("copy to s3://dr/x: timeout".into());
        report.copies.push(crate::report::CopyReport {
            target: "s3://dr/x".into(),
            ok: false,
            snapshots: 0,
            bytes_added: 0,
            message: Some("timeout".into()),
        });
        let events = job_events(&report, true);
        let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, ["backup", "copy", "forget"]);
        assert_eq!(events[0].result, EventResult::Ok);
        assert_eq!(events[0].details["source"], "db");
        assert_eq!(events[1].result, EventResult::Failed);
        assert_eq!(events[1].error.as_deref(), Some("timeout"));
        assert_eq!(events[2].result, EventResult::Ok);

        report.snapshot = None;
        report.message = Some("backup of source db: connection refused".into());
        let events = job_events(&report, true);
        assert_eq!(events[0].result, EventResult::Failed);
        assert!(events[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("connection refused")));
        assert!(events.iter().all(|e| e.action != "forget"));
    }

    fn entry(action: &str, result: EventResult, error: Option<&str>) -> Entry {
        let mut event = Event::new(action, "patients-db");
        event.result = result;
        event.error = error.map(String::from);
        Entry {
            time: "2026-12-01T03:00:00.000Z".into(),
            hostname: "db1".into(),
            username: "backup".into(),
            event,
            origin: None,
        }
    }

    #[test]
    fn rows_take_the_platforms_shape_and_compliance_context() {
        let id = Id::of_stored(b"x");
        let backup = row(&id, &entry("backup", EventResult::Ok, None));
        assert_eq!(backup.event_type, "backup_operation");
        assert_eq!(backup.action, "backup_completed");
        assert_eq!(backup.compliance_context, "hipaa_164_308_a_7");
        assert!(!backup.phi_accessed);
        assert_eq!(backup.user_id, "backup@db1");

        let restore = row(
            &id,
            &entry("pg restore", EventResult::Failed, Some("WAL missing")),
        );
        assert_eq!(restore.event_type, "disaster_recovery");
        assert_eq!(restore.action, "pg_restore_failed");
        assert!(restore.phi_accessed);
        assert!(restore.description.contains("WAL missing"));
        assert_eq!(restore.metadata["lifeline_record"], id.to_hex());
    }
}
