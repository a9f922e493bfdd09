//! One module per command: parse arguments, call the libraries, print.

pub mod audit;
pub mod audit_table;
pub mod backup;
pub mod check;
pub mod copy;
pub mod daemon;
pub mod diff;
pub mod drill;
pub mod dump;
pub mod find;
pub mod forget;
pub mod hold;
pub mod init;
pub mod key;
pub mod ls;
pub mod migrate;
pub mod mongo;
pub mod pg;
pub mod plan;
pub mod prune;
pub mod recovery_plan;
pub mod redis;
pub mod repair;
pub mod report;
pub mod restore;
pub mod run;
pub mod s3;
pub mod scylla;
pub mod snapshots;
pub mod stats;
pub mod status;

use crate::cli::{Cli, Command};
use crate::context::Context;
use crate::exit;

/// Run a command; returns the exit code for outcomes that are not errors (0, or 3 for a partial backup).
pub fn run(cli: Cli) -> anyhow::Result<u8> {
    let ctx = Context::new(cli.repository, cli.config.as_deref(), cli.json)?;
    let outcome = dispatch(&ctx, cli.command);
    for warning in ctx.audit.finish(&outcome, &ctx.audit_options) {
        eprintln!("warning: {warning}");
    }
    outcome
}

fn dispatch(ctx: &Context, command: Command) -> anyhow::Result<u8> {
    match command {
        Command::Init(args) => init::run(ctx, args),
        Command::Backup(args) => backup::run(ctx, args),
        Command::Snapshots(args) => snapshots::run(ctx, args),
        Command::Ls(args) => ls::run(ctx, args),
        Command::Restore(args) => restore::run(ctx, args),
        Command::Dump(args) => dump::run(ctx, args),
        Command::Check(args) => check::run(ctx, args),
        Command::Copy(args) => copy::run(ctx, args),
        Command::Key(args) => key::run(ctx, args),
        Command::Migrate(args) => migrate::run(ctx, args),
        Command::Pg(args) => pg::run(ctx, args),
        Command::Forget(args) => forget::run(ctx, args),
        Command::Prune(args) => prune::run(ctx, args),
        Command::Repair(args) => repair::run(ctx, args),
        Command::Hold(args) => hold::run(ctx, args),
        Command::Stats(args) => stats::run(ctx, args),
        Command::Status(args) => status::run(ctx, args),
        Command::Diff(args) => diff::run(ctx, args),
        Command::Find(args) => find::run(ctx, args),
        Command::Plan(args) => plan::run(ctx, args),
        Command::Run(args) => run::run(ctx, args),
        Command::Daemon(args) => daemon::run(ctx, args),
        Command::Audit(args) => audit::run(ctx, args),
        Command::AuditTable(args) => audit_table::run(ctx, args),
        Command::RecoveryPlan(args) => recovery_plan::run(ctx, args),
        Command::Report(args) => report::run(ctx, args),
        Command::Drill(args) => drill::run(ctx, args),
        Command::Redis(args) => redis::run(ctx, args),
        Command::Mongo(args) => mongo::run(ctx, args),
        Command::Scylla(args) => scylla::run(ctx, args),
        Command::S3(args) => s3::run(ctx, args),
    }
}

/// The exit of a restore command that compared the target with the snapshot's records: OK when
/// they match, otherwise the failure audited and said.
pub fn compared(ctx: &Context, matches: bool, message: &str) -> u8 {
    if matches {
        return exit::OK;
    }
    ctx.audit.error(message);
    eprintln!("error: {message}");
    exit::FATAL
}
