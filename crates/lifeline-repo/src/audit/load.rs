//! Reading the trail back: every record opened and authenticated, in the order it was written.

use chrono::{DateTime, Utc};

use super::event::{AuditRecord, Entry};
use super::inspect::{read_all, Inspected};
use super::name::Name;
use super::order::topological;
use super::verify::{analyse, Verification};
use crate::error::{Error, Result};
use crate::repository::Repository;

/// A record as read back, with its name.
#[derive(Debug, Clone)]
pub(crate) struct Loaded {
    pub name: Name,
    pub links: Vec<Name>,
    pub entry: Entry,
}

impl From<Loaded> for AuditRecord {
    fn from(r: Loaded) -> Self {
        AuditRecord {
            id: r.name.id,
            links: r.links.into_iter().map(|l| l.id).collect(),
            entry: r.entry,
        }
    }
}

/// Every record of the trail, each after the records it links to (ties by time, then ID). A record
/// that does not open is an error naming it; `verify` reports every problem instead.
pub fn load(repo: &Repository) -> Result<Vec<AuditRecord>> {
    Ok(load_trail(repo, None)?
        .into_iter()
        .map(Into::into)
        .collect())
}

/// The records written into this trail at or after `since` (by their writers' clocks), in the order
/// of [`load`]. An imported record was written here when it was copied; its `entry.time` is when
/// the operation happened.
pub fn load_since(repo: &Repository, since: DateTime<Utc>) -> Result<Vec<AuditRecord>> {
    Ok(load_trail(repo, Some(since))?
        .into_iter()
        .map(Into::into)
        .collect())
}

/// The trail verified and read in one pass over storage (the monthly report needs both): the
/// verification, and the records in trail order — `None` when the trail has problems that keep a
/// record from opening.
pub fn verify_and_load(repo: &Repository) -> Result<(Verification, Option<Vec<AuditRecord>>)> {
    // Without the key every record would be reported as inserted by someone without the keys.
    repo.require_records("reading the audit trail")?;
    let keyring = repo.keyring();
    let inspected = read_all(
        repo.storage(),
        Some(keyring),
        Some(&keyring.repo_id),
        &|_| true,
    )?;
    let verification = analyse(&inspected, true, &[]);
    let records = match ordered(inspected) {
        Ok(records) => Some(records.into_iter().map(Into::into).collect()),
        Err(_) if !verification.is_clean() => None,
        Err(e) => return Err(e),
    };
    Ok((verification, records))
}

pub(crate) fn load_trail(repo: &Repository, since: Option<DateTime<Utc>>) -> Result<Vec<Loaded>> {
    repo.require_records("reading the audit trail")?;
    let keyring = repo.keyring();
    let inspected = read_all(
        repo.storage(),
        Some(keyring),
        Some(&keyring.repo_id),
        &|n| since.is_none_or(|s| n.time >= s),
    )?;
    ordered(inspected)
}

/// Authenticated records in trail order; an error for the first that is not.
pub(crate) fn ordered(inspected: Vec<Inspected>) -> Result<Vec<Loaded>> {
    let mut records = Vec::with_capacity(inspected.len());
    for r in inspected {
        if let Some(flaw) = r.flaw {
            return Err(Error::corrupt(
                r.key,
                format!(
                    "{} ({}; `lifeline audit verify` checks the whole trail)",
                    flaw.message, flaw.kind
                ),
            ));
        }
        match (r.name, r.links, r.entry) {
            (Some(name), Some(links), Some(entry)) => records.push(Loaded { name, links, entry }),
            _ => {
                return Err(Error::corrupt(
                    r.key,
                    "the audit record was not authenticated",
                ))
            }
        }
    }
    let graph: Vec<(Name, &[Name])> = records
        .iter()
        .map(|r| (r.name, r.links.as_slice()))
        .collect();
    let (order, cyclic) = topological(&graph);
    if let Some(i) = cyclic.first() {
        return Err(Error::corrupt(
            records[*i].name.key(),
            "its links form a cycle, which no sequence of writes can make",
        ));
    }
    let mut slots: Vec<Option<Loaded>> = records.into_iter().map(Some).collect();
    Ok(order.into_iter().filter_map(|i| slots[i].take()).collect())
}
