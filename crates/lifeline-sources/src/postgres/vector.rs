//! pgvector answers recorded at backup time and asked again of a restored database.
//!
//! A vector index that comes back from a backup is only useful if it finds the same neighbours. For
//! every `vector` column of a table with a single-column primary key, a few sample rows and their
//! exact ten nearest neighbours (L2 distance, index scans off, ties broken by key) are recorded, so a
//! restore can be checked for the same answers rather than only the same row count.

use postgres::GenericClient;
use serde::{Deserialize, Serialize};

use super::error::{Error, Result};

/// Sample rows per vector column: the ones with the smallest keys, so the choice is deterministic.
const SAMPLES: i64 = 3;
/// Neighbours recorded per sample.
const NEIGHBOURS: i64 = 10;

/// The recorded answers for one `vector` column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VectorCheck {
    /// `schema.table`, unquoted.
    pub table: String,
    /// The `vector` column.
    pub column: String,
    /// The single-column primary key.
    pub key: String,
    /// Rows in the table.
    pub rows: u64,
    pub samples: Vec<Sample>,
}

/// One sample row and its exact nearest neighbours.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// The row's key, as text.
    pub key: String,
    /// The row's vector, in pgvector's text form.
    pub vector: String,
    /// Keys (as text) of the ten rows nearest to `vector`, nearest first.
    pub neighbours: Vec<String>,
}

/// A recorded answer that the database now answers differently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mismatch {
    /// `schema.table`, unquoted.
    pub table: String,
    /// What was compared, e.g. `row count` or `neighbours of id 42 (embedding)`.
    pub check: String,
    pub expected: String,
    pub found: String,
}

/// Where the pgvector extension lives, for schema-qualified type and operator names that work
/// whatever the search_path.
fn extension_schema(client: &mut impl GenericClient) -> Result<Option<String>> {
    let row = client
        .query_opt(
            "SELECT n.nspname::text FROM pg_extension e \
             JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector'",
            &[],
        )
        .map_err(|e| Error::db("looking for the pgvector extension", e))?;
    Ok(row.map(|r| r.get(0)))
}

/// Record the answers for every `vector` column in the database's non-system schemas. Call it inside
/// a REPEATABLE READ transaction for answers that match one point in time; it works in a savepoint
/// of its own (a transaction of its own on a plain client) and leaves no settings behind.
pub fn capture(client: &mut impl GenericClient) -> Result<Vec<VectorCheck>> {
    capture_schemas(client, &[])
}

/// [`capture`], limited to the tables of `schemas` (all non-system schemas when empty), so a dump of
/// some schemas records no answers that its restore cannot give.
pub fn capture_schemas(
    client: &mut impl GenericClient,
    schemas: &[String],
) -> Result<Vec<VectorCheck>> {
    let Some(ext) = extension_schema(client)? else {
        return Ok(Vec::new());
    };
    let mut tx = client
        .transaction()
        .map_err(|e| Error::db("starting the pgvector checks", e))?;
    let columns = vector_columns(&mut tx, schemas)?;
    // Samples first, while the primary key index may still serve `ORDER BY key`.
    let mut sampled = Vec::new();
    for col in columns {
        let Some(key) = col.key else {
            tracing::warn!(
                "pgvector: {} has no single-column primary key; its column {} is not checked",
                col.table,
                col.column
            );
            continue;
        };
        let sql = format!(
            "SELECT r.{k}::text, r.{c}::text FROM {t} AS r WHERE r.{c} IS NOT NULL ORDER BY r.{k} LIMIT {SAMPLES}",
            k = quote_ident(&key),
            c = quote_ident(&col.column),
            t = col.quoted,
        );
        let samples = tx
            .query(&sql, &[])
            .map_err(|e| Error::db(format!("sampling {}.{}", col.table, col.column), e))?
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
            .collect::<Vec<_>>();
        let rows = count(&mut tx, &col.quoted, &col.table)?;
        let check = VectorCheck {
            table: col.table,
            column: col.column,
            key,
            rows,
            samples: Vec::new(),
        };
        sampled.push((check, col.quoted, samples));
    }
    exact_scans(&mut tx)?;
    let mut checks = Vec::new();
    for (mut check, quoted, samples) in sampled {
        let sql = neighbours_sql(&ext, &quoted, &check.column, &check.key);
        for (key, vector) in samples {
            let neighbours = neighbours(&mut tx, &sql, &vector, &check)?;
            check.samples.push(Sample {
                key,
                vector,
                neighbours,
            });
        }
        checks.push(check);
    }
    // Rolled back, not committed: it only read, and SET LOCAL must not outlive it.
    tx.rollback()
        .map_err(|e| Error::db("ending the pgvector checks", e))?;
    Ok(checks)
}

/// Ask the recorded questions again. Returns every answer that differs; an empty list means the
/// database gives the same row counts, sample vectors and neighbour lists.
pub fn verify(client: &mut impl GenericClient, checks: &[VectorCheck]) -> Result<Vec<Mismatch>> {
    let mut mismatches = Vec::new();
    if checks.is_empty() {
        return Ok(mismatches);
    }
    let Some(ext) = extension_schema(client)? else {
        for check in checks {
            mismatches.push(Mismatch {
                table: check.table.clone(),
                check: "pgvector extension".into(),
                expected: "installed".into(),
                found: "not installed".into(),
            });
        }
        return Ok(mismatches);
    };
    let mut tx = client
        .transaction()
        .map_err(|e| Error::db("starting the pgvector checks", e))?;
    exact_scans(&mut tx)?;
    let tables = table_names(&mut tx)?;
    for check in checks {
        let mismatch = |what: String, expected: String, found: String| Mismatch {
            table: check.table.clone(),
            check: what,
            expected,
            found,
        };
        let Some((oid, quoted)) = tables.get(&check.table) else {
            mismatches.push(mismatch("table".into(), "present".into(), "missing".into()));
            continue;
        };
        let mut missing_column = false;
        for column in [&check.column, &check.key] {
            if !has_column(&mut tx, *oid, column)? {
                mismatches.push(mismatch(
                    format!("column {column}"),
                    "present".into(),
                    "missing".into(),
                ));
                missing_column = true;
            }
        }
        if missing_column {
            continue;
        }
        let rows = count(&mut tx, quoted, &check.table)?;
        if rows != check.rows {
            mismatches.push(mismatch(
                "row count".into(),
                check.rows.to_string(),
                rows.to_string(),
            ));
        }
        let vector_sql = format!(
            "SELECT r.{c}::text FROM {quoted} AS r WHERE r.{k}::text = $1",
            c = quote_ident(&check.column),
            k = quote_ident(&check.key),
        );
        let sql = neighbours_sql(&ext, quoted, &check.column, &check.key);
        for sample in &check.samples {
            let found = tx
                .query_opt(&vector_sql, &[&sample.key])
                .map_err(|e| Error::db(format!("reading {} {}", check.table, sample.key), e))?
                .map(|r| r.get::<_, Option<String>>(0));
            let what = format!("{} of {} {}", check.column, check.key, sample.key);
            match found {
                None => mismatches.push(mismatch(what, "a row".into(), "no row".into())),
                Some(v) if v.as_deref() != Some(sample.vector.as_str()) => {
                    mismatches.push(mismatch(
                        what,
                        abbreviate(&sample.vector),
                        v.as_deref().map_or_else(|| "NULL".into(), abbreviate),
                    ))
                }
                Some(_) => {}
            }
            let neighbours = neighbours(&mut tx, &sql, &sample.vector, check)?;
            if neighbours != sample.neighbours {
                mismatches.push(mismatch(
                    format!(
                        "neighbours of {} {} ({})",
                        check.key, sample.key, check.column
                    ),
                    sample.neighbours.join(","),
                    neighbours.join(","),
                ));
            }
        }
    }
    tx.rollback()
        .map_err(|e| Error::db("ending the pgvector checks", e))?;
    Ok(mismatches)
}

/// A vector column and the table it is in.
struct VectorColumn {
    table: String,
    quoted: String,
    column: String,
    key: Option<String>,
}

/// Every `vector` column of an ordinary or partitioned table (partitions are covered by their
/// parent) outside the system schemas, with the table's primary key when it has one column.
fn vector_columns(tx: &mut impl GenericClient, schemas: &[String]) -> Result<Vec<VectorColumn>> {
    let rows = tx
        .query(
            "SELECT n.nspname::text, c.relname::text, \
                    quote_ident(n.nspname) || '.' || quote_ident(c.relname), a.attname::text, \
                    (SELECT k.attname::text FROM pg_index i \
                       JOIN pg_attribute k ON k.attrelid = i.indrelid AND k.attnum = i.indkey[0] \
                      WHERE i.indrelid = c.oid AND i.indisprimary AND i.indnkeyatts = 1) \
               FROM pg_extension e \
               JOIN pg_type ty ON ty.typname = 'vector' AND ty.typnamespace = e.extnamespace \
               JOIN pg_attribute a ON a.atttypid = ty.oid AND a.attnum > 0 AND NOT a.attisdropped \
               JOIN pg_class c ON c.oid = a.attrelid \
               JOIN pg_namespace n ON n.oid = c.relnamespace \
              WHERE e.extname = 'vector' AND c.relkind IN ('r', 'p') AND NOT c.relispartition \
                AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
                AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%' \
                AND (cardinality($1::text[]) = 0 OR n.nspname = ANY($1::text[])) \
              ORDER BY 1, 2, 4",
            &[&schemas],
        )
        .map_err(|e| Error::db("listing vector columns", e))?;
    Ok(rows
        .iter()
        .map(|r| VectorColumn {
            table: format!("{}.{}", r.get::<_, String>(0), r.get::<_, String>(1)),
            quoted: r.get(2),
            column: r.get(3),
            key: r.get(4),
        })
        .collect())
}

/// `schema.table` → (oid, quoted name) for every ordinary or partitioned table outside the system
/// schemas. Names are matched unquoted, as they were recorded; should two tables print the same
/// (`"a.b".c` and `a."b.c"`), the first in name order wins.
pub(super) fn table_names(
    tx: &mut impl GenericClient,
) -> Result<std::collections::BTreeMap<String, (u32, String)>> {
    let rows = tx
        .query(
            "SELECT n.nspname::text || '.' || c.relname::text, c.oid, \
                    quote_ident(n.nspname) || '.' || quote_ident(c.relname) \
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
              WHERE c.relkind IN ('r', 'p') \
                AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
                AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%' \
              ORDER BY n.nspname, c.relname",
            &[],
        )
        .map_err(|e| Error::db("listing tables", e))?;
    let mut names = std::collections::BTreeMap::new();
    for r in rows {
        names
            .entry(r.get::<_, String>(0))
            .or_insert_with(|| (r.get::<_, u32>(1), r.get::<_, String>(2)));
    }
    Ok(names)
}

fn has_column(tx: &mut impl GenericClient, table: u32, column: &str) -> Result<bool> {
    tx.query_opt(
        "SELECT 1 FROM pg_attribute WHERE attrelid = $1 AND attname = $2 AND attnum > 0 \
           AND NOT attisdropped",
        &[&table, &column],
    )
    .map(|r| r.is_some())
    .map_err(|e| Error::db("reading column names", e))
}

/// `SELECT count(*)` of a table given by its quoted name; `shown` names it in errors.
pub(super) fn count(tx: &mut impl GenericClient, quoted: &str, shown: &str) -> Result<u64> {
    let row = tx
        .query_one(&format!("SELECT count(*) FROM {quoted}"), &[])
        .map_err(|e| Error::db(format!("counting the rows of {shown}"), e))?;
    Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
}

/// Approximate indexes (HNSW, IVFFlat) may miss true neighbours; with index scans off the planner
/// sorts every row by distance, which is exact. Local to the (sub)transaction.
fn exact_scans(tx: &mut impl GenericClient) -> Result<()> {
    tx.batch_execute(
        "SET LOCAL enable_indexscan = off; SET LOCAL enable_bitmapscan = off; \
         SET LOCAL enable_indexonlyscan = off",
    )
    .map_err(|e| Error::db("turning index scans off for exact neighbours", e))
}

/// The neighbour query: L2 distance to `$1`, ties broken by key so the order is total. Columns are
/// qualified: a bare `ORDER BY id` would sort by the output column `id::text`, not the key.
fn neighbours_sql(ext: &str, quoted_table: &str, column: &str, key: &str) -> String {
    let ext = quote_ident(ext);
    format!(
        "SELECT r.{k}::text FROM {quoted_table} AS r ORDER BY r.{c} OPERATOR({ext}.<->) $1::text::{ext}.vector, r.{k} LIMIT {NEIGHBOURS}",
        k = quote_ident(key),
        c = quote_ident(column),
    )
}

fn neighbours(
    tx: &mut impl GenericClient,
    sql: &str,
    vector: &str,
    check: &VectorCheck,
) -> Result<Vec<String>> {
    Ok(tx
        .query(sql, &[&vector])
        .map_err(|e| {
            Error::db(
                format!("finding neighbours in {}.{}", check.table, check.column),
                e,
            )
        })?
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect())
}

/// An identifier as SQL text: in double quotes, inner quotes doubled.
pub(super) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A vector's text cut short for a report line.
fn abbreviate(text: &str) -> String {
    const MAX: usize = 48;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::{abbreviate, neighbours_sql, quote_ident};

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("plain"), "\"plain\"");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(
            neighbours_sql("public", "\"s\".\"t\"", "emb", "id"),
            "SELECT r.\"id\"::text FROM \"s\".\"t\" AS r ORDER BY r.\"emb\" OPERATOR(\"public\".<->) $1::text::\"public\".vector, r.\"id\" LIMIT 10"
        );
    }

    #[test]
    fn long_vectors_are_abbreviated() {
        assert_eq!(abbreviate("[1,2]"), "[1,2]");
        let long = format!("[{}]", vec!["0.5"; 40].join(","));
        let short = abbreviate(&long);
        assert!(short.ends_with('…') && short.chars().count() == 49);
    }
}
