//! The write path and the read path agree, through real packs on a real (local) storage.

use std::sync::Arc;

use lifeline_repo::chunker::ChunkProfile;
use lifeline_repo::pack::BlobKind;
use lifeline_repo::snapshot::Snapshot;
use lifeline_repo::storage::{LocalStorage, Storage};
use lifeline_repo::tree::Tree;
use lifeline_repo::{Error, ErrorKind, Repository, Writer};
use proptest::prelude::*;

mod common;
use common::pseudo_random;

fn repo(dir: &std::path::Path) -> Repository {
    Repository::init(Arc::new(LocalStorage::new(dir)), b"pw", 1 << 20).expect("init")
}

fn store(
    repo: &Repository,
    data: &[u8],
) -> (lifeline_repo::Id, Vec<lifeline_repo::tree::ContentRef>) {
    let writer = Writer::new(repo, None, 3).expect("writer");
    let (refs, size) = writer
        .add_stream(
            data,
            ChunkProfile::Files,
            std::path::Path::new("t"),
            &|_| {},
        )
        .expect("stream");
    assert_eq!(size, data.len() as u64);
    let tree = writer.add_tree(Tree::default()).expect("tree");
    let (id, _) = writer
        .finish(Snapshot::new("test", vec![], tree))
        .expect("finish");
    (id, refs)
}

fn read_back(repo: &Repository, refs: &[lifeline_repo::tree::ContentRef]) -> Vec<u8> {
    let reader = repo.reader().expect("reader");
    let mut out = Vec::new();
    for r in refs {
        let chunk = reader.read_blob(r.id()).expect("blob");
        out.extend_from_slice(&chunk[r.offset() as usize..(r.offset() + r.len()) as usize]);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]
    #[test]
    fn streams_round_trip(len in 0usize..6_000_000, seed in any::<u64>(), compressible in any::<bool>()) {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = repo(dir.path());
        let mut data = pseudo_random(len, seed);
        if compressible {
            data.iter_mut().for_each(|b| *b %= 4);
        }
        let (_, refs) = store(&repo, &data);
        prop_assert_eq!(read_back(&repo, &refs), data);
    }
}

#[test]
fn identical_data_is_stored_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = repo(dir.path());
    let data = pseudo_random(5 << 20, 42);
    let (first, _) = store(&repo, &data);
    let (second, _) = store(&repo, &data);
    let added = |id| repo.load_snapshot(id).expect("snapshot").summary.data_added;
    assert!(added(&first) >= 5 << 20);
    assert!(
        added(&second) < 4096,
        "second copy added {} bytes",
        added(&second)
    );
}

#[test]
fn a_wrong_password_is_refused_without_writing() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(repo(dir.path()));
    let storage = Arc::new(LocalStorage::new(dir.path()));
    let before = storage.list("").expect("list");
    let err = Repository::open(storage.clone(), b"nope")
        .err()
        .expect("must fail");
    assert_eq!(err.kind(), ErrorKind::WrongPassword);
    assert_eq!(storage.list("").expect("list"), before);
}

#[test]
fn a_missing_repository_is_reported_as_such() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = Repository::open(Arc::new(LocalStorage::new(dir.path().join("none"))), b"pw")
        .err()
        .expect("must fail");
    assert_eq!(err.kind(), ErrorKind::RepositoryNotFound);
}

#[test]
fn packs_of_a_killed_writer_are_adopted_not_uploaded_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = repo(dir.path());
    let data = pseudo_random(4 << 20, 7);
    {
        // A session that writes packs but dies before its index and snapshot.
        let writer = Writer::new(&repo, None, 3).expect("writer");
        for chunk in data.chunks(512 << 10) {
            writer.add_blob(BlobKind::Data, chunk).expect("blob");
        }
        drop(writer.add_blob(BlobKind::Data, &pseudo_random(2 << 20, 8)));
    }
    let packs_before = repo.storage().list("data/").expect("list").len();
    assert!(
        packs_before > 0,
        "full packs were uploaded before the crash"
    );
    assert!(repo.storage().list("index/").expect("list").is_empty());

    let writer = Writer::new(&repo, None, 3).expect("writer");
    for chunk in data.chunks(512 << 10) {
        writer.add_blob(BlobKind::Data, chunk).expect("blob");
    }
    let tree = writer.add_tree(Tree::default()).expect("tree");
    let (id, snap) = writer
        .finish(Snapshot::new("test", vec![], tree))
        .expect("finish");
    assert!(
        snap.summary.data_added < 2 << 20,
        "re-added {} bytes that had already landed",
        snap.summary.data_added
    );
    let report =
        lifeline_repo::check::check(&repo, lifeline_repo::check::ReadData::All).expect("check");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.unindexed_packs, 0, "adopted packs are indexed now");
    assert!(repo.load_snapshot(&id).is_ok());
}

#[test]
fn a_flipped_byte_is_caught_and_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = repo(dir.path());
    let data = pseudo_random(3 << 20, 9);
    let (_, refs) = store(&repo, &data);
    let pack = repo
        .storage()
        .list("data/")
        .expect("list")
        .into_iter()
        .max_by_key(|o| o.size)
        .expect("a pack");
    let path = dir.path().join(&pack.key);
    let mut bytes = std::fs::read(&path).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&path, bytes).expect("write");

    let reader = repo.reader().expect("reader");
    let failures: Vec<Error> = refs
        .iter()
        .filter_map(|r| reader.read_blob(r.id()).err())
        .collect();
    assert_eq!(failures.len(), 1, "exactly the damaged blob fails");
    assert_eq!(failures[0].kind(), ErrorKind::Damaged);
    let report =
        lifeline_repo::check::check(&repo, lifeline_repo::check::ReadData::All).expect("check");
    assert!(
        report.problems.iter().any(|p| p.object == pack.key),
        "{:?}",
        report.problems
    );
}

#[test]
fn a_damaged_index_is_reported_but_does_not_block_reading() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = repo(dir.path());
    let data = pseudo_random(2 << 20, 13);
    let (_, refs) = store(&repo, &data);
    let index = repo.storage().list("index/").expect("list").remove(0);
    let path = dir.path().join(&index.key);
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[60] ^= 1;
    std::fs::write(&path, bytes).expect("write");

    // Its packs are adopted from their trailers, so the data stays readable ...
    assert_eq!(read_back(&repo, &refs), data);
    // ... while check names the damaged index.
    let report =
        lifeline_repo::check::check(&repo, lifeline_repo::check::ReadData::None).expect("check");
    assert!(
        report.problems.iter().any(|p| p.object == index.key),
        "{:?}",
        report.problems
    );
}
