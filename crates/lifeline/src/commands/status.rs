use chrono::Utc;
use lifeline_repo::retention::GroupBy;
use lifeline_repo::status::status;

use crate::commands::backup::human_bytes;
use crate::context::{print_json, Context};
use crate::exit;
use crate::options::parse_duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Which snapshot fields make a group: host, kind, paths, tags, or none (as `forget`)
    #[arg(long, default_value = "host,kind,paths", value_name = "FIELDS")]
    group_by: String,

    /// Exit 1 when a group's newest snapshot is older than this (e.g. 26h): for monitors and cron
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    max_age: Option<std::time::Duration>,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    let repo = ctx.open()?;
    repo.require_read("status")?;
    let list = repo.load_snapshots()?;
    let s = status(
        &repo,
        &list,
        GroupBy::parse(&args.group_by)?,
        Utc::now(),
        args.max_age,
    )?;
    let late = s.groups.iter().filter(|g| g.late).count();
    if ctx.json {
        print_json(&s)?;
    } else {
        for g in &s.groups {
            let n = &g.newest;
            println!("{}", g.group);
            println!(
                "  newest {}  {}  age {}{}{}",
                n.short_id,
                n.time,
                human_age(n.age_seconds),
                if n.incomplete { "  INCOMPLETE" } else { "" },
                if g.late { "  LATE" } else { "" },
            );
            println!("  {} snapshot(s), {} incomplete", g.snapshots, g.incomplete);
        }
        let r = &s.repository;
        println!(
            "{} snapshot(s) in {} group(s), {} incomplete, {} held; repository {} ({} in {} pack(s), {} in {} WAL/named object(s))",
            s.snapshots,
            s.groups.len(),
            s.incomplete,
            s.held,
            human_bytes(r.total_bytes),
            human_bytes(r.pack_bytes),
            r.packs,
            human_bytes(r.named_bytes),
            r.named_objects,
        );
        if s.incomplete > 0 {
            println!("incomplete: items could not be read or changed while read; `lifeline snapshots --json` lists them");
        }
    }
    let damaged = super::snapshots::report_damaged(&list.damaged);
    if late > 0 {
        eprintln!(
            "{late} group(s) have no snapshot newer than --max-age {}",
            humantime::format_duration(args.max_age.unwrap_or_default())
        );
        return Ok(exit::FATAL);
    }
    Ok(damaged)
}

/// `45s`, `12m`, `3h 05m`, `2d 04h`: the two largest units, enough to judge freshness.
pub fn human_age(secs: u64) -> String {
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3_600, secs % 3_600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h {m:02}m"),
        (d, h, _) => format!("{d}d {h:02}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::human_age;

    #[test]
    fn ages_read_as_people_write_them() {
        assert_eq!(human_age(42), "42s");
        assert_eq!(human_age(12 * 60 + 5), "12m");
        assert_eq!(human_age(3 * 3600 + 5 * 60), "3h 05m");
        assert_eq!(human_age(2 * 86_400 + 4 * 3600 + 59), "2d 04h");
    }
}
