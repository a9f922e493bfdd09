//! `lifeline daemon`: run the plan's schedules and serve metrics and the status page.

use std::path::PathBuf;

use anyhow::Context as _;
use lifeline_plan::daemon::{self, DaemonRequest};

use crate::context::Context;
use crate::exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Log format on stderr: `text`, or `json` (one object per line, for log collectors)
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,

    /// Directory of PostgreSQL's client programs, handed to every job
    #[arg(long, env = "LIFELINE_PG_BIN", value_name = "DIR")]
    pg_bin: Option<PathBuf>,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    let plan_path = super::plan::plan_path(ctx)?.to_path_buf();
    // Jobs run `lifeline run`; a relative plan path must survive their own working directory.
    let plan_path = std::path::absolute(&plan_path)
        .with_context(|| format!("cannot resolve {}", plan_path.display()))?;
    let exe = std::env::current_exe().context("cannot find the lifeline executable")?;
    daemon::run(DaemonRequest {
        plan_path,
        exe,
        pg_bin: args.pg_bin,
    })?;
    Ok(exit::OK)
}
