use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use anyhow::bail;
use lifeline_repo::tree::NodeType;
use lifeline_repo::walk::components;
use lifeline_sources::files::{self, Globs, Overwrite, RestoreOptions, Selection};

use crate::commands::backup::human_bytes;
use crate::context::{print_json, Context};
use crate::exit;
use crate::names;
use crate::options::SnapshotFilterArgs;
use crate::progress::Bar;
use crate::recorder;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Snapshot ID prefix, or `latest`; `SNAPSHOT:/PATH` restores the contents of the directory
    /// PATH of the snapshot into DIR
    snapshot: String,
    /// Directory to restore into; a source path /a/b lands in DIR/a/b
    #[arg(long, value_name = "DIR")]
    target: PathBuf,
    /// Restore only entries matching this glob, with everything below them and the directories
    /// leading to them (repeatable). With a `/` it matches the path in the snapshot
    /// (`/home/u/docs/**`), without one the name (`*.pdf`)
    #[arg(long, value_name = "PATTERN")]
    include: Vec<String>,
    /// Leave out entries matching this glob, with everything below them (repeatable; same syntax
    /// as --include)
    #[arg(long, value_name = "PATTERN")]
    exclude: Vec<String>,
    /// What to do with a file the target already holds that differs from the snapshot's. The
    /// default, `never`, cannot lose anything the target holds
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = OverwriteArg::Never)]
    overwrite: OverwriteArg,
    /// Then delete what the target holds, within the restored selection, that the snapshot lacks
    #[arg(long)]
    delete: bool,
    /// List what would be kept and deleted and count what would be written; change nothing
    #[arg(long)]
    dry_run: bool,

    #[command(flatten)]
    filter: SnapshotFilterArgs,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum OverwriteArg {
    /// Rewrite every file
    Always,
    /// Rewrite files whose type, size or mtime differ from the snapshot's
    IfChanged,
    /// Rewrite files that differ and are older (by mtime) than the snapshot's
    IfNewer,
    /// Leave every existing file as it is
    Never,
}

impl From<OverwriteArg> for Overwrite {
    fn from(arg: OverwriteArg) -> Self {
        match arg {
            OverwriteArg::Always => Overwrite::Always,
            OverwriteArg::IfChanged => Overwrite::IfChanged,
            OverwriteArg::IfNewer => Overwrite::IfNewer,
            OverwriteArg::Never => Overwrite::Never,
        }
    }
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    // Snapshot IDs are hex and `latest` a keyword, so the first colon always ends the snapshot.
    let (spec, sub_path) = match args.snapshot.split_once(':') {
        Some((spec, path)) => (spec, path),
        None => (args.snapshot.as_str(), ""),
    };
    if spec.is_empty() {
        bail!(
            "{:?} names no snapshot: write it before the colon, as in latest:/home/u",
            args.snapshot
        );
    }
    let include = patterns(&args.include, "--include")?;
    let exclude = patterns(&args.exclude, "--exclude")?;
    let include_match = include
        .as_ref()
        .map(|p| move |path: &[u8]| p.matches(OsStr::from_bytes(path)));
    let exclude_match = exclude
        .as_ref()
        .map(|p| move |path: &[u8]| p.matches(OsStr::from_bytes(path)));

    // A dry run writes nothing and leaves no audit record.
    if !args.dry_run {
        ctx.audit
            .begin("restore", args.target.display().to_string());
    }
    let repo = ctx.open()?;
    repo.require_read("restore")?;
    let (id, snap) = repo.find_snapshot_filtered(spec, &args.filter.filter())?;
    ctx.audit.touch(recorder::Read, "snapshot", id.to_hex());
    let reader = repo.reader()?;
    // `/a//b/` and `a/b` both mean `/a/b`.
    let prefix: Vec<u8> = components(sub_path.as_bytes())
        .flat_map(|c| [b"/".as_slice(), c].concat())
        .collect();
    // The path may be given as `ls` prints it (names need not be UTF-8).
    let (prefix, root) = if prefix.is_empty() {
        (prefix, snap.tree)
    } else {
        let shown = names::escape(&prefix);
        match names::lookup_arg(&reader, snap.tree, &prefix)? {
            Some((found, node)) => match (node.node_type, node.subtree) {
                (NodeType::Dir, Some(sub)) => (found, sub),
                _ => bail!(
                    "{shown} is not a directory in snapshot {}: restore its directory with --include, or write the file out with `lifeline dump {spec} {shown} > FILE`",
                    id.short()
                ),
            },
            None => {
                let parent = shown.rsplit_once('/').map_or("", |(p, _)| p);
                bail!(
                    "{shown} is not in snapshot {}; `lifeline ls {spec} {}` lists what is there",
                    id.short(),
                    if parent.is_empty() { "/" } else { parent }
                )
            }
        }
    };
    let opts = RestoreOptions {
        prefix: &prefix,
        select: Selection {
            include: include_match.as_ref().map(|m| m as &files::Matcher),
            exclude: exclude_match.as_ref().map(|m| m as &files::Matcher),
        },
        overwrite: args.overwrite.into(),
        delete: args.delete,
        dry_run: args.dry_run,
        in_place: false,
    };
    let whole = prefix.is_empty() && include.is_none() && exclude.is_none();
    let bar = Bar::new(
        ctx.json || args.dry_run,
        whole.then_some(snap.summary.bytes),
    );
    let result = files::restore(&reader, root, &args.target, &opts, &bar)?;
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
            "dry_run": args.dry_run,
            "files": result.files,
            "dirs": result.dirs,
            "bytes": result.bytes,
            "unchanged": result.unchanged,
            "kept": result.kept.len(),
            "deleted": result.deleted.len(),
            "kept_paths": result.kept,
            "deleted_paths": result.deleted,
            "errors": result.errors.iter().map(|(p, e)| serde_json::json!({"path": p, "message": e})).collect::<Vec<_>>(),
            "skipped": result.skipped.iter().map(|(p, e)| serde_json::json!({"path": p, "reason": e})).collect::<Vec<_>>(),
        }))?;
    } else {
        if args.dry_run {
            for path in &result.kept {
                println!("would keep {}", path.display());
            }
            for path in &result.deleted {
                println!("would delete {}", path.display());
            }
        }
        let mut line = format!(
            "{} snapshot {}{} to {}: {} files, {} dirs, {}",
            if args.dry_run {
                "would restore"
            } else {
                "restored"
            },
            id.short(),
            if prefix.is_empty() {
                String::new()
            } else {
                format!(":{}", String::from_utf8_lossy(&prefix))
            },
            args.target.display(),
            result.files,
            result.dirs,
            human_bytes(result.bytes)
        );
        if result.unchanged > 0 {
            line += &format!("; {} already up to date", result.unchanged);
        }
        if !result.kept.is_empty() {
            line += &format!(
                "; {} existing file(s) that differ kept as they are (--overwrite if-changed replaces them, --dry-run lists them)",
                result.kept.len()
            );
        }
        if args.delete {
            line += &format!(
                "; {} {}",
                result.deleted.len(),
                if args.dry_run { "to delete" } else { "deleted" }
            );
        }
        println!("{line}");
    }
    if !result.errors.is_empty() {
        bail!(
            "{} item(s) could not be restored (named above); the rest of the snapshot was restored",
            result.errors.len()
        );
    }
    Ok(exit::OK)
}

/// `--include`/`--exclude` globs, matched against paths in the snapshot; none given: `None`.
fn patterns(globs: &[String], flag: &str) -> anyhow::Result<Option<Globs>> {
    if globs.is_empty() {
        return Ok(None);
    }
    Ok(Some(Globs::new(globs, flag)?))
}
