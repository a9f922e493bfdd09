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

    /// Also repack every pack sealed under key epoch N that kept snapshots still use, so that what
    /// they need is sealed under the current epoch and `key destroy-epoch N` can follow; the packs
    /// are marked like other garbage (repeatable)
    #[arg(long, value_name = "N")]
    repack_epoch: Vec<u32>,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    // A dry run changes nothing and leaves no audit record.
    if !args.dry_run {
        ctx.audit.begin("prune", ctx.options.location()?);
    }
    let repo = ctx.open()?;
    repo.require_read("prune")?;
    let repack_epochs = epoch_tags(&repo, &args.repack_epoch)?;
    if !args.repack_epoch.is_empty() {
        ctx.audit.detail(
            "repack_epochs",
            args.repack_epoch
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
    let report = prune::prune(
        &repo,
        &prune::Options {
            grace: args.tuning.grace,
            max_unused: args.tuning.max_unused,
            dry_run: args.dry_run,
            repack_epochs,
        },
    )?;
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
            repack_epochs: Vec::new(),
        },
    )?)
}

/// The header tags of the epochs numbered `numbers` (two rotations racing can give a number two
/// tags). The current epoch is refused: repacking would seal under it again.
fn epoch_tags(repo: &lifeline_repo::Repository, numbers: &[u32]) -> anyhow::Result<Vec<u32>> {
    let keyring = repo.keyring();
    let current = keyring.current()?.tag;
    let mut tags = Vec::new();
    for &n in numbers {
        let of_n: Vec<u32> = keyring
            .epochs
            .iter()
            .filter(|e| e.epoch == n && e.destroyed.is_none())
            .map(|e| e.tag)
            .collect();
        if of_n.is_empty() {
            anyhow::bail!(
                "--repack-epoch {n}: the repository has no key epoch {n} that is not destroyed (`lifeline key list` shows them)"
            );
        }
        if of_n.contains(&current) {
            anyhow::bail!(
                "--repack-epoch {n}: epoch {n} is the current one, which repacking would seal under again; run `lifeline key rotate` first"
            );
        }
        tags.extend(of_n);
    }
    Ok(tags)
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
        if m.epoch_packs > 0 {
            println!(
                "of them, {} pack(s) are sealed under a key epoch --repack-epoch named",
                m.epoch_packs
            );
        }
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
