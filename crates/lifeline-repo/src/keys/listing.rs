//! The epochs as storage lists them, read without keys: numbers, tags and times are plain JSON in
//! the key objects (format.md §3.2). For watchers of a repository that another process may rotate
//! (the daemon's rotation schedule and its metrics), which would otherwise see only the epochs
//! their handle was opened with.

use std::time::SystemTime;

use rayon::prelude::*;
use serde::Serialize;

use super::{parse, parse_tag, EpochObject, Tombstone, DESTROYED_PREFIX, EPOCH_PREFIX};
use crate::error::{Error, Result};
use crate::storage::Storage;

/// One epoch as its key object (or tombstone) says, unauthenticated.
#[derive(Debug, Clone, Serialize)]
pub struct EpochListing {
    pub epoch: u32,
    /// The header tag, 8 hex digits.
    pub tag: String,
    pub created: String,
    pub legacy: bool,
    /// When it was destroyed (from its tombstone).
    pub destroyed: Option<String>,
    /// The epoch object's storage time; none once only the tombstone is left.
    #[serde(skip)]
    pub stored: Option<SystemTime>,
}

impl EpochListing {
    /// The order writers choose the current epoch by: (number, created, tag) (format.md §3.2).
    fn rank(&self) -> (u32, &str, &str) {
        (self.epoch, &self.created, &self.tag)
    }
}

/// Every epoch, destroyed ones included, in the order writers rank them (oldest first).
pub fn list_epochs(storage: &dyn Storage) -> Result<Vec<EpochListing>> {
    let stones = storage.list(DESTROYED_PREFIX)?;
    let objects = storage.list(EPOCH_PREFIX)?;
    let stones: Vec<Option<Tombstone>> = stones
        .par_iter()
        .map(|info| read(storage, &info.key))
        .collect::<Result<_>>()?;
    let read_objects: Vec<Option<EpochObject>> = objects
        .par_iter()
        .map(|info| read(storage, &info.key))
        .collect::<Result<_>>()?;
    let mut out: Vec<EpochListing> = stones
        .into_iter()
        .flatten()
        .map(|s| EpochListing {
            epoch: s.epoch,
            tag: s.tag,
            created: s.created,
            legacy: s.restore.is_none(),
            destroyed: Some(s.destroyed),
            stored: None,
        })
        .collect();
    for (info, object) in objects.iter().zip(read_objects) {
        let Some(o) = object else { continue };
        parse_tag(&o.tag, &info.key)?;
        match out.iter_mut().find(|e| e.tag == o.tag) {
            // A destroy killed after its tombstone: the tombstone wins, the object dates it.
            Some(destroyed) => {
                destroyed.legacy = o.legacy;
                destroyed.stored = Some(info.modified);
            }
            None => out.push(EpochListing {
                epoch: o.epoch,
                tag: o.tag,
                created: o.created,
                legacy: o.legacy,
                destroyed: None,
                stored: Some(info.modified),
            }),
        }
    }
    out.sort_by(|a, b| a.rank().cmp(&b.rank()));
    Ok(out)
}

/// The epoch new objects are sealed under: the greatest that is not destroyed.
pub fn current_listed(epochs: &[EpochListing]) -> Option<&EpochListing> {
    epochs
        .iter()
        .filter(|e| e.destroyed.is_none())
        .max_by(|a, b| a.rank().cmp(&b.rank()))
}

/// A key object's JSON, or none when it vanished since the listing (a destroy finishing).
fn read<T: serde::de::DeserializeOwned>(storage: &dyn Storage, key: &str) -> Result<Option<T>> {
    match storage.get(key) {
        Ok(bytes) => parse(&bytes, key).map(Some),
        Err(Error::ObjectMissing { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A key epoch as `key list` shows it, from an opened keyring.
#[derive(Debug, Clone, Serialize)]
pub struct EpochInfo {
    pub epoch: u32,
    /// The header tag, 8 hex digits.
    pub tag: String,
    pub created: String,
    /// Whole days since `created` (none when it cannot be read).
    pub age_days: Option<u64>,
    /// New objects are sealed under it.
    pub current: bool,
    /// When it was destroyed: what it sealed, records and audit bodies aside, is shredded.
    pub destroyed: Option<String>,
    /// Made from a format v1 epoch by `migrate`.
    pub legacy: bool,
}

/// Every epoch of `keyring`, destroyed ones included, oldest first.
pub fn epoch_infos(keyring: &crate::crypto::Keyring) -> Vec<EpochInfo> {
    let current = keyring.current().ok().map(|e| e.tag);
    keyring
        .epochs
        .iter()
        .map(|e| EpochInfo {
            epoch: e.epoch,
            tag: super::tag_hex(e.tag),
            created: e.created.clone(),
            age_days: super::rotate::age(&e.created).map(|a| a.as_secs() / 86400),
            current: Some(e.tag) == current,
            destroyed: e.destroyed.clone(),
            legacy: e.legacy,
        })
        .collect()
}
