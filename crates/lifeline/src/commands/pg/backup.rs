//! `pg backup`: a physical base backup, full or incremental, read file by file on the database host
//! or streamed through `pg_basebackup`.

use std::time::{Duration, Instant};

use lifeline_repo::{Writer, DEFAULT_COMPRESSION};
use lifeline_sources::postgres::backup::{self, BackedUp, BackupRequest, Mode};
use lifeline_sources::postgres::catalog::keys;
use lifeline_sources::postgres::tools::redact;

use super::Pg;
use crate::commands::backup::human_bytes;
use crate::context::{print_json, Context};
use crate::exit;
use crate::options::parse_tag;
use crate::progress::Bar;
use crate::recorder;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Server to back up: a libpq URL whose role may replicate (postgresql://backup@host/postgres)
    #[arg(long, env = "LIFELINE_PG_DB", value_name = "URL")]
    db: String,

    /// Read only what changed since the newest base backup: in file mode the files whose size or
    /// times changed (any version); streamed, the blocks WAL summaries name (PostgreSQL 17+ with
    /// summarize_wal = on, and restore combines the chain)
    #[arg(long)]
    incremental: bool,

    /// files: read the data directory on this host (it must be the server's, and readable);
    /// stream: pg_basebackup, from any host; auto: files when possible
    #[arg(long, value_enum, default_value_t = ModeArg::Auto)]
    mode: ModeArg,

    /// Files read in parallel in file mode [default: one per core]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    jobs: Option<u32>,

    /// How long to wait for the WAL the backup needs to reach the repository
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    wal_timeout: u64,

    /// Tag the snapshot (repeatable)
    #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = parse_tag)]
    tags: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ModeArg {
    Auto,
    Files,
    Stream,
}

pub fn run(ctx: &Context, pg: &Pg, args: Args) -> anyhow::Result<u8> {
    ctx.audit.begin("pg backup", redact(&args.db));
    ctx.audit.detail("kind", "postgres");
    ctx.audit.detail(
        "job",
        if args.incremental {
            "incremental"
        } else {
            "full"
        },
    );
    if let Some((_, source)) = args.tags.iter().find(|(k, _)| k == "source") {
        ctx.audit.detail("source", source);
    }
    let repo = ctx.open()?;
    repo.require_write("pg backup")?;
    let started = Instant::now();
    let writer = Writer::new(&repo, None, DEFAULT_COMPRESSION)?;
    let bar = Bar::new(ctx.json, None);
    let request = BackupRequest {
        url: &args.db,
        incremental: args.incremental,
        wal_timeout: Duration::from_secs(args.wal_timeout),
        mode: match args.mode {
            ModeArg::Auto => Mode::Auto,
            ModeArg::Files => Mode::Files,
            ModeArg::Stream => Mode::Stream,
        },
        jobs: args.jobs.map_or_else(backup::default_jobs, |j| j as usize),
    };
    let backed_up = backup::backup(&repo, &writer, &request, &|major| pg.tools(major), &bar);
    bar.finish();
    let BackedUp {
        mut snapshot,
        info,
        range,
        vector_checks,
    } = backed_up.map_err(repo_errors)?;
    snapshot.tags = args.tags.into_iter().collect();
    snapshot.summary.duration_ms = started.elapsed().as_millis() as u64;
    let (id, snapshot) = writer.finish(snapshot)?;
    ctx.audit.touch(recorder::Wrote, "snapshot", id.to_hex());
    ctx.audit.detail("bytes_added", snapshot.summary.data_added);

    let s = &snapshot.summary;
    if ctx.json {
        print_json(&serde_json::json!({
            "snapshot_id": id.to_hex(),
            "short_id": id.short(),
            "system_id": info.system_id.to_string(),
            "server_version": info.version,
            "backup_type": snapshot.source.get(keys::BACKUP_TYPE),
            "backup_mode": snapshot.source.get(keys::BACKUP_MODE),
            "files_read": s.files_new + s.files_changed,
            "files_reused": s.files_unmodified,
            "timeline": range.timeline,
            "start_lsn": range.start.to_string(),
            "stop_lsn": range.stop.to_string(),
            "files": s.files,
            "bytes": s.bytes,
            "data_added": s.data_added,
            "duration_ms": s.duration_ms,
            "pgvector_tables": vector_checks,
        }))?;
    } else {
        println!(
            "base backup of cluster {} (PostgreSQL {}), timeline {}, WAL {} – {}",
            info.system_id, info.version, range.timeline, range.start, range.stop
        );
        let mode = snapshot
            .source
            .get(keys::BACKUP_MODE)
            .map_or("stream", String::as_str);
        let reused = if s.files_unmodified > 0 {
            format!(" ({} unchanged, not read)", s.files_unmodified)
        } else {
            String::new()
        };
        println!(
            "{} files{reused}, {}, read as {mode}; added to the repository: {} in {:.1} s",
            s.files,
            human_bytes(s.bytes),
            human_bytes(s.data_added),
            s.duration_ms as f64 / 1000.0
        );
        println!("snapshot {} saved", id.short());
    }
    Ok(exit::OK)
}

/// Repository errors as themselves, so the exit code and the `--json` hint can name them.
pub(super) fn repo_errors(err: lifeline_sources::postgres::Error) -> anyhow::Error {
    match err {
        lifeline_sources::postgres::Error::Repo(e) => e.into(),
        e => e.into(),
    }
}
