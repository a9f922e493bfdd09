use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;

use anyhow::bail;
use lifeline_repo::tree::NodeType;
use lifeline_repo::walk::walk;

use crate::context::{print_json, Context};
use crate::names;
use crate::options::SnapshotFilterArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Snapshot ID prefix, or `latest`
    snapshot: String,
    /// List only below this path
    path: Option<OsString>,

    #[command(flatten)]
    filter: SnapshotFilterArgs,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    let repo = ctx.open()?;
    repo.require_read("ls")?;
    // `latest` is the newest readable snapshot; damaged ones are named after the listing.
    let filter = args.filter.filter();
    let (snap, damaged) = if args.snapshot == "latest" {
        let list = repo.load_snapshots()?;
        (list.latest(&filter)?.1, list.damaged)
    } else {
        (
            repo.find_snapshot_filtered(&args.snapshot, &filter)?.1,
            Vec::new(),
        )
    };
    let reader = repo.reader()?;
    let mut rows: Vec<(Vec<u8>, lifeline_repo::tree::Node)> = Vec::new();
    let mut collect = |path: &[u8], node: &lifeline_repo::tree::Node| {
        rows.push((path.to_vec(), node.clone()));
        Ok(())
    };
    // `/a//b/` and `a/b` both mean `/a/b`; names need not be UTF-8, and their printed form is
    // accepted back.
    let start: Vec<u8> = args
        .path
        .as_ref()
        .map(|p| {
            lifeline_repo::walk::components(p.as_bytes())
                .flat_map(|c| [b"/".as_slice(), c].concat())
                .collect()
        })
        .unwrap_or_default();
    if start.is_empty() {
        walk(&reader, snap.tree, b"", &mut collect)?;
    } else {
        let Some((start, node)) = names::lookup_arg(&reader, snap.tree, &start)? else {
            bail!(
                "{} is not in snapshot {}",
                names::escape(&start),
                args.snapshot
            );
        };
        collect(&start, &node)?;
        if let (NodeType::Dir, Some(sub)) = (node.node_type, node.subtree) {
            walk(&reader, sub, &start, &mut collect)?;
        }
    }
    if ctx.json {
        let json: Vec<_> = rows
            .iter()
            .map(|(path, n)| {
                serde_json::json!({
                    "path": names::escape(path),
                    "type": n.node_type,
                    "size": n.size,
                    "mode": format!("{:o}", n.mode),
                    "mtime_ns": n.mtime,
                    "changed_while_read": n.changed_while_read,
                })
            })
            .collect();
        print_json(&json)?;
    } else {
        let mut out = std::io::stdout().lock();
        for (path, _) in rows {
            writeln!(out, "{}", names::escape(&path))?;
        }
    }
    Ok(super::snapshots::report_damaged(&damaged))
}
