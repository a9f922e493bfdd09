//! `lifeline pg …`: PostgreSQL WAL archiving, base backups, point-in-time recovery and logical dumps.

pub mod backup;
pub mod dump;
pub mod receive;
pub mod restore;
pub mod status;
pub mod verify;
pub mod wal;

use std::path::{Path, PathBuf};

use clap::Subcommand;

use crate::context::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory of PostgreSQL's client programs (pg_basebackup, pg_dump, …); by default the ones
    /// matching the server's major version
    #[arg(long, env = "LIFELINE_PG_BIN", global = true, value_name = "DIR")]
    pg_bin: Option<PathBuf>,

    #[command(subcommand)]
    command: PgCommand,
}

#[derive(Debug, Subcommand)]
enum PgCommand {
    /// Archive one WAL file: archive_command = 'lifeline --config FILE pg wal-push %p'
    WalPush(wal::PushArgs),
    /// Restore one WAL file: restore_command = 'lifeline --config FILE pg wal-fetch %f %p'
    WalFetch(wal::FetchArgs),
    /// Stream WAL on a replication slot (pg_receivewal) and store it as it arrives, the segment in
    /// progress every few seconds, until SIGTERM or SIGINT
    ReceiveWal(receive::Args),
    /// Physical base backup (pg_basebackup), full or --incremental
    Backup(backup::Args),
    /// Point-in-time recovery into a new data directory
    Restore(restore::Args),
    /// Base backups, archived WAL per timeline, gaps, RPO now and the PITR window
    Status(status::Args),
    /// Logical dump (pg_dump directory format) with row counts taken in the same snapshot
    Dump(dump::DumpArgs),
    /// Restore a logical dump with pg_restore and compare row counts and pgvector answers
    RestoreDump(dump::RestoreDumpArgs),
    /// Compare a live database with a PostgreSQL snapshot's row counts and pgvector answers
    Verify(verify::VerifyArgs),
}

/// Settings every `pg` command shares.
pub struct Pg<'a> {
    bin_dir: Option<&'a Path>,
}

impl Pg<'_> {
    /// The client programs for a server of `major` version.
    pub fn tools(&self, major: u32) -> lifeline_sources::postgres::tools::Tools {
        lifeline_sources::postgres::tools::Tools::for_server(self.bin_dir, major)
    }
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    let pg = Pg {
        bin_dir: args.pg_bin.as_deref().or(ctx.postgres.bin_dir.as_deref()),
    };
    match args.command {
        PgCommand::WalPush(a) => wal::push(ctx, a),
        PgCommand::WalFetch(a) => wal::fetch(ctx, a),
        PgCommand::ReceiveWal(a) => receive::run(ctx, &pg, a),
        PgCommand::Backup(a) => backup::run(ctx, &pg, a),
        PgCommand::Restore(a) => restore::run(ctx, &pg, a),
        PgCommand::Status(a) => status::run(ctx, a),
        PgCommand::Dump(a) => dump::run_dump(ctx, &pg, a),
        PgCommand::RestoreDump(a) => dump::run_restore_dump(ctx, &pg, a),
        PgCommand::Verify(a) => verify::run(ctx, a),
    }
}
