//! The 48-byte envelope header every encrypted object starts with (format.md §5), and opening a
//! whole single-message object with it: scheme, type, epoch tag and salt (or ephemeral key) all
//! come from the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lifeline_fuzz::keyring;
use lifeline_repo::crypto::{open_object_of, seal_object, Header, ObjectType, HEADER_LEN};

const TYPES: [ObjectType; 8] = [
    ObjectType::Index,
    ObjectType::Snapshot,
    ObjectType::DataPack,
    ObjectType::TreePack,
    ObjectType::Named,
    ObjectType::Record,
    ObjectType::Audit,
    ObjectType::Mark,
];

fuzz_target!(
    init: {
        lifeline_fuzz::write_seeds_if_asked(|| {
            TYPES
                .iter()
                .map(|t| seal_object(keyring(), *t, b"\0a sealed object").expect("seal"))
                .collect()
        });
    },
    |data: &[u8]| {
        if let Ok(header) = Header::parse(data, "fuzz") {
            // What it parsed is what the bytes say (bytes 10..12 are reserved and ignored).
            let again = header.to_bytes();
            assert_eq!(again[..10], data[..10]);
            assert_eq!(again[12..], data[12..HEADER_LEN]);
        }
        let _ = open_object_of(keyring(), &TYPES, data, "fuzz");
    }
);
