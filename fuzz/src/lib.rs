//! What the fuzz targets share: an in-memory storage backend, a repository whose keys are fixed (so
//! seeds sealed by one run open in the next), and the seed writer `scripts/fuzz.sh` calls.
//!
//! Every target takes arbitrary bytes and must return, never panic: bad input gets an error.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use lifeline_repo::crypto::{Epoch, KeySlot, Keyring, Role, RoleKeys, Secret};
use lifeline_repo::storage::{ObjectInfo, Storage};
use lifeline_repo::{Config, Error, Id, Repository, Result};

/// A storage backend in memory: create-only `put`, like the real ones.
#[derive(Default)]
pub struct MemStorage {
    objects: Mutex<BTreeMap<String, (Vec<u8>, SystemTime)>>,
}

impl MemStorage {
    /// A copy of `self` that can be changed without touching it.
    pub fn copy(&self) -> MemStorage {
        MemStorage {
            objects: Mutex::new(self.lock().clone()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (Vec<u8>, SystemTime)>> {
        self.objects.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Store or overwrite (fuzz set-up only).
    pub fn set(&self, key: &str, data: &[u8]) {
        self.lock()
            .insert(key.to_string(), (data.to_vec(), SystemTime::now()));
    }

    /// Every key under `prefix`.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        self.lock()
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// Remove everything under `prefix`.
    pub fn clear(&self, prefix: &str) {
        self.lock().retain(|k, _| !k.starts_with(prefix));
    }
}

fn info(key: &str, data: &[u8], modified: SystemTime) -> ObjectInfo {
    ObjectInfo {
        key: key.to_string(),
        size: data.len() as u64,
        modified,
    }
}

impl Storage for MemStorage {
    fn put(&self, key: &str, data: &[u8]) -> Result<bool> {
        let mut objects = self.lock();
        if objects.contains_key(key) {
            return Ok(false);
        }
        objects.insert(key.to_string(), (data.to_vec(), SystemTime::now()));
        Ok(true)
    }

    fn get(&self, key: &str) -> Result<Vec<u8>> {
        self.lock()
            .get(key)
            .map(|(d, _)| d.clone())
            .ok_or_else(|| Error::ObjectMissing {
                key: key.to_string(),
            })
    }

    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let data = self.get(key)?;
        let end = offset.checked_add(len).unwrap_or(u64::MAX);
        if end > data.len() as u64 {
            return Err(Error::corrupt(key, "shorter than the range asked for"));
        }
        Ok(data[offset as usize..end as usize].to_vec())
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        Ok(self
            .lock()
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, (d, t))| info(k, d, *t))
            .collect())
    }

    fn stat(&self, key: &str) -> Result<Option<ObjectInfo>> {
        Ok(self.lock().get(key).map(|(d, t)| info(key, d, *t)))
    }

    fn delete(&self, key: &str) -> Result<()> {
        self.lock().remove(key);
        Ok(())
    }

    fn replace(&self, key: &str, data: &[u8]) -> Result<()> {
        self.set(key, data);
        Ok(())
    }

    fn location(&self) -> String {
        "memory".into()
    }
}

/// The fixed repository ID of every fuzz repository.
pub const REPO_ID: &str = "f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0";
/// The tag of its one epoch (above 2^16, like every v2 tag).
pub const EPOCH_TAG: u32 = 0x0001_2345;
/// The key file that opens it.
pub const KEY_FILE: [u8; 32] = [0x4b; 32];

fn fixed(label: &str) -> [u8; 32] {
    blake3::derive_key("lifeline fuzz keys v1", label.as_bytes())
}

/// An administrator's keyring whose keys never change from run to run.
pub fn keyring() -> &'static Keyring {
    static KEYRING: OnceLock<Keyring> = OnceLock::new();
    KEYRING.get_or_init(|| {
        let mut epoch = Epoch {
            epoch: 1,
            tag: EPOCH_TAG,
            created: "2026-01-01T00:00:00+00:00".into(),
            legacy: false,
            data_key: Some(fixed("data")),
            meta_key: Some(fixed("meta")),
            index_key: Some(fixed("index")),
            record_key: Some(fixed("record")),
            restore_secret: Some(fixed("restore secret")),
            audit_secret: Some(fixed("audit secret")),
            ..Epoch::default()
        };
        epoch.derive_public_keys();
        Keyring {
            repo_id: REPO_ID.into(),
            format: 2,
            role: Role::Admin,
            chunk_id_key: fixed("chunk id"),
            gear_key: fixed("gear"),
            epochs: vec![epoch],
            roles: Some(RoleKeys {
                restore_key: fixed("restore role"),
                backup_key: fixed("backup role"),
                audit_key: fixed("audit role"),
            }),
            admin_key: Some(fixed("admin role")),
        }
    })
}

/// The key of each role.
pub fn role_key(role: Role) -> [u8; 32] {
    let k = keyring();
    let roles = k.roles.as_ref().expect("the fixed keyring has role keys");
    match role {
        Role::Admin => k.admin_key.expect("the fixed keyring has an admin key"),
        Role::Restore => roles.restore_key,
        Role::Backup => roles.backup_key,
        Role::Audit => roles.audit_key,
    }
}

/// The bytes of the fixed repository's `config`.
pub fn config_json() -> Vec<u8> {
    serde_json::to_vec_pretty(&Config {
        version: 2,
        id: REPO_ID.into(),
        created: "2026-01-01T00:00:00+00:00".into(),
        pack_size: 1 << 20,
    })
    .expect("config JSON")
}

/// Storage holding a fresh v2 repository with the fixed keys: config, root, epoch and one key-file
/// slot. Targets copy it ([`MemStorage::copy`]) and change what they test.
pub fn base_storage() -> &'static MemStorage {
    static BASE: OnceLock<MemStorage> = OnceLock::new();
    BASE.get_or_init(|| {
        let storage = MemStorage::default();
        let keyring = keyring();
        lifeline_repo::keys::write_root(&storage, keyring).expect("root");
        lifeline_repo::keys::write_epoch(&storage, keyring, &keyring.epochs[0]).expect("epoch");
        let slot = KeySlot::wrap_role(
            REPO_ID,
            Role::Admin,
            &role_key(Role::Admin),
            Secret::KeyFile(&KEY_FILE),
        )
        .expect("slot");
        let bytes = slot.to_json();
        storage.set(&format!("keys/{}", Id::of_stored(&bytes)), &bytes);
        storage.set("config", &config_json());
        storage
    })
}

/// Open a repository on `storage` with the fixed key file.
pub fn open(storage: Arc<MemStorage>) -> Result<Repository> {
    Repository::open_with(storage, Secret::KeyFile(&KEY_FILE))
}

/// One repository shared by a target's runs, over its own copy of [`base_storage`].
pub fn repo() -> &'static (Arc<MemStorage>, Repository) {
    static REPO: OnceLock<(Arc<MemStorage>, Repository)> = OnceLock::new();
    REPO.get_or_init(|| {
        let storage = Arc::new(base_storage().copy());
        let repo = open(storage.clone()).expect("the fixed repository opens");
        (storage, repo)
    })
}

/// A payload (format.md §5): compression byte 0 and the bytes.
pub fn raw_payload(bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8];
    out.extend_from_slice(bytes);
    out
}

/// A payload compressed with zstd (compression byte 1).
pub fn zstd_payload(bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![1u8];
    out.extend_from_slice(&zstd::bulk::compress(bytes, 3).expect("zstd"));
    out
}

/// Both payload forms of `bytes`.
pub fn payloads(bytes: &[u8]) -> Vec<Vec<u8>> {
    vec![raw_payload(bytes), zstd_payload(bytes)]
}

/// CBOR of a value.
pub fn cbor<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).expect("CBOR");
    out
}

/// With `LIFELINE_FUZZ_SEEDS=<dir>` set, write the target's seeds into `<dir>` (one file each, named
/// by their hash like libFuzzer names its units) and exit; otherwise do nothing.
pub fn write_seeds_if_asked(seeds: impl FnOnce() -> Vec<Vec<u8>>) {
    let Some(dir) = std::env::var_os("LIFELINE_FUZZ_SEEDS") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).expect("seed directory");
    let seeds = seeds();
    for seed in &seeds {
        let name = format!("seed-{}", &blake3::hash(seed).to_hex()[..16]);
        std::fs::write(dir.join(name), seed).expect("seed");
    }
    eprintln!("wrote {} seed(s) to {}", seeds.len(), dir.display());
    std::process::exit(0);
}

/// Split `data` at every `sep`, at most `max` parts.
pub fn split<'a>(data: &'a [u8], sep: &[u8], max: usize) -> Vec<&'a [u8]> {
    let mut parts = Vec::new();
    let mut rest = data;
    while parts.len() + 1 < max {
        match rest.windows(sep.len()).position(|w| w == sep) {
            Some(at) => {
                parts.push(&rest[..at]);
                rest = &rest[at + sep.len()..];
            }
            None => break,
        }
    }
    parts.push(rest);
    parts
}
