//! The tar stream `pg_basebackup -Ft -D -` writes, stored as a snapshot tree entry by entry
//! (crates/lifeline-sources/src/postgres/tar_tree.rs), and the `backup_manifest` it keeps. Each
//! run writes into a fresh copy of the fixed repository.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use lifeline_repo::Writer;
use lifeline_sources::postgres::{basebackup, tar_tree};
use lifeline_sources::Quiet;

fn seed_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, kind: tar::EntryType, data: &[u8], link: Option<&str>| {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(if kind == tar::EntryType::Directory {
            0o700
        } else {
            0o600
        });
        h.set_mtime(1_767_225_600);
        h.set_size(data.len() as u64);
        if let Some(link) = link {
            h.set_link_name(link).expect("link");
        }
        h.set_path(path).expect("path");
        h.set_cksum();
        b.append(&h, data).expect("append");
    };
    add("global", tar::EntryType::Directory, b"", None);
    add("base/1", tar::EntryType::Directory, b"", None);
    add("PG_VERSION", tar::EntryType::Regular, b"18\n", None);
    add(
        "global/pg_control",
        tar::EntryType::Regular,
        &[7u8; 512],
        None,
    );
    add("base/1/1259", tar::EntryType::Regular, &[0u8; 2000], None);
    add(
        "pg_tblspc/16384",
        tar::EntryType::Symlink,
        b"",
        Some("/srv/tablespace"),
    );
    add(
        "backup_manifest",
        tar::EntryType::Regular,
        br#"{ "WAL-Ranges": [ { "Timeline": 1, "Start-LSN": "0/2000028", "End-LSN": "0/2000100" } ] }"#,
        None,
    );
    b.into_inner().expect("tar")
}

fuzz_target!(
    init: {
        lifeline_fuzz::write_seeds_if_asked(|| vec![seed_tar()]);
    },
    |data: &[u8]| {
        let storage = Arc::new(lifeline_fuzz::base_storage().copy());
        let Ok(repo) = lifeline_fuzz::open(storage) else {
            return;
        };
        let Ok(writer) = Writer::new(&repo, None, 1) else {
            return;
        };
        if let Ok(stored) = tar_tree::store(&writer, data, &["backup_manifest"], &Quiet) {
            if let Some(manifest) = stored.kept.get("backup_manifest") {
                let _ = basebackup::wal_range(manifest);
            }
        }
        writer.close();
    }
);
