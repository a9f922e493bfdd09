//! What a backup leaves out (`--exclude`, `--exclude-file`, `--exclude-caches`, `--one-file-system`)
//! and which snapshots a command considers (`--tag`, `--host`, `--path`), as restic users know them.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::*;

const CACHE_TAG: &str =
    "Signature: 8a477f597d28d172789f06886806bc55\n# This file is a cache directory tag.\n";

/// Every path `ls SNAPSHOT EXTRA...` prints.
#[track_caller]
fn listed(repo: &Repo, snapshot: &str, extra: &[&str]) -> BTreeSet<String> {
    let mut args = vec!["ls", snapshot];
    args.extend_from_slice(extra);
    let out = repo.run(&args);
    out.assert_success();
    lines(&out).into_iter().collect()
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

#[test]
fn exclude_patterns_leave_matching_files_out_of_the_snapshot() {
    let repo = Repo::init();
    let src = repo.sandbox.mkdir("src");
    write_file(&src.join("keep.txt"), "keep");
    write_file(&src.join("a/x.tmp"), "scratch");
    write_file(&src.join("a/b/y.tmp"), "scratch");
    write_file(&src.join("a/b/z.txt"), "keep");
    write_file(&src.join("cache/big.bin"), "cached");
    write_file(&src.join("cache/sub/deep.bin"), "cached");
    // Named `cache` too, but not the anchored path: kept.
    write_file(&src.join("data/cache/other"), "keep");
    let anchored = p(&src.join("cache"));
    let v = repo.backup(
        &[&src],
        &["--exclude", "*.tmp", "--exclude", &format!("{anchored}/")],
    );
    assert_eq!(json_u64(&v, "files_new"), 3, "{v}");
    assert_eq!(json_u64(&v, "excluded"), 3, "x.tmp, y.tmp and cache/: {v}");
    assert!(v["errors"].as_array().unwrap().is_empty(), "{v}");

    let paths = listed(&repo, "latest", &[]);
    for kept in ["keep.txt", "a", "a/b", "a/b/z.txt", "data/cache/other"] {
        assert!(
            paths.contains(&p(&src.join(kept))),
            "{kept} missing: {paths:?}"
        );
    }
    for gone in [
        "a/x.tmp",
        "a/b/y.tmp",
        "cache",
        "cache/big.bin",
        "cache/sub/deep.bin",
    ] {
        assert!(!paths.contains(&p(&src.join(gone))), "{gone} was backed up");
    }

    // A starting path that matches is left out as well, as restic does.
    let v = repo.backup(
        &[&src.join("keep.txt"), &src.join("a/x.tmp")],
        &["--exclude", "*.tmp"],
    );
    assert_eq!(json_u64(&v, "files_new"), 1, "{v}");
    assert!(!listed(&repo, "latest", &[]).contains(&p(&src.join("a/x.tmp"))));
}

#[test]
fn exclude_file_reads_patterns_and_comments() {
    let repo = Repo::init();
    let src = repo.sandbox.mkdir("src");
    write_file(&src.join("app.log"), "log");
    write_file(&src.join("notes.txt"), "notes");
    write_file(&src.join("build/out.o"), "object");
    write_file(&src.join("#hash"), "a name starting with #");
    let list = repo.sandbox.write(
        "excludes",
        "# build products\n\n*.log\n   \n# *.txt is kept\n  build  \n",
    );
    let v = repo.backup(&[&src], &["--exclude-file", list.to_str().unwrap()]);
    assert_eq!(json_u64(&v, "excluded"), 2, "{v}");
    let paths = listed(&repo, "latest", &[]);
    assert!(paths.contains(&p(&src.join("notes.txt"))), "{paths:?}");
    assert!(paths.contains(&p(&src.join("#hash"))), "{paths:?}");
    assert!(!paths.contains(&p(&src.join("app.log"))), "{paths:?}");
    assert!(!paths.contains(&p(&src.join("build"))), "{paths:?}");

    let missing = repo.sandbox.join("no-such-excludes");
    let out = repo.run([
        "backup",
        "--exclude-file",
        missing.to_str().unwrap(),
        src.to_str().unwrap(),
    ]);
    out.assert_failure();
    assert!(
        out.stderr_str()
            .contains(&format!("exclude file {}", missing.display())),
        "{}",
        out.describe()
    );
    assert_eq!(repo.snapshots().len(), 1, "nothing was written");
}

#[test]
fn exclude_caches_keeps_the_tag_but_not_the_contents() {
    let repo = Repo::init();
    let src = repo.sandbox.mkdir("src");
    write_file(&src.join("cache/CACHEDIR.TAG"), CACHE_TAG);
    write_file(&src.join("cache/blob"), "cached");
    write_file(&src.join("cache/sub/blob"), "cached");
    // Not the signature: an ordinary directory.
    write_file(
        &src.join("fake/CACHEDIR.TAG"),
        "Signature: something else\n",
    );
    write_file(&src.join("fake/blob"), "kept");

    repo.backup(&[&src], &[]);
    assert!(listed(&repo, "latest", &[]).contains(&p(&src.join("cache/blob"))));

    let v = repo.backup(&[&src], &["--exclude-caches"]);
    assert_eq!(json_u64(&v, "excluded"), 2, "cache/blob and cache/sub: {v}");
    let paths = listed(&repo, "latest", &[]);
    assert!(paths.contains(&p(&src.join("cache"))), "{paths:?}");
    assert!(
        paths.contains(&p(&src.join("cache/CACHEDIR.TAG"))),
        "{paths:?}"
    );
    assert!(!paths.contains(&p(&src.join("cache/blob"))), "{paths:?}");
    assert!(!paths.contains(&p(&src.join("cache/sub"))), "{paths:?}");
    assert!(paths.contains(&p(&src.join("fake/blob"))), "{paths:?}");
}

/// Unmounts when dropped, so a failed assertion leaves no mount behind.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn one_file_system_does_not_descend_into_other_mounts() {
    if !is_root() {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    let repo = Repo::init();
    let src = repo.sandbox.mkdir("src");
    write_file(&src.join("own.txt"), "on the sandbox's file system");
    let mnt = repo.sandbox.mkdir("src/mnt");
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(status.success(), "mount -t tmpfs failed");
    let _mount = Mount(mnt.clone());
    write_file(&mnt.join("inner/file.txt"), "on the tmpfs");

    let v = repo.backup(&[&src], &["--one-file-system"]);
    assert_eq!(json_u64(&v, "files_new"), 1, "{v}");
    let paths = listed(&repo, "latest", &[]);
    assert!(paths.contains(&p(&src.join("own.txt"))), "{paths:?}");
    assert!(
        paths.contains(&p(&mnt)),
        "the mount point stays, empty: {paths:?}"
    );
    assert!(!paths.contains(&p(&mnt.join("inner"))), "{paths:?}");

    // Without the flag the walk crosses; a mount named as a starting path is always backed up.
    repo.backup(&[&src], &[]);
    assert!(listed(&repo, "latest", &[]).contains(&p(&mnt.join("inner/file.txt"))));
    repo.backup(&[&mnt], &["-x"]);
    assert!(listed(&repo, "latest", &[]).contains(&p(&mnt.join("inner/file.txt"))));
}

#[test]
fn a_bad_exclude_pattern_is_named() {
    let repo = Repo::init();
    let src = repo.sandbox.mkdir("src");
    write_file(&src.join("a"), "a");
    let out = repo.run([
        "backup",
        "--exclude",
        "*.ok",
        "--exclude",
        "[abc",
        src.to_str().unwrap(),
    ]);
    out.assert_failure();
    assert!(
        out.stderr_str().contains("exclude pattern \"[abc\""),
        "{}",
        out.describe()
    );
    assert!(repo.snapshots().is_empty(), "nothing was written");
}
