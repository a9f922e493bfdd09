//! Legal holds (format.md §12): immutable records that keep snapshots — and everything they reference —
//! out of reach of `forget` and `prune` until the hold is removed or runs out.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::record::{self, Record, Stamp, Stored};
use crate::repository::Repository;
use crate::Id;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HoldAction {
    Add,
    Remove,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldRecord {
    #[serde(flatten)]
    pub stamp: Stamp,
    pub action: HoldAction,
    pub snapshots: Vec<Id>,
    pub reason: String,
    pub until: Option<String>,
}

impl Record for HoldRecord {
    const PREFIX: &'static str = "holds/";
    const TYPE: &'static str = "hold";
    fn stamp(&self) -> &Stamp {
        &self.stamp
    }
}

/// A snapshot's hold as it stands now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hold {
    pub snapshot: String,
    pub reason: String,
    pub until: Option<String>,
    /// When it was placed (the writer's clock) and by whom (`user@host`).
    pub since: String,
    pub by: String,
    /// The record that placed it.
    pub record: String,
}

/// Every hold record, and the holds they leave in force.
#[derive(Debug, Default)]
pub struct Holds {
    active: HashMap<Id, Hold>,
    pub history: Vec<Stored<HoldRecord>>,
}

impl Holds {
    /// Read every hold record. One that cannot be read is an error: a hold must never be lost to
    /// damage and a held snapshot removed because of it.
    pub fn load(repo: &Repository) -> Result<Holds> {
        let records = record::load_all::<HoldRecord>(repo)?.require_all()?;
        Ok(Holds::from_records(records, Utc::now()))
    }

    /// Fold the records, oldest first: a snapshot is held while its newest record is an `add` whose
    /// `until` is absent or after `now`.
    pub fn from_records(history: Vec<Stored<HoldRecord>>, now: DateTime<Utc>) -> Holds {
        let mut latest: HashMap<Id, &Stored<HoldRecord>> = HashMap::new();
        for stored in &history {
            for id in &stored.record.snapshots {
                latest.insert(*id, stored);
            }
        }
        let active = latest
            .into_iter()
            .filter(|(_, s)| s.record.action == HoldAction::Add)
            .filter(|(_, s)| {
                s.record
                    .until
                    .as_deref()
                    .and_then(|u| DateTime::parse_from_rfc3339(u).ok())
                    .is_none_or(|until| until > now)
            })
            .map(|(id, s)| {
                let hold = Hold {
                    snapshot: id.to_hex(),
                    reason: s.record.reason.clone(),
                    until: s.record.until.clone(),
                    since: s.record.stamp.time.clone(),
                    by: format!("{}@{}", s.record.stamp.username, s.record.stamp.hostname),
                    record: s.id.to_hex(),
                };
                (id, hold)
            })
            .collect();
        Holds { active, history }
    }

    pub fn get(&self, snapshot: &Id) -> Option<&Hold> {
        self.active.get(snapshot)
    }

    pub fn is_held(&self, snapshot: &Id) -> bool {
        self.active.contains_key(snapshot)
    }

    /// Holds in force, by snapshot ID.
    pub fn active(&self) -> Vec<&Hold> {
        let mut all: Vec<&Hold> = self.active.values().collect();
        all.sort_by(|a, b| (&a.since, &a.snapshot).cmp(&(&b.since, &b.snapshot)));
        all
    }
}

fn write(
    repo: &Repository,
    action: HoldAction,
    snapshots: &[Id],
    reason: &str,
    until: Option<DateTime<Utc>>,
) -> Result<Id> {
    if reason.trim().is_empty() {
        return Err(Error::Invalid(
            "a hold needs a reason (--reason \"case 2026-114, counsel's request\")".into(),
        ));
    }
    if snapshots.is_empty() {
        return Err(Error::Invalid("name at least one snapshot".into()));
    }
    let mut ids = snapshots.to_vec();
    ids.sort();
    ids.dedup();
    record::save(
        repo,
        &HoldRecord {
            stamp: Stamp::now(HoldRecord::TYPE),
            action,
            snapshots: ids,
            reason: reason.to_string(),
            until: until.map(|u| u.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        },
    )
}

/// Place `snapshots` under hold. Returns the record's ID.
pub fn add(
    repo: &Repository,
    snapshots: &[Id],
    reason: &str,
    until: Option<DateTime<Utc>>,
) -> Result<Id> {
    if let Some(until) = until.filter(|u| *u <= Utc::now()) {
        return Err(Error::Invalid(format!(
            "--until {} is already past: a hold must end in the future",
            until.to_rfc3339()
        )));
    }
    write(repo, HoldAction::Add, snapshots, reason, until)
}

/// Lift the holds on `snapshots`; each must be held now.
pub fn remove(repo: &Repository, snapshots: &[Id], reason: &str) -> Result<Id> {
    let holds = Holds::load(repo)?;
    if let Some(free) = snapshots.iter().find(|id| !holds.is_held(id)) {
        return Err(Error::Invalid(format!(
            "snapshot {} is not under hold (`lifeline hold list` shows the holds)",
            free.short()
        )));
    }
    write(repo, HoldAction::Remove, snapshots, reason, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn stored(at: u64, action: HoldAction, ids: &[u8], until: Option<&str>) -> Stored<HoldRecord> {
        Stored {
            id: Id([at as u8; 32]),
            stored: UNIX_EPOCH + Duration::from_secs(at),
            record: HoldRecord {
                stamp: Stamp::now("hold"),
                action,
                snapshots: ids.iter().map(|b| Id([*b; 32])).collect(),
                reason: format!("r{at}"),
                until: until.map(String::from),
            },
        }
    }

    #[test]
    fn the_newest_record_of_a_snapshot_decides_and_until_ends_a_hold() {
        let now = DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let holds = Holds::from_records(
            vec![
                stored(1, HoldAction::Add, &[1, 2, 3], None),
                stored(2, HoldAction::Remove, &[2], None),
                stored(3, HoldAction::Add, &[4], Some("2026-11-30T00:00:00Z")),
                stored(4, HoldAction::Add, &[5], Some("2027-01-01T00:00:00Z")),
                stored(5, HoldAction::Add, &[3], None),
            ],
            now,
        );
        let held: Vec<bool> = (1..=5u8).map(|b| holds.is_held(&Id([b; 32]))).collect();
        assert_eq!(held, [true, false, true, false, true]);
        assert_eq!(
            holds.get(&Id([3; 32])).map(|h| h.reason.as_str()),
            Some("r5")
        );
    }
}
