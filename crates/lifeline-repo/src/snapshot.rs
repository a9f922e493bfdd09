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

    /// How long before `now` the snapshot was taken (zero for a time in the future).
    pub fn age(&self, now: chrono::DateTime<chrono::Utc>) -> std::time::Duration {
        (now - self.timestamp().with_timezone(&chrono::Utc))
            .to_std()
            .unwrap_or_default()
    }
}

/// Which snapshots a command considers, as restic's `--tag`, `--host` and `--path`: a snapshot
/// matches when it has every given tag, comes from any of the given hosts, and includes every given
/// path. The empty filter matches every snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotFilter {
    pub tags: Vec<(String, String)>,
    pub hosts: Vec<String>,
    pub paths: Vec<String>,
}

impl SnapshotFilter {
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty() && self.hosts.is_empty() && self.paths.is_empty()
    }

    pub fn matches(&self, snapshot: &Snapshot) -> bool {
        self.tags
            .iter()
            .all(|(k, v)| snapshot.tags.get(k) == Some(v))
            && (self.hosts.is_empty() || self.hosts.contains(&snapshot.hostname))
            && self.paths.iter().all(|p| snapshot.paths.contains(p))
    }
}

/// `tag env=prod, host a or b, path /srv`, for messages.
impl std::fmt::Display for SnapshotFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts: Vec<String> = self
            .tags
            .iter()
            .map(|(k, v)| format!("tag {k}={v}"))
            .collect();
        if !self.hosts.is_empty() {
            parts.push(format!("host {}", self.hosts.join(" or ")));
        }
        parts.extend(self.paths.iter().map(|p| format!("path {p}")));
        if parts.is_empty() {
            f.write_str("every snapshot")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(host: &str, paths: &[&str], tags: &[(&str, &str)]) -> Snapshot {
        let mut s = Snapshot::new(
            "files",
            paths.iter().map(|p| p.to_string()).collect(),
            Id([0; 32]),
        );
        s.hostname = host.into();
        s.tags = tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        s
    }

    /// restic's semantics: all tags, any host, all paths.
    #[test]
    fn a_filter_needs_every_tag_and_path_and_any_host() {
        let s = snapshot(
            "db1",
            &["/etc", "/srv"],
            &[("env", "prod"), ("tier", "gold")],
        );
        let f = |tags: &[(&str, &str)], hosts: &[&str], paths: &[&str]| SnapshotFilter {
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            paths: paths.iter().map(|p| p.to_string()).collect(),
        };
        assert!(f(&[], &[], &[]).matches(&s));
        assert!(f(&[("env", "prod"), ("tier", "gold")], &[], &[]).matches(&s));
        assert!(!f(&[("env", "prod"), ("tier", "silver")], &[], &[]).matches(&s));
        assert!(!f(&[("env", "test")], &[], &[]).matches(&s));
        assert!(f(&[], &["web", "db1"], &[]).matches(&s));
        assert!(!f(&[], &["web"], &[]).matches(&s));
        assert!(f(&[], &[], &["/srv", "/etc"]).matches(&s));
        assert!(!f(&[], &[], &["/srv", "/home"]).matches(&s));
        assert_eq!(
            f(&[("env", "prod")], &["a", "b"], &["/srv"]).to_string(),
            "tag env=prod, host a or b, path /srv"
        );
    }
}
