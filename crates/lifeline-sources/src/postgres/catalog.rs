//! The base backups in a repository, as recovery sees them: snapshots of kind `postgres` with the
//! WAL positions, times and lineage recorded in their `source` map.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset};
use lifeline_repo::snapshot::Snapshot;
use lifeline_repo::walk::lookup;
use lifeline_repo::{BlobReader, Id, Repository};

use super::error::{Error, Result};
use super::wal::{self, Lsn};

pub const KIND: &str = "postgres";

/// Keys of a base backup snapshot's `source` map.
pub mod keys {
    pub const SYSTEM_ID: &str = "system_id";
    pub const TIMELINE: &str = "timeline";
    pub const START_LSN: &str = "start_lsn";
    pub const STOP_LSN: &str = "stop_lsn";
    pub const START_TIME: &str = "start_time";
    pub const STOP_TIME: &str = "stop_time";
    pub const NEXT_XID: &str = "next_xid";
    pub const SERVER_VERSION: &str = "server_version";
    pub const SERVER_MAJOR: &str = "server_major";
    pub const SEGMENT_SIZE: &str = "wal_segment_size";
    pub const BACKUP_TYPE: &str = "backup_type";
    pub const PARENT_BACKUP: &str = "parent_backup";
    pub const PGVECTOR: &str = "pgvector";
    /// `files` (read on the database host) or `stream` (`pg_basebackup`); absent before 0.2.
    pub const BACKUP_MODE: &str = "backup_mode";
    /// File mode: the data directory read, and when reading began (ns since the epoch).
    pub const DATA_DIRECTORY: &str = "data_directory";
    pub const READ_FROM: &str = "files_read_from";
    /// File mode: `pg_backup_stop`'s tablespace map (tablespaces are stored in `pg_tblspc`).
    pub const TABLESPACE_MAP: &str = "tablespace_map";
    /// A file-mode incremental: the backup whose unchanged files it reused.
    pub const REUSED_FROM: &str = "reused_from";
}

#[derive(Debug, Clone)]
pub struct BaseBackup {
    pub id: Id,
    pub snapshot: Snapshot,
    pub system_id: u64,
    pub timeline: u32,
    pub start: Lsn,
    pub stop: Lsn,
    /// Server time when the backup was complete (taken after pg_basebackup returned, so recovery to
    /// any later time can start from this backup).
    pub stop_time: DateTime<FixedOffset>,
    /// The next transaction ID when the backup finished.
    pub next_xid: u64,
    pub major: u32,
    pub segment_size: u64,
    /// The backup an incremental backup builds on.
    pub parent: Option<Id>,
}

impl BaseBackup {
    fn from_snapshot(id: Id, snapshot: Snapshot) -> Result<Self> {
        let source = &snapshot.source;
        let get = |key: &str| {
            source.get(key).map(String::as_str).ok_or_else(|| {
                Error::Invalid(format!(
                    "base backup {} lacks `{key}` in its metadata",
                    id.short()
                ))
            })
        };
        let num = |key: &str| -> Result<u64> {
            get(key)?.parse().map_err(|_| {
                Error::Invalid(format!(
                    "base backup {}: `{key}` is not a number",
                    id.short()
                ))
            })
        };
        let time = |key: &str| -> Result<DateTime<FixedOffset>> {
            DateTime::parse_from_rfc3339(get(key)?).map_err(|_| {
                Error::Invalid(format!("base backup {}: `{key}` is not a time", id.short()))
            })
        };
        Ok(BaseBackup {
            system_id: num(keys::SYSTEM_ID)?,
            timeline: u32::try_from(num(keys::TIMELINE)?).unwrap_or(0),
            start: Lsn::parse(get(keys::START_LSN)?)?,
            stop: Lsn::parse(get(keys::STOP_LSN)?)?,
            stop_time: time(keys::STOP_TIME)?,
            next_xid: num(keys::NEXT_XID)?,
            major: u32::try_from(num(keys::SERVER_MAJOR)?).unwrap_or(0),
            segment_size: num(keys::SEGMENT_SIZE).unwrap_or(wal::DEFAULT_SEGMENT_SIZE),
            parent: source
                .get(keys::PARENT_BACKUP)
                .and_then(|p| Id::from_hex(p)),
            id,
            snapshot,
        })
    }

    pub fn is_incremental(&self) -> bool {
        self.parent.is_some()
    }
}

/// Every base backup in the repository, oldest first. Snapshots of other kinds are ignored; a base
/// backup whose metadata is unreadable is an error, since recovery could silently skip it otherwise.
pub fn base_backups(repo: &Repository) -> Result<Vec<BaseBackup>> {
    of_snapshots(repo.snapshots()?)
}

/// The base backups among the snapshots that can be read, for `check`, which names the damaged
/// snapshots itself: one of them must not stop the check of the WAL archive and of everything else.
pub fn readable_base_backups(repo: &Repository) -> Result<Vec<BaseBackup>> {
    of_snapshots(repo.load_snapshots()?.items)
}

fn of_snapshots(snapshots: Vec<(Id, Snapshot)>) -> Result<Vec<BaseBackup>> {
    let mut out = Vec::new();
    for (id, snapshot) in snapshots {
        if snapshot.kind == KIND {
            out.push(BaseBackup::from_snapshot(id, snapshot)?);
        }
    }
    out.sort_by_key(|b| b.stop_time);
    Ok(out)
}

/// The backups of one cluster. With several clusters in one repository the caller must say which.
pub fn of_cluster(backups: Vec<BaseBackup>, system_id: Option<u64>) -> Result<Vec<BaseBackup>> {
    let mut clusters: BTreeMap<u64, usize> = BTreeMap::new();
    for b in &backups {
        *clusters.entry(b.system_id).or_default() += 1;
    }
    let chosen = match (system_id, clusters.len()) {
        (Some(id), _) => id,
        (None, 0) => {
            return Err(Error::Invalid(
                "the repository holds no PostgreSQL base backup; take one with `lifeline pg backup --db URL`".into(),
            ))
        }
        (None, 1) => *clusters.keys().next().unwrap_or(&0),
        (None, _) => {
            let list: Vec<String> = clusters.keys().map(u64::to_string).collect();
            return Err(Error::Invalid(format!(
                "the repository holds base backups of several clusters ({}); choose one with --system-id",
                list.join(", ")
            )));
        }
    };
    let mine: Vec<BaseBackup> = backups
        .into_iter()
        .filter(|b| b.system_id == chosen)
        .collect();
    if mine.is_empty() {
        return Err(Error::Invalid(format!(
            "the repository holds no base backup of cluster {chosen}"
        )));
    }
    Ok(mine)
}

/// The chain an incremental backup needs, full backup first.
pub fn chain(backups: &[BaseBackup], last: &BaseBackup) -> Result<Vec<BaseBackup>> {
    let mut chain = vec![last.clone()];
    while let Some(parent) = chain.last().and_then(|b| b.parent) {
        let found = backups.iter().find(|b| b.id == parent).ok_or_else(|| {
            Error::Invalid(format!(
                "incremental backup {} needs backup {}, which is not in the repository",
                last.id.short(),
                parent.short()
            ))
        })?;
        if chain.len() > backups.len() {
            return Err(Error::Invalid(
                "the chain of incremental backups loops".into(),
            ));
        }
        chain.push(found.clone());
    }
    chain.reverse();
    Ok(chain)
}

/// One file at the root of a snapshot tree (the backup manifest).
pub fn read_root_file(reader: &BlobReader<'_>, tree: Id, name: &str) -> Result<Vec<u8>> {
    let node = lookup(reader, tree, name.as_bytes())?
        .ok_or_else(|| Error::Invalid(format!("the backup holds no {name}")))?;
    let mut out = Vec::new();
    for part in node.content.iter().flatten() {
        let chunk = reader.read_blob(part.id())?;
        let range = usize::try_from(part.offset()).unwrap_or(usize::MAX)
            ..usize::try_from(part.offset() + part.len()).unwrap_or(usize::MAX);
        let slice = chunk.get(range).ok_or_else(|| {
            lifeline_repo::Error::corrupt(part.id().to_hex(), "chunk shorter than the file needs")
        })?;
        out.extend_from_slice(slice);
    }
    Ok(out)
}
