//! The audit trail (format.md §14): stored records, verified with and without keys. The first byte
//! picks the input's use:
//! - 0: up to 8 stored records (envelope CBOR) separated by `--rec--`; each is stored under the
//!   name its own `time` and bytes give it (or a fixed time), and the whole trail is verified;
//! - 1: the body's payload, sealed with the fixed keys into an envelope of this repository.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lifeline_fuzz::{keyring, REPO_ID};
use lifeline_repo::audit::{self, Envelope, Event, ENVELOPE_VERSION};
use lifeline_repo::crypto::{seal_object, ObjectType};
use lifeline_repo::storage::Storage;
use lifeline_repo::Id;

const SEP: &[u8] = b"--rec--";
const TIME: &str = "20260101T000000.000Z";

/// The `time` the envelope claims, read without the library's decoder.
fn claimed_time(bytes: &[u8]) -> Option<String> {
    let value: ciborium::Value = ciborium::from_reader(bytes).ok()?;
    value.as_map()?.iter().find_map(|(k, v)| {
        (k.as_text() == Some("time"))
            .then(|| v.as_text().map(str::to_string))
            .flatten()
    })
}

fn store(storage: &lifeline_fuzz::MemStorage, bytes: &[u8]) {
    let time = claimed_time(bytes)
        .filter(|t| t.len() == TIME.len() && t.is_ascii())
        .unwrap_or_else(|| TIME.to_string());
    let key = format!(
        "audit/{}-{}/{}-{}",
        &time[..4],
        &time[4..6],
        time,
        Id::of_stored(bytes)
    );
    storage.set(&key, bytes);
}

fuzz_target!(
    init: {
        lifeline_fuzz::write_seeds_if_asked(|| {
            let storage = std::sync::Arc::new(lifeline_fuzz::base_storage().copy());
            let scratch = lifeline_fuzz::open(storage.clone()).expect("open");
            for action in ["init", "backup", "restore"] {
                let mut event = Event::new(action, "/srv/data");
                event.touch(audit::Access::Wrote, "snapshot", Id([5; 32]));
                event.detail("bytes_added", 1234);
                audit::append(&scratch, &event).expect("append");
            }
            let records: Vec<Vec<u8>> = storage
                .keys("audit/")
                .iter()
                .map(|k| storage.get(k).expect("record"))
                .collect();
            let mut trail = vec![0u8];
            trail.extend(records.join(SEP));
            let mut seeds = vec![trail];
            for r in &records {
                let mut one = vec![0u8];
                one.extend(r);
                seeds.push(one);
                let envelope = Envelope::from_bytes(r, "seed").expect("envelope");
                let body = lifeline_repo::crypto::open_object(keyring(), ObjectType::Audit, &envelope.body, "seed")
                    .expect("body");
                let mut sealed = vec![1u8];
                sealed.extend(body);
                seeds.push(sealed);
            }
            seeds
        });
    },
    |data: &[u8]| {
        let Some((&mode, rest)) = data.split_first() else {
            return;
        };
        let storage = lifeline_fuzz::base_storage().copy();
        if mode & 1 == 0 {
            for record in lifeline_fuzz::split(rest, SEP, 8) {
                store(&storage, record);
            }
        } else {
            let Ok(body) = seal_object(keyring(), ObjectType::Audit, rest) else {
                return;
            };
            let envelope = Envelope {
                version: ENVELOPE_VERSION,
                repository: REPO_ID.into(),
                time: TIME.into(),
                links: vec![],
                body,
            };
            store(&storage, &envelope.to_bytes());
        }
        let _ = audit::verify(&storage, Some(keyring()), &[]);
        let _ = audit::verify(&storage, None, &[Id([1; 32])]);
        for key in storage.keys("audit/") {
            if let Ok(bytes) = storage.get(&key) {
                let _ = Envelope::from_bytes(&bytes, &key).map(|e| e.stored());
            }
        }
    }
);
