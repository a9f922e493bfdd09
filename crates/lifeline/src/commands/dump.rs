use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;

use anyhow::{bail, Context as _};
use lifeline_repo::tree::NodeType;
use lifeline_repo::walk::lookup;

use crate::context::Context;
use crate::exit;
use crate::options::SnapshotFilterArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Snapshot ID prefix, or `latest`
    snapshot: String,
    /// Path of the file in the snapshot (for a --stdin snapshot, its name)
    path: OsString,

    #[command(flatten)]
    filter: SnapshotFilterArgs,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    let repo = ctx.open()?;
    let (_, snap) = repo.find_snapshot_filtered(&args.snapshot, &args.filter.filter())?;
    let reader = repo.reader()?;
    let shown = args.path.to_string_lossy();
    let Some(node) = lookup(&reader, snap.tree, args.path.as_bytes())? else {
        bail!("{shown:?} is not in snapshot {}", args.snapshot);
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
            .with_context(|| format!("cannot read {shown}"))?;
        let slice = chunk
            .get(part.offset() as usize..(part.offset() + part.len()) as usize)
            .with_context(|| format!("{shown}: a chunk is shorter than the file needs"))?;
        out.write_all(slice)?;
    }
    out.flush()?;
    Ok(exit::OK)
}
