//! Key slots (`keys/<id>`, format.md §3.3): plain JSON. Parsed, and opened with the fixed key file
//! (only key-file slots: a password would run Argon2 at whatever cost the slot names).
#![no_main]

use libfuzzer_sys::fuzz_target;
use lifeline_fuzz::{role_key, KEY_FILE, REPO_ID};
use lifeline_repo::crypto::{KeySlot, Role, Secret};

fuzz_target!(
    init: {
        lifeline_fuzz::write_seeds_if_asked(|| {
            let mut seeds: Vec<Vec<u8>> = [Role::Admin, Role::Restore, Role::Backup, Role::Audit]
                .iter()
                .map(|r| KeySlot::wrap_role(REPO_ID, *r, &role_key(*r), Secret::KeyFile(&KEY_FILE)).expect("slot").to_json())
                .collect();
            seeds.push(
                KeySlot::wrap_role(REPO_ID, Role::Admin, &role_key(Role::Admin), Secret::Password(b"pw"))
                    .expect("slot")
                    .to_json(),
            );
            let mut v1 = lifeline_fuzz::keyring().clone();
            v1.format = 1;
            let e = &v1.epochs[0];
            let (data, meta) = (e.data_key.expect("data key"), e.meta_key.expect("meta key"));
            v1.epochs = vec![lifeline_repo::crypto::Epoch::legacy(1, e.created.clone(), data, meta)];
            seeds.push(KeySlot::wrap_v1(&v1, Secret::KeyFile(&KEY_FILE)).expect("v1 slot").to_json());
            seeds
        });
    },
    |data: &[u8]| {
        let Ok(slot) = KeySlot::from_json(data, "keys/fuzz") else {
            return;
        };
        let _ = (slot.role(), slot.kdf.kind());
        let _ = slot.accepts(Secret::Password(b"pw"));
        if slot.accepts(Secret::KeyFile(&KEY_FILE)) {
            let _ = slot.unwrap(Secret::KeyFile(&KEY_FILE), REPO_ID);
        }
    }
);
