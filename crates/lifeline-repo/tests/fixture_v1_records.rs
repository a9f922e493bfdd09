//! A repository with the records of the 2026-12 addition to format version 1 (tests/fixtures/
//! v1-records, password `fixture-password`): two `stdin` snapshots, a legal hold on the first, a
//! verification record (first ok, second damaged), and a prune mark over the packs of a forgotten
//! third snapshot, with the merged index that mark's run wrote. Every later version must read it.
//! Never regenerate it: add a new fixture.

use std::path::Path;
use std::sync::Arc;

use lifeline_repo::check::{check, ReadData};
use lifeline_repo::garbage;
use lifeline_repo::hold::Holds;
use lifeline_repo::storage::LocalStorage;
use lifeline_repo::verification::{Outcome, Scope, Verifications};
use lifeline_repo::walk::lookup;
use lifeline_repo::Repository;

fn open() -> Repository {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1-records");
    Repository::open(Arc::new(LocalStorage::new(dir)), b"fixture-password")
        .expect("open the v1-records fixture")
}

fn content(repo: &Repository, name: &str) -> Vec<u8> {
    let snapshots = repo.snapshots().expect("snapshots");
    let (_, snap) = snapshots
        .iter()
        .find(|(_, s)| s.paths == [name])
        .unwrap_or_else(|| panic!("a snapshot of {name}"));
    let reader = repo.reader().expect("reader");
    let node = lookup(&reader, snap.tree, name.as_bytes())
        .expect("lookup")
        .expect("the file");
    let mut out = Vec::new();
    for part in node.content.iter().flatten() {
        let chunk = reader.read_blob(part.id()).expect("blob");
        out.extend_from_slice(
            &chunk[part.offset() as usize..(part.offset() + part.len()) as usize],
        );
    }
    out
}

#[test]
fn records_of_the_2026_12_addition_still_read() {
    let repo = open();
    let snapshots = repo.snapshots().expect("snapshots");
    assert_eq!(snapshots.len(), 2);
    let (held, other) = (snapshots[0].0, snapshots[1].0);
    assert_eq!(content(&repo, "held.txt"), b"held-record-7\n");
    assert_eq!(content(&repo, "other.txt"), b"other-record-8\n");

    let holds = Holds::load(&repo).expect("holds");
    assert_eq!(
        holds.get(&held).map(|h| h.reason.as_str()),
        Some("fixture case 1")
    );
    assert!(!holds.is_held(&other));

    let verified = Verifications::load(&repo).expect("verifications").latest();
    assert_eq!(verified[&held].result, Outcome::Ok);
    assert_eq!(verified[&held].scope, Scope::All);
    assert_eq!(verified[&other].result, Outcome::Damaged);

    let marks = garbage::load(&repo).expect("marks");
    assert!(marks.damaged.is_empty());
    assert_eq!(marks.items.len(), 1);
    assert_eq!(marks.items[0].record.packs.len(), 2);
    assert_eq!(marks.items[0].record.indexes.len(), 3);
}

#[test]
fn the_records_fixture_passes_check_with_its_marked_garbage() {
    let report = check(&open(), ReadData::All).expect("check");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.packs_being_deleted, 2);
    assert_eq!(report.snapshots, 2);
}
