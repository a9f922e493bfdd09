//! `lifeline recovery-plan --time T`: every source's recovery point for T, their skew, the restore
//! commands in order and the time the last drills took.

use chrono::{DateTime, Utc};
use lifeline_plan::recovery_plan;

use crate::context::{print_json, Context};
use crate::exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The time to recover to (RFC 3339, e.g. 2026-12-01T09:00:00Z)
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    time: DateTime<Utc>,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    let (_, plan) = super::plan::load_valid(ctx, "planned")?;
    let repo = ctx.open()?;
    repo.require_read("recovery-plan")?;
    let (drills, _) = lifeline_repo::drill::load_all(&repo)?;
    let drills: Vec<_> = drills.into_iter().map(|d| d.record).collect();
    let result = recovery_plan::plan(&plan, &repo, &drills, args.time)?;
    if ctx.json {
        print_json(&result)?;
        return Ok(exit::OK);
    }
    println!("recovery to {}:", result.time);
    for (n, p) in result.sources.iter().enumerate() {
        let point = p.recovery_point.as_deref().unwrap_or("none");
        let behind = p
            .behind_seconds
            .map(|s| format!(" ({} before)", human_seconds(s)))
            .unwrap_or_default();
        let drill = p
            .last_drill_rto_seconds
            .map(|s| format!("; last drill {}", human_seconds(s)))
            .unwrap_or_else(|| "; never drilled".into());
        println!(
            "{}. {} [{}{}] recovery point {point}{behind}{drill}",
            n + 1,
            p.source,
            p.kind,
            p.tier
                .as_deref()
                .map(|t| format!(", {t}"))
                .unwrap_or_default(),
        );
        if let Some(command) = &p.command {
            println!("   {command}");
        }
        if let Some(note) = &p.note {
            println!("   note: {note}");
        }
    }
    if let Some(skew) = result.skew_seconds {
        println!(
            "skew between the sources' recovery points: {}",
            human_seconds(skew)
        );
    }
    match result.estimated_seconds {
        Some(s) => println!(
            "estimated time, one after another, from the last drills: {}",
            human_seconds(s)
        ),
        None => println!("no estimate: not every source has been drilled (`lifeline drill --all`)"),
    }
    Ok(exit::OK)
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{text:?} is not an RFC 3339 time ({e}): write 2026-12-01T09:00:00Z"))
}

fn human_seconds(s: f64) -> String {
    if s < 120.0 {
        format!("{s:.1} s")
    } else if s < 7200.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}
