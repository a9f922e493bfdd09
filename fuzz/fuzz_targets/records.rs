//! Records (format.md §12: holds, verifications, drills, prune marks): the first byte picks the
//! kind, the rest is the payload, sealed with the fixed keys and stored under its name; then the
//! kind's loader reads every record of the kind (authentication, decompression, CBOR, and what each
//! loader makes of the records).
#![no_main]

use libfuzzer_sys::fuzz_target;
use lifeline_fuzz::{keyring, repo};
use lifeline_repo::crypto::{open_object_of, seal_object, ObjectType};
use lifeline_repo::storage::Storage;
use lifeline_repo::Id;

const PREFIXES: [&str; 4] = ["holds/", "verifications/", "drills/", "garbage/"];

fuzz_target!(
    init: {
        lifeline_fuzz::write_seeds_if_asked(|| {
            // Real records, written by the real API to a scratch copy of the repository, opened back
            // to their payloads.
            let storage = std::sync::Arc::new(lifeline_fuzz::base_storage().copy());
            let scratch = lifeline_fuzz::open(storage.clone()).expect("open");
            let until = chrono::Utc::now() + chrono::TimeDelta::days(30);
            lifeline_repo::hold::add(&scratch, &[Id([1; 32])], "litigation", Some(until)).expect("hold");
            lifeline_repo::hold::remove(&scratch, &[Id([1; 32])], "settled").expect("unhold");
            lifeline_repo::verification::save(&scratch, lifeline_repo::verification::restored(&[Id([2; 32])]))
                .expect("verification");
            let mut seeds = Vec::new();
            for (kind, prefix) in PREFIXES.iter().enumerate() {
                for key in storage.keys(prefix) {
                    let bytes = storage.get(&key).expect("record");
                    let payload = open_object_of(keyring(), &[ObjectType::Record, ObjectType::Mark], &bytes, &key)
                        .expect("open record");
                    let mut seed = vec![kind as u8];
                    seed.extend(payload);
                    seeds.push(seed);
                }
            }
            seeds
        });
    },
    |data: &[u8]| {
        let (storage, repo) = repo();
        let Some((&kind, payload)) = data.split_first() else {
            return;
        };
        let kind = usize::from(kind) % PREFIXES.len();
        let object_type = if kind == 3 { ObjectType::Mark } else { ObjectType::Record };
        let Ok(sealed) = seal_object(keyring(), object_type, payload) else {
            return;
        };
        let key = format!("{}{}", PREFIXES[kind], Id::of_stored(&sealed));
        storage.set(&key, &sealed);
        match kind {
            0 => {
                if let Ok(holds) = lifeline_repo::hold::Holds::load(repo) {
                    let _ = holds.active();
                }
            }
            1 => {
                if let Ok(v) = lifeline_repo::verification::Verifications::load(repo) {
                    let _ = v.latest();
                    let _ = v.plan_subset(&[Id([1; 32]), Id([2; 32])], 50.0);
                }
            }
            2 => {
                let _ = lifeline_repo::drill::load_all(repo);
            }
            _ => {
                let _ = lifeline_repo::garbage::load(repo);
            }
        }
        let _ = storage.delete(&key);
    }
);
