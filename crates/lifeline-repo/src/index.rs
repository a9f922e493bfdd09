//! The index: which pack holds each blob (format.md §7). On disk a sorted binary table per backup; in
//! memory the union of all of them, about 60 bytes per blob.

use std::collections::{HashMap, HashSet};

use crate::crypto::{open_object, seal_object, Keyring, ObjectType};
use crate::error::{Error, Result};
use crate::pack::{BlobEntry, BlobKind, PackBlobs};
use crate::Id;

const ENTRY_LEN: usize = 50;

/// Where a blob is, with its pack named by ordinal into [`Index::packs`].
#[derive(Debug, Clone, Copy)]
pub struct Location {
    pub pack: u32,
    pub entry: BlobEntry,
}

#[derive(Default)]
pub struct Index {
    packs: Vec<Id>,
    pack_ordinals: HashMap<Id, u32>,
    blobs: HashMap<Id, Location>,
    /// Ordinals of packs a prune mark names (format.md §13).
    doomed: HashSet<u32>,
}

impl Index {
    pub fn add_pack(&mut self, pack: Id, entries: &[BlobEntry]) {
        self.add(pack, entries, false);
    }

    /// A pack a prune mark names: its blobs are readable, but a copy elsewhere is preferred and
    /// writers do not rely on it.
    pub fn add_doomed_pack(&mut self, pack: Id, entries: &[BlobEntry]) {
        self.add(pack, entries, true);
    }

    fn add(&mut self, pack: Id, entries: &[BlobEntry], doomed: bool) {
        let ordinal = *self.pack_ordinals.entry(pack).or_insert_with(|| {
            self.packs.push(pack);
            (self.packs.len() - 1) as u32
        });
        if doomed {
            self.doomed.insert(ordinal);
        }
        let doomed_set = &self.doomed;
        for e in entries {
            let here = Location {
                pack: ordinal,
                entry: *e,
            };
            self.blobs
                .entry(e.id)
                .and_modify(|loc| {
                    if doomed_set.contains(&loc.pack) && !doomed_set.contains(&ordinal) {
                        *loc = here;
                    }
                })
                .or_insert(here);
        }
    }

    /// Whether the blob is stored in a pack no prune mark names: what a writer may deduplicate
    /// against (format.md §13).
    pub fn contains_live(&self, id: &Id) -> bool {
        self.blobs
            .get(id)
            .is_some_and(|loc| !self.doomed.contains(&loc.pack))
    }

    pub fn is_doomed(&self, pack: &Id) -> bool {
        self.pack_ordinals
            .get(pack)
            .is_some_and(|o| self.doomed.contains(o))
    }

    pub fn get(&self, id: &Id) -> Option<(Id, BlobEntry)> {
        self.blobs
            .get(id)
            .map(|loc| (self.packs[loc.pack as usize], loc.entry))
    }

    pub fn contains(&self, id: &Id) -> bool {
        self.blobs.contains_key(id)
    }

    pub fn has_pack(&self, pack: &Id) -> bool {
        self.pack_ordinals.contains_key(pack)
    }

    pub fn packs(&self) -> &[Id] {
        &self.packs
    }

    pub fn blob_count(&self) -> usize {
        self.blobs.len()
    }

    pub fn blob_ids(&self) -> impl Iterator<Item = &Id> {
        self.blobs.keys()
    }

    /// Blobs per pack, for verification that walks packs.
    pub fn blobs_by_pack(&self) -> HashMap<Id, Vec<BlobEntry>> {
        let mut out: HashMap<Id, Vec<BlobEntry>> = HashMap::new();
        for loc in self.blobs.values() {
            out.entry(self.packs[loc.pack as usize])
                .or_default()
                .push(loc.entry);
        }
        out
    }
}

/// Encode the blobs of some packs as one index object's plaintext. Entries may be borrowed, so a
/// large merged index is written without copying them.
pub fn encode<E: AsRef<[BlobEntry]>>(packs: &[(Id, E)]) -> Vec<u8> {
    let mut rows: Vec<(u32, &BlobEntry)> = packs
        .iter()
        .enumerate()
        .flat_map(|(i, (_, entries))| entries.as_ref().iter().map(move |e| (i as u32, e)))
        .collect();
    rows.sort_by_key(|r| r.1.id);
    let mut out = Vec::with_capacity(12 + packs.len() * 32 + rows.len() * ENTRY_LEN);
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&(packs.len() as u32).to_le_bytes());
    out.extend_from_slice(&(rows.len() as u32).to_le_bytes());
    for (id, _) in packs {
        out.extend_from_slice(&id.0);
    }
    for (pack, e) in rows {
        out.extend_from_slice(&e.id.0);
        out.push(e.kind as u8);
        out.push(e.compression);
        out.extend_from_slice(&pack.to_le_bytes());
        out.extend_from_slice(&e.offset.to_le_bytes());
        out.extend_from_slice(&e.raw_len.to_le_bytes());
        out.extend_from_slice(&e.sealed_len.to_le_bytes());
    }
    out
}

/// Decode one index object's plaintext into (pack, blobs) groups.
pub fn decode(plain: &[u8], key: &str) -> Result<Vec<PackBlobs>> {
    let bad = |d: &str| Error::corrupt(key, format!("index: {d}"));
    let u32_at = |at: usize| -> Result<u32> {
        plain
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| bad("truncated"))
    };
    if u32_at(0)? != 1 {
        return Err(Error::Format(format!(
            "{key}: index version {} is unknown",
            u32_at(0)?
        )));
    }
    let (pack_count, entry_count) = (u32_at(4)? as usize, u32_at(8)? as usize);
    let expected = 12 + pack_count * 32 + entry_count * ENTRY_LEN;
    if plain.len() != expected {
        return Err(bad("length does not match its counts"));
    }
    let mut packs: Vec<PackBlobs> = plain[12..12 + pack_count * 32]
        .chunks_exact(32)
        .map(|c| {
            let mut id = [0u8; 32];
            id.copy_from_slice(c);
            (Id(id), Vec::new())
        })
        .collect();
    for rec in plain[12 + pack_count * 32..].chunks_exact(ENTRY_LEN) {
        let mut id = [0u8; 32];
        id.copy_from_slice(&rec[..32]);
        let kind = BlobKind::from_byte(rec[32]).ok_or_else(|| bad("unknown blob kind"))?;
        let field =
            |at: usize| u32::from_le_bytes([rec[at], rec[at + 1], rec[at + 2], rec[at + 3]]);
        let pack = field(34) as usize;
        let entry = BlobEntry {
            id: Id(id),
            kind,
            compression: rec[33],
            offset: field(38),
            raw_len: field(42),
            sealed_len: field(46),
        };
        packs
            .get_mut(pack)
            .ok_or_else(|| bad("entry names a pack that is not listed"))?
            .1
            .push(entry);
    }
    Ok(packs)
}

pub fn seal<E: AsRef<[BlobEntry]>>(keyring: &Keyring, packs: &[(Id, E)]) -> Result<Vec<u8>> {
    // Each stage is dropped before the next is made: a merged index is tens of megabytes.
    let payload = crate::payload::encode(&encode(packs), 3);
    seal_object(keyring, ObjectType::Index, &payload)
}

pub fn open(keyring: &Keyring, bytes: &[u8], key: &str) -> Result<Vec<PackBlobs>> {
    let payload = open_object(keyring, ObjectType::Index, bytes, key)?;
    decode(&crate::payload::decode_any(&payload, key)?, key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(seed: u8, offset: u32) -> BlobEntry {
        BlobEntry {
            id: Id([seed; 32]),
            kind: if seed % 2 == 0 {
                BlobKind::Data
            } else {
                BlobKind::Tree
            },
            compression: seed % 2,
            offset,
            raw_len: u32::from(seed) * 7,
            sealed_len: u32::from(seed) * 5 + 17,
        }
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(groups in proptest::collection::vec(proptest::collection::btree_set(any::<u8>(), 0..20), 0..6)) {
            let packs: Vec<PackBlobs> = groups.iter().enumerate().map(|(p, seeds)| {
                (Id([p as u8 + 100; 32]), seeds.iter().map(|&s| entry(s, u32::from(s) * 3)).collect())
            }).collect();
            let decoded = decode(&encode(&packs), "t").expect("decode");
            prop_assert_eq!(decoded.len(), packs.len());
            for ((a_id, a), (b_id, b)) in packs.iter().zip(&decoded) {
                prop_assert_eq!(a_id, b_id);
                let mut a = a.clone();
                let mut b = b.clone();
                a.sort_by_key(|e| e.id);
                b.sort_by_key(|e| e.id);
                prop_assert_eq!(a, b);
            }
        }
    }

    #[test]
    fn a_copy_in_a_live_pack_is_preferred_to_one_in_a_doomed_pack() {
        let (doomed, live) = (Id([7; 32]), Id([8; 32]));
        let mut index = Index::default();
        index.add_doomed_pack(doomed, &[entry(1, 48), entry(2, 148)]);
        assert!(index.contains(&Id([1; 32])));
        assert!(!index.contains_live(&Id([1; 32])), "only in a doomed pack");
        index.add_pack(live, &[entry(1, 48)]);
        assert!(index.contains_live(&Id([1; 32])));
        assert_eq!(index.get(&Id([1; 32])).map(|(p, _)| p), Some(live));
        assert!(!index.contains_live(&Id([2; 32])));
        assert!(index.is_doomed(&doomed) && !index.is_doomed(&live));
    }

    #[test]
    fn truncated_index_is_reported_as_damage() {
        let bytes = encode(&[(Id([1; 32]), vec![entry(3, 48)])]);
        let err = decode(&bytes[..bytes.len() - 1], "index/x").expect_err("truncated");
        assert!(err.to_string().contains("index/x"));
    }
}
