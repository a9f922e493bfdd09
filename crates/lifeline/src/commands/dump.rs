use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;

use anyhow::{bail, Context as _};
use lifeline_repo::tree::NodeType;

use crate::context::Context;
use crate::exit;
use crate::names;
use crate::options::SnapshotFilterArgs;
use crate::recorder;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Snapshot ID prefix, or `latest`
    snapshot: String,
    /// Path of the file in the snapshot (for a --stdin snapshot, its name), as `ls` prints it
    path: OsString,

    #[command(flatten)]
    filter: SnapshotFilterArgs,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    ctx.audit.begin("dump", args.path.to_string_lossy());
    let repo = ctx.open()?;
    repo.require_read("dump")?;
    let (id, snap) = repo.find_snapshot_filtered(&args.snapshot, &args.filter.filter())?;
    ctx.audit.touch(recorder::Read, "snapshot", id.to_hex());
    let reader = repo.reader()?;
    let Some((path, node)) = names::lookup_arg(&reader, snap.tree, args.path.as_bytes())? else {
        bail!(
            "{} is not in snapshot {}",
            names::escape(args.path.as_bytes()),
            args.snapshot
        );
    };
    let shown = names::escape(&path);
    if node.node_type != NodeType::File {
        bail!(
            "{shown} is a {:?}, not a file; use `restore` for directories",
            node.node_type
        );
    }
    let mut out = std::io::stdout().lock();
    for part in node.content.iter().flatten() {
        let slice = reader
            .read_part(part)
            .with_context(|| format!("cannot read {shown}"))?;
        out.write_all(&slice)?;
    }
    out.flush()?;
    Ok(exit::OK)
}
