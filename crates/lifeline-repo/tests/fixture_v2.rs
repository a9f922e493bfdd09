//! A repository written by format version 2 (tests/fixtures/v2, password `fixture-password`) must stay
//! readable by every later version. Never regenerate it: add a new fixture.
//!
//! How it was made (2026-12-02): `lifeline init --pack-size 1`, then `lifeline backup /tmp/fx2/src
//! --tag fixture=v2` of docs/record.txt, docs/scan.bin and the symlink `link`; then, through this
//! crate (no `key rotate` command existed yet), epoch 2 by `keys::write_epoch(Epoch::generate(2,
//! fresh_tag(..)))` and a `backup`-role key-file slot by `Repository::add_slot`, whose key file is
//! tests/fixtures/v2-backup.key; then `backup --tag fixture=v2-epoch2` with docs/after-rotation.txt
//! added, and `backup --key-file v2-backup.key --tag fixture=v2-backup-role` with
//! docs/by-backup-key.txt added (sealed to epoch 2's public key: envelope scheme 2); then
//! `check --read-data`, which left a verification record. Its audit trail holds all five operations.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use lifeline_repo::check::{check, ReadData};
use lifeline_repo::crypto::{Header, Role, Secret};
use lifeline_repo::snapshot::Snapshot;
use lifeline_repo::storage::{LocalStorage, Storage};
use lifeline_repo::tree::NodeType;
use lifeline_repo::walk::lookup;
use lifeline_repo::{audit, BlobReader, ErrorKind, Id, Repository};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn storage() -> Arc<LocalStorage> {
    Arc::new(LocalStorage::new(fixtures().join("v2")))
}

fn open() -> Repository {
    Repository::open(storage(), b"fixture-password").expect("open the v2 fixture")
}

fn backup_key() -> [u8; 32] {
    let text = std::fs::read_to_string(fixtures().join("v2-backup.key")).expect("key file");
    let mut key = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut key).expect("64 hex digits");
    key
}

fn file_bytes(reader: &BlobReader<'_>, root: Id, path: &str) -> Vec<u8> {
    let node = lookup(reader, root, path.as_bytes())
        .expect("lookup")
        .unwrap_or_else(|| panic!("{path} is in the fixture"));
    let mut out = Vec::new();
    for part in node.content.iter().flatten() {
        let chunk = reader.read_blob(part.id()).expect("blob");
        out.extend_from_slice(
            &chunk[part.offset() as usize..(part.offset() + part.len()) as usize],
        );
    }
    out
}

/// The snapshot tagged `fixture=<tag>`.
fn tagged(snapshots: &[(Id, Snapshot)], tag: &str) -> (Id, Snapshot) {
    snapshots
        .iter()
        .find(|(_, s)| s.tags.get("fixture").map(String::as_str) == Some(tag))
        .cloned()
        .unwrap_or_else(|| panic!("a snapshot tagged fixture={tag}"))
}

fn header(storage: &dyn Storage, key: &str) -> Header {
    Header::parse(&storage.get(key).expect("object"), key).expect("header")
}

const SRC: &str = "/tmp/fx2/src";

#[test]
fn version_2_repository_still_reads() {
    let repo = open();
    assert_eq!(repo.config().version, 2);
    assert_eq!(repo.keyring().role, Role::Admin);
    let snapshots = repo.snapshots().expect("snapshots");
    assert_eq!(snapshots.len(), 3);
    let reader = repo.reader().expect("reader");
    let scan: Vec<u8> = (0..600_000u64)
        .map(|i| ((i * 104_729) % 253) as u8)
        .collect();
    let files: [(&str, &[u8]); 4] = [
        ("docs/record.txt", b"patient-record-v2\n"),
        ("docs/scan.bin", &scan),
        ("docs/after-rotation.txt", b"sealed under epoch 2\n"),
        ("docs/by-backup-key.txt", b"written by a backup-only key\n"),
    ];
    for (tag, count) in [("v2", 2), ("v2-epoch2", 3), ("v2-backup-role", 4)] {
        let (_, snap) = tagged(&snapshots, tag);
        assert_eq!(snap.paths, [SRC]);
        assert_eq!(snap.summary.files, count as u64, "{tag}");
        for (path, content) in &files[..count] {
            assert_eq!(
                file_bytes(&reader, snap.tree, &format!("{SRC}/{path}")),
                *content,
                "{tag}: {path}"
            );
        }
        let link = lookup(&reader, snap.tree, format!("{SRC}/link").as_bytes())
            .expect("lookup")
            .expect("link");
        assert_eq!(link.node_type, NodeType::Symlink);
        assert_eq!(link.target.as_deref(), Some(b"docs/record.txt".as_slice()));
    }
}

#[test]
fn version_2_fixture_has_objects_under_two_epochs() {
    let repo = open();
    let epochs = &repo.keyring().epochs;
    let numbers: Vec<u32> = epochs.iter().map(|e| e.epoch).collect();
    assert_eq!(numbers, [1, 2]);
    assert!(epochs.iter().all(|e| !e.legacy && e.destroyed.is_none()));
    assert_ne!(epochs[0].tag, epochs[1].tag);
    assert!(
        epochs.iter().all(|e| e.tag >= 1 << 16),
        "v2 tags are random"
    );
    assert_eq!(repo.keyring().current().expect("current").epoch, 2);

    let snapshots = repo.snapshots().expect("snapshots");
    let storage = repo.storage();
    let of = |tag: &str| header(storage, &format!("snapshots/{}", tagged(&snapshots, tag).0));
    let first = of("v2");
    assert_eq!((first.epoch, first.scheme), (epochs[0].tag, 1));
    let rotated = of("v2-epoch2");
    assert_eq!((rotated.epoch, rotated.scheme), (epochs[1].tag, 1));
    // The backup credential holds no snapshot key: it sealed to epoch 2's public key.
    let sealed_to = of("v2-backup-role");
    assert_eq!((sealed_to.epoch, sealed_to.scheme), (epochs[1].tag, 2));

    let pack_epochs: std::collections::BTreeSet<u32> = storage
        .list("data/")
        .expect("list")
        .iter()
        .map(|o| header(storage, &o.key).epoch)
        .collect();
    let both: std::collections::BTreeSet<u32> = epochs.iter().map(|e| e.tag).collect();
    assert_eq!(pack_epochs, both, "packs were sealed under both epochs");
}

#[test]
fn version_2_backup_key_file_opens_as_a_backup_credential() {
    let key = backup_key();
    let repo = Repository::open_with(storage(), Secret::KeyFile(&key)).expect("open");
    assert_eq!(repo.keyring().role, Role::Backup);
    let id = repo.snapshot_ids().expect("ids")[0];
    let refused = repo
        .load_snapshot(&id)
        .expect_err("a backup credential reads no snapshot");
    assert_eq!(refused.kind(), ErrorKind::NotPermitted, "{refused}");
    // It deduplicates against the index like any writer.
    assert!(repo.load_index().expect("index").0.blob_count() > 0);

    let roles: Vec<(Role, &str)> = open()
        .list_keys()
        .expect("keys")
        .iter()
        .map(|k| (k.role, k.kind))
        .collect();
    assert_eq!(
        roles,
        [(Role::Admin, "password"), (Role::Backup, "key-file")]
    );
}

#[test]
fn version_2_repository_passes_check_and_its_audit_trail_verifies() {
    let repo = open();
    let report = check(&repo, ReadData::All).expect("check");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(report.packs_read > 0);
    let verified = audit::verify(repo.storage(), Some(repo.keyring()), &[]).expect("verify");
    assert!(verified.is_clean(), "{:#?}", verified.problems);
    assert_eq!(verified.records, 5);
}
