//! Repairs through the library: index entries corrected from trailers, and directories whose
//! listing is lost kept empty in a repaired snapshot.

use std::sync::Arc;

use lifeline_repo::check::{check, ReadData};
use lifeline_repo::chunker::ChunkProfile;
use lifeline_repo::pack::pack_key;
use lifeline_repo::repair::{self, Options};
use lifeline_repo::snapshot::Snapshot;
use lifeline_repo::storage::LocalStorage;
use lifeline_repo::tree::{Node, NodeType, Tree};
use lifeline_repo::{Id, Repository, Writer};

mod common;
use common::pseudo_random;

fn repo(dir: &std::path::Path) -> Repository {
    Repository::init(Arc::new(LocalStorage::new(dir)), b"pw", 1 << 20).expect("init")
}

fn file(name: &str, writer: &Writer<'_>, seed: u64) -> Node {
    let data = pseudo_random(300_000, seed);
    let (refs, size) = writer
        .add_stream(
            data.as_slice(),
            ChunkProfile::Files,
            std::path::Path::new(name),
            &|_| {},
        )
        .expect("stream");
    Node::file(name.as_bytes().to_vec(), size, refs, 0)
}

fn dir(name: &str, subtree: Id) -> Node {
    Node {
        node_type: NodeType::Dir,
        mode: 0o755,
        size: None,
        content: None,
        subtree: Some(subtree),
        ..Node::file(name.as_bytes().to_vec(), 0, Vec::new(), 0)
    }
}

#[test]
fn read_all_packs_corrects_index_entries_that_disagree_with_the_trailer() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = repo(tmp.path());
    let writer = Writer::new(&repo, None, 3).expect("writer");
    let node = file("f", &writer, 1);
    let tree = writer.add_tree(Tree { nodes: vec![node] }).expect("tree");
    writer
        .finish(Snapshot::new("files", vec!["/".into()], tree))
        .expect("finish");

    // An index file whose entry records a wrong raw length: it fits the pack, so only the trailer
    // tells.
    let key = repo.index_keys().expect("keys").remove(0);
    let mut packs = repo.load_index_file(&key).expect("index");
    packs[0].1[0].raw_len += 1;
    let bytes = lifeline_repo::index::seal(repo.keyring(), &packs).expect("seal");
    repo.storage()
        .put(&format!("index/{}", Id::of_stored(&bytes)), &bytes)
        .expect("put");
    repo.storage().delete(&key).expect("delete");
    assert!(!check(&repo, ReadData::All)
        .expect("check")
        .problems
        .is_empty());

    let quick = repair::repair_index(&repo, false).expect("repair");
    assert!(quick.packs_corrected.is_empty(), "{quick:?}");
    let full = repair::repair_index(&repo, true).expect("repair");
    assert_eq!(
        full.packs_corrected,
        vec![pack_key(&packs[0].0)],
        "{full:?}"
    );
    assert_eq!(full.index_files_removed, 1);
    let report = check(&repo, ReadData::All).expect("check");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[test]
fn a_directory_whose_listing_is_lost_is_kept_empty() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = repo(tmp.path());
    let packs = |repo: &Repository| -> Vec<String> {
        let mut keys: Vec<String> = repo
            .storage()
            .list("data/")
            .expect("list")
            .into_iter()
            .map(|o| o.key)
            .collect();
        keys.sort();
        keys
    };
    // The subdirectory's tree lands in a tree pack of its own session ...
    let writer = Writer::new(&repo, None, 3).expect("writer");
    let inner = file("inner", &writer, 2);
    let sub = writer.add_tree(Tree { nodes: vec![inner] }).expect("tree");
    writer
        .finish(Snapshot::new("files", vec!["/".into()], sub))
        .expect("finish");
    let first = packs(&repo);
    // ... and the root, naming it, in the next one.
    let writer = Writer::new(&repo, None, 3).expect("writer");
    let outer = file("outer", &writer, 3);
    let root = writer
        .add_tree(Tree {
            nodes: vec![dir("d", sub), outer],
        })
        .expect("tree");
    let (second, _) = writer
        .finish(Snapshot::new("files", vec!["/".into()], root))
        .expect("finish");
    // Lose the first session's tree pack (the smaller of its two packs).
    let tree_pack = first
        .iter()
        .min_by_key(|k| repo.storage().stat(k).expect("stat").map(|o| o.size))
        .expect("packs");
    repo.storage().delete(tree_pack).expect("delete");

    let report = repair::repair_snapshots(&repo, Options::default()).expect("repair");
    let d = report
        .damaged
        .iter()
        .find(|d| d.snapshot == second.to_hex())
        .expect("the second snapshot is damaged");
    assert_eq!(d.lost.len(), 1, "{:?}", d.lost);
    assert_eq!(d.lost[0].path, "/d/");
    assert!(d.lost[0].message.contains("directory emptied"));
    let new = Id::from_hex(d.repaired.as_deref().expect("repaired")).expect("id");
    let snap = repo.load_snapshot(&new).expect("load");
    let reader = repo.reader().expect("reader");
    let tree = reader.read_tree(&snap.tree).expect("root");
    let names: Vec<&[u8]> = tree.nodes.iter().map(|n| n.name.as_slice()).collect();
    assert_eq!(names, [&b"d"[..], &b"outer"[..]]);
    let emptied = reader
        .read_tree(&tree.nodes[0].subtree.expect("subtree"))
        .expect("empty tree");
    assert!(emptied.nodes.is_empty());
    assert_eq!(snap.errors.len(), 1);
    // The first snapshot's root was that tree: nothing of it is left, so it is not rewritten.
    let first_snap = report
        .damaged
        .iter()
        .find(|d| d.snapshot != second.to_hex())
        .expect("the first snapshot is damaged too");
    assert!(first_snap.repaired.is_none() && first_snap.unrepairable.is_some());
}
