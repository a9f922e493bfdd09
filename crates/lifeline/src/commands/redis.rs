//! `lifeline redis …`: Redis snapshots (taken by `lifeline run` from a plan source of kind redis).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Subcommand;
use lifeline_sources::redis::compare::{self, Verdict};
use lifeline_sources::redis::restore::{self, LoadFrom};
use lifeline_sources::redis::server::{self, StartRequest};

use crate::commands::backup::human_bytes;
use crate::context::{print_json, Context};
use crate::exit;
use crate::options::SnapshotFilterArgs;
use crate::progress::Bar;
use crate::recorder;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: RedisCommand,
}

#[derive(Debug, Subcommand)]
enum RedisCommand {
    /// Lay out a snapshot's dump.rdb (and AOF directory) for redis-server; --start runs one on it
    Restore(RestoreArgs),
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// Snapshot ID prefix, or `latest` (with --tag source=NAME to pick a source)
    snapshot: String,

    /// Directory to write dump.rdb (and the AOF directory) into; created when missing, and must
    /// not already hold them
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,

    /// Start redis-server on a free loopback port with DIR, wait until it has loaded, compare its
    /// key counts with the snapshot's, and leave it running
    #[arg(long)]
    start: bool,

    /// The redis-server to start (default: $LIFELINE_REDIS_SERVER, else redis-server on PATH)
    #[arg(long, value_name = "PATH", requires = "start")]
    redis_server: Option<PathBuf>,

    /// What the started server loads: the RDB, or the AOF directory (default: the AOF when the
    /// snapshot has one, as Redis itself prefers it)
    #[arg(long, value_enum, requires = "start")]
    from: Option<From>,

    /// How long --start waits for the server to load
    #[arg(
        long,
        default_value_t = 600,
        value_name = "SECONDS",
        requires = "start"
    )]
    start_timeout: u64,

    #[command(flatten)]
    filter: SnapshotFilterArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum From {
    Rdb,
    Aof,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    match args.command {
        RedisCommand::Restore(a) => restore(ctx, a),
    }
}

/// Library errors with the repository's own error on top, so its exit codes apply.
fn repo_errors(err: lifeline_sources::redis::Error) -> anyhow::Error {
    match err {
        lifeline_sources::redis::Error::Repo(e) => e.into(),
        e => e.into(),
    }
}

fn restore(ctx: &Context, args: RestoreArgs) -> anyhow::Result<u8> {
    let clock = Instant::now();
    // Before the repository is opened, so a taken directory is refused before a password is asked.
    restore::check_target(&args.dir, None).map_err(repo_errors)?;
    ctx.audit
        .begin("redis restore", args.dir.display().to_string());
    let repo = ctx.open()?;
    repo.require_read("redis restore")?;
    let (id, snapshot) = repo.find_snapshot_filtered(&args.snapshot, &args.filter.filter())?;
    if snapshot.kind != lifeline_sources::redis::KIND {
        bail!(
            "snapshot {} is of kind {:?}, not redis; pick a redis snapshot (lifeline snapshots --tag source=NAME)",
            id.short(),
            snapshot.kind
        );
    }
    ctx.audit.touch(recorder::Read, "snapshot", id.to_hex());
    let reader = repo.reader()?;
    let bar = Bar::new(ctx.json, Some(snapshot.summary.bytes));
    let laid = restore::lay_out(&reader, &snapshot, &args.dir, &bar);
    bar.finish();
    let laid = laid.map_err(repo_errors)?;
    let mut report = serde_json::json!({
        "snapshot": id.to_hex(),
        "time": snapshot.time,
        "dir": laid.dir,
        "files": laid.files,
        "bytes": laid.bytes,
        "aof_dir": laid.aof.as_ref().map(|a| laid.dir.join(&a.dir_name)),
    });
    if !ctx.json {
        println!(
            "restored redis snapshot {} ({}) into {}: {} file(s), {}",
            id.short(),
            snapshot.time,
            laid.dir.display(),
            laid.files,
            human_bytes(laid.bytes)
        );
    }
    if !args.start {
        if ctx.json {
            print_json(&report)?;
        } else {
            println!(
                "start it with: redis-server --dir {} --dbfilename dump.rdb{}",
                laid.dir.display(),
                laid.aof
                    .as_ref()
                    .map(|a| format!(
                        " (or, from the AOF: --appendonly yes --appenddirname {} --appendfilename {})",
                        a.dir_name,
                        a.append_filename()
                    ))
                    .unwrap_or_default()
            );
        }
        return Ok(exit::OK);
    }

    let from = match (args.from, &laid.aof) {
        (Some(From::Aof), None) => bail!(
            "--from aof: snapshot {} holds no AOF directory (its source had no aof_dir); use --from rdb",
            id.short()
        ),
        (Some(From::Aof), Some(_)) | (None, Some(_)) => LoadFrom::Aof,
        (Some(From::Rdb), _) | (None, None) => LoadFrom::Rdb,
    };
    let expected = restore::expected(&snapshot, from).map_err(repo_errors)?;
    let program = args.redis_server.unwrap_or_else(server::default_program);
    ctx.audit.detail("start", from.as_str());
    let running = server::start(&StartRequest {
        program: &program,
        dir: &laid.dir,
        aof: if from == LoadFrom::Aof {
            laid.aof.as_ref()
        } else {
            None
        },
        timeout: Duration::from_secs(args.start_timeout),
        databases: server::databases_for(&expected.counts),
    })
    .map_err(repo_errors)?;
    let found = running.key_counts().map_err(repo_errors)?;
    let compared = compare::compare(&expected.counts, &found);
    let matches = compare::matches(&compared);
    let (port, log) = (running.port, running.log.clone());
    let pid = running.detach();
    report["started"] = serde_json::json!({
        "from": from.as_str(),
        "port": port,
        "pid": pid,
        "log": log,
        "program": program,
    });
    report["counts_exact"] = expected.exact.into();
    report["comparison"] = serde_json::to_value(&compared)?;
    report["matches"] = matches.into();
    report["restore_ms"] = (clock.elapsed().as_millis() as u64).into();
    if ctx.json {
        print_json(&report)?;
    } else {
        println!(
            "redis-server (pid {pid}) loaded the {} on 127.0.0.1:{port}; log {}",
            from.as_str(),
            log.display()
        );
        if compared.is_empty() {
            println!("  no keys recorded, none loaded");
        }
        for c in &compared {
            let mark = match c.verdict {
                Verdict::Equal => "ok  ",
                Verdict::ExpiredSince => "ok  ",
                Verdict::Differ => "DIFF",
            };
            println!("  {mark} {}", c.describe());
        }
        println!(
            "it keeps running: connect with `redis-cli -p {port}`, stop it with `redis-cli -p {port} shutdown nosave` (or kill {pid})"
        );
    }
    if matches {
        return Ok(exit::OK);
    }
    if !expected.exact {
        eprintln!(
            "warning: the key counts differ, but the snapshot's counts for the {} are approximate (the server took writes while it was read)",
            from.as_str()
        );
        return Ok(exit::OK);
    }
    let message = "the restored server's key counts differ from the snapshot's";
    ctx.audit.error(message);
    eprintln!("error: {message}");
    Ok(exit::FATAL)
}
