//! `lifeline scylla …`: ScyllaDB/Cassandra cluster snapshots (taken by `lifeline run` from a plan
//! source of kind scylla).

use clap::Subcommand;
use lifeline_sources::scylla::restore::{self, RestoreRequest};
use lifeline_sources::scylla::Tools;

use crate::commands::backup::human_bytes;
use crate::context::{print_json, Context};
use crate::options::SnapshotFilterArgs;
use crate::progress::Bar;
use crate::recorder;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: ScyllaCommand,
}

#[derive(Debug, Subcommand)]
enum ScyllaCommand {
    /// Recreate the snapshot's keyspaces on a cluster, stream every node's SSTables in with
    /// sstableloader, and compare every table's rows with the snapshot's records
    Restore(RestoreArgs),
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// Snapshot ID prefix, or `latest` (with --tag source=NAME to pick a source)
    snapshot: String,

    /// A node of the target cluster (its CQL address; `--host` filters snapshots)
    #[arg(long, value_name = "HOST")]
    node: String,

    /// The target's CQL port
    #[arg(long, default_value_t = 9042, value_name = "PORT")]
    cql_port: u16,

    /// The target's storage (inter-node) port, when it is not 7000
    #[arg(long, value_name = "PORT")]
    storage_port: Option<u16>,

    #[command(flatten)]
    filter: SnapshotFilterArgs,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    match args.command {
        ScyllaCommand::Restore(a) => restore(ctx, a),
    }
}

fn repo_errors(err: lifeline_sources::scylla::Error) -> anyhow::Error {
    match err {
        lifeline_sources::scylla::Error::Repo(e) => e.into(),
        e => e.into(),
    }
}

fn restore(ctx: &Context, args: RestoreArgs) -> anyhow::Result<u8> {
    ctx.audit
        .begin("scylla restore", format!("{}:{}", args.node, args.cql_port));
    let repo = ctx.open()?;
    repo.require_read("scylla restore")?;
    let (id, snapshot) = repo.find_snapshot_filtered(&args.snapshot, &args.filter.filter())?;
    restore::recorded(&snapshot).map_err(repo_errors)?;
    ctx.audit.touch(recorder::Read, "snapshot", id.to_hex());
    let reader = repo.reader()?;
    let tools = Tools::from_env();
    let bar = Bar::new(ctx.json, Some(snapshot.summary.bytes));
    let restored = restore::restore(
        &reader,
        &snapshot,
        &RestoreRequest {
            host: &args.node,
            cql_port: args.cql_port,
            storage_port: args.storage_port,
            tools: &tools,
        },
        &bar,
    );
    bar.finish();
    let restored = restored.map_err(repo_errors)?;
    let matches = restored.matches();
    ctx.audit.detail("tables", restored.checks.len());
    ctx.audit.detail("matches", matches);
    if ctx.json {
        let mut report = serde_json::to_value(&restored)?;
        report["snapshot"] = id.to_hex().into();
        report["matches"] = matches.into();
        print_json(&report)?;
    } else {
        println!(
            "restored scylla snapshot {} ({}) into {}:{}: keyspaces {}; {} SSTable file(s), {} loaded",
            id.short(),
            snapshot.time,
            args.node,
            args.cql_port,
            restored.keyspaces.join(", "),
            restored.files_loaded,
            human_bytes(restored.bytes_loaded)
        );
        for c in &restored.checks {
            let mark = if c.ok { "ok  " } else { "DIFF" };
            println!(
                "  {mark} {}: {} row(s), recorded {}{}",
                c.table,
                c.found,
                c.recorded.after,
                if c.recorded.before == c.recorded.after {
                    String::new()
                } else {
                    format!(" (before the snapshots: {})", c.recorded.before)
                }
            );
        }
    }
    Ok(crate::commands::compared(
        ctx,
        matches,
        "the restored tables' row counts differ from the snapshot's records",
    ))
}
