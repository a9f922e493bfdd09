//! Prune marks (format.md §12, §13): what one prune run found to be garbage — packs to delete and
//! index files its merged ones supersede — carried out by a later run once no session can need them.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::record::{self, Record, Records, Stamp, Stored};
use crate::repository::Repository;
use crate::Id;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarkRecord {
    #[serde(flatten)]
    pub stamp: Stamp,
    pub packs: Vec<Id>,
    pub indexes: Vec<Id>,
    pub bytes: u64,
}

impl Record for MarkRecord {
    const FOR_WRITERS: bool = true;
    const PREFIX: &'static str = "garbage/";
    const TYPE: &'static str = "mark";
    fn stamp(&self) -> &Stamp {
        &self.stamp
    }
}

/// Every mark in the repository, oldest first; unreadable ones are reported, never acted on.
pub fn load(repo: &Repository) -> Result<Records<MarkRecord>> {
    record::load_all::<MarkRecord>(repo)
}

/// The packs some mark names: writers store their blobs again rather than rely on them.
pub fn doomed_packs(marks: &[Stored<MarkRecord>]) -> HashSet<Id> {
    marks
        .iter()
        .flat_map(|m| m.record.packs.iter().copied())
        .collect()
}

/// Store a mark; returns it with its storage time, from which its grace period runs.
pub fn save(
    repo: &Repository,
    packs: Vec<Id>,
    indexes: Vec<Id>,
    bytes: u64,
) -> Result<Stored<MarkRecord>> {
    let record = MarkRecord {
        stamp: Stamp::now(MarkRecord::TYPE),
        packs,
        indexes,
        bytes,
    };
    let id = record::save(repo, &record)?;
    let key = format!("{}{id}", MarkRecord::PREFIX);
    let stored = repo
        .storage()
        .stat(&key)?
        .ok_or(Error::ObjectMissing { key })?
        .modified;
    Ok(Stored { id, stored, record })
}

/// Remove a mark whose work is done.
pub fn delete(repo: &Repository, id: &Id) -> Result<()> {
    record::delete::<MarkRecord>(repo, id)
}
