//! Key objects (`keyring/`, format.md §3.2): plain JSON with sealed sections. The first byte picks
//! which object the rest replaces (0 root, 1 epoch, 2 an added tombstone) and the role whose key
//! loads the keyring (bits 2-3); the object is stored under the name its bytes give it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lifeline_fuzz::{base_storage, keyring, role_key, EPOCH_TAG, REPO_ID};
use lifeline_repo::crypto::Role;
use lifeline_repo::keys::{self, DESTROYED_PREFIX, EPOCH_PREFIX, ROOT_PREFIX};
use lifeline_repo::storage::Storage;
use lifeline_repo::Id;

const ROLES: [Role; 4] = [Role::Admin, Role::Restore, Role::Backup, Role::Audit];

fuzz_target!(
    init: {
        lifeline_fuzz::write_seeds_if_asked(|| {
            let base = base_storage();
            let mut seeds = Vec::new();
            for (which, prefix) in [ROOT_PREFIX, EPOCH_PREFIX].iter().enumerate() {
                for key in base.keys(prefix) {
                    for role in 0..4u8 {
                        let mut seed = vec![which as u8 | role << 2];
                        seed.extend(base.get(&key).expect("key object"));
                        seeds.push(seed);
                    }
                }
            }
            let scratch = base.copy();
            let mut destroyed = keyring().epochs[0].clone();
            destroyed.destroyed = Some("2026-06-01T00:00:00+00:00".into());
            keys::write_tombstone(&scratch, keyring(), &destroyed).expect("tombstone");
            for key in scratch.keys(DESTROYED_PREFIX) {
                let mut seed = vec![2u8];
                seed.extend(scratch.get(&key).expect("tombstone"));
                seeds.push(seed);
            }
            seeds
        });
    },
    |data: &[u8]| {
        let Some((&mode, object)) = data.split_first() else {
            return;
        };
        let storage = base_storage().copy();
        let id = Id::of_stored(object);
        let tag = keys::tag_hex(EPOCH_TAG);
        match mode & 3 {
            0 => {
                storage.clear(ROOT_PREFIX);
                storage.set(&format!("{ROOT_PREFIX}{id}"), object);
            }
            1 => {
                storage.clear(EPOCH_PREFIX);
                storage.set(&format!("{EPOCH_PREFIX}{tag}-{id}"), object);
            }
            _ => storage.set(&format!("{DESTROYED_PREFIX}{tag}-{id}"), object),
        }
        let role = ROLES[usize::from(mode >> 2) & 3];
        let _ = keys::load(&storage, REPO_ID, role, &role_key(role));
        let _ = keys::has_root(&storage);
    }
);
