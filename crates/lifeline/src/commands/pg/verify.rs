//! `pg verify`: ask a live database the questions a PostgreSQL snapshot recorded (row counts,
//! pgvector neighbours) and compare the answers. Also the report `pg restore-dump` ends with.

use std::collections::BTreeSet;

use anyhow::{bail, Context as _};
use lifeline_repo::snapshot::Snapshot;
use lifeline_repo::{Id, Repository};
use lifeline_sources::postgres::dump::{self, Recorded, Verification};
use lifeline_sources::postgres::tools::redact;

use crate::context::{print_json, Context};
use crate::exit;
use crate::options::SnapshotFilterArgs;

/// Snapshot kind of a physical base backup (`pg backup`); it records the same `pgvector` answers.
const BASE_BACKUP_KIND: &str = "postgres";

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Snapshot ID prefix, or `latest` (the newest postgres or postgres-dump snapshot)
    snapshot: String,

    /// The database to compare with the snapshot's records (a restore of it, or the original)
    #[arg(long, value_name = "URL")]
    db: String,

    #[command(flatten)]
    filter: SnapshotFilterArgs,
}

pub fn run(ctx: &Context, args: VerifyArgs) -> anyhow::Result<u8> {
    let repo = ctx.open()?;
    repo.require_read("pg verify")?;
    let (id, snap) = find_snapshot(
        &repo,
        &args.snapshot,
        &[dump::KIND, BASE_BACKUP_KIND],
        "pg verify",
        &args.filter,
    )?;
    let recorded = Recorded::from_source(&snap.source)?;
    let verification = dump::verify(&args.db, &recorded)
        .with_context(|| format!("cannot verify {}", redact(&args.db)))?;
    report(ctx, &id, &verification)
}

/// A snapshot by ID prefix, or `latest` meaning the newest of `kinds` within `filter`; one of another
/// kind is refused with a message that names `command`.
pub(super) fn find_snapshot(
    repo: &Repository,
    spec: &str,
    kinds: &[&str],
    command: &str,
    filter: &SnapshotFilterArgs,
) -> anyhow::Result<(Id, Snapshot)> {
    let wanted = kinds.join(" or ");
    let filter = filter.filter();
    if spec == "latest" {
        let within = if filter.is_empty() {
            String::new()
        } else {
            format!(" matching the filter ({filter})")
        };
        return repo
            .snapshots()?
            .into_iter()
            .rev()
            .find(|(_, s)| kinds.contains(&s.kind.as_str()) && filter.matches(s))
            .with_context(|| {
                format!("the repository has no {wanted} snapshot{within} for {command}; list them with `lifeline snapshots`")
            });
    }
    let (id, snap) = repo.find_snapshot_filtered(spec, &filter)?;
    if !kinds.contains(&snap.kind.as_str()) {
        bail!(
            "snapshot {} is a {} snapshot; {command} needs a {wanted} snapshot (see `lifeline snapshots`)",
            id.short(),
            snap.kind
        );
    }
    Ok((id, snap))
}

/// Print the outcome of a comparison: a summary line when every answer is the same, otherwise a
/// table of the differences and an error (exit 1).
pub(super) fn report(ctx: &Context, id: &Id, v: &Verification) -> anyhow::Result<u8> {
    if ctx.json {
        print_json(&serde_json::json!({
            "snapshot_id": id.to_hex(),
            "equal": v.mismatches.is_empty(),
            "tables": v.tables,
            "rows": v.rows,
            "pgvector_checks": v.vector_checks,
            "neighbour_lists": v.neighbour_lists,
            "mismatches": v.mismatches,
        }))?;
    } else if v.mismatches.is_empty() {
        println!(
            "{} tables, {} rows: all counts equal; {} pgvector checks equal ({} neighbour lists)",
            v.tables, v.rows, v.vector_checks, v.neighbour_lists
        );
    } else {
        print_mismatches(v);
    }
    if v.mismatches.is_empty() {
        return Ok(exit::OK);
    }
    let tables: BTreeSet<&str> = v.mismatches.iter().map(|m| m.table.as_str()).collect();
    bail!(
        "the database differs from snapshot {} in {} check(s), in {}: it does not hold the data the snapshot recorded",
        id.short(),
        v.mismatches.len(),
        tables.into_iter().collect::<Vec<_>>().join(", ")
    )
}

fn print_mismatches(v: &Verification) {
    let header = ["TABLE", "CHECK", "EXPECTED", "FOUND"];
    let rows: Vec<[&str; 4]> = v
        .mismatches
        .iter()
        .map(|m| {
            [
                m.table.as_str(),
                m.check.as_str(),
                m.expected.as_str(),
                m.found.as_str(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
}
