//! Opening a repository: its config, its keys, its snapshots and its index.

use std::collections::HashMap;
use std::sync::Arc;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::crypto::{open_object, seal_object, KeySlot, Keyring, ObjectType, Secret};
use crate::error::{Error, Result};
use crate::index::Index;
use crate::pack::{read_trailer, PackBlobs};
use crate::snapshot::{Snapshot, SnapshotFilter};
use crate::storage::Storage;
use crate::Id;

pub const FORMAT_VERSION: u32 = 1;
pub const DEFAULT_PACK_SIZE: u64 = 16 << 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    pub version: u32,
    pub id: String,
    pub created: String,
    pub pack_size: u64,
}

/// A key slot as listed by `key list`.
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    pub id: String,
    pub current: bool,
    /// `password` or `key-file`.
    pub kind: &'static str,
    pub created: String,
    pub hostname: String,
    pub username: String,
}

/// The snapshots of a repository as listed: those that could be read, oldest first, and the objects
/// that could not.
#[derive(Debug, Default)]
pub struct Snapshots {
    pub items: Vec<(Id, Snapshot)>,
    pub damaged: Vec<(String, Error)>,
}

impl Snapshots {
    /// The newest readable snapshot that `filter` matches.
    pub fn latest(&self, filter: &SnapshotFilter) -> Result<(Id, Snapshot)> {
        self.items
            .iter()
            .rev()
            .find(|(_, s)| filter.matches(s))
            .cloned()
            .ok_or_else(|| {
                if filter.is_empty() {
                    Error::SnapshotNotFound("latest".into())
                } else {
                    Error::NoSnapshotInFilter(filter.to_string())
                }
            })
    }
}

/// Cheap to clone: the storage is shared and the keys are a few hundred bytes.
#[derive(Clone)]
pub struct Repository {
    storage: Arc<dyn Storage>,
    config: Config,
    keyring: Keyring,
    slot: Id,
}

fn slot_key(id: &Id) -> String {
    format!("keys/{id}")
}

impl Repository {
    /// Create a repository in empty storage, with one key slot for `password`.
    pub fn init(storage: Arc<dyn Storage>, password: &[u8], pack_size: u64) -> Result<Self> {
        if storage.stat("config")?.is_some() || !storage.list("keys/")?.is_empty() {
            return Err(Error::RepositoryExists {
                location: storage.location(),
            });
        }
        if !(1 << 20..=1 << 30).contains(&pack_size) {
            return Err(Error::Invalid(format!(
                "pack size {pack_size} is out of range: use 1 MiB to 1 GiB"
            )));
        }
        let config = Config {
            version: FORMAT_VERSION,
            id: hex::encode(rand::random::<[u8; 32]>()),
            created: chrono::Utc::now().to_rfc3339(),
            pack_size,
        };
        let keyring = Keyring::generate(&config.id);
        // Key first, config last: a half-made repository has no config and is never taken for a real one.
        let slot = Self::write_slot(storage.as_ref(), &keyring, Secret::Password(password))?;
        let config_bytes = serde_json::to_vec_pretty(&config)
            .map_err(|e| Error::Format(format!("config JSON: {e}")))?;
        if !storage.put("config", &config_bytes)? {
            return Err(Error::RepositoryExists {
                location: storage.location(),
            });
        }
        Ok(Repository {
            storage,
            config,
            keyring,
            slot,
        })
    }

    pub fn open(storage: Arc<dyn Storage>, password: &[u8]) -> Result<Self> {
        Self::open_with(storage, Secret::Password(password))
    }

    /// Open with a password or a key file. Only slots of the secret's kind are tried, so a key file
    /// opens in milliseconds however many password slots (0.2 s of Argon2id each) there are.
    pub fn open_with(storage: Arc<dyn Storage>, secret: Secret<'_>) -> Result<Self> {
        let config = Self::read_config(storage.as_ref())?;
        let slots = storage.list("keys/")?;
        if slots.is_empty() {
            return Err(Error::Format(format!(
                "{} has no key slots: the repository cannot be opened",
                storage.location()
            )));
        }
        for info in slots {
            let bytes = storage.get(&info.key)?;
            let slot = KeySlot::from_json(&bytes, &info.key)?;
            if !slot.accepts(secret) {
                continue;
            }
            match slot.unwrap(secret, &config.id) {
                Ok(keyring) => {
                    return Ok(Repository {
                        storage,
                        config,
                        keyring,
                        slot: Id::of_stored(&bytes),
                    })
                }
                Err(Error::WrongPassword) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::WrongPassword)
    }

    /// Whether `storage` holds a repository. Listing on a miss makes the store say why (a missing
    /// bucket, refused credentials) instead of reporting only an absent `config`.
    pub fn exists(storage: &dyn Storage) -> Result<bool> {
        if storage.stat("config")?.is_some() {
            return Ok(true);
        }
        storage.list("keys/")?;
        Ok(false)
    }

    fn read_config(storage: &dyn Storage) -> Result<Config> {
        let bytes = match storage.get("config") {
            Ok(bytes) => bytes,
            Err(Error::ObjectMissing { .. }) => {
                return Err(Error::RepositoryNotFound {
                    location: storage.location(),
                })
            }
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotADirectory => {
                return Err(Error::RepositoryNotFound {
                    location: storage.location(),
                })
            }
            Err(e) => return Err(e),
        };
        let config: Config = serde_json::from_slice(&bytes)
            .map_err(|e| Error::corrupt("config", format!("JSON: {e}")))?;
        if config.version != FORMAT_VERSION {
            return Err(Error::Format(format!(
                "repository format version {} is not supported by this lifeline (it reads version {FORMAT_VERSION})",
                config.version
            )));
        }
        Ok(config)
    }

    fn write_slot(storage: &dyn Storage, keyring: &Keyring, secret: Secret<'_>) -> Result<Id> {
        let bytes = KeySlot::wrap(keyring, secret)?.to_json();
        let id = Id::of_stored(&bytes);
        storage.put(&slot_key(&id), &bytes)?;
        Ok(id)
    }

    pub fn storage(&self) -> &dyn Storage {
        self.storage.as_ref()
    }

    /// The storage, shared (for a session's heartbeat thread).
    pub(crate) fn shared_storage(&self) -> Arc<dyn Storage> {
        Arc::clone(&self.storage)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    // --- keys -------------------------------------------------------------------------------------

    pub fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        let mut out = Vec::new();
        for info in self.storage.list("keys/")? {
            let slot = KeySlot::from_json(&self.storage.get(&info.key)?, &info.key)?;
            let id = info.key.trim_start_matches("keys/").to_string();
            out.push(KeyInfo {
                current: id == self.slot.to_hex(),
                kind: if slot.accepts(Secret::Password(b"")) {
                    "password"
                } else {
                    "key-file"
                },
                id,
                created: slot.created,
                hostname: slot.hostname,
                username: slot.username,
            });
        }
        out.sort_by(|a, b| a.created.cmp(&b.created));
        Ok(out)
    }

    /// Add a slot that opens this repository with `password`; returns its ID.
    pub fn add_key(&self, password: &[u8]) -> Result<Id> {
        Self::write_slot(
            self.storage.as_ref(),
            &self.keyring,
            Secret::Password(password),
        )
    }

    /// Add a slot opened by the 256-bit `key` of a key file (for unattended callers such as
    /// PostgreSQL's `archive_command`, which run too often to pay for Argon2id each time).
    pub fn add_key_file(&self, key: &[u8; 32]) -> Result<Id> {
        Self::write_slot(self.storage.as_ref(), &self.keyring, Secret::KeyFile(key))
    }

    /// Remove another key slot. The slot in use cannot be removed: that would lock out this session's
    /// user with no proof that another password still works.
    pub fn remove_key(&self, prefix: &str) -> Result<String> {
        let keys = self.list_keys()?;
        let matches: Vec<&KeyInfo> = keys.iter().filter(|k| k.id.starts_with(prefix)).collect();
        let key = match matches.as_slice() {
            [one] => *one,
            [] => return Err(Error::Invalid(format!("no key slot matches {prefix:?}"))),
            _ => {
                return Err(Error::Invalid(format!(
                    "key prefix {prefix:?} is ambiguous"
                )))
            }
        };
        if key.current {
            return Err(Error::Invalid(
                "refusing to remove the key slot you opened the repository with; open with another key, or use `key passwd`".into(),
            ));
        }
        self.storage.delete(&format!("keys/{}", key.id))?;
        Ok(key.id.clone())
    }

    /// Replace the slot in use by one for `new_password`.
    pub fn change_password(&mut self, new_password: &[u8]) -> Result<Id> {
        let new = self.add_key(new_password)?;
        self.storage.delete(&slot_key(&self.slot))?;
        self.slot = new;
        Ok(new)
    }

    // --- sealed objects ---------------------------------------------------------------------------

    pub fn save_snapshot(&self, snapshot: &Snapshot) -> Result<Id> {
        let mut cbor = Vec::new();
        ciborium::into_writer(snapshot, &mut cbor)
            .map_err(|e| Error::Format(format!("snapshot CBOR: {e}")))?;
        let bytes = seal_object(
            &self.keyring,
            ObjectType::Snapshot,
            &crate::payload::encode(&cbor, 3),
        )?;
        let id = Id::of_stored(&bytes);
        self.storage.put(&format!("snapshots/{id}"), &bytes)?;
        Ok(id)
    }

    pub fn load_snapshot(&self, id: &Id) -> Result<Snapshot> {
        let key = format!("snapshots/{id}");
        let bytes = self.storage.get(&key)?;
        if Id::of_stored(&bytes) != *id {
            return Err(Error::corrupt(&key, "its bytes do not hash to its name"));
        }
        let payload = open_object(&self.keyring, ObjectType::Snapshot, &bytes, &key)?;
        let cbor = crate::payload::decode_any(&payload, &key)?;
        ciborium::from_reader(cbor.as_slice())
            .map_err(|e| Error::corrupt(&key, format!("CBOR: {e}")))
    }

    /// Every snapshot ID in the repository.
    pub fn snapshot_ids(&self) -> Result<Vec<Id>> {
        Ok(self
            .storage
            .list("snapshots/")?
            .iter()
            .filter_map(|o| Id::from_hex(o.key.trim_start_matches("snapshots/")))
            .collect())
    }

    /// Every readable snapshot, oldest first, and the snapshot objects that could not be read (one
    /// forgotten between the listing and its reading is neither).
    pub fn load_snapshots(&self) -> Result<Snapshots> {
        let results: Vec<(Id, Result<Snapshot>)> = self
            .snapshot_ids()?
            .par_iter()
            .map(|id| (*id, self.load_snapshot(id)))
            .collect();
        let mut list = Snapshots::default();
        for (id, result) in results {
            match result {
                Ok(s) => list.items.push((id, s)),
                Err(Error::ObjectMissing { .. }) => {}
                Err(e) => list.damaged.push((format!("snapshots/{id}"), e)),
            }
        }
        list.items.sort_by_key(|(id, s)| (s.timestamp(), *id));
        Ok(list)
    }

    /// Every snapshot, oldest first; an error when one cannot be read (for work that must see all of
    /// them, such as a copy).
    pub fn snapshots(&self) -> Result<Vec<(Id, Snapshot)>> {
        let list = self.load_snapshots()?;
        match list.damaged.into_iter().next() {
            Some((_, e)) => Err(e),
            None => Ok(list.items),
        }
    }

    /// A snapshot by ID prefix or `latest` (the newest readable one: a damaged snapshot object
    /// does not hide the others; its damage is logged, and `check` names it).
    pub fn find_snapshot(&self, spec: &str) -> Result<(Id, Snapshot)> {
        self.find_snapshot_filtered(spec, &SnapshotFilter::default())
    }

    /// A snapshot by ID prefix or `latest`, within `filter`: `latest` is the newest readable snapshot
    /// the filter matches, and an ID prefix naming a snapshot outside it is refused rather than
    /// silently used.
    pub fn find_snapshot_filtered(
        &self,
        spec: &str,
        filter: &SnapshotFilter,
    ) -> Result<(Id, Snapshot)> {
        if spec == "latest" {
            let list = self.load_snapshots()?;
            for (key, e) in &list.damaged {
                tracing::warn!(
                    "{key} cannot be read ({e}); `latest` is the newest readable snapshot"
                );
            }
            return list.latest(filter);
        }
        let spec_lc = spec.to_ascii_lowercase();
        let matches: Vec<Id> = self
            .snapshot_ids()?
            .into_iter()
            .filter(|id| id.to_hex().starts_with(&spec_lc))
            .collect();
        let (id, snapshot) = match matches.as_slice() {
            [id] => (*id, self.load_snapshot(id)?),
            [] => return Err(Error::SnapshotNotFound(spec.into())),
            _ => return Err(Error::AmbiguousSnapshot(spec.into())),
        };
        if !filter.matches(&snapshot) {
            return Err(Error::OutsideFilter {
                id: id.short(),
                filter: filter.to_string(),
            });
        }
        Ok((id, snapshot))
    }

    /// The snapshots `specs` name (ID prefixes or `latest`) within `filter`; every snapshot the
    /// filter matches when there are none.
    pub fn find_snapshots(
        &self,
        specs: &[String],
        filter: &SnapshotFilter,
    ) -> Result<Vec<(Id, Snapshot)>> {
        if specs.is_empty() {
            let mut all = self.snapshots()?;
            all.retain(|(_, s)| filter.matches(s));
            return Ok(all);
        }
        specs
            .iter()
            .map(|spec| self.find_snapshot_filtered(spec, filter))
            .collect()
    }

    // --- index ------------------------------------------------------------------------------------

    pub fn index_keys(&self) -> Result<Vec<String>> {
        Ok(self
            .storage
            .list("index/")?
            .into_iter()
            .map(|o| o.key)
            .collect())
    }

    pub fn load_index_file(&self, key: &str) -> Result<Vec<PackBlobs>> {
        let bytes = self.storage.get(key)?;
        if Id::of_stored(&bytes).to_hex() != key.trim_start_matches("index/") {
            return Err(Error::corrupt(key, "its bytes do not hash to its name"));
        }
        crate::index::open(&self.keyring, &bytes, key)
    }

    /// Remove a snapshot (`forget`). Its data stays until `prune` finds it unreferenced.
    pub fn delete_snapshot(&self, id: &Id) -> Result<()> {
        self.storage.delete(&format!("snapshots/{id}"))
    }

    /// A reader over everything the repository holds now.
    pub fn reader(&self) -> Result<crate::BlobReader<'_>> {
        Ok(crate::BlobReader::new(self, self.load_index()?.0))
    }

    /// The union of every readable index, plus the packs no index names (left by a killed or still
    /// running writer), read from their trailers. Returns the index and those adopted packs. A damaged
    /// index is skipped with a warning: its packs are then adopted the same way, and `check` reports it.
    pub fn load_index(&self) -> Result<(Index, Vec<PackBlobs>)> {
        let marks = crate::garbage::load(self)?;
        for (key, e) in &marks.damaged {
            tracing::warn!("ignoring prune mark {key}: {e} (run `lifeline check`)");
        }
        let doomed = crate::garbage::doomed_packs(&marks.items);
        let files: Vec<_> = self
            .index_keys()?
            .par_iter()
            .filter_map(|key| match self.load_index_file(key) {
                Ok(packs) => Some(packs),
                // Superseded and deleted by a prune since the listing; its packs are in the
                // merged file, or adopted below.
                Err(Error::ObjectMissing { .. }) => None,
                Err(e) => {
                    tracing::warn!("skipping {key}: {e} (run `lifeline check`)");
                    None
                }
            })
            .collect();
        let stored: HashMap<Id, crate::storage::ObjectInfo> = self
            .storage
            .list("data/")?
            .into_iter()
            .filter_map(|o| Some((Id::from_hex(o.key.rsplit('/').next()?)?, o)))
            .collect();
        let mut index = Index::default();
        for (pack, entries) in files.iter().flatten() {
            if !doomed.contains(pack) {
                index.add_pack(*pack, entries);
            } else if stored.contains_key(pack) {
                // Readable until a prune deletes it; a copy elsewhere is preferred.
                index.add_doomed_pack(*pack, entries);
            }
        }
        // Doomed packs are never adopted: a new index naming one would outlive its deletion.
        let orphans: Vec<_> = stored
            .into_iter()
            .filter(|(id, _)| !index.has_pack(id) && !doomed.contains(id))
            .collect();
        let adopted: Vec<PackBlobs> = orphans
            .par_iter()
            .filter_map(|(id, o)| {
                match read_trailer(self.storage.as_ref(), &self.keyring, &o.key, o.size) {
                    Ok(entries) => Some((*id, entries)),
                    Err(e) => {
                        tracing::warn!("ignoring unindexed pack {}: {e}", o.key);
                        None
                    }
                }
            })
            .collect();
        for (pack, entries) in &adopted {
            index.add_pack(*pack, entries);
        }
        if !adopted.is_empty() {
            tracing::info!("adopted {} pack(s) that no index names", adopted.len());
        }
        Ok((index, adopted))
    }
}
