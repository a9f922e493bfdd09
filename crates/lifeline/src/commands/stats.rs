use lifeline_repo::stats::{stats, Usage};

use crate::commands::backup::human_bytes;
use crate::context::{print_json, Context};
use crate::exit;
use crate::options::SnapshotFilterArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Snapshots to measure (ID prefixes or `latest`); the whole repository when none are given
    snapshots: Vec<String>,

    #[command(flatten)]
    filter: SnapshotFilterArgs,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    let repo = ctx.open()?;
    repo.require_read("stats")?;
    let filter = args.filter.filter();
    let whole = args.snapshots.is_empty() && filter.is_empty();
    let chosen = repo.find_snapshots(&args.snapshots, &filter)?;
    let s = stats(&repo, &chosen, whole)?;
    if ctx.json {
        print_json(&s)?;
        return Ok(exit::OK);
    }
    let line = |name: &str, u: &Usage| {
        println!(
            "{name:<12} {:>5} snapshot(s)  {:>10} in {:>8} file(s)  stored {:>10} in {:>8} blob(s)  ratio {:.2}",
            u.snapshots,
            human_bytes(u.logical_bytes),
            u.files,
            human_bytes(u.stored_bytes),
            u.blobs,
            u.dedup_ratio
        )
    };
    for (kind, u) in &s.by_kind {
        line(kind, u);
    }
    line("total", &s.total);
    if let Some(o) = &s.repository {
        println!(
            "repository: {} in {} pack(s), {} in {} index file(s), {} in {} WAL/named object(s); {} in all",
            human_bytes(o.pack_bytes),
            o.packs,
            human_bytes(o.index_bytes),
            o.index_files,
            human_bytes(o.named_bytes),
            o.named_objects,
            human_bytes(o.total_bytes)
        );
    }
    Ok(exit::OK)
}
