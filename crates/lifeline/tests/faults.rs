//! Crashes, damaged repositories, wrong passwords and concurrent writers.
#![allow(clippy::unwrap_used)]

mod common;

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

// ---------------------------------------------------------------------------
// kill -9 during a backup
// ---------------------------------------------------------------------------

/// Size of the source killed mid-backup, in MiB: 300 in release builds. The
/// debug binary backs up only ~4 MB/s (AES-GCM generics are instantiated in
/// the unoptimised workspace crates), so debug builds use 64 MiB: still four
/// default-size (16 MiB) packs, so every kill point falls between packs.
/// `LIFELINE_E2E_KILL_MIB` overrides both.
fn kill_source_mib() -> usize {
    match std::env::var("LIFELINE_E2E_KILL_MIB") {
        Ok(v) => v
            .parse()
            .expect("LIFELINE_E2E_KILL_MIB must be a number of MiB"),
        Err(_) if cfg!(debug_assertions) => 64,
        Err(_) => 300,
    }
}

/// Random files of 4 MiB; returns (total bytes, number of files).
fn make_big_source(src: &Path) -> (u64, u64) {
    const FILE_MIB: usize = 4;
    fs::create_dir_all(src).unwrap();
    let files = kill_source_mib().div_ceil(FILE_MIB);
    for i in 0..files {
        let path = src.join(format!("part{i:03}.bin"));
        write_random_file(&path, 1000 + i as u64, FILE_MIB * MIB);
    }
    stamp_mtimes(src, 1_600_000_000);
    ((files * FILE_MIB * MIB) as u64, files as u64)
}

enum KillOutcome {
    /// SIGKILL hit the running backup; `landed` bytes of packs were in data/.
    Killed { landed: u64, after: Duration },
    /// The backup exited by itself before the threshold was reached.
    FinishedFirst(ExitStatus),
}

/// Starts `backup src` and SIGKILLs it as soon as data/ holds at least
/// `threshold` bytes of packs.
fn backup_and_kill_when_landed(repo: &Repo, src: &Path, threshold: u64) -> KillOutcome {
    let log = File::create(repo.join("killed-backup.log")).unwrap();
    let mut child = repo
        .cmd([OsStr::new("backup"), src.as_os_str()])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return KillOutcome::FinishedFirst(status);
        }
        if repo.data_bytes() >= threshold.max(1) {
            child.kill().unwrap(); // SIGKILL
            let status = child.wait().unwrap();
            if status.signal() == Some(9) {
                return KillOutcome::Killed {
                    landed: repo.data_bytes(),
                    after: start.elapsed(),
                };
            }
            // It exited on its own between try_wait and kill.
            return KillOutcome::FinishedFirst(status);
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("backup neither landed {threshold} bytes nor finished within {TIMEOUT:?}");
        }
        thread::sleep(Duration::from_millis(2));
    }
}

/// Kill a backup once `percent`% of the source has landed as packs (0 = as
/// soon as the first pack lands), then: check passes, the next backup only
/// uploads what was missing, and the restore is exact.
fn kill_then_resume(percent: u64) {
    let repo = Repo::init();
    let src = repo.join("src");
    let (total, nfiles) = make_big_source(&src);

    let mut threshold = (total * percent / 100).max(1);
    let (landed, after) = loop {
        match backup_and_kill_when_landed(&repo, &src, threshold) {
            KillOutcome::Killed { landed, after } => break (landed, after),
            KillOutcome::FinishedFirst(status) => {
                let log = fs::read_to_string(repo.join("killed-backup.log")).unwrap_or_default();
                assert!(
                    threshold > 1,
                    "backup of {total} bytes finished ({status:?}) before a single pack landed \
                     in data/, so it could not be killed mid-way\nlog:\n{log}"
                );
                assert!(status.success(), "backup failed: {status:?}\n{log}");
                // Too fast for this threshold: start over and kill at the first pack.
                eprintln!(
                    "backup finished before {threshold} bytes landed; retrying at the first pack"
                );
                fs::remove_dir_all(&repo.path).unwrap();
                repo.run(["init"]).assert_success();
                threshold = 1;
            }
        }
    };
    eprintln!("killed after {after:?} with {landed} of {total} bytes in data/");
    assert!(landed > 0, "killed before any pack landed");
    assert!(
        landed < total,
        "all data had landed ({landed} bytes) before the kill"
    );

    assert!(
        repo.snapshots().is_empty(),
        "a killed backup left a snapshot"
    );
    repo.run(["check", "--read-data"]).assert_success();

    let landed_before_rerun = repo.data_bytes();
    let summary = repo.backup(&[&src], &[]);
    let added = json_u64(&summary, "data_added");
    // Only tree metadata and rounding (pack headers, tags) may come on top.
    let slack = 2 * MIB as u64 + total / 100;
    assert!(
        added <= total.saturating_sub(landed_before_rerun) + slack,
        "re-run after the kill uploaded {added} bytes although {landed_before_rerun} of {total} \
         bytes had already landed (allowed: {})",
        total.saturating_sub(landed_before_rerun) + slack
    );
    assert_eq!(json_u64(&summary, "files_new"), nfiles, "{summary}");

    let target = repo.restore("latest", "restore");
    assert_trees_equal(&src, &restored(&target, &src), Compare::everything());
    repo.run(["check"]).assert_success();
}

#[test]
fn kill_9_as_first_pack_lands_then_check_passes_and_backup_resumes() {
    kill_then_resume(0);
}

#[test]
fn kill_9_at_forty_percent_then_check_passes_and_backup_resumes() {
    kill_then_resume(40);
}

#[test]
fn kill_9_at_seventy_percent_then_check_passes_and_backup_resumes() {
    kill_then_resume(70);
}

// ---------------------------------------------------------------------------
// Damaged packs
// ---------------------------------------------------------------------------

struct Victim {
    repo: Repo,
    /// Absolute source path of the one file whose data we damage.
    file: PathBuf,
    short_id: String,
    /// The largest pack, i.e. the one holding the file's data.
    pack: PathBuf,
    pack_id: String,
}

fn backed_up_victim() -> Victim {
    let repo = Repo::init();
    let src = repo.join("src");
    let file = src.join("victim.bin");
    write_random_file(&file, 77, 4 * MIB);
    repo.backup(&[&src], &[]);
    repo.run(["check", "--read-data"]).assert_success();
    repo.run(["check", "--read-data-subset", "50%"])
        .assert_success();
    let short_id = json_str(&repo.snapshots()[0], "short_id").to_string();
    let pack = repo
        .packs()
        .into_iter()
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .expect("no packs after backup");
    let pack_id = file_name_str(&pack);
    Victim {
        repo,
        file,
        short_id,
        pack,
        pack_id,
    }
}

fn with_write_access(path: &Path, f: impl FnOnce(&mut File)) {
    let mode = mode_of(path);
    set_mode(path, mode | 0o200);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    f(&mut file);
    drop(file);
    set_mode(path, mode);
}

#[track_caller]
fn assert_check_read_data_reports(v: &Victim) {
    let out = v.repo.run(["check", "--read-data"]);
    out.assert_code(EXIT_FATAL);
    out.assert_output_contains(&v.pack_id);
    out.assert_output_contains("victim.bin");
    out.assert_output_contains(&v.short_id);
}

#[track_caller]
fn assert_restore_fails_naming_victim(v: &Victim) {
    let target = v.repo.join("restore");
    let out = v.repo.run([
        OsStr::new("restore"),
        OsStr::new("latest"),
        OsStr::new("--target"),
        target.as_os_str(),
    ]);
    out.assert_failure();
    out.assert_output_contains("victim.bin");
    // Whatever was written must not pass for the original.
    let back = restored(&target, &v.file);
    if back.exists() {
        assert!(
            compare_files(&v.file, &back).is_err(),
            "restore reported an error but wrote an intact-looking victim.bin"
        );
    }
}

#[test]
fn flipped_byte_in_pack_is_named_by_check_read_data_and_restore() {
    let v = backed_up_victim();
    with_write_access(&v.pack, |f| {
        let len = f.metadata().unwrap().len();
        f.seek(SeekFrom::Start(len / 2)).unwrap();
        let mut b = [0u8; 1];
        f.read_exact(&mut b).unwrap();
        f.seek(SeekFrom::Start(len / 2)).unwrap();
        f.write_all(&[b[0] ^ 0xff]).unwrap();
    });
    assert_check_read_data_reports(&v);
    let out = v.repo.run(["check", "--read-data-subset", "100%"]);
    out.assert_code(EXIT_FATAL)
        .assert_output_contains(&v.pack_id);
    assert_restore_fails_naming_victim(&v);
}

#[test]
fn truncated_pack_is_named_by_check_read_data_and_restore() {
    let v = backed_up_victim();
    with_write_access(&v.pack, |f| {
        let len = f.metadata().unwrap().len();
        f.set_len(len / 2).unwrap();
    });
    assert_check_read_data_reports(&v);
    assert_restore_fails_naming_victim(&v);
}

#[test]
fn deleted_pack_is_named_by_plain_check() {
    let v = backed_up_victim();
    fs::remove_file(&v.pack).unwrap();
    let out = v.repo.run(["check"]);
    out.assert_code(EXIT_FATAL);
    out.assert_output_contains(&v.pack_id);
    out.assert_output_contains("victim.bin");
    out.assert_output_contains(&v.short_id);
    assert_restore_fails_naming_victim(&v);
}

// ---------------------------------------------------------------------------
// Wrong password
// ---------------------------------------------------------------------------

#[test]
fn wrong_password_exits_12_and_leaves_repository_untouched() {
    let repo = Repo::init();
    let src = repo.join("src");
    write_file(&src.join("f"), random_bytes(3, 200 * KIB));
    repo.backup(&[&src], &[]);
    let wrong = repo.sandbox.write("wrong-password", "not the password");
    let new_pw = repo.sandbox.write("new-password", "would be new");
    let target = repo.join("restore");
    let before = fingerprint_dir(&repo.path);

    let f = src.join("f");
    let cases: Vec<Vec<&OsStr>> = vec![
        vec!["snapshots".as_ref(), "--json".as_ref()],
        vec!["backup".as_ref(), src.as_os_str()],
        vec!["check".as_ref()],
        vec!["check".as_ref(), "--read-data".as_ref()],
        vec!["ls".as_ref(), "latest".as_ref()],
        vec![
            "restore".as_ref(),
            "latest".as_ref(),
            "--target".as_ref(),
            target.as_os_str(),
        ],
        vec!["dump".as_ref(), "latest".as_ref(), f.as_os_str()],
        vec!["key".as_ref(), "list".as_ref()],
        vec![
            "key".as_ref(),
            "add".as_ref(),
            "--new-password-file".as_ref(),
            new_pw.as_os_str(),
        ],
        vec![
            "key".as_ref(),
            "passwd".as_ref(),
            "--new-password-file".as_ref(),
            new_pw.as_os_str(),
        ],
    ];
    for args in &cases {
        let out = repo.run_with_password_file(&wrong, args);
        out.assert_code(EXIT_WRONG_PASSWORD);
    }
    let mut stdin_backup =
        repo.cmd_with_password_file(&wrong, ["backup", "--stdin", "--name", "x"]);
    run(&mut stdin_backup, Some(b"data")).assert_code(EXIT_WRONG_PASSWORD);

    let after = fingerprint_dir(&repo.path);
    if after != before {
        let changed: Vec<String> = before
            .keys()
            .chain(after.keys())
            .filter(|k| before.get(*k) != after.get(*k))
            .map(|k| format!("{k:?}: {:?} -> {:?}", before.get(k), after.get(k)))
            .collect();
        panic!(
            "wrong-password commands changed the repository:\n{}",
            changed.join("\n")
        );
    }
    assert!(
        regular_files_under(&target).is_empty(),
        "restore with a wrong password wrote files"
    );
    assert_eq!(
        repo.snapshots().len(),
        1,
        "the right password must still work"
    );
}

// ---------------------------------------------------------------------------
// Concurrent writers
// ---------------------------------------------------------------------------

fn make_concurrent_source(dir: &Path, seed: u64) {
    for i in 0..4 {
        write_random_file(&dir.join(format!("own{i}.bin")), seed + i, 2 * MIB);
    }
    // Same content in both trees: both writers race to store it.
    write_random_file(&dir.join("shared.bin"), 7, 3 * MIB);
    write_file(&dir.join("small.txt"), format!("tree {seed}"));
    stamp_mtimes(dir, 1_650_000_000 + seed as i64);
}

#[test]
fn two_simultaneous_backups_into_one_repository_both_succeed() {
    let repo = Repo::init();
    let a = repo.join("a");
    let b = repo.join("b");
    make_concurrent_source(&a, 100);
    make_concurrent_source(&b, 200);

    let barrier = std::sync::Barrier::new(2);
    let (out_a, out_b) = thread::scope(|s| {
        let ta = s.spawn(|| {
            barrier.wait();
            repo.run([OsStr::new("backup"), OsStr::new("--json"), a.as_os_str()])
        });
        let tb = s.spawn(|| {
            barrier.wait();
            repo.run([OsStr::new("backup"), OsStr::new("--json"), b.as_os_str()])
        });
        (ta.join().unwrap(), tb.join().unwrap())
    });
    out_a.assert_success();
    out_b.assert_success();
    let id_a = json_str(&out_a.json(), "snapshot_id").to_string();
    let id_b = json_str(&out_b.json(), "snapshot_id").to_string();
    assert_ne!(id_a, id_b);

    let snaps = repo.snapshots();
    assert_eq!(snaps.len(), 2, "{snaps:?}");
    for (id, dir, name) in [(&id_a, &a, "ra"), (&id_b, &b, "rb")] {
        let s = snaps
            .iter()
            .find(|s| json_str(s, "id") == id.as_str())
            .unwrap();
        assert_eq!(
            s["paths"],
            serde_json::json!([dir.to_str().unwrap()]),
            "{s}"
        );
        let target = repo.restore(id, name);
        assert_trees_equal(dir, &restored(&target, dir), Compare::everything());
    }
    repo.run(["check", "--read-data"]).assert_success();
}
