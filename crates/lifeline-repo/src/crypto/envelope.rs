use aes_gcm::aead::{Aead, AeadInPlace, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use sha2::Sha256;

use super::keyring::Keyring;
use super::sealed_to;
use crate::error::{Error, Result};

pub const HEADER_LEN: usize = 48;
const MAGIC: &[u8; 8] = b"LLREPO\0\x01";
const SCHEME_AES_GCM_HKDF: u8 = 1;
/// Sealed to an epoch's public key by a credential that holds no key for the type (format.md §5).
const SCHEME_SEALED_TO: u8 = 2;
/// Counter reserved for a pack's trailer, so it can never collide with a blob's nonce.
pub const TRAILER_COUNTER: u64 = u64::MAX;

/// What an encrypted object holds; it selects the key role and the HKDF info (format.md §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectType {
    Index = 1,
    Snapshot = 2,
    DataPack = 3,
    TreePack = 4,
    /// A whole file under a caller-chosen key, outside packs (format.md §11).
    Named = 5,
    /// A hold, verification or prune record (format.md §12).
    Record = 6,
    /// The sealed body of an audit record (format.md §14).
    Audit = 7,
    /// A prune mark in v2, under the index key so write-only writers can honour it (format.md §12).
    Mark = 8,
}

impl ObjectType {
    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            1 => ObjectType::Index,
            2 => ObjectType::Snapshot,
            3 => ObjectType::DataPack,
            4 => ObjectType::TreePack,
            5 => ObjectType::Named,
            6 => ObjectType::Record,
            7 => ObjectType::Audit,
            8 => ObjectType::Mark,
            _ => return None,
        })
    }
}

/// The 48-byte header every encrypted object starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// 1: HKDF from the epoch's key for the type; 2: sealed to the epoch's public key.
    pub scheme: u8,
    pub object_type: ObjectType,
    /// The epoch's tag (format.md §3.2).
    pub epoch: u32,
    /// Scheme 1: a random salt; scheme 2: the writer's ephemeral public key.
    pub salt: [u8; 32],
}

impl Header {
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..8].copy_from_slice(MAGIC);
        out[8] = self.scheme;
        out[9] = self.object_type as u8;
        out[12..16].copy_from_slice(&self.epoch.to_le_bytes());
        out[16..].copy_from_slice(&self.salt);
        out
    }

    pub fn parse(bytes: &[u8], key: &str) -> Result<Self> {
        if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC {
            return Err(Error::corrupt(key, "not a lifeline object (bad magic)"));
        }
        if bytes[8] != SCHEME_AES_GCM_HKDF && bytes[8] != SCHEME_SEALED_TO {
            return Err(Error::Format(format!(
                "{key}: encryption scheme {} is not known to this version",
                bytes[8]
            )));
        }
        let object_type = ObjectType::from_byte(bytes[9])
            .ok_or_else(|| Error::corrupt(key, format!("unknown object type {}", bytes[9])))?;
        let mut epoch = [0u8; 4];
        epoch.copy_from_slice(&bytes[12..16]);
        let mut salt = [0u8; 32];
        salt.copy_from_slice(&bytes[16..HEADER_LEN]);
        Ok(Header {
            scheme: bytes[8],
            object_type,
            epoch: u32::from_le_bytes(epoch),
            salt,
        })
    }
}

/// AES-256-GCM under one object's HKDF subkey, with counter nonces.
pub struct Sealer {
    cipher: Aes256Gcm,
}

fn nonce(counter: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_be_bytes());
    n
}

fn scheme1_subkey(ikm: &[u8; 32], header: &Header) -> [u8; 32] {
    let hk = Hkdf::<Sha256>::new(Some(&header.salt), ikm);
    let mut subkey = [0u8; 32];
    let mut info = b"lifeline/v1/".to_vec();
    info.push(header.object_type as u8);
    hk.expand(&info, &mut subkey)
        // 32 bytes is far below HKDF-SHA256's limit of 255 blocks.
        .unwrap_or_else(|_| panic!("HKDF refused a 32-byte output"));
    subkey
}

impl Sealer {
    /// For a stored object whose header is `header`: `key` names the object in errors.
    pub fn for_object(keyring: &Keyring, header: &Header, key: &str) -> Result<Self> {
        let epoch = keyring.epoch(header.epoch, key)?;
        let t = header.object_type;
        let shredded = || Error::Shredded {
            key: key.to_string(),
            epoch: epoch.epoch,
        };
        let subkey = if header.scheme == SCHEME_SEALED_TO {
            let secret = match epoch.recipient_for(t).1 {
                Some(secret) => secret,
                None if epoch.destroyed.is_some() => return Err(shredded()),
                None => return Err(permission(keyring, t)),
            };
            sealed_to::open_from(secret, &header.salt, t as u8, key)?
        } else {
            let ikm = match epoch.key_for(t) {
                Some(ikm) => ikm,
                None if epoch.destroyed.is_some() => return Err(shredded()),
                None => return Err(permission(keyring, t)),
            };
            scheme1_subkey(ikm, header)
        };
        Ok(Self::from_subkey(&subkey))
    }

    /// For a new object of `object_type` under the current epoch: scheme 1 when this credential
    /// holds the type's key, scheme 2 (sealed to the epoch's public key) when it does not.
    pub fn fresh(keyring: &Keyring, object_type: ObjectType) -> Result<(Header, Self)> {
        let epoch = keyring.current()?;
        if let Some(ikm) = epoch.key_for(object_type) {
            let header = Header {
                scheme: SCHEME_AES_GCM_HKDF,
                object_type,
                epoch: epoch.tag,
                salt: rand::random(),
            };
            let subkey = scheme1_subkey(ikm, &header);
            return Ok((header, Self::from_subkey(&subkey)));
        }
        let recipient = epoch
            .recipient_for(object_type)
            .0
            .ok_or_else(|| permission(keyring, object_type))?;
        let (ephemeral, subkey) = sealed_to::seal_to(recipient, object_type as u8)?;
        let header = Header {
            scheme: SCHEME_SEALED_TO,
            object_type,
            epoch: epoch.tag,
            salt: ephemeral,
        };
        Ok((header, Self::from_subkey(&subkey)))
    }

    fn from_subkey(subkey: &[u8; 32]) -> Self {
        Sealer {
            cipher: Aes256Gcm::new(subkey.into()),
        }
    }

    pub fn seal(&self, counter: u64, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        self.cipher
            .encrypt(
                Nonce::from_slice(&nonce(counter)),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            // aes-gcm fails only for messages beyond GCM's length limit, which chunks never reach.
            .unwrap_or_else(|_| panic!("AES-GCM refused a {} byte message", plaintext.len()))
    }

    /// Seal `buf[start..]` where it lies and append the tag, so a large object is never copied.
    pub fn seal_in_place(&self, counter: u64, aad: &[u8], buf: &mut Vec<u8>, start: usize) {
        let tag = self
            .cipher
            .encrypt_in_place_detached(Nonce::from_slice(&nonce(counter)), aad, &mut buf[start..])
            // As in `seal`: only messages beyond GCM's length limit are refused.
            .unwrap_or_else(|_| panic!("AES-GCM refused a {} byte message", buf.len() - start));
        buf.extend_from_slice(&tag);
    }

    pub fn open(&self, counter: u64, aad: &[u8], sealed: &[u8], key: &str) -> Result<Vec<u8>> {
        self.cipher
            .decrypt(
                Nonce::from_slice(&nonce(counter)),
                Payload { msg: sealed, aad },
            )
            .map_err(|_| Error::corrupt(key, "authentication failed (the bytes were altered)"))
    }
}

/// Why this credential cannot seal or open an object of type `t`.
fn permission(keyring: &Keyring, t: ObjectType) -> Error {
    use super::Role::*;
    let needs: &[super::Role] = match t {
        ObjectType::Index | ObjectType::Mark => &[Admin, Restore, Backup],
        ObjectType::Record | ObjectType::Audit => &[Admin, Restore, Audit],
        _ => &[Admin, Restore],
    };
    let what = match t {
        ObjectType::Index | ObjectType::Mark => "the index",
        ObjectType::Record | ObjectType::Audit => "records and the audit trail",
        ObjectType::DataPack | ObjectType::Named => "backed-up data",
        ObjectType::Snapshot | ObjectType::TreePack => "snapshots and trees",
    };
    keyring
        .require(needs, &format!("sealing or reading {what}"))
        .err()
        .unwrap_or_else(|| {
            Error::Format(format!(
                "the current key epoch holds no key for {what}: it was made for another role"
            ))
        })
}

/// Seal a whole single-message object (index, snapshot): header || AES-GCM(counter 0, aad = header).
pub fn seal_object(
    keyring: &Keyring,
    object_type: ObjectType,
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    let (header, sealer) = Sealer::fresh(keyring, object_type)?;
    let header_bytes = header.to_bytes();
    // One buffer, sealed where it lies: a merged index of hundreds of thousands of entries is not
    // held twice.
    let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + 16);
    out.extend_from_slice(&header_bytes);
    out.extend_from_slice(plaintext);
    sealer.seal_in_place(0, &header_bytes, &mut out, HEADER_LEN);
    Ok(out)
}

pub fn open_object(
    keyring: &Keyring,
    expected: ObjectType,
    bytes: &[u8],
    key: &str,
) -> Result<Vec<u8>> {
    open_object_of(keyring, &[expected], bytes, key)
}

/// Like [`open_object`], for objects that may be of any type in `expected` (a prune mark is type 6 in
/// v1 and type 8 in v2).
pub fn open_object_of(
    keyring: &Keyring,
    expected: &[ObjectType],
    bytes: &[u8],
    key: &str,
) -> Result<Vec<u8>> {
    let header = Header::parse(bytes, key)?;
    if !expected.contains(&header.object_type) {
        return Err(Error::corrupt(
            key,
            format!(
                "holds a {:?}, expected a {:?}",
                header.object_type, expected[0]
            ),
        ));
    }
    let sealer = Sealer::for_object(keyring, &header, key)?;
    sealer.open(0, &bytes[..HEADER_LEN], &bytes[HEADER_LEN..], key)
}
