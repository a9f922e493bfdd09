//! Garbage collection on the real binary: prune frees space and leaves a repository that passes
//! `check --read-data`, honours its grace period, repacks and merges, survives kill -9 at any moment,
//! and never deletes what a backup running beside it needs.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

fn prune_json(repo: &Repo, args: &[&str]) -> Value {
    let out = repo.run(["prune", "--json"].iter().chain(args).copied());
    out.assert_success();
    out.json()
}

fn index_files(repo: &Repo) -> usize {
    regular_files_under(&repo.path.join("index")).len()
}

#[test]
fn prune_frees_the_space_of_forgotten_snapshots_and_check_read_data_passes() {
    let repo = Repo::init();
    let src = repo.sandbox.mkdir("src");
    for i in 0..4 {
        write_random_file(&src.join("data.bin"), i, 4 * MIB);
        repo.backup(&[&src], &[]);
    }
    let before = repo.data_bytes();
    repo.run(["forget", "--keep-last", "1"]).assert_success();
    let report = prune_json(&repo, &["--grace", "0s"]);
    assert!(json_u64(&report["marked"], "unused_packs") > 0, "{report}");
    assert!(
        json_u64(&report["deleted"], "bytes") >= 12 * MIB as u64 - MIB as u64,
        "{report}"
    );
    let after = repo.data_bytes();
    assert!(
        after < 5 * MIB as u64 && after < before / 3,
        "one 4 MiB snapshot is left: {before} → {after}"
    );
    assert_eq!(index_files(&repo), 1, "the per-backup indexes were merged");
    assert!(regular_files_under(&repo.path.join("garbage")).is_empty());
    repo.run(["check", "--read-data"]).assert_success();
    let restored_dir = repo.restore("latest", "r");
    write_random_file(&repo.join("expected"), 3, 4 * MIB);
    assert_eq!(
        std::fs::read(restored(&restored_dir, &src).join("data.bin")).unwrap(),
        std::fs::read(repo.join("expected")).unwrap()
    );
    let again = prune_json(&repo, &["--grace", "0s"]);
    assert_eq!(
        again["marked"]["mark"],
        Value::Null,
        "nothing left to collect: {again}"
    );
}

#[test]
fn garbage_waits_for_the_grace_period_before_it_is_deleted() {
    let repo = Repo::init();
    let src = repo.sandbox.mkdir("src");
    for i in 0..2 {
        write_random_file(&src.join("data.bin"), 10 + i, 3 * MIB);
        repo.backup(&[&src], &[]);
    }
    repo.run(["forget", "--keep-last", "1"]).assert_success();
    let before = repo.data_bytes();
    let first = prune_json(&repo, &[]);
    let mark = first["marked"]["mark"].as_str().unwrap().to_string();
    assert_eq!(repo.data_bytes(), before, "a mark deletes nothing");
    assert_eq!(regular_files_under(&repo.path.join("garbage")).len(), 1);
    // While marked, the repository checks clean and notes the garbage.
    repo.run(["check", "--read-data"])
        .assert_success()
        .assert_output_contains("marked as garbage");
    let second = prune_json(&repo, &[]);
    assert_eq!(second["pending"][0]["mark"], mark.as_str());
    assert!(json_str(&second["pending"][0], "waiting_for").contains("grace period"));
    assert_eq!(repo.data_bytes(), before);
    // A dry run with no grace reports the deletion and makes none.
    let dry = prune_json(&repo, &["--grace", "0s", "--dry-run"]);
    assert!(
        json_u64(&dry["deleted"], "bytes") >= 3 * MIB as u64,
        "{dry}"
    );
    assert_eq!(repo.data_bytes(), before);
    let third = prune_json(&repo, &["--grace", "0s"]);
    assert_eq!(json_u64(&third["deleted"], "marks"), 1);
    assert!(repo.data_bytes() < before - 2 * MIB as u64);
    repo.run(["check", "--read-data"]).assert_success();
}

#[test]
fn partly_used_packs_are_repacked_and_merged_indexes_stay_few() {
    let repo = Repo::init();
    let src = repo.sandbox.mkdir("src");
    write_random_file(&src.join("keep.bin"), 1, 3 * MIB);
    write_random_file(&src.join("drop.bin"), 2, 3 * MIB);
    repo.backup(&[&src], &[]);
    std::fs::remove_file(src.join("drop.bin")).unwrap();
    write_random_file(&src.join("new.bin"), 3, 3 * MIB);
    repo.backup(&[&src], &[]);
    for i in 0..8 {
        write_file(&src.join(format!("small{i}")), format!("small file {i}"));
        repo.backup(&[&src], &[]);
    }
    assert_eq!(index_files(&repo), 10);
    repo.run(["forget", "--keep-last", "1"]).assert_success();
    let report = prune_json(&repo, &["--grace", "0s"]);
    assert!(
        json_u64(&report["marked"], "repacked_packs") >= 1,
        "the pack holding keep.bin and drop.bin is half unused: {report}"
    );
    assert!(json_u64(&report["marked"], "repacked_blobs") >= 1);
    let after = repo.data_bytes();
    assert!(
        after < 7 * MIB as u64,
        "keep.bin and new.bin remain, drop.bin is gone: {after}"
    );
    assert_eq!(index_files(&repo), 1, "{report}");
    repo.run(["check", "--read-data"]).assert_success();
    let r = repo.restore("latest", "r");
    assert_trees_equal(&src, &restored(&r, &src), Compare::content_only());
}

#[test]
fn prune_deletes_nothing_when_a_snapshot_cannot_be_read() {
    let repo = Repo::init();
    let src = repo.sandbox.mkdir("src");
    write_random_file(&src.join("a"), 1, MIB);
    repo.backup(&[&src], &[]);
    write_random_file(&src.join("a"), 2, MIB);
    repo.backup(&[&src], &[]);
    let snapshots = regular_files_under(&repo.path.join("snapshots"));
    let mut bytes = std::fs::read(&snapshots[0]).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&snapshots[0], bytes).unwrap();
    let before = repo.bytes_but_audit();
    repo.run(["prune", "--grace", "0s"])
        .assert_code(EXIT_FATAL)
        .assert_output_contains("prune deletes nothing");
    assert_eq!(repo.bytes_but_audit(), before);
    // The refused prune is on the record, with its cause.
    let log = repo.run(["audit", "log", "--json"]).json();
    let last = log.as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (&last["action"], &last["result"]),
        (&"prune".into(), &"failed".into())
    );
    assert!(
        last["error"]
            .as_str()
            .unwrap()
            .contains("prune deletes nothing"),
        "{last:#}"
    );
}

#[test]
fn two_prunes_do_not_run_at_once() {
    let repo = Repo::init();
    let src = repo.sandbox.mkdir("src");
    write_file(&src.join("a"), b"a");
    repo.backup(&[&src], &[]);
    // A live prune session of another host (written as a prune would write it).
    let marker = serde_json::json!({
        "session": "0123456789abcdef0123456789abcdef", "seq": 0, "hostname": "elsewhere",
        "pid": 4242, "boot_id": "x", "pid_namespace": "y", "command": "prune",
        "started": "2026-12-01T00:00:00Z"
    });
    let dir = repo.path.join("sessions");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("0123456789abcdef0123456789abcdef-0"),
        marker.to_string(),
    )
    .unwrap();
    repo.run(["prune"])
        .assert_code(EXIT_FATAL)
        .assert_output_contains("another prune is running (host elsewhere");
    // A session of this host whose process has ended is no obstacle.
    std::fs::remove_file(dir.join("0123456789abcdef0123456789abcdef-0")).unwrap();
    repo.run(["prune"]).assert_success();
}

#[test]
fn a_backup_that_started_before_a_mark_holds_back_its_deletion() {
    // A backup session of another host, live, that announced itself before the mark.
    let repo = Repo::init();
    let src = repo.sandbox.mkdir("src");
    for i in 0..2 {
        write_random_file(&src.join("data.bin"), 20 + i, 2 * MIB);
        repo.backup(&[&src], &[]);
    }
    let dir = repo.path.join("sessions");
    std::fs::create_dir_all(&dir).unwrap();
    let marker = serde_json::json!({
        "session": "fedcba9876543210fedcba9876543210", "seq": 0, "hostname": "db2",
        "pid": 99, "boot_id": "x", "pid_namespace": "y", "command": "write",
        "started": "2026-12-01T00:00:00Z"
    });
    std::fs::write(
        dir.join("fedcba9876543210fedcba9876543210-0"),
        marker.to_string(),
    )
    .unwrap();
    repo.run(["forget", "--keep-last", "1"]).assert_success();
    let before = repo.data_bytes();
    let report = prune_json(&repo, &["--grace", "0s"]);
    assert!(report["marked"]["mark"].is_string());
    assert!(
        json_str(&report["pending"][0], "waiting_for").contains("write on db2"),
        "{report}"
    );
    assert_eq!(
        repo.data_bytes(),
        before,
        "nothing deleted while it may still need it"
    );
    std::fs::remove_file(dir.join("fedcba9876543210fedcba9876543210-0")).unwrap();
    let report = prune_json(&repo, &["--grace", "0s"]);
    assert_eq!(json_u64(&report["deleted"], "marks"), 1, "{report}");
    assert!(repo.data_bytes() < before);
}

/// Make garbage: several backups of changing data, then forget all but the newest.
fn churn(repo: &Repo, src: &Path, seed: u64) {
    for i in 0..3 {
        write_random_file(&src.join(format!("f{}", i % 2)), seed * 10 + i, 600 * KIB);
        write_file(
            &src.join(format!("small{}", seed % 3)),
            format!("{seed}-{i}"),
        );
        repo.backup(&[src], &[]);
    }
    repo.run(["forget", "--keep-last", "2"]).assert_success();
}

#[test]
fn prune_killed_at_random_moments_leaves_a_repository_that_passes_check_read_data() {
    let repo = Repo::uninit();
    repo.run(["init", "--pack-size", "1"]).assert_success();
    let src = repo.sandbox.mkdir("src");
    let mut rng = Rng::new(0x5eed);
    let mut killed = 0;
    for round in 0..6 {
        churn(&repo, &src, round);
        let expected = file_contents(&src);
        let mut cmd = repo.cmd(["prune", "--grace", "0s", "--max-unused", "0"]);
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let delay = Duration::from_millis(50 + rng.next_u64() % 700);
        thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            killed += 1;
        }
        child.wait().unwrap();
        repo.run(["check", "--read-data"]).assert_success();
        let r = repo.restore("latest", &format!("r{round}"));
        assert_eq!(
            file_contents(&restored(&r, &src)),
            expected,
            "round {round}"
        );
    }
    assert!(
        killed >= 2,
        "prune was killed mid-run in {killed} of 6 rounds"
    );
    let report = prune_json(&repo, &["--grace", "0s", "--max-unused", "0"]);
    repo.run(["check", "--read-data"]).assert_success();
    assert!(
        regular_files_under(&repo.path.join("garbage")).is_empty(),
        "{report}"
    );
    for s in repo.snapshots() {
        let id = json_str(&s, "id");
        repo.restore(id, &format!("final-{}", &id[..8]));
    }
}

/// What each backup loop stored: snapshot ID → the files it backed up.
type Stored = Arc<Mutex<Vec<(String, BTreeMap<PathBuf, Vec<u8>>)>>>;

/// Four backup loops write into one repository while prune runs in a loop beside them (forgetting
/// all but the newest snapshots of each, with no grace period and repacking everything it can), and
/// `check` runs after every round. No snapshot may ever reference data prune deleted: every snapshot
/// left at the end restores exactly what its backup read. `LIFELINE_STRESS_SECS` sets the length
/// (default 150 s).
#[test]
fn prune_in_a_loop_beside_four_backup_loops_never_breaks_a_snapshot() {
    let seconds: u64 = std::env::var("LIFELINE_STRESS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(150);
    let repo = Arc::new(Repo::uninit());
    repo.run(["init", "--pack-size", "1"]).assert_success();
    let stop = Arc::new(AtomicBool::new(false));
    let stored: Stored = Arc::new(Mutex::new(Vec::new()));
    let mut loops = Vec::new();
    for worker in 0..4u64 {
        let (repo, stop, stored) = (Arc::clone(&repo), Arc::clone(&stop), Arc::clone(&stored));
        loops.push(thread::spawn(move || {
            let src = repo.sandbox.mkdir(format!("src{worker}"));
            // A file every loop shares (deduplicated across them) and files of its own.
            write_random_file(&src.join("shared.bin"), 7, 300 * KIB);
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // Contents come back every few rounds, after the snapshots holding them were
                // forgotten: the backup then deduplicates against data a prune is collecting,
                // which is the case the protocol must get right.
                write_random_file(
                    &src.join(format!("own{}", i % 3)),
                    worker * 1_000 + (i * 7) % 5,
                    400 * KIB,
                );
                write_file(&src.join("counter"), i.to_string());
                let expected = file_contents(&src);
                let out = repo.run(["backup", "--json", src.to_str().unwrap()]);
                out.assert_success();
                let id = json_str(&out.json(), "snapshot_id").to_string();
                stored.lock().unwrap().push((id, expected));
                i += 1;
            }
            i
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut rounds = 0;
    let mut deleted_packs = 0;
    while Instant::now() < deadline {
        let out = repo.run([
            "forget",
            "--keep-last",
            "2",
            "--prune",
            "--grace",
            "0s",
            "--max-unused",
            "0",
            "--json",
        ]);
        out.assert_success();
        deleted_packs += json_u64(&out.json()["prune"]["deleted"], "packs");
        repo.run(["check"]).assert_success();
        rounds += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let backups: u64 = loops.into_iter().map(|l| l.join().unwrap()).sum();
    assert!(
        rounds >= 3 && backups >= 12,
        "{rounds} prune rounds, {backups} backups"
    );
    assert!(
        deleted_packs > 0,
        "prune really deleted packs while backups ran"
    );
    repo.run(["check", "--read-data"]).assert_success();
    let left: Vec<String> = repo
        .snapshots()
        .iter()
        .map(|s| json_str(s, "id").to_string())
        .collect();
    let stored = stored.lock().unwrap();
    for id in &left {
        let (_, expected) = stored.iter().find(|(s, _)| s == id).unwrap();
        let r = repo.restore(id, &format!("restore-{}", &id[..12]));
        let root = regular_files_under(&r)
            .into_iter()
            .find(|p| p.ends_with("counter"))
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap();
        assert_eq!(
            &file_contents(&root),
            expected,
            "snapshot {id} restores what it backed up"
        );
    }
    println!("{rounds} prune rounds beside {backups} backups; {deleted_packs} packs deleted");
}
