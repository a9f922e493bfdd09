//! Physical base backups as one operation: check that the server can be backed up (and, for
//! `--incremental`, built on), read its data directory file by file on the database host
//! ([`datadir`](super::datadir)) or stream it through `pg_basebackup`, wait until the WAL that makes
//! the backup consistent is archived, and describe it in a snapshot that recovery can select by
//! time, LSN or transaction.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lifeline_repo::snapshot::Snapshot;
use lifeline_repo::{Id, Repository, Writer};

use super::basebackup::{self, ServerInfo, WalRange, MANIFEST};
use super::catalog::{self, keys, BaseBackup};
use super::datadir::{self, FilesRequest, Reuse};
use super::error::{Error, Result};
use super::tools::{self, Tools};
use super::vector;
use crate::Progress;

/// How the data directory reaches the repository (`--mode`, the plan's `mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Files when this process can read the server's data directory, else stream.
    #[default]
    Auto,
    /// Read the data directory here, between `pg_backup_start` and `pg_backup_stop`.
    Files,
    /// `pg_basebackup`'s tar stream, from any host.
    Stream,
}

/// What to back up.
#[derive(Debug, Clone)]
pub struct BackupRequest<'a> {
    /// libpq connection URI or key=value string of a role that may replicate.
    pub url: &'a str,
    /// Read only what changed since the newest backup of the cluster: in file mode the files whose
    /// size and times differ (any version); streamed, the blocks WAL summaries name (17+).
    pub incremental: bool,
    /// How long to wait for the WAL the backup needs to reach the repository.
    pub wal_timeout: Duration,
    pub mode: Mode,
    /// Files read in parallel (file mode).
    pub jobs: usize,
}

/// Parallel readers when none are asked for: one per core.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from)
}

/// The backup's way of reading, once the server has been asked.
enum Method {
    Files(std::path::PathBuf),
    Stream,
}

/// A base backup stored in the repository, with the snapshot that will name it (not yet saved; no
/// tags set).
#[derive(Debug)]
pub struct BackedUp {
    pub snapshot: Snapshot,
    pub info: ServerInfo,
    pub range: WalRange,
    /// pgvector columns whose answers were recorded.
    pub vector_checks: usize,
}

/// Take a base backup of the server at `request.url` into `writer`'s repository. `tools` picks the
/// client programs for a server major version; `progress` is told the databases' total size first.
/// The snapshot's time is the server's clock at the start, so it sorts with the WAL it needs.
pub fn backup(
    repo: &Repository,
    writer: &Writer<'_>,
    request: &BackupRequest<'_>,
    tools: &dyn Fn(u32) -> Tools,
    progress: &dyn Progress,
) -> Result<BackedUp> {
    // An incremental backup builds on the previous backup's manifest, which a write-only
    // credential cannot open; a full backup needs nothing of earlier ones.
    if request.incremental {
        repo.require_read(
            "an incremental base backup, which reads the previous backup's manifest,",
        )?;
    }
    let started = Instant::now();
    let mut client = tools::connect(request.url)?;
    let info = basebackup::server_info(&mut client)?;
    if info.archive_mode == "off" {
        return Err(Error::ArchiveOff);
    }
    let method = match request.mode {
        Mode::Stream => Method::Stream,
        Mode::Files => Method::Files(datadir::local_data_dir(&mut client, &info).map_err(|why| {
            Error::Invalid(format!("--mode files: {why}; run lifeline on the database host as a user that may read the data directory, or use --mode stream"))
        })?),
        Mode::Auto => match datadir::local_data_dir(&mut client, &info) {
            Ok(dir) => Method::Files(dir),
            Err(why) => {
                tracing::info!("streaming the backup through pg_basebackup: {why}");
                Method::Stream
            }
        },
    };
    let tools = tools(info.major);
    if matches!(method, Method::Stream) {
        tools.check_version("pg_basebackup", info.major)?;
    }

    // Read for full backups too, so a base backup whose metadata is unreadable (which recovery
    // would refuse) is reported while a good one can still be taken, by credentials that can.
    let earlier: Vec<BaseBackup> = if repo.can_read_backups() {
        catalog::base_backups(repo)?
            .into_iter()
            .filter(|b| b.system_id == info.system_id)
            .collect()
    } else {
        Vec::new()
    };
    let reuse = match &method {
        Method::Files(dir) if request.incremental => {
            let reuse = reusable(&earlier, dir);
            if reuse.is_none() {
                tracing::warn!(
                    "no earlier file-mode backup of {} to build on: reading every file (a full backup)",
                    dir.display()
                );
            }
            reuse
        }
        _ => None,
    };
    let previous = earlier.into_iter().next_back();
    // The temporary directory holds the parent's manifest until pg_basebackup has read it.
    let staging = tempfile::tempdir().map_err(|e| {
        Error::Invalid(format!(
            "cannot create a temporary directory in {} ({e}); set TMPDIR to a writable directory",
            std::env::temp_dir().display()
        ))
    })?;
    let parent = if request.incremental && matches!(method, Method::Stream) {
        Some(stage_parent(repo, &info, previous, staging.path())?)
    } else {
        None
    };

    let start_time = server_clock(&mut client)?;
    // Only for the progress bar's total: a server that will not say is backed up all the same.
    let total: i64 = client
        .query_one(
            "SELECT sum(pg_database_size(datname))::bigint FROM pg_database",
            &[],
        )
        .map(|r| r.get::<_, Option<i64>>(0).unwrap_or(0))
        .unwrap_or(0);
    progress.total(u64::try_from(total).unwrap_or(0));
    let mut files_source = BTreeMap::new();
    let taken = match &method {
        Method::Files(dir) => {
            let files = FilesRequest {
                data_dir: dir,
                jobs: request.jobs,
                reuse,
            };
            let taken = datadir::take(&mut client, writer, &info, &files, progress)?;
            files_source.insert(keys::BACKUP_MODE, "files".to_string());
            files_source.insert(keys::DATA_DIRECTORY, dir.display().to_string());
            files_source.insert(keys::READ_FROM, taken.read_from.to_string());
            if let Some(map) = taken.tablespace_map {
                files_source.insert(keys::TABLESPACE_MAP, map);
            }
            if let Some(reuse) = reuse {
                files_source.insert(keys::REUSED_FROM, reuse.snapshot.to_hex());
            }
            taken.taken
        }
        Method::Stream => {
            files_source.insert(keys::BACKUP_MODE, "stream".to_string());
            basebackup::take(
                writer,
                &tools,
                request.url,
                parent.as_ref().map(|(_, manifest)| manifest.as_path()),
                progress,
            )?
        }
    };
    basebackup::wait_for_wal(
        repo,
        info.system_id,
        &taken.range,
        info.wal_segment_size,
        request.wal_timeout,
    )?;
    // Read after the backup is complete, so recovery to any later time or xid can start from it.
    let row = client
        .query_one(
            "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),
                    pg_snapshot_xmax(pg_current_snapshot())::text::bigint",
            &[],
        )
        .map_err(|e| Error::db("reading the server's clock and next transaction ID", e))?;
    let stop_time: String = row.get(0);
    let next_xid: i64 = row.get(1);
    let checks = vector::capture(&mut client)?;

    let mut snapshot = Snapshot::new(
        catalog::KIND,
        vec![format!("cluster {}", info.system_id)],
        taken.stored.tree,
    );
    snapshot.time = start_time.clone();
    snapshot.summary = taken.stored.summary;
    if matches!(method, Method::Stream) {
        snapshot.summary.files_new = snapshot.summary.files;
    }
    let range = taken.range;
    let source = &mut snapshot.source;
    source.insert(keys::SYSTEM_ID.into(), info.system_id.to_string());
    source.insert(keys::TIMELINE.into(), range.timeline.to_string());
    source.insert(keys::START_LSN.into(), range.start.to_string());
    source.insert(keys::STOP_LSN.into(), range.stop.to_string());
    source.insert(keys::START_TIME.into(), start_time);
    source.insert(keys::STOP_TIME.into(), stop_time);
    source.insert(keys::NEXT_XID.into(), next_xid.to_string());
    source.insert(keys::SERVER_VERSION.into(), info.version.clone());
    source.insert(keys::SERVER_MAJOR.into(), info.major.to_string());
    source.insert(keys::SEGMENT_SIZE.into(), info.wal_segment_size.to_string());
    source.insert("database_url".into(), tools::redact(request.url));
    for (key, value) in files_source {
        source.insert(key.into(), value);
    }
    source.insert(
        keys::BACKUP_TYPE.into(),
        if parent.is_some() || reuse.is_some() {
            "incremental"
        } else {
            "full"
        }
        .into(),
    );
    if let Some((parent, _)) = &parent {
        source.insert(keys::PARENT_BACKUP.into(), parent.to_hex());
        snapshot.parent = Some(parent.to_hex());
    }
    // A file-mode incremental shares its parent's chunks but needs nothing else of it: it is
    // restored on its own, so it records no `parent_backup` (which would keep the parent).
    if let Some(reuse) = &reuse {
        snapshot.parent = Some(reuse.snapshot.to_hex());
    }
    if !checks.is_empty() {
        let json = serde_json::to_string(&checks)
            .map_err(|e| Error::Invalid(format!("encoding the backup's pgvector answers: {e}")))?;
        snapshot.source.insert(keys::PGVECTOR.into(), json);
    }
    snapshot.summary.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    Ok(BackedUp {
        snapshot,
        info,
        range,
        vector_checks: checks.len(),
    })
}

/// The newest file-mode backup of `dir` among `earlier` (oldest first), whose unchanged files a
/// file-mode incremental reuses.
fn reusable(earlier: &[BaseBackup], dir: &Path) -> Option<Reuse> {
    earlier.iter().rev().find_map(|b| {
        let source = &b.snapshot.source;
        (source.get(keys::BACKUP_MODE).map(String::as_str) == Some("files")
            && source.get(keys::DATA_DIRECTORY).map(String::as_str) == dir.to_str())
        .then_some(())?;
        Some(Reuse {
            snapshot: b.id,
            tree: b.snapshot.tree,
            read_from: source.get(keys::READ_FROM)?.parse().ok()?,
        })
    })
}

/// Check that an incremental backup can be taken and write the manifest of the backup it builds on,
/// `previous` (the cluster's newest), into `dir` for `pg_basebackup --incremental`. Returns that
/// backup's ID and the manifest's path.
fn stage_parent(
    repo: &Repository,
    info: &ServerInfo,
    previous: Option<BaseBackup>,
    dir: &Path,
) -> Result<(Id, PathBuf)> {
    if info.major < 17 {
        return Err(Error::IncrementalTooOld {
            version: info.version.clone(),
        });
    }
    if !info.summarize_wal {
        return Err(Error::IncrementalWithoutSummaries);
    }
    let parent = previous.ok_or(Error::NoEarlierBackup {
        system_id: info.system_id,
    })?;
    let manifest = catalog::read_root_file(&repo.reader()?, parent.snapshot.tree, MANIFEST)?;
    let path = dir.join(MANIFEST);
    std::fs::write(&path, manifest).map_err(|e| Error::io(&path, e))?;
    Ok((parent.id, path))
}

/// The server's clock in UTC, RFC 3339 with microseconds.
fn server_clock(client: &mut postgres::Client) -> Result<String> {
    Ok(client
        .query_one(
            "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
            &[],
        )
        .map_err(|e| Error::db("reading the server's clock", e))?
        .get(0))
}
