//! What a backup leaves out (`--exclude`, `--exclude-file`, `--exclude-caches`, `--one-file-system`)
//! and which snapshots a command considers (`--tag`, `--host`, `--path`), as restic users know them.
//! The `pg restore` test needs the PostgreSQL 18 test server (`scripts/postgres.sh`), as pg_pitr.rs.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::pg::PgVersion;
use common::pitr::Env;
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
    // Never skipped: a test that cannot mount would prove nothing. CI runs the tests as root.
    assert!(
        is_root(),
        "mounting a tmpfs needs root: run the tests as root, as CI does"
    );
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

/// Backs up `dir` holding `content` in `file`; returns the snapshot ID.
#[track_caller]
fn backup_version(repo: &Repo, dir: &Path, content: &str, extra: &[&str]) -> String {
    write_file(&dir.join("file"), content);
    json_str(&repo.backup(&[dir], extra), "snapshot_id").to_string()
}

#[test]
fn latest_within_a_tag_filter_is_the_newest_matching_snapshot() {
    let repo = Repo::init();
    let src = repo.sandbox.mkdir("src");
    let file = src.join("file");
    backup_version(
        &repo,
        &src,
        "prod 1",
        &["--tag", "env=prod", "--tag", "tier=gold"],
    );
    backup_version(&repo, &src, "prod 2", &["--tag", "env=prod"]);
    backup_version(&repo, &src, "test 3", &["--tag", "env=test"]);

    assert_eq!(repo.dump("latest", &file), b"test 3");
    let dump = |filter: &[&str]| {
        let mut args = vec!["dump", "latest", file.to_str().unwrap()];
        args.extend_from_slice(filter);
        repo.run(&args)
    };
    assert_eq!(
        dump(&["--tag", "env=prod"]).assert_success().stdout_str(),
        "prod 2"
    );
    // Every tag given must be present.
    assert_eq!(
        dump(&["--tag", "env=prod", "--tag", "tier=gold"])
            .assert_success()
            .stdout_str(),
        "prod 1"
    );
    let none = dump(&["--tag", "env=staging"]);
    none.assert_failure();
    assert!(
        none.stderr_str()
            .contains("no snapshot matches the filter (tag env=staging)"),
        "{}",
        none.describe()
    );

    let out = repo.run([
        "restore", "latest", "--tag", "env=prod", "--target", "restored",
    ]);
    out.assert_success();
    assert_eq!(
        std::fs::read(restored(&repo.join("restored"), &file)).unwrap(),
        b"prod 2"
    );
    let out = repo.run(["snapshots", "--json", "--tag", "env=prod"]);
    assert_eq!(out.assert_success().json().as_array().unwrap().len(), 2);
}

#[test]
fn snapshots_filtered_by_host_and_path() {
    let repo = Repo::init();
    let one = repo.sandbox.mkdir("one");
    let two = repo.sandbox.mkdir("two");
    let a1 = backup_version(&repo, &one, "a", &["--host", "alpha"]);
    let b1 = backup_version(&repo, &one, "b", &["--host", "beta"]);
    let a2 = backup_version(&repo, &two, "c", &["--host", "alpha"]);
    let ids = |filter: &[&str]| -> BTreeSet<String> {
        let mut args = vec!["snapshots", "--json"];
        args.extend_from_slice(filter);
        let out = repo.run(&args);
        out.assert_success();
        out.json()
            .as_array()
            .unwrap()
            .iter()
            .map(|s| json_str(s, "id").to_string())
            .collect()
    };
    let set = |ids: &[&String]| ids.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(ids(&["--host", "alpha"]), set(&[&a1, &a2]));
    assert_eq!(
        ids(&["--host", "alpha", "--host", "beta"]),
        set(&[&a1, &b1, &a2])
    );
    let one_slash = format!("{}/", one.display());
    assert_eq!(ids(&["--path", &one_slash]), set(&[&a1, &b1]));
    assert_eq!(
        ids(&["--host", "alpha", "--path", one.to_str().unwrap()]),
        set(&[&a1])
    );
    assert_eq!(
        ids(&[
            "--path",
            one.to_str().unwrap(),
            "--path",
            two.to_str().unwrap()
        ]),
        set(&[])
    );
    let v = repo.run(["snapshots", "--json", "--host", "beta"]).json();
    assert_eq!(json_str(&v[0], "hostname"), "beta");

    // `backup --host` names the host, and the parent is that host's latest of the same paths.
    let v = repo.backup(&[&one], &["--host", "beta"]);
    assert_eq!(json_str(&v, "parent"), b1);
    let out = repo.run([
        "ls",
        "latest",
        "--host",
        "alpha",
        "--path",
        one.to_str().unwrap(),
    ]);
    assert!(lines(out.assert_success()).contains(&p(&one.join("file"))));
}

#[test]
fn a_snapshot_id_outside_the_filter_is_refused() {
    let repo = Repo::init();
    let src = repo.sandbox.mkdir("src");
    let prod = backup_version(&repo, &src, "prod", &["--tag", "env=prod"]);
    let test = backup_version(&repo, &src, "test", &["--tag", "env=test"]);
    let short = &test[..8];
    for args in [
        vec!["ls", short, "--tag", "env=prod"],
        vec!["restore", short, "--tag", "env=prod", "--target", "out"],
        vec!["diff", &prod[..8], short, "--tag", "env=prod"],
        vec![
            "hold", "add", short, "--reason", "case 1", "--tag", "env=prod",
        ],
        vec!["forget", short, "--tag", "env=prod"],
    ] {
        let out = repo.run(&args);
        out.assert_failure();
        assert!(
            out.stderr_str().contains(&format!(
                "snapshot {short} does not match the filter (tag env=prod)"
            )),
            "{args:?}: {}",
            out.describe()
        );
    }
    assert_eq!(repo.snapshots().len(), 2, "nothing was forgotten");
    assert!(!repo.join("out").exists(), "nothing was restored");
    // Within the filter the same ID is fine.
    repo.run(["ls", short, "--tag", "env=test"])
        .assert_success();
}

/// restic's `forget --tag`: the policy judges only the matching snapshots; the others stay.
#[test]
fn forget_with_a_filter_judges_only_the_matching_snapshots() {
    let repo = Repo::init();
    let src = repo.sandbox.mkdir("src");
    let prod = backup_version(&repo, &src, "prod", &["--tag", "env=prod"]);
    let old = backup_version(&repo, &src, "test 1", &["--tag", "env=test"]);
    let new = backup_version(&repo, &src, "test 2", &["--tag", "env=test"]);
    let out = repo.run(["forget", "--keep-last", "1", "--tag", "env=test", "--json"]);
    out.assert_success();
    assert_eq!(json_u64(&out.json(), "removed"), 1, "{}", out.describe());
    let left: BTreeSet<String> = repo
        .snapshots()
        .iter()
        .map(|s| json_str(s, "id").to_string())
        .collect();
    assert_eq!(left, [prod, new].into_iter().collect(), "{old} alone goes");
}

/// `pg restore` chooses among the base backups the filter matches (an incremental one is restored
/// with its parents, matching or not), and refuses `--set` outside the filter.
#[test]
fn pg_restore_chooses_among_the_base_backups_the_filter_matches() {
    let env = Env::new(PgVersion::V18, "filter", &[]);
    let c = &env.cluster;
    c.psql("CREATE TABLE t (id int); INSERT INTO t VALUES (1)");
    env.backup(&c.url(), &[]);
    c.psql("INSERT INTO t VALUES (2)");
    let gold = env.backup(
        &c.url(),
        &["--mode", "stream", "--incremental", "--tag", "tier=gold"],
    );
    let newest = env.backup(&c.url(), &[]);

    let (out, _) = env.restore("any", &["--target", "immediate"]);
    assert_eq!(out.assert_success().json()["backup"], newest["snapshot_id"]);
    let (out, _) = env.restore("gold", &["--target", "immediate", "--tag", "tier=gold"]);
    let report = out.assert_success().json();
    assert_eq!(report["backup"], gold["snapshot_id"], "{report:#}");
    assert_eq!(report["backups_combined"], 2, "{report:#}");

    let short = &json_str(&newest, "snapshot_id")[..8];
    let (out, dir) = env.restore("outside", &["--set", short, "--tag", "tier=gold"]);
    out.assert_code(EXIT_FATAL).assert_output_contains(&format!(
        "snapshot {short} does not match the filter (tag tier=gold)"
    ));
    assert!(!dir.exists(), "a refused restore wrote {}", dir.display());
    let (out, _) = env.restore("none", &["--tag", "tier=silver"]);
    out.assert_code(EXIT_FATAL)
        .assert_output_contains("no snapshot matches the filter (tag tier=silver)");
}
