//! Copying snapshots between repositories with different keys.

use std::sync::Arc;

use lifeline_repo::chunker::ChunkProfile;
use lifeline_repo::copy::copy;
use lifeline_repo::snapshot::Snapshot;
use lifeline_repo::storage::LocalStorage;
use lifeline_repo::tree::{Node, Tree};
use lifeline_repo::walk::lookup;
use lifeline_repo::{Repository, Writer};

mod common;
use common::pseudo_random;

fn repo(dir: &std::path::Path, pw: &[u8]) -> Repository {
    Repository::init(Arc::new(LocalStorage::new(dir)), pw, 1 << 20).expect("init")
}

/// A snapshot holding one file `f` with `bytes`, with `parent` as its parent.
fn snapshot_of(repo: &Repository, bytes: &[u8], parent: Option<String>) -> lifeline_repo::Id {
    let w = Writer::new(repo, None, 3).expect("writer");
    let (content, size) = w
        .add_stream(
            bytes,
            ChunkProfile::Files,
            std::path::Path::new("f"),
            &|_| {},
        )
        .expect("stream");
    let node = Node::file(b"f".to_vec(), size, content, 0);
    let tree = w.add_tree(Tree { nodes: vec![node] }).expect("tree");
    let mut snap = Snapshot::new("test", vec!["f".into()], tree);
    snap.parent = parent;
    w.finish(snap).expect("finish").0
}

fn read_f(repo: &Repository, snapshot: &lifeline_repo::Id) -> Vec<u8> {
    let reader = repo.reader().expect("reader");
    let tree = repo.load_snapshot(snapshot).expect("snapshot").tree;
    let node = lookup(&reader, tree, b"f").expect("lookup").expect("f");
    node.content
        .iter()
        .flatten()
        .flat_map(|c| reader.read_blob(c.id()).expect("blob"))
        .collect()
}

#[test]
fn copy_sends_what_is_missing_once_and_reads_back_equal() {
    let (a, b) = (
        tempfile::tempdir().expect("tmp"),
        tempfile::tempdir().expect("tmp"),
    );
    let (src, dst) = (repo(a.path(), b"one"), repo(b.path(), b"two"));
    let v1 = pseudo_random(6 << 20, 1);
    let first = snapshot_of(&src, &v1, None);

    let out = copy(&src, &dst, &[]).expect("copy");
    assert_eq!(out.copied.len(), 1);
    assert!(out.data_added >= 6 << 20);
    assert_eq!(read_f(&dst, &out.copied[0].1), v1);

    let again = copy(&src, &dst, &[]).expect("copy again");
    assert!(again.copied.is_empty(), "nothing new to copy");
    assert_eq!(again.skipped, vec![first]);
    assert_eq!(again.data_added, 0);

    let mut v2 = v1.clone();
    v2.extend_from_slice(&pseudo_random(100_000, 2));
    snapshot_of(&src, &v2, Some(first.to_hex()));
    let inc = copy(&src, &dst, &[]).expect("incremental copy");
    assert_eq!(inc.copied.len(), 1);
    assert!(
        inc.data_added < 3 << 20,
        "only the changed tail travels: {}",
        inc.data_added
    );
    assert_eq!(read_f(&dst, &inc.copied[0].1), v2);
    let copied = dst.load_snapshot(&inc.copied[0].1).expect("snapshot");
    assert_eq!(
        copied.parent,
        Some(out.copied[0].1.to_hex()),
        "the parent is mapped too"
    );
}
