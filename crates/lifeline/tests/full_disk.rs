//! Full disks and read-only storage (issue 15): a repository on a small tmpfs that fills in the
//! middle of a backup, a prune and a copy, and one remounted read-only. Every time: exit 1, an error
//! naming the cause (the operating system's words) and a `hint:` saying what to do, the repository
//! as it was before (`check` passes, every earlier snapshot restores byte for byte, no staging file
//! keeps the space), and the same command succeeds once space is freed.
//!
//! Mounting a tmpfs needs root, as CI runs; anywhere else these tests fail saying so (they never
//! skip).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;

/// A tmpfs of a set size mounted on a directory of the sandbox; unmounted when dropped.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    #[track_caller]
    fn mount(dir: PathBuf, mib: u32) -> Tmpfs {
        fs::create_dir_all(&dir).unwrap();
        let out = run(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o"])
                .arg(format!("size={mib}m,mode=0700"))
                .arg("tmpfs")
                .arg(&dir),
            None,
        );
        assert!(
            out.code() == Some(0),
            "these tests mount a small tmpfs and need root (CI runs as root)\n{}",
            out.describe()
        );
        Tmpfs { dir }
    }

    #[track_caller]
    fn remount(&self, options: &str) {
        run(
            Command::new("mount")
                .args(["-o", &format!("remount,{options}")])
                .arg(&self.dir),
            None,
        )
        .assert_success();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// A repository on a tmpfs of `mib` MiB, and a source directory on ordinary disk.
fn repo_on_tmpfs(mib: u32, pack_mib: u32) -> (Repo, Tmpfs, PathBuf) {
    let mut repo = Repo::uninit();
    let disk = Tmpfs::mount(repo.join("small"), mib);
    repo.path = disk.dir.join("repo");
    repo.run(["init", "--pack-size", &pack_mib.to_string()])
        .assert_success();
    let src = repo.sandbox.mkdir("src");
    (repo, disk, src)
}

/// The write failed for `cause` (the OS's words), said with the hint, with exit 1.
#[track_caller]
fn assert_refused_for(out: &Out, cause: &str, hint: &str) {
    out.assert_code(EXIT_FATAL);
    let err = out.stderr_str();
    assert!(
        err.contains(cause)
            && err.contains(&format!(
                "hint: the file system holding the file named above is {hint}"
            )),
        "{}",
        out.describe()
    );
}

/// `check` passes and every snapshot in `expected` restores to what it held.
#[track_caller]
fn assert_as_before(repo: &Repo, expected: &BTreeMap<String, BTreeMap<PathBuf, Vec<u8>>>) {
    repo.run(["check"]).assert_success();
    let ids: Vec<String> = repo
        .snapshots()
        .iter()
        .map(|s| json_str(s, "id").to_string())
        .collect();
    let mut want: Vec<&String> = expected.keys().collect();
    want.sort();
    let mut have: Vec<&String> = ids.iter().collect();
    have.sort();
    assert_eq!(have, want, "the snapshots changed");
    for (id, held) in expected {
        let target = repo.join(format!("restore-{}-{}", &id[..8], rand_suffix()));
        let out = repo.run([
            OsString::from("restore"),
            id.into(),
            "--target".into(),
            target.clone().into(),
        ]);
        out.assert_success();
        assert!(file_contents(&target) == *held, "{id} restored other bytes");
        fs::remove_dir_all(&target).unwrap();
    }
}

/// A new number for every restore target.
fn rand_suffix() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Staging files a failed write left behind on the full disk.
fn staged(repo: &Repo) -> Vec<PathBuf> {
    regular_files_under(&repo.path.join("tmp"))
}

/// `backup --json SRC`; returns the snapshot ID.
fn backup(repo: &Repo, src: &Path) -> String {
    json_str(&repo.backup(&[src], &[]), "snapshot_id").to_string()
}

fn restored_contents(src: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let prefix = src.strip_prefix("/").unwrap();
    file_contents(src)
        .into_iter()
        .map(|(p, b)| (prefix.join(p), b))
        .collect()
}

#[test]
fn a_backup_that_fills_the_disk_fails_saying_so_leaves_no_staging_file_holding_the_space_and_the_next_one_succeeds(
) {
    let (repo, disk, src) = repo_on_tmpfs(8, 1);
    write_random_file(&src.join("a.bin"), 1, 3 * MIB);
    let mut expected = BTreeMap::new();
    expected.insert(backup(&repo, &src), restored_contents(&src));

    write_random_file(&src.join("b.bin"), 2, 12 * MIB);
    let out = repo.run([OsString::from("backup"), src.clone().into()]);
    assert_refused_for(&out, "No space left on device", "full");
    assert_eq!(
        staged(&repo),
        Vec::<PathBuf>::new(),
        "staging files keep the space"
    );
    assert_as_before(&repo, &expected);

    disk.remount("size=64m");
    expected.insert(backup(&repo, &src), restored_contents(&src));
    repo.run(["check", "--read-data"]).assert_success();
    assert_as_before(&repo, &expected);
}

#[test]
fn a_prune_that_fills_the_disk_fails_saying_so_and_runs_once_space_is_freed() {
    let (repo, disk, src) = repo_on_tmpfs(24, 4);
    // A file that stays and a file that goes share a pack: once the first snapshot is forgotten,
    // prune must repack the live half of that pack, so it must write.
    write_random_file(&src.join("keep.bin"), 1, 1500 * KIB);
    write_random_file(&src.join("go.bin"), 2, 1500 * KIB);
    backup(&repo, &src);
    fs::remove_file(src.join("go.bin")).unwrap();
    backup(&repo, &src);
    repo.run(["forget", "--keep-last", "1"]).assert_success();
    let mut expected = BTreeMap::new();
    let last = json_str(&repo.snapshots()[0], "id").to_string();
    expected.insert(last, restored_contents(&src));
    // Leave the prune no room: a filler file takes all but a few KiB.
    let filler = disk.dir.join("filler");
    let free = free_bytes(&disk.dir);
    write_file(
        &filler,
        vec![0u8; free.saturating_sub(16 * KIB as u64) as usize],
    );
    let out = repo.run(["prune", "--grace", "0s", "--max-unused", "0"]);
    assert_refused_for(&out, "No space left on device", "full");
    assert_eq!(
        staged(&repo),
        Vec::<PathBuf>::new(),
        "staging files keep the space"
    );
    fs::remove_file(&filler).unwrap();
    assert_as_before(&repo, &expected);

    let before = repo.data_bytes();
    repo.run(["prune", "--grace", "0s", "--max-unused", "0"])
        .assert_success();
    assert!(
        repo.data_bytes() < before,
        "prune freed nothing ({before} bytes before)"
    );
    assert!(regular_files_under(&repo.path.join("garbage")).is_empty());
    repo.run(["check", "--read-data"]).assert_success();
    assert_as_before(&repo, &expected);
    drop(disk);
}

/// Free bytes of the file system holding `dir`, from `df`.
fn free_bytes(dir: &Path) -> u64 {
    let out = run(
        Command::new("df").args(["--output=avail", "-B1"]).arg(dir),
        None,
    );
    out.assert_success();
    out.stdout_str()
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn a_copy_into_a_full_destination_fails_saying_so_and_completes_once_space_is_freed() {
    let repo = Repo::init();
    let src = repo.sandbox.mkdir("src");
    write_random_file(&src.join("big.bin"), 3, 10 * MIB);
    let id = backup(&repo, &src);
    let disk = Tmpfs::mount(repo.join("region2"), 6);
    let copy = Repo {
        sandbox: Sandbox::new(),
        path: disk.dir.join("repo"),
        password_file: repo.password_file.clone(),
    };
    copy.run(["init"]).assert_success();
    let to = |r: &Repo| {
        r.run([
            OsString::from("copy"),
            "--to".into(),
            copy.path.clone().into(),
        ])
    };
    assert_refused_for(&to(&repo), "No space left on device", "full");
    assert_eq!(staged(&copy), Vec::<PathBuf>::new());
    assert_as_before(&copy, &BTreeMap::new());

    disk.remount("size=64m");
    to(&repo).assert_success();
    copy.run(["check", "--read-data"]).assert_success();
    let copied = json_str(&copy.snapshots()[0], "id").to_string();
    assert_ne!(copied, id);
    assert_as_before(&copy, &BTreeMap::from([(copied, restored_contents(&src))]));
}

#[test]
fn a_read_only_repository_refuses_writes_saying_so_and_still_restores() {
    let (repo, disk, src) = repo_on_tmpfs(32, 1);
    write_random_file(&src.join("a.bin"), 4, 2 * MIB);
    let mut expected = BTreeMap::new();
    expected.insert(backup(&repo, &src), restored_contents(&src));
    disk.remount("ro");

    write_random_file(&src.join("b.bin"), 5, MIB);
    let refused = [
        vec!["backup".to_string(), src.display().to_string()],
        vec![
            "key".into(),
            "add".into(),
            "--new-password-file".into(),
            repo.password_file.display().to_string(),
        ],
        vec!["prune".into(), "--grace".into(), "0s".into()],
        vec![
            "hold".into(),
            "add".into(),
            "--reason".into(),
            "case 1".into(),
            "latest".into(),
        ],
    ];
    for args in &refused {
        let out = repo.run(args);
        assert_refused_for(&out, "Read-only file system", "read-only");
    }
    // Reading works: list, check, restore (into a writable target).
    assert_as_before(&repo, &expected);

    disk.remount("rw");
    expected.insert(backup(&repo, &src), restored_contents(&src));
    assert_as_before(&repo, &expected);
}
