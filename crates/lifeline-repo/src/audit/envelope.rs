//! How an audit record is stored (format.md §14): a plaintext envelope that anyone can read, holding
//! the time, the links and a body sealed with the repository's keys that repeats them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::event::Entry;
use super::name::{self, Name};
use crate::crypto::{open_object, seal_object, Keyring, ObjectType};
use crate::error::{Error, Result};
use crate::Id;

/// The envelope version this lifeline writes and reads.
pub const ENVELOPE_VERSION: u32 = 1;

/// The plaintext part of a stored audit record: what a reader without keys checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub version: u32,
    /// The `id` of the repository whose trail this record belongs to (its `config`).
    pub repository: String,
    /// When the record was written into this trail: `YYYYMMDDTHHMMSS.mmmZ`, the TIME of its name.
    pub time: String,
    /// The names (`YYYY-MM/TIME-<id>`) of the records its writer saw as the newest.
    pub links: Vec<String>,
    /// The sealed body: an encrypted object of type 7 (format.md §5).
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
}

/// The plaintext of the sealed body. The copies of `links` and `time` bind the envelope to the
/// keys: a rewritten envelope no longer matches its authenticated body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Sealed {
    pub links: Vec<String>,
    pub time: String,
    pub entry: Entry,
}

impl Envelope {
    /// Parse stored bytes (`key` names them in errors).
    pub fn from_bytes(bytes: &[u8], key: &str) -> Result<Self> {
        ciborium::from_reader(bytes)
            .map_err(|e| Error::corrupt(key, format!("audit envelope CBOR: {e}")))
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::into_writer(self, &mut out).unwrap_or_else(|e| panic!("CBOR into a Vec: {e}"));
        out
    }

    /// The storage key and bytes of a record with this envelope: its name follows from its time
    /// and the hash of the bytes. `None` when `time` is not a TIME.
    pub fn stored(&self) -> Option<(String, Vec<u8>)> {
        let time = name::parse_time(&self.time)?;
        let bytes = self.to_bytes();
        let id = Id::of_stored(&bytes);
        Some((Name { time, id }.key(), bytes))
    }

    /// Authenticate and decrypt the sealed body with `keyring`: fails when the body was not sealed
    /// with these keys.
    pub(crate) fn unseal(&self, keyring: &Keyring, key: &str) -> Result<Vec<u8>> {
        open_object(keyring, ObjectType::Audit, &self.body, key)
    }
}

impl Sealed {
    /// Decode an unsealed body.
    pub(crate) fn decode(payload: &[u8], key: &str) -> Result<Self> {
        let cbor = crate::payload::decode_any(payload, key)?;
        ciborium::from_reader(cbor.as_slice())
            .map_err(|e| Error::corrupt(key, format!("audit body CBOR: {e}")))
    }
}

/// Seal `entry` with `links` at `time` into a record of repository `keyring.repo_id`: its name and
/// stored bytes.
pub(crate) fn seal(
    keyring: &Keyring,
    time: DateTime<Utc>,
    links: &[Name],
    entry: Entry,
) -> Result<(Name, Vec<u8>)> {
    let links: Vec<String> = links.iter().map(Name::to_string).collect();
    let time_text = name::format_time(&time);
    let sealed = Sealed {
        links: links.clone(),
        time: time_text.clone(),
        entry,
    };
    let mut cbor = Vec::new();
    ciborium::into_writer(&sealed, &mut cbor)
        .map_err(|e| Error::Format(format!("audit body CBOR: {e}")))?;
    let body = seal_object(
        keyring,
        ObjectType::Audit,
        &crate::payload::encode(&cbor, 3),
    )?;
    let bytes = Envelope {
        version: ENVELOPE_VERSION,
        repository: keyring.repo_id.clone(),
        time: time_text,
        links,
        body,
    }
    .to_bytes();
    let id = Id::of_stored(&bytes);
    Ok((Name { time, id }, bytes))
}
