//! `pg backup`: a physical base backup, full or (PostgreSQL 17+) block-incremental.

use std::time::{Duration, Instant};

use lifeline_repo::{Writer, DEFAULT_COMPRESSION};
use lifeline_sources::postgres::backup::{self, BackedUp, BackupRequest};
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

    /// Copy only blocks changed since the newest base backup, from WAL summaries (PostgreSQL 17+
    /// with summarize_wal = on); restore combines the chain
    #[arg(long)]
    incremental: bool,

    /// How long to wait for the WAL the backup needs to reach the repository
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    wal_timeout: u64,

    /// Tag the snapshot (repeatable)
    #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = parse_tag)]
    tags: Vec<(String, String)>,
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
        println!(
            "{} files, {}; added to the repository: {} in {:.1} s",
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
