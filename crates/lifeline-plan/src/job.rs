//! One job of one source, as the plan says: back up, verify, copy to every `[[copies]]` target, apply
//! the class's retention here and there. `lifeline run` and the daemon both come here; a failure at
//! any step is reported in the [`JobReport`], never panics, and never removes what a step needs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, SecondsFormat, Utc};
use lifeline_repo::retention::GroupBy;
use lifeline_repo::snapshot::SnapshotFilter;
use lifeline_repo::{Repository, Writer, DEFAULT_COMPRESSION};
use lifeline_sources::postgres::tools::Tools;
use lifeline_sources::source::{
    self, BaseBackupSource, CommandSource, DumpSource, FilesSource, Source,
};
use lifeline_sources::Progress;

use crate::forget::{forget, Selection};
use crate::open;
use crate::plan::{JobKind, Plan, SourceDef, SourceKind, Verify};
use crate::report::{CopyReport, JobReport, Outcome};

/// The tag that ties a snapshot to its plan source.
pub const SOURCE_TAG: &str = "source";

/// The filter that selects one plan source's snapshots.
pub fn source_filter(name: &str) -> SnapshotFilter {
    SnapshotFilter {
        tags: vec![(SOURCE_TAG.into(), name.into())],
        ..SnapshotFilter::default()
    }
}

/// The report of a job that has just started: labels from the plan, outcome success until a step
/// fails.
pub fn started_report(
    plan: &Plan,
    source: &str,
    job: JobKind,
    started: DateTime<Utc>,
) -> JobReport {
    let labels = crate::metrics::labels_of(plan, source);
    JobReport {
        source: source.into(),
        kind: labels.kind,
        class: labels.class,
        tier: labels.tier,
        job: job.as_str().into(),
        started: started.to_rfc3339_opts(SecondsFormat::Millis, true),
        finished: String::new(),
        duration_seconds: 0.0,
        outcome: Outcome::Success,
        message: None,
        snapshot: None,
        bytes: 0,
        bytes_added: 0,
        copies: Vec::new(),
        forgotten: 0,
        verified: None,
    }
}

/// Run `job` of `source` now. `pg_bin` overrides `[postgres] bin_dir`.
pub fn run(
    plan: &Plan,
    source: &SourceDef,
    job: JobKind,
    pg_bin: Option<&Path>,
    progress: &dyn Progress,
) -> JobReport {
    let started = Utc::now();
    let clock = Instant::now();
    let class = plan.class_of(source).map(|(c, _)| c);
    let mut report = started_report(plan, &source.name, job, started);
    let bin_dir = pg_bin
        .map(Path::to_path_buf)
        .or_else(|| plan.postgres.bin_dir.clone());
    // What the steps opened, for the audit records written once the job's outcome is known.
    let mut opened: Option<Repository> = None;
    let mut copies_opened: Vec<Repository> = Vec::new();
    let steps = || -> anyhow::Result<()> {
        let repo = open::open(&plan.repository)?;
        opened = Some(repo.clone());
        repo.require_write("a backup")?;
        // A write-only credential stores backups but opens none: what it cannot do is said
        // below, step by step, instead of failing the backup it did store.
        let reads = repo.can_read_backups();
        let capturer = build(source, job, bin_dir)?;
        let writer = Writer::new(&repo, None, DEFAULT_COMPRESSION)?;
        let captured = capturer
            .capture(&repo, &writer, progress)
            .with_context(|| format!("backup of source {}", source.name))?;
        let mut snapshot = captured.snapshot;
        snapshot.tags.insert(SOURCE_TAG.into(), source.name.clone());
        for (k, v) in &source.tags {
            snapshot.tags.insert(k.clone(), v.clone());
        }
        snapshot.summary.duration_ms = clock.elapsed().as_millis() as u64;
        let (id, snapshot, packs) = writer.finish_with_packs(snapshot)?;
        report.snapshot = Some(id.to_hex());
        report.bytes = snapshot.summary.bytes;
        report.bytes_added = snapshot.summary.data_added;
        if !snapshot.errors.is_empty() {
            report.outcome = Outcome::Partial;
            report.message = Some(format!(
                "{} item(s) could not be read or changed while read; the snapshot records them",
                snapshot.errors.len()
            ));
        }
        if class.map(|c| c.verify) == Some(Verify::Snapshot) && reads {
            let verified = source::verify(&repo, &snapshot);
            report.verified = Some(verified.is_ok());
            verified.with_context(|| format!("verification of snapshot {}", id.short()))?;
        } else if class.map(|c| c.verify) == Some(Verify::Snapshot) {
            // What a write-only credential can prove: every pack it uploaded is stored intact.
            // Whether the snapshot restores is for a drill with a `restore` credential to show.
            if let Some(p) = lifeline_repo::check::verify_stored(&repo, &packs).first() {
                report.verified = Some(false);
                anyhow::bail!(
                    "verification of snapshot {}: {}: {}",
                    id.short(),
                    p.object,
                    p.detail
                );
            }
            tracing::info!(
                "snapshot {}: its {} new pack(s) are stored intact; a `backup` credential cannot decrypt them, so a drill proves it restorable",
                id.short(),
                packs.len()
            );
        }
        let mut failed_copies = Vec::new();
        // Opened once: retention below works in the same copies (each open derives a key).
        let mut reached = Vec::new();
        for target in &plan.copies {
            let url = target.url.clone().unwrap_or_default();
            let copied = repo
                .require_read("copying to [[copies]]")
                .map_err(anyhow::Error::from)
                .and_then(|()| copy_to(&repo, target, &id));
            match copied {
                Ok((c, dst)) => {
                    copies_opened.push(dst.clone());
                    reached.push((c.target.clone(), dst));
                    report.copies.push(c);
                }
                Err(e) => {
                    failed_copies.push(format!("copy to {url}: {e:#}"));
                    report.copies.push(CopyReport {
                        target: url,
                        ok: false,
                        snapshots: 0,
                        bytes_added: 0,
                        message: Some(format!("{e:#}")),
                    });
                }
            }
        }
        let retention = class.and_then(|c| c.retention.as_ref());
        if retention.is_some() && !reads {
            // Retention reads every snapshot of the source, and a backup host should not delete.
            tracing::info!(
                "retention not applied: a `backup` credential cannot read snapshots; run `lifeline forget` by policy with a `restore` credential"
            );
        }
        if let Some(retention) = retention.filter(|_| reads) {
            let filter = source_filter(&source.name);
            let group_by = GroupBy::default();
            let forgotten = forget(
                &repo,
                &Selection::Policy(retention),
                &filter,
                group_by,
                retention.keep_verified,
                false,
            )
            .context("retention")?;
            report.forgotten = forgotten.plan.removed().len();
            // A copy keeps what the primary keeps, so the second region does not grow forever.
            for (url, dst) in &reached {
                forget(
                    dst,
                    &Selection::Policy(retention),
                    &filter,
                    group_by,
                    retention.keep_verified,
                    false,
                )
                .with_context(|| format!("retention in copy {url}"))?;
            }
        }
        if !failed_copies.is_empty() {
            anyhow::bail!("{}", failed_copies.join("; "));
        }
        Ok(())
    };
    if let Err(e) = steps() {
        report.outcome = Outcome::Failure;
        report.message = Some(format!("{e:#}"));
    }
    let finished = Utc::now();
    report.finished = finished.to_rfc3339_opts(SecondsFormat::Millis, true);
    report.duration_seconds = clock.elapsed().as_secs_f64();
    if let Some(repo) = &opened {
        let retention =
            class.and_then(|c| c.retention.as_ref()).is_some() && repo.can_read_backups();
        for warning in
            crate::audit::record_job(repo, &copies_opened, &report, retention, &plan.audit)
        {
            tracing::warn!("{warning}");
        }
    }
    report
}

/// The source contract's implementation for a plan source.
pub(crate) fn build(
    source: &SourceDef,
    job: JobKind,
    bin_dir: Option<PathBuf>,
) -> anyhow::Result<Box<dyn Source>> {
    let tools = move |major: u32| Tools::for_server(bin_dir.as_deref(), major);
    let missing = |key: &str| {
        anyhow::anyhow!(
            "source {} has no {key}; run `lifeline plan check`",
            source.name
        )
    };
    Ok(match source.kind {
        SourceKind::Files => {
            let mut paths = source.paths.clone();
            paths.sort();
            paths.dedup();
            Box::new(FilesSource {
                paths,
                exclusions: source.exclude.exclusions()?,
                host: lifeline_repo::hostname(),
                force: false,
            })
        }
        SourceKind::Command => Box::new(CommandSource {
            command: source.command.clone().ok_or_else(|| missing("command"))?,
            filename: source
                .filename
                .clone()
                .unwrap_or_else(|| source.name.clone()),
            timeout: source.timeout,
        }),
        SourceKind::PostgresDump => Box::new(DumpSource {
            url: source.db.clone().ok_or_else(|| missing("db"))?,
            schemas: source.schemas.clone(),
            jobs: source.jobs.unwrap_or(1),
            tools: Box::new(tools),
        }),
        SourceKind::Postgres => Box::new(BaseBackupSource {
            url: source.db.clone().ok_or_else(|| missing("db"))?,
            incremental: job == JobKind::Incremental,
            wal_timeout: source.wal_timeout.unwrap_or(Duration::from_secs(300)),
            mode: source.mode.unwrap_or_default(),
            jobs: source
                .jobs
                .map_or_else(lifeline_sources::postgres::backup::default_jobs, |j| {
                    j as usize
                }),
            tools: Box::new(tools),
        }),
        SourceKind::Config => Box::new(lifeline_sources::config::ConfigSource {
            env: source.env.clone(),
            secrets: source.secrets.unwrap_or_default(),
            redact: source.redact.clone(),
            paths: source.paths.clone(),
        }),
        SourceKind::Redis => Box::new(lifeline_sources::redis::RedisSource {
            connect: lifeline_sources::redis::ConnectOptions::new(
                source.url.as_deref().ok_or_else(|| missing("url"))?,
                source.password_file.as_deref(),
                source.tls_ca_file.clone(),
            )?,
            aof_dir: source.aof_dir.clone(),
            server_program: lifeline_sources::redis::server::default_program(),
        }),
        SourceKind::Mongodb => Box::new(lifeline_sources::mongodb::MongoSource {
            uri: source.url.clone().ok_or_else(|| missing("url"))?,
            password_file: source.password_file.clone(),
        }),
        SourceKind::Scylla => Box::new(lifeline_sources::scylla::ScyllaSource {
            nodes: source.nodes.clone(),
            cql_port: source.cql_port.unwrap_or(9042),
            keyspaces: source.keyspaces.clone(),
            tools: lifeline_sources::scylla::Tools::from_env(),
        }),
        SourceKind::AuditTable => Box::new(lifeline_sources::audit_export::AuditTableSource {
            url: source.db.clone().ok_or_else(|| missing("db"))?,
            chain: source.name.clone(),
            table: source.table.clone().ok_or_else(|| missing("table"))?,
            watermark: source
                .watermark
                .clone()
                .ok_or_else(|| missing("watermark"))?,
            format: source.format.unwrap_or_default(),
            timeout: source
                .timeout
                .unwrap_or(lifeline_sources::audit_export::export::DEFAULT_TIMEOUT),
        }),
        SourceKind::S3 => Box::new(lifeline_sources::s3::S3Source {
            url: source.bucket.clone().ok_or_else(|| missing("bucket"))?,
            settings: source.s3.clone().unwrap_or_default(),
        }),
    })
}

/// Copy one snapshot, and the WAL PostgreSQL backups need, to a `[[copies]]` target opened with its
/// own URL, key and S3 settings. Returns the opened target too, for retention there.
fn copy_to(
    repo: &Repository,
    target: &crate::options::RepositoryOptions,
    id: &lifeline_repo::Id,
) -> anyhow::Result<(CopyReport, Repository)> {
    let url = target.location()?.to_string();
    let dst = open::open(target).with_context(|| format!("cannot open copy target {url}"))?;
    let outcome = lifeline_repo::copy::copy(repo, &dst, std::slice::from_ref(id))?;
    lifeline_sources::postgres::retention::copy_wal(repo, &dst)?;
    let report = CopyReport {
        target: url,
        ok: true,
        snapshots: outcome.copied.len(),
        bytes_added: outcome.data_added,
        message: None,
    };
    Ok((report, dst))
}
