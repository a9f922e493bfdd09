//! `lifeline plan check | show`: validate the plan file, and print what it will run when.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Subcommand;
use lifeline_plan::plan::{self, Plan};

use crate::context::{print_json, Context};
use crate::exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: PlanCommand,
}

#[derive(Debug, Subcommand)]
enum PlanCommand {
    /// Validate the plan: shape, names, schedules, key sources; each problem with file, line and fix
    Check,
    /// Sources with their class, tier, retention, targets and next run times
    Show,
}

/// The plan file: `--config` / LIFELINE_CONFIG.
pub fn plan_path(ctx: &Context) -> anyhow::Result<&Path> {
    ctx.config_path.as_deref().context(
        "no plan given: pass --config FILE (or set LIFELINE_CONFIG); docs/plan.md describes the file",
    )
}

/// The plan for a command that acts on it: a plan with problems is refused, each problem printed,
/// and `nothing was {done}`.
pub fn load_valid(ctx: &Context, done: &str) -> anyhow::Result<(PathBuf, Plan)> {
    let (path, plan, problems) = load(ctx)?;
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("{p}");
        }
        anyhow::bail!(
            "the plan {} has {} problem(s); nothing was {done}",
            path.display(),
            problems.len()
        );
    }
    Ok((path, plan))
}

/// The sources a command names, or every source of the plan with `--all`.
pub fn source_names(plan: &Plan, all: bool, named: &[String]) -> Vec<String> {
    if all {
        plan.sources.iter().map(|s| s.name.clone()).collect()
    } else {
        named.to_vec()
    }
}

/// Read and check the plan; problems are printed, and fail the command.
pub fn load(ctx: &Context) -> anyhow::Result<(PathBuf, Plan, Vec<plan::Problem>)> {
    let path = plan_path(ctx)?;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read plan file {}", path.display()))?;
    let parsed = Plan::parse(path, &text)?;
    let problems = plan::check(&parsed, path, &text);
    Ok((path.to_path_buf(), parsed, problems))
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    let (path, parsed, problems) = load(ctx)?;
    match args.command {
        PlanCommand::Check => {
            if ctx.json {
                print_json(&serde_json::json!({
                    "file": path.display().to_string(),
                    "ok": problems.is_empty(),
                    "sources": parsed.sources.len(),
                    "problems": problems,
                }))?;
            } else if problems.is_empty() {
                println!(
                    "{}: plan is valid ({} source(s), {} copy target(s))",
                    path.display(),
                    parsed.sources.len(),
                    parsed.copies.len()
                );
            } else {
                for p in &problems {
                    eprintln!("{p}");
                }
                eprintln!("{} problem(s) in {}", problems.len(), path.display());
            }
            Ok(if problems.is_empty() {
                exit::OK
            } else {
                exit::FATAL
            })
        }
        PlanCommand::Show => {
            if !problems.is_empty() {
                for p in &problems {
                    eprintln!("{p}");
                }
                anyhow::bail!(
                    "the plan has {} problem(s); `lifeline plan check` lists them",
                    problems.len()
                );
            }
            let view = plan::show(&parsed, chrono::Utc::now());
            if ctx.json {
                print_json(&view)?;
                return Ok(exit::OK);
            }
            println!("repository: {}", view.repository);
            for c in &view.copies {
                println!("copy to:    {c}");
            }
            for s in &view.sources {
                println!();
                println!(
                    "{} ({}), class {}, tier {}",
                    s.name, s.kind, s.class, s.tier
                );
                if let (Some(rto), Some(rpo)) = (s.rto_seconds, s.rpo_seconds) {
                    println!(
                        "  targets: RTO {}, RPO {}",
                        humantime::format_duration(std::time::Duration::from_secs(rto)),
                        humantime::format_duration(std::time::Duration::from_secs(rpo))
                    );
                }
                println!(
                    "  retention: {}",
                    s.retention.as_deref().unwrap_or("keep all")
                );
                if s.schedules.is_empty() {
                    println!("  schedule: none (run it with `lifeline run {}`)", s.name);
                }
                for js in &s.schedules {
                    println!(
                        "  {} at {} ({}): next {}",
                        js.job,
                        js.cron,
                        js.timezone,
                        js.next.join(", ")
                    );
                }
            }
            Ok(exit::OK)
        }
    }
}
