use std::io::Write;

use anyhow::{bail, Context as _};
use lifeline_repo::tree::NodeType;
use lifeline_repo::walk::lookup;
use lifeline_repo::BlobReader;

use crate::context::Context;
use crate::exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Snapshot ID prefix, or `latest`
    snapshot: String,
    /// Path of the file in the snapshot (for a --stdin snapshot, its name)
    path: String,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    let repo = ctx.open()?;
    let (_, snap) = repo.find_snapshot(&args.snapshot)?;
    let reader = BlobReader::new(&repo, repo.load_index()?);
    let Some(node) = lookup(&reader, snap.tree, args.path.as_bytes())? else {
        bail!("{:?} is not in snapshot {}", args.path, args.snapshot);
    };
    if node.node_type != NodeType::File {
        bail!(
            "{:?} is a {:?}, not a file; use `restore` for directories",
            args.path,
            node.node_type
        );
    }
    let mut out = std::io::stdout().lock();
    for part in node.content.iter().flatten() {
        let chunk = reader
            .read_blob(part.id())
            .with_context(|| format!("cannot read {}", args.path))?;
        let slice = chunk
            .get(part.offset() as usize..(part.offset() + part.len()) as usize)
            .with_context(|| format!("{}: a chunk is shorter than the file needs", args.path))?;
        out.write_all(slice)?;
    }
    out.flush()?;
    Ok(exit::OK)
}
