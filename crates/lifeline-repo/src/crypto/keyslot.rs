use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use serde::{Deserialize, Serialize};

use super::keyring::Keyring;
use crate::error::{Error, Result};

const AAD: &[u8] = b"lifeline keyring v1";
const ARGON2ID: &str = "argon2id";
/// Key files hold 256 random bits, so a memory-hard KDF would add cost and no strength (format.md §3.2).
const KEY_FILE_KDF: &str = "hkdf-sha256";
const KEY_FILE_INFO: &[u8] = b"lifeline/v1/key-file";

/// What opens a key slot: a password a person chose, or a key file of full-entropy random bytes.
#[derive(Debug, Clone, Copy)]
pub enum Secret<'a> {
    Password(&'a [u8]),
    KeyFile(&'a [u8; 32]),
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
        if let Secret::KeyFile(_) = secret {
            return KdfParams {
                algorithm: KEY_FILE_KDF.into(),
                version: 1,
                m_cost: 0,
                t_cost: 0,
                p_cost: 0,
                salt: hex::encode(rand::random::<[u8; 16]>()),
            };
        }
        KdfParams {
            algorithm: ARGON2ID.into(),
            version: 19,
            m_cost: 64 * 1024,
            t_cost: 3,
            p_cost: 1,
            salt: hex::encode(rand::random::<[u8; 16]>()),
        }
    }

    /// Whether this slot is opened by `secret`'s kind; the other kind is not even tried.
    fn accepts(&self, secret: Secret<'_>) -> bool {
        match secret {
            Secret::Password(_) => self.algorithm != KEY_FILE_KDF,
            Secret::KeyFile(_) => self.algorithm == KEY_FILE_KDF,
        }
    }

    fn derive(&self, secret: Secret<'_>) -> Result<[u8; 32]> {
        let password = match secret {
            Secret::Password(p) => p,
            Secret::KeyFile(key) => return self.derive_from_key_file(key),
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

/// A password-wrapped copy of the keyring (format.md §3.2).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeySlot {
    pub version: u32,
    pub created: String,
    pub hostname: String,
    pub username: String,
    pub kdf: KdfParams,
    nonce: String,
    keyring: String,
}

impl KeySlot {
    pub fn wrap(keyring: &Keyring, secret: Secret<'_>) -> Result<Self> {
        let kdf = KdfParams::fresh(secret);
        let kek = kdf.derive(secret)?;
        let nonce: [u8; 12] = rand::random();
        let cipher =
            Aes256Gcm::new_from_slice(&kek).map_err(|_| Error::Format("KEK length".into()))?;
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &keyring.to_cbor(),
                    aad: AAD,
                },
            )
            .map_err(|_| Error::Format("sealing the keyring".into()))?;
        Ok(KeySlot {
            version: 1,
            created: chrono::Utc::now().to_rfc3339(),
            hostname: crate::host::hostname(),
            username: crate::host::username(),
            kdf,
            nonce: hex::encode(nonce),
            keyring: hex::encode(sealed),
        })
    }

    /// Whether it is worth trying `secret` on this slot (a password is never run through a key
    /// file's KDF, nor the reverse).
    pub fn accepts(&self, secret: Secret<'_>) -> bool {
        self.kdf.accepts(secret)
    }

    /// `Err(WrongPassword)` when this slot does not open with `secret`.
    pub fn unwrap(&self, secret: Secret<'_>, repo_id: &str) -> Result<Keyring> {
        let kek = self.kdf.derive(secret)?;
        let nonce = hex::decode(&self.nonce).map_err(|_| Error::Format("key slot nonce".into()))?;
        let sealed =
            hex::decode(&self.keyring).map_err(|_| Error::Format("key slot keyring".into()))?;
        if nonce.len() != 12 {
            return Err(Error::Format("key slot nonce length".into()));
        }
        let cipher =
            Aes256Gcm::new_from_slice(&kek).map_err(|_| Error::Format("KEK length".into()))?;
        let plain = cipher
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &sealed,
                    aad: AAD,
                },
            )
            .map_err(|_| Error::WrongPassword)?;
        let keyring = Keyring::from_cbor(&plain)?;
        if keyring.repo_id != repo_id {
            return Err(Error::Format(
                "this key slot belongs to another repository (its keyring names another id)".into(),
            ));
        }
        Ok(keyring)
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_else(|e| panic!("key slot JSON: {e}"))
    }

    pub fn from_json(bytes: &[u8], key: &str) -> Result<Self> {
        serde_json::from_slice(bytes)
            .map_err(|e| Error::corrupt(key, format!("key slot JSON: {e}")))
    }
}
