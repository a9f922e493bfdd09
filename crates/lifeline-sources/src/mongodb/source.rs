//! The source contract for MongoDB: capture with the driver; the drill restores the archive file
//! and checks it as files are checked, then reads the stored archive back and checks every
//! collection's CRC-64 and counts against the records (a server to restore into is `lifeline mongo
//! restore --uri`).

use lifeline_repo::drill::{Check, CheckResult};
use lifeline_repo::{Repository, Writer};

use super::capture::{capture, CaptureRequest};
use crate::drill::{self, DrillRequest, Drilled};
use crate::source::{now, Captured, Error, Source};
use crate::Progress;

/// A MongoDB deployment, reached by its connection string.
pub struct MongoSource {
    pub uri: String,
    pub password_file: Option<std::path::PathBuf>,
}

impl Source for MongoSource {
    fn kind(&self) -> &'static str {
        super::KIND
    }

    fn capture(
        &self,
        _repo: &Repository,
        writer: &Writer<'_>,
        progress: &dyn Progress,
    ) -> Result<Captured, Error> {
        let started = now();
        let request = CaptureRequest {
            uri: &self.uri,
            password_file: self.password_file.as_deref(),
        };
        let mut snapshot = capture(writer, &request, progress)?;
        // Collections are read one after another from here on: the data is at least this new.
        snapshot.time = started;
        Ok(Captured {
            snapshot,
            excluded: 0,
        })
    }

    fn drill(
        &self,
        repo: &Repository,
        request: &DrillRequest<'_>,
        progress: &dyn Progress,
    ) -> Result<Drilled, Error> {
        let mut drilled = drill::files::drill(repo, request, progress)?;
        drilled
            .checks
            .push(archive_check(repo, request.snapshot, progress));
        Ok(drilled)
    }
}

/// One check: the stored archive is whole and holds what the capture recorded.
fn archive_check(
    repo: &Repository,
    snapshot: &lifeline_repo::snapshot::Snapshot,
    progress: &dyn Progress,
) -> Check {
    let checked = repo
        .reader()
        .map_err(super::Error::from)
        .and_then(|reader| super::restore::verify_stored(&reader, snapshot, progress));
    let (result, message) = match checked {
        Ok(checks) => {
            let differing: Vec<String> = checks
                .iter()
                .filter(|c| !c.differences.is_empty())
                .map(|c| format!("{}: {}", c.collection, c.differences.join(", ")))
                .collect();
            if differing.is_empty() {
                (
                    CheckResult::Pass,
                    format!(
                        "{} collection(s): CRC-64 intact, counts and indexes as recorded",
                        checks.len()
                    ),
                )
            } else {
                (CheckResult::Fail, differing.join("; "))
            }
        }
        Err(e) => (CheckResult::Fail, e.to_string()),
    };
    Check {
        name: "archive".into(),
        result,
        expected: None,
        actual: None,
        message: Some(message),
    }
}
