use std::collections::HashSet;

use anyhow::bail;
use lifeline_repo::hold::Holds;
use lifeline_repo::retention::{self, GroupBy, Guards, Plan};
use lifeline_repo::verification::Verifications;
use lifeline_repo::Id;
use lifeline_sources::postgres::retention as pg;
use rayon::prelude::*;

use crate::commands::backup::human_bytes;
use crate::commands::prune::{self, Tuning};
use crate::context::{print_json, Context};
use crate::exit;
use crate::options::{RetentionOptions, SnapshotFilterArgs};

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
    let repo = ctx.open()?;
    let snapshots = repo.snapshots()?;
    let filter = args.filter.filter();
    let holds = Holds::load(&repo)?;
    let verified = Verifications::load(&repo)?.latest();
    let mut pinned = match args.policy.keep_pitr {
        Some(window) => pg::pitr_anchors(&repo, window, chrono::Utc::now())?,
        None => Default::default(),
    };
    for (id, reason) in
        retention::needed_outside(&snapshots, &|s| filter.matches(s), &pg::depends_on)
    {
        pinned.entry(id).or_insert(reason);
    }
    let guards = Guards {
        holds: &holds,
        verified: &verified,
        keep_verified: args.policy.keep_verified,
        pinned,
        depends_on: &pg::depends_on,
    };
    let plan = if args.snapshots.is_empty() {
        let judged: Vec<_> = snapshots
            .iter()
            .filter(|(_, s)| filter.matches(s))
            .cloned()
            .collect();
        retention::apply(&judged, &policy, group_by, &guards)
    } else {
        let ids = args
            .snapshots
            .iter()
            .map(|spec| repo.find_snapshot_filtered(spec, &filter).map(|(id, _)| id))
            .collect::<Result<Vec<_>, _>>()?;
        retention::explicit(&snapshots, &ids, group_by, &guards)?
    };
    let removed = plan.removed();
    // Everything not removed stays, judged or not: WAL expiry must serve the snapshots outside the
    // filter as well.
    let gone: HashSet<Id> = removed.iter().copied().collect();
    let kept: HashSet<Id> = snapshots
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| !gone.contains(id))
        .collect();
    let wal = pg::plan_expiry(&repo, &kept)?;

    if !args.dry_run {
        removed
            .par_iter()
            .try_for_each(|id| repo.delete_snapshot(id))?;
        pg::expire(&repo, &wal)?;
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
