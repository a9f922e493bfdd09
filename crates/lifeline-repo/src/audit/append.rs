//! Writing a record: link it to the newest records this writer can see, seal it, store it.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use rayon::prelude::*;

use super::envelope::{seal, Envelope};
use super::event::{Entry, Event};
use super::name::{self, Name, PREFIX, SKEW, WINDOW};
use crate::error::{Error, Result};
use crate::repository::Repository;
use crate::storage::Storage;
use crate::Id;

/// Append a record of `event`, by this host and user, now; returns its ID.
pub fn append(repo: &Repository, event: &Event) -> Result<Id> {
    append_entry(repo, event).map(|(id, _)| id)
}

/// [`append`], also returning the entry as written (for delivery elsewhere: a SIEM, a table).
pub fn append_entry(repo: &Repository, event: &Event) -> Result<(Id, Entry)> {
    let now = name::truncate(Utc::now());
    let links = heads(repo.storage(), &now)?;
    let entry = Entry {
        time: name::rfc3339(&now),
        hostname: crate::host::hostname(),
        username: crate::host::username(),
        event: event.clone(),
        origin: None,
    };
    Ok((write(repo, now, &links, entry.clone())?.id, entry))
}

/// Seal and store a record written at `time` that links to `links`.
pub(crate) fn write(
    repo: &Repository,
    time: DateTime<Utc>,
    links: &[Name],
    entry: Entry,
) -> Result<Name> {
    let (name, bytes) = seal(repo.keyring(), time, links, entry)?;
    // Create-only: the name is the hash of bytes that hold a fresh random salt, so it is new.
    repo.storage().put(&name.key(), &bytes)?;
    Ok(name)
}

/// The records a record written at `now` links to: among the records written within [`WINDOW`] of
/// the newest, those no other of them links to. Only this month and the last are listed, unless
/// both are empty (a first record, or a long quiet spell).
pub(crate) fn heads(storage: &dyn Storage, now: &DateTime<Utc>) -> Result<Vec<Name>> {
    let mut names = names_in(storage, &format!("{PREFIX}{}/", name::month(now)))?;
    names.extend(names_in(
        storage,
        &format!("{PREFIX}{}/", name::previous_month(now)),
    )?);
    if names.is_empty() {
        names = names_in(storage, PREFIX)?;
    }
    let Some(newest) = names.iter().map(|n| n.time).max() else {
        return Ok(Vec::new());
    };
    if newest > *now + SKEW {
        tracing::warn!(
            "this host's clock ({}) is behind the newest audit record ({}): its record will be reported as reordered; synchronise the clocks",
            name::rfc3339(now),
            name::rfc3339(&newest)
        );
    }
    let candidates: Vec<Name> = names
        .into_iter()
        .filter(|n| n.time >= newest - WINDOW)
        .collect();
    let read: Vec<Option<Vec<Name>>> = candidates
        .par_iter()
        .map(|n| links_of(storage, n))
        .collect::<Result<_>>()?;
    let linked: HashSet<Name> = read.iter().flatten().flatten().copied().collect();
    let mut heads: Vec<Name> = candidates
        .into_iter()
        .zip(&read)
        .filter(|(n, links)| links.is_some() && !linked.contains(n))
        .map(|(n, _)| n)
        .collect();
    heads.sort();
    Ok(heads)
}

fn names_in(storage: &dyn Storage, prefix: &str) -> Result<Vec<Name>> {
    // Objects that are not named like records cannot be linked; `verify` reports them.
    Ok(storage
        .list(prefix)?
        .iter()
        .filter_map(|o| Name::from_key(&o.key))
        .collect())
}

/// The links of a record as its envelope states them; `None` when it has vanished since the listing
/// (never linked then). A record whose envelope cannot be read links nothing known: it stays a head,
/// and is linked so that `verify` names it rather than a gap.
fn links_of(storage: &dyn Storage, record: &Name) -> Result<Option<Vec<Name>>> {
    let key = record.key();
    let bytes = match storage.get(&key) {
        Ok(bytes) => bytes,
        Err(Error::ObjectMissing { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    match Envelope::from_bytes(&bytes, &key) {
        Ok(envelope) => Ok(Some(
            envelope
                .links
                .iter()
                .filter_map(|l| Name::parse(l))
                .collect(),
        )),
        Err(e) => {
            tracing::warn!("{e}; `lifeline audit verify` reports it");
            Ok(Some(Vec::new()))
        }
    }
}
