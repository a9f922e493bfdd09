//! The `backup_manifest` pg_basebackup writes (JSON): the WAL range a base backup needs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lifeline_sources::postgres::basebackup::wal_range;

fuzz_target!(
    init: {
        lifeline_fuzz::write_seeds_if_asked(|| {
            vec![
                br#"{ "PostgreSQL-Backup-Manifest-Version": 2, "System-Identifier": 7000000000000000001,
  "Files": [ { "Path": "PG_VERSION", "Size": 3, "Last-Modified": "2026-01-01 00:00:00 GMT", "Checksum-Algorithm": "CRC32C", "Checksum": "d9f1c5a2" } ],
  "WAL-Ranges": [ { "Timeline": 1, "Start-LSN": "0/2000028", "End-LSN": "0/2000100" },
                  { "Timeline": 2, "Start-LSN": "0/2000100", "End-LSN": "0/3000138" } ],
  "Manifest-Checksum": "00" }"#
                    .to_vec(),
                b"{}".to_vec(),
            ]
        });
    },
    |data: &[u8]| {
        let _ = wal_range(data);
    }
);
