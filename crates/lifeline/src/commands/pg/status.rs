//! `pg status`: base backups, the WAL archive per timeline, gaps, RPO now and the PITR window.

use lifeline_sources::postgres::status;

use crate::commands::backup::human_bytes;
use crate::context::{print_json, Context};
use crate::exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Cluster to report on when the repository holds several
    #[arg(long, value_name = "ID")]
    system_id: Option<u64>,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    let repo = ctx.open()?;
    repo.require_read("pg status")?;
    let s = status::status(&repo, args.system_id)?;
    if ctx.json {
        print_json(&s)?;
        return Ok(exit::OK);
    }
    println!("cluster {}", s.system_id);
    println!("base backups:");
    for b in &s.backups {
        println!(
            "  {}  {:<11}  timeline {}  WAL {} – {}  complete {}  {}{}",
            &b.id[..8],
            b.backup_type,
            b.timeline,
            b.start_lsn,
            b.stop_lsn,
            b.stop_time,
            human_bytes(b.bytes),
            if b.restorable {
                ""
            } else {
                "  NOT RESTORABLE: WAL it needs is missing"
            }
        );
    }
    println!("WAL archive:");
    for t in &s.timelines {
        let ranges: Vec<String> = t.ranges.iter().map(|(a, b)| format!("{a} – {b}")).collect();
        println!(
            "  timeline {}: {} segments: {}",
            t.timeline,
            t.segments,
            ranges.join(", ")
        );
        if !t.gaps.is_empty() {
            println!("    missing: {}", t.gaps.join(", "));
        }
    }
    match (
        &s.newest_wal,
        &s.newest_wal_archived_at,
        s.newest_wal_age_seconds,
    ) {
        (Some(wal), Some(at), Some(age)) => {
            println!("newest archived WAL: {wal} at {at} ({age} s ago: the data at risk right now)")
        }
        _ => println!("newest archived WAL: none after a restorable backup"),
    }
    println!(
        "point-in-time recovery reaches: {} … {}",
        s.pitr_earliest.as_deref().unwrap_or("nothing"),
        s.pitr_latest.as_deref().unwrap_or("nothing")
    );
    if let Some(blocked) = &s.pitr_blocked_at {
        println!("  WAL segment {blocked} is missing: recovery cannot pass it");
    }
    Ok(exit::OK)
}
