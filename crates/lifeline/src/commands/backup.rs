use std::path::{Component, Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context as _};
use lifeline_repo::snapshot::Snapshot;
use lifeline_repo::{Writer, DEFAULT_COMPRESSION};
use lifeline_sources::source::{self, FilesSource, Source};
use lifeline_sources::{files, stdin};

use crate::context::{print_json, Context};
use crate::exit;
use crate::options::{parse_tag, ExcludeOptions};
use crate::progress::Bar;
use crate::recorder;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Files and directories to back up
    #[arg(required_unless_present = "stdin", conflicts_with = "stdin")]
    paths: Vec<PathBuf>,

    /// Back up standard input as one file
    #[arg(long)]
    stdin: bool,

    /// File name for --stdin data in the snapshot
    #[arg(long, requires = "stdin", value_name = "NAME")]
    name: Option<String>,

    /// Tag the snapshot (repeatable)
    #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = parse_tag)]
    tags: Vec<(String, String)>,

    /// zstd compression level (1 fastest … 19 smallest)
    #[arg(long, default_value_t = DEFAULT_COMPRESSION, value_parser = clap::value_parser!(i32).range(1..=19))]
    compression: i32,

    /// Read every file again instead of trusting unchanged size/mtime/ctime/inode
    #[arg(long)]
    force: bool,

    #[command(flatten)]
    exclude: ExcludeOptions,

    /// Record this host name instead of this machine's (as restic's --host); the parent snapshot
    /// is looked for under it too
    #[arg(long, value_name = "HOST")]
    host: Option<String>,

    /// Record this time as the snapshot's (RFC 3339, e.g. 2026-11-30T02:00:00Z) instead of now:
    /// for importing backups made elsewhere, as restic's --time
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    time: Option<chrono::DateTime<chrono::FixedOffset>>,
}

fn parse_time(text: &str) -> Result<chrono::DateTime<chrono::FixedOffset>, String> {
    chrono::DateTime::parse_from_rfc3339(text).map_err(|e| {
        format!("{text:?} is not an RFC 3339 time ({e}); write it like 2026-11-30T02:00:00Z")
    })
}

/// An absolute path with `.` and `..` resolved lexically, as the user named it (symlinks kept).
fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    let joined = std::env::current_dir()
        .context("cannot read the current directory")?
        .join(path);
    let mut out = PathBuf::from("/");
    for part in joined.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(p) => out.push(p),
            _ => {}
        }
    }
    Ok(out)
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    let started = Instant::now();
    let start_time = match args.time {
        Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        None => chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
    };
    if args.stdin && !args.exclude.is_empty() {
        bail!("--exclude, --exclude-file, --exclude-caches and --one-file-system choose files to back up; they do not apply to --stdin");
    }
    // Bad patterns and missing exclude files are reported before anything is written.
    let exclusions = args.exclude.exclusions()?;
    let host = args.host.unwrap_or_else(lifeline_repo::hostname);
    let target = if args.stdin {
        format!("stdin:{}", args.name.as_deref().unwrap_or("stdin"))
    } else {
        let paths: Vec<String> = args.paths.iter().map(|p| p.display().to_string()).collect();
        paths.join(" ")
    };
    ctx.audit.begin("backup", target);
    if let Some((_, source)) = args.tags.iter().find(|(k, _)| k == "source") {
        ctx.audit.detail("source", source);
    }
    let repo = ctx.open()?;
    repo.require_write("backup")?;
    let writer = Writer::new(&repo, None, args.compression)?;
    let bar = Bar::new(ctx.json, None);

    let mut excluded = 0;
    let mut snapshot = if args.stdin {
        let name = args.name.unwrap_or_else(|| "stdin".into());
        let (tree, summary) = stdin::backup(&writer, &name, std::io::stdin(), &bar)?;
        let mut snap = Snapshot::new("stdin", vec![name], tree);
        snap.summary = summary;
        snap
    } else {
        let mut paths = args
            .paths
            .iter()
            .map(|p| absolute(p))
            .collect::<anyhow::Result<Vec<_>>>()?;
        paths.sort();
        paths.dedup();
        for p in &paths {
            if let Err(e) = std::fs::symlink_metadata(p) {
                bail!("cannot back up {}: {e}", p.display());
            }
        }
        if !ctx.json {
            spawn_size_scan(&bar, paths.clone(), exclusions.clone());
        }
        let files = FilesSource {
            paths,
            exclusions,
            host: host.clone(),
            force: args.force,
        };
        // A repository error stays itself, so the exit code and hint still name it.
        let captured = files.capture(&repo, &writer, &bar).map_err(|e| match e {
            source::Error::Repo(e) => anyhow::Error::from(e),
            e => e.into(),
        })?;
        excluded = captured.excluded;
        captured.snapshot
    };
    bar.finish();
    snapshot.time = start_time;
    snapshot.hostname = host;
    snapshot.tags = args.tags.into_iter().collect();
    snapshot.summary.duration_ms = started.elapsed().as_millis() as u64;
    let (id, snapshot) = writer.finish(snapshot)?;
    ctx.audit.touch(recorder::Wrote, "snapshot", id.to_hex());
    ctx.audit.detail("kind", &snapshot.kind);
    ctx.audit.detail("bytes_added", snapshot.summary.data_added);
    if !snapshot.errors.is_empty() {
        ctx.audit.error(format!(
            "{} item(s) could not be read; the snapshot records them",
            snapshot.errors.len()
        ));
    }

    let s = &snapshot.summary;
    if ctx.json {
        print_json(&serde_json::json!({
            "snapshot_id": id.to_hex(),
            "short_id": id.short(),
            "parent": snapshot.parent,
            "files": s.files,
            "dirs": s.dirs,
            "bytes": s.bytes,
            "files_new": s.files_new,
            "files_changed": s.files_changed,
            "files_unmodified": s.files_unmodified,
            "data_added": s.data_added,
            "duration_ms": s.duration_ms,
            "excluded": excluded,
            "errors": snapshot.errors,
        }))?;
    } else {
        println!(
            "Files: {} new, {} changed, {} unmodified ({} dirs, {})",
            s.files_new,
            s.files_changed,
            s.files_unmodified,
            s.dirs,
            human_bytes(s.bytes)
        );
        if excluded > 0 {
            println!("Excluded: {excluded} item(s) (a directory counts once)");
        }
        println!(
            "Added to the repository: {} in {:.1} s",
            human_bytes(s.data_added),
            s.duration_ms as f64 / 1000.0
        );
        for e in &snapshot.errors {
            if e.changed_while_read {
                eprintln!("warning: {}: {}", e.path, e.message);
            } else {
                eprintln!("warning: could not read {}: {}", e.path, e.message);
            }
        }
        println!("snapshot {} saved", id.short());
    }
    if snapshot.errors.is_empty() {
        Ok(exit::OK)
    } else {
        let changed = snapshot
            .errors
            .iter()
            .filter(|e| e.changed_while_read)
            .count();
        eprintln!(
            "{} item(s) could not be read and {changed} changed while read; the snapshot records them (exit code {})",
            snapshot.errors.len() - changed,
            exit::PARTIAL
        );
        Ok(exit::PARTIAL)
    }
}

/// Count the bytes to back up in the background, so the bar can show an ETA. Only the patterns are
/// applied: caches and mount points are rare enough to leave to the estimate.
fn spawn_size_scan(bar: &Bar, paths: Vec<PathBuf>, exclusions: files::Exclusions) {
    let set_total = bar.total_setter();
    std::thread::spawn(move || {
        let mut total = 0u64;
        let mut stack = paths;
        while let Some(p) = stack.pop() {
            if exclusions.excludes(&p) {
                continue;
            }
            let Ok(meta) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if meta.is_dir() {
                if let Ok(entries) = std::fs::read_dir(&p) {
                    stack.extend(entries.flatten().map(|e| e.path()));
                }
            } else if meta.is_file() {
                total += meta.len();
            }
        }
        set_total(total);
    });
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", UNITS[unit])
    }
}
