//! The source contract for MongoDB: capture with the driver; the drill restores the archive file
//! and checks it as files are checked (a server to restore into is `lifeline mongo restore --uri`).

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
        Ok(drill::files::drill(repo, request, progress)?)
    }
}
