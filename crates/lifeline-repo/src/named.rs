//! Named objects (format.md §11): whole files stored under a key the caller chooses, outside packs
//! and the index, so one can be written or read with a single request and no index load. PostgreSQL's
//! WAL segments are stored this way: `archive_command` runs once per segment and must be quick.

use crate::crypto::{Header, ObjectType, Sealer, HEADER_LEN};
use crate::error::{Error, Result};
use crate::Repository;

/// What `put_named` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    New,
    /// The key already held these exact bytes; nothing was written.
    AlreadyThere,
}

#[derive(Debug, Clone)]
pub struct NamedObject {
    /// When it was stored, in milliseconds since the Unix epoch.
    pub stored_at_ms: u64,
    pub data: Vec<u8>,
}

/// Where named objects may live: a key outside the repository's own namespaces, so a caller can
/// never shadow a pack, an index or a snapshot.
fn check_key(key: &str) -> Result<()> {
    let reserved = ["config", "keys/", "data/", "index/", "snapshots/"];
    if key.is_empty()
        || key.starts_with('/')
        || key
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..")
        || reserved.iter().any(|r| key.starts_with(r))
    {
        return Err(Error::Invalid(format!(
            "{key:?} cannot name a named object"
        )));
    }
    Ok(())
}

impl Repository {
    /// Store `data` under `key` unless it is there already. Storing the same bytes again succeeds
    /// (`AlreadyThere`); different bytes under an existing key are refused and the stored object is
    /// left as it was.
    pub fn put_named(&self, key: &str, data: &[u8], level: i32) -> Result<Stored> {
        check_key(key)?;
        if self.storage().stat(key)?.is_some() {
            return self.compare_named(key, data);
        }
        let header = Header::new(ObjectType::Named, self.keyring().current_epoch());
        let header_bytes = header.to_bytes();
        let stored_at = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0);
        let mut plain = stored_at.to_le_bytes().to_vec();
        plain.extend_from_slice(&compress(data, level));
        let sealed =
            Sealer::new(self.keyring(), &header)?.seal(0, &aad(&header_bytes, key), &plain);
        let mut object = Vec::with_capacity(HEADER_LEN + sealed.len());
        object.extend_from_slice(&header_bytes);
        object.extend_from_slice(&sealed);
        if self.storage().put(key, &object)? {
            Ok(Stored::New)
        } else {
            // Another writer got there between the stat and the put.
            self.compare_named(key, data)
        }
    }

    /// The object under `key`: `Error::ObjectMissing` when absent, `Error::Corrupt` when its bytes
    /// fail authentication (altered, truncated, or moved from another key).
    pub fn get_named(&self, key: &str) -> Result<NamedObject> {
        check_key(key)?;
        let bytes = self.storage().get(key)?;
        let header = Header::parse(&bytes, key)?;
        if header.object_type != ObjectType::Named {
            return Err(Error::corrupt(
                key,
                format!("holds a {:?}, expected a named object", header.object_type),
            ));
        }
        let plain = Sealer::new(self.keyring(), &header)?.open(
            0,
            &aad(&bytes[..HEADER_LEN], key),
            &bytes[HEADER_LEN..],
            key,
        )?;
        let (time, payload) = plain
            .split_first_chunk::<8>()
            .ok_or_else(|| Error::corrupt(key, "shorter than its timestamp"))?;
        Ok(NamedObject {
            stored_at_ms: u64::from_le_bytes(*time),
            data: crate::payload::decode_any(payload, key)?,
        })
    }

    fn compare_named(&self, key: &str, data: &[u8]) -> Result<Stored> {
        let existing = self.get_named(key)?;
        if existing.data == data {
            Ok(Stored::AlreadyThere)
        } else {
            Err(Error::Invalid(format!(
                "{key} already holds different content ({} bytes stored, {} offered); it is never overwritten",
                existing.data.len(),
                data.len()
            )))
        }
    }
}

/// Large objects are compressed by zstd's worker threads, one per core: a single WAL segment is
/// the whole job of an `archive_command` process, and compression is most of its time.
fn compress(data: &[u8], level: i32) -> Vec<u8> {
    const PARALLEL_FROM: usize = 4 << 20;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    if data.len() >= PARALLEL_FROM && cores > 1 {
        crate::payload::encode_with_workers(data, level, u32::try_from(cores).unwrap_or(2))
    } else {
        crate::payload::encode(data, level)
    }
}

/// The object's key is authenticated with it, so an object copied to another key fails to open.
fn aad(header: &[u8], key: &str) -> Vec<u8> {
    let mut aad = header.to_vec();
    aad.extend_from_slice(key.as_bytes());
    aad
}
