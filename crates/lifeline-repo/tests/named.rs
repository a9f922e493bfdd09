//! Named objects: create-only, idempotent, refuse different content, and authenticate their key.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use lifeline_repo::named::Stored;
use lifeline_repo::storage::{LocalStorage, Storage};
use lifeline_repo::{Error, Repository};

mod common;

fn repo(dir: &std::path::Path) -> Repository {
    Repository::init(Arc::new(LocalStorage::new(dir)), b"pw", 1 << 20).expect("init")
}

#[test]
fn same_bytes_twice_succeed_and_different_bytes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path());
    let key = "wal/1/00000001/000000010000000000000001";
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(repo.put_named(key, &data, 1).unwrap(), Stored::New);
    assert_eq!(repo.put_named(key, &data, 1).unwrap(), Stored::AlreadyThere);
    let stored = std::fs::read(dir.path().join(key)).unwrap();

    let mut other = data.clone();
    other[5] ^= 1;
    let err = repo.put_named(key, &other, 1).unwrap_err();
    assert!(err.to_string().contains("different content"), "{err}");
    assert_eq!(std::fs::read(dir.path().join(key)).unwrap(), stored);

    let got = repo.get_named(key).unwrap();
    assert_eq!(got.data, data);
    assert!(got.stored_at_ms > 1_700_000_000_000);
}

#[test]
fn altered_moved_and_missing_objects_are_told_apart() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path());
    let key = "wal/1/00000001/000000010000000000000002";
    repo.put_named(key, b"segment two", 3).unwrap();
    let storage = LocalStorage::new(dir.path());

    let moved = "wal/1/00000001/000000010000000000000003";
    storage.put(moved, &storage.get(key).unwrap()).unwrap();
    assert!(matches!(repo.get_named(moved), Err(Error::Corrupt { .. })));

    let mut bytes = storage.get(key).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(dir.path().join(key), &bytes).unwrap();
    let err = repo.get_named(key).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");

    let missing = repo.get_named("wal/1/00000001/000000010000000000000009");
    assert!(matches!(missing, Err(Error::ObjectMissing { .. })));
    assert!(repo.put_named("snapshots/x", b"no", 3).is_err());
    assert!(repo.put_named("wal/../config", b"no", 3).is_err());
}

#[test]
fn files_are_streamed_and_stored_raw_when_zstd_cannot_shrink_them() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(&dir.path().join("repo"));
    // Above the size from which zstd runs on worker threads.
    let noise = common::pseudo_random(6 << 20, 7);
    let path = dir.path().join("000000010000000000000007");
    std::fs::write(&path, &noise).unwrap();
    let key = "wal/1/00000001/000000010000000000000007";
    assert_eq!(repo.put_named_file(key, &path, 1).unwrap(), Stored::New);
    assert_eq!(repo.get_named(key).unwrap().data, noise);
    assert_eq!(
        repo.put_named_file(key, &path, 1).unwrap(),
        Stored::AlreadyThere
    );

    let mut wal_like = vec![0u8; 8 << 20];
    wal_like[..noise.len() / 8].copy_from_slice(&noise[..noise.len() / 8]);
    let zeros = dir.path().join("000000010000000000000008");
    std::fs::write(&zeros, &wal_like).unwrap();
    let key = "wal/1/00000001/000000010000000000000008";
    repo.put_named_file(key, &zeros, 1).unwrap();
    let stored = std::fs::metadata(dir.path().join("repo").join(key))
        .unwrap()
        .len();
    assert!(
        stored < 2 << 20,
        "an 8 MiB mostly-zero file took {stored} bytes"
    );
    assert_eq!(repo.get_named(key).unwrap().data, wal_like);

    std::fs::write(&zeros, &noise[..1000]).unwrap();
    let err = repo.put_named_file(key, &zeros, 1).unwrap_err();
    assert!(err.to_string().contains("different content"), "{err}");
}
