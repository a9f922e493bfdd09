//! Key rotation and crypto-shredding (format.md §3.2) on the real binary: `key rotate` while
//! backups run, `key destroy-epoch` refused while anything needs the epoch and then shredding what
//! it sealed, and `key rotate` killed at random moments.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// The epoch tag in an encrypted object's header (format.md §5: bytes 12..16, little-endian).
fn header_tag(path: &Path) -> u32 {
    let bytes = std::fs::read(path).unwrap();
    assert!(bytes.len() >= 48, "{} is not an object", path.display());
    u32::from_le_bytes(bytes[12..16].try_into().unwrap())
}

/// `key list --json`: the epochs.
#[track_caller]
fn epochs(repo: &Repo) -> Vec<Value> {
    let out = repo.run(["key", "list", "--json"]);
    out.assert_success();
    out.json()["epochs"]
        .as_array()
        .unwrap_or_else(|| panic!("key list --json has no `epochs`\n{}", out.describe()))
        .clone()
}

#[track_caller]
fn current_tag(repo: &Repo) -> u32 {
    let current: Vec<Value> = epochs(repo)
        .into_iter()
        .filter(|e| e["current"] == true)
        .collect();
    assert_eq!(current.len(), 1, "{current:?}");
    u32::from_str_radix(current[0]["tag"].as_str().unwrap(), 16).unwrap()
}

/// The snapshot files, by ID.
fn snapshot_files(repo: &Repo) -> BTreeMap<String, PathBuf> {
    regular_files_under(&repo.path.join("snapshots"))
        .into_iter()
        .map(|p| (file_name_str(&p), p))
        .collect()
}

fn epoch_objects(repo: &Repo) -> Vec<PathBuf> {
    regular_files_under(&repo.path.join("keyring"))
        .into_iter()
        .filter(|p| file_name_str(p).starts_with("epoch-"))
        .collect()
}

/// Moves the storage time (mtime, on local storage) of every epoch object an hour and a half
/// back: `key destroy-epoch` waits an hour after a rotation for processes that opened the
/// repository before it.
fn age_epoch_objects(repo: &Repo) {
    let then = std::time::SystemTime::now() - Duration::from_secs(5400);
    for p in epoch_objects(repo) {
        let f = std::fs::File::options().write(true).open(&p).unwrap();
        f.set_modified(then).unwrap();
    }
}

/// A directory of one file shared by every version (deduplicated across epochs) and one of its
/// own.
fn source(repo: &Repo, name: &str, shared_seed: u64, own_seed: u64) -> PathBuf {
    let dir = repo.sandbox.mkdir(name);
    write_random_file(&dir.join("shared.bin"), shared_seed, 400 * 1024);
    write_random_file(&dir.join("own.bin"), own_seed, 300 * 1024);
    write_file(&dir.join("small.txt"), format!("{name}\n"));
    dir
}

#[track_caller]
fn assert_restores(repo: &Repo, id: &str, src: &Path, name: &str) {
    let target = repo.restore(id, name);
    assert_trees_equal(src, &restored(&target, src), Compare::content_only());
}

// ---------------------------------------------------------------------------
// (a) rotating while backups run
// ---------------------------------------------------------------------------

#[test]
fn rotating_twice_while_backups_run_keeps_every_snapshot_restorable() {
    let repo = Repo::init();
    let first_src = source(&repo, "first", 1, 2);
    let first = json_str(&repo.backup(&[&first_src], &[]), "snapshot_id").to_string();
    let epoch1 = current_tag(&repo);

    // Four writers, three backups each, while the keys are rotated twice.
    let writers = 4;
    let rounds = 3;
    let sources: Vec<Vec<PathBuf>> = (0..writers)
        .map(|w| {
            (0..rounds)
                .map(|r| source(&repo, &format!("w{w}-r{r}"), 100 + w, 1000 + w * 10 + r))
                .collect()
        })
        .collect();
    let started = Instant::now();
    let results: Vec<Vec<(String, PathBuf)>> = thread::scope(|scope| {
        let handles: Vec<_> = sources
            .iter()
            .map(|dirs| {
                let repo = &repo;
                scope.spawn(move || {
                    dirs.iter()
                        .map(|dir| {
                            let v = repo.backup(&[dir], &[]);
                            (json_str(&v, "snapshot_id").to_string(), dir.clone())
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut rotate_times = Vec::new();
        for pause in [150, 400] {
            thread::sleep(Duration::from_millis(pause));
            let t = Instant::now();
            repo.run(["key", "rotate"]).assert_success();
            rotate_times.push(t.elapsed());
        }
        eprintln!("key rotate took {rotate_times:?} beside {writers} running backups");
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    eprintln!(
        "{} backups and two rotations in {:?}",
        writers * rounds,
        started.elapsed()
    );
    let last_src = source(&repo, "last", 1, 3);
    let last = json_str(&repo.backup(&[&last_src], &[]), "snapshot_id").to_string();
    let epoch3 = current_tag(&repo);

    let numbers: Vec<u64> = epochs(&repo)
        .iter()
        .map(|e| e["epoch"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [1, 2, 3], "two rotations make epochs 2 and 3");
    assert_ne!(epoch1, epoch3);

    // Sealed under the epoch current when each was written.
    let files = snapshot_files(&repo);
    assert_eq!(header_tag(&files[&first]), epoch1, "the first snapshot");
    assert_eq!(header_tag(&files[&last]), epoch3, "the last snapshot");
    let tags: BTreeSet<u32> = files.values().map(|p| header_tag(p)).collect();
    assert!(tags.is_subset(
        &epochs(&repo)
            .iter()
            .map(|e| u32::from_str_radix(e["tag"].as_str().unwrap(), 16).unwrap())
            .collect()
    ));
    // The new epoch's packs hold only what was new: the shared file was stored once, under epoch 1.
    let pack_tags: BTreeSet<u32> = repo.packs().iter().map(|p| header_tag(p)).collect();
    assert!(pack_tags.contains(&epoch1), "{pack_tags:?}");

    let mut all = vec![(first, first_src), (last, last_src)];
    all.extend(results.into_iter().flatten());
    assert_eq!(all.len(), writers as usize * rounds as usize + 2);
    for (i, (id, src)) in all.iter().enumerate() {
        assert_restores(&repo, id, src, &format!("restored-{i}"));
    }
    let out = repo.run(["check", "--read-data", "--json"]);
    out.assert_success();
    assert_eq!(
        out.json()["problems"],
        Value::Array(vec![]),
        "{}",
        out.describe()
    );
}

// ---------------------------------------------------------------------------
// (b) destroying an epoch
// ---------------------------------------------------------------------------

#[test]
fn destroy_epoch_waits_for_what_needs_it_then_shreds_it() {
    let repo = Repo::init();
    let old_src = source(&repo, "old", 7, 8);
    let old = json_str(&repo.backup(&[&old_src], &[]), "snapshot_id").to_string();
    let epoch1 = current_tag(&repo);
    // Hold records sealed under epoch 1: the tombstone keeps the key that opens them.
    repo.run(["hold", "add", &old[..8], "--reason", "early inquiry"])
        .assert_success();
    repo.run(["hold", "remove", &old[..8], "--reason", "inquiry dropped"])
        .assert_success();
    // A key file made before the destroy must still open the repository after it.
    let key_file = repo.join("keyfile");
    repo.add_key_file(&key_file);
    // Copies of what epoch 1 sealed, to put back after the destroy.
    let keep = repo.sandbox.mkdir("kept");
    let old_file = keep.join("old-snapshot");
    std::fs::copy(&snapshot_files(&repo)[&old], &old_file).unwrap();
    let old_packs: Vec<PathBuf> = repo.packs();
    assert!(old_packs.iter().all(|p| header_tag(p) == epoch1));
    let old_pack = old_packs[0].clone();
    let kept_pack = keep.join("old-pack");
    std::fs::copy(&old_pack, &kept_pack).unwrap();

    // The current epoch cannot go.
    let out = repo.run(["key", "destroy-epoch", "1"]);
    out.assert_code(EXIT_FATAL);
    out.assert_output_contains("it is the current epoch");
    out.assert_output_contains("lifeline key rotate");

    repo.run(["key", "rotate"]).assert_success();
    // The new snapshot shares the old one's data: it must survive the destroy.
    // The same path, so that the old snapshot is not the newest of its group and may be forgotten.
    let new_src = old_src.clone();
    write_random_file(&new_src.join("own.bin"), 9, 300 * 1024);
    let new = json_str(&repo.backup(&[&new_src], &[]), "snapshot_id").to_string();
    assert_ne!(header_tag(&snapshot_files(&repo)[&new]), epoch1);

    // Too soon after the rotation, and a snapshot and packs still need it.
    let out = repo.run(["key", "destroy-epoch", "1"]);
    out.assert_code(EXIT_FATAL);
    out.assert_output_contains("ago: a process that opened the repository before");
    out.assert_output_contains(&format!("snapshot {}", &old[..8]));
    out.assert_output_contains("pack(s)");
    out.assert_output_contains("lifeline prune --repack-epoch 1");

    age_epoch_objects(&repo);
    repo.run(["hold", "add", &old[..8], "--reason", "case 2026-7"])
        .assert_success();
    let out = repo.run(["key", "destroy-epoch", "1"]);
    out.assert_code(EXIT_FATAL);
    assert!(
        !out.all_output().contains("ago: a process"),
        "{}",
        out.describe()
    );
    out.assert_output_contains(&format!("snapshot {}", &old[..8]));
    out.assert_output_contains("held: case 2026-7");
    out.assert_output_contains("lifeline hold remove");
    // Nothing was destroyed by the refusals.
    assert_eq!(epochs(&repo).len(), 2);
    assert!(epochs(&repo).iter().all(|e| e["destroyed"].is_null()));

    repo.run(["hold", "remove", &old[..8], "--reason", "case closed"])
        .assert_success();
    repo.run(["forget", &old[..8]]).assert_success();
    let out = repo.run(["key", "destroy-epoch", "1"]);
    out.assert_code(EXIT_FATAL);
    assert!(
        !out.all_output().contains("snapshot(s) are sealed"),
        "{}",
        out.describe()
    );
    out.assert_output_contains("lifeline prune --repack-epoch 1");

    let out = repo.run(["prune", "--repack-epoch", "1", "--grace", "0s", "--json"]);
    out.assert_success();
    assert!(
        out.json()["marked"]["epoch_packs"].as_u64().unwrap() >= 1,
        "{}",
        out.describe()
    );
    assert!(
        repo.packs().iter().all(|p| header_tag(p) != epoch1),
        "prune --grace 0s deletes the repacked packs at once"
    );

    let started = Instant::now();
    let out = repo.run(["key", "destroy-epoch", "1", "--json"]);
    let took = started.elapsed();
    out.assert_success();
    let report = out.json();
    eprintln!("key destroy-epoch took {took:?}: {report}");
    assert_eq!(report["epoch"], 1);
    assert_eq!(report["deleted"].as_array().unwrap().len(), 1);
    let listed = epochs(&repo);
    assert!(listed[0]["destroyed"].is_string(), "{listed:?}");
    assert!(listed[1]["current"] == true);
    assert_eq!(epoch_objects(&repo).len(), 1, "the epoch's keys are gone");

    // Every credential still opens, and what stayed is intact.
    assert_restores(&repo, &new, &new_src, "new-by-password");
    let by_key_file = run(
        repo.sandbox
            .lifeline()
            .args(["restore", &new[..8], "--target"])
            .arg(repo.join("new-by-key-file"))
            .arg("--repo")
            .arg(&repo.path)
            .arg("--key-file")
            .arg(&key_file),
        None,
    );
    by_key_file.assert_success();
    assert_trees_equal(
        &new_src,
        &restored(&repo.join("new-by-key-file"), &new_src),
        Compare::content_only(),
    );
    let out = repo.run(["check", "--read-data", "--json"]);
    out.assert_success();
    assert_eq!(out.json()["shredded"], Value::Array(vec![]));
    // The hold records written under epoch 1 stay readable, so holds are still decided.
    let out = repo.run(["hold", "list", "--history"]);
    out.assert_success();
    out.assert_output_contains("early inquiry");
    out.assert_output_contains("inquiry dropped");
    // Records from before the destroy still authenticate.
    let out = repo.run(["audit", "verify"]);
    out.assert_success();

    // What epoch 1 sealed, put back from elsewhere, opens no more.
    std::fs::copy(&old_file, repo.path.join("snapshots").join(&old)).unwrap();
    std::fs::create_dir_all(old_pack.parent().unwrap()).unwrap();
    std::fs::copy(&kept_pack, &old_pack).unwrap();
    let out = repo.run(["check", "--json"]);
    out.assert_success();
    let shredded: Vec<String> = out.json()["shredded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["object"].as_str().unwrap().to_string())
        .collect();
    assert!(
        shredded.contains(&format!("snapshots/{old}")),
        "{shredded:?}\n{}",
        out.describe()
    );
    assert!(
        shredded.iter().any(|o| old_pack.ends_with(o)),
        "{shredded:?}"
    );
    let out = repo.run(["check"]);
    out.assert_success();
    out.assert_output_contains("shredded");
    let out = repo.run([
        OsStr::new("restore"),
        OsStr::new(&old[..8]),
        OsStr::new("--target"),
        repo.join("old-again").as_os_str(),
    ]);
    out.assert_failure();
    out.assert_output_contains("is shredded: key epoch 1 was destroyed");
    // A second destroy finds nothing left to do.
    let out = repo.run(["key", "destroy-epoch", "1", "--json"]);
    out.assert_success();
    assert_eq!(out.json()["already_destroyed"], true);
}

#[test]
fn destroy_epoch_needs_an_administrator_and_a_v2_repository() {
    let repo = Repo::init();
    // Format v1: a fixture repository of the repository crate.
    let v1 = Path::new(env!("CARGO_MANIFEST_DIR")).join("../lifeline-repo/tests/fixtures/v1");
    let copy = repo.sandbox.mkdir("v1");
    copy_dir(&v1, &copy);
    let pw = repo.sandbox.write("fixture-password", "fixture-password");
    for args in [
        ["key", "rotate"].as_slice(),
        ["key", "destroy-epoch", "1"].as_slice(),
    ] {
        let out = run(
            repo.sandbox
                .lifeline()
                .args(args)
                .arg("--repo")
                .arg(&copy)
                .arg("--password-file")
                .arg(&pw),
            None,
        );
        out.assert_failure();
        out.assert_output_contains("lifeline migrate");
    }
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

// ---------------------------------------------------------------------------
// (c) kill -9 during a rotation
// ---------------------------------------------------------------------------

#[test]
fn a_rotation_killed_at_any_moment_leaves_a_repository_that_opens_and_backs_up() {
    let repo = Repo::init();
    let src = source(&repo, "src", 11, 12);
    repo.backup(&[&src], &[]);
    let mut rng = Rng::new(0x5eed_0013);
    let mut completed = 0;
    for round in 0..8 {
        let before = epoch_objects(&repo).len();
        let mut child = repo
            .cmd(["key", "rotate"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Opening costs ~0.1-0.3 s of Argon2id; the write comes after.
        thread::sleep(Duration::from_millis(rng.next_u64() % 400));
        let _ = child.kill();
        let status = child.wait().unwrap();
        if status.success() {
            completed += 1;
        }
        let after = epoch_objects(&repo).len();
        assert!(
            after == before || after == before + 1,
            "round {round}: {before} epoch objects became {after}"
        );
        if status.success() {
            assert_eq!(
                after,
                before + 1,
                "round {round}: a finished rotation wrote its epoch"
            );
        }
        write_file(&src.join("small.txt"), format!("round {round}\n"));
        let id = json_str(&repo.backup(&[&src], &[]), "snapshot_id").to_string();
        assert_eq!(
            header_tag(&snapshot_files(&repo)[&id]),
            current_tag(&repo),
            "round {round}: sealed under the newest epoch"
        );
    }
    eprintln!("{completed} of 8 rotations finished before their kill");
    let numbers: Vec<u64> = epochs(&repo)
        .iter()
        .map(|e| e["epoch"].as_u64().unwrap())
        .collect();
    let expected: Vec<u64> = (1..=numbers.len() as u64).collect();
    assert_eq!(
        numbers, expected,
        "epochs are numbered without gaps or twins"
    );
    repo.run(["check", "--read-data"]).assert_success();
}
