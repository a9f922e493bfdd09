//! Incremental, hash-chained exports of a PostgreSQL audit table by a watermark column: each row
//! exactly once across runs, late commits included.
//!
//! One export ([`export::export`]) chooses a safe upper bound for the watermark (every transaction
//! that could still write a row below it has ended, [`safe_point`]), streams the rows above the
//! previous export's bound and up to this one into the repository as one CSV or JSON-lines file, and
//! records its range, row count and content hash in a snapshot chained to the previous export's by
//! a SHA-256 ([`chain`]). The chain's state is the repository itself: the newest export of a chain
//! is where the next one starts. [`verify`] re-reads every export and checks the chain; the drill
//! ([`drill`]) restores one export and checks it against its record.
//!
//! docs/sources/audit-table.md describes the rule, its assumptions and the hash byte for byte.

pub mod chain;
mod count;
pub mod drill;
mod error;
pub mod export;
pub mod safe_point;
mod source;
pub mod verify;
pub mod watermark;

use serde::{Deserialize, Serialize};

pub use error::{Blocker, Error, Result};
pub use source::AuditTableSource;

/// The snapshot kind of an export.
pub const KIND: &str = "audit-table";

/// How the exported rows are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `COPY … (FORMAT csv, HEADER)`.
    #[default]
    Csv,
    /// One JSON object per row (`row_to_json`).
    Jsonl,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "csv" => Some(Format::Csv),
            "jsonl" => Some(Format::Jsonl),
            _ => None,
        }
    }

    /// The stored file's name for `table`: `audit_log.csv`, `chatbot_compliance.audit_log.jsonl`.
    pub fn file_name(self, table: &str) -> String {
        format!("{table}.{}", self.as_str())
    }
}

/// Keys of an export snapshot's `source` map (docs/sources/audit-table.md).
pub mod keys {
    /// The chain's name: the plan source's name.
    pub const CHAIN: &str = "chain";
    /// The export's place in its chain, from 1.
    pub const SEQ: &str = "seq";
    /// The table as the plan names it (`audit_log`, `schema.audit_log`).
    pub const TABLE: &str = "table";
    /// The watermark column.
    pub const WATERMARK: &str = "watermark";
    /// Its SQL type (`bigint`, `timestamp with time zone`).
    pub const WATERMARK_TYPE: &str = "watermark_type";
    pub const FORMAT: &str = "format";
    /// The stored file's name.
    pub const FILE: &str = "file";
    /// JSON list of `[name, type]`, the table's columns in order.
    pub const COLUMNS: &str = "columns";
    /// The exclusive lower bound: the previous export's `through`; absent for the first export.
    pub const AFTER: &str = "after";
    /// The inclusive upper bound; absent while the table has never had a row.
    pub const THROUGH: &str = "through";
    pub const ROWS: &str = "rows";
    /// The watermark of the first and last exported row; absent when no row was exported.
    pub const FIRST: &str = "first";
    pub const LAST: &str = "last";
    /// SHA-256 of the stored file, hex.
    pub const CONTENT_SHA256: &str = "content_sha256";
    /// The previous export's snapshot ID; absent for the first export.
    pub const PREVIOUS: &str = "previous";
    /// The previous export's chain hash; absent for the first export.
    pub const PREVIOUS_CHAIN_SHA256: &str = "previous_chain_sha256";
    /// This export's chain hash.
    pub const CHAIN_SHA256: &str = "chain_sha256";
    pub const DATABASE: &str = "database";
    pub const SERVER_VERSION: &str = "server_version";
    /// Transactions the export waited for before it read, and how long.
    pub const WAITED_FOR: &str = "waited_for";
    pub const WAITED_MS: &str = "waited_ms";
}
