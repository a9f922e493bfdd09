//! `pg backup`: a physical base backup, full or (PostgreSQL 17+) block-incremental.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use lifeline_repo::snapshot::Snapshot;
use lifeline_repo::{Writer, DEFAULT_COMPRESSION};
use lifeline_sources::postgres::basebackup::{self, MANIFEST};
use lifeline_sources::postgres::catalog::{self, keys};
use lifeline_sources::postgres::{tools, vector};

use super::Pg;
use crate::commands::backup::human_bytes;
use crate::context::{print_json, Context};
use crate::exit;
use crate::options::parse_tag;
use crate::progress::Bar;

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
    let repo = ctx.open()?;
    let started = Instant::now();
    let mut client = tools::connect(&args.db)?;
    let info = basebackup::server_info(&mut client)?;
    if info.archive_mode == "off" {
        bail!(
            "WAL archiving is off on this server, so no backup could be recovered: set archive_mode = on and archive_command = 'lifeline --config FILE pg wal-push %p' (docs/postgres.md), then restart it"
        );
    }
    let tools = pg.tools(info.major);
    tools.check_version("pg_basebackup", info.major)?;

    let backups = catalog::base_backups(&repo)?;
    let previous = backups
        .iter()
        .rev()
        .find(|b| b.system_id == info.system_id)
        .cloned();
    let reader = repo.reader()?;
    let staging = tempfile::tempdir().context("cannot create a temporary directory")?;
    let incremental_from = if args.incremental {
        if info.major < 17 {
            bail!(
                "--incremental needs PostgreSQL 17 or later (this server is {}); take a full backup",
                info.version
            );
        }
        if !info.summarize_wal {
            bail!("--incremental needs summarize_wal = on on the server (ALTER SYSTEM SET summarize_wal = on; SELECT pg_reload_conf()), and a full backup taken after that");
        }
        let Some(parent) = &previous else {
            bail!("--incremental needs an earlier base backup of this cluster to build on; take a full backup first");
        };
        let manifest = catalog::read_root_file(&reader, parent.snapshot.tree, MANIFEST)?;
        let path = staging.path().join(MANIFEST);
        std::fs::write(&path, manifest).context("cannot stage the parent's manifest")?;
        Some((parent.id, path))
    } else {
        None
    };

    let start_time = server_now(&mut client)?;
    let total: i64 = client
        .query_one(
            "SELECT sum(pg_database_size(datname))::bigint FROM pg_database",
            &[],
        )
        .map(|r| r.get::<_, Option<i64>>(0).unwrap_or(0))
        .unwrap_or(0);
    let bar = Bar::new(ctx.json, Some(u64::try_from(total).unwrap_or(0)));
    let writer = Writer::new(&repo, None, DEFAULT_COMPRESSION)?;
    let taken = basebackup::take(
        &writer,
        &tools,
        &args.db,
        incremental_from.as_ref().map(|(_, p)| p.as_path()),
        &bar,
    )?;
    bar.finish();
    basebackup::wait_for_wal(
        &repo,
        info.system_id,
        &taken.range,
        info.wal_segment_size,
        Duration::from_secs(args.wal_timeout),
    )?;
    // Read after the backup is complete, so recovery to any later time or xid can start from it.
    let row = client
        .query_one(
            "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),
                    pg_snapshot_xmax(pg_current_snapshot())::text::bigint",
            &[],
        )
        .context("reading the server's clock and next transaction ID")?;
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
    snapshot.summary.files_new = snapshot.summary.files;
    snapshot.tags = args.tags.into_iter().collect();
    let source = &mut snapshot.source;
    let range = taken.range;
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
    source.insert("database_url".into(), tools::redact(&args.db));
    source.insert(
        keys::BACKUP_TYPE.into(),
        if incremental_from.is_some() {
            "incremental"
        } else {
            "full"
        }
        .into(),
    );
    if let Some((parent, _)) = &incremental_from {
        source.insert(keys::PARENT_BACKUP.into(), parent.to_hex());
        snapshot.parent = Some(parent.to_hex());
    }
    if !checks.is_empty() {
        source.insert(keys::PGVECTOR.into(), serde_json::to_string(&checks)?);
    }
    snapshot.summary.duration_ms = started.elapsed().as_millis() as u64;
    let (id, snapshot) = writer.finish(snapshot)?;

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
            "pgvector_tables": checks.len(),
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

fn server_now(client: &mut postgres::Client) -> anyhow::Result<String> {
    Ok(client
        .query_one(
            "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
            &[],
        )
        .context("reading the server's clock")?
        .get(0))
}
