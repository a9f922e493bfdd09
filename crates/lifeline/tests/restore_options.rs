//! `restore` into a target that is not empty, or of part of a snapshot (issue 9, items 12 and 13):
//! `--include`/`--exclude`, `SNAPSHOT:PATH`, `--overwrite`, `--delete` and `--dry-run`. Each test is
//! named after the behaviour it pins.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;

/// An mtime well before any backup, and one well after.
const OLD: i64 = 1_000_000_000;
const FUTURE_SECS_AHEAD: i64 = 100_000_000;

/// Backs up `src`: docs/{a.txt, sub/b.pdf}, other/{c.pdf, d.txt}, cache/x.tmp, top.txt.
fn backed_up(repo: &Repo) -> PathBuf {
    let src = repo.sandbox.mkdir("src");
    write_file(&src.join("docs/a.txt"), "alpha");
    write_file(&src.join("docs/sub/b.pdf"), "bravo pdf");
    write_file(&src.join("other/c.pdf"), "charlie pdf");
    write_file(&src.join("other/d.txt"), "delta");
    write_file(&src.join("cache/x.tmp"), "scratch");
    write_file(&src.join("top.txt"), "top");
    set_mode(&src.join("docs"), 0o750);
    stamp_mtimes(&src, 1_500_000_000);
    repo.backup(&[&src], &[]);
    src
}

/// `lifeline restore ARGS... --json`.
fn restore(repo: &Repo, args: &[&str]) -> Out {
    let mut all = vec!["restore", "--json"];
    all.extend_from_slice(args);
    repo.run(all)
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Every entry under `root`, relative, sorted (root itself left out).
fn entries(root: &Path) -> Vec<String> {
    scan_tree(root)
        .into_keys()
        .filter(|p| !p.as_os_str().is_empty())
        .map(|p| p.to_string_lossy().into_owned())
        .collect()
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn restore_include_brings_back_only_the_matching_files_and_their_parents() {
    let repo = Repo::init();
    let src = backed_up(&repo);
    let target = repo.join("by-name");
    restore(
        &repo,
        &["latest", "--target", s(&target), "--include", "*.pdf"],
    )
    .assert_success();
    let root = restored(&target, &src);
    assert_eq!(
        entries(&root),
        ["docs", "docs/sub", "docs/sub/b.pdf", "other", "other/c.pdf"]
    );
    assert_eq!(fs::read(root.join("other/c.pdf")).unwrap(), b"charlie pdf");
    // A directory restored only to lead to a match still gets the snapshot's metadata.
    assert_eq!(mode_of(&root.join("docs")), 0o750);

    // A path pattern naming a directory brings back everything below it.
    let target = repo.join("by-path");
    let docs = format!("{}/docs", s(&src));
    restore(
        &repo,
        &["latest", "--target", s(&target), "--include", &docs],
    )
    .assert_success();
    let root = restored(&target, &src);
    assert_eq!(
        entries(&root),
        ["docs", "docs/a.txt", "docs/sub", "docs/sub/b.pdf"]
    );

    // A pattern that matches nothing is refused, rather than restoring nothing quietly.
    let target = repo.join("nothing");
    let out = restore(
        &repo,
        &["latest", "--target", s(&target), "--include", "*.docx"],
    );
    out.assert_failure()
        .assert_output_contains("matches the include patterns");
    assert!(!target.exists());
}

#[test]
fn restore_exclude_leaves_a_subtree_out() {
    let repo = Repo::init();
    let src = backed_up(&repo);
    let target = repo.join("t");
    let cache = format!("{}/cache", s(&src));
    restore(
        &repo,
        &[
            "latest",
            "--target",
            s(&target),
            "--exclude",
            &cache,
            "--exclude",
            "*.txt",
        ],
    )
    .assert_success();
    let root = restored(&target, &src);
    assert_eq!(
        entries(&root),
        ["docs", "docs/sub", "docs/sub/b.pdf", "other", "other/c.pdf"]
    );

    // Exclude wins over include.
    let target = repo.join("both");
    restore(
        &repo,
        &[
            "latest",
            "--target",
            s(&target),
            "--include",
            "*.pdf",
            "--exclude",
            "sub",
        ],
    )
    .assert_success();
    assert_eq!(entries(&restored(&target, &src)), ["other", "other/c.pdf"]);
}

#[test]
fn restore_of_a_subpath_lands_its_contents_in_the_target() {
    let repo = Repo::init();
    let src = backed_up(&repo);
    let target = repo.join("t");
    let out = restore(
        &repo,
        &[&format!("latest:{}/docs/", s(&src)), "--target", s(&target)],
    );
    out.assert_success();
    assert_eq!(entries(&target), ["a.txt", "sub", "sub/b.pdf"]);
    assert_eq!(fs::read(target.join("a.txt")).unwrap(), b"alpha");
    assert_eq!(json_u64(&out.json(), "files"), 2);

    // With a snapshot ID prefix too, and patterns still see full snapshot paths.
    let id = json_str(&repo.snapshots()[0], "id").to_string();
    let target = repo.join("by-id");
    restore(
        &repo,
        &[
            &format!("{}:{}", &id[..8], s(&src)),
            "--target",
            s(&target),
            "--include",
            &format!("{}/other", s(&src)),
        ],
    )
    .assert_success();
    assert_eq!(entries(&target), ["other", "other/c.pdf", "other/d.txt"]);
}

#[test]
fn a_subpath_not_in_the_snapshot_is_refused_before_writing() {
    let repo = Repo::init();
    let src = backed_up(&repo);
    let target = repo.join("t");
    let missing = format!("{}/nope", s(&src));
    let out = repo.run([
        "restore",
        &format!("latest:{missing}"),
        "--target",
        s(&target),
    ]);
    out.assert_code(EXIT_FATAL)
        .assert_output_contains(&format!("{missing} is not in snapshot"));
    assert!(!target.exists(), "the target was created");

    // A file is not a directory to restore the contents of; the error says what to do instead.
    let file = format!("{}/top.txt", s(&src));
    let out = repo.run(["restore", &format!("latest:{file}"), "--target", s(&target)]);
    out.assert_code(EXIT_FATAL)
        .assert_output_contains("not a directory")
        .assert_output_contains("lifeline dump");
    assert!(!target.exists(), "the target was created");

    let out = repo.run(["restore", ":/x", "--target", s(&target)]);
    out.assert_code(EXIT_FATAL)
        .assert_output_contains("names no snapshot");
}

/// A target with the snapshot restored, then three local changes: `top.txt` edited (its size
/// differs), `docs/a.txt` edited with the same size and mtime as the snapshot's, `other/d.txt`
/// removed. Returns the restored root.
fn edited_target(repo: &Repo, src: &Path, target: &Path) -> PathBuf {
    restore(repo, &["latest", "--target", s(target)]).assert_success();
    let root = restored(target, src);
    write_file(&root.join("top.txt"), "local edit");
    let a = root.join("docs/a.txt");
    let mtime = fs::metadata(&a).unwrap().modified().unwrap();
    write_file(&a, "ALPHA");
    fs::File::open(&a).unwrap().set_modified(mtime).unwrap();
    fs::remove_file(root.join("other/d.txt")).unwrap();
    root
}

#[test]
fn restore_by_default_keeps_a_local_file_that_changed() {
    let repo = Repo::init();
    let src = backed_up(&repo);
    let target = repo.join("t");
    let root = edited_target(&repo, &src, &target);
    let out = restore(&repo, &["latest", "--target", s(&target)]);
    out.assert_success();
    assert_eq!(fs::read(root.join("top.txt")).unwrap(), b"local edit");
    assert_eq!(fs::read(root.join("docs/a.txt")).unwrap(), b"ALPHA");
    assert_eq!(fs::read(root.join("other/d.txt")).unwrap(), b"delta");
    let v = out.json();
    assert_eq!(json_u64(&v, "files"), 1, "{v}");
    assert_eq!(json_u64(&v, "kept"), 1, "{v}");
    assert_eq!(json_u64(&v, "unchanged"), 4, "{v}");
    assert_eq!(v["kept_paths"][0], s(&root.join("top.txt")), "{v}");

    // The text report says what was kept and how to replace it.
    let out = repo.run(["restore", "latest", "--target", s(&target)]);
    out.assert_success()
        .assert_output_contains("1 existing file(s) that differ kept")
        .assert_output_contains("--overwrite if-changed");
}

#[test]
fn overwrite_never_leaves_even_an_older_changed_file_alone() {
    let repo = Repo::init();
    let src = backed_up(&repo);
    let target = repo.join("t");
    let root = edited_target(&repo, &src, &target);
    set_mtime(&root.join("top.txt"), OLD, 0);
    let out = restore(
        &repo,
        &["latest", "--target", s(&target), "--overwrite", "never"],
    );
    out.assert_success();
    assert_eq!(fs::read(root.join("top.txt")).unwrap(), b"local edit");
    assert_eq!(json_u64(&out.json(), "kept"), 1);
}

#[test]
fn overwrite_always_rewrites_even_a_file_that_looks_unchanged() {
    let repo = Repo::init();
    let src = backed_up(&repo);
    let target = repo.join("t");
    let root = edited_target(&repo, &src, &target);
    let out = restore(
        &repo,
        &["latest", "--target", s(&target), "--overwrite", "always"],
    );
    out.assert_success();
    assert_eq!(fs::read(root.join("top.txt")).unwrap(), b"top");
    assert_eq!(fs::read(root.join("docs/a.txt")).unwrap(), b"alpha");
    assert_eq!(fs::read(root.join("other/d.txt")).unwrap(), b"delta");
    let v = out.json();
    assert_eq!(json_u64(&v, "files"), 6, "{v}");
    assert_eq!(json_u64(&v, "kept") + json_u64(&v, "unchanged"), 0, "{v}");
    assert_trees_equal(&src, &root, Compare::everything());
}

#[test]
fn overwrite_if_changed_rewrites_files_whose_size_or_mtime_differ() {
    let repo = Repo::init();
    let src = backed_up(&repo);
    let target = repo.join("t");
    let root = edited_target(&repo, &src, &target);
    let out = restore(
        &repo,
        &[
            "latest",
            "--target",
            s(&target),
            "--overwrite",
            "if-changed",
        ],
    );
    out.assert_success();
    assert_eq!(fs::read(root.join("top.txt")).unwrap(), b"top");
    assert_eq!(fs::read(root.join("other/d.txt")).unwrap(), b"delta");
    // Same size and mtime: taken as up to date without reading it (restic's fast path).
    assert_eq!(fs::read(root.join("docs/a.txt")).unwrap(), b"ALPHA");
    let v = out.json();
    assert_eq!(json_u64(&v, "files"), 2, "{v}");
    assert_eq!(json_u64(&v, "unchanged"), 4, "{v}");
    assert_eq!(json_u64(&v, "kept"), 0, "{v}");
}

#[test]
fn overwrite_if_newer_replaces_only_files_older_than_the_snapshot() {
    let repo = Repo::init();
    let src = backed_up(&repo);
    let target = repo.join("t");
    let root = edited_target(&repo, &src, &target);
    let older = root.join("top.txt");
    set_mtime(&older, OLD, 0);
    let newer = root.join("other/c.pdf");
    write_file(&newer, "a newer local pdf");
    set_mtime(&newer, now_secs() + FUTURE_SECS_AHEAD, 0);
    let out = restore(
        &repo,
        &["latest", "--target", s(&target), "--overwrite", "if-newer"],
    );
    out.assert_success();
    assert_eq!(fs::read(&older).unwrap(), b"top");
    assert_eq!(fs::read(&newer).unwrap(), b"a newer local pdf");
    let v = out.json();
    assert_eq!(v["kept_paths"], serde_json::json!([s(&newer)]), "{v}");
}

/// Regression: a symlink in the target where the snapshot has a directory was followed, so the
/// restore wrote wherever it pointed, outside the target.
#[test]
fn restore_never_writes_through_a_symlink_where_the_snapshot_has_a_directory() {
    let repo = Repo::init();
    let src = backed_up(&repo);
    let outside = repo.sandbox.mkdir("outside");
    let target = repo.join("t");
    let root = restored(&target, &src);
    fs::create_dir_all(&root).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("docs")).unwrap();

    let out = restore(&repo, &["latest", "--target", s(&target)]);
    out.assert_success();
    assert!(entries(&outside).is_empty(), "{:?}", entries(&outside));
    assert_eq!(
        out.json()["kept_paths"],
        serde_json::json!([s(&root.join("docs"))])
    );

    restore(
        &repo,
        &[
            "latest",
            "--target",
            s(&target),
            "--overwrite",
            "always",
            "--delete",
        ],
    )
    .assert_success();
    assert!(entries(&outside).is_empty(), "{:?}", entries(&outside));
    assert!(root.join("docs").symlink_metadata().unwrap().is_dir());
    assert_eq!(fs::read(root.join("docs/a.txt")).unwrap(), b"alpha");
}

#[test]
fn restore_delete_makes_the_target_match_the_snapshot() {
    let repo = Repo::init();
    let src = backed_up(&repo);
    let target = repo.join("t");
    let root = edited_target(&repo, &src, &target);
    write_file(&root.join("docs/new.txt"), "not in the snapshot");
    write_file(&root.join("junk/deep/file"), "not in the snapshot");
    std::os::unix::fs::symlink("/etc", root.join("link")).unwrap();
    write_file(&target.join("beside.txt"), "outside the snapshot's paths");
    let before = entries(&target);

    // A dry run lists and changes nothing.
    let out = repo.run([
        "restore",
        "latest",
        "--target",
        s(&target),
        "--delete",
        "--overwrite",
        "if-changed",
        "--dry-run",
    ]);
    out.assert_success()
        .assert_output_contains(&format!("would delete {}", s(&root.join("junk"))))
        .assert_output_contains(&format!("would delete {}", s(&root.join("link"))));
    assert_eq!(entries(&target), before);
    assert_eq!(fs::read(root.join("top.txt")).unwrap(), b"local edit");

    let out = restore(
        &repo,
        &[
            "latest",
            "--target",
            s(&target),
            "--delete",
            "--overwrite",
            "always",
        ],
    );
    out.assert_success();
    let v = out.json();
    assert_eq!(json_u64(&v, "deleted"), 4, "{v}");
    assert!(!target.join("beside.txt").exists());
    assert!(Path::new("/etc").is_dir(), "the symlink's target survives");
    assert_trees_equal(&src, &root, Compare::everything());
    let mut expected: Vec<String> = entries(&src)
        .into_iter()
        .map(|e| format!("{}/{e}", s(&src).trim_start_matches('/')))
        .collect();
    // The directories leading to the source path.
    let mut parent = src.as_path();
    while let Some(p) = parent.parent().filter(|p| p != &Path::new("/")) {
        expected.push(p.to_str().unwrap().trim_start_matches('/').to_string());
        parent = p;
    }
    expected.push(s(&src).trim_start_matches('/').to_string());
    expected.sort();
    assert_eq!(entries(&target), expected);
}

#[test]
fn restore_delete_never_touches_files_outside_the_selection() {
    let repo = Repo::init();
    let src = backed_up(&repo);
    let target = repo.join("t");
    restore(&repo, &["latest", "--target", s(&target)]).assert_success();
    let root = restored(&target, &src);
    for extra in [
        "docs/new.pdf",   // selected and not in the snapshot: deleted
        "docs/notes.txt", // not selected: kept
        "docs/keep.pdf",  // excluded: kept
        "other/x.txt",    // not selected: kept
        "extra/y.pdf",    // selected, in a directory the snapshot lacks: deleted
    ] {
        write_file(&root.join(extra), "local");
    }
    let out = restore(
        &repo,
        &[
            "latest",
            "--target",
            s(&target),
            "--include",
            "*.pdf",
            "--exclude",
            "keep.*",
            "--delete",
        ],
    );
    out.assert_success();
    let v = out.json();
    assert_eq!(
        v["deleted_paths"],
        serde_json::json!([s(&root.join("docs/new.pdf")), s(&root.join("extra/y.pdf"))]),
        "{v}"
    );
    for kept in ["docs/notes.txt", "docs/keep.pdf", "other/x.txt", "top.txt"] {
        assert!(root.join(kept).exists(), "{kept} was deleted");
    }

    // Restoring a subpath deletes within it only.
    let sub = repo.join("sub");
    write_file(&sub.join("extra.txt"), "local");
    fs::create_dir_all(repo.join("sibling")).unwrap();
    write_file(&repo.join("sibling/file"), "local");
    restore(
        &repo,
        &[
            &format!("latest:{}/docs", s(&src)),
            "--target",
            s(&sub),
            "--delete",
        ],
    )
    .assert_success();
    assert_eq!(entries(&sub), ["a.txt", "sub", "sub/b.pdf"]);
    assert!(repo.join("sibling/file").exists());
}
