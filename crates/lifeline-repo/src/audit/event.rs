//! What one audit record says: who did what to which target, when, with what result, and which
//! objects it touched (format.md §14).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Id;

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventResult {
    Ok,
    /// Finished, but not everything was done (a backup with unreadable files: exit code 3).
    Partial,
    Failed,
}

/// What the operation did to an object it touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    Wrote,
    Read,
    Deleted,
}

/// One object an operation wrote, read or deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Touched {
    pub access: Access,
    /// `snapshot`, `key`, `hold`, `drill`, `verification`, `wal`, `pack`.
    pub kind: String,
    /// Its ID (hex) or, for WAL, its name.
    pub id: String,
}

/// An operation as its caller reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The command: `init`, `backup`, `restore`, `pg restore`, `copy`, `forget`, `drill`, `report` …
    pub action: String,
    /// What it acted on: paths, a source of the plan, a snapshot, a copy's location.
    pub target: String,
    pub result: EventResult,
    /// Why it failed, with its causes.
    pub error: Option<String>,
    pub touched: Vec<Touched>,
    /// Facts particular to the action, as text: `source`, `kind`, `tier`, `bytes_added`,
    /// `rto_seconds` … (docs/evidence.md lists them).
    pub details: BTreeMap<String, String>,
}

impl Event {
    /// A successful operation on `target`, touching nothing yet.
    pub fn new(action: &str, target: &str) -> Self {
        Event {
            action: action.into(),
            target: target.into(),
            result: EventResult::Ok,
            error: None,
            touched: Vec::new(),
            details: BTreeMap::new(),
        }
    }

    pub fn touch(&mut self, access: Access, kind: &str, id: impl ToString) {
        self.touched.push(Touched {
            access,
            kind: kind.into(),
            id: id.to_string(),
        });
    }

    pub fn detail(&mut self, key: &str, value: impl ToString) {
        self.details.insert(key.into(), value.to_string());
    }
}

/// Where a record imported by `copy` came from: the repository that wrote it and the record's name
/// there, so the two trails can be compared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub repository: String,
    pub record: Id,
}

/// The authenticated content of an audit record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// RFC 3339 with milliseconds, UTC, by the writer's clock.
    pub time: String,
    pub hostname: String,
    pub username: String,
    #[serde(flatten)]
    pub event: Event,
    /// Set on records `copy` imported from another repository's trail.
    pub origin: Option<Origin>,
}

/// A record as read back: its name, the records it links to, and its content.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub id: Id,
    pub links: Vec<Id>,
    pub entry: Entry,
}
