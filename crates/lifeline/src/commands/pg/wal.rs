//! `pg wal-push` and `pg wal-fetch`: PostgreSQL's `archive_command` and `restore_command`.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use lifeline_repo::named::Stored;
use lifeline_sources::postgres::ahead;
use lifeline_sources::postgres::backup::default_jobs;
use lifeline_sources::postgres::prefetch::{self, Prefetch};
use lifeline_sources::postgres::wal::{self, Fetched};

use crate::context::Context;
use crate::exit;

#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// The WAL file (`%p`), relative to the data directory
    path: PathBuf,
    /// Data directory; PostgreSQL runs archive_command inside it
    #[arg(long, env = "PGDATA", value_name = "DIR", default_value = ".")]
    pgdata: PathBuf,
    /// Also store up to N more segments that wait for the archiver (.ready), so PostgreSQL's
    /// calls for them return at once (0: only the one asked for)
    #[arg(long, default_value_t = 16, value_name = "N")]
    ahead: usize,
    /// Segments stored in parallel [default: one per core]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    jobs: Option<u32>,
}

#[derive(Debug, clap::Args)]
pub struct FetchArgs {
    /// The WAL file name PostgreSQL asks for (`%f`)
    name: String,
    /// Where to write it (`%p`), relative to the data directory
    dest: PathBuf,
    /// Data directory; PostgreSQL runs restore_command inside it
    #[arg(long, env = "PGDATA", value_name = "DIR", default_value = ".")]
    pgdata: PathBuf,
    /// Keep up to N of the following segments fetched ahead in pg_wal/lifeline_prefetch by a
    /// background worker, so replay does not wait for the repository (0: fetch only the one asked)
    #[arg(long, default_value_t = prefetch::DEFAULT_DEPTH, value_name = "N")]
    prefetch: u64,
    /// Run as the background worker a wal-fetch starts
    #[arg(long, hide = true)]
    prefetch_worker: bool,
}

pub fn push(ctx: &Context, mut args: PushArgs) -> anyhow::Result<u8> {
    args.pgdata = wal::command_data_dir(&args.pgdata);
    // An earlier run stored this very file: nothing to open, nothing to send.
    if ahead::stored_ahead(&args.pgdata, &args.path) {
        tracing::info!("{} was archived ahead", args.path.display());
        return Ok(exit::OK);
    }
    let repo = ctx.open()?;
    repo.require_write("pg wal-push")?;
    let jobs = args.jobs.map_or_else(default_jobs, |j| j as usize);
    let (key, stored) = ahead::push(&repo, &args.pgdata, &args.path, args.ahead, jobs)?;
    match stored {
        Stored::New => tracing::info!("archived {key}"),
        Stored::AlreadyThere => tracing::info!("{key} was already archived with the same content"),
        Stored::Unverified => tracing::warn!(
            "{key} was already archived; a write-only credential cannot compare its content, so the stored copy stands"
        ),
    }
    Ok(exit::OK)
}

/// Exit 1 without a word when the file was never archived: PostgreSQL asks for files that may not
/// exist (the next timeline's history, the segment after the last one) and takes 1 as "not here".
/// Any other failure exits 126, which PostgreSQL treats as fatal: recovery stops at the damaged
/// object instead of ending early there and promoting a server that silently lacks later commits.
pub fn fetch(ctx: &Context, mut args: FetchArgs) -> anyhow::Result<u8> {
    args.pgdata = wal::command_data_dir(&args.pgdata);
    let queue = Prefetch::new(&args.pgdata, args.prefetch);
    if args.prefetch_worker {
        let repo = ctx.open()?;
        let fetched = queue.run(&repo, wal::system_identifier(&args.pgdata)?)?;
        tracing::info!("fetched {fetched} segment(s) ahead of {}", args.name);
        return Ok(exit::OK);
    }
    if let Some(bytes) = queue.take(&args.name, &args.pgdata.join(&args.dest)) {
        tracing::info!("restored {} ({bytes} bytes, fetched ahead)", args.name);
        fetch_ahead(&queue, &args.name, bytes);
        return Ok(exit::OK);
    }
    let fetched = ctx.open().and_then(|repo| {
        // Refused as every other failure is (exit 126): exit 13 would tell PostgreSQL the file
        // is not archived, and it would end recovery there and promote.
        repo.require_read("pg wal-fetch")?;
        Ok(wal::fetch(&repo, &args.pgdata, &args.name, &args.dest)?)
    });
    match fetched {
        Ok(Fetched::Written(bytes)) => {
            tracing::info!("restored {} ({bytes} bytes)", args.name);
            fetch_ahead(&queue, &args.name, bytes);
            Ok(exit::OK)
        }
        Ok(Fetched::NotArchived) => {
            // Recovery is ending or waiting for WAL not yet archived: nothing queued is needed.
            queue.clear();
            Ok(exit::FATAL)
        }
        Err(err) => {
            eprintln!("lifeline pg wal-fetch {}: error: {err:#}", args.name);
            if exit::code_for(&err) == exit::NOT_PERMITTED {
                eprintln!("  recovery must stop here: restore_command needs a `restore` or `admin` credential (`lifeline key list` shows each slot's role)");
            } else {
                eprintln!("  recovery must stop here: the archive cannot supply this file intact (`lifeline check --read-data` names every damaged WAL object, `lifeline pg status` what recovery can still reach)");
            }
            Ok(exit::RECOVERY_MUST_STOP)
        }
    }
}

/// Record the segment just restored and, when the segments after it are not all queued, start
/// the worker: this same command line again as a process of its own, so PostgreSQL's call returns
/// now. Fetching ahead only ever saves time; when it fails, PostgreSQL's calls fetch as before.
fn fetch_ahead(queue: &Prefetch, name: &str, segment_size: u64) {
    match queue.asked(name, segment_size) {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            tracing::warn!("not fetching ahead: {e}");
            return;
        }
    }
    let started = std::env::current_exe().and_then(|exe| {
        Command::new(exe)
            .args(std::env::args_os().skip(1))
            .arg("--prefetch-worker")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // In the startup process's group, as restore_command is: when the server stops, the
            // signal it sends that group stops the worker too (a half-written file is removed by
            // the next worker and never taken).
            .spawn()
    });
    match started {
        // Never waited for: it outlives this call by design, and init reaps it.
        #[allow(clippy::zombie_processes)]
        Ok(_worker) => {}
        Err(e) => tracing::warn!("not fetching ahead: cannot start the worker ({e})"),
    }
}
