//! The audit part of `copy`: the source's records, re-sealed with the destination's keys and linked
//! into its trail, each naming the record it copies.

use std::collections::{BTreeSet, HashMap};

use chrono::Utc;

use super::append::{heads, write};
use super::event::Origin;
use super::inspect::read_all;
use super::load::{load_trail, ordered};
use super::name::{self, Name};
use super::verify::{analyse, Problem};
use crate::error::Error;
use crate::repository::Repository;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The source trail does not verify: copying it would launder its damage into a clean trail.
    #[error(
        "the audit trail of {location} has {count} problem(s), first: {first}; it was not copied (`lifeline audit verify` lists them)",
        count = .problems.len(),
        first = .problems.first().map_or("", |p| p.message.as_str())
    )]
    SourceDamaged {
        location: String,
        problems: Vec<Problem>,
    },
    #[error(transparent)]
    Repository(#[from] Error),
}

/// Copy the records of `src`'s trail that `dst` does not have yet; returns how many were written.
/// The source is verified with its keys first and refused if it has any problem.
///
/// A copy keeps the entry and names its source record in `origin`; it is written into `dst`'s
/// trail now (its name and envelope carry the destination's time, its entry the operation's), and
/// links to the copies of the records its source linked to. The first copy of a run also links to
/// `dst`'s heads, so the destination's trail stays one chain.
pub fn import(src: &Repository, dst: &Repository) -> Result<usize, ImportError> {
    let src_id = &src.keyring().repo_id;
    let dst_id = &dst.keyring().repo_id;
    let inspected = read_all(src.storage(), Some(src.keyring()), Some(src_id), &|_| true)?;
    let verification = analyse(&inspected, true, &[]);
    if !verification.is_clean() {
        return Err(ImportError::SourceDamaged {
            location: src.storage().location(),
            problems: verification.problems,
        });
    }
    let source = ordered(inspected)?;
    let destination = load_trail(dst, None)?;
    // Source record → its copy in the destination. A source record that is itself a copy of a
    // destination record maps to that record rather than being copied back.
    let mut copies: HashMap<Name, Name> = HashMap::new();
    let by_id: HashMap<crate::Id, Name> = destination.iter().map(|r| (r.name.id, r.name)).collect();
    let copied: HashMap<crate::Id, Name> = destination
        .iter()
        .filter_map(|r| {
            let origin = r.entry.origin.as_ref()?;
            (origin.repository == *src_id).then_some((origin.record, r.name))
        })
        .collect();
    let mut pending = Vec::new();
    for record in source {
        if let Some(copy) = copied.get(&record.name.id) {
            copies.insert(record.name, *copy);
            continue;
        }
        let returning = record
            .entry
            .origin
            .as_ref()
            .filter(|o| o.repository == *dst_id)
            .map(|o| o.record);
        match returning {
            Some(original) => {
                if let Some(n) = by_id.get(&original) {
                    copies.insert(record.name, *n);
                }
            }
            None => pending.push(record),
        }
    }
    let dst_heads = heads(dst.storage(), &name::truncate(Utc::now()))?;
    let mut written = 0;
    let mut last = None;
    for record in pending {
        let mut links: BTreeSet<Name> = record
            .links
            .iter()
            .filter_map(|l| copies.get(l).copied())
            .collect();
        if written == 0 || links.is_empty() {
            // A copied trail starts from where the destination's stood, not beside it, and so
            // does each record that starts the source's trail.
            links.extend(dst_heads.iter().copied());
        }
        let links: Vec<Name> = links.into_iter().collect();
        // Never earlier than a record it links to, whatever the clock does meanwhile.
        let time = links
            .iter()
            .map(|l| l.time)
            .chain(last)
            .chain([name::truncate(Utc::now())])
            .max()
            .unwrap_or_else(Utc::now);
        let mut entry = record.entry;
        entry.origin = Some(Origin {
            repository: src_id.clone(),
            record: record.name.id,
        });
        let copy = write(dst, time, &links, entry)?;
        copies.insert(record.name, copy);
        last = Some(time);
        written += 1;
    }
    Ok(written)
}
