//! `lifeline s3 …`: buckets of S3-compatible stores (docs/sources/s3.md). Capturing one is a plan
//! job (`kind = "s3"`, `lifeline run`); this puts a snapshot's objects back into a bucket.

use anyhow::{bail, Context as _};
use clap::Subcommand;
use lifeline_plan::plan::{Plan, SourceKind};
use lifeline_repo::snapshot::Snapshot;
use lifeline_repo::storage::S3Settings;
use lifeline_repo::{Id, Repository};
use lifeline_sources::s3::{self, Bucket, RestoreRequest};

use crate::commands::backup::human_bytes;
use crate::context::{print_json, Context};
use crate::exit;
use crate::options::SnapshotFilterArgs;
use crate::progress::Bar;
use crate::recorder;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: S3Command,
}

#[derive(Debug, Subcommand)]
enum S3Command {
    /// Put a snapshot's objects back into a bucket, with their content types and user metadata
    Restore(RestoreArgs),
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// Snapshot ID prefix, or `latest` (the newest s3 snapshot matching the filter)
    snapshot: String,
    /// Where the objects go: each key lands below this prefix
    #[arg(long, value_name = "s3://BUCKET/PREFIX")]
    to: String,
    /// Open the bucket with the endpoint, region and credentials of this s3 source of the --config
    /// plan; without it, the AWS_* environment (AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY)
    #[arg(long, value_name = "NAME")]
    source: Option<String>,
    /// Restore only keys matching this glob (repeatable); `*` stays within one segment of the key,
    /// `**` crosses them (`photos/**`)
    #[arg(long, value_name = "PATTERN")]
    include: Vec<String>,
    /// Put every object, even one the bucket already holds with the same size and ETag (those are
    /// skipped by default, so running an interrupted restore again resumes it)
    #[arg(long)]
    force: bool,

    #[command(flatten)]
    filter: SnapshotFilterArgs,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    match args.command {
        S3Command::Restore(a) => restore(ctx, a),
    }
}

fn restore(ctx: &Context, args: RestoreArgs) -> anyhow::Result<u8> {
    ctx.audit.begin("s3 restore", &args.to);
    let settings = settings(ctx, args.source.as_deref())?;
    let repo = ctx.open()?;
    repo.require_read("s3 restore")?;
    let (id, snap) = find_snapshot(&repo, &args.snapshot, &args.filter)?;
    ctx.audit.touch(recorder::Read, "snapshot", id.to_hex());
    let bucket = Bucket::open(&args.to, &settings)?;
    let reader = repo.reader()?;
    let bar = Bar::new(ctx.json, None);
    let request = RestoreRequest {
        tree: snap.tree,
        to: &bucket,
        include: &args.include,
        force: args.force,
    };
    let restored = s3::restore(&reader, &request, &bar);
    bar.finish();
    let restored = restored.with_context(|| {
        format!(
            "cannot restore snapshot {} into {}; running the same command again resumes it",
            id.short(),
            bucket.url()
        )
    })?;
    ctx.audit.detail("objects", restored.put);
    ctx.audit.detail("bytes", restored.bytes);
    for (key, message) in &restored.errors {
        eprintln!("error: could not put {}/{key}: {message}", bucket.url());
    }
    if ctx.json {
        print_json(&serde_json::json!({
            "snapshot_id": id.to_hex(),
            "to": bucket.url(),
            "objects": restored.objects,
            "put": restored.put,
            "present": restored.present,
            "bytes": restored.bytes,
            "errors": restored.errors.iter().map(|(k, m)| serde_json::json!({"key": k, "message": m})).collect::<Vec<_>>(),
        }))?;
    } else {
        println!(
            "restored snapshot {} into {}: {} of {} object(s) put ({}), {} already there with the same size and ETag",
            id.short(),
            bucket.url(),
            restored.put,
            restored.objects,
            human_bytes(restored.bytes),
            restored.present
        );
    }
    if !restored.errors.is_empty() {
        bail!(
            "{} object(s) could not be put (named above); the rest were restored",
            restored.errors.len()
        );
    }
    Ok(exit::OK)
}

/// The bucket settings of plan source `name`, or none (the `AWS_*` environment decides).
fn settings(ctx: &Context, name: Option<&str>) -> anyhow::Result<S3Settings> {
    let Some(name) = name else {
        return Ok(S3Settings::default());
    };
    let Some(path) = &ctx.config_path else {
        bail!("--source {name} names a source of the plan: give the plan with --config");
    };
    let plan = Plan::load(path)?;
    let Some(source) = plan.source(name) else {
        let known: Vec<&str> = plan
            .sources
            .iter()
            .filter(|s| s.kind == SourceKind::S3)
            .map(|s| s.name.as_str())
            .collect();
        bail!(
            "the plan has no source {name:?}; its s3 sources are: {}",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        );
    };
    if source.kind != SourceKind::S3 {
        bail!(
            "source {name:?} is a {} source, not an s3 one",
            source.kind.as_str()
        );
    }
    Ok(source.s3.clone().unwrap_or_default())
}

/// The snapshot to restore, which must be an s3 one; `latest` is the newest s3 snapshot.
fn find_snapshot(
    repo: &Repository,
    spec: &str,
    filter: &SnapshotFilterArgs,
) -> anyhow::Result<(Id, Snapshot)> {
    let filter = filter.filter();
    if spec == "latest" {
        return repo
            .snapshots()?
            .into_iter()
            .rev()
            .find(|(_, s)| s.kind == s3::KIND && filter.matches(s))
            .with_context(|| {
                format!("the repository has no s3 snapshot matching {filter}; list them with `lifeline snapshots`")
            });
    }
    let (id, snap) = repo.find_snapshot_filtered(spec, &filter)?;
    if snap.kind != s3::KIND {
        return Err(s3::Error::NotS3 {
            snapshot: id.short(),
            kind: snap.kind,
        }
        .into());
    }
    Ok((id, snap))
}
