use lifeline_repo::check::{check, ReadData};

use crate::context::{print_json, Context};
use crate::exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Read, decrypt and verify every pack
    #[arg(long, conflicts_with = "read_data_subset")]
    read_data: bool,

    /// Read and verify this share of the packs, chosen at random (e.g. 10%)
    #[arg(long, value_name = "N%", value_parser = parse_percent)]
    read_data_subset: Option<f64>,
}

fn parse_percent(s: &str) -> Result<f64, String> {
    let n: f64 = s
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("{s:?} is not a percentage such as 10%"))?;
    if n > 0.0 && n <= 100.0 {
        Ok(n)
    } else {
        Err(format!("{s:?} must be above 0% and at most 100%"))
    }
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    let repo = ctx.open()?;
    let mode = match (args.read_data, args.read_data_subset) {
        (true, _) => ReadData::All,
        (false, Some(pct)) => ReadData::Subset(pct),
        (false, None) => ReadData::None,
    };
    let report = check(&repo, mode)?;
    if ctx.json {
        print_json(&report)?;
    } else {
        println!(
            "checked {} snapshot(s), {} pack(s), {} blob(s); read {} pack(s) in full",
            report.snapshots, report.packs, report.blobs, report.packs_read
        );
        if report.unindexed_packs > 0 {
            println!(
                "note: {} pack(s) are in no index (left by an interrupted backup); the next backup reuses them",
                report.unindexed_packs
            );
        }
        for p in &report.problems {
            println!("error: {}: {}", p.object, p.detail);
            for a in &p.affected {
                println!("  affects {a}");
            }
        }
        if report.problems.is_empty() {
            println!("no errors were found");
        } else {
            println!("{} problem(s) found", report.problems.len());
        }
    }
    Ok(if report.problems.is_empty() {
        exit::OK
    } else {
        exit::FATAL
    })
}
