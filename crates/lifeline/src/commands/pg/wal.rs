//! `pg wal-push` and `pg wal-fetch`: PostgreSQL's `archive_command` and `restore_command`.

use std::path::PathBuf;

use lifeline_repo::named::Stored;
use lifeline_sources::postgres::ahead;
use lifeline_sources::postgres::backup::default_jobs;
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
    let fetched = ctx.open().and_then(|repo| {
        // Refused as every other failure is (exit 126): exit 13 would tell PostgreSQL the file
        // is not archived, and it would end recovery there and promote.
        repo.require_read("pg wal-fetch")?;
        Ok(wal::fetch(&repo, &args.pgdata, &args.name, &args.dest)?)
    });
    match fetched {
        Ok(Fetched::Written(bytes)) => {
            tracing::info!("restored {} ({bytes} bytes)", args.name);
            Ok(exit::OK)
        }
        Ok(Fetched::NotArchived) => Ok(exit::FATAL),
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
