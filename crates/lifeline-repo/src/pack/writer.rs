use super::{aad, encode_trailer, BlobEntry, BlobKind};
use crate::crypto::Keyring;
use crate::crypto::{ObjectType, Sealer, HEADER_LEN, TRAILER_COUNTER};
use crate::error::Result;
use crate::Id;

/// Builds one pack in memory. Blobs are sealed as they are added, so the pack is ready to upload the
/// moment it is finished.
pub struct PackWriter {
    header: [u8; HEADER_LEN],
    sealer: Sealer,
    buf: Vec<u8>,
    entries: Vec<BlobEntry>,
}

impl PackWriter {
    pub fn new(keyring: &Keyring, object_type: ObjectType, capacity: usize) -> Result<Self> {
        let (header, sealer) = Sealer::fresh(keyring, object_type)?;
        let header = header.to_bytes();
        let mut buf = Vec::with_capacity(capacity + (1 << 20));
        buf.extend_from_slice(&header);
        Ok(PackWriter {
            header,
            sealer,
            buf,
            entries: Vec::new(),
        })
    }

    /// Seal `payload` (an encoded blob, format.md §5) into the pack and return where it went.
    pub fn add(&mut self, kind: BlobKind, id: Id, payload: &[u8], raw_len: u32) -> BlobEntry {
        let offset = self.buf.len() as u32;
        let sealed = self
            .sealer
            .seal(u64::from(offset), &aad(kind, &id), payload);
        self.buf.extend_from_slice(&sealed);
        let entry = BlobEntry {
            id,
            kind,
            compression: crate::payload::compression(payload),
            offset,
            raw_len,
            sealed_len: sealed.len() as u32,
        };
        self.entries.push(entry);
        entry
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The finished pack's bytes, its object ID, and its blobs.
    pub fn finish(mut self) -> (Vec<u8>, Id, Vec<BlobEntry>) {
        let trailer = self.sealer.seal(
            TRAILER_COUNTER,
            &self.header,
            &encode_trailer(&self.entries),
        );
        self.buf.extend_from_slice(&trailer);
        self.buf
            .extend_from_slice(&(trailer.len() as u32).to_le_bytes());
        let id = Id::of_stored(&self.buf);
        (self.buf, id, self.entries)
    }
}
