//! Opening a repository: its config, its keys, its snapshots and its index.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::crypto::{open_object, seal_object, KeySlot, Keyring, ObjectType, Opened, Role, Secret};
use crate::error::{Error, Result};
use crate::index::Index;
use crate::pack::{read_trailer, PackBlobs};
use crate::snapshot::{Snapshot, SnapshotFilter};
use crate::storage::Storage;
use crate::Id;

/// The format new repositories get; v1 repositories are read and written as v1 until migrated.
pub const FORMAT_VERSION: u32 = 2;
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
    /// `password`, `key-file` or `kms`.
    pub kind: &'static str,
    pub role: Role,
    /// 1: a v1 slot holding the whole keyring; 2: one role key.
    pub version: u32,
    /// A KMS slot's label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kms_label: Option<String>,
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
    /// The role key the slot opened to (v2), for re-wrapping it under a new password.
    slot_key: Option<[u8; 32]>,
    /// When the keyring was read: a handle kept longer than half a session timeout checks that no
    /// epoch was added since before it seals anything (format.md §3.2, `key destroy-epoch`).
    keys_loaded: Instant,
}

fn slot_key(id: &Id) -> String {
    format!("keys/{id}")
}

/// A stored key slot, checked against its name first: a slot whose bytes changed would otherwise
/// pass for a wrong password, and one whose content moved under another slot's name would open.
pub(crate) fn read_slot(bytes: &[u8], key: &str) -> Result<KeySlot> {
    if key.trim_start_matches("keys/") != Id::of_stored(bytes).to_hex() {
        return Err(Error::corrupt(key, "its bytes do not hash to its name"));
    }
    KeySlot::from_json(bytes, key)
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
        // Keys first, config last: a half-made repository has no config and is never taken for a real one.
        crate::keys::write_root(storage.as_ref(), &keyring)?;
        for epoch in &keyring.epochs {
            crate::keys::write_epoch(storage.as_ref(), &keyring, epoch)?;
        }
        let slot = Self::write_slot(
            storage.as_ref(),
            &keyring,
            Role::Admin,
            Secret::Password(password),
        )?;
        let config_bytes = serde_json::to_vec_pretty(&config)
            .map_err(|e| Error::Format(format!("config JSON: {e}")))?;
        if !storage.put("config", &config_bytes)? {
            return Err(Error::RepositoryExists {
                location: storage.location(),
            });
        }
        let slot_key = keyring.admin_key;
        Ok(Repository {
            storage,
            config,
            keyring,
            slot,
            slot_key,
            keys_loaded: Instant::now(),
        })
    }

    pub fn open(storage: Arc<dyn Storage>, password: &[u8]) -> Result<Self> {
        Self::open_with(storage, Secret::Password(password))
    }

    /// Open with a password, a key file or a KMS. Only slots of the secret's kind are tried, so a key
    /// file opens in milliseconds however many password slots (0.2 s of Argon2id each) there are.
    pub fn open_with(storage: Arc<dyn Storage>, secret: Secret<'_>) -> Result<Self> {
        let config = Self::read_config(storage.as_ref())?;
        let slots = storage.list("keys/")?;
        if slots.is_empty() {
            return Err(Error::Format(format!(
                "{} has no key slots: the repository cannot be opened",
                storage.location()
            )));
        }
        // A KMS fails on the slots another KMS wrapped (a second HSM, a cloud KMS kept for disaster
        // recovery): the next KMS slot may be its own. Its first failure is the answer if none opens.
        let mut kms_failure = None;
        // A damaged slot does not lock out the others; it is the answer only if none opens.
        let mut damaged = Vec::new();
        for info in slots {
            let bytes = match storage.get(&info.key) {
                Ok(b) => b,
                // Removed since the listing (a migration finishing, `key remove`).
                Err(Error::ObjectMissing { .. }) => continue,
                Err(e) => return Err(e),
            };
            let slot = match read_slot(&bytes, &info.key) {
                Ok(slot) => slot,
                Err(e) => {
                    damaged.push(e);
                    continue;
                }
            };
            // A migration writes v2 slots before it switches the config and deletes v1 slots
            // after: each format opens only through its own slots (format.md §3.5).
            if !slot.accepts(secret) || slot.version != config.version {
                continue;
            }
            let (keyring, slot_key) = match slot.unwrap(secret, &config.id) {
                Ok(Opened::V1(keyring)) => (*keyring, None),
                Ok(Opened::V2 { role, key }) => (
                    crate::keys::load(storage.as_ref(), &config.id, role, &key)?,
                    Some(key),
                ),
                Err(Error::WrongPassword) => continue,
                Err(e @ Error::Kms(_)) => {
                    kms_failure.get_or_insert(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            for e in &damaged {
                tracing::warn!("{e} (run `lifeline check`)");
            }
            return Ok(Repository {
                storage,
                config,
                keyring,
                slot: Id::of_stored(&bytes),
                slot_key,
                keys_loaded: Instant::now(),
            });
        }
        if let Some(Error::Corrupt { key, detail }) = damaged.into_iter().next() {
            return Err(Error::corrupt(
                key,
                format!("{detail}; no other key slot opens with this secret, so this may be its slot (put it back from a copy, or open with another key)"),
            ));
        }
        Err(kms_failure.unwrap_or(Error::WrongPassword))
    }

    /// The key slots whose bytes do not match their names or do not parse, for `check`.
    pub fn damaged_key_slots(&self) -> Result<Vec<(String, Error)>> {
        let mut out = Vec::new();
        for info in self.storage.list("keys/")? {
            match self.storage.get(&info.key) {
                Ok(bytes) => {
                    if let Err(e) = read_slot(&bytes, &info.key) {
                        out.push((info.key, e));
                    }
                }
                Err(Error::ObjectMissing { .. }) => {}
                Err(e) => out.push((info.key, e)),
            }
        }
        Ok(out)
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
        if config.version != 1 && config.version != FORMAT_VERSION {
            return Err(Error::Format(format!(
                "repository format version {} is not supported by this lifeline (it reads versions 1 and {FORMAT_VERSION})",
                config.version
            )));
        }
        Ok(config)
    }

    /// Write a slot that opens `keyring`'s repository as `role` with `secret`: a v1 slot (the whole
    /// keyring) in a v1 repository, else one wrapping the role's key, which only an administrator's
    /// keyring holds.
    fn write_slot(
        storage: &dyn Storage,
        keyring: &Keyring,
        role: Role,
        secret: Secret<'_>,
    ) -> Result<Id> {
        let slot = if keyring.format == 1 {
            if role != Role::Admin {
                return Err(Error::Invalid(format!(
                    "a `{role}` key slot needs format v2 (v1 slots hold every key): run `lifeline migrate` first"
                )));
            }
            KeySlot::wrap_v1(keyring, secret)?
        } else {
            let key = Self::role_key(keyring, role)?;
            KeySlot::wrap_role(&keyring.repo_id, role, &key, secret)?
        };
        let bytes = slot.to_json();
        let id = Id::of_stored(&bytes);
        storage.put(&slot_key(&id), &bytes)?;
        Ok(id)
    }

    fn role_key(keyring: &Keyring, role: Role) -> Result<[u8; 32]> {
        keyring.require(&[Role::Admin], "adding key slots")?;
        let (Some(admin), Some(roles)) = (keyring.admin_key, keyring.roles.as_ref()) else {
            return Err(Error::Format(
                "an administrator's keyring without role keys".into(),
            ));
        };
        Ok(match role {
            Role::Admin => admin,
            Role::Restore => roles.restore_key,
            Role::Backup => roles.backup_key,
            Role::Audit => roles.audit_key,
        })
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

    /// This handle with its keyring read again through the same credential (no password asked):
    /// it then knows the epochs added and destroyed since it was opened. A v1 keyring lives in its
    /// slot and has no epochs to add, so it is returned as it is.
    pub fn refreshed(&self) -> Result<Repository> {
        let mut fresh = self.clone();
        if let (true, Some(key)) = (self.keyring.format >= 2, self.slot_key) {
            fresh.keyring = crate::keys::load(
                self.storage.as_ref(),
                &self.config.id,
                self.keyring.role,
                &key,
            )?;
        }
        fresh.keys_loaded = Instant::now();
        Ok(fresh)
    }

    /// A key epoch storage holds that this handle's keyring lacks (the keys were rotated after it
    /// was opened), if any. One listing of `keyring/epoch-` names, which carry the tags.
    pub fn new_epoch(&self) -> Result<Option<u32>> {
        if self.keyring.format < 2 {
            return Ok(None);
        }
        let known: HashSet<u32> = self.keyring.epochs.iter().map(|e| e.tag).collect();
        Ok(self
            .storage
            .list(crate::keys::EPOCH_PREFIX)?
            .iter()
            .filter_map(|info| crate::keys::tag_of_key(&info.key))
            .find(|tag| !known.contains(tag)))
    }

    /// Fails when the keys were rotated after this handle was opened.
    pub fn ensure_keys_current(&self) -> Result<()> {
        match self.new_epoch()? {
            Some(tag) => Err(Error::Invalid(format!(
                "the repository's keys were rotated after this process opened it (epoch {tag:08x} is new): run it again, so that what it writes is sealed under the current epoch"
            ))),
            None => Ok(()),
        }
    }

    /// Before sealing with a keyring read long ago: make sure no epoch was added since. A handle
    /// opened within half a session timeout needs no check: `key destroy-epoch` waits a whole
    /// timeout after a rotation before it destroys what the rotation replaced (format.md §3.2).
    pub(crate) fn ensure_keys_fresh(&self) -> Result<()> {
        if self.keys_loaded.elapsed() < crate::session::SESSION_TIMEOUT / 2 {
            return Ok(());
        }
        self.ensure_keys_current()
    }

    /// How long ago the keyring was read.
    pub fn keys_age(&self) -> Duration {
        self.keys_loaded.elapsed()
    }

    // --- keys -------------------------------------------------------------------------------------

    pub fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        let mut out = Vec::new();
        for info in self.storage.list("keys/")? {
            let slot = read_slot(&self.storage.get(&info.key)?, &info.key)?;
            let id = info.key.trim_start_matches("keys/").to_string();
            out.push(KeyInfo {
                current: id == self.slot.to_hex(),
                kind: slot.kdf.kind(),
                role: slot.role(),
                version: slot.version,
                kms_label: slot.kms.as_ref().map(|k| k.label.clone()),
                id,
                created: slot.created,
                hostname: slot.hostname,
                username: slot.username,
            });
        }
        out.sort_by(|a, b| a.created.cmp(&b.created));
        Ok(out)
    }

    /// Add an administrator's slot that opens this repository with `password`; returns its ID.
    pub fn add_key(&self, password: &[u8]) -> Result<Id> {
        self.add_slot(Role::Admin, Secret::Password(password))
    }

    /// Add an administrator's slot opened by the 256-bit `key` of a key file (for unattended
    /// callers such as PostgreSQL's `archive_command`, which run too often to pay for Argon2id).
    pub fn add_key_file(&self, key: &[u8; 32]) -> Result<Id> {
        self.add_slot(Role::Admin, Secret::KeyFile(key))
    }

    /// Add a slot of `role` opened by `secret` (administrators only).
    pub fn add_slot(&self, role: Role, secret: Secret<'_>) -> Result<Id> {
        self.keyring.require(&[Role::Admin], "adding key slots")?;
        Self::write_slot(self.storage.as_ref(), &self.keyring, role, secret)
    }

    /// Remove another key slot. The slot in use cannot be removed: that would lock out this session's
    /// user with no proof that another password still works.
    pub fn remove_key(&self, prefix: &str) -> Result<String> {
        self.keyring.require(&[Role::Admin], "removing key slots")?;
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

    /// Replace the slot in use by one for `new_password`, of the same role.
    pub fn change_password(&mut self, new_password: &[u8]) -> Result<Id> {
        let secret = Secret::Password(new_password);
        let new = match self.slot_key {
            Some(key) => {
                let slot =
                    KeySlot::wrap_role(&self.keyring.repo_id, self.keyring.role, &key, secret)?;
                let bytes = slot.to_json();
                let id = Id::of_stored(&bytes);
                self.storage.put(&slot_key(&id), &bytes)?;
                id
            }
            None => Self::write_slot(self.storage.as_ref(), &self.keyring, Role::Admin, secret)?,
        };
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
        // Refused up front: a credential without the key would list every snapshot as damaged.
        self.require_read("reading snapshots")?;
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
    /// them, such as a copy). A shredded snapshot (its key epoch was destroyed, format.md §3.2) is
    /// not damage: nobody can read it, ever, so it is left out with a warning.
    pub fn snapshots(&self) -> Result<Vec<(Id, Snapshot)>> {
        let list = self.load_snapshots()?;
        for (_, e) in list.damaged {
            match e {
                Error::Shredded { .. } => tracing::warn!("{e}; it is left out"),
                e => return Err(e),
            }
        }
        Ok(list.items)
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
            // A mark this credential may not read could doom a pack it would deduplicate against.
            if e.kind() == crate::ErrorKind::NotPermitted {
                return Err(Error::Invalid(format!(
                    "prune mark {key} was sealed before role separation and this credential cannot read it: finish that prune with a `restore` or `admin` credential (`lifeline prune`), then back up"
                )));
            }
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
        let mut orphans: Vec<_> = stored
            .into_iter()
            .filter(|(id, _)| !index.has_pack(id) && !doomed.contains(id))
            .collect();
        // A pack's trailer is sealed like its blobs, which a write-only credential cannot open. Not
        // adopting costs only space: this session uploads those blobs again, and the next session
        // of a reading credential adopts them (or prune collects them).
        if !orphans.is_empty() && !self.can_read_backups() {
            tracing::debug!(
                "not adopting {} unindexed pack(s): a `{}` credential cannot read their trailers",
                orphans.len(),
                self.role()
            );
            orphans.clear();
        }
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
