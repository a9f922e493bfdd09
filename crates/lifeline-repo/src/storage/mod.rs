//! Where objects live. Backends implement one small trait; everything above speaks only to it.

pub mod conformance;
mod local;
mod s3;

pub use local::LocalStorage;
pub use s3::{S3Settings, S3Storage};

use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::Result;

/// An object as listed by a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    /// When the store wrote it, by the store's own clock (format.md §1): what prune's grace period and
    /// the session protocol are measured with, never a client's clock.
    pub modified: SystemTime,
}

impl ObjectInfo {
    /// Milliseconds since the Unix epoch of [`ObjectInfo::modified`].
    pub fn modified_ms(&self) -> i64 {
        match self.modified.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
        }
    }
}

/// Object storage as lifeline needs it. Keys are `/`-separated (`data/ab/ab12…`). Objects are never
/// rewritten: `put` is create-only, which is what makes several writers safe without locks.
pub trait Storage: Send + Sync {
    /// Store `data` under `key` unless the key exists. Returns `false` (and leaves the object as it was)
    /// when it already existed.
    fn put(&self, key: &str, data: &[u8]) -> Result<bool>;
    /// The whole object. `Error::ObjectMissing` when absent.
    fn get(&self, key: &str) -> Result<Vec<u8>>;
    /// `len` bytes from `offset`. Fails with `Error::Corrupt` when the object is shorter.
    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>>;
    /// Every object whose key starts with `prefix`, in no particular order.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>>;
    /// Size and storage time of one object, or `None` when absent.
    fn stat(&self, key: &str) -> Result<Option<ObjectInfo>>;
    /// Remove an object; removing an absent one is not an error.
    fn delete(&self, key: &str) -> Result<()>;
    /// Store `data` under `key` whether or not it exists, atomically: a reader sees the old object
    /// or the new one, never a mix or nothing, and a crash leaves one of the two. Only `config` is
    /// ever replaced, by `migrate` (format.md §1, §3.5); every other object is written with `put`.
    fn replace(&self, key: &str, data: &[u8]) -> Result<()>;
    /// Where this storage is, for messages.
    fn location(&self) -> String;
    /// Whether each request costs a network round trip, so readers should fetch whole packs once
    /// rather than one blob at a time.
    fn is_remote(&self) -> bool {
        false
    }

    /// Staging files a writer left behind (killed, or failed on a full disk) and whether each is
    /// stale: its writer is gone, so it may be removed.
    fn staging(&self) -> Result<Vec<Staged>> {
        Ok(Vec::new())
    }

    /// Remove the stale staging files; returns what was removed.
    fn clean_staging(&self) -> Result<Vec<Staged>> {
        Ok(Vec::new())
    }
}

/// A staging file of a write that never finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staged {
    pub info: ObjectInfo,
    /// Its writer is provably gone (a process of this host that ended) or it is older than any write
    /// takes ([`STAGING_STALE_AFTER`]).
    pub stale: bool,
}

/// A staging file this old is stale whoever wrote it: writing one object never takes this long.
pub const STAGING_STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);
