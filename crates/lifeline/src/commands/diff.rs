use std::io::Write;

use lifeline_repo::diff::{diff, Change};

use crate::context::{print_json, Context};
use crate::exit;
use crate::names;
use crate::options::SnapshotFilterArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The earlier snapshot (ID prefix or `latest`)
    from: String,
    /// The later snapshot
    to: String,
    /// Also list entries whose mode, owner or modification time changed (U)
    #[arg(long)]
    metadata: bool,

    #[command(flatten)]
    filter: SnapshotFilterArgs,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    let repo = ctx.open()?;
    repo.require_read("diff")?;
    let filter = args.filter.filter();
    let (a_id, a) = repo.find_snapshot_filtered(&args.from, &filter)?;
    let (b_id, b) = repo.find_snapshot_filtered(&args.to, &filter)?;
    let reader = repo.reader()?;
    let changes = diff(&reader, a.tree, b.tree, args.metadata)?;
    let count = |c: Change| changes.iter().filter(|(_, x)| *x == c).count();
    if ctx.json {
        print_json(&serde_json::json!({
            "from": a_id.to_hex(),
            "to": b_id.to_hex(),
            "changes": changes.iter().map(|(p, c)| serde_json::json!({
                "path": names::escape(p),
                "change": c,
            })).collect::<Vec<_>>(),
            "added": count(Change::Added),
            "removed": count(Change::Removed),
            "modified": count(Change::Modified) + count(Change::Type),
            "metadata": count(Change::Metadata),
        }))?;
        return Ok(exit::OK);
    }
    let mut out = std::io::stdout().lock();
    for (path, change) in &changes {
        writeln!(out, "{} {}", change.symbol(), names::escape(path))?;
    }
    writeln!(
        out,
        "{} added, {} removed, {} changed{}",
        count(Change::Added),
        count(Change::Removed),
        count(Change::Modified) + count(Change::Type),
        if args.metadata {
            format!(", {} with other metadata", count(Change::Metadata))
        } else {
            String::new()
        }
    )?;
    Ok(exit::OK)
}
