//! Index files (format.md §7): the payload (compression byte, then the plaintext) is sealed with
//! the fixed keys and opened by `index::open` (decompression of a frame of unknown size, then the
//! decoder); the bytes are also given to the decoder as plaintext.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lifeline_fuzz::keyring;
use lifeline_repo::crypto::{seal_object, ObjectType};
use lifeline_repo::index;
use lifeline_repo::pack::{BlobEntry, BlobKind};
use lifeline_repo::Id;

fuzz_target!(
    init: {
        lifeline_fuzz::write_seeds_if_asked(|| {
            let entry = |seed: u8, offset: u32| BlobEntry {
                id: Id([seed; 32]),
                kind: if seed % 2 == 0 { BlobKind::Data } else { BlobKind::Tree },
                compression: 1,
                offset,
                raw_len: 1000,
                sealed_len: 500,
            };
            let plain = index::encode(&[
                (Id([1; 32]), vec![entry(3, 48), entry(4, 548)]),
                (Id([2; 32]), vec![entry(5, 48)]),
            ]);
            let mut seeds = lifeline_fuzz::payloads(&plain);
            seeds.push(lifeline_fuzz::raw_payload(&index::encode::<Vec<BlobEntry>>(&[])));
            seeds
        });
    },
    |data: &[u8]| {
        let _ = index::decode(data, "fuzz");
        if let Ok(sealed) = seal_object(keyring(), ObjectType::Index, data) {
            if let Ok(packs) = index::open(keyring(), &sealed, "fuzz") {
                // What decodes encodes again and decodes to the same blobs.
                let again = index::decode(&index::encode(&packs), "again").expect("re-decode");
                let count = |p: &[(Id, Vec<BlobEntry>)]| p.iter().map(|(_, e)| e.len()).sum::<usize>();
                assert_eq!(count(&again), count(&packs));
            }
        }
    }
);
