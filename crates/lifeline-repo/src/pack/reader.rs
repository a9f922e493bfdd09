use super::{aad, decode_trailer, BlobEntry};
use crate::crypto::{Header, Keyring, Sealer, HEADER_LEN, TRAILER_COUNTER};
use crate::error::{Error, Result};
use crate::storage::Storage;
use crate::Id;

/// Read a pack's blob list from its header and trailer alone (two small ranged reads).
pub fn read_trailer(
    storage: &dyn Storage,
    keyring: &Keyring,
    key: &str,
    size: u64,
) -> Result<Vec<BlobEntry>> {
    if size < (HEADER_LEN + 4) as u64 {
        return Err(Error::corrupt(key, "too short to be a pack"));
    }
    let header_bytes = storage.get_range(key, 0, HEADER_LEN as u64)?;
    let header = Header::parse(&header_bytes, key)?;
    let len_bytes = storage.get_range(key, size - 4, 4)?;
    let trailer_len = u64::from(u32::from_le_bytes([
        len_bytes[0],
        len_bytes[1],
        len_bytes[2],
        len_bytes[3],
    ]));
    if trailer_len + 4 + HEADER_LEN as u64 > size {
        return Err(Error::corrupt(key, "trailer length exceeds the pack"));
    }
    let sealed = storage.get_range(key, size - 4 - trailer_len, trailer_len)?;
    let sealer = Sealer::for_object(keyring, &header, key)?;
    let plain = sealer.open(TRAILER_COUNTER, &header_bytes, &sealed, key)?;
    decode_trailer(&plain, HEADER_LEN as u32, key)
}

/// A whole pack, verified: its name, its trailer, and the sealer to open its blobs.
pub struct PackContents {
    pub bytes: Vec<u8>,
    pub entries: Vec<BlobEntry>,
    pub sealer: Sealer,
}

impl PackContents {
    pub fn parse(bytes: Vec<u8>, keyring: &Keyring, id: &Id, key: &str) -> Result<Self> {
        if Id::of_stored(&bytes) != *id {
            return Err(Error::corrupt(
                key,
                "its bytes do not hash to its name (altered or truncated)",
            ));
        }
        let header = Header::parse(&bytes, key)?;
        if bytes.len() < HEADER_LEN + 4 {
            return Err(Error::corrupt(key, "too short to be a pack"));
        }
        let end = bytes.len() - 4;
        let trailer_len =
            u32::from_le_bytes([bytes[end], bytes[end + 1], bytes[end + 2], bytes[end + 3]])
                as usize;
        if trailer_len + HEADER_LEN > end {
            return Err(Error::corrupt(key, "trailer length exceeds the pack"));
        }
        let sealer = Sealer::for_object(keyring, &header, key)?;
        let plain = sealer.open(
            TRAILER_COUNTER,
            &bytes[..HEADER_LEN],
            &bytes[end - trailer_len..end],
            key,
        )?;
        let entries = decode_trailer(&plain, HEADER_LEN as u32, key)?;
        if entries
            .last()
            .is_some_and(|e| (e.offset + e.sealed_len) as usize != end - trailer_len)
        {
            return Err(Error::corrupt(
                key,
                "trailer does not account for the pack's bytes",
            ));
        }
        Ok(PackContents {
            bytes,
            entries,
            sealer,
        })
    }

    /// Decrypt, decompress and verify one blob of this pack.
    pub fn blob(&self, entry: &BlobEntry, keyring: &Keyring, key: &str) -> Result<Vec<u8>> {
        let start = entry.offset as usize;
        let sealed = &self.bytes[start..start + entry.sealed_len as usize];
        open_blob(&self.sealer, keyring, entry, sealed, key)
    }
}

/// Open one sealed blob and check that its content hashes to its ID.
pub fn open_blob(
    sealer: &Sealer,
    keyring: &Keyring,
    entry: &BlobEntry,
    sealed: &[u8],
    key: &str,
) -> Result<Vec<u8>> {
    let payload = sealer.open(
        u64::from(entry.offset),
        &aad(entry.kind, &entry.id),
        sealed,
        key,
    )?;
    let raw = crate::payload::decode(&payload, entry.raw_len as usize, key)?;
    if raw.len() != entry.raw_len as usize || keyring.chunk_id(&raw) != entry.id {
        return Err(Error::corrupt(
            key,
            format!("blob {} does not match its ID", entry.id.short()),
        ));
    }
    Ok(raw)
}
