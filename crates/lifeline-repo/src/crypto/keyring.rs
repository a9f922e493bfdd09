use serde::{Deserialize, Serialize};

use super::envelope::ObjectType;
use crate::error::{Error, Result};

/// What a credential may do (format.md §3.1). A slot wraps the key of exactly one role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Key management, and everything the other roles can do.
    Admin,
    /// Reads and writes everything sealed: restore, check --read-data, drills, prune, holds.
    Restore,
    /// Write-only: deduplicates and seals new objects to the epoch's public keys; reads only the
    /// index and prune marks.
    Backup,
    /// Reads records and the audit trail; no data, trees, snapshots or index.
    Audit,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Restore => "restore",
            Role::Backup => "backup",
            Role::Audit => "audit",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "admin" => Role::Admin,
            "restore" => Role::Restore,
            "backup" => Role::Backup,
            "audit" => Role::Audit,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One generation of sealing keys. Which keys are present depends on the credential's role; old
/// epochs stay readable after a rotation.
#[derive(Clone, Default)]
pub struct Epoch {
    /// The number people use (1, 2, ...).
    pub epoch: u32,
    /// What envelope headers carry (format.md §3.2); equal to `epoch` for epochs of format v1.
    pub tag: u32,
    pub created: String,
    /// Made from a v1 epoch: one key sealed snapshots, trees, indexes and records.
    pub legacy: bool,
    pub data_key: Option<[u8; 32]>,
    pub meta_key: Option<[u8; 32]>,
    pub index_key: Option<[u8; 32]>,
    pub record_key: Option<[u8; 32]>,
    pub restore_secret: Option<[u8; 32]>,
    pub audit_secret: Option<[u8; 32]>,
    pub restore_public: Option<[u8; 32]>,
    pub audit_public: Option<[u8; 32]>,
    /// The `keyring/epoch-...` object it was read from (none for v1).
    pub object: Option<String>,
    /// When it was destroyed: only its record keys are left, from its tombstone (format.md §3.2).
    pub destroyed: Option<String>,
}

impl Epoch {
    /// A v1 epoch as a v1 keyring holds it: its meta key seals everything but data.
    pub fn legacy(epoch: u32, created: String, data_key: [u8; 32], meta_key: [u8; 32]) -> Self {
        Epoch {
            epoch,
            tag: epoch,
            created,
            legacy: true,
            data_key: Some(data_key),
            meta_key: Some(meta_key),
            index_key: Some(meta_key),
            record_key: Some(meta_key),
            ..Epoch::default()
        }
    }

    /// A new epoch with every key (for the credential that makes it).
    pub fn generate(epoch: u32, tag: u32) -> Self {
        let restore_secret: [u8; 32] = rand::random();
        let audit_secret: [u8; 32] = rand::random();
        Epoch {
            epoch,
            tag,
            created: chrono::Utc::now().to_rfc3339(),
            legacy: false,
            data_key: Some(rand::random()),
            meta_key: Some(rand::random()),
            index_key: Some(rand::random()),
            record_key: Some(rand::random()),
            restore_public: Some(super::sealed_to::public_of(&restore_secret)),
            audit_public: Some(super::sealed_to::public_of(&audit_secret)),
            restore_secret: Some(restore_secret),
            audit_secret: Some(audit_secret),
            object: None,
            destroyed: None,
        }
    }

    /// Fills in the public keys of the secrets this credential holds. Epoch objects keep the public
    /// keys only inside sealed sections (format.md §3.2), so a reader derives them.
    pub fn derive_public_keys(&mut self) {
        if let Some(secret) = &self.restore_secret {
            self.restore_public = Some(super::sealed_to::public_of(secret));
        }
        if let Some(secret) = &self.audit_secret {
            self.audit_public = Some(super::sealed_to::public_of(secret));
        }
    }

    /// The symmetric key that seals `t` under scheme 1, if this credential holds it.
    pub fn key_for(&self, t: ObjectType) -> Option<&[u8; 32]> {
        match t {
            ObjectType::DataPack | ObjectType::Named => self.data_key.as_ref(),
            ObjectType::Snapshot | ObjectType::TreePack => self.meta_key.as_ref(),
            ObjectType::Index | ObjectType::Mark => self.index_key.as_ref(),
            ObjectType::Record | ObjectType::Audit => self.record_key.as_ref(),
        }
    }

    /// The public key `t` is sealed to under scheme 2, and the secret that opens it.
    pub fn recipient_for(&self, t: ObjectType) -> (Option<&[u8; 32]>, Option<&[u8; 32]>) {
        match t {
            ObjectType::Snapshot
            | ObjectType::TreePack
            | ObjectType::DataPack
            | ObjectType::Named => (self.restore_public.as_ref(), self.restore_secret.as_ref()),
            ObjectType::Record | ObjectType::Audit => {
                (self.audit_public.as_ref(), self.audit_secret.as_ref())
            }
            ObjectType::Index | ObjectType::Mark => (None, None),
        }
    }
}

/// The three role keys an administrator reaches through the root (format.md §3.2).
#[derive(Clone)]
pub struct RoleKeys {
    pub restore_key: [u8; 32],
    pub backup_key: [u8; 32],
    pub audit_key: [u8; 32],
}

impl RoleKeys {
    pub fn generate() -> Self {
        RoleKeys {
            restore_key: rand::random(),
            backup_key: rand::random(),
            audit_key: rand::random(),
        }
    }
}

/// Everything a credential can use (format.md §3). The dedup keys are separate from the sealing
/// keys so a write-only client can deduplicate without being able to read.
#[derive(Clone)]
pub struct Keyring {
    pub repo_id: String,
    /// The repository's format version: 1 until migrated.
    pub format: u32,
    pub role: Role,
    pub chunk_id_key: [u8; 32],
    pub gear_key: [u8; 32],
    /// Every epoch, oldest first, destroyed ones included (with their record keys only).
    pub epochs: Vec<Epoch>,
    /// Present for administrators of v2 repositories.
    pub roles: Option<RoleKeys>,
    /// The admin key itself, for new admin slots (v2 administrators only).
    pub admin_key: Option<[u8; 32]>,
}

/// The v1 keyring as it is sealed in a v1 slot (format.md §3.5).
#[derive(Serialize, Deserialize)]
pub(crate) struct V1Keyring {
    pub repo_id: String,
    #[serde(with = "serde_bytes")]
    pub chunk_id_key: [u8; 32],
    #[serde(with = "serde_bytes")]
    pub gear_key: [u8; 32],
    pub epochs: Vec<V1Epoch>,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct V1Epoch {
    pub epoch: u32,
    pub created: String,
    #[serde(with = "serde_bytes")]
    pub data_key: [u8; 32],
    #[serde(with = "serde_bytes")]
    pub meta_key: [u8; 32],
}

impl Keyring {
    /// A fresh keyring for a new repository: every key, one epoch, administrator.
    pub fn generate(repo_id: &str) -> Self {
        Keyring {
            repo_id: repo_id.to_string(),
            format: 2,
            role: Role::Admin,
            chunk_id_key: rand::random(),
            gear_key: rand::random(),
            epochs: vec![Epoch::generate(1, fresh_tag(&[]))],
            roles: Some(RoleKeys::generate()),
            admin_key: Some(rand::random()),
        }
    }

    /// The epoch new objects are sealed under: the greatest (number, created, tag).
    pub fn current(&self) -> Result<&Epoch> {
        self.epochs
            .iter()
            .filter(|e| e.destroyed.is_none())
            .max_by(|a, b| (a.epoch, &a.created, a.tag).cmp(&(b.epoch, &b.created, b.tag)))
            .ok_or_else(|| {
                Error::Format("this repository has no key epoch left to seal new objects".into())
            })
    }

    /// The epoch whose tag an object's header carries.
    pub fn epoch(&self, tag: u32, key: &str) -> Result<&Epoch> {
        if let Some(e) = self.epochs.iter().find(|e| e.tag == tag) {
            return Ok(e);
        }
        Err(Error::Format(format!(
            "{key}: key epoch {tag:08x} is not in this repository's keyring (the object is foreign)"
        )))
    }

    /// The keyed hash that names chunks and trees.
    pub fn chunk_id(&self, plaintext: &[u8]) -> crate::Id {
        crate::Id(*blake3::keyed_hash(&self.chunk_id_key, plaintext).as_bytes())
    }

    /// Fails unless this credential's role is one of `roles`; `what` says what was refused.
    pub fn require(&self, roles: &[Role], what: &str) -> Result<()> {
        if roles.contains(&self.role) {
            return Ok(());
        }
        Err(Error::NotPermitted {
            role: self.role.to_string(),
            what: what.to_string(),
            needs: roles
                .iter()
                .map(|r| format!("`{r}`"))
                .collect::<Vec<_>>()
                .join(" or "),
        })
    }

    pub(crate) fn from_v1(v1: V1Keyring) -> Self {
        Keyring {
            repo_id: v1.repo_id,
            format: 1,
            role: Role::Admin,
            chunk_id_key: v1.chunk_id_key,
            gear_key: v1.gear_key,
            epochs: v1
                .epochs
                .into_iter()
                .map(|e| Epoch::legacy(e.epoch, e.created, e.data_key, e.meta_key))
                .collect(),
            roles: None,
            admin_key: None,
        }
    }

    /// The v1 form of this keyring, for v1 slots (only keyrings of v1 repositories have one).
    pub(crate) fn to_v1(&self) -> Result<V1Keyring> {
        let epochs = self
            .epochs
            .iter()
            .map(|e| match (e.legacy, e.data_key, e.meta_key) {
                (true, Some(data_key), Some(meta_key)) => Ok(V1Epoch {
                    epoch: e.epoch,
                    created: e.created.clone(),
                    data_key,
                    meta_key,
                }),
                _ => Err(Error::Format(format!(
                    "epoch {} cannot be written into a format v1 key slot",
                    e.epoch
                ))),
            })
            .collect::<Result<_>>()?;
        Ok(V1Keyring {
            repo_id: self.repo_id.clone(),
            chunk_id_key: self.chunk_id_key,
            gear_key: self.gear_key,
            epochs,
        })
    }
}

/// A random epoch tag that no epoch in `taken` uses, above the range v1 epoch numbers occupy.
pub fn fresh_tag(taken: &[u32]) -> u32 {
    loop {
        let tag: u32 = rand::random();
        if tag >= 1 << 16 && !taken.contains(&tag) {
            return tag;
        }
    }
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Keyring")
            .field("repo_id", &self.repo_id)
            .field("format", &self.format)
            .field("role", &self.role)
            .field("epochs", &self.epochs.len())
            .finish_non_exhaustive()
    }
}
