//! Checks asked of a restored PostgreSQL database: the row counts and pgvector answers its snapshot
//! recorded, and the plan's own queries.

use std::collections::BTreeMap;

use postgres::{Client, SimpleQueryMessage};

use super::{check, Check, CheckResult, SqlCheck};
use crate::postgres::dump::Recorded;
use crate::postgres::vector;

/// How recorded answers are judged: exactly when the target is the very point they were recorded
/// at, leniently (a difference is a warning) when the target is later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Strictness {
    Exact,
    LaterPoint,
}

impl Strictness {
    fn differs(self) -> CheckResult {
        match self {
            Strictness::Exact => CheckResult::Fail,
            Strictness::LaterPoint => CheckResult::Warn,
        }
    }

    fn why(self) -> &'static str {
        match self {
            Strictness::Exact => "differs from what the snapshot recorded",
            Strictness::LaterPoint => {
                "differs from what the backup recorded; expected, as the restored point is later than the backup"
            }
        }
    }
}

/// One check per recorded table: its row count now against the count recorded. A missing table
/// always fails.
pub(super) fn rows(client: &mut Client, recorded: &Recorded, strictness: Strictness) -> Vec<Check> {
    let Some(counts) = &recorded.row_counts else {
        return vec![check(
            "rows",
            CheckResult::Warn,
            "the snapshot recorded no row counts, so none were compared",
        )];
    };
    if counts.is_empty() {
        return vec![check(
            "rows",
            CheckResult::Pass,
            "the snapshot recorded no tables",
        )];
    }
    let tables = match tables(client) {
        Ok(t) => t,
        Err(e) => {
            return vec![check(
                "rows",
                CheckResult::Fail,
                format!("cannot list the restored tables: {e}"),
            )]
        }
    };
    counts
        .iter()
        .map(|(table, &want)| {
            let name = format!("rows {table}");
            let Some(quoted) = tables.get(table) else {
                return Check {
                    name,
                    result: CheckResult::Fail,
                    expected: Some(want.to_string()),
                    actual: None,
                    message: Some("the table is missing from the restored database".into()),
                };
            };
            let counted = client
                .query_one(&format!("SELECT count(*) FROM {quoted}"), &[])
                .map(|r| u64::try_from(r.get::<_, i64>(0)).unwrap_or(0));
            match counted {
                Err(e) => check(
                    name,
                    CheckResult::Fail,
                    format!("cannot count its rows: {e}"),
                ),
                Ok(have) => Check {
                    name,
                    result: if have == want {
                        CheckResult::Pass
                    } else {
                        strictness.differs()
                    },
                    expected: Some(want.to_string()),
                    actual: Some(have.to_string()),
                    message: (have != want).then(|| strictness.why().to_string()),
                },
            }
        })
        .collect()
}

/// Every ordinary and partitioned table of the user schemas: `schema.table` (as row counts are
/// recorded) → its quoted name.
fn tables(client: &mut Client) -> Result<BTreeMap<String, String>, postgres::Error> {
    let rows = client.query(
        "SELECT n.nspname::text || '.' || c.relname::text, \
                quote_ident(n.nspname) || '.' || quote_ident(c.relname) \
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
          WHERE c.relkind IN ('r', 'p') \
            AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
            AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%' \
          ORDER BY 1",
        &[],
    )?;
    let mut out = BTreeMap::new();
    for r in rows {
        out.entry(r.get::<_, String>(0))
            .or_insert_with(|| r.get::<_, String>(1));
    }
    Ok(out)
}

/// One check per recorded pgvector column: the same row count, sample vectors and nearest
/// neighbours as recorded.
pub(super) fn vectors(
    client: &mut Client,
    recorded: &Recorded,
    strictness: Strictness,
) -> Vec<Check> {
    if recorded.vector_checks.is_empty() {
        return Vec::new();
    }
    let mismatches = match vector::verify(client, &recorded.vector_checks) {
        Ok(m) => m,
        Err(e) => {
            return vec![check(
                "pgvector",
                CheckResult::Fail,
                format!("cannot ask the recorded pgvector questions: {e}"),
            )]
        }
    };
    recorded
        .vector_checks
        .iter()
        .map(|v| {
            let name = format!("pgvector {}.{}", v.table, v.column);
            let mine: Vec<&vector::Mismatch> =
                mismatches.iter().filter(|m| m.table == v.table).collect();
            match mine.first() {
                None => check(
                    name,
                    CheckResult::Pass,
                    format!(
                        "{} sample(s): the same nearest neighbours as recorded",
                        v.samples.len()
                    ),
                ),
                Some(first) => Check {
                    name,
                    result: strictness.differs(),
                    expected: Some(first.expected.clone()),
                    actual: Some(first.found.clone()),
                    message: Some(format!(
                        "{} answer(s) {}; first: {}",
                        mine.len(),
                        strictness.why(),
                        first.check
                    )),
                },
            }
        })
        .collect()
}

/// The plan's queries: each must run, and answer `expect` when one is given.
pub(super) fn queries(client: &mut Client, checks: &[SqlCheck]) -> Vec<Check> {
    checks
        .iter()
        .map(|c| {
            let name = format!("sql {}", c.name);
            match first_value(client, &c.sql) {
                Err(e) => check(name, CheckResult::Fail, format!("the query failed: {e}")),
                Ok(answer) => {
                    let shown = answer.clone().unwrap_or_else(|| "(no row)".into());
                    let result = match (&c.expect, &answer) {
                        (Some(want), Some(have)) if want.trim() == have.trim() => CheckResult::Pass,
                        (Some(_), _) => CheckResult::Fail,
                        (None, _) => CheckResult::Pass,
                    };
                    Check {
                        name,
                        result,
                        expected: c.expect.clone(),
                        actual: Some(shown),
                        message: (result == CheckResult::Fail)
                            .then(|| "the answer is not the one the plan expects".into()),
                    }
                }
            }
        })
        .collect()
}

/// The first column of the first row, as text (`None` for no row, or NULL). The simple protocol
/// returns every value as PostgreSQL prints it, whatever its type.
fn first_value(client: &mut Client, sql: &str) -> Result<Option<String>, postgres::Error> {
    for message in client.simple_query(sql)? {
        if let SimpleQueryMessage::Row(row) = message {
            return Ok(row.get(0).map(str::to_string));
        }
    }
    Ok(None)
}

/// An identifier as SQL text: in double quotes, inner quotes doubled.
pub(super) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The server's version, for the drill record.
pub(super) fn server_version(client: &mut Client) -> Option<String> {
    client
        .query_one("SELECT current_setting('server_version')", &[])
        .ok()
        .map(|r| r.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_warn_at_a_later_point_and_fail_at_the_recorded_one() {
        assert_eq!(Strictness::Exact.differs(), CheckResult::Fail);
        assert_eq!(Strictness::LaterPoint.differs(), CheckResult::Warn);
        assert!(Strictness::LaterPoint
            .why()
            .contains("later than the backup"));
    }
}
