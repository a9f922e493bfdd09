//! Restore drills: bring one snapshot back into a scratch target, prove the target usable, clean up,
//! and say how long each step took and what each check found. Each kind of data has its own drill
//! (files and command output, PostgreSQL base backups with their WAL, logical dumps); the caller
//! (lifeline-plan) chooses the snapshot, measures RTO and RPO against the tier and stores the record.

pub mod dump;
pub mod files;
pub mod postgres;
mod scratch;
mod sql;

use std::collections::BTreeMap;
use std::fmt::Display;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset};
use lifeline_repo::snapshot::Snapshot;
use lifeline_repo::Id;
use serde::{Deserialize, Serialize};

pub use lifeline_repo::drill::{Check, CheckResult, Step};

/// The name of the step that removes what a drill made; its time is not part of the RTO.
pub const CLEANUP: &str = "cleanup";

/// A query the plan asks of a restored database (`checks = [{ name, sql, expect }]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlCheck {
    pub name: String,
    /// One statement whose first row's first column is the answer.
    pub sql: String,
    /// The answer, as PostgreSQL prints it as text; without it the query only has to run.
    #[serde(default)]
    pub expect: Option<String>,
}

/// What to drill and where.
#[derive(Debug, Clone)]
pub struct DrillRequest<'a> {
    /// The snapshot to restore.
    pub id: Id,
    pub snapshot: &'a Snapshot,
    /// PostgreSQL base backups: recover to this time instead of the end of the archive.
    pub time: Option<DateTime<FixedOffset>>,
    /// A private, empty directory the drill may fill; the caller removes it afterwards.
    pub scratch: &'a Path,
    /// PostgreSQL: queries to ask the restored database.
    pub checks: &'a [SqlCheck],
    /// PostgreSQL base backups: the shell command recovery fetches WAL with
    /// (`lifeline --config PLAN pg wal-fetch %f %p`).
    pub restore_command: Option<&'a str>,
    /// How long a restored server may take to start and recover.
    pub timeout: Duration,
}

/// What a drill did and found.
#[derive(Debug, Clone, Default)]
pub struct Drilled {
    /// In the order they ran; the last is the cleanup.
    pub steps: Vec<Step>,
    pub checks: Vec<Check>,
    /// The point in time the restored target holds; `None` when the restore did not get that far.
    pub recovery_point: Option<DateTime<FixedOffset>>,
    /// The snapshots the restore read (an incremental base backup reads its whole chain).
    pub restored: Vec<Id>,
    /// Versions of the programs involved (`postgres`, `pg_restore`).
    pub versions: BTreeMap<String, String>,
    /// Time spent cleaning up, which the RTO leaves out.
    pub cleanup_seconds: f64,
}

impl Drilled {
    /// Every step succeeded and no check failed: the target was usable.
    pub fn usable(&self) -> bool {
        self.failures().is_empty()
    }

    /// Why the target was not usable: each failed step and failed check, one sentence each.
    pub fn failures(&self) -> Vec<String> {
        let steps = self.steps.iter().filter(|s| !s.ok).map(|s| {
            format!(
                "step {} failed: {}",
                s.name,
                s.message.as_deref().unwrap_or("no reason given")
            )
        });
        let checks = self
            .checks
            .iter()
            .filter(|c| c.result == CheckResult::Fail)
            .map(|c| {
                let mut text = format!("check {} failed", c.name);
                if let Some(m) = &c.message {
                    text.push_str(&format!(": {m}"));
                }
                if let (Some(e), Some(a)) = (&c.expected, &c.actual) {
                    text.push_str(&format!(" (expected {e}, found {a})"));
                }
                text
            });
        steps.chain(checks).collect()
    }
}

/// A check with a result and a message, without expected and actual values.
pub fn check(name: impl Into<String>, result: CheckResult, message: impl Into<String>) -> Check {
    Check {
        name: name.into(),
        result,
        expected: None,
        actual: None,
        message: Some(message.into()),
    }
}

/// Records steps as they run, timed (every kind's drill).
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    pub(crate) drilled: Drilled,
}

impl Recorder {
    /// Run one step; its error becomes the step's message and `None`. `say` describes a success.
    pub(crate) fn step<T, E: Display>(
        &mut self,
        name: &str,
        run: impl FnOnce() -> Result<T, E>,
        say: impl FnOnce(&T) -> String,
    ) -> Option<T> {
        let clock = Instant::now();
        let result = run();
        let seconds = clock.elapsed().as_secs_f64();
        let (ok, message, value) = match result {
            Ok(v) => (true, say(&v), Some(v)),
            Err(e) => (false, e.to_string(), None),
        };
        self.drilled.steps.push(Step {
            name: name.into(),
            seconds,
            ok,
            message: Some(message).filter(|m| !m.is_empty()),
        });
        if name == CLEANUP {
            self.drilled.cleanup_seconds += seconds;
        }
        value
    }

    pub(crate) fn check(&mut self, check: Check) {
        self.drilled.checks.push(check);
    }

    pub(crate) fn finish(self) -> Drilled {
        self.drilled
    }
}

/// Remove a tree the drill wrote, whatever modes the restore gave its directories (a read-only
/// directory from the snapshot would stop a plain recursive removal).
fn remove_tree(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.is_dir() {
        return std::fs::remove_file(path);
    }
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mode = std::fs::symlink_metadata(&dir)?.permissions().mode();
        if mode & 0o700 != 0o700 {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode | 0o700))?;
        }
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    std::fs::remove_dir_all(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_step_or_check_makes_the_target_unusable_and_says_why() {
        let mut rec = Recorder::default();
        let value = rec.step("restore", || Ok::<_, String>(3), |n| format!("{n} files"));
        assert_eq!(value, Some(3));
        rec.check(check("files", CheckResult::Warn, "one differs, expected"));
        assert!(rec.drilled.usable());
        let none = rec.step(
            "start server",
            || Err::<(), _>("port taken"),
            |_| String::new(),
        );
        assert!(none.is_none());
        rec.check(Check {
            name: "rows a.b".into(),
            result: CheckResult::Fail,
            expected: Some("3".into()),
            actual: Some("2".into()),
            message: Some("rows are missing".into()),
        });
        rec.step(CLEANUP, || Ok::<_, String>(()), |_| "removed".into());
        let d = rec.finish();
        assert!(!d.usable());
        assert_eq!(
            d.failures(),
            [
                "step start server failed: port taken",
                "check rows a.b failed: rows are missing (expected 3, found 2)"
            ]
        );
        assert_eq!(d.steps[0].message.as_deref(), Some("3 files"));
        assert!(d.cleanup_seconds >= 0.0 && d.cleanup_seconds <= d.steps[2].seconds);
    }

    #[test]
    fn read_only_directories_are_removed_too() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let tree = dir.path().join("t");
        std::fs::create_dir_all(tree.join("a/b")).expect("mkdir");
        std::fs::write(tree.join("a/b/f"), b"x").expect("write");
        std::fs::set_permissions(tree.join("a"), std::fs::Permissions::from_mode(0o500))
            .expect("chmod");
        remove_tree(&tree).expect("removed");
        assert!(!tree.exists());
        remove_tree(&tree).expect("a missing tree is removed already");
    }
}
