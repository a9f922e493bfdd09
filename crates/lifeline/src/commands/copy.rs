use std::path::PathBuf;

use anyhow::{bail, Context as _};
use lifeline_repo::copy::copy;
use lifeline_repo::Repository;
use lifeline_sources::postgres::retention::copy_wal;

use crate::commands::backup::human_bytes;
use crate::context::{open_storage, print_json, Context};
use crate::options::SnapshotFilterArgs;
use crate::{exit, password, recorder};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Source repository (default: --repo / LIFELINE_REPO / the config file)
    #[arg(long, value_name = "URL")]
    from: Option<String>,

    /// Destination repository; it must already be initialised
    #[arg(long, value_name = "URL")]
    to: String,

    /// Password file of the destination (default: the key of its [[copies]] entry in the plan, else
    /// the source's password)
    #[arg(long, value_name = "FILE")]
    to_password_file: Option<PathBuf>,

    /// Snapshots to copy (ID prefixes or `latest`); all when none are given
    snapshots: Vec<String>,

    #[command(flatten)]
    filter: SnapshotFilterArgs,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    let from = match &args.from {
        Some(url) => url.clone(),
        None => ctx.options.location()?.to_string(),
    };
    if from == args.to {
        bail!("--from and --to name the same repository");
    }
    ctx.audit.begin("copy", &args.to);
    ctx.audit.detail("to", &args.to);
    let src = ctx
        .open_at(&from)
        .with_context(|| format!("cannot open the source repository {from}"))?;
    ctx.audit.opened(&src);
    src.require_read("copy")?;
    let planned = ctx
        .copies
        .iter()
        .find(|c| c.url.as_deref() == Some(args.to.as_str()));
    let dst = match planned {
        // A [[copies]] target of the plan opens with its own key source and S3 settings.
        Some(target) if args.to_password_file.is_none() => lifeline_plan::open::open(target)
            .with_context(|| format!("cannot open the destination repository {}", args.to))?,
        _ => {
            let dst_pw = match (&args.to_password_file, &ctx.options.key.key_file) {
                (Some(file), _) => password::from_file(file)?,
                (None, None) => password::read(&ctx.options.key)?,
                (None, Some(_)) => bail!(
                    "a key file opens only its own repository: give the destination's password with --to-password-file, or name the destination under [[copies]] in the plan"
                ),
            };
            Repository::open(open_storage(&args.to, &ctx.options.s3)?, dst_pw.bytes())
                .with_context(|| format!("cannot open the destination repository {}", args.to))?
        }
    };
    let filter = args.filter.filter();
    // No IDs and no filter: `copy` takes every snapshot. A filter names its snapshots explicitly, and
    // one that matches none copies none.
    let ids: Vec<_> = if args.snapshots.is_empty() && filter.is_empty() {
        Vec::new()
    } else {
        src.find_snapshots(&args.snapshots, &filter)?
            .into_iter()
            .map(|(id, _)| id)
            .collect()
    };
    if ids.is_empty() && !filter.is_empty() {
        bail!("no snapshot of {from} matches the filter ({filter}); nothing to copy");
    }
    let outcome = copy(&src, &dst, &ids)?;
    // The WAL the copied base backups need, so point-in-time recovery works from the copy.
    let wal = copy_wal(&src, &dst)?;
    for (s, d) in &outcome.copied {
        ctx.audit.touch(recorder::Read, "snapshot", s.to_hex());
        ctx.audit
            .touch(recorder::Wrote, "copied snapshot", d.to_hex());
    }
    ctx.audit.detail("bytes_added", outcome.data_added);
    // The destination gets the source's trail (re-sealed with its own keys) and its own record of
    // this copy, so an auditor can work from the second region alone.
    let imported = lifeline_repo::audit::import(&src, &dst)?;
    ctx.audit.detail("audit_records_copied", imported);
    lifeline_repo::audit::append(&dst, &received(&from, &outcome))?;
    if ctx.json {
        print_json(&serde_json::json!({
            "copied": outcome.copied.iter().map(|(s, _)| s.to_hex()).collect::<Vec<_>>(),
            "snapshots": outcome.copied.iter().map(|(s, d)| serde_json::json!({"from": s.to_hex(), "to": d.to_hex()})).collect::<Vec<_>>(),
            "skipped": outcome.skipped.iter().map(|s| s.to_hex()).collect::<Vec<_>>(),
            "data_added": outcome.data_added,
            "wal": wal,
        }))?;
    } else {
        for (s, d) in &outcome.copied {
            println!(
                "copied snapshot {} to {} as {}",
                s.short(),
                args.to,
                d.short()
            );
        }
        if !outcome.skipped.is_empty() {
            println!(
                "{} snapshot(s) were already in {}",
                outcome.skipped.len(),
                args.to
            );
        }
        println!(
            "{} snapshot(s) copied, {} added to the destination and verified",
            outcome.copied.len(),
            human_bytes(outcome.data_added)
        );
        if wal.files + wal.present > 0 {
            println!(
                "WAL: {} file(s) copied ({}), {} already there",
                wal.files,
                human_bytes(wal.bytes),
                wal.present
            );
        }
    }
    Ok(exit::OK)
}

/// The destination's own record of a copy it received.
fn received(from: &str, outcome: &lifeline_repo::copy::CopyOutcome) -> lifeline_repo::audit::Event {
    let mut event = lifeline_repo::audit::Event::new("copy", from);
    event.detail("from", from);
    for (_, d) in &outcome.copied {
        event.touch(recorder::Wrote, "snapshot", d.to_hex());
    }
    event.detail("bytes_added", outcome.data_added);
    event
}
