//! The contract every kind of source meets, so `lifeline run`, the daemon and restore drills call
//! one interface: capture into an unsaved snapshot, verify what a snapshot holds, and drill a
//! restore of it. Each kind's module does the work; this names it.

use std::collections::HashSet;
use std::path::PathBuf;

use lifeline_repo::snapshot::Snapshot;
use lifeline_repo::tree::NodeType;
use lifeline_repo::{Id, Repository, Writer};
use rayon::prelude::*;
use serde::Serialize;

use crate::drill::{DrillRequest, Drilled};
use crate::postgres::{self, tools::Tools};
use crate::{command, drill, files, Progress};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Repo(#[from] lifeline_repo::Error),
    #[error(transparent)]
    Postgres(#[from] postgres::Error),
    #[error(transparent)]
    Command(#[from] command::Error),
    #[error(transparent)]
    Config(#[from] crate::config::Error),
    #[error(transparent)]
    Redis(#[from] crate::redis::Error),
    #[error(transparent)]
    AuditTable(#[from] crate::audit_export::Error),
    #[error(transparent)]
    S3(#[from] crate::s3::Error),
    #[error(transparent)]
    Mongo(#[from] crate::mongodb::Error),
    #[error(transparent)]
    Scylla(#[from] crate::scylla::Error),
}

/// A capture's result: the snapshot (not yet saved) and what the kind wants said about it.
pub struct Captured {
    pub snapshot: Snapshot,
    /// Entries exclusions left out (files).
    pub excluded: u64,
}

/// One kind of data, ready to be captured.
pub trait Source: Send + Sync {
    /// The snapshot kind it writes.
    fn kind(&self) -> &'static str;
    /// Store the data through `writer`; the caller tags and saves the snapshot, so a failure
    /// leaves none.
    fn capture(
        &self,
        repo: &Repository,
        writer: &Writer<'_>,
        progress: &dyn Progress,
    ) -> Result<Captured, Error>;
    /// Restore `request.snapshot` (a snapshot this kind wrote) into `request.scratch`, prove the
    /// result usable, and remove it again. A step that fails is recorded in the result, not
    /// returned as an error: the drill goes on to clean up and the caller records what happened.
    fn drill(
        &self,
        repo: &Repository,
        request: &DrillRequest<'_>,
        progress: &dyn Progress,
    ) -> Result<Drilled, Error>;
}

/// Files and directories, incremental against the newest snapshot of the same paths and host.
pub struct FilesSource {
    /// Absolute, sorted, without duplicates.
    pub paths: Vec<PathBuf>,
    pub exclusions: files::Exclusions,
    pub host: String,
    /// Read every file instead of trusting unchanged metadata.
    pub force: bool,
}

impl Source for FilesSource {
    fn kind(&self) -> &'static str {
        "files"
    }

    fn capture(
        &self,
        repo: &Repository,
        writer: &Writer<'_>,
        progress: &dyn Progress,
    ) -> Result<Captured, Error> {
        let started = now();
        let names: Vec<String> = self.paths.iter().map(|p| p.display().to_string()).collect();
        // A write-only credential cannot open snapshots: without a parent every file is read and
        // chunked again, and deduplication against the index still keeps what is stored.
        let parent = if self.force || !repo.can_read_backups() {
            None
        } else {
            // A damaged snapshot never blocks a backup: the parent is the newest readable one.
            repo.load_snapshots()?
                .items
                .into_iter()
                .rev()
                .find(|(_, s)| s.kind == "files" && s.paths == names && s.hostname == self.host)
        };
        let result = files::backup(
            writer,
            &self.paths,
            parent.as_ref().map(|(_, s)| s.tree),
            &self.exclusions,
            progress,
        )?;
        let mut snapshot = Snapshot::new("files", names, result.tree);
        snapshot.parent = parent.map(|(id, _)| id.to_hex());
        snapshot.summary = result.summary;
        snapshot.errors = result.errors;
        snapshot.hostname = self.host.clone();
        // The recovery point is when reading began, not when it ended.
        snapshot.time = started;
        Ok(Captured {
            snapshot,
            excluded: result.excluded,
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

/// A program's standard output.
pub struct CommandSource {
    pub command: String,
    pub filename: String,
    pub timeout: Option<std::time::Duration>,
}

impl Source for CommandSource {
    fn kind(&self) -> &'static str {
        command::KIND
    }

    fn capture(
        &self,
        _repo: &Repository,
        writer: &Writer<'_>,
        progress: &dyn Progress,
    ) -> Result<Captured, Error> {
        let request = command::CommandRequest {
            command: &self.command,
            filename: &self.filename,
            timeout: self.timeout,
        };
        let started = now();
        let mut snapshot = command::capture(writer, &request, progress)?;
        snapshot.time = started;
        Ok(Captured {
            snapshot,
            excluded: 0,
        })
    }

    /// The captured output is a file in the snapshot's tree: drilled as files are.
    fn drill(
        &self,
        repo: &Repository,
        request: &DrillRequest<'_>,
        progress: &dyn Progress,
    ) -> Result<Drilled, Error> {
        Ok(drill::files::drill(repo, request, progress)?)
    }
}

/// A PostgreSQL physical base backup, full or incremental; the WAL arrives by archive_command.
pub struct BaseBackupSource {
    pub url: String,
    pub incremental: bool,
    pub wal_timeout: std::time::Duration,
    pub mode: postgres::backup::Mode,
    pub jobs: usize,
    pub tools: Box<dyn Fn(u32) -> Tools + Send + Sync>,
}

impl Source for BaseBackupSource {
    fn kind(&self) -> &'static str {
        postgres::catalog::KIND
    }

    fn capture(
        &self,
        repo: &Repository,
        writer: &Writer<'_>,
        progress: &dyn Progress,
    ) -> Result<Captured, Error> {
        let request = postgres::backup::BackupRequest {
            url: &self.url,
            incremental: self.incremental,
            wal_timeout: self.wal_timeout,
            mode: self.mode,
            jobs: self.jobs,
        };
        // Counted before the backup starts, so a drill can compare the restored tables with them.
        let counts = row_counts(&self.url);
        let mut backed_up =
            postgres::backup::backup(repo, writer, &request, &*self.tools, progress)?;
        if let Some(counts) = counts {
            backed_up
                .snapshot
                .source
                .insert(postgres::dump::source::ROW_COUNTS.into(), counts);
        }
        Ok(Captured {
            snapshot: backed_up.snapshot,
            excluded: 0,
        })
    }

    fn drill(
        &self,
        repo: &Repository,
        request: &DrillRequest<'_>,
        progress: &dyn Progress,
    ) -> Result<Drilled, Error> {
        Ok(drill::postgres::drill(
            repo,
            request,
            &*self.tools,
            progress,
        )?)
    }
}

/// The row count of every table in the user schemas of the database at `url`, as JSON (the same
/// record a dump keeps). Counting is a courtesy to drills: a role that may replicate but not read
/// the tables still gets its backup, without the counts (logged).
fn row_counts(url: &str) -> Option<String> {
    let counted = postgres::tools::connect(url).and_then(|mut client| {
        let mut tx = client
            .build_transaction()
            .isolation_level(::postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .map_err(|e| postgres::Error::db("starting the row counts", e))?;
        let counts = postgres::dump::row_counts(&mut tx, &[])?;
        tx.commit()
            .map_err(|e| postgres::Error::db("ending the row counts", e))?;
        Ok(counts)
    });
    match counted.map(|c| serde_json::to_string(&c)) {
        Ok(Ok(json)) => Some(json),
        Ok(Err(e)) => {
            tracing::warn!("the row counts could not be encoded: {e}");
            None
        }
        Err(e) => {
            tracing::warn!("the base backup records no row counts: {e}");
            None
        }
    }
}

/// A logical dump of chosen schemas, with row counts.
pub struct DumpSource {
    pub url: String,
    pub schemas: Vec<String>,
    pub jobs: u32,
    pub tools: Box<dyn Fn(u32) -> Tools + Send + Sync>,
}

impl Source for DumpSource {
    fn kind(&self) -> &'static str {
        postgres::dump::KIND
    }

    fn capture(
        &self,
        _repo: &Repository,
        writer: &Writer<'_>,
        progress: &dyn Progress,
    ) -> Result<Captured, Error> {
        let request = postgres::dump::DumpRequest {
            url: &self.url,
            schemas: &self.schemas,
            jobs: self.jobs,
        };
        let dumped = postgres::dump::dump(writer, &request, &*self.tools, progress)?;
        Ok(Captured {
            snapshot: dumped.snapshot,
            excluded: 0,
        })
    }

    fn drill(
        &self,
        repo: &Repository,
        request: &DrillRequest<'_>,
        progress: &dyn Progress,
    ) -> Result<Drilled, Error> {
        Ok(drill::dump::drill(
            repo,
            request,
            self.jobs,
            &*self.tools,
            progress,
        )?)
    }
}

/// What reading a snapshot back proved.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verified {
    pub files: u64,
    pub blobs: u64,
    pub bytes: u64,
}

/// Read back, decrypt and authenticate every blob a snapshot's files refer to (each once): proof
/// that this snapshot, not only the repository's structure, can be restored.
pub fn verify(repo: &Repository, snapshot: &Snapshot) -> Result<Verified, Error> {
    let reader = repo.reader()?;
    let mut blobs: HashSet<Id> = HashSet::new();
    let mut files = 0u64;
    lifeline_repo::walk::walk(&reader, snapshot.tree, b"", &mut |_, node| {
        if node.node_type == NodeType::File {
            files += 1;
            for c in node.content.iter().flatten() {
                blobs.insert(*c.id());
            }
        }
        Ok(())
    })?;
    let blobs: Vec<Id> = blobs.into_iter().collect();
    let bytes = blobs
        .par_iter()
        .map(|id| reader.read_blob(id).map(|b| b.len() as u64))
        .try_reduce(|| 0, |a, b| Ok(a + b))?;
    Ok(Verified {
        files,
        blobs: blobs.len() as u64,
        bytes,
    })
}

pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// A JSON record of a snapshot's `source` map, for the restore of `kind`: refused with a message
/// when the snapshot is of another kind, lacks the record, or holds a damaged one. `what` names the
/// record in messages ("row counts").
pub fn recorded_json<T: serde::de::DeserializeOwned>(
    snapshot: &Snapshot,
    kind: &str,
    key: &str,
    what: &str,
) -> Result<T, String> {
    if snapshot.kind != kind {
        return Err(format!(
            "the snapshot is of kind {:?}, not a {kind} snapshot; pick one with --tag source=NAME",
            snapshot.kind
        ));
    }
    let text = snapshot
        .source
        .get(key)
        .ok_or_else(|| format!("the snapshot records no {what}"))?;
    serde_json::from_str(text).map_err(|e| format!("the snapshot's {what} are damaged: {e}"))
}
