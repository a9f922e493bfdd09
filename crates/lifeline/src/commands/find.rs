use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;

use anyhow::Context as _;
use globset::GlobBuilder;
use lifeline_repo::find::{find, Pattern};

use crate::context::{print_json, Context};
use crate::exit;
use crate::names;
use crate::options::SnapshotFilterArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A glob (`*.pdf`, `report-202?-*`); with a `/` it matches whole paths (`/srv/**/scan.tif`)
    pattern: String,
    /// Snapshots to search (ID prefixes or `latest`); all when none are given
    #[arg(long = "snapshot", value_name = "ID")]
    snapshots: Vec<String>,

    #[command(flatten)]
    filter: SnapshotFilterArgs,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    let glob = GlobBuilder::new(&args.pattern)
        .literal_separator(true)
        .build()
        .with_context(|| format!("{:?} is not a glob pattern", args.pattern))?
        .compile_matcher();
    let matches = |bytes: &[u8]| glob.is_match(OsStr::from_bytes(bytes));
    let pattern = if args.pattern.contains('/') {
        Pattern::Path(&matches)
    } else {
        Pattern::Name(&matches)
    };
    let repo = ctx.open()?;
    repo.require_read("find")?;
    let snapshots = repo.find_snapshots(&args.snapshots, &args.filter.filter())?;
    let reader = repo.reader()?;
    let mut memo = HashMap::new();
    let mut found = Vec::new();
    for (id, snapshot) in &snapshots {
        let hits = find(&reader, snapshot.tree, &pattern, &mut memo)?;
        if !hits.is_empty() {
            found.push((id, snapshot, hits));
        }
    }
    if ctx.json {
        let rows: Vec<_> = found
            .iter()
            .map(|(id, s, hits)| {
                serde_json::json!({
                    "snapshot": id.to_hex(),
                    "time": s.time,
                    "hostname": s.hostname,
                    "matches": hits.iter().map(|(p, n)| serde_json::json!({
                        "path": names::escape(p),
                        "type": n.node_type,
                        "size": n.size,
                        "mtime_ns": n.mtime,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        print_json(&rows)?;
        return Ok(exit::OK);
    }
    let mut out = std::io::stdout().lock();
    for (id, s, hits) in &found {
        writeln!(out, "snapshot {} ({}, {}):", id.short(), s.time, s.hostname)?;
        for (path, node) in hits {
            write!(out, "  {}", names::escape(path))?;
            match node.size {
                Some(size) => writeln!(out, "  {size} bytes")?,
                None => writeln!(out)?,
            }
        }
    }
    writeln!(
        out,
        "{} snapshot(s) of {} hold a match",
        found.len(),
        snapshots.len()
    )?;
    Ok(exit::OK)
}
