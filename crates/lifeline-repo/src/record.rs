//! Records (format.md §12): small immutable statements about the repository — legal holds,
//! verification results, prune marks — sealed like snapshots and named by their stored bytes.

use std::time::SystemTime;

use rayon::prelude::*;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::crypto::{open_object_of, seal_object, ObjectType};
use crate::error::{Error, Result};
use crate::repository::Repository;
use crate::Id;

/// One kind of record: where it lives and the `type` its payload must carry.
pub trait Record: Serialize + DeserializeOwned + Send {
    /// Key prefix, with the trailing slash (`holds/`).
    const PREFIX: &'static str;
    /// The payload's `type` field (`hold`).
    const TYPE: &'static str;
    /// The common fields (flattened into the payload).
    fn stamp(&self) -> &Stamp;
    /// Whether write-only (`backup`) credentials must read it: then it is sealed under the index key
    /// in v2 (envelope type 8, format.md §12).
    const FOR_WRITERS: bool = false;
}

/// The envelope type records of kind `T` get in a repository of `format`.
fn object_type<T: Record>(format: u32) -> ObjectType {
    if T::FOR_WRITERS && format >= 2 {
        ObjectType::Mark
    } else {
        ObjectType::Record
    }
}

/// Who wrote a record and when, by the writer's clock (for people; ordering uses storage time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    #[serde(rename = "type")]
    pub kind: String,
    pub version: u32,
    pub time: String,
    pub hostname: String,
    pub username: String,
}

impl Stamp {
    /// A stamp for a record of type `kind` written now by this host and user.
    pub fn now(kind: &str) -> Self {
        Stamp {
            kind: kind.into(),
            version: 1,
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            hostname: crate::host::hostname(),
            username: crate::host::username(),
        }
    }
}

/// A record as stored: its name, its storage time and its content.
#[derive(Debug, Clone)]
pub struct Stored<T> {
    pub id: Id,
    pub stored: SystemTime,
    pub record: T,
}

/// Every readable record of a kind, oldest first, and the objects that could not be read.
#[derive(Debug)]
pub struct Records<T> {
    pub items: Vec<Stored<T>>,
    pub damaged: Vec<(String, Error)>,
}

#[derive(Deserialize)]
struct TypeOnly {
    #[serde(rename = "type")]
    kind: String,
}

fn key_of<T: Record>(id: &Id) -> String {
    format!("{}{id}", T::PREFIX)
}

/// Seal and store a record; returns its ID.
pub fn save<T: Record>(repo: &Repository, record: &T) -> Result<Id> {
    let mut cbor = Vec::new();
    ciborium::into_writer(record, &mut cbor)
        .map_err(|e| Error::Format(format!("{} record CBOR: {e}", T::TYPE)))?;
    let bytes = seal_object(
        repo.keyring(),
        object_type::<T>(repo.keyring().format),
        &crate::payload::encode(&cbor, 3),
    )?;
    let id = Id::of_stored(&bytes);
    repo.storage().put(&key_of::<T>(&id), &bytes)?;
    Ok(id)
}

/// Open one stored record, checking its name, its seal and its type.
fn open<T: Record>(repo: &Repository, key: &str, bytes: &[u8]) -> Result<T> {
    let name = key.trim_start_matches(T::PREFIX);
    if Id::of_stored(bytes).to_hex() != name {
        return Err(Error::corrupt(key, "its bytes do not hash to its name"));
    }
    // A migrated repository still holds v1 records of every kind (type 6).
    let payload = open_object_of(
        repo.keyring(),
        &[object_type::<T>(repo.keyring().format), ObjectType::Record],
        bytes,
        key,
    )?;
    let cbor = crate::payload::decode_any(&payload, key)?;
    let kind: TypeOnly = ciborium::from_reader(cbor.as_slice())
        .map_err(|e| Error::corrupt(key, format!("CBOR: {e}")))?;
    if kind.kind != T::TYPE {
        return Err(Error::corrupt(
            key,
            format!(
                "holds a {:?} record where a {:?} record belongs",
                kind.kind,
                T::TYPE
            ),
        ));
    }
    ciborium::from_reader(cbor.as_slice()).map_err(|e| Error::corrupt(key, format!("CBOR: {e}")))
}

/// Every record of kind `T`, ordered by storage time, then the writer's time, then name.
pub fn load_all<T: Record>(repo: &Repository) -> Result<Records<T>> {
    let listed = repo.storage().list(T::PREFIX)?;
    let results: Vec<(String, SystemTime, Result<T>)> = listed
        .par_iter()
        .map(|o| {
            let loaded = repo
                .storage()
                .get(&o.key)
                .and_then(|bytes| open::<T>(repo, &o.key, &bytes));
            (o.key.clone(), o.modified, loaded)
        })
        .collect();
    let mut records = Records {
        items: Vec::new(),
        damaged: Vec::new(),
    };
    for (key, stored, loaded) in results {
        match loaded {
            Ok(record) => match Id::from_hex(key.trim_start_matches(T::PREFIX)) {
                Some(id) => records.items.push(Stored { id, stored, record }),
                None => records
                    .damaged
                    .push((key.clone(), Error::corrupt(&key, "not a record name"))),
            },
            // Deleted between the listing and the read (a prune finishing a mark): not damage.
            Err(Error::ObjectMissing { .. }) => {}
            Err(e) => records.damaged.push((key, e)),
        }
    }
    records.items.sort_by(|a, b| {
        (a.stored, &a.record.stamp().time, a.id).cmp(&(b.stored, &b.record.stamp().time, b.id))
    });
    Ok(records)
}

impl<T: Record> Records<T> {
    /// Fail when any record could not be read: for decisions (holds) that must see all of them.
    pub fn require_all(self) -> Result<Vec<Stored<T>>> {
        match self.damaged.into_iter().next() {
            None => Ok(self.items),
            // Not damage: this credential's role may not open records.
            Some((_, e)) if e.kind() == crate::ErrorKind::NotPermitted => Err(e),
            Some((key, e)) => Err(Error::corrupt(
                key,
                format!("{e}; this record must be readable before lifeline can decide (restore it from a copy, or run `lifeline check`)"),
            )),
        }
    }
}

/// Delete a record (prune marks only: holds and verifications are kept for ever).
pub(crate) fn delete<T: Record>(repo: &Repository, id: &Id) -> Result<()> {
    repo.storage().delete(&key_of::<T>(id))
}
