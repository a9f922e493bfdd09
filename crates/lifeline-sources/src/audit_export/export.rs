//! One export: choose the safe bound, wait for the transactions that could still write below it,
//! then stream the rows after the previous export's bound and up to this one, in watermark order,
//! from one REPEATABLE READ snapshot into the repository as one file.

use std::time::{Duration, Instant};

use lifeline_repo::snapshot::Snapshot;
use lifeline_repo::{Repository, Writer};
use postgres::{Client, IsolationLevel, Transaction};

use super::chain::{self, Link};
use super::count::Tallying;
use super::error::{Error, Result};
use super::safe_point;
use super::watermark::{self, WatermarkType};
use super::{keys, Format, KIND};
use crate::postgres::tools;
use crate::{stdin, Progress};

/// How long an export waits for open transactions unless the source says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// What to export.
#[derive(Debug, Clone)]
pub struct ExportRequest<'a> {
    /// libpq connection URI or key=value string.
    pub url: &'a str,
    /// The chain's name (the plan source's): where the previous export is found.
    pub chain: &'a str,
    /// `audit_log` or `schema.audit_log`.
    pub table: &'a str,
    /// The column whose values only grow.
    pub watermark: &'a str,
    pub format: Format,
    /// How long to wait for open transactions.
    pub timeout: Duration,
}

/// An export stored in the repository, with its snapshot (not yet saved).
#[derive(Debug)]
pub struct Exported {
    pub snapshot: Snapshot,
    pub link: Link,
    /// Transactions it waited for, and how long.
    pub waited_for: usize,
    pub waited: Duration,
}

/// Export the rows of `request.table` the chain has not exported yet. Nothing is stored when any
/// step fails; a timeout while waiting names the transactions that were still open.
pub fn export(
    repo: &Repository,
    writer: &Writer<'_>,
    request: &ExportRequest<'_>,
    progress: &dyn Progress,
) -> Result<Exported> {
    let started = Instant::now();
    let quoted_table = watermark::quoted_table(request.table)?;
    let quoted_column = watermark::quoted_column(request.watermark)?;
    validate_chain_name(request.chain)?;
    let previous = chain::head(repo, request.chain)?;
    if let Some(p) = &previous {
        if p.link.table != request.table || p.link.watermark != request.watermark {
            return Err(Error::Invalid(format!(
                "chain {} exports {} by {}, not {} by {}: a chain keeps its table and watermark (its bounds would mean nothing for another). Give the new table its own source name",
                request.chain, p.link.table, p.link.watermark, request.table, request.watermark
            )));
        }
    }
    let after = previous.as_ref().and_then(|p| p.link.through.clone());

    let mut client = tools::connect(request.url)?;
    let zone = prepare_session(&mut client)?;
    let column = watermark::inspect(&mut client, request.table, &quoted_table, request.watermark)?;
    let time = now();
    let candidate = safe_point::choose(
        &mut client,
        request.table,
        &quoted_table,
        &quoted_column,
        column.kind,
        &zone,
    )?;
    let waited = safe_point::wait(&mut client, request.table, &candidate, request.timeout)?;

    let mut tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .map_err(|e| Error::db("starting the export transaction", e))?;
    let range = Range::settle(
        &mut tx,
        column.kind,
        after.as_deref(),
        candidate.bound.as_deref(),
    )?;
    let condition = range.condition(&quoted_column);
    let stats = tx
        .query_one(
            &format!(
                "SELECT count(*), min({quoted_column})::text, max({quoted_column})::text \
                   FROM {quoted_table} WHERE {condition}"
            ),
            &[],
        )
        .map_err(|e| Error::db(format!("counting the rows of {}", request.table), e))?;
    let (rows, first, last): (i64, Option<String>, Option<String>) =
        (stats.get(0), stats.get(1), stats.get(2));
    let (database, server_version): (String, String) = {
        let r = tx
            .query_one(
                "SELECT current_database()::text, current_setting('server_version')",
                &[],
            )
            .map_err(|e| Error::db("reading the database name", e))?;
        (r.get(0), r.get(1))
    };

    let copy = match request.format {
        Format::Csv => format!(
            "COPY (SELECT * FROM {quoted_table} WHERE {condition} ORDER BY {quoted_column}) \
             TO STDOUT (FORMAT csv, HEADER)"
        ),
        // row_to_json escapes every control character, so with quote and delimiter set to bytes
        // JSON never holds, CSV writes each object as it is, one per line.
        Format::Jsonl => format!(
            "COPY (SELECT row_to_json(r)::text FROM (SELECT * FROM {quoted_table} WHERE {condition}) r \
                    ORDER BY r.{quoted_column}) \
             TO STDOUT (FORMAT csv, DELIMITER E'\\x02', QUOTE E'\\x01')"
        ),
    };
    let file = request.format.file_name(request.table);
    let (tree, mut summary, counted) = {
        let out = tx
            .copy_out(copy.as_str())
            .map_err(|e| Error::db(format!("exporting {}", request.table), e))?;
        let mut reader = Tallying::new(out, request.format);
        let (tree, summary) = stdin::backup(writer, &file, &mut reader, progress)?;
        (tree, summary, reader.tally.finish())
    };
    tx.commit()
        .map_err(|e| Error::db("ending the export transaction", e))?;
    if Some(counted.rows) != u64::try_from(rows).ok() || counted.unterminated {
        return Err(Error::Invalid(format!(
            "the export of {} streamed {} row(s) but the same snapshot counts {rows}; nothing was saved",
            request.table, counted.rows
        )));
    }

    let link = Link {
        chain: request.chain.to_string(),
        seq: previous.as_ref().map_or(1, |p| p.link.seq + 1),
        previous_chain: previous.as_ref().map(|p| p.chain_sha256.clone()),
        time: time.clone(),
        table: request.table.to_string(),
        watermark: request.watermark.to_string(),
        format: request.format,
        after: range.after.clone(),
        through: range.through.clone(),
        rows: counted.rows,
        first,
        last,
        content_sha256: counted.sha256,
    };
    let chain_sha256 = link.hash()?;
    let mut snapshot = Snapshot::new(KIND, vec![request.table.to_string()], tree);
    snapshot.time = time;
    snapshot.parent = previous.as_ref().map(|p| p.id.to_hex());
    link.record(&mut snapshot.source);
    let json = |e: serde_json::Error| Error::Invalid(format!("encoding the columns: {e}"));
    for (key, value) in [
        (keys::CHAIN_SHA256, chain_sha256),
        (keys::FILE, file),
        (keys::WATERMARK_TYPE, column.kind.sql().to_string()),
        (
            keys::COLUMNS,
            serde_json::to_string(&column.columns).map_err(json)?,
        ),
        (keys::DATABASE, database),
        (keys::SERVER_VERSION, server_version),
        (keys::WAITED_FOR, candidate.open_transactions().to_string()),
        (keys::WAITED_MS, waited.as_millis().to_string()),
    ] {
        snapshot.source.insert(key.to_string(), value);
    }
    if let Some(p) = &previous {
        snapshot.source.insert(keys::PREVIOUS.into(), p.id.to_hex());
    }
    snapshot.tags.insert(
        lifeline_repo::retention::PERMANENT_TAG.0.into(),
        lifeline_repo::retention::PERMANENT_TAG.1.into(),
    );
    summary.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    snapshot.summary = summary;
    Ok(Exported {
        snapshot,
        link,
        waited_for: candidate.open_transactions(),
        waited,
    })
}

/// Settings that make the output the same whoever runs it: ISO dates, UTC, hex bytea, exact floats.
/// Returns the time zone the session had before (the database's default), which the writers of a
/// `timestamp without time zone` watermark are assumed to use.
fn prepare_session(client: &mut Client) -> Result<String> {
    let row = client
        .query_one(
            "SELECT current_setting('TimeZone'), pg_is_in_recovery(), \
                    current_setting('server_version_num')::int",
            &[],
        )
        .map_err(|e| Error::db("reading the session's settings", e))?;
    let (zone, standby, version): (String, bool, i32) = (row.get(0), row.get(1), row.get(2));
    if version < 130_000 {
        return Err(Error::Invalid(format!(
            "the server is PostgreSQL {}; audit-table exports need 13 or later (pg_current_snapshot, pg_xact_status)",
            version / 10_000
        )));
    }
    // A standby cannot see the primary's transactions that have no ID yet, so it cannot know when
    // rows below a bound are final.
    if standby {
        return Err(Error::Invalid(
            "the server is a standby; export from the primary, where the rows are written (a standby cannot see the primary's open transactions)".into(),
        ));
    }
    client
        .batch_execute(
            "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; \
             SET extra_float_digits = 1; SET bytea_output = 'hex'; \
             SET application_name = 'lifeline audit-table export'",
        )
        .map_err(|e| Error::db("setting up the session", e))?;
    Ok(zone)
}

/// The rows an export takes: above `after` (exclusive) and up to `through` (inclusive), both as
/// PostgreSQL prints them, with the SQL literals that select them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Range {
    after: Option<String>,
    through: Option<String>,
    after_literal: Option<String>,
    through_literal: Option<String>,
    kind: WatermarkType,
}

impl Range {
    /// `through` is the greater of the chosen bound and `after`: a bound below the previous one
    /// (rows were deleted) exports nothing rather than going back. The values pass through the
    /// column's type and come back as quoted literals, so a damaged record cannot inject SQL.
    fn settle(
        tx: &mut Transaction<'_>,
        kind: WatermarkType,
        after: Option<&str>,
        bound: Option<&str>,
    ) -> Result<Range> {
        let t = kind.sql();
        let row = tx
            .query_one(
                &format!(
                    "SELECT x.after::text, g::text, quote_literal(x.after::text), quote_literal(g::text) \
                       FROM (SELECT $1::text::{t} AS after, $2::text::{t} AS bound) x, \
                            LATERAL (SELECT GREATEST(x.after, x.bound) AS g) y"
                ),
                &[&after, &bound],
            )
            .map_err(|e| {
                Error::db(
                    format!(
                        "reading the bounds {after:?} and {bound:?} as {t} (is the previous export's record damaged?)"
                    ),
                    e,
                )
            })?;
        let range = Range {
            after: row.get(0),
            through: row.get(1),
            after_literal: row.get(2),
            through_literal: row.get(3),
            kind,
        };
        if let (Some(a), Some(b)) = (after, bound) {
            if range.through.as_deref() != Some(b) {
                tracing::warn!(
                    "the watermark's greatest value {b} is below the previous export's bound {a}: rows were deleted or the sequence was reset; this export takes no rows"
                );
            }
        }
        Ok(range)
    }

    fn condition(&self, column: &str) -> String {
        let t = self.kind.sql();
        match (&self.after_literal, &self.through_literal) {
            (_, None) => "false".to_string(),
            (None, Some(b)) => format!("{column} <= {b}::{t}"),
            (Some(a), Some(b)) => format!("{column} > {a}::{t} AND {column} <= {b}::{t}"),
        }
    }
}

/// A chain's name goes into its hash line by line: a plain name only.
fn validate_chain_name(name: &str) -> Result<()> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err(Error::Invalid(format!(
            "{name:?} is not a chain name: letters, digits, '.', '_' and '-'"
        )));
    }
    Ok(())
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_range_condition_bounds_both_ends_or_exports_nothing() {
        let r = |after: Option<&str>, through: Option<&str>| Range {
            after: after.map(String::from),
            through: through.map(String::from),
            after_literal: after.map(|a| format!("'{a}'")),
            through_literal: through.map(|b| format!("'{b}'")),
            kind: WatermarkType::BigInt,
        };
        assert_eq!(r(None, None).condition("\"id\""), "false");
        assert_eq!(r(Some("5"), None).condition("\"id\""), "false");
        assert_eq!(
            r(None, Some("9")).condition("\"id\""),
            "\"id\" <= '9'::bigint"
        );
        assert_eq!(
            r(Some("5"), Some("9")).condition("\"id\""),
            "\"id\" > '5'::bigint AND \"id\" <= '9'::bigint"
        );
        assert!(validate_chain_name("hipaa-audit_1.x").is_ok());
        assert!(validate_chain_name("a b").is_err());
        assert!(validate_chain_name("").is_err());
    }
}
