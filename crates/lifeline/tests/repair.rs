//! `repair index` and `repair snapshots` (issue 9): damage `check` reports can be repaired, as in
//! restic, without losing what is still readable.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

fn index_files(repo: &Repo) -> Vec<PathBuf> {
    let mut v = regular_files_under(&repo.path.join("index"));
    v.sort();
    v
}

/// Every object of the repository but session markers, with its bytes' fingerprint.
fn objects(repo: &Repo) -> BTreeMap<PathBuf, u64> {
    regular_files_under(&repo.path)
        .into_iter()
        .filter(|p| !p.starts_with(repo.path.join("sessions")))
        .map(|p| {
            let sum = fnv1a(&fs::read(&p).unwrap());
            (p, sum)
        })
        .collect()
}

fn source(repo: &Repo) -> PathBuf {
    let src = repo.sandbox.mkdir("src");
    write_file(&src.join("keep.txt"), "kept\n");
    write_file(&src.join("docs/report.txt"), "a report\n");
    write_random_file(&src.join("docs/scan.bin"), 1, 700 * KIB);
    src
}

/// A repository with two snapshots; the second added `lost.bin`, whose data pack is then deleted.
/// Returns the source and the second snapshot's ID.
fn with_a_lost_pack(repo: &Repo) -> (PathBuf, String) {
    let src = source(repo);
    repo.backup(&[&src], &[]);
    let before = repo.packs();
    write_random_file(&src.join("docs/lost.bin"), 2, 2 * MIB);
    let second = json_str(&repo.backup(&[&src], &[]), "snapshot_id").to_string();
    // The new data pack is the large one; the other new pack holds the trees.
    let lost = repo
        .packs()
        .into_iter()
        .filter(|p| !before.contains(p))
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    fs::remove_file(&lost).unwrap();
    (src, second)
}

fn snapshot<'a>(list: &'a [Value], id: &str) -> Option<&'a Value> {
    list.iter().find(|s| json_str(s, "id") == id)
}

fn repaired_of<'a>(list: &'a [Value], original: &str) -> Vec<&'a Value> {
    list.iter()
        .filter(|s| s["tags"]["repaired"].as_str() == Some(&original[..8]))
        .collect()
}

#[track_caller]
fn assert_restores_source(repo: &Repo, snapshot: &str, src: &Path, name: &str) {
    let target = repo.restore(snapshot, name);
    assert_trees_equal(src, &restored(&target, src), Compare::content_only());
}

#[test]
fn a_deleted_index_file_is_rebuilt_from_pack_trailers() {
    let repo = Repo::init();
    let src = source(&repo);
    repo.backup(&[&src], &[]);
    write_file(&src.join("later.txt"), "second backup\n");
    repo.backup(&[&src], &[]);
    for f in index_files(&repo) {
        fs::remove_file(f).unwrap();
    }
    repo.run(["check"])
        .assert_code(EXIT_FATAL)
        .assert_output_contains("lifeline repair index");

    let out = repo.run(["repair", "index", "--json"]);
    out.assert_success();
    let v = out.json();
    assert_eq!(
        json_u64(&v, "packs_added"),
        repo.packs().len() as u64,
        "{v}"
    );
    assert!(json_u64(&v, "index_files_written") >= 1, "{v}");
    assert!(!index_files(&repo).is_empty());

    let out = repo.run(["check", "--read-data", "--json"]);
    out.assert_success();
    assert_eq!(json_u64(&out.json(), "unindexed_packs"), 0);
    assert_restores_source(&repo, "latest", &src, "restored");

    // A sound index is left alone.
    let before = index_files(&repo);
    repo.run(["repair", "index"])
        .assert_success()
        .assert_output_contains("nothing to repair");
    assert_eq!(index_files(&repo), before);
}

#[test]
fn a_damaged_index_file_is_superseded_by_repair_index() {
    let repo = Repo::init();
    let src = source(&repo);
    repo.backup(&[&src], &[]);
    write_file(&src.join("later.txt"), "second backup\n");
    repo.backup(&[&src], &[]);
    let damaged = index_files(&repo)[0].clone();
    let mut bytes = fs::read(&damaged).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x55;
    fs::write(&damaged, bytes).unwrap();
    let key = format!("index/{}", file_name_str(&damaged));
    repo.run(["check"])
        .assert_code(EXIT_FATAL)
        .assert_output_contains(&key)
        .assert_output_contains("lifeline repair index");

    let out = repo.run(["repair", "index", "--json"]);
    out.assert_success();
    let v = out.json();
    assert_eq!(v["damaged_index_files"], serde_json::json!([key]), "{v}");
    assert!(json_u64(&v, "packs_added") >= 1, "{v}");
    assert!(!damaged.exists(), "the damaged index file is removed");

    repo.run(["check", "--read-data"])
        .assert_success()
        .assert_output_contains("no errors were found");
    assert_restores_source(&repo, "latest", &src, "restored");
}

#[test]
fn repair_index_drops_the_entries_of_a_pack_that_is_gone() {
    let repo = Repo::init();
    let (_, second) = with_a_lost_pack(&repo);
    let out = repo.run(["check"]);
    out.assert_code(EXIT_FATAL)
        .assert_output_contains("storage has no such object")
        .assert_output_contains("lifeline repair index");

    let out = repo.run(["repair", "index", "--json"]);
    out.assert_success();
    let v = out.json();
    assert_eq!(v["missing_packs"].as_array().unwrap().len(), 1, "{v}");
    assert!(json_u64(&v, "blobs_dropped") >= 1, "{v}");

    // What is lost now shows as missing blobs of the second snapshot, and check says what to do.
    let out = repo.run(["check", "--json"]);
    out.assert_code(EXIT_FATAL);
    let v = out.json();
    assert_eq!(v["damaged_snapshots"], serde_json::json!([second]), "{v}");
    assert!(v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| json_str(p, "object").starts_with("blob ")));
    let hints = v["hints"].to_string();
    assert!(hints.contains("lifeline repair snapshots"), "{v}");
    assert!(!hints.contains("repair index"), "{v}");
}

#[test]
fn repair_snapshots_rewrites_a_snapshot_whose_pack_was_lost_and_keeps_the_original() {
    let repo = Repo::init();
    let (src, second) = with_a_lost_pack(&repo);
    repo.run(["repair", "index"]).assert_success();

    let out = repo.run(["repair", "snapshots", "--json"]);
    out.assert_success();
    let v = out.json();
    let damaged = v["damaged"].as_array().unwrap();
    assert_eq!(damaged.len(), 1, "only the second snapshot lost data: {v}");
    let d = &damaged[0];
    assert_eq!(json_str(d, "snapshot"), second);
    let lost_path = src.join("docs/lost.bin").display().to_string();
    assert_eq!(d["lost"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(json_str(&d["lost"][0], "path"), lost_path);
    assert_eq!(d["forgotten"], false);
    let new_id = json_str(d, "repaired").to_string();

    let list = repo.snapshots();
    assert_eq!(
        list.len(),
        3,
        "the original is kept beside the repaired one"
    );
    assert!(snapshot(&list, &second).is_some());
    let new = snapshot(&list, &new_id).unwrap();
    assert_eq!(new["tags"]["repaired"], second[..8]);
    assert!(
        new["errors"].to_string().contains(&lost_path),
        "the repaired snapshot records what was lost: {new}"
    );

    // The repaired snapshot restores everything but the lost file.
    fs::remove_file(src.join("docs/lost.bin")).unwrap();
    assert_restores_source(&repo, &new_id, &src, "restored");

    // check now names only the original; the repaired snapshot is sound.
    let out = repo.run(["check", "--json"]);
    out.assert_code(EXIT_FATAL);
    assert_eq!(out.json()["damaged_snapshots"], serde_json::json!([second]));

    // A second run writes nothing new.
    let out = repo.run(["repair", "snapshots", "--json"]);
    out.assert_success();
    let v = out.json();
    assert_eq!(json_str(&v["damaged"][0], "repaired"), new_id, "{v}");
    assert_eq!(v["damaged"][0]["already_repaired"], true);
    assert_eq!(repo.snapshots().len(), 3);
}

#[test]
fn repair_snapshots_forget_removes_the_original() {
    let repo = Repo::init();
    let (src, second) = with_a_lost_pack(&repo);
    repo.run(["repair", "index"]).assert_success();
    let out = repo.run(["repair", "snapshots", "--forget"]);
    out.assert_success()
        .assert_output_contains("docs/lost.bin")
        .assert_output_contains("the original is forgotten");

    let list = repo.snapshots();
    assert_eq!(list.len(), 2, "the first snapshot and the repaired second");
    assert!(snapshot(&list, &second).is_none(), "the original is gone");
    assert_eq!(repaired_of(&list, &second).len(), 1);
    repo.run(["check", "--read-data"])
        .assert_success()
        .assert_output_contains("no errors were found");
    fs::remove_file(src.join("docs/lost.bin")).unwrap();
    assert_restores_source(&repo, "latest", &src, "restored");
}

#[test]
fn repair_snapshots_forget_keeps_a_held_original() {
    let repo = Repo::init();
    let (_, second) = with_a_lost_pack(&repo);
    repo.run(["hold", "add", &second, "--reason", "case 7"])
        .assert_success();
    repo.run(["repair", "index"]).assert_success();
    let out = repo.run(["repair", "snapshots", "--forget", "--json"]);
    out.assert_success();
    let v = out.json();
    assert_eq!(v["damaged"][0]["held"], true, "{v}");
    assert_eq!(v["damaged"][0]["forgotten"], false, "{v}");
    let list = repo.snapshots();
    assert!(snapshot(&list, &second).is_some(), "a held snapshot stays");
    assert_eq!(repaired_of(&list, &second).len(), 1);
}

#[test]
fn repair_snapshots_dry_run_changes_nothing() {
    let repo = Repo::init();
    let (src, second) = with_a_lost_pack(&repo);
    repo.run(["repair", "index"]).assert_success();
    let before = objects(&repo);
    let out = repo.run(["repair", "snapshots", "--dry-run", "--forget"]);
    out.assert_success()
        .assert_output_contains(&src.join("docs/lost.bin").display().to_string())
        .assert_output_contains(&second[..8])
        .assert_output_contains("dry run: nothing was changed");
    assert_eq!(
        objects(&repo),
        before,
        "a dry run writes and deletes nothing"
    );
}

/// Prune and repair both rewrite what the index says: neither starts while the other runs.
#[test]
fn repair_and_prune_do_not_run_at_once() {
    let repo = Repo::init();
    let src = source(&repo);
    repo.backup(&[&src], &[]);
    let dir = repo.path.join("sessions");
    let live = |command: &str| {
        // A live session of another host, written as lifeline writes it.
        let marker = serde_json::json!({
            "session": "0123456789abcdef0123456789abcdef", "seq": 0, "hostname": "elsewhere",
            "pid": 4242, "boot_id": "x", "pid_namespace": "y", "command": command,
            "started": "2026-12-01T00:00:00Z"
        });
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("0123456789abcdef0123456789abcdef-0"),
            marker.to_string(),
        )
        .unwrap();
    };
    live("prune");
    for args in [&["repair", "index"][..], &["repair", "snapshots"][..]] {
        repo.run(args)
            .assert_code(EXIT_FATAL)
            .assert_output_contains("a prune is running (host elsewhere");
    }
    live("repair");
    repo.run(["prune"])
        .assert_code(EXIT_FATAL)
        .assert_output_contains("another repair is running (host elsewhere");
    fs::remove_file(dir.join("0123456789abcdef0123456789abcdef-0")).unwrap();
    repo.run(["repair", "index"]).assert_success();
    repo.run(["repair", "snapshots"]).assert_success();
}
