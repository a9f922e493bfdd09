//! `lifeline mongo …`: MongoDB snapshots (taken by `lifeline run` from a plan source of kind
//! mongodb).

use clap::Subcommand;
use lifeline_sources::mongodb::restore::{self, RestoreRequest};

use crate::commands::backup::human_bytes;
use crate::context::{print_json, Context};
use crate::options::SnapshotFilterArgs;
use crate::progress::Bar;
use crate::recorder;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: MongoCommand,
}

#[derive(Debug, Subcommand)]
enum MongoCommand {
    /// Restore a snapshot into a server, indexes last, then count every collection again and
    /// compare it with the snapshot's records
    Restore(RestoreArgs),
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// Snapshot ID prefix, or `latest` (with --tag source=NAME to pick a source)
    snapshot: String,

    /// The server to restore into: mongodb://[USER:PASSWORD@]HOST[:PORT]/[?OPTIONS]
    #[arg(long, value_name = "URI")]
    uri: String,

    /// File holding the password of the URI's user (kept out of the command line, where `ps`
    /// shows it; --password-file is the repository's)
    #[arg(long = "uri-password-file", value_name = "FILE")]
    password_file: Option<std::path::PathBuf>,

    /// Drop each collection of the snapshot that exists on the target before restoring it
    /// (without, an existing collection is refused and nothing of it is changed)
    #[arg(long)]
    drop: bool,

    #[command(flatten)]
    filter: SnapshotFilterArgs,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    match args.command {
        MongoCommand::Restore(a) => restore(ctx, a),
    }
}

/// Library errors with the repository's own error on top, so its exit codes apply.
fn repo_errors(err: lifeline_sources::mongodb::Error) -> anyhow::Error {
    match err {
        lifeline_sources::mongodb::Error::Repo(e) => e.into(),
        e => e.into(),
    }
}

fn restore(ctx: &Context, args: RestoreArgs) -> anyhow::Result<u8> {
    let shown = lifeline_sources::mongodb::client::redact(&args.uri);
    ctx.audit.begin("mongo restore", &shown);
    let repo = ctx.open()?;
    repo.require_read("mongo restore")?;
    let (id, snapshot) = repo.find_snapshot_filtered(&args.snapshot, &args.filter.filter())?;
    // Refused before anything is written to the target.
    restore::recorded(&snapshot).map_err(repo_errors)?;
    ctx.audit.touch(recorder::Read, "snapshot", id.to_hex());
    let reader = repo.reader()?;
    let bar = Bar::new(ctx.json, Some(snapshot.summary.bytes));
    let restored = restore::restore(
        &reader,
        &snapshot,
        &RestoreRequest {
            uri: &args.uri,
            password_file: args.password_file.as_deref(),
            drop: args.drop,
        },
        &bar,
    );
    bar.finish();
    let restored = restored.map_err(repo_errors)?;
    let matches = restored.matches();
    ctx.audit.detail("collections", restored.checks.len());
    ctx.audit.detail("matches", matches);
    if ctx.json {
        let mut report = serde_json::to_value(&restored)?;
        report["snapshot"] = id.to_hex().into();
        report["matches"] = matches.into();
        print_json(&report)?;
    } else {
        println!(
            "restored mongodb snapshot {} ({}) into {}: {} document(s), {} index(es) built, {} of archive",
            id.short(),
            snapshot.time,
            restored.target,
            restored.documents,
            restored.indexes_built,
            human_bytes(restored.bytes)
        );
        for c in &restored.checks {
            if c.differences.is_empty() {
                println!(
                    "  ok   {}: {} document(s), {} with an embedding, {} categor(ies), {} index(es)",
                    c.collection,
                    c.expected.documents,
                    c.expected.with_embedding,
                    c.expected.categories,
                    c.expected.indexes.len()
                );
            } else {
                println!("  DIFF {}: {}", c.collection, c.differences.join("; "));
            }
        }
    }
    Ok(crate::commands::compared(
        ctx,
        matches,
        "the restored collections differ from the snapshot's records",
    ))
}
