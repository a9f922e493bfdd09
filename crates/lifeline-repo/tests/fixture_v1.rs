//! A repository written by format version 1 (tests/fixtures/v1, password `fixture-password`, a backup of
//! /tmp/fx/src) must stay readable by every later version. Never regenerate it: add a new fixture.

use std::path::Path;
use std::sync::Arc;

use lifeline_repo::check::{check, ReadData};
use lifeline_repo::storage::LocalStorage;
use lifeline_repo::tree::NodeType;
use lifeline_repo::walk::lookup;
use lifeline_repo::{BlobReader, Repository};

fn open() -> Repository {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1");
    Repository::open(Arc::new(LocalStorage::new(dir)), b"fixture-password")
        .expect("open v1 fixture")
}

fn file_bytes(reader: &BlobReader<'_>, root: lifeline_repo::Id, path: &str) -> Vec<u8> {
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

#[test]
fn version_1_repository_still_reads() {
    let repo = open();
    let (_, snap) = repo.find_snapshot("latest").expect("snapshot");
    assert_eq!(snap.paths, ["/tmp/fx/src"]);
    assert_eq!(snap.tags.get("fixture").map(String::as_str), Some("v1"));
    assert_eq!(snap.summary.files, 2);

    let reader = repo.reader().expect("reader");
    assert_eq!(
        file_bytes(&reader, snap.tree, "/tmp/fx/src/docs/record.txt"),
        b"patient-record-42\n"
    );
    let expected: Vec<u8> = (0..600_000u64).map(|i| ((i * 7919) % 251) as u8).collect();
    assert_eq!(
        file_bytes(&reader, snap.tree, "/tmp/fx/src/docs/scan.bin"),
        expected
    );
    let link = lookup(&reader, snap.tree, b"/tmp/fx/src/link")
        .expect("lookup")
        .expect("link");
    assert_eq!(link.node_type, NodeType::Symlink);
    assert_eq!(link.target.as_deref(), Some(b"docs/record.txt".as_slice()));
}

#[test]
fn version_1_repository_passes_check() {
    let report = check(&open(), ReadData::All).expect("check");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(report.packs_read > 0);
}
