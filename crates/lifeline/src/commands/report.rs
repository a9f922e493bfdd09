//! `lifeline report --month YYYY-MM`: the monthly compliance report, from the repository's audit
//! trail and drill records (the primary's, or the copy's in the other region).

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use lifeline_plan::compliance::{self, Month};
use lifeline_plan::plan::Plan;

use crate::context::Context;
use crate::exit;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Format {
    Html,
    Json,
    Md,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The month to report on, YYYY-MM
    #[arg(long, value_name = "YYYY-MM")]
    month: Month,

    /// html (printable), json or md (Markdown)
    #[arg(long, value_enum, default_value_t = Format::Html)]
    format: Format,

    /// Write the report to FILE instead of standard output
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    ctx.audit.begin("report", args.month.to_string());
    let format = match args.format {
        Format::Html => "html",
        Format::Json => "json",
        Format::Md => "md",
    };
    ctx.audit.detail("format", format);
    // The plan names the sources and their targets; without one the report covers what the trail
    // holds.
    let plan = match &ctx.config_path {
        Some(path) => Plan::load(path)?,
        None => Plan::default(),
    };
    let repo = ctx.open()?;
    repo.require_records("report")?;
    let inputs = compliance::gather(&repo, &plan, args.month, chrono::Utc::now())?;
    let report = compliance::build(&inputs);
    let text = match args.format {
        Format::Html => compliance::render_html(&report),
        Format::Md => compliance::render_markdown(&report),
        Format::Json => serde_json::to_string_pretty(&report)? + "\n",
    };
    match &args.output {
        Some(path) => {
            std::fs::write(path, &text)
                .with_context(|| format!("cannot write the report to {}", path.display()))?;
            ctx.audit.detail("output", path.display());
            if !ctx.json {
                eprintln!("report for {} written to {}", args.month, path.display());
            }
        }
        None => std::io::stdout().lock().write_all(text.as_bytes())?,
    }
    Ok(exit::OK)
}
