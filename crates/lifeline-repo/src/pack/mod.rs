//! Packs: many sealed blobs in one object, with an encrypted trailer that lists them (format.md §6).

mod reader;
mod writer;

pub use reader::{open_blob, read_trailer, PackContents};
pub use writer::PackWriter;

use crate::error::{Error, Result};
use crate::Id;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlobKind {
    Data = 1,
    Tree = 2,
}

impl BlobKind {
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(BlobKind::Data),
            2 => Some(BlobKind::Tree),
            _ => None,
        }
    }
}

/// Where one blob sits in its pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobEntry {
    pub id: Id,
    pub kind: BlobKind,
    pub compression: u8,
    pub offset: u32,
    pub raw_len: u32,
    pub sealed_len: u32,
}

/// A pack and the blobs it holds: the unit indexes are made of.
pub type PackBlobs = (Id, Vec<BlobEntry>);

pub const TRAILER_ENTRY_LEN: usize = 42;

pub(crate) fn aad(kind: BlobKind, id: &Id) -> [u8; 33] {
    let mut aad = [0u8; 33];
    aad[0] = kind as u8;
    aad[1..].copy_from_slice(&id.0);
    aad
}

fn encode_trailer(entries: &[BlobEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + entries.len() * TRAILER_ENTRY_LEN);
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        out.push(e.kind as u8);
        out.push(e.compression);
        out.extend_from_slice(&e.id.0);
        out.extend_from_slice(&e.raw_len.to_le_bytes());
        out.extend_from_slice(&e.sealed_len.to_le_bytes());
    }
    out
}

fn decode_trailer(plain: &[u8], first_offset: u32, key: &str) -> Result<Vec<BlobEntry>> {
    let bad = |d: &str| Error::corrupt(key, format!("pack trailer: {d}"));
    let count = plain
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or_else(|| bad("too short"))?;
    if plain.len() != 4 + count * TRAILER_ENTRY_LEN {
        return Err(bad("length does not match its count"));
    }
    let mut offset = first_offset;
    let mut out = Vec::with_capacity(count);
    for rec in plain[4..].chunks_exact(TRAILER_ENTRY_LEN) {
        let kind = BlobKind::from_byte(rec[0]).ok_or_else(|| bad("unknown blob kind"))?;
        let mut id = [0u8; 32];
        id.copy_from_slice(&rec[2..34]);
        let raw_len = u32::from_le_bytes([rec[34], rec[35], rec[36], rec[37]]);
        let sealed_len = u32::from_le_bytes([rec[38], rec[39], rec[40], rec[41]]);
        out.push(BlobEntry {
            id: Id(id),
            kind,
            compression: rec[1],
            offset,
            raw_len,
            sealed_len,
        });
        offset = offset
            .checked_add(sealed_len)
            .ok_or_else(|| bad("blob offsets overflow"))?;
    }
    Ok(out)
}

/// The stored size of a pack holding `entries`: header, blobs, sealed trailer, trailer length.
pub fn stored_size(entries: &[BlobEntry]) -> u64 {
    let blobs: u64 = entries.iter().map(|e| u64::from(e.sealed_len)).sum();
    let trailer = 4 + TRAILER_ENTRY_LEN as u64 * entries.len() as u64 + 16;
    crate::crypto::HEADER_LEN as u64 + blobs + trailer + 4
}

pub fn pack_key(id: &Id) -> String {
    let hex = id.to_hex();
    format!("data/{}/{}", &hex[..2], hex)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{Keyring, ObjectType};

    #[test]
    fn stored_size_is_the_size_of_the_finished_pack() {
        let keyring = Keyring::generate("0123");
        let mut pack = PackWriter::new(&keyring, ObjectType::DataPack, 1 << 20).expect("pack");
        for (i, len) in [0usize, 1, 700, 5000].iter().enumerate() {
            let payload = crate::payload::encode(&vec![i as u8; *len], 3);
            pack.add(BlobKind::Data, Id([i as u8; 32]), &payload, *len as u32);
        }
        let (bytes, _, entries) = pack.finish();
        assert_eq!(stored_size(&entries), bytes.len() as u64);
    }
}
