//! The source contract for a bucket: capture incrementally against the newest snapshot of the same
//! bucket URL, drill by restoring into a directory.

use lifeline_repo::storage::S3Settings;
use lifeline_repo::{Repository, Writer};

use super::{capture, Bucket, CaptureRequest, KIND};
use crate::drill::{self, DrillRequest, Drilled};
use crate::source::{Captured, Error, Source};
use crate::Progress;

/// The objects below `s3://BUCKET/PREFIX`.
pub struct S3Source {
    pub url: String,
    /// Endpoint, region and credentials; the `AWS_*` environment fills what is not set.
    pub settings: S3Settings,
}

impl Source for S3Source {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn capture(
        &self,
        repo: &Repository,
        writer: &Writer<'_>,
        progress: &dyn Progress,
    ) -> Result<Captured, Error> {
        // The recovery point is when listing began, not when the last object was read.
        let started = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let bucket = Bucket::open(&self.url, &self.settings)?;
        // Any host's: a bucket is the same bucket wherever lifeline runs. A damaged snapshot never
        // blocks a backup: the parent is the newest readable one. A write-only credential cannot
        // open snapshots: it reads every object again, deduplicated against the index.
        let parent = if repo.can_read_backups() {
            repo.load_snapshots()?
                .items
                .into_iter()
                .rev()
                .find(|(_, s)| s.kind == KIND && s.paths.iter().eq([bucket.url()]))
        } else {
            None
        };
        let request = CaptureRequest {
            bucket: &bucket,
            parent: parent.as_ref().map(|(_, s)| s.tree),
        };
        let mut snapshot = capture(writer, &request, progress)?;
        snapshot.parent = parent.map(|(id, _)| id.to_hex());
        snapshot.time = started;
        Ok(Captured {
            snapshot,
            excluded: 0,
        })
    }

    /// The objects and the manifest are files of the snapshot's tree: restored into the scratch
    /// directory and every one read back against the snapshot, as files are.
    fn drill(
        &self,
        repo: &Repository,
        request: &DrillRequest<'_>,
        progress: &dyn Progress,
    ) -> Result<Drilled, Error> {
        Ok(drill::files::drill(repo, request, progress)?)
    }
}
