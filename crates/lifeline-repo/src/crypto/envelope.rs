use aes_gcm::aead::{Aead, AeadInPlace, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use sha2::Sha256;

use super::keyring::Keyring;
use crate::error::{Error, Result};

pub const HEADER_LEN: usize = 48;
const MAGIC: &[u8; 8] = b"LLREPO\0\x01";
const SCHEME_AES_GCM_HKDF: u8 = 1;
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
            _ => return None,
        })
    }
}

/// The 48-byte header every encrypted object starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub object_type: ObjectType,
    pub epoch: u32,
    pub salt: [u8; 32],
}

impl Header {
    pub fn new(object_type: ObjectType, epoch: u32) -> Self {
        Header {
            object_type,
            epoch,
            salt: rand::random(),
        }
    }

    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..8].copy_from_slice(MAGIC);
        out[8] = SCHEME_AES_GCM_HKDF;
        out[9] = self.object_type as u8;
        out[12..16].copy_from_slice(&self.epoch.to_le_bytes());
        out[16..].copy_from_slice(&self.salt);
        out
    }

    pub fn parse(bytes: &[u8], key: &str) -> Result<Self> {
        if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC {
            return Err(Error::corrupt(key, "not a lifeline object (bad magic)"));
        }
        if bytes[8] != SCHEME_AES_GCM_HKDF {
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

impl Sealer {
    pub fn new(keyring: &Keyring, header: &Header) -> Result<Self> {
        let epoch = keyring.epoch(header.epoch)?;
        let ikm = match header.object_type {
            ObjectType::DataPack | ObjectType::Named => &epoch.data_key,
            _ => &epoch.meta_key,
        };
        let hk = Hkdf::<Sha256>::new(Some(&header.salt), ikm);
        let mut subkey = [0u8; 32];
        let mut info = b"lifeline/v1/".to_vec();
        info.push(header.object_type as u8);
        hk.expand(&info, &mut subkey)
            .map_err(|_| Error::Format("HKDF output length".into()))?;
        let cipher = Aes256Gcm::new_from_slice(&subkey)
            .map_err(|_| Error::Format("AES key length".into()))?;
        Ok(Sealer { cipher })
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

/// Seal a whole single-message object (index, snapshot): header || AES-GCM(counter 0, aad = header).
pub fn seal_object(
    keyring: &Keyring,
    object_type: ObjectType,
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    let header = Header::new(object_type, keyring.current_epoch());
    let header_bytes = header.to_bytes();
    let sealer = Sealer::new(keyring, &header)?;
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
    let header = Header::parse(bytes, key)?;
    if header.object_type != expected {
        return Err(Error::corrupt(
            key,
            format!("holds a {:?}, expected a {expected:?}", header.object_type),
        ));
    }
    let sealer = Sealer::new(keyring, &header)?;
    sealer.open(0, &bytes[..HEADER_LEN], &bytes[HEADER_LEN..], key)
}
