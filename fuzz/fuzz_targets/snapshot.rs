//! Snapshot manifests (format.md §9): the payload is sealed with the fixed keys, stored under its
//! name and loaded by `Repository::load_snapshot` (authentication, decompression, CBOR).
#![no_main]

use libfuzzer_sys::fuzz_target;
use lifeline_fuzz::{keyring, repo};
use lifeline_repo::crypto::{seal_object, ObjectType};
use lifeline_repo::snapshot::{ItemError, Snapshot};
use lifeline_repo::storage::Storage;
use lifeline_repo::Id;

fuzz_target!(
    init: {
        lifeline_fuzz::write_seeds_if_asked(|| {
            let mut s = Snapshot::new("postgres", vec!["/var/lib/postgresql".into()], Id([3; 32]));
            s.tags.insert("env".into(), "prod".into());
            s.parent = Some("ab".repeat(32));
            s.errors.push(ItemError::unreadable("/x".into(), "gone".into()));
            s.source.insert("start_lsn".into(), "0/3000028".into());
            let mut seeds = lifeline_fuzz::payloads(&lifeline_fuzz::cbor(&s));
            let mut s = Snapshot::new("files", vec![], Id([0; 32]));
            s.time = "not a time".into();
            seeds.push(lifeline_fuzz::raw_payload(&lifeline_fuzz::cbor(&s)));
            seeds
        });
    },
    |data: &[u8]| {
        let (storage, repo) = repo();
        let Ok(sealed) = seal_object(keyring(), ObjectType::Snapshot, data) else {
            return;
        };
        let id = Id::of_stored(&sealed);
        let key = format!("snapshots/{id}");
        storage.set(&key, &sealed);
        if let Ok(snapshot) = repo.load_snapshot(&id) {
            let _ = snapshot.timestamp();
            let _ = snapshot.age(chrono_now());
        }
        let _ = storage.delete(&key);
    }
);

fn chrono_now() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
}
