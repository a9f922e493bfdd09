//! `audit verify`: whether the trail is whole. Without keys it checks what the plaintext can prove
//! (names, hashes, links, times); with keys it also authenticates every record (format.md §14).

use std::collections::HashSet;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer};

use super::inspect::{read_all, Inspected};
use super::name::{self, Name, SKEW, WINDOW};
use super::order::topological;
use crate::crypto::Keyring;
use crate::error::{Error, Result};
use crate::repository::Config;
use crate::storage::Storage;
use crate::Id;

/// The four ways a trail can be tampered with, as `verify` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProblemKind {
    /// A record's bytes are not what its name, or its seal, says they were.
    Altered,
    /// A record that another record (or an anchor) names is not there: it was deleted.
    Missing,
    /// Records are linked against the order of their times.
    Reordered,
    /// A record that no writer of this trail wrote, or that no later writer saw.
    Inserted,
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProblemKind::Altered => "altered",
            ProblemKind::Missing => "missing",
            ProblemKind::Reordered => "reordered",
            ProblemKind::Inserted => "inserted",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub kind: ProblemKind,
    /// The storage key of the record it is about; `None` for an anchor that is not there.
    pub record: Option<String>,
    /// What was found and what it means.
    pub message: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Verification {
    /// Objects under `audit/`.
    pub records: usize,
    /// Every record was also authenticated with the repository's keys.
    pub authenticated: bool,
    /// The records no record links to: the newest, one per writer that raced another. Name a head
    /// as an anchor in a later run to detect the deletion of the newest records.
    #[serde(serialize_with = "hex_ids")]
    pub heads: Vec<Id>,
    /// The times (RFC 3339) of the oldest and newest record.
    pub first: Option<String>,
    pub last: Option<String>,
    pub problems: Vec<Problem>,
}

impl Verification {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

fn hex_ids<S: Serializer>(ids: &[Id], s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_seq(ids.iter().map(Id::to_hex))
}

/// Verify the trail in `storage`: structurally always, and authenticated when `keyring` is given.
/// `anchors` are record IDs known from earlier (a head from an earlier run, a SIEM's copy): each
/// must still be there.
pub fn verify(
    storage: &dyn Storage,
    keyring: Option<&Keyring>,
    anchors: &[Id],
) -> Result<Verification> {
    let repository = match keyring {
        Some(k) => Some(k.repo_id.clone()),
        None => config_id(storage)?,
    };
    let inspected = read_all(storage, keyring, repository.as_deref(), &|_| true)?;
    let mut verification = analyse(&inspected, keyring.is_some(), anchors);
    verification
        .problems
        .extend(deleted_records(storage, &inspected)?);
    Ok(verification)
}

/// Records that are never deleted (holds, verifications, drills: format.md §1) that an
/// authenticated audit record says were written and that storage no longer has. Deleting one
/// passes every other check (a hold silently lifted, a verification or drill unproven), so the
/// trail is what tells.
fn deleted_records(storage: &dyn Storage, inspected: &[Inspected]) -> Result<Vec<Problem>> {
    let mut problems = Vec::new();
    for r in inspected {
        // Records `copy` imported speak of the source repository's objects.
        let Some(entry) = r.entry.as_ref().filter(|e| e.origin.is_none()) else {
            continue;
        };
        for t in &entry.event.touched {
            let prefix = match t.kind.as_str() {
                "hold" => "holds/",
                "verification" => "verifications/",
                "drill" => "drills/",
                _ => continue,
            };
            if t.access != super::Access::Wrote || Id::from_hex(&t.id).is_none() {
                continue;
            }
            let key = format!("{prefix}{}", t.id);
            if storage.stat(&key)?.is_none() {
                problems.push(Problem {
                    kind: ProblemKind::Missing,
                    record: Some(r.key.clone()),
                    message: format!(
                        "{} says it wrote {key}, which is not in the repository: {} records are never deleted, so it was deleted",
                        r.key.trim_start_matches("audit/"),
                        t.kind
                    ),
                });
            }
        }
    }
    Ok(problems)
}

/// The repository's ID from its plaintext `config`, so a reader without keys can tell records of
/// another repository's trail. `None` when there is no readable config (a bare copy of `audit/`).
fn config_id(storage: &dyn Storage) -> Result<Option<String>> {
    match storage.get("config") {
        Ok(bytes) => Ok(serde_json::from_slice::<Config>(&bytes).ok().map(|c| c.id)),
        Err(Error::ObjectMissing { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A record with a usable name, and the links it can be trusted to show.
struct Node<'a> {
    name: Name,
    key: &'a str,
    links: Option<&'a [Name]>,
    flawed: bool,
}

/// The problems of a set of inspected records: each record's own, then how they fit together.
pub(crate) fn analyse(
    inspected: &[Inspected],
    authenticated: bool,
    anchors: &[Id],
) -> Verification {
    let mut problems: Vec<Problem> = inspected
        .iter()
        .filter_map(|r| {
            r.flaw.as_ref().map(|f| Problem {
                kind: f.kind,
                record: Some(r.key.clone()),
                message: f.message.clone(),
            })
        })
        .collect();
    let nodes: Vec<Node<'_>> = inspected
        .iter()
        .filter_map(|r| {
            Some(Node {
                name: r.name?,
                key: &r.key,
                links: r.links.as_deref(),
                flawed: r.flaw.is_some(),
            })
        })
        .collect();
    let present: HashSet<Name> = nodes.iter().map(|n| n.name).collect();
    let mut linked: HashSet<Name> = HashSet::new();
    // Times of records whose links cannot be known (deleted, or unreadable): any record they may have
    // linked to can look unlinked without having been inserted.
    let mut unknown_linkers: Vec<DateTime<Utc>> = Vec::new();
    for node in &nodes {
        let Some(links) = node.links else {
            unknown_linkers.push(node.name.time);
            continue;
        };
        for link in links {
            linked.insert(*link);
            if !present.contains(link) {
                unknown_linkers.push(link.time);
                problems.push(Problem {
                    kind: ProblemKind::Missing,
                    record: Some(node.key.to_string()),
                    message: format!(
                        "{} links to {link}, which is not in the repository: a record was deleted",
                        node.name
                    ),
                });
            } else if link.time > node.name.time + SKEW {
                problems.push(Problem {
                    kind: ProblemKind::Reordered,
                    record: Some(node.key.to_string()),
                    message: format!(
                        "{} links to {link}, which was written {} later than itself: the records were reordered, or the writers' clocks disagree by more than {} minutes",
                        node.name,
                        humantime::format_duration(to_std(link.time - node.name.time)),
                        SKEW.num_minutes()
                    ),
                });
            }
        }
    }
    let graph: Vec<(Name, &[Name])> = nodes
        .iter()
        .map(|n| (n.name, n.links.unwrap_or(&[])))
        .collect();
    for i in topological(&graph).1 {
        problems.push(Problem {
            kind: ProblemKind::Reordered,
            record: Some(nodes[i].key.to_string()),
            message: format!(
                "the links of {} lead into a cycle, which no sequence of writes can make: the links were forged",
                nodes[i].name
            ),
        });
    }
    let oldest = nodes.iter().map(|n| n.name.time).min();
    let newest = nodes.iter().map(|n| n.name.time).max();
    if let (Some(oldest), Some(newest)) = (oldest, newest) {
        for node in nodes.iter().filter(|n| !n.flawed) {
            if node.links.is_some_and(<[Name]>::is_empty) && node.name.time > oldest + WINDOW {
                problems.push(Problem {
                    kind: ProblemKind::Inserted,
                    record: Some(node.key.to_string()),
                    message: format!(
                        "{} links to no earlier record, yet the trail began at {}: only the first records of a trail start it, so this one was put there afterwards",
                        node.name,
                        name::rfc3339(&oldest)
                    ),
                });
            }
            let unseen = !linked.contains(&node.name) && node.name.time < newest - WINDOW;
            let explained = unknown_linkers
                .iter()
                .any(|u| node.name.time >= *u - WINDOW - SKEW && node.name.time <= *u + SKEW);
            if node.links.is_some() && unseen && !explained {
                problems.push(Problem {
                    kind: ProblemKind::Inserted,
                    record: Some(node.key.to_string()),
                    message: format!(
                        "nothing links to {}, yet records were written until {}: no later writer saw it, so it was put there afterwards (or its writer's clock was more than {} behind)",
                        node.name,
                        name::rfc3339(&newest),
                        humantime::format_duration(to_std(WINDOW))
                    ),
                });
            }
        }
    }
    let ids: HashSet<Id> = nodes.iter().map(|n| n.name.id).collect();
    for anchor in anchors.iter().filter(|a| !ids.contains(a)) {
        problems.push(Problem {
            kind: ProblemKind::Missing,
            record: None,
            message: format!(
                "anchor {anchor} is not in the trail: records were deleted (the newest ones, if nothing else is missing), or the anchor is of another repository"
            ),
        });
    }
    problems.sort_by(|a, b| (&a.record, a.kind, &a.message).cmp(&(&b.record, b.kind, &b.message)));
    let mut heads: Vec<Name> = nodes
        .iter()
        .map(|n| n.name)
        .filter(|n| !linked.contains(n))
        .collect();
    heads.sort();
    Verification {
        records: inspected.len(),
        authenticated,
        heads: heads.into_iter().map(|n| n.id).collect(),
        first: oldest.as_ref().map(name::rfc3339),
        last: newest.as_ref().map(name::rfc3339),
        problems,
    }
}

/// A time difference in whole seconds, for messages.
fn to_std(delta: chrono::TimeDelta) -> std::time::Duration {
    std::time::Duration::from_secs(u64::try_from(delta.num_seconds()).unwrap_or(0))
}
