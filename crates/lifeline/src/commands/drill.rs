//! `lifeline drill SOURCE… | --all`: restore each source's newest (or a chosen) recovery point into a
//! scratch target, prove it usable, measure RTO and RPO against the tier (docs/drills.md).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use lifeline_plan::drill::{self, duration_text, tally, DrillOptions, DrillReport, SourceDrill};
use lifeline_plan::options::parse_duration;
use lifeline_repo::drill::CheckResult;
use lifeline_sources::postgres::recovery;
use lifeline_sources::postgres::server::shell_quote;

use crate::context::{print_json, Context};
use crate::exit;
use crate::progress::Bar;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Sources of the plan to drill (in this order)
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    sources: Vec<String>,

    /// Drill every source of the plan, one after another
    #[arg(long)]
    all: bool,

    /// Restore this snapshot (ID prefix) instead of the newest; one source only
    #[arg(long, value_name = "ID")]
    snapshot: Option<String>,

    /// PostgreSQL: recover to this time (RFC 3339, or 2026-11-22 10:00:00+00) instead of the end
    /// of the archive; other kinds: restore the newest snapshot taken by then
    #[arg(long, value_name = "TIME")]
    time: Option<String>,

    /// How long a restored server may take to start and recover
    #[arg(long, default_value = "1h", value_parser = parse_duration, value_name = "DURATION")]
    timeout: Duration,

    /// Drill the sources together as a recovery-point group named NAME (with --time: each to its
    /// point for that time, as `recovery-plan` lists them) and report the group's RTO
    #[arg(long, value_name = "NAME")]
    group: Option<String>,

    /// Directory of PostgreSQL's programs (initdb, pg_ctl, pg_restore, pg_amcheck)
    #[arg(long, env = "LIFELINE_PG_BIN", value_name = "DIR")]
    pg_bin: Option<PathBuf>,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    let (path, plan) = super::plan::load_valid(ctx, "drilled")?;
    let names = super::plan::source_names(&plan, args.all, &args.sources);
    let time = args
        .time
        .as_deref()
        .map(recovery::parse_time)
        .transpose()
        .context("--time")?;
    let restore_command = restore_command(&path)?;
    let options = DrillOptions {
        snapshot: args.snapshot.as_deref(),
        time,
        pg_bin: args.pg_bin.as_deref(),
        restore_command: Some(&restore_command),
        timeout: args.timeout,
        group: args.group.as_deref(),
    };
    let bar = Bar::new(ctx.json, None);
    let report = drill::drill(&plan, &names, &options, &bar);
    bar.finish();
    let report = report?;
    if ctx.json {
        print_json(&report)?;
    } else {
        print_report(&report);
        if let (Some(group), Some(rto)) = (&report.group, report.group_rto_seconds) {
            println!(
                "\ngroup {group}: {} source(s) restored and verified in {}",
                report.sources.len(),
                duration_text(rto)
            );
        }
    }
    Ok(if report.passed { exit::OK } else { exit::FATAL })
}

/// The command a restored server fetches WAL with: this program, reading this plan.
pub(crate) fn restore_command(plan: &std::path::Path) -> anyhow::Result<String> {
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let words = [
        exe.display().to_string(),
        "--config".into(),
        cwd.join(plan).display().to_string(),
        "pg".into(),
        "wal-fetch".into(),
        "%f".into(),
        "%p".into(),
    ];
    Ok(words
        .iter()
        .map(|w| shell_quote(w))
        .collect::<Vec<_>>()
        .join(" "))
}

/// A table of the drills, then what went wrong or needs a look in each.
fn print_report(report: &DrillReport) {
    let header = [
        "SOURCE",
        "SNAPSHOT",
        "RTO",
        "RTO TARGET",
        "RPO",
        "RPO TARGET",
        "CHECKS",
        "RESULT",
    ];
    let rows: Vec<[String; 8]> = report.sources.iter().map(row).collect();
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_string()
    };
    println!("{}", line(header.to_vec()));
    for r in &rows {
        println!("{}", line(r.iter().map(String::as_str).collect()));
    }
    for s in &report.sources {
        let r = &s.record;
        let notes: Vec<String> = r
            .checks
            .iter()
            .filter(|c| c.result == CheckResult::Warn)
            .map(|c| {
                format!(
                    "warning: {}: {}",
                    c.name,
                    c.message.as_deref().unwrap_or("")
                )
            })
            .chain(s.reasons.iter().map(|reason| format!("FAILED: {reason}")))
            .collect();
        if !notes.is_empty() || s.record_id.is_some() {
            println!("\n{}:", s.source);
        }
        if let Some(id) = &s.record_id {
            println!("  drill record {}", &id[..id.len().min(8)]);
        }
        for n in notes {
            println!("  {n}");
        }
    }
}

fn row(s: &SourceDrill) -> [String; 8] {
    let r = &s.record;
    let (pass, warn, fail) = tally(&r.checks);
    let target = |t: Option<f64>| t.map_or_else(|| "-".into(), duration_text);
    let restored = !r.recovery_point.is_empty();
    [
        s.source.clone(),
        r.snapshot.chars().take(8).collect::<String>(),
        if r.steps.is_empty() {
            "-".into()
        } else {
            duration_text(r.rto_seconds)
        },
        target(r.rto_target_seconds),
        if restored {
            duration_text(r.rpo_seconds)
        } else {
            "-".into()
        },
        target(r.rpo_target_seconds),
        format!("{pass} pass, {warn} warn, {fail} fail"),
        if s.passed { "PASSED" } else { "FAILED" }.into(),
    ]
}
