//! Backup → restore/ls/dump round trips, stdin backups, incremental backups
//! and deduplication, all through the real binary.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{chown, symlink};
use std::path::{Path, PathBuf};

use common::*;
use serde_json::{json, Value};

const SPARSE_LEN: u64 = 50 * MIB as u64;
const DEEP_LEVELS: usize = 40;

/// Names of the entries whose paths are not printable as one UTF-8 line.
const NON_UTF8_FILE: &[u8] = b"caf\xe9";
const NON_UTF8_DIR: &[u8] = b"dir-\xff\xfe";
const NEWLINE_NAME: &str = "line1\nline2";

/// Builds the tree that every round-trip test backs up:
///
/// ```text
/// src/                      mode 0750
///   empty                   0 B
///   one                     1 B
///   medium.bin              100 KiB random
///   big.bin                 5 MiB random
///   sparse.img              50 MiB, mostly hole, a few written bytes
///   caf\xe9                 non-UTF-8 name
///   line1\nline2            name with a newline
///   " spaced name "         leading/trailing spaces
///   -dash
///   link-to-medium  ->  medium.bin
///   dangling        ->  /nonexistent/lifeline/target
///   dir1/hard-a             hard link pair with dir2/hard-b
///   dir1/relative-up -> ../one
///   dir2/hard-b
///   dir-\xff\xfe/child      non-UTF-8 directory name
///   empty-dir/
///   modes/private 0600, modes/exec 0755, modes/readonly 0444, modes/sub 0711
///   deep/level00/.../level39/bottom.txt
/// ```
///
/// As root, `modes/private` is chowned to 1234:5678 and `dir1` to 4321:8765.
/// Every entry gets a distinct mtime with a nanosecond part.
fn build_tricky_tree(src: &Path) {
    fs::create_dir(src).unwrap();
    write_file(&src.join("empty"), b"");
    write_file(&src.join("one"), b"x");
    write_file(&src.join("medium.bin"), random_bytes(1, 100 * KIB));
    write_random_file(&src.join("big.bin"), 2, 5 * MIB);

    let sparse = src.join("sparse.img");
    let mut f = File::create(&sparse).unwrap();
    f.set_len(SPARSE_LEN).unwrap();
    for (offset, bytes) in [
        (0u64, &b"head"[..]),
        (MIB as u64 + 17, b"one mebibyte in"),
        (SPARSE_LEN / 2, b"middle"),
        (SPARSE_LEN - 4, b"tail"),
    ] {
        f.seek(SeekFrom::Start(offset)).unwrap();
        f.write_all(bytes).unwrap();
    }
    drop(f);

    write_file(&src.join(os(NON_UTF8_FILE)), b"non-utf8 name");
    write_file(&src.join(NEWLINE_NAME), b"newline in name");
    write_file(&src.join(" spaced name "), b"spaces");
    write_file(&src.join("-dash"), b"dash");

    symlink("medium.bin", src.join("link-to-medium")).unwrap();
    symlink("/nonexistent/lifeline/target", src.join("dangling")).unwrap();

    fs::create_dir(src.join("dir1")).unwrap();
    fs::create_dir(src.join("dir2")).unwrap();
    write_file(&src.join("dir1/hard-a"), random_bytes(3, 64 * KIB));
    fs::hard_link(src.join("dir1/hard-a"), src.join("dir2/hard-b")).unwrap();
    symlink("../one", src.join("dir1/relative-up")).unwrap();

    let odd_dir = src.join(os(NON_UTF8_DIR));
    fs::create_dir(&odd_dir).unwrap();
    write_file(&odd_dir.join("child"), b"child of a non-utf8 dir");

    fs::create_dir(src.join("empty-dir")).unwrap();

    fs::create_dir(src.join("modes")).unwrap();
    for (name, mode) in [("private", 0o600), ("exec", 0o755), ("readonly", 0o444)] {
        let p = src.join("modes").join(name);
        write_file(&p, format!("mode {mode:o}"));
        set_mode(&p, mode);
    }
    fs::create_dir(src.join("modes/sub")).unwrap();
    set_mode(&src.join("modes/sub"), 0o711);

    let mut deep = src.join("deep");
    for i in 0..DEEP_LEVELS {
        deep.push(format!("level{i:02}"));
    }
    fs::create_dir_all(&deep).unwrap();
    write_file(&deep.join("bottom.txt"), b"the bottom");

    if is_root() {
        chown(src.join("modes/private"), Some(1234), Some(5678)).unwrap();
        chown(src.join("dir1"), Some(4321), Some(8765)).unwrap();
    }
    set_mode(src, 0o750);
    stamp_mtimes(src, 1_500_000_000);
}

fn deep_file(src: &Path) -> PathBuf {
    let mut p = src.join("deep");
    for i in 0..DEEP_LEVELS {
        p.push(format!("level{i:02}"));
    }
    p.join("bottom.txt")
}

/// A repository holding one snapshot of the tricky tree at `src`.
fn repo_with_tricky_tree() -> (Repo, PathBuf) {
    let repo = Repo::init();
    let src = repo.join("src");
    build_tricky_tree(&src);
    let summary = repo.backup(&[&src], &[]);
    assert!(
        is_hex(json_str(&summary, "snapshot_id"), 64),
        "snapshot_id is not 64 hex digits: {summary}"
    );
    (repo, src)
}

#[test]
fn tricky_tree_restores_with_content_modes_mtimes_links_and_owners() {
    let (repo, src) = repo_with_tricky_tree();
    let target = repo.restore("latest", "restore");
    let restored_src = restored(&target, &src);

    assert_trees_equal(&src, &restored_src, Compare::everything());

    // Spot checks that make failures easy to read, on top of the full comparison.
    let a = fs::metadata(restored_src.join("dir1/hard-a")).unwrap();
    let b = fs::metadata(restored_src.join("dir2/hard-b")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        a.ino(),
        b.ino(),
        "hard-link pair was not restored as one inode"
    );
    assert_eq!(
        fs::read_link(restored_src.join("dangling")).unwrap(),
        Path::new("/nonexistent/lifeline/target")
    );
    assert_eq!(fs::read(deep_file(&restored_src)).unwrap(), b"the bottom");
    assert_eq!(
        fs::metadata(restored_src.join("sparse.img")).unwrap().len(),
        SPARSE_LEN
    );
}

#[test]
fn ls_lists_every_path_of_the_snapshot() {
    let (repo, src) = repo_with_tricky_tree();
    let out = repo.run(["ls", "latest"]);
    out.assert_success();
    let listed: BTreeSet<String> = lines(&out).into_iter().collect();

    let tree = scan_tree(&src);
    let mut expected_plain = BTreeSet::new();
    for rel in tree.keys().filter(|r| !r.as_os_str().is_empty()) {
        let abs = src.join(rel);
        if let Some(s) = abs.to_str() {
            if !s.contains('\n') {
                expected_plain.insert(s.to_string());
            }
        }
    }
    let missing: Vec<&String> = expected_plain.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "ls does not list {missing:#?}\n{}",
        out.describe()
    );
    assert!(expected_plain.contains(deep_file(&src).to_str().unwrap()));

    // Names that cannot be printed as one UTF-8 line must still show up somehow.
    let src_str = src.to_str().unwrap();
    for needle in ["caf", "line1", "line2", "dir-"] {
        assert!(
            listed.iter().any(|l| l.contains(needle)),
            "ls shows nothing for the entry containing {needle:?}\n{}",
            out.describe()
        );
    }
    assert!(
        listed
            .iter()
            .any(|l| l.starts_with(src_str) && l.ends_with("/child") && l.contains("dir-")),
        "ls does not list the child of the non-UTF-8 directory\n{}",
        out.describe()
    );

    // Nothing else: only the tree, its root and the root's ancestors.
    let ancestors: BTreeSet<String> = src
        .ancestors()
        .map(|p| p.to_str().unwrap().to_string())
        .collect();
    let unexpected: Vec<&String> = listed
        .iter()
        .filter(|l| {
            !expected_plain.contains(*l)
                && !ancestors.contains(*l)
                && !["caf", "line1", "line2", "dir-"]
                    .iter()
                    .any(|n| l.contains(n))
        })
        .collect();
    assert!(
        unexpected.is_empty(),
        "ls lists unexpected paths {unexpected:#?}"
    );

    // With a path argument, only that subtree.
    let dir1 = src.join("dir1");
    let out = repo.run([
        std::ffi::OsStr::new("ls"),
        std::ffi::OsStr::new("latest"),
        dir1.as_os_str(),
    ]);
    out.assert_success();
    let sub = lines(&out);
    let dir1_str = dir1.to_str().unwrap();
    for want in ["hard-a", "relative-up"] {
        let p = format!("{dir1_str}/{want}");
        assert!(
            sub.contains(&p),
            "ls latest {dir1_str} does not list {p}\n{}",
            out.describe()
        );
    }
    for l in &sub {
        assert!(
            l == dir1_str || l.starts_with(&format!("{dir1_str}/")),
            "ls latest {dir1_str} lists {l:?}, which is outside that directory"
        );
    }
}

#[test]
fn dump_writes_exact_file_bytes() {
    let (repo, src) = repo_with_tricky_tree();
    let short_id = json_str(&repo.snapshots()[0], "short_id").to_string();

    for (name, by) in [
        ("big.bin", "latest"),
        ("medium.bin", short_id.as_str()),
        ("empty", "latest"),
        ("one", "latest"),
        ("sparse.img", "latest"),
        ("modes/readonly", short_id.as_str()),
    ] {
        let path = src.join(name);
        let got = repo.dump(by, &path);
        let want = fs::read(&path).unwrap();
        assert_eq!(got.len(), want.len(), "dump {by} {name}: wrong length");
        assert!(got == want, "dump {by} {name}: bytes differ");
    }
    assert_eq!(
        repo.dump("latest", src.join(NEWLINE_NAME)),
        b"newline in name"
    );
    assert_eq!(repo.dump("latest", src.join(" spaced name ")), b"spaces");
    assert_eq!(repo.dump("latest", deep_file(&src)), b"the bottom");
}

#[test]
fn dump_and_ls_accept_non_utf8_paths() {
    let repo = Repo::init();
    let src = repo.join("src");
    let odd_dir = src.join(os(NON_UTF8_DIR));
    write_file(&src.join(os(NON_UTF8_FILE)), b"non-utf8 name");
    write_file(&odd_dir.join("child"), b"child of a non-utf8 dir");
    repo.backup(&[&src], &[]);

    assert_eq!(
        repo.dump("latest", src.join(os(NON_UTF8_FILE))),
        b"non-utf8 name"
    );
    assert_eq!(
        repo.dump("latest", odd_dir.join("child")),
        b"child of a non-utf8 dir"
    );
    let out = repo.run([
        std::ffi::OsStr::new("ls"),
        std::ffi::OsStr::new("latest"),
        odd_dir.as_os_str(),
    ]);
    out.assert_success();
    assert!(
        lines(&out).iter().any(|l| l.ends_with("/child")),
        "ls of the non-UTF-8 directory does not list its child\n{}",
        out.describe()
    );
}

#[test]
fn stdin_backup_dumps_back_and_snapshot_json_has_documented_shape() {
    let repo = Repo::init();
    let mut data = random_bytes(11, 3 * MIB);
    data.extend_from_slice(b"\n-- end of dump\n");

    let out = repo.run_stdin(
        [
            "backup",
            "--stdin",
            "--name",
            "db.sql",
            "--tag",
            "env=prod",
            "--tag",
            "kind=nightly",
            "--json",
        ],
        &data,
    );
    out.assert_success();
    let summary = out.json();
    let snapshot_id = json_str(&summary, "snapshot_id").to_string();
    assert!(is_hex(&snapshot_id, 64), "snapshot_id: {summary}");
    assert_eq!(json_u64(&summary, "files_new"), 1, "{summary}");
    let data_added = json_u64(&summary, "data_added");
    assert!(
        data_added >= data.len() as u64 * 9 / 10,
        "data_added {data_added} is implausibly small for {} random bytes",
        data.len()
    );

    let snaps = repo.snapshots();
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    let s = &snaps[0];
    assert_eq!(json_str(s, "id"), snapshot_id);
    let short_id = json_str(s, "short_id");
    assert!(is_hex(short_id, 8), "short_id: {s}");
    assert!(
        snapshot_id.starts_with(short_id),
        "short_id is not a prefix of id: {s}"
    );
    assert!(is_rfc3339(json_str(s, "time")), "time is not RFC 3339: {s}");
    assert!(!json_str(s, "hostname").is_empty(), "empty hostname: {s}");
    assert_eq!(s["paths"], json!(["db.sql"]), "{s}");
    assert_eq!(s["tags"], json!({"env": "prod", "kind": "nightly"}), "{s}");
    assert_eq!(s["parent"], Value::Null, "{s}");
    let sum = &s["summary"];
    assert_eq!(json_u64(sum, "files"), 1, "{s}");
    json_u64(sum, "dirs");
    assert_eq!(json_u64(sum, "bytes"), data.len() as u64, "{s}");
    assert_eq!(json_u64(sum, "data_added"), data_added, "{s}");

    assert!(
        repo.dump("latest", "db.sql") == data,
        "dump latest db.sql differs"
    );
    assert!(
        repo.dump(short_id, "db.sql") == data,
        "dump {short_id} db.sql differs"
    );
}

#[test]
fn identical_stdin_backup_adds_almost_no_data() {
    let repo = Repo::init();
    let data = random_bytes(12, 4 * MIB);
    for _ in 0..2 {
        repo.run_stdin(["backup", "--stdin", "--name", "blob.bin"], &data)
            .assert_success();
    }
    let snaps = repo.snapshots();
    assert_eq!(snaps.len(), 2);
    let second = snaps
        .iter()
        .map(|s| json_u64(&s["summary"], "data_added"))
        .min()
        .unwrap();
    assert!(
        second < 64 * KIB as u64,
        "identical stdin backup added {second} bytes"
    );
    assert!(repo.dump("latest", "blob.bin") == data);
}

#[test]
fn empty_stdin_round_trips() {
    let repo = Repo::init();
    repo.run_stdin(["backup", "--stdin", "--name", "nothing"], b"")
        .assert_success();
    assert_eq!(repo.dump("latest", "nothing"), b"");
    assert_eq!(json_u64(&repo.snapshots()[0]["summary"], "bytes"), 0);
}

/// 21 regular files in src/a and src/b.
fn build_plain_tree(src: &Path) -> (usize, u64) {
    let mut count = 0;
    let mut bytes = 0u64;
    for i in 0..20u64 {
        let dir = if i % 2 == 0 { "a" } else { "b" };
        let len = (i as usize) * 37 * KIB + 1;
        write_file(
            &src.join(dir).join(format!("f{i:02}")),
            random_bytes(100 + i, len),
        );
        count += 1;
        bytes += len as u64;
    }
    write_random_file(&src.join("big.bin"), 99, 2 * MIB);
    (count + 1, bytes + 2 * MIB as u64)
}

#[test]
fn unchanged_files_are_not_stored_again_and_changes_are_detected() {
    let repo = Repo::init();
    let src = repo.join("src");
    let (nfiles, nbytes) = build_plain_tree(&src);
    let other = repo.join("other");
    write_file(&other.join("x"), b"unrelated");

    // 1st: everything is new.
    let b1 = repo.backup(&[&src], &[]);
    assert_eq!(json_u64(&b1, "files_new"), nfiles as u64, "{b1}");
    assert_eq!(json_u64(&b1, "files_changed"), 0, "{b1}");
    assert_eq!(json_u64(&b1, "files_unmodified"), 0, "{b1}");
    let id1 = json_str(&b1, "snapshot_id").to_string();

    // 2nd: nothing changed.
    let b2 = repo.backup(&[&src], &[]);
    assert_eq!(json_u64(&b2, "files_unmodified"), nfiles as u64, "{b2}");
    assert_eq!(json_u64(&b2, "files_new"), 0, "{b2}");
    assert_eq!(json_u64(&b2, "files_changed"), 0, "{b2}");
    let added = json_u64(&b2, "data_added");
    assert!(
        added < 64 * KIB as u64,
        "unchanged backup added {added} bytes: {b2}"
    );
    let id2 = json_str(&b2, "snapshot_id").to_string();

    // A backup of other paths in between must not become the parent.
    repo.backup(&[&other], &[]);

    // Keep a copy of the first state, then change one file and add one.
    let v1 = repo.join("v1");
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(&src)
        .arg(&v1)
        .status()
        .unwrap();
    assert!(st.success());
    let changed = src.join("b/f03");
    let len = fs::metadata(&changed).unwrap().len() as usize;
    write_file(&changed, random_bytes(4242, len)); // same size, new content
    write_file(&src.join("a/new.txt"), b"brand new");

    let b3 = repo.backup(&[&src], &[]);
    assert_eq!(json_u64(&b3, "files_changed"), 1, "{b3}");
    assert_eq!(json_u64(&b3, "files_new"), 1, "{b3}");
    assert_eq!(json_u64(&b3, "files_unmodified"), nfiles as u64 - 1, "{b3}");
    let id3 = json_str(&b3, "snapshot_id").to_string();

    // Snapshot metadata: parents and summaries.
    let snaps = repo.snapshots();
    assert_eq!(snaps.len(), 4);
    let find = |id: &str| {
        snaps
            .iter()
            .find(|s| json_str(s, "id") == id)
            .unwrap()
            .clone()
    };
    let (s1, s2, s3) = (find(&id1), find(&id2), find(&id3));
    assert_eq!(s1["parent"], Value::Null, "{s1}");
    assert_eq!(s2["parent"], json!(id1), "{s2}");
    assert_eq!(
        s3["parent"],
        json!(id2),
        "parent must be the latest snapshot of the same paths: {s3}"
    );
    assert_eq!(s1["paths"], json!([src.to_str().unwrap()]), "{s1}");
    assert_eq!(json_u64(&s1["summary"], "files"), nfiles as u64, "{s1}");
    assert_eq!(json_u64(&s1["summary"], "bytes"), nbytes, "{s1}");
    let dirs = json_u64(&s1["summary"], "dirs");
    let max_dirs = 3 + src.ancestors().count() as u64;
    assert!(
        (2..=max_dirs).contains(&dirs),
        "summary.dirs {dirs} for src, a, b: {s1}"
    );
    assert_eq!(json_u64(&s3["summary"], "files"), nfiles as u64 + 1, "{s3}");

    // Each snapshot restores its own state.
    for (id, expected, name) in [(&id1, &v1, "r1"), (&id2, &v1, "r2"), (&id3, &src, "r3")] {
        let target = repo.restore(&id[..12], name);
        assert_trees_equal(expected, &restored(&target, &src), Compare::content_only());
    }
}

#[test]
fn identical_files_are_stored_once() {
    let repo = Repo::init();
    let src = repo.join("src");
    let content = random_bytes(42, 8 * MIB);
    write_file(&src.join("a.bin"), &content);
    write_file(&src.join("sub/b.bin"), &content);

    let summary = repo.backup(&[&src], &[]);
    let added = json_u64(&summary, "data_added");
    let limit = 8 * MIB as u64 * 3 / 2;
    assert!(
        added < limit,
        "data_added {added} ≥ 1.5 × 8 MiB: duplicate not deduplicated"
    );
    assert!(
        added >= 7 * MIB as u64,
        "data_added {added} is too small to hold even one copy"
    );
    let on_disk = repo.total_bytes();
    assert!(
        on_disk < limit,
        "repository holds {on_disk} bytes for 2 identical 8 MiB files"
    );

    let target = repo.restore("latest", "restore");
    assert_trees_equal(&src, &restored(&target, &src), Compare::content_only());
}

#[test]
fn non_utf8_path_argument_is_backed_up() {
    let repo = Repo::init();
    let dir = repo.join(os(b"odd-\xfe-root"));
    write_file(&dir.join("f"), b"inside an odd root");
    let summary = repo.backup(&[&dir], &[]);
    assert_eq!(json_u64(&summary, "files_new"), 1, "{summary}");
    let target = repo.restore("latest", "restore");
    let back = restored(&target, &dir);
    assert!(back.as_os_str().as_bytes().ends_with(b"odd-\xfe-root"));
    assert_trees_equal(&dir, &back, Compare::content_only());
}

/// Size and mtime alone would miss this change; the inode's ctime does not.
#[test]
fn same_size_rewrite_with_restored_mtime_is_detected() {
    let repo = Repo::init();
    let src = repo.join("src");
    let file = src.join("sneaky.bin");
    write_file(&file, random_bytes(20, 300 * KIB));
    write_file(&src.join("other.txt"), b"unchanged");
    set_mtime(&file, 1_500_000_000, 0);
    repo.backup(&[&src], &[]);

    let new_content = random_bytes(21, 300 * KIB);
    write_file(&file, &new_content);
    set_mtime(&file, 1_500_000_000, 0);
    let summary = repo.backup(&[&src], &[]);
    assert_eq!(json_u64(&summary, "files_changed"), 1, "{summary}");
    assert_eq!(json_u64(&summary, "files_unmodified"), 1, "{summary}");
    assert!(
        repo.dump("latest", &file) == new_content,
        "latest snapshot holds stale content"
    );
}
