//! Incremental, hash-chained exports of a PostgreSQL audit table by a watermark column: each row
//! exactly once across runs, late commits included.

use serde::{Deserialize, Serialize};

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
