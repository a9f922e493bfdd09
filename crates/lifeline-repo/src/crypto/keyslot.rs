use serde::{Deserialize, Serialize};

use super::aead;
use super::keyring::{Keyring, Role, V1Keyring};
use crate::error::{Error, Result};

const AAD_V1: &[u8] = b"lifeline keyring v1";
const AAD_V2: &[u8] = b"lifeline key slot v2";
const KMS: &str = "kms";
const ARGON2ID: &str = "argon2id";
/// Key files hold 256 random bits, so a memory-hard KDF would add cost and no strength (format.md §3.2).
const KEY_FILE_KDF: &str = "hkdf-sha256";
const KEY_FILE_INFO: &[u8] = b"lifeline/v1/key-file";

/// What opens a key slot: a password a person chose, a key file of full-entropy random bytes, or a
/// key-management service that unwraps the slot's key-encryption key.
#[derive(Clone, Copy)]
pub enum Secret<'a> {
    Password(&'a [u8]),
    KeyFile(&'a [u8; 32]),
    Kms(&'a dyn Kms),
}

impl std::fmt::Debug for Secret<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret itself.
        f.write_str(match self {
            Secret::Password(_) => "Secret::Password",
            Secret::KeyFile(_) => "Secret::KeyFile",
            Secret::Kms(_) => "Secret::Kms",
        })
    }
}

/// An external key-management service (a cloud KMS, Vault transit, an HSM through PKCS#11) that
/// wraps and unwraps a slot's key-encryption key, which then never touches the repository's storage
/// in the clear (format.md §3.3). The binary supplies it; this layer runs no programs.
pub trait Kms {
    fn wrap(&self, kek: &[u8; 32]) -> Result<Vec<u8>>;
    fn unwrap(&self, wrapped: &[u8]) -> Result<Vec<u8>>;
    /// What people see in `key list`.
    fn label(&self) -> String;
}

/// A KMS slot's wrapped key-encryption key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KmsWrap {
    pub label: String,
    wrapped: String,
}

/// Argon2id cost parameters, stored per slot so they can be raised later without breaking old slots.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KdfParams {
    pub algorithm: String,
    pub version: u32,
    pub m_cost: u32,
    pub t_cost: u32,
    pub p_cost: u32,
    pub salt: String,
}

impl KdfParams {
    /// 64 MiB, 3 passes: the OWASP-recommended tier for Argon2id, about 0.2 s here.
    fn fresh(secret: Secret<'_>) -> Self {
        // Key files and KMS keys are full-entropy, so they need no memory-hard cost; a KMS slot
        // needs no salt either, because its key-encryption key is random and wrapped, not derived.
        let no_cost = |algorithm: &str, salt: String| KdfParams {
            algorithm: algorithm.into(),
            version: 1,
            m_cost: 0,
            t_cost: 0,
            p_cost: 0,
            salt,
        };
        let salt = || hex::encode(rand::random::<[u8; 16]>());
        match secret {
            Secret::Kms(_) => no_cost(KMS, String::new()),
            Secret::KeyFile(_) => no_cost(KEY_FILE_KDF, salt()),
            Secret::Password(_) => KdfParams {
                algorithm: ARGON2ID.into(),
                version: 19,
                m_cost: 64 * 1024,
                t_cost: 3,
                p_cost: 1,
                salt: salt(),
            },
        }
    }

    /// Whether this slot is opened by `secret`'s kind; the other kind is not even tried.
    fn accepts(&self, secret: Secret<'_>) -> bool {
        match secret {
            Secret::Password(_) => self.algorithm != KEY_FILE_KDF && self.algorithm != KMS,
            Secret::KeyFile(_) => self.algorithm == KEY_FILE_KDF,
            Secret::Kms(_) => self.algorithm == KMS,
        }
    }

    /// The slot's kind as `key list` shows it.
    pub fn kind(&self) -> &'static str {
        match self.algorithm.as_str() {
            KEY_FILE_KDF => "key-file",
            KMS => "kms",
            _ => "password",
        }
    }

    fn derive(&self, secret: Secret<'_>, kms: Option<&KmsWrap>) -> Result<[u8; 32]> {
        let password = match secret {
            Secret::Password(p) => p,
            Secret::KeyFile(key) => return self.derive_from_key_file(key),
            Secret::Kms(service) => {
                let wrap = kms.ok_or_else(|| Error::Format("KMS slot without `kms`".into()))?;
                let wrapped = hex::decode(&wrap.wrapped)
                    .map_err(|_| Error::Format("KMS slot: `wrapped` is not hex".into()))?;
                return service.unwrap(&wrapped)?.try_into().map_err(|_| {
                    Error::Kms(
                        "the KMS command's unwrap printed something other than 32 bytes: is it the key this slot was wrapped with?".into(),
                    )
                });
            }
        };
        if self.algorithm != ARGON2ID || self.version != 19 {
            return Err(Error::Format(format!(
                "key slot uses {} v{}, which this version cannot derive",
                self.algorithm, self.version
            )));
        }
        let salt = hex::decode(&self.salt).map_err(|_| Error::Format("key slot salt".into()))?;
        let params = argon2::Params::new(self.m_cost, self.t_cost, self.p_cost, Some(32))
            .map_err(|e| Error::Format(format!("key slot Argon2 parameters: {e}")))?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut kek = [0u8; 32];
        argon
            .hash_password_into(password, &salt, &mut kek)
            .map_err(|e| Error::Format(format!("Argon2: {e}")))?;
        Ok(kek)
    }

    fn derive_from_key_file(&self, key: &[u8; 32]) -> Result<[u8; 32]> {
        if self.algorithm != KEY_FILE_KDF || self.version != 1 {
            return Err(Error::WrongPassword);
        }
        let salt = hex::decode(&self.salt).map_err(|_| Error::Format("key slot salt".into()))?;
        let mut kek = [0u8; 32];
        hkdf::Hkdf::<sha2::Sha256>::new(Some(&salt), key)
            .expand(KEY_FILE_INFO, &mut kek)
            .map_err(|_| Error::Format("HKDF output length".into()))?;
        Ok(kek)
    }
}

/// What a v2 slot seals: the key of one role (format.md §3.3).
#[derive(Serialize, Deserialize)]
struct SlotKey {
    repository: String,
    role: Role,
    #[serde(with = "serde_bytes")]
    key: [u8; 32],
}

/// A key slot: in v2 one role key wrapped by a password, key file or KMS; in v1 a whole keyring.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeySlot {
    pub version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    pub created: String,
    pub hostname: String,
    pub username: String,
    pub kdf: KdfParams,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms: Option<KmsWrap>,
    nonce: String,
    /// v1: the sealed keyring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    keyring: Option<String>,
    /// v2: the sealed role key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sealed: Option<String>,
}

/// What a slot opened to.
// Made once per open and consumed at once: boxing the keyring would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Opened {
    /// A v1 slot: the whole keyring (boxed: it is far larger than a role key).
    V1(Box<Keyring>),
    /// A v2 slot: one role's key.
    V2 { role: Role, key: [u8; 32] },
}

fn seal(kek: &[u8; 32], aad: &[u8], plain: &[u8]) -> Result<([u8; 12], Vec<u8>)> {
    aead::seal(kek, aad, plain).ok_or_else(|| Error::Format("sealing a key slot".into()))
}

impl KeySlot {
    fn fresh_kek(secret: Secret<'_>) -> Result<(KdfParams, Option<KmsWrap>, [u8; 32])> {
        let kdf = KdfParams::fresh(secret);
        if let Secret::Kms(service) = secret {
            let kek: [u8; 32] = rand::random();
            let wrap = KmsWrap {
                label: service.label(),
                wrapped: hex::encode(service.wrap(&kek)?),
            };
            // A wrap that cannot be unwrapped would be a slot nobody can open: prove it now.
            if service.unwrap(&hex::decode(&wrap.wrapped).unwrap_or_default())? != kek {
                return Err(Error::Invalid(
                    "the KMS command's unwrap did not give back what its wrap was given: no slot was added".into(),
                ));
            }
            return Ok((kdf, Some(wrap), kek));
        }
        let kek = kdf.derive(secret, None)?;
        Ok((kdf, None, kek))
    }

    /// A v2 slot that opens the `role` key `key` of repository `repository` with `secret`.
    pub fn wrap_role(
        repository: &str,
        role: Role,
        key: &[u8; 32],
        secret: Secret<'_>,
    ) -> Result<Self> {
        let (kdf, kms, kek) = Self::fresh_kek(secret)?;
        let mut plain = Vec::new();
        ciborium::into_writer(
            &SlotKey {
                repository: repository.to_string(),
                role,
                key: *key,
            },
            &mut plain,
        )
        .map_err(|e| Error::Format(format!("key slot CBOR: {e}")))?;
        let (nonce, sealed) = seal(&kek, AAD_V2, &plain)?;
        Ok(KeySlot {
            version: 2,
            role: Some(role),
            created: chrono::Utc::now().to_rfc3339(),
            hostname: crate::host::hostname(),
            username: crate::host::username(),
            kdf,
            kms,
            nonce: hex::encode(nonce),
            keyring: None,
            sealed: Some(hex::encode(sealed)),
        })
    }

    /// A v1 slot holding the whole keyring (for repositories not yet migrated).
    pub fn wrap_v1(keyring: &Keyring, secret: Secret<'_>) -> Result<Self> {
        if let Secret::Kms(_) = secret {
            return Err(Error::Invalid(
                "KMS slots need format v2: run `lifeline migrate` first".into(),
            ));
        }
        let (kdf, _, kek) = Self::fresh_kek(secret)?;
        let mut plain = Vec::new();
        ciborium::into_writer(&keyring.to_v1()?, &mut plain)
            .map_err(|e| Error::Format(format!("keyring CBOR: {e}")))?;
        let (nonce, sealed) = seal(&kek, AAD_V1, &plain)?;
        Ok(KeySlot {
            version: 1,
            role: None,
            created: chrono::Utc::now().to_rfc3339(),
            hostname: crate::host::hostname(),
            username: crate::host::username(),
            kdf,
            kms: None,
            nonce: hex::encode(nonce),
            keyring: Some(hex::encode(sealed)),
            sealed: None,
        })
    }

    /// The role this slot opens as (a v1 slot holds everything: an administrator's).
    pub fn role(&self) -> Role {
        self.role.unwrap_or(Role::Admin)
    }

    /// Whether it is worth trying `secret` on this slot (a password is never run through a key
    /// file's KDF, nor the reverse).
    pub fn accepts(&self, secret: Secret<'_>) -> bool {
        self.kdf.accepts(secret)
    }

    /// `Err(WrongPassword)` when this slot does not open with `secret`.
    pub fn unwrap(&self, secret: Secret<'_>, repo_id: &str) -> Result<Opened> {
        let kek = self.kdf.derive(secret, self.kms.as_ref())?;
        let nonce = hex::decode(&self.nonce).map_err(|_| Error::Format("key slot nonce".into()))?;
        if nonce.len() != 12 {
            return Err(Error::Format("key slot nonce length".into()));
        }
        let (sealed, aad) = match (&self.sealed, &self.keyring) {
            (Some(sealed), _) if self.version == 2 => (sealed, AAD_V2),
            (_, Some(keyring)) if self.version == 1 => (keyring, AAD_V1),
            _ => {
                return Err(Error::Format(format!(
                    "key slot version {} is not known to this lifeline",
                    self.version
                )))
            }
        };
        let sealed = hex::decode(sealed).map_err(|_| Error::Format("key slot contents".into()))?;
        let plain = aead::open(&kek, &nonce, aad, &sealed).ok_or(Error::WrongPassword)?;
        // The slot's content is authenticated and the config is not: a config whose id was
        // altered or replaced is the likelier cause, a slot copied from another repository the other.
        let foreign = || {
            Error::corrupt(
                "config",
                format!("its repository id {repo_id} is not the one the key slot that opened with this secret was made for: `config` was altered or replaced (or the slot was copied here from another repository)"),
            )
        };
        if aad == AAD_V1 {
            let v1: V1Keyring = ciborium::from_reader(plain.as_slice())
                .map_err(|e| Error::Format(format!("keyring: {e}")))?;
            if v1.repo_id != repo_id {
                return Err(foreign());
            }
            return Ok(Opened::V1(Box::new(Keyring::from_v1(v1))));
        }
        let key: SlotKey = ciborium::from_reader(plain.as_slice())
            .map_err(|e| Error::Format(format!("key slot: {e}")))?;
        if key.repository != repo_id {
            return Err(foreign());
        }
        if Some(key.role) != self.role {
            return Err(Error::Format(
                "key slot: its sealed role differs from the one it shows (the slot was altered)"
                    .into(),
            ));
        }
        Ok(Opened::V2 {
            role: key.role,
            key: key.key,
        })
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_else(|e| panic!("key slot JSON: {e}"))
    }

    pub fn from_json(bytes: &[u8], key: &str) -> Result<Self> {
        serde_json::from_slice(bytes)
            .map_err(|e| Error::corrupt(key, format!("key slot JSON: {e}")))
    }
}
