//! The repository's `config` (format.md §2, plain JSON): a repository whose `config` is the input
//! is opened with the fixed key file (config, then slots and key objects), and its trail verified
//! without keys (which reads the repository ID from `config`).
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use lifeline_repo::Repository;

fuzz_target!(
    init: {
        lifeline_fuzz::write_seeds_if_asked(|| {
            let v1 = String::from_utf8(lifeline_fuzz::config_json()).expect("utf-8").replace("\"version\": 2", "\"version\": 1");
            vec![lifeline_fuzz::config_json(), v1.into_bytes()]
        });
    },
    |data: &[u8]| {
        let storage = Arc::new(lifeline_fuzz::base_storage().copy());
        storage.set("config", data);
        let _ = Repository::exists(storage.as_ref());
        let _ = lifeline_fuzz::open(storage.clone());
        let _ = lifeline_repo::audit::verify(storage.as_ref(), None, &[]);
    }
);
