//! What a monthly report is built from and what it says: typed sections that the HTML and
//! Markdown renderers print and that serialize as the report's JSON form.

use chrono::{DateTime, Utc};
use serde::Serialize;

use lifeline_repo::audit::{AuditRecord, EventResult};
use lifeline_repo::drill::{CheckResult, DrillRecord};
use lifeline_repo::hold::Hold;

use super::month::Month;

/// Everything a report is computed from. All of it can be read from a copy of the repository in
/// another region: the audit trail (with the records a copy imported), drill records, the key
/// epochs and holds. The plan is optional and only names what should have happened.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub month: Month,
    pub generated_at: DateTime<Utc>,
    /// The repository's location, for the header.
    pub repository: String,
    /// The whole audit trail, oldest first.
    pub records: Vec<AuditRecord>,
    /// Every drill record.
    pub drills: Vec<DrillRecord>,
    /// How the trail verified when it was read.
    pub trail: TrailCheck,
    pub key_epochs: Vec<KeyEpoch>,
    /// Holds in force now.
    pub holds: Vec<Hold>,
    /// The plan's sources; empty without a plan.
    pub sources: Vec<PlannedSource>,
}

/// The result of verifying the audit trail's hash links and authentication.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TrailCheck {
    /// Records read.
    pub records: usize,
    /// What did not verify, one sentence each.
    pub problems: Vec<String>,
    /// The newest records, which no other record links to.
    pub heads: Vec<String>,
    /// Whether the records' authentication was checked with the repository's key.
    pub authenticated: bool,
}

/// One key epoch of the keyring (format.md §3.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyEpoch {
    pub epoch: u32,
    /// RFC 3339.
    pub created: String,
    /// RFC 3339: when `key destroy-epoch` destroyed it (format.md §3.2).
    pub destroyed: Option<String>,
}

/// A source of the plan and the recovery objectives of its tier.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedSource {
    pub name: String,
    pub kind: String,
    pub tier: Option<String>,
    pub rto_target_seconds: Option<f64>,
    pub rpo_target_seconds: Option<f64>,
}

/// The monthly compliance report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MonthlyReport {
    pub header: Header,
    pub summary: Summary,
    pub backups: Backups,
    pub recovery_tests: RecoveryTests,
    pub integrity: Integrity,
    pub encryption: Encryption,
    pub retention: Retention,
    pub copies: Copies,
    pub wal: WalContinuity,
    /// Every failed or partial operation and failed drill of the month, oldest first.
    pub failures: Vec<Failure>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Header {
    pub month: Month,
    /// The month's bounds, RFC 3339 UTC; `period_end` is the first instant after it.
    pub period_start: String,
    pub period_end: String,
    pub repository: String,
    pub generated_at: String,
    pub lifeline_version: String,
}

/// The report's sections, for findings to say where they come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Section {
    Backups,
    RecoveryTests,
    Integrity,
    Encryption,
    Retention,
    Copies,
    Wal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every control has evidence for the month and nothing failed.
    Met,
    /// At least one finding.
    NotMet,
}

/// Something that failed, or a control with no evidence for the month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub section: Section,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub verdict: Verdict,
    /// Why the verdict is `not_met`, in the order of the sections.
    pub findings: Vec<Finding>,
    /// Facts that help read the report and change no verdict.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Backups {
    /// The target success rate: every backup succeeds.
    pub target_percent: f64,
    pub attempts: usize,
    pub ok: usize,
    pub partial: usize,
    pub failed: usize,
    /// `ok / attempts`; partial runs count against it. None without attempts.
    pub success_rate_percent: Option<f64>,
    /// By source name.
    pub sources: Vec<SourceBackups>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceBackups {
    pub source: String,
    pub kind: Option<String>,
    pub tier: Option<String>,
    /// Whether the plan names it.
    pub planned: bool,
    pub attempts: usize,
    pub ok: usize,
    pub partial: usize,
    pub failed: usize,
    pub success_rate_percent: Option<f64>,
    /// Bytes the month's backups added to the repository.
    pub bytes_added: u64,
    /// The newest successful backup up to the month's end, this month or earlier.
    pub last_success: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecoveryTests {
    /// The drills started in the month, oldest first.
    pub drills: Vec<DrillResult>,
    pub passed: usize,
    pub failed: usize,
    /// Sources of the plan with no drill in the month.
    pub untested: Vec<UntestedSource>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DrillResult {
    pub started: String,
    pub finished: String,
    pub source: String,
    pub kind: String,
    pub tier: Option<String>,
    pub group: Option<String>,
    pub snapshot: String,
    pub recovery_point: String,
    pub rto_seconds: f64,
    /// The drill's own target, or the plan's when the drill ran without one.
    pub rto_target_seconds: Option<f64>,
    pub rto_met: Option<bool>,
    pub rpo_seconds: f64,
    pub rpo_target_seconds: Option<f64>,
    pub rpo_met: Option<bool>,
    pub checks: usize,
    pub checks_warned: usize,
    pub checks_failed: usize,
    pub passed: bool,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UntestedSource {
    pub source: String,
    pub kind: String,
    pub tier: Option<String>,
    pub rto_target_seconds: Option<f64>,
    /// The newest drill before the month.
    pub last_drill: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Integrity {
    /// Repository checks (`check`) run in the month.
    pub checks: Vec<CheckRun>,
    pub checks_with_problems: usize,
    pub drills_passed: usize,
    pub drills_failed: usize,
    /// Checks of restored data the month's drills made, and how many failed.
    pub drill_checks: usize,
    pub drill_checks_failed: usize,
    pub trail: TrailVerification,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckRun {
    pub time: String,
    pub target: String,
    pub result: EventResult,
    /// The problems it reported, when it said.
    pub problems: Option<u64>,
    pub cause: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrailVerification {
    /// Records in the whole trail, and those of the month (imported ones among them).
    pub records: usize,
    pub records_in_month: usize,
    pub imported_in_month: usize,
    pub authenticated: bool,
    pub problems: Vec<String>,
    pub heads: Vec<String>,
    /// Authenticated and without problems.
    pub verified: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Encryption {
    pub algorithm: String,
    pub rotation_days: i64,
    /// Ages are measured at this instant: the month's end, or when the report was made if that
    /// is earlier.
    pub as_of: String,
    /// The epoch new data was sealed under at `as_of`.
    pub current_epoch: Option<u32>,
    pub epochs: Vec<EpochStatus>,
    /// Key operations (`key …`) of the month.
    pub key_changes: Vec<Activity>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EpochState {
    /// New data is sealed under it.
    Current,
    /// A newer epoch replaced it; it stays readable for what it sealed.
    Superseded,
    /// Created after the month.
    Later,
    /// Its creation time cannot be read.
    Unknown,
    /// Destroyed by `key destroy-epoch` by then: what it sealed (but records) is shredded.
    Destroyed,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EpochStatus {
    pub epoch: u32,
    pub created: String,
    /// When it was destroyed, if by `as_of`.
    pub destroyed: Option<String>,
    pub age_days: Option<i64>,
    pub state: EpochState,
    /// The current epoch is older than the rotation period.
    pub overdue: bool,
}

/// One operation of the trail, as a row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Activity {
    pub time: String,
    pub action: String,
    pub target: String,
    pub result: EventResult,
    /// `user@host`.
    pub by: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Retention {
    /// `forget` runs by source.
    pub sources: Vec<RetentionRuns>,
    pub prune_runs: usize,
    pub prune_failed: usize,
    /// Holds in force when the report was made.
    pub holds: Vec<Hold>,
    /// Holds placed or lifted in the month.
    pub hold_changes: Vec<Activity>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetentionRuns {
    pub source: String,
    pub runs: usize,
    pub failed: usize,
    pub snapshots_removed: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Copies {
    /// By destination; those seen before the month but not in it are listed with no runs.
    pub destinations: Vec<CopyDestination>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CopyDestination {
    pub destination: String,
    pub runs: usize,
    pub ok: usize,
    pub partial: usize,
    pub failed: usize,
    /// The newest successful copy up to the month's end.
    pub last_success: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WalStatus {
    /// Drills checked WAL continuity and nothing reported a gap.
    Continuous,
    /// A drill's WAL check failed, or WAL archiving failed.
    Broken,
    /// Nothing in the month tested it.
    NotTested,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WalContinuity {
    pub status: WalStatus,
    /// Successful `pg wal-push` operations of the month, when the trail records them.
    pub segments_archived: usize,
    pub checks: Vec<WalCheck>,
    /// Failed WAL archiving and failed PostgreSQL backups that name WAL as the cause.
    pub failures: Vec<Failure>,
}

/// A drill's check of WAL (its name starts with `wal`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WalCheck {
    pub time: String,
    pub source: String,
    pub snapshot: String,
    pub name: String,
    pub result: CheckResult,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failure {
    pub time: String,
    pub action: String,
    pub target: String,
    pub result: EventResult,
    pub cause: String,
    /// `user@host`.
    pub by: String,
    /// The repository whose trail recorded it, for records a copy imported.
    pub origin: Option<String>,
}
