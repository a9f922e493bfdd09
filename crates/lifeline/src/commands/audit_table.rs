//! `lifeline audit-table verify`: prove the hash chains of audit-table exports whole.

use anyhow::Context as _;
use clap::Subcommand;
use lifeline_sources::audit_export::verify;

use crate::context::{print_json, Context};
use crate::exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: AuditTableCommand,
}

#[derive(Debug, Subcommand)]
enum AuditTableCommand {
    /// Re-read every export and check that none was removed, altered, reordered or inserted
    Verify(VerifyArgs),
}

#[derive(Debug, clap::Args)]
struct VerifyArgs {
    /// Chains to verify: the plan sources' names (every chain in the repository when none is given)
    #[arg(value_name = "SOURCE")]
    sources: Vec<String>,

    /// A chain hash known from earlier (a report, a SIEM): it must still be in a chain, which is
    /// what detects the newest exports being cut off (repeatable)
    #[arg(long, value_name = "CHAIN_SHA256")]
    anchor: Vec<String>,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    match args.command {
        AuditTableCommand::Verify(a) => verify(ctx, a),
    }
}

fn verify(ctx: &Context, args: VerifyArgs) -> anyhow::Result<u8> {
    for anchor in &args.anchor {
        if anchor.len() != 64 || !anchor.chars().all(|c| c.is_ascii_hexdigit()) {
            anyhow::bail!(
                "--anchor {anchor:?} is not a chain hash: give the 64 hex digits `audit-table verify --json` prints as a chain's head"
            );
        }
    }
    let anchors: Vec<String> = args.anchor.iter().map(|a| a.to_ascii_lowercase()).collect();
    let target = if args.sources.is_empty() {
        "every chain".to_string()
    } else {
        args.sources.join(" ")
    };
    ctx.audit.begin("audit-table verify", &target);
    let repo = ctx.open()?;
    repo.require_read("audit-table verify")?;
    let report = verify::verify(&repo, &args.sources, &anchors)
        .with_context(|| format!("verifying {target}"))?;
    ctx.audit.detail("chains", report.chains.len());
    ctx.audit.detail(
        "exports",
        report.chains.iter().map(|c| c.exports).sum::<usize>(),
    );
    ctx.audit.detail("problems", report.problems.len());
    if ctx.json {
        print_json(&report)?;
    } else {
        for c in &report.chains {
            println!(
                "chain {}: {} export(s) of {} by {}, {} row(s), {} bytes read back",
                c.chain,
                c.exports,
                c.table.as_deref().unwrap_or("?"),
                c.watermark.as_deref().unwrap_or("?"),
                c.rows,
                c.bytes
            );
            if let Some(h) = &c.head {
                println!(
                    "  head #{} snapshot {} taken {} through {}, chain hash {}",
                    h.seq,
                    &h.snapshot[..h.snapshot.len().min(8)],
                    h.time,
                    h.through.as_deref().unwrap_or("-"),
                    h.chain_sha256
                );
            }
        }
        for p in &report.problems {
            let at = match (&p.chain, p.seq) {
                (Some(c), Some(n)) => format!("{c} #{n}: "),
                (Some(c), None) => format!("{c}: "),
                _ => String::new(),
            };
            println!("error: {}: {at}{}", p.kind, p.message);
        }
        if report.is_clean() {
            println!("every chain is intact");
        } else {
            println!("{} problem(s) found", report.problems.len());
        }
    }
    if report.is_clean() {
        Ok(exit::OK)
    } else {
        ctx.audit
            .error(format!("{} problem(s) found", report.problems.len()));
        Ok(exit::FATAL)
    }
}
