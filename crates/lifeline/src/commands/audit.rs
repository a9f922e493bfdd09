//! `lifeline audit verify | log`: check the audit trail's chain and seals, and read it.

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::Subcommand;
use lifeline_repo::audit::{self, AuditRecord, EventResult};
use lifeline_repo::Id;

use crate::context::{print_json, Context};
use crate::exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check that no record was deleted, altered, reordered or inserted
    Verify(VerifyArgs),
    /// The records, oldest first
    Log(LogArgs),
}

#[derive(Debug, clap::Args)]
struct VerifyArgs {
    /// Check the chain's integrity without opening the repository: no password needed, records
    /// are not authenticated
    #[arg(long)]
    without_key: bool,

    /// A record ID known from earlier (a report's head, a SIEM file): it must still be there, which
    /// is what detects the newest records being cut off (repeatable)
    #[arg(long, value_name = "ID")]
    anchor: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct LogArgs {
    /// Only records from this time on (RFC 3339, or YYYY-MM-DD for midnight UTC)
    #[arg(long, value_name = "TIME", value_parser = parse_since)]
    since: Option<DateTime<Utc>>,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    match args.command {
        AuditCommand::Verify(a) => verify(ctx, a),
        AuditCommand::Log(a) => log(ctx, a),
    }
}

fn verify(ctx: &Context, args: VerifyArgs) -> anyhow::Result<u8> {
    let anchors = args
        .anchor
        .iter()
        .map(|a| {
            Id::from_hex(a).with_context(|| {
                format!("--anchor {a:?} is not a record ID: give the 64 hex digits `audit log --json` prints")
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let result = if args.without_key {
        audit::verify(ctx.storage()?.as_ref(), None, &anchors)?
    } else {
        let repo = ctx.open()?;
        // A write-only credential cannot open the records' bodies: it would take every record for
        // one "inserted" by someone without the keys. The chain's structure needs no credential.
        repo.require_records(
            "a keyed `audit verify` (`--without-key` checks the chain's structure with no credential)",
        )?;
        audit::verify(repo.storage(), Some(repo.keyring()), &anchors)?
    };
    if ctx.json {
        print_json(&result)?;
    } else {
        println!(
            "{} audit record(s){}, {} head(s){}",
            result.records,
            match (&result.first, &result.last) {
                (Some(first), Some(last)) => format!(" from {first} to {last}"),
                _ => String::new(),
            },
            result.heads.len(),
            if result.authenticated {
                "; every record's seal checked with the repository's keys"
            } else {
                "; chain checked without keys (records not authenticated)"
            }
        );
        for head in &result.heads {
            println!("head {head}");
        }
        for p in &result.problems {
            // The message names the record.
            println!("error: {}: {}", p.kind, p.message);
        }
        if result.problems.is_empty() {
            println!("the audit trail is intact");
        } else {
            println!("{} problem(s) found", result.problems.len());
        }
    }
    Ok(if result.problems.is_empty() {
        exit::OK
    } else {
        exit::FATAL
    })
}

fn log(ctx: &Context, args: LogArgs) -> anyhow::Result<u8> {
    let repo = ctx.open()?;
    repo.require_records("audit log")?;
    let records: Vec<AuditRecord> = audit::load(&repo)?
        .into_iter()
        .filter(|r| match args.since {
            Some(since) => DateTime::parse_from_rfc3339(&r.entry.time)
                .map(|t| t >= since)
                .unwrap_or(true),
            None => true,
        })
        .collect();
    if ctx.json {
        let lines: Vec<lifeline_plan::audit::Line<'_>> = records
            .iter()
            .map(|r| lifeline_plan::audit::Line {
                id: r.id.to_hex(),
                entry: &r.entry,
            })
            .collect();
        print_json(&lines)?;
        return Ok(exit::OK);
    }
    for r in &records {
        let e = &r.entry.event;
        let result = match e.result {
            EventResult::Ok => "ok",
            EventResult::Partial => "partial",
            EventResult::Failed => "FAILED",
        };
        println!(
            "{}  {}  {}@{}  {:<16} {:<8} {}{}",
            r.entry.time,
            r.id.short(),
            r.entry.username,
            r.entry.hostname,
            e.action,
            result,
            e.target,
            e.error
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        );
    }
    Ok(exit::OK)
}

fn parse_since(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| format!("{text:?} is not a time: write 2026-12-01 or 2026-12-01T08:00:00Z"))
}
