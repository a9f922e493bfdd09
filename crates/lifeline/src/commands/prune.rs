use lifeline_repo::prune::{self, Report};
use lifeline_repo::retention::human_duration;

use crate::commands::backup::human_bytes;
use crate::context::{print_json, Context};
use crate::exit;
use crate::options::{parse_duration, parse_percent};

/// How prune collects garbage; shared by `prune` and `forget --prune`.
#[derive(Debug, Clone, clap::Args)]
pub struct Tuning {
    /// How long marked garbage waits, by the storage's clock, before it is deleted; long enough for
    /// any backup that may still use it to finish (0s deletes at once when no other session runs)
    #[arg(long, default_value = "24h", value_parser = parse_duration, value_name = "DURATION")]
    pub grace: std::time::Duration,

    /// Repack a pack when more than this share of its bytes is unreferenced
    #[arg(long, default_value_t = 10.0, value_name = "PCT", value_parser = parse_percent)]
    pub max_unused: f64,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    tuning: Tuning,

    /// Show what would be marked and deleted; change nothing
    #[arg(long)]
    dry_run: bool,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    // A dry run changes nothing and leaves no audit record.
    if !args.dry_run {
        ctx.audit.begin("prune", ctx.options.location()?);
    }
    let repo = ctx.open()?;
    repo.require_read("prune")?;
    let report = run_prune(&repo, &args.tuning, args.dry_run)?;
    ctx.audit.detail("packs_deleted", report.deleted.packs);
    ctx.audit.detail("bytes_freed", report.deleted.bytes);
    ctx.audit.detail("packs_marked", report.marked.unused_packs);
    if ctx.json {
        print_json(&report)?;
    } else {
        print(&report);
    }
    Ok(exit::OK)
}

pub fn run_prune(
    repo: &lifeline_repo::Repository,
    tuning: &Tuning,
    dry_run: bool,
) -> anyhow::Result<Report> {
    Ok(prune::prune(
        repo,
        &prune::Options {
            grace: tuning.grace,
            max_unused: tuning.max_unused,
            dry_run,
        },
    )?)
}

pub fn print(r: &Report) {
    let would = if r.dry_run { "would be " } else { "" };
    println!(
        "{} snapshot(s) reference {} blob(s)",
        r.snapshots, r.referenced_blobs
    );
    if r.deleted.marks > 0 {
        println!(
            "garbage marked earlier: {} pack(s) ({}) and {} index file(s) {would}deleted",
            r.deleted.packs,
            human_bytes(r.deleted.bytes),
            r.deleted.index_files
        );
    }
    if r.kept_in_use > 0 {
        println!(
            "{} marked pack(s) kept: snapshots stored since they were marked need them",
            r.kept_in_use
        );
    }
    let m = &r.marked;
    if m.unused_packs + m.repacked_packs > 0 || m.index_files_superseded > 0 {
        println!(
            "{} unused pack(s) and {} pack(s) to repack ({}) {would}marked; {} live blob(s) {would}copied ({} written); {} index file(s) {would}merged",
            m.unused_packs,
            m.repacked_packs,
            human_bytes(m.bytes),
            m.repacked_blobs,
            human_bytes(m.bytes_written),
            m.index_files_superseded
        );
    } else {
        println!("no new garbage");
    }
    for p in &r.pending {
        println!(
            "waiting: mark {} ({} pack(s), {}), {} old, waits for {}",
            &p.mark[..8.min(p.mark.len())],
            p.packs,
            human_bytes(p.bytes),
            human_duration(std::time::Duration::from_secs(p.age_seconds)),
            p.waiting_for
        );
    }
    if r.missing_blobs > 0 {
        println!(
            "warning: {} referenced blob(s) are in no pack; run `lifeline check`",
            r.missing_blobs
        );
    }
    for u in &r.unreadable {
        println!("warning: {u} could not be read and was left alone; run `lifeline check`");
    }
    println!(
        "packs: {} → {}; index files: {} → {}",
        human_bytes(r.stored_bytes_before),
        human_bytes(r.stored_bytes_after),
        r.index_files_before,
        r.index_files_after
    );
    if r.dry_run {
        println!("dry run: nothing was changed");
    }
}
