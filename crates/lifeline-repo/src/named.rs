//! Named objects (format.md §11): whole files stored under a key the caller chooses, outside packs
//! and the index, so one can be written or read with a single request and no index load. PostgreSQL's
//! WAL segments are stored this way: `archive_command` runs once per segment and must be quick.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use crate::crypto::{Header, ObjectType, Sealer, HEADER_LEN};
use crate::error::{Error, Result};
use crate::Repository;

/// Objects at least this large are compressed on several threads.
const PARALLEL_FROM: u64 = 4 << 20;
/// Reads of a file being stored: large enough that a 16 MiB segment takes a handful of calls.
const READ_BUFFER: usize = 1 << 20;

/// What `put_named` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    New,
    /// The key already held these exact bytes; nothing was written.
    AlreadyThere,
    /// The key already held an object that this write-only credential cannot open, so it could not
    /// be compared; nothing was written and the stored object stands (docs/keys.md).
    Unverified,
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
    let reserved = [
        "config",
        "keys/",
        "data/",
        "index/",
        "snapshots/",
        "holds/",
        "verifications/",
        "garbage/",
        "sessions/",
    ];
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

/// Something a named object can be read from, as often as storing it needs (a second read only
/// when zstd does not shrink it, or to compare with an object already stored).
type Source<'a> = dyn FnMut() -> Result<Box<dyn Read + 'a>> + 'a;

impl Repository {
    /// Store `data` under `key` unless it is there already. Storing the same bytes again succeeds
    /// (`AlreadyThere`); different bytes under an existing key are refused and the stored object is
    /// left as it was.
    pub fn put_named(&self, key: &str, data: &[u8], level: i32) -> Result<Stored> {
        let mut source = || Ok(Box::new(data) as Box<dyn Read + '_>);
        self.put_named_from(key, data.len() as u64, level, None, &mut source)
    }

    /// Copy the named object `key` into `dst` (another repository, other keys), keeping the time it
    /// was first stored: a point-in-time recovery from the copy must see the archive as it was.
    pub fn copy_named_to(&self, dst: &Repository, key: &str, level: i32) -> Result<Stored> {
        let object = self.get_named(key)?;
        let data = object.data.as_slice();
        let mut source = || Ok(Box::new(data) as Box<dyn Read + '_>);
        dst.put_named_from(
            key,
            data.len() as u64,
            level,
            Some(object.stored_at_ms),
            &mut source,
        )
    }

    /// [`Repository::put_named`] for a file, streamed: a 16 MiB WAL segment is compressed as it is
    /// read and sealed where it lies, so `archive_command` touches little more memory than the
    /// compressed segment.
    pub fn put_named_file(&self, key: &str, path: &Path, level: i32) -> Result<Stored> {
        let size = std::fs::metadata(path)
            .map_err(|e| Error::io(path, e))?
            .len();
        let mut source = || {
            let file = File::open(path).map_err(|e| Error::io(path, e))?;
            Ok(Box::new(BufReader::with_capacity(READ_BUFFER, file)) as Box<dyn Read + '_>)
        };
        self.put_named_from(key, size, level, None, &mut source)
    }

    /// Store from `source`; `stored_at` (ms since the epoch) is now unless given.
    fn put_named_from(
        &self,
        key: &str,
        size: u64,
        level: i32,
        stored_at: Option<u64>,
        source: &mut Source<'_>,
    ) -> Result<Stored> {
        check_key(key)?;
        if self.storage().stat(key)?.is_some() {
            return self.compare_named(key, source);
        }
        let stored_at = stored_at
            .unwrap_or_else(|| u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0));
        let object = self.seal_named(key, size, level, stored_at, source)?;
        if self.storage().put(key, &object)? {
            Ok(Stored::New)
        } else {
            // Another writer got there between the stat and the put.
            self.compare_named(key, source)
        }
    }

    /// header || seal(stored-at || compression byte || bytes), built in one buffer.
    fn seal_named(
        &self,
        key: &str,
        size: u64,
        level: i32,
        stored_at: u64,
        source: &mut Source<'_>,
    ) -> Result<Vec<u8>> {
        let io = |e: std::io::Error| Error::io(key, e);
        // Named objects are written without a session: a long-kept handle checks its epoch is
        // still the current one (format.md §3.2).
        self.ensure_keys_fresh()?;
        let (header, sealer) = Sealer::fresh(self.keyring(), ObjectType::Named)?;
        let header_bytes = header.to_bytes();
        let mut object =
            Vec::with_capacity(HEADER_LEN + 9 + usize::try_from(size / 4).unwrap_or(0));
        object.extend_from_slice(&header_bytes);
        object.extend_from_slice(&stored_at.to_le_bytes());
        let payload = object.len();
        object.push(crate::payload::ZSTD);
        let mut encoder = zstd::stream::write::Encoder::new(object, level).map_err(io)?;
        // The frame then states its size, so a fetch decompresses into one exact allocation; a
        // source that changes size while it is read fails here instead of being stored torn.
        encoder.set_pledged_src_size(Some(size)).map_err(io)?;
        // A large object is the whole job of its process (one WAL segment per archive_command):
        // zstd's worker threads put every core on it.
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        if size >= PARALLEL_FROM && cores > 1 {
            encoder
                .multithread(u32::try_from(cores).unwrap_or(2))
                .map_err(io)?;
        }
        let read = std::io::copy(&mut source()?, &mut encoder).map_err(io)?;
        let mut object = encoder.finish().map_err(io)?;
        if (object.len() - payload - 1) as u64 >= read {
            object.truncate(payload);
            object.push(crate::payload::RAW);
            source()?.read_to_end(&mut object).map_err(io)?;
        }
        sealer.seal_in_place(0, &aad(&header_bytes, key), &mut object, HEADER_LEN);
        Ok(object)
    }

    /// The object under `key`: `Error::ObjectMissing` when absent, `Error::Corrupt` when its bytes
    /// fail authentication (altered, truncated, or moved from another key).
    pub fn get_named(&self, key: &str) -> Result<NamedObject> {
        let (stored_at_ms, payload) = self.open_named(key)?;
        Ok(NamedObject {
            stored_at_ms,
            data: crate::payload::decode_any(&payload, key)?,
        })
    }

    /// Remove the object under `key` (WAL expiry).
    pub fn delete_named(&self, key: &str) -> Result<()> {
        check_key(key)?;
        self.storage().delete(key)
    }

    /// When the object under `key` was stored, authenticated but not decompressed (a WAL segment
    /// would be 16 MiB of work for eight bytes).
    pub fn named_stored_at(&self, key: &str) -> Result<u64> {
        Ok(self.open_named(key)?.0)
    }

    /// Authenticate and decrypt: the stored-at time and the payload (compression byte + bytes).
    fn open_named(&self, key: &str) -> Result<(u64, Vec<u8>)> {
        check_key(key)?;
        let bytes = self.storage().get(key)?;
        let header = Header::parse(&bytes, key)?;
        if header.object_type != ObjectType::Named {
            return Err(Error::corrupt(
                key,
                format!("holds a {:?}, expected a named object", header.object_type),
            ));
        }
        let mut plain = Sealer::for_object(self.keyring(), &header, key)?.open(
            0,
            &aad(&bytes[..HEADER_LEN], key),
            &bytes[HEADER_LEN..],
            key,
        )?;
        let time = plain
            .first_chunk::<8>()
            .map(|t| u64::from_le_bytes(*t))
            .ok_or_else(|| Error::corrupt(key, "shorter than its timestamp"))?;
        plain.drain(..8);
        Ok((time, plain))
    }

    fn compare_named(&self, key: &str, source: &mut Source<'_>) -> Result<Stored> {
        // A write-only credential cannot open what is stored. Refusing would stall PostgreSQL's
        // archiving for good after an upload whose success was never reported (archive_command
        // killed after the PUT), so the stored object is taken as this file's earlier upload.
        if !self.can_read_backups() {
            return Ok(Stored::Unverified);
        }
        let existing = self.get_named(key)?;
        let mut data = Vec::with_capacity(existing.data.len());
        source()?
            .read_to_end(&mut data)
            .map_err(|e| Error::io(key, e))?;
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

/// The object's key is authenticated with it, so an object copied to another key fails to open.
fn aad(header: &[u8], key: &str) -> Vec<u8> {
    let mut aad = header.to_vec();
    aad.extend_from_slice(key.as_bytes());
    aad
}
