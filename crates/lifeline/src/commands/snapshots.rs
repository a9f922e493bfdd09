use lifeline_repo::hold::{Hold, Holds};
use lifeline_repo::snapshot::Snapshot;
use lifeline_repo::verification::{Outcome, Verifications, Verified};
use lifeline_repo::Id;

use crate::commands::backup::human_bytes;
use crate::commands::status::human_age;
use crate::context::{print_json, Context};
use crate::exit;
use crate::options::SnapshotFilterArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    filter: SnapshotFilterArgs,
}

/// A snapshot as `snapshots --json` shows it, with its hold and its latest data verification.
fn to_json(
    id: &Id,
    s: &Snapshot,
    hold: Option<&Hold>,
    verified: Option<&Verified>,
) -> serde_json::Value {
    serde_json::json!({
        "id": id.to_hex(),
        "short_id": id.short(),
        "time": s.time,
        "hostname": s.hostname,
        "username": s.username,
        "kind": s.kind,
        "paths": s.paths,
        "tags": s.tags,
        "parent": s.parent,
        "tree": s.tree.to_hex(),
        "summary": s.summary,
        "errors": s.errors,
        "source": s.source,
        "hold": hold,
        "verified": verified,
        "incomplete": !s.errors.is_empty(),
    })
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    let repo = ctx.open()?;
    repo.require_read("snapshots")?;
    let mut list = repo.load_snapshots()?;
    let filter = args.filter.filter();
    list.items.retain(|(_, s)| filter.matches(s));
    let snapshots = &list.items;
    let holds = Holds::load(&repo)?;
    let verified = Verifications::load(&repo)?.latest();
    if ctx.json {
        let all: Vec<_> = snapshots
            .iter()
            .map(|(id, s)| to_json(id, s, holds.get(id), verified.get(id)))
            .collect();
        print_json(&all)?;
        return Ok(report_damaged(&list.damaged));
    }
    println!(
        "{:<8}  {:<25}  {:>7}  {:<12}  {:>10}  {:<5}  {:<20}  paths",
        "ID", "time", "age", "host", "size", "flags", "tags"
    );
    let now = chrono::Utc::now();
    for (id, s) in snapshots {
        let tags: Vec<String> = s.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let time = s.timestamp().format("%Y-%m-%d %H:%M:%S %z").to_string();
        let flags = format!(
            "{}{}{}",
            if s.errors.is_empty() { "" } else { "I" },
            if holds.is_held(id) { "H" } else { "" },
            match verified.get(id).map(|v| v.result) {
                Some(Outcome::Ok) => "V",
                Some(Outcome::Damaged) => "!",
                None => "",
            }
        );
        println!(
            "{:<8}  {:<25}  {:>7}  {:<12}  {:>10}  {:<5}  {:<20}  {}",
            id.short(),
            time,
            human_age(s.age(now).as_secs()),
            s.hostname,
            human_bytes(s.summary.bytes),
            flags,
            tags.join(","),
            s.paths.join(" ")
        );
    }
    println!("{} snapshot(s)", snapshots.len());
    if !snapshots.is_empty() {
        println!(
            "flags: I incomplete (items unreadable or changed while read), H under legal hold, V data verified, ! verification found damage"
        );
    }
    Ok(report_damaged(&list.damaged))
}

/// Name every snapshot object that could not be read (the readable ones were listed); exit 1, as
/// `check` does for damage.
pub fn report_damaged(damaged: &[(String, lifeline_repo::Error)]) -> u8 {
    for (key, e) in damaged {
        eprintln!("error: {key} cannot be read: {e}");
    }
    if damaged.is_empty() {
        exit::OK
    } else {
        eprintln!(
            "{} snapshot object(s) are damaged; `lifeline check` names what depends on them",
            damaged.len()
        );
        exit::FATAL
    }
}
