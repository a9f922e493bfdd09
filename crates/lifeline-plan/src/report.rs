//! What a job did and how every source stands: typed, serializable results shared by `lifeline run
//! --json`, the daemon's `/api/status`, its status page and the notifications.

use serde::{Deserialize, Serialize};

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    /// The backup was saved but some items could not be read (exit code 3).
    Partial,
    Failure,
}

/// One run of one source's job: the backup, its copies, retention and verification.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobReport {
    pub source: String,
    pub kind: String,
    pub class: String,
    pub tier: String,
    /// `full` or `incremental` for PostgreSQL base backups; the source's kind otherwise.
    pub job: String,
    /// RFC 3339, UTC.
    pub started: String,
    pub finished: String,
    pub duration_seconds: f64,
    pub outcome: Outcome,
    /// The error that failed the job (the backup or a later step), with its causes.
    pub message: Option<String>,
    /// The snapshot the backup saved.
    pub snapshot: Option<String>,
    /// Bytes the snapshot holds, and bytes it added to the repository.
    pub bytes: u64,
    pub bytes_added: u64,
    pub copies: Vec<CopyReport>,
    /// Snapshots retention removed.
    pub forgotten: usize,
    /// Whether verification ran and passed.
    pub verified: Option<bool>,
}

/// One `[[copies]]` target's part of a job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CopyReport {
    pub target: String,
    pub ok: bool,
    pub snapshots: usize,
    pub bytes_added: u64,
    pub message: Option<String>,
}

/// Every source of the plan as the daemon sees it: `/api/status` and the status page.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReport {
    /// RFC 3339, UTC.
    pub generated_at: String,
    pub host: String,
    pub plan: String,
    pub sources: Vec<SourceStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceStatus {
    pub name: String,
    pub kind: String,
    pub class: String,
    pub tier: String,
    /// The cron expressions, with the time zone they are read in.
    pub schedules: Vec<String>,
    pub running: bool,
    pub last_run: Option<JobReport>,
    /// RFC 3339 time of the newest recovery point.
    pub last_success: Option<String>,
    /// Age of the newest recovery point, against the tier's target.
    pub rpo_seconds: Option<f64>,
    pub rpo_target_seconds: Option<f64>,
    pub next_run: Option<String>,
    /// The most recent failures, newest first (at most ten).
    pub recent_failures: Vec<Failure>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Failure {
    pub time: String,
    pub message: String,
}

impl SourceStatus {
    /// Whether the newest recovery point is within the tier's RPO; unknown without a target or a
    /// recovery point.
    pub fn rpo_met(&self) -> Option<bool> {
        Some(self.rpo_seconds? <= self.rpo_target_seconds?)
    }
}
