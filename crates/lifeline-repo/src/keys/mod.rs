//! The key objects of format v2 (format.md §3.2): the root, one object per epoch and tombstones of
//! destroyed epochs, and loading what a credential's role reaches through them.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

mod destroy;
mod listing;
mod rotate;

pub use destroy::{destroy_epoch, DestroyReport};
pub use listing::{current_listed, epoch_infos, list_epochs, EpochInfo, EpochListing};
pub use rotate::{rotate, rotate_if_older, RotateReport};

use crate::crypto::{aead, Epoch, Keyring, Role, RoleKeys};
use crate::error::{Error, Result};
use crate::storage::Storage;
use crate::Id;

pub mod migrate;

pub const ROOT_PREFIX: &str = "keyring/root-";
pub const EPOCH_PREFIX: &str = "keyring/epoch-";
pub const DESTROYED_PREFIX: &str = "keyring/destroyed-";

/// One role's part of a key object: AES-256-GCM under the role key, bound to its place.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Section {
    nonce: String,
    sealed: String,
}

fn aad(place: &str, repository: &str) -> Vec<u8> {
    format!("lifeline v2 {place} {repository}").into_bytes()
}

fn seal_section<T: Serialize>(
    key: &[u8; 32],
    place: &str,
    repo: &str,
    value: &T,
) -> Result<Section> {
    let mut plain = Vec::new();
    ciborium::into_writer(value, &mut plain)
        .map_err(|e| Error::Format(format!("key object CBOR: {e}")))?;
    let (nonce, sealed) = aead::seal(key, &aad(place, repo), &plain)
        .ok_or_else(|| Error::Format("sealing a key object".into()))?;
    Ok(Section {
        nonce: hex::encode(nonce),
        sealed: hex::encode(sealed),
    })
}

fn open_section<T: DeserializeOwned>(
    key: &[u8; 32],
    place: &str,
    repo: &str,
    section: &Section,
    object: &str,
) -> Result<T> {
    let nonce = hex::decode(&section.nonce)
        .ok()
        .filter(|n| n.len() == 12)
        .ok_or_else(|| Error::corrupt(object, "section nonce"))?;
    let sealed =
        hex::decode(&section.sealed).map_err(|_| Error::corrupt(object, "section is not hex"))?;
    let plain = aead::open(key, &nonce, &aad(place, repo), &sealed).ok_or_else(|| {
        Error::corrupt(
            object,
            format!("its {place} section does not open with this credential's key"),
        )
    })?;
    ciborium::from_reader(plain.as_slice())
        .map_err(|e| Error::corrupt(object, format!("CBOR: {e}")))
}

type Key = [u8; 32];

#[derive(Serialize, Deserialize)]
struct AdminSection {
    #[serde(with = "serde_bytes")]
    restore_key: Key,
    #[serde(with = "serde_bytes")]
    backup_key: Key,
    #[serde(with = "serde_bytes")]
    audit_key: Key,
}

#[derive(Serialize, Deserialize)]
struct DedupSection {
    #[serde(with = "serde_bytes")]
    chunk_id_key: Key,
    #[serde(with = "serde_bytes")]
    gear_key: Key,
}

#[derive(Serialize, Deserialize)]
struct Root {
    version: u32,
    repository: String,
    created: String,
    admin: Section,
    restore: Section,
    backup: Section,
    audit: Section,
}

#[derive(Serialize, Deserialize)]
struct RestoreSection {
    #[serde(with = "serde_bytes")]
    data_key: Key,
    #[serde(with = "serde_bytes")]
    meta_key: Key,
    #[serde(with = "serde_bytes")]
    index_key: Key,
    #[serde(with = "serde_bytes")]
    record_key: Key,
    #[serde(default, with = "opt_bytes")]
    restore_secret: Option<Key>,
    #[serde(default, with = "opt_bytes")]
    audit_secret: Option<Key>,
}

#[derive(Serialize, Deserialize)]
struct BackupSection {
    #[serde(with = "serde_bytes")]
    index_key: Key,
    // The public keys a backup credential seals to. Sealed, not in the clear: whoever can only
    // write to the storage must not be able to seal snapshots or audit bodies that readers accept
    // (format.md §3.2). Absent in epochs written before 2026-12-03, which carry them in the clear.
    #[serde(default, with = "opt_bytes")]
    restore_public: Option<Key>,
    #[serde(default, with = "opt_bytes")]
    audit_public: Option<Key>,
}

#[derive(Serialize, Deserialize)]
struct AuditSection {
    #[serde(with = "serde_bytes")]
    record_key: Key,
    #[serde(default, with = "opt_bytes")]
    audit_secret: Option<Key>,
}

/// `Option<[u8; 32]>` as a CBOR byte string or null.
mod opt_bytes {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
        v.as_ref().map(|k| serde_bytes::Bytes::new(k)).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<[u8; 32]>, D::Error> {
        let v: Option<serde_bytes::ByteBuf> = Option::deserialize(d)?;
        v.map(|b| {
            <[u8; 32]>::try_from(b.as_slice())
                .map_err(|_| serde::de::Error::custom("a key must be 32 bytes"))
        })
        .transpose()
    }
}

#[derive(Serialize, Deserialize)]
struct EpochObject {
    version: u32,
    repository: String,
    epoch: u32,
    tag: String,
    created: String,
    legacy: bool,
    /// Read only: epochs written before 2026-12-03 carry their public keys here, in the clear;
    /// later ones inside the sealed sections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    restore_public: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    audit_public: Option<String>,
    restore: Section,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    backup: Option<Section>,
    audit: Section,
}

/// A destroyed epoch's tombstone (format.md §3.2). It keeps the epoch's record keys (not for
/// legacy epochs, whose record key also sealed trees): the audit trail outlives the data.
#[derive(Serialize, Deserialize)]
struct Tombstone {
    version: u32,
    repository: String,
    epoch: u32,
    tag: String,
    created: String,
    destroyed: String,
    hostname: String,
    username: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    audit_public: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    restore: Option<Section>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    audit: Option<Section>,
}

pub fn tag_hex(tag: u32) -> String {
    format!("{tag:08x}")
}

/// The tag in a key object's name (`keyring/epoch-<tag>-<id>`, `keyring/destroyed-<tag>-<id>`).
pub fn tag_of_key(key: &str) -> Option<u32> {
    let rest = key
        .strip_prefix(EPOCH_PREFIX)
        .or_else(|| key.strip_prefix(DESTROYED_PREFIX))?;
    let (tag, _) = rest.split_once('-')?;
    u32::from_str_radix(tag, 16).ok()
}

fn parse_tag(s: &str, object: &str) -> Result<u32> {
    u32::from_str_radix(s, 16).map_err(|_| Error::corrupt(object, "epoch tag is not 8 hex digits"))
}

fn hex_key(s: &Option<String>, object: &str) -> Result<Option<Key>> {
    s.as_ref()
        .map(|h| {
            hex::decode(h)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
                .ok_or_else(|| Error::corrupt(object, "public key is not 32 hex bytes"))
        })
        .transpose()
}

/// Store `bytes` under `prefix<id>` (or `prefix<tag>-<id>`), create-only; returns the key.
fn put_named(storage: &dyn Storage, prefix: &str, bytes: &[u8]) -> Result<String> {
    let key = format!("{prefix}{}", Id::of_stored(bytes));
    storage.put(&key, bytes)?;
    Ok(key)
}

fn json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec_pretty(value).unwrap_or_else(|e| panic!("key object JSON: {e}"))
}

fn parse<T: DeserializeOwned>(bytes: &[u8], object: &str) -> Result<T> {
    if !object.ends_with(&Id::of_stored(bytes).to_hex()) {
        return Err(Error::corrupt(object, "its bytes do not hash to its name"));
    }
    serde_json::from_slice(bytes).map_err(|e| Error::corrupt(object, format!("JSON: {e}")))
}

/// Write the root of an administrator's keyring; returns its key.
pub fn write_root(storage: &dyn Storage, keyring: &Keyring) -> Result<String> {
    let (admin_key, roles) = admin_keys(keyring)?;
    let repo = &keyring.repo_id;
    let dedup = DedupSection {
        chunk_id_key: keyring.chunk_id_key,
        gear_key: keyring.gear_key,
    };
    let root = Root {
        version: 2,
        repository: repo.clone(),
        created: chrono::Utc::now().to_rfc3339(),
        admin: seal_section(
            admin_key,
            "root admin",
            repo,
            &AdminSection {
                restore_key: roles.restore_key,
                backup_key: roles.backup_key,
                audit_key: roles.audit_key,
            },
        )?,
        restore: seal_section(&roles.restore_key, "root restore", repo, &dedup)?,
        backup: seal_section(&roles.backup_key, "root backup", repo, &dedup)?,
        audit: seal_section(&roles.audit_key, "root audit", repo, &dedup)?,
    };
    put_named(storage, ROOT_PREFIX, &json(&root))
}

fn admin_keys(keyring: &Keyring) -> Result<(&Key, &RoleKeys)> {
    match (&keyring.admin_key, &keyring.roles) {
        (Some(a), Some(r)) => Ok((a, r)),
        _ => Err(keyring
            .require(&[Role::Admin], "writing key objects")
            .err()
            .unwrap_or_else(|| Error::Format("this keyring holds no role keys".into()))),
    }
}

/// Write `epoch` (holding every key) as a key object; returns its key.
pub fn write_epoch(storage: &dyn Storage, keyring: &Keyring, epoch: &Epoch) -> Result<String> {
    let (_, roles) = admin_keys(keyring)?;
    let repo = &keyring.repo_id;
    let missing = || Error::Format(format!("epoch {} lacks a key", epoch.epoch));
    let tag = tag_hex(epoch.tag);
    let place = |role: &str| format!("epoch {tag} {role}");
    let restore = RestoreSection {
        data_key: epoch.data_key.ok_or_else(missing)?,
        meta_key: epoch.meta_key.ok_or_else(missing)?,
        index_key: epoch.index_key.ok_or_else(missing)?,
        record_key: epoch.record_key.ok_or_else(missing)?,
        restore_secret: epoch.restore_secret,
        audit_secret: epoch.audit_secret,
    };
    // A legacy epoch's index key is its meta key, which also seals trees and snapshots: a backup
    // credential must not get it (format.md §3.5).
    let backup = if epoch.legacy {
        None
    } else {
        Some(seal_section(
            &roles.backup_key,
            &place("backup"),
            repo,
            &BackupSection {
                index_key: restore.index_key,
                restore_public: epoch.restore_public,
                audit_public: epoch.audit_public,
            },
        )?)
    };
    let object = EpochObject {
        version: 2,
        repository: repo.clone(),
        epoch: epoch.epoch,
        tag: tag.clone(),
        created: epoch.created.clone(),
        legacy: epoch.legacy,
        restore_public: None,
        audit_public: None,
        audit: seal_section(
            &roles.audit_key,
            &place("audit"),
            repo,
            &AuditSection {
                record_key: restore.record_key,
                audit_secret: epoch.audit_secret,
            },
        )?,
        restore: seal_section(&roles.restore_key, &place("restore"), repo, &restore)?,
        backup,
    };
    put_named(storage, &format!("{EPOCH_PREFIX}{tag}-"), &json(&object))
}

/// Write the tombstone of `epoch` (an administrator's keyring); returns its key.
pub fn write_tombstone(storage: &dyn Storage, keyring: &Keyring, epoch: &Epoch) -> Result<String> {
    let (_, roles) = admin_keys(keyring)?;
    let repo = &keyring.repo_id;
    let tag = tag_hex(epoch.tag);
    let kept = AuditSection {
        record_key: epoch
            .record_key
            .ok_or_else(|| Error::Format(format!("epoch {} lacks its record key", epoch.epoch)))?,
        audit_secret: epoch.audit_secret,
    };
    let (restore, audit) = if epoch.legacy {
        (None, None)
    } else {
        (
            Some(seal_section(
                &roles.restore_key,
                &format!("destroyed {tag} restore"),
                repo,
                &kept,
            )?),
            Some(seal_section(
                &roles.audit_key,
                &format!("destroyed {tag} audit"),
                repo,
                &kept,
            )?),
        )
    };
    let stone = Tombstone {
        version: 2,
        repository: repo.clone(),
        epoch: epoch.epoch,
        tag: tag.clone(),
        created: epoch.created.clone(),
        destroyed: chrono::Utc::now().to_rfc3339(),
        hostname: crate::host::hostname(),
        username: crate::host::username(),
        audit_public: None,
        restore,
        audit,
    };
    put_named(storage, &format!("{DESTROYED_PREFIX}{tag}-"), &json(&stone))
}

/// The destroyed epochs as `role` sees them: the record keys it may hold, nothing else.
fn destroyed_epochs(
    storage: &dyn Storage,
    repo_id: &str,
    role: Role,
    key: &Key,
) -> Result<Vec<Epoch>> {
    let mut out = Vec::new();
    for info in storage.list(DESTROYED_PREFIX)? {
        let stone: Tombstone = parse(&storage.get(&info.key)?, &info.key)?;
        if stone.repository != repo_id {
            return Err(Error::corrupt(&info.key, "names another repository"));
        }
        let mut e = Epoch {
            epoch: stone.epoch,
            tag: parse_tag(&stone.tag, &info.key)?,
            created: stone.created.clone(),
            audit_public: hex_key(&stone.audit_public, &info.key)?,
            object: Some(info.key.clone()),
            destroyed: Some(stone.destroyed.clone()),
            ..Epoch::default()
        };
        let section = match role {
            Role::Admin | Role::Restore => stone.restore.as_ref().map(|s| ("restore", s)),
            Role::Audit => stone.audit.as_ref().map(|s| ("audit", s)),
            Role::Backup => None,
        };
        if let Some((name, section)) = section {
            let place = format!("destroyed {} {name}", stone.tag);
            let kept: AuditSection = open_section(key, &place, repo_id, section, &info.key)?;
            e.record_key = Some(kept.record_key);
            e.audit_secret = kept.audit_secret;
        }
        e.derive_public_keys();
        out.push(e);
    }
    Ok(out)
}

/// Whether `storage` holds a v2 root (a migration may have been interrupted after writing one).
pub fn has_root(storage: &dyn Storage) -> Result<bool> {
    Ok(!storage.list(ROOT_PREFIX)?.is_empty())
}

/// The keyring a v2 credential of `role` with `role_key` reaches (format.md §3.4).
pub fn load(storage: &dyn Storage, repo_id: &str, role: Role, role_key: &Key) -> Result<Keyring> {
    let roots = storage.list(ROOT_PREFIX)?;
    let mut last = None;
    for info in &roots {
        let root: Root = parse(&storage.get(&info.key)?, &info.key)?;
        if root.repository != repo_id {
            last = Some(Error::corrupt(&info.key, "names another repository"));
            continue;
        }
        match load_from_root(storage, &root, &info.key, role, role_key) {
            Ok(k) => return Ok(k),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        Error::Format(format!(
            "{} has no key root (`keyring/root-...`): the repository cannot be opened",
            storage.location()
        ))
    }))
}

fn load_from_root(
    storage: &dyn Storage,
    root: &Root,
    object: &str,
    role: Role,
    role_key: &Key,
) -> Result<Keyring> {
    let repo = &root.repository;
    let (roles, admin_key) = if role == Role::Admin {
        let a: AdminSection = open_section(role_key, "root admin", repo, &root.admin, object)?;
        (
            Some(RoleKeys {
                restore_key: a.restore_key,
                backup_key: a.backup_key,
                audit_key: a.audit_key,
            }),
            Some(*role_key),
        )
    } else {
        (None, None)
    };
    // What this credential opens sections with: an administrator reads as a restorer.
    let (section_role, key) = match (&roles, role) {
        (Some(r), _) => (Role::Restore, r.restore_key),
        (None, r) => (r, *role_key),
    };
    let (name, section) = match section_role {
        Role::Backup => ("root backup", &root.backup),
        Role::Audit => ("root audit", &root.audit),
        _ => ("root restore", &root.restore),
    };
    let dedup: DedupSection = open_section(&key, name, repo, section, object)?;
    let mut epochs = destroyed_epochs(storage, repo, section_role, &key)?;
    let destroyed: Vec<u32> = epochs.iter().map(|e| e.tag).collect();
    for info in storage.list(EPOCH_PREFIX)? {
        let bytes = match storage.get(&info.key) {
            Ok(b) => b,
            // Destroyed between the listing and the reading.
            Err(Error::ObjectMissing { .. }) => continue,
            Err(e) => return Err(e),
        };
        let o: EpochObject = parse(&bytes, &info.key)?;
        let tag = parse_tag(&o.tag, &info.key)?;
        if o.repository != *repo || !info.key.starts_with(&format!("{EPOCH_PREFIX}{}-", o.tag)) {
            return Err(Error::corrupt(
                &info.key,
                "names another repository or epoch",
            ));
        }
        // A destroy that was killed after its tombstone: the tombstone wins.
        if destroyed.contains(&tag) {
            continue;
        }
        epochs.push(open_epoch(&o, tag, &info.key, section_role, &key)?);
    }
    epochs.sort_by(|a, b| (a.epoch, &a.created, a.tag).cmp(&(b.epoch, &b.created, b.tag)));
    Ok(Keyring {
        repo_id: repo.clone(),
        format: 2,
        role,
        chunk_id_key: dedup.chunk_id_key,
        gear_key: dedup.gear_key,
        epochs,
        roles,
        admin_key,
    })
}

fn open_epoch(o: &EpochObject, tag: u32, object: &str, role: Role, key: &Key) -> Result<Epoch> {
    let place = |r: &str| format!("epoch {} {r}", o.tag);
    let mut e = Epoch {
        epoch: o.epoch,
        tag,
        created: o.created.clone(),
        legacy: o.legacy,
        restore_public: hex_key(&o.restore_public, object)?,
        audit_public: hex_key(&o.audit_public, object)?,
        object: Some(object.to_string()),
        ..Epoch::default()
    };
    match role {
        Role::Admin | Role::Restore => {
            let s: RestoreSection =
                open_section(key, &place("restore"), &o.repository, &o.restore, object)?;
            e.data_key = Some(s.data_key);
            e.meta_key = Some(s.meta_key);
            e.index_key = Some(s.index_key);
            e.record_key = Some(s.record_key);
            e.restore_secret = s.restore_secret;
            e.audit_secret = s.audit_secret;
        }
        Role::Backup => {
            // Legacy epochs have no backup section: their index is not for write-only clients.
            if let Some(section) = &o.backup {
                let s: BackupSection =
                    open_section(key, &place("backup"), &o.repository, section, object)?;
                e.index_key = Some(s.index_key);
                // The sealed copies win: the clear ones of older objects are not authenticated.
                e.restore_public = s.restore_public.or(e.restore_public);
                e.audit_public = s.audit_public.or(e.audit_public);
            }
        }
        Role::Audit => {
            let s: AuditSection =
                open_section(key, &place("audit"), &o.repository, &o.audit, object)?;
            e.record_key = Some(s.record_key);
            e.audit_secret = s.audit_secret;
        }
    }
    e.derive_public_keys();
    Ok(e)
}

#[cfg(test)]
mod tests;
