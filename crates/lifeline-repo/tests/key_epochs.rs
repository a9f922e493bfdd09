//! Key epochs through the library (format.md §3.2): what `key destroy-epoch` re-seals, what makes
//! it wait, a destroy killed after its tombstone, and handles that learn of a rotation.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use lifeline_repo::check::{check, ReadData};
use lifeline_repo::chunker::ChunkProfile;
use lifeline_repo::crypto::{seal_object, Keyring, ObjectType};
use lifeline_repo::keys;
use lifeline_repo::session::Session;
use lifeline_repo::snapshot::Snapshot;
use lifeline_repo::storage::LocalStorage;
use lifeline_repo::tree::{Node, Tree};
use lifeline_repo::{Error, Id, Repository, Writer};

mod common;
use common::pseudo_random;

fn repo(dir: &std::path::Path) -> Repository {
    Repository::init(Arc::new(LocalStorage::new(dir)), b"pw", 1 << 20).expect("init")
}

fn open(dir: &std::path::Path) -> Repository {
    Repository::open(Arc::new(LocalStorage::new(dir)), b"pw").expect("open")
}

/// One snapshot of one file; returns its ID.
fn backup(repo: &Repository, seed: u64) -> Id {
    let writer = Writer::new(repo, None, 3).expect("writer");
    let data = pseudo_random(200_000, seed);
    let (refs, size) = writer
        .add_stream(
            data.as_slice(),
            ChunkProfile::Files,
            std::path::Path::new("f"),
            &|_| {},
        )
        .expect("stream");
    let node = Node::file(b"f".to_vec(), size, refs, 0);
    let tree = writer.add_tree(Tree { nodes: vec![node] }).expect("tree");
    writer
        .finish(Snapshot::new("files", vec!["/".into()], tree))
        .expect("finish")
        .0
}

/// The keyring as it was before the rotation: epoch 1 current.
fn before_rotation(repo: &Repository) -> Keyring {
    let mut k = repo.keyring().clone();
    k.epochs.retain(|e| e.epoch == 1);
    k
}

/// Moves every epoch object's storage time an hour and a half back (a destroy waits an hour
/// after the rotation).
fn age_epochs(dir: &std::path::Path) {
    let then = SystemTime::now() - Duration::from_secs(5400);
    for entry in std::fs::read_dir(dir.join("keyring")).expect("keyring/") {
        let path = entry.expect("entry").path();
        let f = std::fs::File::options()
            .write(true)
            .open(&path)
            .expect("open");
        f.set_modified(then).expect("mtime");
    }
}

fn tag_of(repo: &Repository, number: u32) -> u32 {
    repo.keyring()
        .epochs
        .iter()
        .find(|e| e.epoch == number)
        .expect("epoch")
        .tag
}

#[test]
fn an_index_file_sealed_under_the_epoch_is_resealed_and_its_packs_stay_indexed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let first = repo(tmp.path());
    keys::rotate(&first).expect("rotate");
    let repo = open(tmp.path());
    let snapshot = backup(&repo, 1);
    // The only index file, written again under epoch 1 (as a writer that loaded its keys before
    // the rotation would have): the packs it names are epoch 2's.
    let key = repo.index_keys().expect("keys").remove(0);
    let packs = repo.load_index_file(&key).expect("index");
    let bytes = lifeline_repo::index::seal(&before_rotation(&repo), &packs).expect("seal");
    repo.storage()
        .put(&format!("index/{}", Id::of_stored(&bytes)), &bytes)
        .expect("put");
    repo.storage().delete(&key).expect("delete");
    age_epochs(tmp.path());

    let report = keys::destroy_epoch(&repo, 1).expect("destroy");
    assert_eq!(report.index_files_resealed, 1, "{report:?}");
    assert_eq!(report.tombstones.len(), 1);

    let after = open(tmp.path());
    let index_files = after.index_keys().expect("keys");
    assert_eq!(index_files.len(), 1);
    assert_eq!(
        after.load_index_file(&index_files[0]).expect("index"),
        packs
    );
    let c = check(&after, ReadData::All).expect("check");
    assert!(c.problems.is_empty() && c.shredded.is_empty(), "{c:?}");
    assert_eq!(c.snapshots, 1);
    after.load_snapshot(&snapshot).expect("the snapshot opens");
}

#[test]
fn a_session_sealing_under_the_epoch_and_a_mark_sealed_under_it_make_the_destroy_wait() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let first = repo(tmp.path());
    let old_tag = tag_of(&first, 1);
    keys::rotate(&first).expect("rotate");
    let repo = open(tmp.path());
    age_epochs(tmp.path());

    // A writer that loaded its keys before the rotation, still running.
    let stale = Session::start_sealing(
        Arc::new(LocalStorage::new(tmp.path())),
        "write",
        Some(old_tag),
    )
    .expect("session");
    // A prune mark an old prune sealed under epoch 1 (a payload: compression byte 0, CBOR).
    let mut payload = vec![0u8];
    ciborium::into_writer(
        &lifeline_repo::garbage::MarkRecord {
            stamp: lifeline_repo::record::Stamp::now("mark"),
            packs: vec![],
            indexes: vec![],
            bytes: 0,
        },
        &mut payload,
    )
    .expect("CBOR");
    let sealed = seal_object(&before_rotation(&repo), ObjectType::Mark, &payload).expect("seal");
    let mark = Id::of_stored(&sealed);
    repo.storage()
        .put(&format!("garbage/{mark}"), &sealed)
        .expect("put");
    let err = keys::destroy_epoch(&repo, 1).expect_err("refused");
    let text = err.to_string();
    assert!(matches!(err, Error::EpochNeeded { .. }), "{text}");
    assert!(text.contains("a write session on"), "{text}");
    assert!(text.contains(&format!("garbage/{mark}")), "{text}");
    assert!(text.contains("lifeline prune"), "{text}");
    assert_eq!(keys::list_epochs(repo.storage()).expect("list").len(), 2);

    stale.end();
    repo.storage()
        .delete(&format!("garbage/{mark}"))
        .expect("delete the mark");
    keys::destroy_epoch(&repo, 1).expect("destroyed once nothing needs it");
}

#[test]
fn a_destroy_killed_after_its_tombstone_is_finished_by_the_next_one() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let first = repo(tmp.path());
    keys::rotate(&first).expect("rotate");
    let repo = open(tmp.path());
    let epoch1 = repo
        .keyring()
        .epochs
        .iter()
        .find(|e| e.epoch == 1)
        .expect("epoch 1")
        .clone();
    // Killed between the tombstone and the deletion: the epoch object is still there.
    keys::write_tombstone(repo.storage(), repo.keyring(), &epoch1).expect("tombstone");
    let reopened = open(tmp.path());
    let e1 = reopened
        .keyring()
        .epochs
        .iter()
        .find(|e| e.epoch == 1)
        .expect("epoch 1");
    assert!(e1.destroyed.is_some(), "the tombstone wins");
    assert!(e1.data_key.is_none() && e1.record_key.is_some());
    let listed = keys::list_epochs(reopened.storage()).expect("list");
    assert!(listed[0].destroyed.is_some() && listed[0].stored.is_some());

    let report = keys::destroy_epoch(&reopened, 1).expect("finish");
    assert!(report.already_destroyed);
    assert_eq!(report.deleted.len(), 1);
    let listed = keys::list_epochs(reopened.storage()).expect("list");
    assert!(listed[0].stored.is_none(), "{listed:?}");
    assert_eq!(keys::current_listed(&listed).expect("current").epoch, 2);
}

#[test]
fn a_handle_learns_of_a_rotation_and_rotation_numbers_follow_storage() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = repo(tmp.path());
    let b = open(tmp.path());
    assert_eq!(a.new_epoch().expect("list"), None);
    let r = keys::rotate(&b).expect("rotate");
    assert!(r.rotated);
    assert_eq!(r.epoch, 2);
    assert!(
        a.new_epoch().expect("list").is_some(),
        "a handle opened before sees the new epoch"
    );
    assert!(a.ensure_keys_current().is_err());
    // Rotating through the old handle numbers from storage, not from its stale keyring.
    let r = keys::rotate(&a).expect("rotate");
    assert_eq!(r.epoch, 3);
    let fresh = a.refreshed().expect("refresh");
    assert_eq!(fresh.new_epoch().expect("list"), None);
    assert_eq!(fresh.keyring().current().expect("current").epoch, 3);
    // A young epoch is kept by `rotate_if_older`.
    let kept = keys::rotate_if_older(&fresh, Some(Duration::from_secs(3600))).expect("rotate");
    assert!(!kept.rotated);
    assert_eq!(kept.epoch, 3);
    let infos = keys::epoch_infos(fresh.keyring());
    assert_eq!(
        infos
            .iter()
            .map(|e| (e.epoch, e.current))
            .collect::<Vec<_>>(),
        [(1, false), (2, false), (3, true)]
    );
}
