//! `pg dump` and `pg restore-dump`: logical dumps with row counts and pgvector answers recorded in the
//! dump's own snapshot, and restores that prove they brought the same data back.

use std::time::Instant;

use anyhow::Context as _;
use lifeline_repo::{Writer, DEFAULT_COMPRESSION};
use lifeline_sources::postgres::dump::{self, DumpRequest, Recorded};
use lifeline_sources::postgres::tools::redact;

use super::verify::{find_snapshot, report};
use super::Pg;
use crate::commands::backup::human_bytes;
use crate::context::{print_json, Context};
use crate::exit;
use crate::options::{parse_tag, SnapshotFilterArgs};
use crate::progress::Bar;
use crate::recorder;

#[derive(Debug, clap::Args)]
pub struct DumpArgs {
    /// The database to dump: a libpq URI (postgresql://user:password@host:port/db) or key=value string
    #[arg(long, value_name = "URL")]
    db: String,

    /// Schema to dump (repeatable); every non-system schema when none is given
    #[arg(long = "schema", value_name = "SCHEMA")]
    schemas: Vec<String>,

    /// pg_dump worker processes (each holds one connection)
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=128))]
    jobs: u32,

    /// Tag the snapshot (repeatable)
    #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = parse_tag)]
    tags: Vec<(String, String)>,
}

#[derive(Debug, clap::Args)]
pub struct RestoreDumpArgs {
    /// Snapshot ID prefix, or `latest` (the newest postgres-dump snapshot)
    snapshot: String,

    /// The database to restore into; it should be empty (pg_restore runs without --clean)
    #[arg(long, value_name = "URL")]
    db: String,

    /// pg_restore worker processes (each holds one connection)
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=128))]
    jobs: u32,

    #[command(flatten)]
    filter: SnapshotFilterArgs,
}

pub fn run_dump(ctx: &Context, pg: &Pg, args: DumpArgs) -> anyhow::Result<u8> {
    let started = Instant::now();
    // The data is as of the exported snapshot, taken right at the start.
    let start_time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    ctx.audit.begin("pg dump", redact(&args.db));
    ctx.audit.detail("kind", dump::KIND);
    if let Some((_, source)) = args.tags.iter().find(|(k, _)| k == "source") {
        ctx.audit.detail("source", source);
    }
    let repo = ctx.open()?;
    repo.require_write("pg dump")?;
    let writer = Writer::new(&repo, None, DEFAULT_COMPRESSION)?;
    let bar = Bar::new(ctx.json, None);
    let request = DumpRequest {
        url: &args.db,
        schemas: &args.schemas,
        jobs: args.jobs,
    };
    let dumped = dump::dump(&writer, &request, &|major| pg.tools(major), &bar);
    bar.finish();
    let mut dumped = dumped.with_context(|| format!("cannot dump {}", redact(&args.db)))?;
    dumped.snapshot.time = start_time;
    dumped.snapshot.tags = args.tags.into_iter().collect();
    dumped.snapshot.summary.duration_ms = started.elapsed().as_millis() as u64;
    let (id, snapshot) = writer.finish(dumped.snapshot)?;
    ctx.audit.touch(recorder::Wrote, "snapshot", id.to_hex());
    ctx.audit.detail("bytes_added", snapshot.summary.data_added);

    let s = &snapshot.summary;
    let field = |key: &str| snapshot.source.get(key).cloned().unwrap_or_default();
    if ctx.json {
        print_json(&serde_json::json!({
            "snapshot_id": id.to_hex(),
            "short_id": id.short(),
            "database": field(dump::source::DATABASE),
            "schemas": field(dump::source::SCHEMAS),
            "server_version": field(dump::source::SERVER_VERSION),
            "tables": dumped.tables,
            "rows": dumped.rows,
            "pgvector_checks": dumped.vector_checks,
            "files": s.files,
            "bytes": s.bytes,
            "data_added": s.data_added,
            "duration_ms": s.duration_ms,
        }))?;
    } else {
        println!(
            "snapshot {} saved: database {} ({} tables, {} rows, {} pgvector checks), {} dumped, {} added in {:.1} s",
            id.short(),
            field(dump::source::DATABASE),
            dumped.tables,
            dumped.rows,
            dumped.vector_checks,
            human_bytes(s.bytes),
            human_bytes(s.data_added),
            s.duration_ms as f64 / 1000.0
        );
    }
    Ok(exit::OK)
}

pub fn run_restore_dump(ctx: &Context, pg: &Pg, args: RestoreDumpArgs) -> anyhow::Result<u8> {
    ctx.audit.begin("pg restore-dump", redact(&args.db));
    let repo = ctx.open()?;
    repo.require_read("pg restore-dump")?;
    let (id, snap) = find_snapshot(
        &repo,
        &args.snapshot,
        &[dump::KIND],
        "pg restore-dump",
        &args.filter,
    )?;
    ctx.audit.touch(recorder::Read, "snapshot", id.to_hex());
    // Read before restoring: a damaged record should stop us before the target is touched.
    let recorded = Recorded::from_source(&snap.source)?;
    let reader = repo.reader()?;
    let bar = Bar::new(ctx.json, Some(snap.summary.bytes));
    let restored = dump::restore(
        &reader,
        &snap,
        &args.db,
        args.jobs,
        &|major| pg.tools(major),
        &bar,
    );
    bar.finish();
    let bytes = restored.with_context(|| {
        format!(
            "cannot restore snapshot {} into {}",
            id.short(),
            redact(&args.db)
        )
    })?;
    if !ctx.json {
        println!(
            "restored snapshot {} ({}) into {}",
            id.short(),
            human_bytes(bytes),
            redact(&args.db)
        );
    }
    let verification = dump::verify(&args.db, &recorded)
        .with_context(|| format!("cannot verify {}", redact(&args.db)))?;
    report(ctx, &id, &verification)
}
