use lifeline_repo::snapshot::Snapshot;
use lifeline_repo::Id;

use crate::commands::backup::human_bytes;
use crate::context::{print_json, Context};
use crate::exit;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn to_json(id: &Id, s: &Snapshot) -> serde_json::Value {
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
    })
}

pub fn run(ctx: &Context, _args: Args) -> anyhow::Result<u8> {
    let repo = ctx.open()?;
    let snapshots = repo.snapshots()?;
    if ctx.json {
        let all: Vec<_> = snapshots.iter().map(|(id, s)| to_json(id, s)).collect();
        print_json(&all)?;
        return Ok(exit::OK);
    }
    println!(
        "{:<8}  {:<25}  {:<12}  {:>10}  {:<20}  paths",
        "ID", "time", "host", "size", "tags"
    );
    for (id, s) in &snapshots {
        let tags: Vec<String> = s.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let time = s.timestamp().format("%Y-%m-%d %H:%M:%S %z").to_string();
        println!(
            "{:<8}  {:<25}  {:<12}  {:>10}  {:<20}  {}",
            id.short(),
            time,
            s.hostname,
            human_bytes(s.summary.bytes),
            tags.join(","),
            s.paths.join(" ")
        );
    }
    println!("{} snapshot(s)", snapshots.len());
    Ok(exit::OK)
}
