//! A pack (format.md §6) read whole: header, trailer length, sealed trailer, blob list, blobs.
//! The first byte picks how the rest is used:
//! - 0: the stored bytes as they are (stops at authentication, but covers the framing);
//! - 1: `u16 trailer length || trailer plaintext || blob bytes`: the trailer is sealed with the
//!   fixed keys, so the trailer decoder and the bounds it drives are reached;
//! - 2: blobs `kind u8 || raw_len u32 || len u16 || payload`: each payload is sealed as the blob
//!   at its offset and the trailer is made to match, so decompression and ID checks are reached.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lifeline_fuzz::keyring;
use lifeline_repo::crypto::{ObjectType, Sealer, TRAILER_COUNTER};
use lifeline_repo::pack::PackContents;
use lifeline_repo::Id;

fn finish(header: &[u8], sealer: &Sealer, mut bytes: Vec<u8>, trailer: &[u8]) -> Vec<u8> {
    let sealed = sealer.seal(TRAILER_COUNTER, header, trailer);
    bytes.extend_from_slice(&sealed);
    bytes.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
    bytes
}

fn pack_type(b: u8) -> ObjectType {
    if b & 0x80 == 0 {
        ObjectType::DataPack
    } else {
        ObjectType::TreePack
    }
}

/// Mode 1: a sealed trailer of the input's choosing.
fn sealed_trailer(mode: u8, rest: &[u8]) -> Option<Vec<u8>> {
    let len = usize::from(u16::from_le_bytes([*rest.first()?, *rest.get(1)?]));
    let trailer = rest.get(2..2 + len.min(rest.len() - 2))?;
    let blobs = &rest[2 + trailer.len()..];
    let (header, sealer) = Sealer::fresh(keyring(), pack_type(mode)).ok()?;
    let header = header.to_bytes();
    let mut bytes = header.to_vec();
    bytes.extend_from_slice(blobs);
    Some(finish(&header, &sealer, bytes, trailer))
}

/// The ID a writer would give a payload's plaintext (where the harness can tell what it is).
fn id_of(payload: &[u8]) -> Id {
    let raw = match payload.split_first() {
        Some((1, rest)) => zstd::bulk::decompress(rest, 1 << 20).unwrap_or_default(),
        Some((_, rest)) => rest.to_vec(),
        None => Vec::new(),
    };
    keyring().chunk_id(&raw)
}

/// Mode 2: blobs sealed where they lie, and the trailer that lists them.
fn sealed_blobs(mode: u8, mut rest: &[u8]) -> Option<Vec<u8>> {
    let (header, sealer) = Sealer::fresh(keyring(), pack_type(mode)).ok()?;
    let header = header.to_bytes();
    let mut bytes = header.to_vec();
    let mut entries: Vec<u8> = Vec::new();
    let mut count = 0u32;
    while rest.len() >= 7 {
        let kind = rest[0];
        let raw_len = &rest[1..5];
        let len = usize::from(u16::from_le_bytes([rest[5], rest[6]])).min(rest.len() - 7);
        let payload = &rest[7..7 + len];
        rest = &rest[7 + len..];
        let id = id_of(payload);
        let mut aad = vec![kind];
        aad.extend_from_slice(&id.0);
        let sealed = sealer.seal(bytes.len() as u64, &aad, payload);
        bytes.extend_from_slice(&sealed);
        entries.push(kind);
        entries.push(payload.first().copied().unwrap_or(0));
        entries.extend_from_slice(&id.0);
        entries.extend_from_slice(raw_len);
        entries.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
        count += 1;
    }
    let mut trailer = count.to_le_bytes().to_vec();
    trailer.extend_from_slice(&entries);
    Some(finish(&header, &sealer, bytes, &trailer))
}

fn blob(kind: u8, payload: &[u8], raw_len: u32) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&raw_len.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u16).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

fuzz_target!(
    init: {
        lifeline_fuzz::write_seeds_if_asked(|| {
            let text = b"a chunk of file content, a chunk of file content, a chunk".to_vec();
            let mut two = vec![2u8];
            for p in lifeline_fuzz::payloads(&text) {
                two.extend(blob(1, &p, text.len() as u32));
            }
            let mut tree = vec![0x82u8];
            tree.extend(blob(2, &lifeline_fuzz::raw_payload(b"\xa1enodes\x80"), 7));
            let mut one = vec![1u8];
            let mut trailer = 1u32.to_le_bytes().to_vec();
            trailer.extend([1u8, 0]);
            trailer.extend([7u8; 32]);
            trailer.extend(5u32.to_le_bytes());
            trailer.extend(22u32.to_le_bytes());
            one.extend((trailer.len() as u16).to_le_bytes());
            one.extend(&trailer);
            one.extend([0u8; 22]);
            let mut zero = vec![0u8];
            zero.extend(sealed_blobs(2, &two[1..]).expect("pack"));
            vec![two, tree, one, zero]
        });
    },
    |data: &[u8]| {
        let Some((&mode, rest)) = data.split_first() else {
            return;
        };
        let bytes = match mode & 3 {
            0 => Some(rest.to_vec()),
            1 => sealed_trailer(mode, rest),
            _ => sealed_blobs(mode, rest),
        };
        let Some(bytes) = bytes else {
            return;
        };
        let id = Id::of_stored(&bytes);
        if let Ok(pack) = PackContents::parse(bytes, keyring(), &id, "fuzz") {
            for entry in &pack.entries {
                let _ = pack.blob(entry, keyring(), "fuzz");
            }
        }
    }
);
