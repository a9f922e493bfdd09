//! `lifeline repair`: fix what `check` reports — the index from the packs' trailers, snapshots
//! without the data that is lost.

use clap::Subcommand;
use lifeline_repo::repair::{self, IndexReport, SnapshotsReport};

use crate::context::{print_json, Context};
use crate::exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: RepairCommand,
}

#[derive(Debug, Subcommand)]
enum RepairCommand {
    /// Rebuild the index from the packs' own trailers: index packs no index names, drop entries of
    /// packs storage no longer has, remove index files that cannot be read
    Index(IndexArgs),
    /// Write new snapshots without the files whose data is lost (the originals stay until
    /// forgotten); run `repair index` first
    Snapshots(SnapshotsArgs),
}

#[derive(Debug, clap::Args)]
struct IndexArgs {
    /// Read the trailer of every pack and correct index entries that disagree with it, not only
    /// those of packs the index lacks or that do not fit the stored pack
    #[arg(long)]
    read_all_packs: bool,
}

#[derive(Debug, clap::Args)]
struct SnapshotsArgs {
    /// Show what is lost and what would be written; change nothing
    #[arg(long)]
    dry_run: bool,

    /// Forget each damaged original once its repaired snapshot is stored (and those that cannot be
    /// repaired); `prune` then frees their data. Held snapshots are kept
    #[arg(long)]
    forget: bool,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    // A dry run changes nothing and leaves no audit record.
    let action = match &args.command {
        RepairCommand::Index(_) => Some("repair index"),
        RepairCommand::Snapshots(a) => (!a.dry_run).then_some("repair snapshots"),
    };
    if let Some(action) = action {
        ctx.audit.begin(action, ctx.options.location()?);
    }
    let repo = ctx.open()?;
    repo.require_read("repair")?;
    match args.command {
        RepairCommand::Index(a) => {
            let report = repair::repair_index(&repo, a.read_all_packs)?;
            if ctx.json {
                print_json(&report)?;
            } else {
                print_index(&report);
            }
        }
        RepairCommand::Snapshots(a) => {
            let report = repair::repair_snapshots(
                &repo,
                repair::Options {
                    dry_run: a.dry_run,
                    forget: a.forget,
                },
            )?;
            if ctx.json {
                print_json(&report)?;
            } else {
                print_snapshots(&report, a.forget);
            }
        }
    }
    Ok(exit::OK)
}

fn print_index(r: &IndexReport) {
    println!(
        "read {} index file(s) and {} pack trailer(s) of {} pack(s)",
        r.index_files, r.trailers_read, r.packs
    );
    for key in &r.damaged_index_files {
        println!("removed {key}: it cannot be read (its packs are indexed from their trailers)");
    }
    if r.packs_added > 0 {
        println!(
            "indexed {} pack(s) no index named ({} blob(s))",
            r.packs_added, r.blobs_added
        );
    }
    for key in &r.packs_corrected {
        println!("indexed {key} again from its trailer: the index described it wrongly");
    }
    for key in &r.missing_packs {
        println!("dropped the entries of {key}: storage no longer has it");
    }
    if !r.missing_packs.is_empty() {
        println!(
            "{} blob(s) are lost with them; `lifeline repair snapshots` writes snapshots without them",
            r.blobs_dropped
        );
    }
    for key in &r.unreadable_packs {
        println!(
            "warning: {key} cannot be read and was left as it is; `lifeline check --read-data` names what depends on it"
        );
    }
    if r.index_files_written + r.index_files_removed == 0 {
        println!("the index is sound: nothing to repair");
    } else {
        println!(
            "wrote {} index file(s), removed {}",
            r.index_files_written, r.index_files_removed
        );
    }
}

fn print_snapshots(r: &SnapshotsReport, forget: bool) {
    for u in &r.unreadable {
        println!(
            "warning: {} cannot be read ({}); `lifeline forget` removes it",
            u.path, u.message
        );
    }
    for d in &r.damaged {
        println!(
            "snapshot {} ({}, {}) references lost data:",
            &d.snapshot[..8.min(d.snapshot.len())],
            d.time,
            d.paths.join(" ")
        );
        for l in &d.lost {
            println!("  {}: {}", l.path, l.message);
        }
        let outcome = match (&d.repaired, &d.unrepairable) {
            (_, Some(why)) => format!("not repaired: {why}"),
            (Some(id), None) if d.already_repaired => {
                format!("repaired already, as {}", &id[..8.min(id.len())])
            }
            (Some(id), None) => format!("repaired as {}", &id[..8.min(id.len())]),
            (None, None) => "would be repaired".to_string(),
        };
        let original = if d.forgotten {
            "; the original is forgotten"
        } else if d.held {
            "; the original is kept: it is under legal hold"
        } else if forget && r.dry_run {
            "; the original would be forgotten"
        } else {
            "; the original is kept (`--forget` removes it)"
        };
        println!("  {outcome}{original}");
    }
    println!(
        "{} snapshot(s) examined, {} reference lost data",
        r.snapshots,
        r.damaged.len()
    );
    if r.dry_run {
        println!("dry run: nothing was changed");
    }
}
