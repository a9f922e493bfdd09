//! `lifeline hold`: legal holds, which keep snapshots and their data through every forget and prune.

use anyhow::Context as _;
use chrono::{DateTime, NaiveDate, Utc};
use clap::Subcommand;
use lifeline_repo::hold::{self, HoldAction, Holds};
use lifeline_repo::{Id, Repository};

use crate::context::{print_json, Context};
use crate::exit;
use crate::options::SnapshotFilterArgs;
use crate::recorder;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: HoldCommand,
}

#[derive(Debug, Subcommand)]
enum HoldCommand {
    /// Place snapshots under hold
    Add(AddArgs),
    /// Lift the hold on snapshots (the hold's history is kept)
    Remove(RemoveArgs),
    /// The holds in force (with --history, every hold record)
    List(ListArgs),
}

#[derive(Debug, clap::Args)]
struct AddArgs {
    /// Snapshots to hold (ID prefixes or `latest`)
    #[arg(required = true)]
    snapshots: Vec<String>,
    /// Why (a case or request number); recorded with who placed it and when
    #[arg(long)]
    reason: String,
    /// The hold ends after this date (YYYY-MM-DD: the end of that day, UTC) or RFC 3339 time
    #[arg(long, value_name = "DATE", value_parser = parse_until)]
    until: Option<DateTime<Utc>>,

    #[command(flatten)]
    filter: SnapshotFilterArgs,
}

#[derive(Debug, clap::Args)]
struct RemoveArgs {
    /// Snapshots whose hold ends now
    #[arg(required = true)]
    snapshots: Vec<String>,
    /// Why it is lifted; recorded
    #[arg(long)]
    reason: String,

    #[command(flatten)]
    filter: SnapshotFilterArgs,
}

#[derive(Debug, clap::Args)]
struct ListArgs {
    /// Every hold record, oldest first, instead of the holds in force
    #[arg(long)]
    history: bool,
}

fn parse_until(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.succ_opt())
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| format!("{text:?} is not a date: use YYYY-MM-DD or an RFC 3339 time"))
}

fn resolve(
    repo: &Repository,
    specs: &[String],
    filter: &SnapshotFilterArgs,
) -> anyhow::Result<Vec<Id>> {
    let filter = filter.filter();
    specs
        .iter()
        .map(|spec| {
            repo.find_snapshot_filtered(spec, &filter)
                .map(|(id, _)| id)
                .with_context(|| format!("snapshot {spec:?}"))
        })
        .collect()
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    let repo = ctx.open()?;
    match args.command {
        HoldCommand::Add(a) => {
            ctx.audit.begin("hold add", a.snapshots.join(" "));
            ctx.audit.detail("reason", &a.reason);
            repo.require_read("hold add")?;
            let ids = resolve(&repo, &a.snapshots, &a.filter)?;
            let record = hold::add(&repo, &ids, &a.reason, a.until)?;
            audit_hold(ctx, &ids, &record);
            report(ctx, "held", &ids, &record)
        }
        HoldCommand::Remove(a) => {
            ctx.audit.begin("hold remove", a.snapshots.join(" "));
            ctx.audit.detail("reason", &a.reason);
            repo.require_read("hold remove")?;
            let ids = resolve(&repo, &a.snapshots, &a.filter)?;
            let record = hold::remove(&repo, &ids, &a.reason)?;
            audit_hold(ctx, &ids, &record);
            report(ctx, "released", &ids, &record)
        }
        HoldCommand::List(a) => {
            repo.require_records("hold list")?;
            list(ctx, &repo, a.history)
        }
    }
}

fn audit_hold(ctx: &Context, ids: &[Id], record: &Id) {
    for id in ids {
        ctx.audit.touch(recorder::Read, "snapshot", id.to_hex());
    }
    ctx.audit.touch(recorder::Wrote, "hold", record.to_hex());
}

fn report(ctx: &Context, what: &str, ids: &[Id], record: &Id) -> anyhow::Result<u8> {
    if ctx.json {
        print_json(&serde_json::json!({
            "record": record.to_hex(),
            what: ids.iter().map(Id::to_hex).collect::<Vec<_>>(),
        }))?;
    } else {
        for id in ids {
            println!("snapshot {} {what}", id.short());
        }
        println!("recorded as hold record {}", record.short());
    }
    Ok(exit::OK)
}

fn list(ctx: &Context, repo: &Repository, history: bool) -> anyhow::Result<u8> {
    let holds = Holds::load(repo)?;
    if history {
        let rows: Vec<serde_json::Value> = holds
            .history
            .iter()
            .map(|s| {
                serde_json::json!({
                    "record": s.id.to_hex(),
                    "action": s.record.action,
                    "snapshots": s.record.snapshots.iter().map(Id::to_hex).collect::<Vec<_>>(),
                    "reason": s.record.reason,
                    "until": s.record.until,
                    "time": s.record.stamp.time,
                    "by": format!("{}@{}", s.record.stamp.username, s.record.stamp.hostname),
                })
            })
            .collect();
        if ctx.json {
            print_json(&rows)?;
        } else {
            for s in &holds.history {
                let ids: Vec<String> = s.record.snapshots.iter().map(Id::short).collect();
                println!(
                    "{}  {:<6}  {}  by {}@{}  {}{}",
                    s.record.stamp.time,
                    match s.record.action {
                        HoldAction::Add => "add",
                        HoldAction::Remove => "remove",
                    },
                    ids.join(","),
                    s.record.stamp.username,
                    s.record.stamp.hostname,
                    s.record.reason,
                    s.record
                        .until
                        .as_ref()
                        .map(|u| format!(" (until {u})"))
                        .unwrap_or_default()
                );
            }
        }
        return Ok(exit::OK);
    }
    let active = holds.active();
    if ctx.json {
        print_json(&active)?;
        return Ok(exit::OK);
    }
    if active.is_empty() {
        println!("no snapshot is under hold");
    }
    for h in &active {
        println!(
            "{}  held since {} by {}: {}{}",
            &h.snapshot[..8],
            h.since,
            h.by,
            h.reason,
            h.until
                .as_ref()
                .map(|u| format!(" (until {u})"))
                .unwrap_or_default()
        );
    }
    if !active.is_empty() {
        println!("{} snapshot(s) under hold", active.len());
    }
    Ok(exit::OK)
}
