//! Named objects (format.md §11, WAL segments): the first byte picks the input's use:
//! - 0: the plaintext (`stored-at u64 || payload`), sealed with the fixed keys under a WAL key and
//!   read back with `get_named` (authentication, timestamp, decompression);
//! - 1: the stored bytes as they are;
//! - 2: the key asked for (`check_key`, then the lookup).
#![no_main]

use libfuzzer_sys::fuzz_target;
use lifeline_fuzz::{keyring, repo};
use lifeline_repo::crypto::{ObjectType, Sealer, HEADER_LEN};
use lifeline_repo::storage::Storage;

const KEY: &str = "wal/7000000000000000001/00000001/000000010000000000000003";

fn seal(plain: &[u8]) -> Option<Vec<u8>> {
    let (header, sealer) = Sealer::fresh(keyring(), ObjectType::Named).ok()?;
    let header = header.to_bytes();
    let mut aad = header.to_vec();
    aad.extend_from_slice(KEY.as_bytes());
    let mut out = header.to_vec();
    out.extend_from_slice(&sealer.seal(0, &aad, plain));
    debug_assert!(out.len() >= HEADER_LEN);
    Some(out)
}

fuzz_target!(
    init: {
        lifeline_fuzz::write_seeds_if_asked(|| {
            let segment = vec![0xd1u8; 4096];
            let mut seeds: Vec<Vec<u8>> = lifeline_fuzz::payloads(&segment)
                .into_iter()
                .map(|p| {
                    let mut s = vec![0u8];
                    s.extend(1_767_225_600_000u64.to_le_bytes());
                    s.extend(p);
                    s
                })
                .collect();
            let mut stored = vec![1u8];
            stored.extend(seal(&seeds[0][1..]).expect("seal"));
            seeds.push(stored);
            let mut key = vec![2u8];
            key.extend(KEY.as_bytes());
            seeds.push(key);
            seeds.push(b"\x02config".to_vec());
            seeds
        });
    },
    |data: &[u8]| {
        let (storage, repo) = repo();
        let Some((&mode, rest)) = data.split_first() else {
            return;
        };
        match mode % 3 {
            0 | 1 => {
                let bytes = if mode % 3 == 0 { seal(rest) } else { Some(rest.to_vec()) };
                let Some(bytes) = bytes else {
                    return;
                };
                storage.set(KEY, &bytes);
                let _ = repo.get_named(KEY);
                let _ = repo.named_stored_at(KEY);
                let _ = storage.delete(KEY);
            }
            _ => {
                if let Ok(key) = std::str::from_utf8(rest) {
                    let _ = repo.get_named(key);
                }
            }
        }
    }
);
