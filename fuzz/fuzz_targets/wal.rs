//! PostgreSQL WAL names and timeline history (crates/lifeline-sources/src/postgres/wal.rs): file
//! names handed to `archive_command`/`restore_command` and `.history` files read from the
//! archive. The first byte picks the WAL segment size (a power of two, 1 MiB to 1 GiB, as
//! PostgreSQL allows); the rest is text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lifeline_sources::postgres::wal::{self, Lsn, WalName};

fuzz_target!(
    init: {
        lifeline_fuzz::write_seeds_if_asked(|| {
            [
                "000000010000000000000003",
                "0000000200000001000000FE.partial",
                "000000010000000000000002.00000028.backup",
                "00000003.history",
                "16/B374D848",
                "1\t0/3000000\tno recovery target specified\n\n# comment\n2\t0/5000028\tat restore point \"x\"\n",
            ]
            .iter()
            .map(|s| {
                let mut seed = vec![4u8];
                seed.extend(s.as_bytes());
                seed
            })
            .collect()
        });
    },
    |data: &[u8]| {
        let Some((&size, rest)) = data.split_first() else {
            return;
        };
        let segment_size = 1u64 << (20 + u32::from(size) % 11);
        let Ok(text) = std::str::from_utf8(rest) else {
            return;
        };
        if let Ok(name) = WalName::parse(text) {
            let _ = wal::object_key(7_000_000_000_000_000_001, &name);
            if let Some(segno) = name.segment_number(segment_size) {
                let again = wal::segment_name(name.timeline, segno, segment_size);
                let _ = WalName::parse(&again);
            }
            let _ = name.segment_of(segment_size);
        }
        if let Ok(lsn) = Lsn::parse(text) {
            assert_eq!(Lsn::parse(&lsn.to_string()).ok(), Some(lsn));
            let _ = lsn.segment(segment_size);
        }
        let _ = wal::parse_history(text);
    }
);
