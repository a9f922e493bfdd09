//! Retention on the real binary: `forget` by policy and by ID, its guards (newest of a group, legal
//! holds, verified snapshots), `hold`, verification records and rotating `check` subsets.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::*;
use serde_json::Value;

/// Back up `src` as if at `time`; returns the snapshot ID.
fn backup_at(repo: &Repo, src: &Path, time: &str) -> String {
    let v = repo.backup(&[src], &["--time", time]);
    json_str(&v, "snapshot_id").to_string()
}

fn snapshot_times(repo: &Repo) -> BTreeSet<String> {
    repo.snapshots()
        .iter()
        .map(|s| json_str(s, "time")[..10].to_string() + &json_str(s, "time")[10..16])
        .collect()
}

/// Daily backups through November 2026, mid-month ones before, and one a year before that.
fn synthetic_history() -> Vec<String> {
    let mut times: Vec<String> = (1..=30)
        .map(|d| format!("2026-11-{d:02}T02:00:00Z"))
        .collect();
    for m in 5..=10 {
        times.push(format!("2026-{m:02}-15T02:00:00Z"));
    }
    for y in 2023..=2025 {
        times.push(format!("{y}-06-15T02:00:00Z"));
    }
    times
}

#[test]
fn forget_gfs_on_a_synthetic_history_keeps_exactly_the_expected_set() {
    let repo = Repo::init();
    let src = repo.sandbox.mkdir("src");
    write_file(
        &src.join("record.txt"),
        b"the same content in every snapshot",
    );
    for t in synthetic_history() {
        backup_at(&repo, &src, &t);
    }
    assert_eq!(repo.snapshots().len(), 39);

    let policy = [
        "--keep-daily",
        "7",
        "--keep-weekly",
        "4",
        "--keep-monthly",
        "6",
        "--keep-yearly",
        "3",
    ];
    let dry = repo.run(
        ["forget", "--dry-run", "--json"]
            .iter()
            .chain(&policy)
            .copied(),
    );
    dry.assert_success();
    let plan = dry.json();
    assert_eq!(plan["removed"], 23, "{plan}");
    assert_eq!(plan["kept"], 16);
    let group = &plan["groups"][0];
    assert_eq!(group["group"]["paths"][0], src.display().to_string());
    let reasons_of = |day: &str| -> Vec<String> {
        group["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| json_str(d, "time").starts_with(day))
            .map(|d| {
                d["reasons"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r.as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap()
    };
    // 2026-11-30 is a Monday (ISO week 49): every rule keeps it.
    assert_eq!(
        reasons_of("2026-11-30"),
        [
            "daily 2026-11-30",
            "weekly 2026-W49",
            "monthly 2026-11",
            "yearly 2026",
            "newest of its group"
        ]
    );
    assert_eq!(reasons_of("2026-11-22"), ["weekly 2026-W47"]);
    assert_eq!(reasons_of("2026-11-21"), ["no rule keeps it"]);
    assert_eq!(reasons_of("2024-06-15"), ["yearly 2024"]);
    assert_eq!(repo.snapshots().len(), 39, "a dry run removes nothing");

    let text = repo.run(["forget", "--dry-run"].iter().chain(&policy).copied());
    text.assert_success()
        .assert_output_contains("remove  ")
        .assert_output_contains("weekly 2026-W48")
        .assert_output_contains("would keep 16 and remove 23");

    repo.run(["forget"].iter().chain(&policy).copied())
        .assert_success();
    let expected: BTreeSet<String> = [
        "2026-11-30",
        "2026-11-29",
        "2026-11-28",
        "2026-11-27",
        "2026-11-26",
        "2026-11-25",
        "2026-11-24",
        "2026-11-22",
        "2026-11-15",
        "2026-10-15",
        "2026-09-15",
        "2026-08-15",
        "2026-07-15",
        "2026-06-15",
        "2025-06-15",
        "2024-06-15",
    ]
    .iter()
    .map(|d| format!("{d}T02:00"))
    .collect();
    assert_eq!(snapshot_times(&repo), expected);
    repo.run(["check"]).assert_success();
}

#[test]
fn held_snapshots_survive_forget_and_prune_and_restore_exactly() {
    let repo = Repo::init();
    let src = repo.sandbox.mkdir("src");
    let mut ids = Vec::new();
    for (i, day) in ["01", "02", "03", "04"].iter().enumerate() {
        // Each day's file is different, so forgetting a day frees its data.
        write_random_file(&src.join("scan.bin"), 100 + i as u64, 3 * MIB);
        ids.push(backup_at(&repo, &src, &format!("2026-11-{day}T02:00:00Z")));
    }
    let held = &ids[1];
    let out = repo.run([
        "hold",
        "add",
        &held[..10],
        "--reason",
        "case 2026-114, counsel's request",
    ]);
    out.assert_success().assert_output_contains("held");

    let listed = repo.run(["hold", "list", "--json"]);
    listed.assert_success();
    let holds = listed.json();
    assert_eq!(holds[0]["snapshot"], held.as_str());
    assert_eq!(holds[0]["reason"], "case 2026-114, counsel's request");
    let snap = repo
        .snapshots()
        .into_iter()
        .find(|s| json_str(s, "id") == held)
        .unwrap();
    assert_eq!(snap["hold"]["reason"], "case 2026-114, counsel's request");

    // Explicitly: refused, nothing removed.
    let refused = repo.run(["forget", held.as_str()]);
    refused
        .assert_code(EXIT_FATAL)
        .assert_output_contains("legal hold: case 2026-114");
    assert_eq!(repo.snapshots().len(), 4);

    // By policy: kept with its reason; prune frees the others' data but not its.
    let out = repo.run(["forget", "--keep-last", "1", "--json"]);
    out.assert_success();
    let plan = out.json();
    let decision = plan["groups"][0]["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| json_str(d, "id") == held)
        .unwrap()
        .clone();
    assert_eq!(decision["keep"], true);
    assert!(decision["reasons"][0]
        .as_str()
        .unwrap()
        .starts_with("legal hold: case 2026-114"));
    let before = repo.data_bytes();
    repo.run(["prune", "--grace", "0s"]).assert_success();
    let after = repo.data_bytes();
    assert!(
        after < before - 5 * MIB as u64,
        "two 3 MiB files were freed: {before} → {after}"
    );
    repo.run(["check", "--read-data"]).assert_success();
    write_random_file(&repo.join("expected.bin"), 101, 3 * MIB);
    let restored_dir = repo.restore(held, "held");
    assert_eq!(
        std::fs::read(restored(&restored_dir, &src).join("scan.bin")).unwrap(),
        std::fs::read(repo.join("expected.bin")).unwrap(),
        "the held snapshot restores byte for byte"
    );

    // Lifting the hold is a record of its own; the history keeps both.
    repo.run(["hold", "remove", &held[..10], "--reason", "case closed"])
        .assert_success();
    repo.run(["hold", "remove", &held[..10], "--reason", "again"])
        .assert_code(EXIT_FATAL)
        .assert_output_contains("is not under hold");
    let history = repo.run(["hold", "list", "--history", "--json"]);
    history.assert_success();
    let records = history.json();
    let actions: Vec<&str> = records
        .as_array()
        .unwrap()
        .iter()
        .map(|r| json_str(r, "action"))
        .collect();
    assert_eq!(actions, ["add", "remove"]);
    assert_eq!(records[1]["reason"], "case closed");
    repo.run(["forget", held.as_str()]).assert_success();
    assert_eq!(repo.snapshots().len(), 1);
}

#[test]
fn a_hold_until_a_past_date_is_refused_and_a_reason_is_required() {
    let repo = Repo::init();
    let src = repo.sandbox.mkdir("src");
    write_file(&src.join("a"), b"a");
    let id = backup_at(&repo, &src, "2026-11-01T00:00:00Z");
    repo.run(["hold", "add", &id, "--reason", "x", "--until", "2020-01-01"])
        .assert_code(EXIT_FATAL)
        .assert_output_contains("already past");
    repo.run(["hold", "add", &id, "--reason", "  "])
        .assert_code(EXIT_FATAL)
        .assert_output_contains("needs a reason");
    repo.run([
        "hold",
        "add",
        &id,
        "--reason",
        "audit",
        "--until",
        "2099-12-31",
    ])
    .assert_success();
    let holds = repo.run(["hold", "list", "--json"]).json();
    assert_eq!(
        holds[0]["until"], "2100-01-01T00:00:00Z",
        "the end of that day, UTC"
    );
}

#[test]
fn the_newest_snapshot_of_a_group_is_never_forgotten() {
    let repo = Repo::init();
    let a = repo.sandbox.mkdir("a");
    let b = repo.sandbox.mkdir("b");
    write_file(&a.join("x"), b"x");
    write_file(&b.join("y"), b"y");
    let a1 = backup_at(&repo, &a, "2026-11-01T00:00:00Z");
    let a2 = backup_at(&repo, &a, "2026-11-02T00:00:00Z");
    let b1 = backup_at(&repo, &b, "2026-11-01T00:00:00Z");
    repo.run(["forget", &a2])
        .assert_code(EXIT_FATAL)
        .assert_output_contains("newest of its group");
    // A tag rule that matches nothing still leaves each group its newest.
    repo.run(["forget", "--keep-tag", "none=none"])
        .assert_success();
    let left: BTreeSet<String> = repo
        .snapshots()
        .iter()
        .map(|s| json_str(s, "id").to_string())
        .collect();
    assert_eq!(left, [a2, b1].into_iter().collect());
    assert!(!left.contains(&a1));
    repo.run(["forget"])
        .assert_code(EXIT_FATAL)
        .assert_output_contains("needs a policy");
}

#[test]
fn keep_verified_keeps_the_newest_snapshot_that_passed_a_data_verification() {
    let repo = Repo::init();
    let src = repo.sandbox.mkdir("src");
    write_file(&src.join("f"), b"one");
    let verified = backup_at(&repo, &src, "2026-11-01T00:00:00Z");
    let out = repo.run(["check", "--read-data", "--json"]);
    out.assert_success();
    assert!(out.json()["verification_record"].is_string());
    write_file(&src.join("f"), b"two");
    let middle = backup_at(&repo, &src, "2026-11-02T00:00:00Z");
    write_file(&src.join("f"), b"three");
    let newest = backup_at(&repo, &src, "2026-11-03T00:00:00Z");

    let snaps = repo.snapshots();
    let v = snaps
        .iter()
        .find(|s| json_str(s, "id") == verified)
        .unwrap();
    assert_eq!(v["verified"]["result"], "ok");
    assert_eq!(v["verified"]["scope"], "all");
    assert!(snaps.iter().find(|s| json_str(s, "id") == newest).unwrap()["verified"].is_null());

    repo.run(["forget", "--keep-last", "1"]).assert_success();
    let left: BTreeSet<String> = repo
        .snapshots()
        .iter()
        .map(|s| json_str(s, "id").to_string())
        .collect();
    assert_eq!(
        left,
        [verified.clone(), newest.clone()].into_iter().collect()
    );
    assert!(!left.contains(&middle));
    // With --keep-verified 0 the rule is off.
    repo.run(["forget", "--keep-last", "1", "--keep-verified", "0"])
        .assert_success();
    assert_eq!(repo.snapshots().len(), 1);
}

#[test]
fn check_subsets_rotate_so_four_runs_of_a_quarter_read_every_pack() {
    let repo = Repo::uninit();
    repo.run(["init", "--pack-size", "1"]).assert_success();
    let src = repo.sandbox.mkdir("src");
    for i in 0..12 {
        write_random_file(&src.join(format!("f{i}")), i, 700 * KIB);
    }
    let id = json_str(&repo.backup(&[&src], &[]), "snapshot_id").to_string();
    let packs = repo.packs().len();
    // A quarter, rounded up, per run: three runs must not be enough.
    assert!(
        packs >= 6 && packs.div_ceil(4) * 3 < packs,
        "enough packs to rotate through: {packs}"
    );

    // Each run reads a quarter (rounded up) of the packs not yet covered in this cycle; the last
    // may top up with packs already read, so count coverage rather than reads.
    let quarter = packs.div_ceil(4) as u64;
    let mut reports: Vec<Value> = Vec::new();
    for _ in 0..4 {
        let out = repo.run(["check", "--read-data-subset", "25%", "--json"]);
        out.assert_success();
        reports.push(out.json());
    }
    let covered: Vec<u64> = reports
        .iter()
        .map(|r| json_u64(&r["subset"], "packs_covered_before"))
        .collect();
    assert_eq!(
        covered,
        [0, quarter, 2 * quarter, 3 * quarter],
        "every run covered new packs: {reports:?}"
    );
    assert!(reports.iter().all(|r| json_u64(r, "packs_read") == quarter));
    assert!(reports.iter().all(|r| r["subset"]["cycle"] == 1));
    assert_eq!(reports[3]["subset"]["cycle_complete"], true);
    assert_eq!(reports[2]["subset"]["cycle_complete"], false);
    let snap = repo.snapshots().pop().unwrap();
    assert_eq!(json_str(&snap, "id"), id);
    assert_eq!(snap["verified"]["scope"], "subset");
    assert_eq!(snap["verified"]["result"], "ok");
    // The next run starts the next cycle.
    let next = repo
        .run(["check", "--read-data-subset", "25%", "--json"])
        .json();
    assert_eq!(next["subset"]["cycle"], 2);
}

#[test]
fn a_data_verification_that_finds_damage_records_the_snapshot_as_damaged() {
    let repo = Repo::init();
    let src = repo.sandbox.mkdir("src");
    write_random_file(&src.join("big"), 7, 2 * MIB);
    let id = json_str(&repo.backup(&[&src], &[]), "snapshot_id").to_string();
    let pack = repo
        .packs()
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&pack).unwrap();
    bytes[1000] ^= 0x40;
    std::fs::write(&pack, bytes).unwrap();
    let out = repo.run(["check", "--read-data", "--json"]);
    out.assert_code(EXIT_FATAL);
    assert_eq!(out.json()["damaged_snapshots"][0], id.as_str());
    let snap = repo.snapshots().pop().unwrap();
    assert_eq!(snap["verified"]["result"], "damaged");
    repo.run(["snapshots"])
        .assert_success()
        .assert_output_contains("  !  ");
}
