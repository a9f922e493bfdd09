use lifeline_repo::check::{check, ReadData};
use lifeline_repo::verification;
use lifeline_sources::postgres::archive_check::{self, ArchiveReport};

use crate::commands::backup::human_bytes;
use crate::context::{print_json, Context};
use crate::exit;
use crate::options::parse_share;
use crate::recorder;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Read, decrypt and verify every pack and every WAL object
    #[arg(long, conflicts_with = "read_data_subset")]
    read_data: bool,

    /// Read and verify this share of the packs, among those earlier runs of the current cycle have
    /// not read (N runs of 1/N read every pack)
    #[arg(long, value_name = "N%", value_parser = parse_share)]
    read_data_subset: Option<f64>,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    ctx.audit.begin("check", ctx.options.location()?);
    let repo = ctx.open()?;
    repo.require_read("check")?;
    let mode = match (args.read_data, args.read_data_subset) {
        (true, _) => ReadData::All,
        (false, Some(pct)) => ReadData::Subset(pct),
        (false, None) => ReadData::None,
    };
    ctx.audit.detail(
        "read_data",
        match mode {
            ReadData::All => "all".to_string(),
            ReadData::Subset(pct) => format!("subset {pct}"),
            ReadData::None => "none".to_string(),
        },
    );
    let mut report = check(&repo, mode)?;
    let wal = archive_check::check(&repo, args.read_data)?;
    // What was proved is recorded for retention (`--keep-verified`) and `snapshots`; a repository
    // this key may not write to is still checked.
    let recorded = match report.verification.take() {
        Some(record) => match verification::save(&repo, record) {
            Ok(id) => Some(id.to_hex()),
            Err(e) => {
                tracing::warn!("the verification could not be recorded: {e}");
                None
            }
        },
        None => None,
    };
    let failed = !report.problems.is_empty() || !wal.problems.is_empty();
    ctx.audit.detail("problems", report.problems.len());
    if !report.shredded.is_empty() {
        ctx.audit.detail("shredded", report.shredded.len());
    }
    ctx.audit.detail("wal_problems", wal.problems.len());
    if let Some(id) = &recorded {
        ctx.audit.touch(recorder::Wrote, "verification", id);
    }
    if let Some(first) = report.problems.iter().chain(&wal.problems).next() {
        ctx.audit.error(format!(
            "{} problem(s), first: {}: {}",
            report.problems.len() + wal.problems.len(),
            first.object,
            first.detail
        ));
    }
    if ctx.json {
        let mut value = serde_json::to_value(&report)?;
        value["wal"] = serde_json::to_value(&wal)?;
        value["verification_record"] = serde_json::to_value(&recorded)?;
        value["hints"] = serde_json::to_value(repair_hints(&report))?;
        print_json(&value)?;
    } else {
        print(&report, &wal, recorded.is_some());
    }
    Ok(if failed { exit::FATAL } else { exit::OK })
}

fn print(report: &lifeline_repo::check::Report, wal: &ArchiveReport, recorded: bool) {
    println!(
        "checked {} snapshot(s), {} pack(s), {} blob(s); read {} pack(s) in full",
        report.snapshots, report.packs, report.blobs, report.packs_read
    );
    if wal.wal_objects > 0 {
        println!(
            "checked the WAL archive of {} cluster(s): {} object(s), {} read in full",
            wal.clusters, wal.wal_objects, wal.wal_objects_read
        );
    }
    if let Some(s) = &report.subset {
        println!(
            "subset cycle {}: {} of {} pack(s) read by earlier runs, {} now{}",
            s.cycle,
            s.packs_covered_before,
            s.packs_total,
            s.packs_read_now,
            if s.cycle_complete {
                "; every pack has now been read in this cycle"
            } else {
                ""
            }
        );
    }
    if report.unindexed_packs > 0 {
        println!(
            "note: {} pack(s) are in no index (left by an interrupted backup); the next backup reuses them",
            report.unindexed_packs
        );
    }
    if report.staging_files > 0 {
        println!(
            "note: {} temporary file(s) ({}) left in tmp/ by writes that never finished; the next backup removes the {} whose writer is gone",
            report.staging_files,
            human_bytes(report.staging_bytes),
            report.staging_stale
        );
    }
    if report.packs_being_deleted > 0 {
        println!(
            "note: {} pack(s) are marked as garbage; a later `lifeline prune` deletes them",
            report.packs_being_deleted
        );
    }
    if !report.shredded.is_empty() {
        println!(
            "note: {} object(s) are shredded: sealed under a destroyed key epoch, unreadable by intent, and needed by no snapshot (prune deletes unreferenced packs; delete the others, or leave them)",
            report.shredded.len()
        );
        for p in &report.shredded {
            println!("shredded: {}: {}", p.object, p.detail);
        }
    }
    for p in report.problems.iter().chain(&wal.problems) {
        println!("error: {}: {}", p.object, p.detail);
        for a in &p.affected {
            println!("  affects {a}");
        }
    }
    let problems = report.problems.len() + wal.problems.len();
    if problems == 0 {
        println!("no errors were found");
    } else {
        println!("{problems} problem(s) found");
    }
    for hint in repair_hints(report) {
        println!("hint: {hint}");
    }
    if recorded {
        println!("the result is recorded in the repository");
    }
}

/// Which `repair` commands fix the problems found: the index when an index file is damaged or names
/// packs wrongly (or blobs are missing while packs no index names are stored), the snapshots when
/// some depend on data that is lost.
fn repair_hints(report: &lifeline_repo::check::Report) -> Vec<&'static str> {
    let index_damage = report.problems.iter().any(|p| {
        p.object.starts_with("index/")
            || (p.object.starts_with("data/")
                && (p.detail.starts_with("missing:") || p.detail.starts_with("truncated:")))
            || ((p.object.starts_with("blob ") || p.object.starts_with("tree "))
                && report.unindexed_packs > 0)
    });
    let mut hints = Vec::new();
    if index_damage {
        hints.push(
            "`lifeline repair index` rebuilds the index from the packs' own trailers; run `check` again afterwards",
        );
    }
    if !report.damaged_snapshots.is_empty() {
        hints.push(if index_damage {
            "if data stays lost after `repair index`, `lifeline repair snapshots` writes the damaged snapshots again without it (the originals are kept unless --forget)"
        } else {
            "`lifeline repair snapshots` writes the damaged snapshots again without the lost data (the originals are kept unless --forget)"
        });
    }
    hints
}
