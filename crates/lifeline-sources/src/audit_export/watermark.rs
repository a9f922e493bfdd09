//! The watermark column: which types can be one, what the table must promise about it, and how two
//! of its values (as PostgreSQL prints them) compare when the database is not at hand.
//!
//! A watermark is safe when every value is assigned by the database while the inserting transaction
//! runs — a sequence (`DEFAULT nextval`, identity) or the server's clock (`DEFAULT now()`) — so
//! that a transaction that starts later can only get a greater value. Types too coarse to tell two
//! moments apart (dates, timestamps with fewer than 6 fractional digits) would let a later row take
//! the same value as the bound and be skipped, so they are refused; so are nullable columns (a NULL
//! row is never in any range) and sequences that hand out cached blocks per session (values then
//! arrive out of order).

use std::cmp::Ordering;

use chrono::NaiveDateTime;
use postgres::GenericClient;

use super::error::{Error, Result};

/// The types a watermark may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatermarkType {
    SmallInt,
    Integer,
    BigInt,
    /// `timestamp without time zone`.
    Timestamp,
    /// `timestamp with time zone`.
    TimestampTz,
}

impl WatermarkType {
    /// The SQL name, as `regtype` prints it: spliced into statements (never user text).
    pub fn sql(self) -> &'static str {
        match self {
            WatermarkType::SmallInt => "smallint",
            WatermarkType::Integer => "integer",
            WatermarkType::BigInt => "bigint",
            WatermarkType::Timestamp => "timestamp without time zone",
            WatermarkType::TimestampTz => "timestamp with time zone",
        }
    }

    pub fn from_sql(name: &str) -> Option<Self> {
        [
            WatermarkType::SmallInt,
            WatermarkType::Integer,
            WatermarkType::BigInt,
            WatermarkType::Timestamp,
            WatermarkType::TimestampTz,
        ]
        .into_iter()
        .find(|t| t.sql() == name)
    }

    /// Its values come from the server's clock rather than a sequence.
    pub fn is_clock(self) -> bool {
        matches!(self, WatermarkType::Timestamp | WatermarkType::TimestampTz)
    }

    /// Compare two values as an export printed them (session `DateStyle = ISO`, `TimeZone = UTC`).
    /// `None` when either cannot be read (`infinity`, a BC date, damage): the caller then cannot
    /// judge their order.
    pub fn compare(self, a: &str, b: &str) -> Option<Ordering> {
        if self.is_clock() {
            Some(timestamp(a)?.cmp(&timestamp(b)?))
        } else {
            Some(a.parse::<i64>().ok()?.cmp(&b.parse::<i64>().ok()?))
        }
    }
}

/// `2026-12-01 10:00:00.123456+00` (with time zone, in UTC) or without the offset.
fn timestamp(text: &str) -> Option<NaiveDateTime> {
    let plain = text.strip_suffix("+00").unwrap_or(text);
    NaiveDateTime::parse_from_str(plain, "%Y-%m-%d %H:%M:%S%.f").ok()
}

/// `name` or `schema.name` as quoted identifiers; anything else is refused rather than spliced.
pub fn quoted_table(table: &str) -> Result<String> {
    let parts: Vec<&str> = table.split('.').collect();
    if parts.len() > 2 || !parts.iter().all(|p| plain(p)) {
        return Err(Error::Invalid(format!(
            "table {table:?} is not a table name: write `audit_log` or `schema.audit_log` (letters, digits and _)"
        )));
    }
    Ok(parts
        .iter()
        .map(|p| format!("\"{p}\""))
        .collect::<Vec<_>>()
        .join("."))
}

/// A column name as a quoted identifier.
pub fn quoted_column(column: &str) -> Result<String> {
    if !plain(column) {
        return Err(Error::Invalid(format!(
            "watermark {column:?} is not a column name (letters, digits and _)"
        )));
    }
    Ok(format!("\"{column}\""))
}

fn plain(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// What the catalog says about the table and its watermark column.
#[derive(Debug, Clone)]
pub struct Column {
    pub kind: WatermarkType,
    /// Every column of the table, in order: `(name, type)`.
    pub columns: Vec<(String, String)>,
}

/// Read the table's columns and check that `column` can be a watermark. `quoted` is the table as
/// [`quoted_table`] gives it.
pub fn inspect(
    client: &mut impl GenericClient,
    table: &str,
    quoted: &str,
    column: &str,
) -> Result<Column> {
    let exists: Option<String> = client
        .query_one("SELECT to_regclass($1)::text", &[&quoted])
        .map_err(|e| Error::db(format!("looking up table {table}"), e))?
        .get(0);
    if exists.is_none() {
        return Err(Error::Invalid(format!(
            "table {table} does not exist in this database (or the role may not see it); names are case-sensitive"
        )));
    }
    let rows = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), \
                    a.atttypid::regtype::text, a.atttypmod, a.attnotnull, \
                    pg_get_serial_sequence($1, a.attname) \
               FROM pg_attribute a \
              WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped \
              ORDER BY a.attnum",
            &[&quoted],
        )
        .map_err(|e| Error::db(format!("reading the columns of {table}"), e))?;
    let columns: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let Some(row) = rows.iter().find(|r| r.get::<_, String>(0) == column) else {
        return Err(Error::Invalid(format!(
            "table {table} has no column {column:?}; its columns are: {}",
            columns
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    };
    let (shown, regtype, typmod, not_null, sequence): (String, String, i32, bool, Option<String>) =
        (row.get(1), row.get(2), row.get(3), row.get(4), row.get(5));
    let Some(kind) = WatermarkType::from_sql(&regtype) else {
        return Err(Error::Invalid(format!(
            "watermark {table}.{column} is {shown}; it must be a smallint, integer or bigint filled by a sequence, or a timestamp (with time zone) filled by now(): other types cannot promise that a later row gets a greater value"
        )));
    };
    // A timestamp's typmod is its fractional digits; -1 means the full 6.
    if kind.is_clock() && (0..6).contains(&typmod) {
        return Err(Error::Invalid(format!(
            "watermark {table}.{column} is {shown}, which rounds to fewer than microseconds: a row written later could get the same value as an export's bound and be skipped. Use timestamp(6) (the default precision)"
        )));
    }
    if !not_null {
        return Err(Error::Invalid(format!(
            "watermark {table}.{column} may be NULL, and a row without a watermark would never be exported: ALTER TABLE {quoted} ALTER COLUMN \"{column}\" SET NOT NULL"
        )));
    }
    if let Some(sequence) = sequence {
        let row = client
            .query_one(
                "SELECT seqcache, seqincrement FROM pg_sequence WHERE seqrelid = $1::text::regclass",
                &[&sequence],
            )
            .map_err(|e| Error::db(format!("reading sequence {sequence}"), e))?;
        let (cache, increment): (i64, i64) = (row.get(0), row.get(1));
        if cache > 1 {
            return Err(Error::Invalid(format!(
                "sequence {sequence} of watermark {table}.{column} caches {cache} values per session, so values are not handed out in order and a row could be skipped: ALTER SEQUENCE {sequence} CACHE 1"
            )));
        }
        if increment < 0 {
            return Err(Error::Invalid(format!(
                "sequence {sequence} of watermark {table}.{column} counts down; a watermark must only grow"
            )));
        }
    }
    Ok(Column { kind, columns })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted_and_anything_else_refused() {
        assert_eq!(quoted_table("audit_log").expect("plain"), "\"audit_log\"");
        assert_eq!(
            quoted_table("chatbot_compliance.audit_log").expect("schema.name"),
            "\"chatbot_compliance\".\"audit_log\""
        );
        for bad in ["", "a.b.c", "audit_log; DROP TABLE x", "a..b", "\"x\""] {
            assert!(quoted_table(bad).is_err(), "{bad}");
        }
        assert_eq!(
            quoted_column("created_at").expect("plain"),
            "\"created_at\""
        );
        assert!(quoted_column("id)").is_err());
    }

    #[test]
    fn values_compare_by_their_type_not_as_text() {
        let int = WatermarkType::BigInt;
        assert_eq!(int.compare("9", "10"), Some(Ordering::Less));
        assert_eq!(int.compare("-3", "-3"), Some(Ordering::Equal));
        let tz = WatermarkType::TimestampTz;
        // As text "…00+00" sorts before "…00.5+00" only by accident; by time it is earlier too.
        assert_eq!(
            tz.compare("2026-12-01 10:00:00+00", "2026-12-01 10:00:00.5+00"),
            Some(Ordering::Less)
        );
        assert_eq!(
            tz.compare("2026-12-01 10:00:00.9+00", "2026-12-01 10:00:00.123456+00"),
            Some(Ordering::Greater)
        );
        assert_eq!(
            WatermarkType::Timestamp.compare("2026-12-01 09:59:59.999999", "2026-12-01 10:00:00"),
            Some(Ordering::Less)
        );
        assert_eq!(tz.compare("infinity", "2026-12-01 10:00:00+00"), None);
        assert_eq!(
            WatermarkType::from_sql("timestamp with time zone"),
            Some(WatermarkType::TimestampTz)
        );
        assert_eq!(WatermarkType::from_sql("date"), None);
    }
}
