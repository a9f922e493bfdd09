//! Snapshot manifests (format.md §9).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Id;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub files: u64,
    pub dirs: u64,
    pub bytes: u64,
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unmodified: u64,
    pub data_added: u64,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemError {
    pub path: String,
    pub message: String,
    /// The item was stored, but it changed while it was read (its tree node says so too); otherwise
    /// it could not be read and is missing from the snapshot.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub changed_while_read: bool,
}

impl ItemError {
    /// An item missing from the snapshot: it could not be read (or was lost later).
    pub fn unreadable(path: String, message: String) -> Self {
        ItemError {
            path,
            message,
            changed_while_read: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: u32,
    pub time: String,
    pub hostname: String,
    pub username: String,
    pub kind: String,
    pub paths: Vec<String>,
    pub tags: BTreeMap<String, String>,
    pub parent: Option<String>,
    pub tree: Id,
    pub summary: Summary,
    pub errors: Vec<ItemError>,
    pub source: BTreeMap<String, String>,
}

impl Snapshot {
    /// A snapshot of `kind` started now by this host and user; the caller fills in the rest.
    pub fn new(kind: &str, paths: Vec<String>, tree: Id) -> Self {
        Snapshot {
            version: 1,
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            hostname: crate::host::hostname(),
            username: crate::host::username(),
            kind: kind.into(),
            paths,
            tags: BTreeMap::new(),
            parent: None,
            tree,
            summary: Summary::default(),
            errors: Vec::new(),
            source: BTreeMap::new(),
        }
    }

    /// Time as a sortable instant; an unparseable time sorts first.
    pub fn timestamp(&self) -> chrono::DateTime<chrono::FixedOffset> {
        chrono::DateTime::parse_from_rfc3339(&self.time).unwrap_or_default()
    }
}
