//! The housekeeping commands restic users reach for: `stats` (sizes and deduplication, per kind),
//! `diff` (what changed between two snapshots) and `find` (which snapshots hold a path).
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;

use common::*;
use serde_json::Value;

fn json(repo: &Repo, args: &[&str]) -> Value {
    let out = repo.run(["--json"].iter().chain(args).copied());
    out.assert_success();
    out.json()
}

#[test]
fn stats_shows_logical_and_stored_sizes_per_kind() {
    let repo = Repo::init();
    let src = repo.sandbox.mkdir("src");
    write_random_file(&src.join("a.bin"), 1, 2 * MIB);
    let first = repo.backup(&[&src], &[]);
    repo.backup(&[&src], &[]);
    repo.run_stdin(
        ["backup", "--stdin", "--name", "dump.sql"],
        &random_bytes(2, MIB),
    )
    .assert_success();

    let all = json(&repo, &["stats"]);
    assert_eq!(all["snapshots"], 3);
    assert_eq!(json_u64(&all, "logical_bytes"), 5 * MIB as u64, "{all:#}");
    let stored = json_u64(&all, "stored_bytes");
    assert!(
        stored > 3 * MIB as u64 && stored < 3 * MIB as u64 + 64 * KIB as u64,
        "the same 2 MiB twice is stored once: {all:#}"
    );
    let ratio = all["dedup_ratio"].as_f64().unwrap();
    assert!(ratio > 1.6 && ratio < 1.7, "{ratio}");
    assert_eq!(all["by_kind"]["files"]["snapshots"], 2);
    assert_eq!(all["by_kind"]["stdin"]["snapshots"], 1);
    assert_eq!(
        json_u64(&all["by_kind"]["stdin"], "logical_bytes"),
        MIB as u64
    );
    let objects = &all["repository"];
    assert!(json_u64(objects, "packs") >= 2);
    assert!(json_u64(objects, "total_bytes") >= stored);

    let one = json(&repo, &["stats", &json_str(&first, "snapshot_id")[..8]]);
    assert_eq!(one["snapshots"], 1);
    assert_eq!(json_u64(&one, "logical_bytes"), 2 * MIB as u64);
    assert!(
        one["repository"].is_null(),
        "only the whole repository lists its objects"
    );
    repo.run(["stats"])
        .assert_success()
        .assert_output_contains("files")
        .assert_output_contains("stdin")
        .assert_output_contains("repository:");
}

#[test]
fn diff_lists_added_removed_changed_and_type_changes() {
    let repo = Repo::init();
    let src = repo.sandbox.mkdir("src");
    write_file(&src.join("kept"), b"same");
    write_file(&src.join("changed"), b"before");
    write_file(&src.join("gone"), b"bye");
    fs::create_dir(src.join("dir")).unwrap();
    write_file(&src.join("dir/inner"), b"x");
    write_file(&src.join("becomes-dir"), b"file");
    let a = repo.backup(&[&src], &[]);
    write_file(&src.join("changed"), b"after!");
    fs::remove_file(src.join("gone")).unwrap();
    write_file(&src.join("dir/new"), b"new");
    fs::remove_file(src.join("becomes-dir")).unwrap();
    fs::create_dir(src.join("becomes-dir")).unwrap();
    write_file(&src.join("becomes-dir/child"), b"c");
    set_mode(&src.join("kept"), 0o600);
    let b = repo.backup(&[&src], &[]);
    let (a, b) = (json_str(&a, "snapshot_id"), json_str(&b, "snapshot_id"));

    let d = json(&repo, &["diff", a, b]);
    let root = src.display().to_string();
    let changes: Vec<(String, String)> = d["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                json_str(c, "path").trim_start_matches(&root).to_string(),
                json_str(c, "change").to_string(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("/becomes-dir", "type"),
        ("/changed", "modified"),
        ("/dir/new", "added"),
        ("/gone", "removed"),
    ]
    .iter()
    .map(|(p, c)| (p.to_string(), c.to_string()))
    .collect();
    let interesting: Vec<(String, String)> = changes
        .iter()
        .filter(|(p, _)| !p.is_empty())
        .cloned()
        .collect();
    assert_eq!(interesting, expected, "{d:#}");
    assert_eq!(d["added"], 1);
    assert_eq!(d["removed"], 1);

    let with_meta = json(&repo, &["diff", "--metadata", a, b]);
    assert!(with_meta["changes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| json_str(c, "path").ends_with("/kept") && c["change"] == "metadata"));
    let text = repo.run(["diff", a, b]);
    text.assert_success()
        .assert_output_contains(&format!("M {root}/changed"))
        .assert_output_contains(&format!("+ {root}/dir/new"))
        .assert_output_contains(&format!("- {root}/gone"))
        .assert_output_contains("1 added, 1 removed, 2 changed");
    let same = json(&repo, &["diff", a, a]);
    assert_eq!(same["changes"], serde_json::json!([]));
}

#[test]
fn find_names_the_snapshots_that_hold_a_path() {
    let repo = Repo::init();
    let src = repo.sandbox.mkdir("src");
    write_file(&src.join("notes.txt"), b"n");
    fs::create_dir_all(src.join("scans/2026")).unwrap();
    write_file(&src.join("scans/2026/ct-1.pdf"), b"pdf");
    let first = repo.backup(&[&src], &[]);
    fs::remove_file(src.join("scans/2026/ct-1.pdf")).unwrap();
    write_file(&src.join("scans/2026/mri-2.pdf"), b"pdf2");
    let second = repo.backup(&[&src], &[]);

    let by_name = json(&repo, &["find", "*.pdf"]);
    let rows = by_name.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{by_name:#}");
    assert_eq!(rows[0]["snapshot"], first["snapshot_id"]);
    assert!(json_str(&rows[0]["matches"][0], "path").ends_with("/scans/2026/ct-1.pdf"));
    assert_eq!(rows[1]["snapshot"], second["snapshot_id"]);
    assert!(json_str(&rows[1]["matches"][0], "path").ends_with("/scans/2026/mri-2.pdf"));
    assert_eq!(rows[1]["matches"][0]["size"], 4);

    let only_first = json(&repo, &["find", "ct-*"]);
    assert_eq!(only_first.as_array().unwrap().len(), 1);
    // With a slash the pattern matches whole paths; `*` stops at `/`, `**` does not.
    let whole = format!("{}/**/mri-*.pdf", src.display());
    assert_eq!(json(&repo, &["find", &whole]).as_array().unwrap().len(), 1);
    let shallow = format!("{}/*/mri-*.pdf", src.display());
    assert_eq!(
        json(&repo, &["find", &shallow]).as_array().unwrap().len(),
        0
    );
    let in_one = json(
        &repo,
        &[
            "find",
            "*.txt",
            "--snapshot",
            &json_str(&second, "snapshot_id")[..8],
        ],
    );
    assert_eq!(in_one.as_array().unwrap().len(), 1);
    repo.run(["find", "*.pdf"])
        .assert_success()
        .assert_output_contains("2 snapshot(s) of 2 hold a match");
    repo.run(["find", "[bad"])
        .assert_code(EXIT_FATAL)
        .assert_output_contains("not a glob pattern");
}
