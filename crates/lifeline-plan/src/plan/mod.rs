//! The plan: the `--config` file grown into the whole backup programme (docs/plan.md). Every table is
//! read by serde into the same option structs the command-line flags fill, so a setting means one
//! thing in both places. Reading checks the shape (types, unknown keys, with the parser's line and
//! column); [`check`] then checks the meaning (classes, tiers, schedules, key sources) and says
//! where each problem is.

mod check;
mod locate;
mod show;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lifeline_sources::drill::SqlCheck;
use serde::Deserialize;

pub use check::{check, Problem};
pub use show::{show, PlanView, ScheduleView, SourceView};

use crate::notify::NotifyOptions;
use crate::options::{
    duration_from_text, duration_text, tags_from_text, ExcludeOptions, RepositoryOptions,
    RetentionOptions,
};
use crate::schedule::Schedule;

/// The plan file. Every section is optional, so a file holding only `[repository]` (what every
/// command needs) is a plan with nothing scheduled.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    #[serde(default)]
    pub repository: RepositoryOptions,
    /// Second repositories (another region) that every job copies its snapshots to.
    #[serde(default)]
    pub copies: Vec<RepositoryOptions>,
    #[serde(default)]
    pub tiers: BTreeMap<String, Tier>,
    #[serde(default)]
    pub classes: BTreeMap<String, Class>,
    #[serde(default)]
    pub sources: Vec<SourceDef>,
    #[serde(default)]
    pub metrics: MetricsOptions,
    #[serde(default)]
    pub notify: Vec<NotifyOptions>,
    #[serde(default)]
    pub daemon: DaemonOptions,
    #[serde(default)]
    pub postgres: PostgresConfig,
    /// Where audit records go besides the repository (docs/evidence.md).
    #[serde(default)]
    pub audit: crate::audit::AuditOptions,
    /// Key rotation (`[keys]`).
    #[serde(default)]
    pub keys: KeysOptions,
}

/// `[keys]`: how the daemon manages the primary repository's key epochs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysOptions {
    /// Start a new key epoch when the current one is older than this (`lifeline key rotate`);
    /// never when absent.
    #[serde(default, deserialize_with = "duration_from_text")]
    pub rotate_every: Option<Duration>,
}

/// The `[postgres]` section.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// Directory of PostgreSQL's client programs (`--pg-bin` wins).
    pub bin_dir: Option<PathBuf>,
}

/// A recovery tier: how long a recovery may take, and how much data it may lose.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    #[serde(deserialize_with = "duration_text::deserialize")]
    pub rto: Duration,
    #[serde(deserialize_with = "duration_text::deserialize")]
    pub rpo: Duration,
}

/// A data class: the tier its sources must meet and how long their snapshots are kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Class {
    pub tier: String,
    /// `forget`'s policy, applied to each source's own snapshots after every job; none keeps all.
    #[serde(default)]
    pub retention: Option<RetentionOptions>,
    /// What a job checks after its backup.
    #[serde(default)]
    pub verify: Verify,
}

/// Verification after a backup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verify {
    /// Read back, decrypt and authenticate every blob of the new snapshot.
    #[default]
    Snapshot,
    None,
}

/// Kinds of data a source captures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    /// Files and directories.
    Files,
    /// PostgreSQL physical base backups; the WAL comes from `archive_command`.
    Postgres,
    /// PostgreSQL logical dumps of chosen schemas.
    PostgresDump,
    /// Any program whose standard output is the backup (`terraform state pull`).
    Command,
    /// A Redis server's RDB over the replication protocol, and optionally its AOF directory.
    Redis,
    /// A MongoDB deployment, stored as one mongodump archive.
    Mongodb,
    /// A ScyllaDB or Cassandra cluster: `nodetool snapshot` on every node, SSTables, schema, tokens.
    Scylla,
    /// The objects of an S3-compatible bucket (prefix), incremental by ETag, size and time.
    S3,
    /// Service configuration: allowed environment variables (secrets redacted) and config files.
    Config,
    /// Incremental, hash-chained exports of a PostgreSQL audit table by a watermark column.
    AuditTable,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Files => "files",
            SourceKind::Postgres => "postgres",
            SourceKind::PostgresDump => "postgres-dump",
            SourceKind::Command => "command",
            SourceKind::Redis => "redis",
            SourceKind::Mongodb => "mongodb",
            SourceKind::Scylla => "scylla",
            SourceKind::S3 => "s3",
            SourceKind::Config => "config",
            SourceKind::AuditTable => "audit-table",
        }
    }

    /// The keys a source of this kind may set besides the common ones.
    pub fn own_keys(self) -> &'static [&'static str] {
        match self {
            SourceKind::Files => &[
                "paths",
                "exclude",
                "exclude_file",
                "exclude_caches",
                "one_file_system",
            ],
            SourceKind::Postgres => &["db", "base_backup", "wal_timeout", "mode", "jobs", "checks"],
            SourceKind::PostgresDump => &["db", "schemas", "jobs", "checks"],
            SourceKind::Command => &["command", "filename", "timeout"],
            SourceKind::Redis => &["url", "password_file", "tls_ca_file", "aof_dir"],
            SourceKind::Mongodb => &["url", "password_file"],
            SourceKind::Scylla => &["nodes", "keyspaces", "cql_port"],
            SourceKind::S3 => &["bucket", "s3"],
            SourceKind::Config => &["env", "secrets", "redact", "paths"],
            SourceKind::AuditTable => &["db", "table", "watermark", "format", "timeout"],
        }
    }
}

/// One `[[sources]]` table. The keys of every kind are fields here; [`check`] refuses keys that do
/// not belong to the source's kind.
#[derive(Debug, Clone, Deserialize)]
pub struct SourceDef {
    pub name: String,
    pub kind: SourceKind,
    pub class: String,
    /// Cron expressions (five fields, or six with seconds first); a list runs at each.
    #[serde(default)]
    pub schedule: Option<Schedules>,
    /// Time zone the schedules are read in (IANA name); default `[daemon] timezone`, else UTC.
    #[serde(default)]
    pub timezone: Option<String>,
    /// Tags added to every snapshot of this source, besides `source=NAME`.
    #[serde(default, deserialize_with = "tags_from_text")]
    pub tags: Vec<(String, String)>,
    /// Cron expression of the source's restore drill (`lifeline drill`), read in `timezone`.
    #[serde(default)]
    pub drill: Option<String>,

    // files
    #[serde(default)]
    pub paths: Vec<PathBuf>,
    #[serde(flatten)]
    pub exclude: ExcludeOptions,

    // postgres, postgres-dump
    /// libpq URL of the server (postgres: a role that may replicate).
    #[serde(default)]
    pub db: Option<String>,
    /// postgres: when to take full and incremental base backups.
    #[serde(default)]
    pub base_backup: Option<BaseBackupSchedule>,
    /// postgres: how long a backup waits for its WAL to reach the repository.
    #[serde(default, deserialize_with = "duration_from_text")]
    pub wal_timeout: Option<Duration>,
    /// postgres-dump: schemas to dump (all user schemas when empty).
    #[serde(default)]
    pub schemas: Vec<String>,
    /// postgres: `auto`, `files` or `stream` (`pg backup --mode`).
    #[serde(default)]
    pub mode: Option<lifeline_sources::postgres::backup::Mode>,
    /// postgres-dump: `pg_dump --jobs`; postgres: files read in parallel (file mode).
    #[serde(default)]
    pub jobs: Option<u32>,
    /// postgres, postgres-dump: queries a drill asks of the restored database.
    #[serde(default)]
    pub checks: Vec<SqlCheck>,

    // command
    /// Run with `sh -c`; its standard output is stored.
    #[serde(default)]
    pub command: Option<String>,
    /// Name of the stored file (default: the source's name).
    #[serde(default)]
    pub filename: Option<String>,
    /// command: how long it may run before it is killed and the job fails; audit-table: how long
    /// an export waits for open transactions that may still write rows below its watermark.
    #[serde(default, deserialize_with = "duration_from_text")]
    pub timeout: Option<Duration>,

    // redis
    /// redis: `redis://[USER[:PASSWORD]@]HOST:PORT` or `rediss://…` (TLS).
    #[serde(default)]
    pub url: Option<String>,
    /// redis: a file holding the password, so the plan holds no secret (the URL's user names the ACL user).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// redis (`rediss://`): PEM file of the CA that signed the server's certificate.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// redis: the server's AOF directory on this host, captured beside the RDB.
    #[serde(default)]
    pub aof_dir: Option<PathBuf>,

    // scylla
    /// scylla: every node of the cluster: its CQL host, where nodetool reaches it, its data directory.
    #[serde(default)]
    pub nodes: Vec<lifeline_sources::scylla::Node>,
    /// scylla: the keyspaces captured.
    #[serde(default)]
    pub keyspaces: Vec<String>,
    /// scylla: the nodes' CQL port (default 9042).
    #[serde(default)]
    pub cql_port: Option<u16>,

    // s3
    /// s3: `s3://BUCKET/PREFIX` whose objects are captured.
    #[serde(default)]
    pub bucket: Option<String>,
    /// s3: endpoint, region and credentials of the bucket, as `[repository.s3]` takes them.
    #[serde(default)]
    pub s3: Option<lifeline_repo::storage::S3Settings>,

    // config
    /// config: environment variables to capture: names, or prefixes ending in `*`.
    #[serde(default)]
    pub env: Vec<String>,
    /// config: what a secret-looking variable does: `redact` (stored as `[REDACTED]`) or `refuse`.
    #[serde(default)]
    pub secrets: Option<lifeline_sources::config::Secrets>,
    /// config: more name patterns (`*` wildcards) treated as secrets.
    #[serde(default)]
    pub redact: Vec<String>,

    // audit-table
    /// audit-table: the table to export (`audit_log` or `schema.audit_log`).
    #[serde(default)]
    pub table: Option<String>,
    /// audit-table: the column whose values only grow (`id`, `created_at`).
    #[serde(default)]
    pub watermark: Option<String>,
    /// audit-table: `csv` (default) or `jsonl`.
    #[serde(default)]
    pub format: Option<lifeline_sources::audit_export::Format>,

    /// Keys no kind knows: reported by [`check`] with their line, as serde cannot refuse them here.
    #[serde(flatten)]
    pub unknown: BTreeMap<String, toml::Value>,
}

/// `schedule = "…"` or `schedule = ["…", "…"]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Schedules {
    One(String),
    Many(Vec<String>),
}

impl Schedules {
    pub fn expressions(&self) -> Vec<&str> {
        match self {
            Schedules::One(s) => vec![s.as_str()],
            Schedules::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaseBackupSchedule {
    pub full: String,
    #[serde(default)]
    pub incremental: Option<String>,
}

/// `[metrics]`: where the daemon serves `/metrics`, its status page and `/api/status`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsOptions {
    /// `HOST:PORT`; nothing is served when absent.
    pub listen: Option<String>,
}

/// `[daemon]`: how the daemon runs the schedules.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonOptions {
    /// Time zone of every schedule without its own (IANA name, e.g. Europe/Berlin).
    pub timezone: String,
    /// Jobs running at once across all sources (one source never runs twice at once).
    pub max_concurrent_jobs: usize,
    /// Attempts after a failed job, before its next scheduled time.
    pub retries: u32,
    /// Wait before the first retry; doubled for each further one.
    #[serde(deserialize_with = "duration_text::deserialize")]
    pub retry_delay: Duration,
    /// On SIGTERM, how long running jobs may take to finish before they are abandoned.
    #[serde(deserialize_with = "duration_text::deserialize")]
    pub stop_timeout: Duration,
    /// Jobs running longer are stopped and count as failed.
    #[serde(deserialize_with = "duration_text::deserialize")]
    pub job_timeout: Duration,
}

impl Default for DaemonOptions {
    fn default() -> Self {
        DaemonOptions {
            timezone: "UTC".into(),
            max_concurrent_jobs: 2,
            retries: 2,
            retry_delay: Duration::from_secs(60),
            stop_timeout: Duration::from_secs(300),
            job_timeout: Duration::from_secs(6 * 3600),
        }
    }
}

/// Which job of a source runs: its backup, or for PostgreSQL a full or an incremental base backup.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    Backup,
    Full,
    Incremental,
    /// A restore drill (`lifeline drill`), on the source's `drill` schedule.
    Drill,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Backup => "backup",
            JobKind::Full => "full",
            JobKind::Incremental => "incremental",
            JobKind::Drill => "drill",
        }
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "backup" => Ok(JobKind::Backup),
            "full" => Ok(JobKind::Full),
            "incremental" => Ok(JobKind::Incremental),
            "drill" => Ok(JobKind::Drill),
            _ => Err(format!(
                "{text:?} is not a job: give backup, full, incremental or drill"
            )),
        }
    }
}

/// A schedule of one job of one source.
#[derive(Debug, Clone)]
pub struct JobSchedule {
    pub job: JobKind,
    pub schedule: Schedule,
}

/// A plan that failed to load: the file's name and the parser's message (with line and column).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read plan file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("plan file {path} is not valid (docs/plan.md describes it): {message}")]
    Parse { path: PathBuf, message: String },
}

impl Plan {
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, LoadError> {
        toml::from_str(text).map_err(|e| LoadError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    pub fn source(&self, name: &str) -> Option<&SourceDef> {
        self.sources.iter().find(|s| s.name == name)
    }

    /// The class and tier of a source, once [`check`] has passed.
    pub fn class_of(&self, source: &SourceDef) -> Option<(&Class, Option<&Tier>)> {
        let class = self.classes.get(&source.class)?;
        Some((class, self.tiers.get(&class.tier)))
    }

    /// A source's schedules, read in its time zone.
    pub fn schedules(&self, source: &SourceDef) -> Result<Vec<JobSchedule>, String> {
        let tz = source.timezone.as_deref().unwrap_or(&self.daemon.timezone);
        let mut out = Vec::new();
        let mut add = |job: JobKind, expr: &str| -> Result<(), String> {
            out.push(JobSchedule {
                job,
                schedule: Schedule::parse(expr, tz)?,
            });
            Ok(())
        };
        if let Some(s) = &source.schedule {
            let job = if source.kind == SourceKind::Postgres {
                JobKind::Full
            } else {
                JobKind::Backup
            };
            for expr in s.expressions() {
                add(job, expr)?;
            }
        }
        if let Some(b) = &source.base_backup {
            add(JobKind::Full, &b.full)?;
            if let Some(i) = &b.incremental {
                add(JobKind::Incremental, i)?;
            }
        }
        if let Some(d) = &source.drill {
            add(JobKind::Drill, d)?;
        }
        Ok(out)
    }

    /// A source's drill schedule (`drill = "…"`), read in its time zone; `None` without one.
    pub fn drill_schedule(&self, source: &SourceDef) -> Result<Option<Schedule>, String> {
        let tz = source.timezone.as_deref().unwrap_or(&self.daemon.timezone);
        source
            .drill
            .as_deref()
            .map(|expr| Schedule::parse(expr, tz))
            .transpose()
    }
}

impl SourceDef {
    /// The job `run` takes when none is named: a full base backup for PostgreSQL.
    pub fn default_job(&self) -> JobKind {
        if self.kind == SourceKind::Postgres {
            JobKind::Full
        } else {
            JobKind::Backup
        }
    }
}

#[cfg(test)]
mod tests;
