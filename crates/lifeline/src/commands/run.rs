//! `lifeline run SOURCE | --all`: one job now, as the plan says (what a Kubernetes CronJob calls).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use lifeline_plan::drill::{self, DrillOptions};
use lifeline_plan::job;
use lifeline_plan::metrics::Metrics;
use lifeline_plan::plan::{JobKind, Plan};
use lifeline_plan::report::{JobReport, Outcome};

use crate::commands::backup::human_bytes;
use crate::context::{print_json, Context};
use crate::exit;
use crate::progress::Bar;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Sources of the plan to run (in this order)
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    sources: Vec<String>,

    /// Run every source of the plan, one after another
    #[arg(long)]
    all: bool,

    /// Which job: `backup`, or for PostgreSQL `full` (default) or `incremental`
    #[arg(long, value_parser = JobKind::parse)]
    job: Option<JobKind>,

    /// Also write the metrics of these sources to FILE for node_exporter's textfile collector
    /// (replaced atomically; counters continue from the file's previous values)
    #[arg(long, value_name = "FILE")]
    metrics_file: Option<PathBuf>,

    /// Directory of PostgreSQL's client programs
    #[arg(long, env = "LIFELINE_PG_BIN", value_name = "DIR")]
    pg_bin: Option<PathBuf>,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    let (path, plan) = super::plan::load_valid(ctx, "run")?;
    let names = super::plan::source_names(&plan, args.all, &args.sources);
    let mut reports = Vec::new();
    for name in &names {
        let Some(source) = plan.source(name) else {
            let known: Vec<&str> = plan.sources.iter().map(|s| s.name.as_str()).collect();
            bail!(
                "the plan has no source {name:?}; its sources are: {}",
                known.join(", ")
            );
        };
        let job = args.job.unwrap_or_else(|| source.default_job());
        if source.kind != lifeline_plan::plan::SourceKind::Postgres
            && !matches!(job, JobKind::Backup | JobKind::Drill)
        {
            bail!(
                "source {name:?} is kind {}: its jobs are `backup` and `drill`",
                source.kind.as_str()
            );
        }
        let bar = Bar::new(ctx.json, None);
        let report = if job == JobKind::Drill {
            // The daemon's drill schedule comes here, so a drill is a job like the others: one
            // report, metrics, notifications on failure.
            let restore_command = super::drill::restore_command(&path)?;
            let options = DrillOptions {
                pg_bin: args.pg_bin.as_deref(),
                restore_command: Some(&restore_command),
                ..DrillOptions::default()
            };
            drill::job(&plan, source, &options, &bar)
        } else {
            job::run(&plan, source, job, args.pg_bin.as_deref(), &bar)
        };
        bar.finish();
        if !ctx.json {
            print_report(&report);
        }
        reports.push(report);
    }
    if let Some(file) = &args.metrics_file {
        write_metrics(&plan, &reports, file)?;
    }
    if ctx.json {
        match reports.as_slice() {
            [one] if !args.all => print_json(one)?,
            _ => print_json(&reports)?,
        }
    }
    Ok(if reports.iter().any(|r| r.outcome == Outcome::Failure) {
        exit::FATAL
    } else if reports.iter().any(|r| r.outcome == Outcome::Partial) {
        exit::PARTIAL
    } else {
        exit::OK
    })
}

fn print_report(r: &JobReport) {
    match r.outcome {
        Outcome::Failure => eprintln!(
            "{} ({}): FAILED after {:.1} s: {}",
            r.source,
            r.job,
            r.duration_seconds,
            r.message.as_deref().unwrap_or("")
        ),
        _ => {
            println!(
                "{} ({}): snapshot {} saved, {} ({} added) in {:.1} s",
                r.source,
                r.job,
                r.snapshot.as_deref().map_or("", |s| &s[..s.len().min(8)]),
                human_bytes(r.bytes),
                human_bytes(r.bytes_added),
                r.duration_seconds
            );
            if let Some(v) = r.verified {
                println!(
                    "  verified: {}",
                    if v { "every blob read back" } else { "FAILED" }
                );
            }
            for c in &r.copies {
                println!(
                    "  copied to {}: {} added",
                    c.target,
                    human_bytes(c.bytes_added)
                );
            }
            if r.forgotten > 0 {
                println!("  retention removed {} snapshot(s)", r.forgotten);
            }
            if let Some(m) = &r.message {
                eprintln!("  warning: {m}");
            }
        }
    }
}

/// The textfile collector reads whole files: write beside, then rename.
fn write_metrics(plan: &Plan, reports: &[JobReport], file: &std::path::Path) -> anyhow::Result<()> {
    let metrics = Metrics::new();
    metrics.declare(plan);
    if let Ok(previous) = std::fs::read_to_string(file) {
        metrics.carry_counters(plan, &previous);
    }
    for r in reports {
        metrics.record(plan, r);
    }
    let repo = lifeline_plan::open::open(&plan.repository)?;
    let copies: Vec<(String, lifeline_repo::Repository)> = plan
        .copies
        .iter()
        .filter_map(|c| Some((c.url.clone()?, lifeline_plan::open::open(c).ok()?)))
        .collect();
    let survey = lifeline_plan::survey::survey(plan, &repo, &copies)?;
    metrics.survey(plan, &survey);
    let dir = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write metrics next to {}", file.display()))?;
    tmp.write_all(metrics.encode().as_bytes())?;
    tmp.persist(file)
        .with_context(|| format!("cannot write metrics file {}", file.display()))?;
    Ok(())
}
