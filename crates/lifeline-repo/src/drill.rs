//! Drill records (format.md §12): what a restore drill did, how long each step took, what every check
//! found, and whether the achieved RTO and RPO met the tier's targets. Sealed like every record, so a
//! record that was altered or forged does not open.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::record::{self, Record, Stamp, Stored};
use crate::repository::Repository;

/// One timed step of a drill (`restore`, `start server`, `amcheck`, `cleanup`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub name: String,
    pub seconds: f64,
    pub ok: bool,
    pub message: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckResult {
    Pass,
    /// A difference that is expected in some cases (row counts of a point in time later than the
    /// backup); reported, does not fail the drill.
    Warn,
    Fail,
}

/// One check of the restored target (`rows chatbot_app.users`, `pg_amcheck`, `files`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub result: CheckResult,
    pub expected: Option<String>,
    pub actual: Option<String>,
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillRecord {
    #[serde(flatten)]
    pub stamp: Stamp,
    /// The plan's source and its kind.
    pub source: String,
    pub kind: String,
    /// The recovery-point group this drill was part of (`drill --group`).
    pub group: Option<String>,
    pub tier: Option<String>,
    /// The snapshot restored (hex).
    pub snapshot: String,
    /// RFC 3339 time of the point restored (the snapshot's time, or the PITR target reached).
    pub recovery_point: String,
    pub started: String,
    pub finished: String,
    /// From the start to a verified, usable target.
    pub rto_seconds: f64,
    /// Age of the recovery point restored, at the drill's start.
    pub rpo_seconds: f64,
    pub rto_target_seconds: Option<f64>,
    pub rpo_target_seconds: Option<f64>,
    pub steps: Vec<Step>,
    pub checks: Vec<Check>,
    /// Versions of the tools involved (`lifeline`, `postgres`).
    pub versions: BTreeMap<String, String>,
    /// Every step ran, no check failed, and both targets were met.
    pub passed: bool,
    /// Why it did not pass, in one sentence.
    pub error: Option<String>,
}

impl Record for DrillRecord {
    const PREFIX: &'static str = "drills/";
    const TYPE: &'static str = "drill";
    fn stamp(&self) -> &Stamp {
        &self.stamp
    }
}

/// Seal and store a drill record.
pub fn save(repo: &Repository, drill: &DrillRecord) -> Result<crate::Id> {
    record::save(repo, drill)
}

/// Every readable drill record, oldest first, and the names of those that could not be read.
pub fn load_all(repo: &Repository) -> Result<(Vec<Stored<DrillRecord>>, Vec<String>)> {
    let records = record::load_all::<DrillRecord>(repo)?;
    Ok((
        records.items,
        records.damaged.into_iter().map(|(key, _)| key).collect(),
    ))
}
