use std::path::PathBuf;

/// Errors of the PostgreSQL source. Repository errors keep their own type so the binary can map
/// them to exit codes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Repo(#[from] lifeline_repo::Error),
    #[error("PostgreSQL {context}: {source}")]
    Db {
        context: String,
        #[source]
        source: postgres::Error,
    },
    #[error("{tool} failed ({status}){stderr}")]
    Tool {
        tool: String,
        status: String,
        /// The tool's last lines of standard error, starting with ": " when present.
        stderr: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error(
        "WAL archiving is off on this server, so no backup could be recovered: set archive_mode = on and archive_command = 'lifeline --config FILE pg wal-push %p' (docs/postgres.md), then restart it"
    )]
    ArchiveOff,
    #[error(
        "--incremental needs PostgreSQL 17 or later (this server is {version}); take a full backup"
    )]
    IncrementalTooOld { version: String },
    #[error("--incremental needs summarize_wal = on on the server (ALTER SYSTEM SET summarize_wal = on; SELECT pg_reload_conf()), and a full backup taken after that")]
    IncrementalWithoutSummaries,
    #[error("--incremental needs an earlier base backup of cluster {system_id} to build on; take a full backup first")]
    NoEarlierBackup { system_id: u64 },
    #[error("{} is not empty: restore into a new or empty directory, or pass --delta to update a stopped copy of this cluster in place (a running cluster's data directory is never overwritten)", .0.display())]
    NotEmpty(PathBuf),
    #[error("{count} file(s) could not be restored, first {}: {error}", .first.display())]
    FilesNotRestored {
        count: usize,
        first: PathBuf,
        error: String,
    },
    #[error("the restored server did not start or stopped before reaching {target} ({cause}); the end of its log ({}):\n{tail}", .log.display())]
    ServerDidNotStart {
        target: String,
        cause: Box<Error>,
        log: PathBuf,
        /// The last lines of the server's log.
        tail: String,
    },
    #[error("the restored server stopped before reaching {target}; the end of its log ({}):\n{tail}", .log.display())]
    ServerStopped {
        target: String,
        log: PathBuf,
        tail: String,
    },
    #[error("pg receive-wal needs PostgreSQL 15 or later (this server is {major}): keep archiving with archive_command")]
    ReceiveTooOld { major: u32 },
    #[error("replication slot {slot:?} does not exist on this server: pass --create-slot to create it (then drop it with SELECT pg_drop_replication_slot('{slot}') once the receiver is retired: the server keeps all WAL the slot has not received), or name an existing physical slot with --slot")]
    SlotMissing { slot: String },
    #[error("replication slot {slot:?} is a {kind} slot: pg receive-wal needs a physical one; name another with --slot (--create-slot creates a physical slot)")]
    SlotNotPhysical { slot: String, kind: String },
    #[error("role {role:?} may not stream WAL: run ALTER ROLE \"{role}\" REPLICATION as a superuser (and allow it a `replication` line in pg_hba.conf), or connect with --db as a role that has it")]
    NoReplication { role: String },
    #[error("{} holds WAL of cluster {found}, but the server is cluster {expected}: give each cluster its own --dir", .dir.display())]
    OtherClusterWal {
        dir: PathBuf,
        found: u64,
        expected: u64,
    },
    #[error("recovery did not reach {target} within {seconds} s; the server is still running (log: {})", .log.display())]
    RecoveryTimeout {
        target: String,
        seconds: u64,
        log: PathBuf,
    },
}

impl Error {
    pub fn db(context: impl Into<String>, source: postgres::Error) -> Self {
        Error::Db {
            context: context.into(),
            source,
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
