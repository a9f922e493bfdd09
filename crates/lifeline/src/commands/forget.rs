use anyhow::bail;
use lifeline_plan::forget::{forget, Forgotten, Selection};
use lifeline_repo::retention::{GroupBy, Plan};
use lifeline_sources::postgres::retention as pg;

use crate::commands::backup::human_bytes;
use crate::commands::prune::{self, Tuning};
use crate::context::{print_json, Context};
use crate::exit;
use crate::options::{RetentionOptions, SnapshotFilterArgs};
use crate::recorder;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Snapshots to forget (ID prefixes or `latest`), instead of a policy
    snapshots: Vec<String>,

    #[command(flatten)]
    policy: RetentionOptions,

    // Only the snapshots the filter matches are judged; the others stay, and so does what they need.
    #[command(flatten)]
    filter: SnapshotFilterArgs,

    /// Which snapshot fields make a group, judged on its own: host, kind, paths, tags, or none
    #[arg(long, default_value = "host,kind,paths", value_name = "FIELDS")]
    group_by: String,

    /// Show, per group, what would be kept or removed and why; remove nothing
    #[arg(long)]
    dry_run: bool,

    /// Run `prune` afterwards
    #[arg(long)]
    prune: bool,

    #[command(flatten)]
    tuning: Tuning,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    let policy = args.policy.policy();
    if policy.is_empty() && args.snapshots.is_empty() {
        bail!("forget needs a policy (--keep-daily 30, --keep-within 30d, …) or the snapshots to remove; with neither it would remove everything but the guarded snapshots");
    }
    if !args.snapshots.is_empty() && !policy.is_empty() {
        bail!("give either snapshots to remove or a policy, not both");
    }
    let group_by = GroupBy::parse(&args.group_by)?;
    // A dry run changes nothing and leaves no audit record.
    if !args.dry_run {
        ctx.audit.begin("forget", ctx.options.location()?);
    }
    let repo = ctx.open()?;
    repo.require_read("forget")?;
    let filter = args.filter.filter();
    let selection = if args.snapshots.is_empty() {
        Selection::Policy(&args.policy)
    } else {
        Selection::Ids(
            args.snapshots
                .iter()
                .map(|spec| repo.find_snapshot_filtered(spec, &filter).map(|(id, _)| id))
                .collect::<Result<Vec<_>, _>>()?,
        )
    };
    let Forgotten { plan, wal } = forget(
        &repo,
        &selection,
        &filter,
        group_by,
        args.policy.keep_verified,
        args.dry_run,
    )?;
    let removed = plan.removed();
    for id in &removed {
        ctx.audit.touch(recorder::Deleted, "snapshot", id.to_hex());
    }
    ctx.audit.detail("removed", removed.len());
    ctx.audit.detail("wal_removed", wal.files());
    if let Some(source) = filter.tags.iter().find(|(k, _)| k == "source") {
        ctx.audit.detail("source", &source.1);
    }
    let pruned = if args.prune {
        Some(prune::run_prune(&repo, &args.tuning, args.dry_run)?)
    } else {
        None
    };
    if ctx.json {
        print_json(&serde_json::json!({
            "dry_run": args.dry_run,
            "groups": plan.groups,
            "kept": plan.kept().len(),
            "removed": removed.len(),
            "wal_expiry": wal,
            "prune": pruned,
        }))?;
    } else {
        print(&plan, &wal, args.dry_run);
        if let Some(report) = &pruned {
            prune::print(report);
        }
    }
    Ok(exit::OK)
}

fn print(plan: &Plan, wal: &pg::WalExpiry, dry_run: bool) {
    for group in &plan.groups {
        println!("{}:", group.group);
        for d in &group.snapshots {
            let time = chrono::DateTime::parse_from_rfc3339(&d.time)
                .map(|t| {
                    t.with_timezone(&chrono::Utc)
                        .format("%Y-%m-%d %H:%M:%S")
                        .to_string()
                })
                .unwrap_or_else(|_| d.time.clone());
            println!(
                "  {:<6}  {}  {}  {}",
                if d.keep { "keep" } else { "remove" },
                d.short_id,
                time,
                d.reasons.join(", ")
            );
        }
    }
    for c in &wal.clusters {
        for t in &c.timelines {
            println!(
                "WAL of cluster {}, timeline {}: {} file(s) no kept backup needs ({} … {})",
                c.system_id,
                t.timeline,
                t.files,
                t.first.as_deref().unwrap_or(""),
                t.last.as_deref().unwrap_or("")
            );
        }
    }
    let removed = plan.removed().len();
    let kept = plan.kept().len();
    let wal_bytes: u64 = wal.clusters.iter().map(|c| c.bytes).sum();
    if dry_run {
        println!(
            "dry run: would keep {kept} and remove {removed} snapshot(s) and {} WAL file(s) ({}); nothing was removed",
            wal.files(),
            human_bytes(wal_bytes)
        );
    } else {
        println!(
            "kept {kept}, removed {removed} snapshot(s) and {} WAL file(s) ({}); `lifeline prune` frees their data",
            wal.files(),
            human_bytes(wal_bytes)
        );
    }
}
