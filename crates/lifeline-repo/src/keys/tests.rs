//! Each role's keyring reaches exactly what format.md §3.1 says, through real key objects on disk.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use crate::crypto::{Header, Role, Secret};
use crate::snapshot::Snapshot;
use crate::storage::{LocalStorage, Storage};
use crate::{Error, ErrorKind, Id, Repository};

struct Setup {
    _dir: tempfile::TempDir,
    storage: Arc<dyn Storage>,
    admin: Repository,
}

/// A v2 repository with a key file for every role; returns the key files.
fn setup() -> (Setup, [(Role, [u8; 32]); 3]) {
    let dir = tempfile::tempdir().unwrap();
    let storage: Arc<dyn Storage> = Arc::new(LocalStorage::new(dir.path()));
    let admin = Repository::init(Arc::clone(&storage), b"admin password", 1 << 20).unwrap();
    let keys = [Role::Restore, Role::Backup, Role::Audit].map(|role| {
        let key: [u8; 32] = rand::random();
        admin.add_slot(role, Secret::KeyFile(&key)).unwrap();
        (role, key)
    });
    (
        Setup {
            _dir: dir,
            storage,
            admin,
        },
        keys,
    )
}

fn open(s: &Setup, key: &[u8; 32]) -> Repository {
    Repository::open_with(Arc::clone(&s.storage), Secret::KeyFile(key)).unwrap()
}

fn header_of(s: &Setup, id: &Id) -> Header {
    let key = format!("snapshots/{id}");
    Header::parse(&s.storage.get(&key).unwrap(), &key).unwrap()
}

#[track_caller]
fn assert_not_permitted<T: std::fmt::Debug>(r: crate::Result<T>, role: &str) {
    match r {
        Err(e @ Error::NotPermitted { .. }) => {
            assert_eq!(e.kind(), ErrorKind::NotPermitted);
            assert!(e.to_string().contains(role), "{e}");
        }
        other => panic!("expected NotPermitted naming {role}, got {other:?}"),
    }
}

#[test]
fn every_role_opens_with_its_own_slot_and_gets_its_role() {
    let (s, keys) = setup();
    assert_eq!(s.admin.keyring().role, Role::Admin);
    for (role, key) in &keys {
        let repo = open(&s, key);
        assert_eq!(repo.keyring().role, *role);
        assert_eq!(repo.keyring().format, 2);
        // Every role names chunks alike, so a write-only host deduplicates against the others.
        assert_eq!(
            repo.keyring().chunk_id(b"x"),
            s.admin.keyring().chunk_id(b"x")
        );
    }
}

#[test]
fn a_backup_credential_seals_to_the_public_key_and_cannot_open_anything_sealed() {
    let (s, keys) = setup();
    let writer = open(&s, &keys[1].1);
    let restorer = open(&s, &keys[0].1);
    let auditor = open(&s, &keys[2].1);

    let old = s
        .admin
        .save_snapshot(&Snapshot::new("files", vec!["/a".into()], Id([1; 32])))
        .unwrap();
    let new = writer
        .save_snapshot(&Snapshot::new("files", vec!["/b".into()], Id([2; 32])))
        .unwrap();
    assert_eq!(header_of(&s, &old).scheme, 1);
    assert_eq!(header_of(&s, &new).scheme, 2, "sealed to restore_public");

    // Neither old nor its own new snapshot opens for the writer; both open for a restorer.
    assert_not_permitted(writer.load_snapshot(&old), "restore");
    assert_not_permitted(writer.load_snapshot(&new), "restore");
    assert_eq!(
        restorer.load_snapshot(&new).unwrap().paths,
        vec!["/b".to_string()]
    );
    assert_eq!(
        s.admin.load_snapshot(&new).unwrap().paths,
        vec!["/b".to_string()]
    );
    // The auditor reads no snapshot either.
    assert_not_permitted(auditor.load_snapshot(&new), "restore");

    // WAL and other named objects: the writer stores, only readers fetch.
    writer
        .put_named("wal/1/00000001/000000010000000000000001", b"segment", 3)
        .unwrap();
    assert_not_permitted(
        writer.get_named("wal/1/00000001/000000010000000000000001"),
        "restore",
    );
    assert_eq!(
        restorer
            .get_named("wal/1/00000001/000000010000000000000001")
            .unwrap()
            .data,
        b"segment"
    );
}

#[test]
fn records_open_for_auditors_and_readers_but_not_for_writers() {
    let (s, keys) = setup();
    let id = s
        .admin
        .save_snapshot(&Snapshot::new("files", vec!["/a".into()], Id([1; 32])))
        .unwrap();
    crate::hold::add(&s.admin, &[id], "case 7", None).unwrap();
    let auditor = open(&s, &keys[2].1);
    let writer = open(&s, &keys[1].1);
    assert!(crate::hold::Holds::load(&auditor).unwrap().is_held(&id));
    let seen = crate::record::load_all::<crate::hold::HoldRecord>(&writer).unwrap();
    assert!(seen.items.is_empty() && seen.damaged.len() == 1, "{seen:?}");
    assert_eq!(seen.damaged[0].1.kind(), ErrorKind::NotPermitted);
}

#[test]
fn only_administrators_manage_keys() {
    let (s, keys) = setup();
    for (role, key) in &keys {
        let repo = open(&s, key);
        assert_not_permitted(repo.add_slot(Role::Admin, Secret::Password(b"x")), "admin");
        assert_not_permitted(repo.add_slot(*role, Secret::Password(b"x")), "admin");
    }
    // An administrator's new restore slot opens as a restorer.
    let id = s
        .admin
        .add_slot(Role::Restore, Secret::Password(b"restorer"))
        .unwrap();
    let listed = s.admin.list_keys().unwrap();
    let slot = listed.iter().find(|k| k.id == id.to_hex()).unwrap();
    assert_eq!(
        (slot.role, slot.kind, slot.version),
        (Role::Restore, "password", 2)
    );
}

#[test]
fn a_restorer_changing_its_password_stays_a_restorer() {
    let (s, _) = setup();
    s.admin
        .add_slot(Role::Restore, Secret::Password(b"old"))
        .unwrap();
    let mut repo = Repository::open(Arc::clone(&s.storage), b"old").unwrap();
    repo.change_password(b"new").unwrap();
    assert!(matches!(
        Repository::open(Arc::clone(&s.storage), b"old"),
        Err(Error::WrongPassword)
    ));
    let reopened = Repository::open(Arc::clone(&s.storage), b"new").unwrap();
    assert_eq!(reopened.keyring().role, Role::Restore);
}

#[test]
fn a_key_object_altered_or_moved_is_refused() {
    let (s, _) = setup();
    let epoch = s.storage.list(super::EPOCH_PREFIX).unwrap().remove(0).key;
    let bytes = s.storage.get(&epoch).unwrap();
    // Same bytes under another name: the name no longer hashes.
    s.storage
        .put(
            &format!("{}00000001-{}", super::EPOCH_PREFIX, Id([9; 32])),
            &bytes,
        )
        .unwrap();
    let Err(err) = Repository::open(Arc::clone(&s.storage), b"admin password") else {
        panic!("a renamed epoch object was accepted");
    };
    assert_eq!(err.kind(), ErrorKind::Damaged, "{err}");
}

/// Regression: epoch objects once carried the X25519 public keys in the clear, so anyone who could
/// only write to the storage could seal a snapshot (or an audit body) that restorers accept. The
/// keys now live only inside the sealed sections; a backup credential still gets them there.
#[test]
fn epoch_public_keys_are_not_readable_without_a_credential() {
    let (s, keys) = setup();
    let epochs = s.storage.list(super::EPOCH_PREFIX).unwrap();
    assert_eq!(epochs.len(), 1);
    let object: serde_json::Value =
        serde_json::from_slice(&s.storage.get(&epochs[0].key).unwrap()).unwrap();
    for field in ["restore_public", "audit_public"] {
        assert!(
            object.get(field).is_none(),
            "{field} in the clear: {object}"
        );
    }
    let current = s.admin.keyring().current().unwrap().clone();
    for (_, key) in &keys {
        let e = open(&s, key).keyring().current().unwrap().clone();
        if e.restore_secret.is_none() && e.audit_secret.is_none() {
            // The backup credential: both public keys, from its section, and no secret.
            assert_eq!(e.restore_public, current.restore_public);
            assert_eq!(e.audit_public, current.audit_public);
        }
    }
    let writer = open(&s, &keys[1].1);
    let id = writer
        .save_snapshot(&Snapshot::new("files", vec!["/w".into()], Id([3; 32])))
        .unwrap();
    assert_eq!(header_of(&s, &id).scheme, 2);
    assert_eq!(
        open(&s, &keys[0].1).load_snapshot(&id).unwrap().paths,
        vec!["/w".to_string()]
    );
}
