//! `lifeline migrate` on copies of the format v1 fixtures: everything stays readable, new backups are
//! sealed under the new epoch, v1 slots are converted or refused, and a migration killed at any
//! moment leaves a repository that opens with the old password and a rerun that completes.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::thread;
use std::time::Instant;

use common::*;
use serde_json::Value;

const FIXTURE_PASSWORD: &str = "fixture-password";
const SIGABRT: i32 = 6;
const SIGKILL: i32 = 9;

/// The steps `LIFELINE_FAILPOINT=migrate:<step>` can stop after, in order.
const STEPS: [&str; 7] = [
    "admin-slot",
    "root",
    "legacy-epochs",
    "new-epoch",
    "slots",
    "config",
    "remove-slots",
];

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

/// A copy of `crates/lifeline-repo/tests/fixtures/<name>` in its own sandbox.
fn fixture(name: &str) -> Repo {
    let sandbox = Sandbox::new();
    let password_file = sandbox.write("password", FIXTURE_PASSWORD);
    let path = sandbox.join("repo");
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../lifeline-repo/tests/fixtures")
        .join(name);
    copy_dir(&src, &path);
    Repo {
        sandbox,
        path,
        password_file,
    }
}

fn config_version(repo: &Repo) -> u64 {
    let config: Value = serde_json::from_slice(&fs::read(repo.path.join("config")).unwrap())
        .expect("config is JSON");
    json_u64(&config, "version")
}

#[track_caller]
fn migrate(repo: &Repo, extra: &[&str]) -> Value {
    let mut args = vec!["migrate", "--json"];
    args.extend_from_slice(extra);
    let out = repo.run(&args);
    out.assert_success();
    out.json()
}

fn key_list(repo: &Repo) -> Vec<Value> {
    let out = repo.run(["key", "list", "--json"]);
    out.assert_success();
    match out.json().get("slots").cloned() {
        Some(Value::Array(keys)) => keys,
        _ => panic!("key list --json has no array `slots`\n{}", out.describe()),
    }
}

/// `(version, role, kind)` of every slot, sorted.
fn slot_shapes(repo: &Repo) -> Vec<(u64, String, String)> {
    let mut shapes: Vec<_> = key_list(repo)
        .iter()
        .map(|k| {
            (
                json_u64(k, "version"),
                json_str(k, "role").to_string(),
                json_str(k, "kind").to_string(),
            )
        })
        .collect();
    shapes.sort();
    shapes
}

fn admin_v2(kind: &str) -> (u64, String, String) {
    (2, "admin".into(), kind.into())
}

/// The epoch tag in an envelope header (format.md §5: bytes 12..16, little-endian).
fn header_tag(object: &Path) -> u32 {
    let bytes = fs::read(object).unwrap();
    u32::from_le_bytes(bytes[12..16].try_into().unwrap())
}

fn snapshot_ids(repo: &Repo) -> Vec<String> {
    let mut ids: Vec<String> = repo
        .snapshots()
        .iter()
        .map(|s| json_str(s, "id").to_string())
        .collect();
    ids.sort();
    ids
}

/// Restores every snapshot into `<prefix>-<id>`; returns the targets by snapshot ID.
fn restore_all(repo: &Repo, prefix: &str) -> Vec<(String, PathBuf)> {
    snapshot_ids(repo)
        .into_iter()
        .map(|id| {
            let target = repo.restore(&id, &format!("{prefix}-{}", &id[..8]));
            (id, target)
        })
        .collect()
}

#[test]
fn migrating_each_v1_fixture_keeps_every_snapshot_and_seals_new_backups_under_a_new_epoch() {
    for name in ["v1", "v1-records", "v1-evidence"] {
        let repo = fixture(name);
        assert_eq!(config_version(&repo), 1);
        let before = restore_all(&repo, "before");
        assert!(!before.is_empty(), "{name} has snapshots");

        let started = Instant::now();
        let report = migrate(&repo, &[]);
        eprintln!("{name}: migrate took {:?}", started.elapsed());
        assert_eq!(json_str(&report, "outcome"), "migrated", "{report:#}");
        assert_eq!(config_version(&repo), 2);
        let new_epoch = &report["new_epoch"];
        let tag = u32::from_str_radix(json_str(new_epoch, "tag"), 16).unwrap();
        assert_ne!(
            tag, 1,
            "the new epoch has a fresh tag, not a v1 epoch number"
        );
        assert_eq!(json_u64(new_epoch, "epoch"), 2);
        assert_eq!(report["legacy_epochs"].as_array().unwrap().len(), 1);
        assert_eq!(report["slots_removed"][0]["reason"], "converted");
        assert_eq!(slot_shapes(&repo), [admin_v2("password")]);
        assert!(repo.path.join("keyring").is_dir());

        repo.run(["check", "--read-data"]).assert_success();
        for (id, old) in &before {
            let new = repo.restore(id, &format!("after-{}", &id[..8]));
            // Everything but the target directory's own time, which the restores made.
            let differences: Vec<String> = tree_differences(old, &new, Compare::everything())
                .into_iter()
                .filter(|d| !d.starts_with("\"\": mtime"))
                .collect();
            assert!(differences.is_empty(), "{name} {id}: {differences:#?}");
        }
        if name == "v1" {
            let restored = before[0].1.join("tmp/fx/src/docs/record.txt");
            assert_eq!(fs::read(restored).unwrap(), b"patient-record-42\n");
        }

        // A new backup is sealed under the new epoch: its snapshot, and the packs it wrote.
        let packs_before = repo.packs();
        let src = repo.sandbox.mkdir("new-src");
        write_random_file(&src.join("after-migration.bin"), 7, 300 * KIB);
        let summary = repo.backup(&[&src], &[]);
        let id = json_str(&summary, "snapshot_id");
        assert_eq!(header_tag(&repo.path.join("snapshots").join(id)), tag);
        let new_packs: Vec<_> = repo
            .packs()
            .into_iter()
            .filter(|p| !packs_before.contains(p))
            .collect();
        assert!(!new_packs.is_empty());
        for pack in &new_packs {
            assert_eq!(header_tag(pack), tag, "{}", pack.display());
        }
        let target = repo.restore(id, "new-restored");
        assert_trees_equal(&src, &restored(&target, &src), Compare::content_only());
        repo.run(["check", "--read-data"]).assert_success();

        // The audit trail goes on, with the migration in it.
        repo.run(["audit", "verify"]).assert_success();
        let out = repo.run(["audit", "log", "--json"]);
        out.assert_success();
        let log = out.json();
        let record = log
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["action"] == "migrate")
            .unwrap_or_else(|| panic!("{name}: no migrate record in {log:#}"));
        assert_eq!(record["result"], "ok");
        assert_eq!(record["details"]["outcome"], "migrated");

        // Once is enough.
        let again = repo.run(["migrate"]);
        again
            .assert_success()
            .assert_output_contains("format v2 already");
    }
}

#[test]
fn migrate_refuses_while_a_v1_slot_would_be_left_unconverted() {
    let repo = fixture("v1");
    let second = repo.add_password_slot("second password");
    let key_file = repo.join("archive.key");
    repo.add_key_file(&key_file);
    let slots = key_list(&repo);
    assert_eq!(slots.len(), 3);
    assert!(slots.iter().all(|k| json_u64(k, "version") == 1));
    let id_of = |kind: &str, current: bool| {
        slots
            .iter()
            .find(|k| json_str(k, "kind") == kind && k["current"] == current)
            .map(|k| json_str(k, "id")[..8].to_string())
            .unwrap()
    };
    let second_id = id_of("password", false);
    let file_id = id_of("key-file", false);
    let keys_before = repo.key_files();

    let out = repo.run(["migrate"]);
    out.assert_failure()
        .assert_output_contains(&second_id)
        .assert_output_contains(&file_id)
        .assert_output_contains("--remove-unconverted");
    let out = repo.run([
        "migrate",
        "--convert-password-file",
        second.to_str().unwrap(),
    ]);
    out.assert_failure().assert_output_contains(&file_id);
    assert!(
        !out.all_output().contains(&second_id),
        "a converted slot is not named\n{}",
        out.describe()
    );
    // A key of no slot of this repository is refused by name.
    let stranger = repo.sandbox.write("stranger", "opens nothing");
    repo.run([
        "migrate",
        "--convert-password-file",
        stranger.to_str().unwrap(),
        "--remove-unconverted",
    ])
    .assert_failure()
    .assert_output_contains("stranger")
    .assert_output_contains("opens no format v1 key slot");
    // Nothing was written by the refusals.
    assert_eq!(config_version(&repo), 1);
    assert!(!repo.path.join("keyring").exists());
    assert_eq!(repo.key_files(), keys_before);

    let report = migrate(
        &repo,
        &[
            "--convert-password-file",
            second.to_str().unwrap(),
            "--convert-key-file",
            key_file.to_str().unwrap(),
        ],
    );
    assert_eq!(report["slots_added"].as_array().unwrap().len(), 3);
    assert_eq!(
        slot_shapes(&repo),
        [
            admin_v2("key-file"),
            admin_v2("password"),
            admin_v2("password")
        ]
    );
    // Every converted key opens the migrated repository.
    let by_second = repo.run_with_password_file(&second, ["snapshots"]);
    by_second.assert_success();
    let mut by_file = repo.sandbox.lifeline();
    by_file
        .args(["snapshots", "--repo"])
        .arg(&repo.path)
        .arg("--key-file")
        .arg(&key_file);
    run(&mut by_file, None).assert_success();
}

#[test]
fn remove_unconverted_removes_the_v1_slots_no_key_given_opens() {
    let repo = fixture("v1");
    let second = repo.add_password_slot("second password");
    let report = migrate(&repo, &["--remove-unconverted"]);
    let reasons: Vec<&str> = report["slots_removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons.len(), 2);
    assert!(reasons.contains(&"converted") && reasons.contains(&"unconverted"));
    assert_eq!(slot_shapes(&repo), [admin_v2("password")]);
    repo.run_with_password_file(&second, ["snapshots"])
        .assert_code(EXIT_WRONG_PASSWORD);
    repo.run(["snapshots"]).assert_success();
}

/// After a stop at `step`, the old password opens the repository and lists its snapshot.
#[track_caller]
fn assert_opens_with_old_password(repo: &Repo, snapshots: &[String], what: &str) {
    let out = repo.run(["snapshots", "--json"]);
    assert!(
        out.code() == Some(EXIT_OK),
        "{what}: the old password no longer opens the repository\n{}",
        out.describe()
    );
    let mut ids: Vec<String> = out
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|s| json_str(s, "id").to_string())
        .collect();
    ids.sort();
    assert_eq!(ids, snapshots, "{what}");
}

/// A completed migration: v2, one admin slot per key, nothing of v1 or of a stale run left.
#[track_caller]
fn assert_migrated(repo: &Repo, slots: usize, what: &str) {
    assert_eq!(config_version(repo), 2, "{what}");
    let shapes = slot_shapes(repo);
    assert_eq!(shapes.len(), slots, "{what}: {shapes:?}");
    assert!(
        shapes.iter().all(|(v, role, _)| *v == 2 && role == "admin"),
        "{what}: {shapes:?}"
    );
    let roots = fs::read_dir(repo.path.join("keyring"))
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().starts_with("root-")
        })
        .count();
    assert_eq!(roots, 1, "{what}: exactly one key root");
}

#[test]
fn migration_stopped_after_each_step_opens_with_the_old_password_and_a_rerun_completes() {
    for (n, step) in STEPS.iter().enumerate() {
        let repo = fixture("v1");
        let snapshots = snapshot_ids(&repo);
        let mut cmd = repo.cmd(["migrate"]);
        cmd.env("LIFELINE_FAILPOINT", format!("migrate:{step}"));
        let out = run(&mut cmd, None);
        assert_eq!(
            out.status.signal(),
            Some(SIGABRT),
            "the failpoint after {step} stops the process\n{}",
            out.describe()
        );
        let switched = n >= STEPS.iter().position(|s| *s == "config").unwrap();
        assert_eq!(
            config_version(&repo),
            if switched { 2 } else { 1 },
            "{step}"
        );
        assert_opens_with_old_password(&repo, &snapshots, step);

        let report = migrate(&repo, &[]);
        let expected = if switched { "already-v2" } else { "resumed" };
        assert_eq!(
            json_str(&report, "outcome"),
            expected,
            "after {step}: {report:#}"
        );
        assert_migrated(&repo, 1, step);
        assert_opens_with_old_password(&repo, &snapshots, step);
    }
    // One full check of a resumed migration's result.
    let repo = fixture("v1-records");
    let mut cmd = repo.cmd(["migrate"]);
    cmd.env("LIFELINE_FAILPOINT", "migrate:new-epoch");
    run(&mut cmd, None);
    migrate(&repo, &[]);
    repo.run(["check", "--read-data"]).assert_success();
}

#[test]
fn a_rerun_opened_with_another_key_carries_on_through_the_key_that_started_it() {
    let repo = fixture("v1");
    let snapshots = snapshot_ids(&repo);
    let second = repo.add_password_slot("second password");
    // Started with the fixture password, stopped once the root and epochs exist.
    let mut cmd = repo.cmd([
        "migrate",
        "--convert-password-file",
        second.to_str().unwrap(),
    ]);
    cmd.env("LIFELINE_FAILPOINT", "migrate:new-epoch");
    assert_eq!(run(&mut cmd, None).status.signal(), Some(SIGABRT));

    // Rerun opened with the second password alone: it opens no v2 slot of that run, so it refuses
    // and says how to go on.
    let out = repo.run_with_password_file(&second, ["migrate", "--remove-unconverted"]);
    out.assert_failure()
        .assert_output_contains("interrupted migration")
        .assert_output_contains("keyring/");
    assert_eq!(config_version(&repo), 1);
    assert_opens_with_old_password(&repo, &snapshots, "after the refusal");

    // Given the first password too, it carries on with that run's keys.
    let out = repo.run_with_password_file(
        &second,
        [
            "migrate",
            "--json",
            "--convert-password-file",
            repo.password_file.to_str().unwrap(),
        ],
    );
    out.assert_success();
    assert_eq!(json_str(&out.json(), "outcome"), "resumed");
    assert_migrated(&repo, 2, "resumed through the other key");
    assert_opens_with_old_password(&repo, &snapshots, "first password");
    repo.run_with_password_file(&second, ["snapshots"])
        .assert_success();
}

/// A run stopped after its first write leaves a v2 slot wrapping an admin key no root answers to;
/// a rerun with another key must remove it, or that password would open to an error after the
/// switch instead of being refused as wrong.
#[test]
fn a_v2_slot_of_a_run_stopped_before_its_root_is_removed_by_a_rerun_with_another_key() {
    let mut repo = fixture("v1");
    let second = repo.add_password_slot("second password");
    let mut cmd = repo.cmd(["migrate", "--remove-unconverted"]);
    cmd.env("LIFELINE_FAILPOINT", "migrate:admin-slot");
    assert_eq!(run(&mut cmd, None).status.signal(), Some(SIGABRT));
    assert_eq!(state(&repo), "v1 + v2 slot");

    let out = repo.run_with_password_file(&second, ["migrate", "--json", "--remove-unconverted"]);
    out.assert_success();
    let mut reasons: Vec<String> = out.json()["slots_removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["reason"].as_str().unwrap().to_string())
        .collect();
    reasons.sort();
    assert_eq!(reasons, ["converted", "stale", "unconverted"]);
    let first = std::mem::replace(&mut repo.password_file, second);
    assert_migrated(&repo, 1, "migrated with the second password");
    repo.run(["check", "--read-data"]).assert_success();
    repo.run_with_password_file(&first, ["snapshots"])
        .assert_code(EXIT_WRONG_PASSWORD);
}

/// What a killed migration left, for the tally.
fn state(repo: &Repo) -> &'static str {
    let slots = repo.key_files().len();
    match (config_version(repo), repo.path.join("keyring").exists()) {
        (1, false) if slots == 1 => "v1",
        (1, false) => "v1 + v2 slot",
        (1, true) => "v1 + v2 slot + key objects",
        _ if slots > 1 => "v2 + v1 slot",
        _ => "v2",
    }
}

/// The repository's key objects, slots and config, to see a migration start writing.
fn key_state(repo: &Repo) -> (Vec<PathBuf>, Vec<PathBuf>, Vec<u8>) {
    (
        repo.key_files(),
        regular_files_under(&repo.path.join("keyring")),
        fs::read(repo.path.join("config")).unwrap(),
    )
}

/// The real thing: `kill -9` at random moments of a migration, then a rerun; each repository is
/// killed up to three times before it completes. Half the kills come at a random time within a
/// whole migration's length, which mostly lands in Argon2id; the other half a random 0–6 ms after
/// the migration was seen to write, which lands among the writes. Every state opens with the old
/// password.
#[test]
fn migration_killed_at_random_moments_opens_and_completes() {
    // How long a whole migration takes here, to spread the kills over it.
    let probe = fixture("v1");
    let started = Instant::now();
    migrate(&probe, &[]);
    let full = started.elapsed();
    eprintln!("migrate of the v1 fixture: {full:?}");

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("kill timing seed {seed}");
    let mut rng = Rng::new(seed);
    const KILLS: usize = 30;
    let (mut kills, mut interrupted, mut repos) = (0, 0, 0);
    let mut states = std::collections::BTreeMap::<&str, usize>::new();
    while kills < KILLS {
        let repo = fixture("v1");
        let snapshots = snapshot_ids(&repo);
        repos += 1;
        for k in 0..3 {
            if kills == KILLS || state(&repo) == "v2" {
                break;
            }
            let what = format!("repository {repos}, kill {k}");
            let before = key_state(&repo);
            let mut child = repo
                .cmd(["migrate"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            if kills % 2 == 0 {
                thread::sleep(full.mul_f64((rng.next_u64() % 1000) as f64 / 1000.0));
            } else {
                while key_state(&repo) == before && child.try_wait().unwrap().is_none() {
                    thread::sleep(std::time::Duration::from_micros(200));
                }
                thread::sleep(std::time::Duration::from_micros(rng.next_u64() % 6_000));
            }
            let _ = child.kill();
            let status = wait_timeout(&mut child, TIMEOUT, &what);
            kills += 1;
            if status.signal() == Some(SIGKILL) {
                interrupted += 1;
            }
            *states.entry(state(&repo)).or_default() += 1;
            assert_opens_with_old_password(&repo, &snapshots, &what);
        }
        migrate(&repo, &[]);
        assert_migrated(&repo, 1, &format!("repository {repos}"));
        assert_opens_with_old_password(&repo, &snapshots, &format!("repository {repos}, migrated"));
        if repos == 1 {
            repo.run(["check", "--read-data"]).assert_success();
        }
    }
    eprintln!(
        "{kills} kill -9 over {repos} repositories, {interrupted} inside a migration; states left: {states:?}"
    );
    assert!(
        interrupted >= KILLS / 2,
        "too few kills landed inside a migration ({interrupted})"
    );
    // Which states the kills reach depends on this machine's timing; the failpoint test above
    // reaches each one for certain.
}
