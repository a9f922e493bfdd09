//! The state of the backup programme at a glance: per group of snapshots (retention's groups), the
//! newest snapshot and its age, how many are incomplete, and what the repository holds.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::hold::Holds;
use crate::retention::{GroupBy, GroupKey};
use crate::stats::{objects, Objects};
use crate::{Id, Repository, Result, Snapshots};

#[derive(Debug, Serialize)]
pub struct Status {
    pub groups: Vec<GroupStatus>,
    pub snapshots: usize,
    /// Snapshots that recorded items they could not read (or that changed while read).
    pub incomplete: usize,
    pub held: usize,
    /// Snapshot objects that could not be read: named, never hidden.
    pub damaged_snapshots: Vec<String>,
    pub repository: Objects,
}

#[derive(Debug, Serialize)]
pub struct GroupStatus {
    pub group: GroupKey,
    pub snapshots: usize,
    pub incomplete: usize,
    pub newest: Newest,
    /// The newest snapshot is older than the age the caller allows.
    pub late: bool,
}

#[derive(Debug, Serialize)]
pub struct Newest {
    pub id: String,
    pub short_id: String,
    pub time: String,
    pub age_seconds: u64,
    pub incomplete: bool,
}

/// Summarize `list` grouped by `group_by` as of `now`; a group whose newest snapshot is older than
/// `max_age` is `late`.
pub fn status(
    repo: &Repository,
    list: &Snapshots,
    group_by: GroupBy,
    now: DateTime<Utc>,
    max_age: Option<std::time::Duration>,
) -> Result<Status> {
    let holds = Holds::load(repo)?;
    let mut groups: BTreeMap<GroupKey, Vec<&(Id, crate::snapshot::Snapshot)>> = BTreeMap::new();
    for entry in &list.items {
        groups
            .entry(group_by.key(&entry.1))
            .or_default()
            .push(entry);
    }
    let groups = groups
        .into_iter()
        .filter_map(|(group, members)| {
            let (id, newest) = members.iter().max_by_key(|(_, s)| s.timestamp())?;
            let age = newest.age(now);
            Some(GroupStatus {
                group,
                snapshots: members.len(),
                incomplete: members.iter().filter(|(_, s)| !s.errors.is_empty()).count(),
                late: max_age.is_some_and(|max| age > max),
                newest: Newest {
                    id: id.to_hex(),
                    short_id: id.short(),
                    time: newest.time.clone(),
                    age_seconds: age.as_secs(),
                    incomplete: !newest.errors.is_empty(),
                },
            })
        })
        .collect();
    Ok(Status {
        groups,
        snapshots: list.items.len(),
        incomplete: list
            .items
            .iter()
            .filter(|(_, s)| !s.errors.is_empty())
            .count(),
        held: list
            .items
            .iter()
            .filter(|(id, _)| holds.is_held(id))
            .count(),
        damaged_snapshots: list.damaged.iter().map(|(key, _)| key.clone()).collect(),
        repository: objects(repo)?,
    })
}
