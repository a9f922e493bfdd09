//! Command-line definition.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::commands;
use crate::options::RepositoryOptions;

#[derive(Debug, Parser)]
#[command(
    name = "lifeline",
    version,
    about = "Encrypted, deduplicated, verifiable backups — and proof they come back"
)]
pub struct Cli {
    #[command(flatten)]
    pub repository: RepositoryOptions,

    /// TOML file holding the repository and key source (see docs/config.md)
    #[arg(long, env = "LIFELINE_CONFIG", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Machine-readable output; nothing else is printed to stdout
    #[arg(long, global = true)]
    pub json: bool,

    /// More log output (-v info, -vv debug)
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new repository
    Init(commands::init::Args),
    /// Back up files and directories, or a stream from stdin
    Backup(commands::backup::Args),
    /// List snapshots
    Snapshots(commands::snapshots::Args),
    /// The newest snapshot of every source and its age, incomplete snapshots, repository size
    Status(commands::status::Args),
    /// List the files in a snapshot
    Ls(commands::ls::Args),
    /// Restore a snapshot into a directory
    Restore(commands::restore::Args),
    /// Write one file of a snapshot to stdout
    Dump(commands::dump::Args),
    /// Verify the repository's structure and, optionally, its data
    Check(commands::check::Args),
    /// Copy snapshots to another repository (a second region), sending only what it lacks
    Copy(commands::copy::Args),
    /// Manage the passwords (key slots) that open the repository
    Key(commands::key::Args),
    /// Upgrade a format v1 repository to v2 (role-separated keys) in place
    Migrate(commands::migrate::Args),
    /// Remove snapshots by a retention policy (or by ID), and PostgreSQL WAL no kept backup needs
    Forget(commands::forget::Args),
    /// Free the space of data no snapshot references, safely while backups run
    Prune(commands::prune::Args),
    /// Repair what `check` reports: rebuild the index from the packs, rewrite snapshots without lost data
    Repair(commands::repair::Args),
    /// Legal holds: keep snapshots through every forget and prune
    Hold(commands::hold::Args),
    /// Sizes: what snapshots hold, what they take in the repository, per kind
    Stats(commands::stats::Args),
    /// What changed between two snapshots
    Diff(commands::diff::Args),
    /// Which snapshots hold a file or directory
    Find(commands::find::Args),
    /// The backup plan: check it, show what runs when
    Plan(commands::plan::Args),
    /// Run one job of the plan now: back up, verify, copy, apply retention (what a CronJob calls)
    Run(commands::run::Args),
    /// Run the plan's schedules; serve /metrics, the status page and /api/status
    Daemon(commands::daemon::Args),
    /// Restore drills: restore into a scratch target, prove it usable, measure RTO/RPO against the tier
    Drill(commands::drill::Args),
    /// PostgreSQL: WAL archiving, base backups, point-in-time recovery, logical dumps
    Pg(commands::pg::Args),
    /// Redis: lay out a snapshot's RDB and AOF, start a server on it and compare key counts
    Redis(commands::redis::Args),
    /// MongoDB: restore a snapshot with mongorestore and compare every collection with its records
    Mongo(commands::mongo::Args),
    /// ScyllaDB/Cassandra: load a cluster snapshot into a cluster and compare row counts
    Scylla(commands::scylla::Args),
    /// S3 buckets: put a snapshot's objects back into a bucket
    S3(commands::s3::Args),
    /// The audit trail: verify its chain and seals, read it
    Audit(commands::audit::Args),
    /// Audit-table exports: verify their hash chains
    AuditTable(commands::audit_table::Args),
    /// Every source's recovery point for a time, their skew, the restore commands in order
    RecoveryPlan(commands::recovery_plan::Args),
    /// The monthly compliance report, from the audit trail and drill records
    Report(commands::report::Args),
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap checks argument definitions only when a subcommand is first parsed; this checks them all.
    #[test]
    fn every_command_definition_is_valid() {
        super::Cli::command().debug_assert();
    }

    /// Every option of the retention and repair commands is explained in docs/retention.md.
    #[test]
    fn the_retention_guide_documents_every_option_of_forget_prune_hold_and_repair() {
        let guide = include_str!("../../../docs/retention.md");
        let cli = super::Cli::command();
        let mut stack: Vec<&clap::Command> = ["forget", "prune", "hold", "repair"]
            .iter()
            .filter_map(|name| cli.find_subcommand(name))
            .collect();
        assert_eq!(stack.len(), 4);
        while let Some(cmd) = stack.pop() {
            stack.extend(cmd.get_subcommands());
            for long in cmd.get_arguments().filter_map(|a| a.get_long()) {
                assert!(
                    guide.contains(&format!("--{long}")),
                    "docs/retention.md does not mention --{long} of `{}`",
                    cmd.get_name()
                );
            }
        }
    }
}
