use std::path::PathBuf;

use anyhow::bail;
use lifeline_sources::files;

use crate::commands::backup::human_bytes;
use crate::context::{print_json, Context};
use crate::exit;
use crate::options::SnapshotFilterArgs;
use crate::progress::Bar;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Snapshot ID prefix, or `latest`
    snapshot: String,
    /// Directory to restore into; a source path /a/b lands in DIR/a/b
    #[arg(long, value_name = "DIR")]
    target: PathBuf,

    #[command(flatten)]
    filter: SnapshotFilterArgs,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    let repo = ctx.open()?;
    let (id, snap) = repo.find_snapshot_filtered(&args.snapshot, &args.filter.filter())?;
    let reader = repo.reader()?;
    let bar = Bar::new(ctx.json, Some(snap.summary.bytes));
    let result = files::restore(&reader, snap.tree, &args.target, &bar)?;
    bar.finish();
    for (path, err) in &result.errors {
        eprintln!("error: could not restore {}: {err}", path.display());
    }
    for (path, why) in &result.skipped {
        eprintln!("note: {}: {why}", path.display());
    }
    if ctx.json {
        print_json(&serde_json::json!({
            "snapshot_id": id.to_hex(),
            "files": result.files,
            "dirs": result.dirs,
            "bytes": result.bytes,
            "errors": result.errors.iter().map(|(p, e)| serde_json::json!({"path": p, "message": e})).collect::<Vec<_>>(),
            "skipped": result.skipped.iter().map(|(p, e)| serde_json::json!({"path": p, "reason": e})).collect::<Vec<_>>(),
        }))?;
    } else {
        println!(
            "restored snapshot {} to {}: {} files, {} dirs, {}",
            id.short(),
            args.target.display(),
            result.files,
            result.dirs,
            human_bytes(result.bytes)
        );
    }
    if !result.errors.is_empty() {
        bail!(
            "{} item(s) could not be restored (named above); the rest of the snapshot was restored",
            result.errors.len()
        );
    }
    Ok(exit::OK)
}
