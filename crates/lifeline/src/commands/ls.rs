use std::io::Write;

use anyhow::bail;
use lifeline_repo::tree::NodeType;
use lifeline_repo::walk::{lookup, walk};
use lifeline_repo::BlobReader;

use crate::context::{print_json, Context};
use crate::exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Snapshot ID prefix, or `latest`
    snapshot: String,
    /// List only below this path
    path: Option<String>,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    let repo = ctx.open()?;
    let (_, snap) = repo.find_snapshot(&args.snapshot)?;
    let reader = BlobReader::new(&repo, repo.load_index()?);
    let mut rows: Vec<(Vec<u8>, lifeline_repo::tree::Node)> = Vec::new();
    let mut collect = |path: &[u8], node: &lifeline_repo::tree::Node| {
        rows.push((path.to_vec(), node.clone()));
        Ok(())
    };
    match args
        .path
        .as_deref()
        .map(|p| p.trim_end_matches('/'))
        .filter(|p| !p.is_empty())
    {
        None => walk(&reader, snap.tree, b"", &mut collect)?,
        Some(path) => {
            let normalized = format!("/{}", path.trim_start_matches('/'));
            let Some(node) = lookup(&reader, snap.tree, normalized.as_bytes())? else {
                bail!("{path:?} is not in snapshot {}", args.snapshot);
            };
            collect(normalized.as_bytes(), &node)?;
            if let (NodeType::Dir, Some(sub)) = (node.node_type, node.subtree) {
                walk(&reader, sub, normalized.as_bytes(), &mut collect)?;
            }
        }
    }
    if ctx.json {
        let json: Vec<_> = rows
            .iter()
            .map(|(path, n)| {
                serde_json::json!({
                    "path": String::from_utf8_lossy(path),
                    "type": n.node_type,
                    "size": n.size,
                    "mode": format!("{:o}", n.mode),
                    "mtime_ns": n.mtime,
                })
            })
            .collect();
        print_json(&json)?;
    } else {
        // Raw bytes: names need not be UTF-8.
        let mut out = std::io::stdout().lock();
        for (path, _) in rows {
            out.write_all(&path)?;
            out.write_all(b"\n")?;
        }
    }
    Ok(exit::OK)
}
