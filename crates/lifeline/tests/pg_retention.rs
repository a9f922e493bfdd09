//! Retention of PostgreSQL backups against a real server: forgetting base backups expires the WAL no
//! kept backup needs, per timeline across a timeline switch (history files stay while a kept
//! backup's recovery reads them); `--keep-pitr` keeps the backup a recovery window needs; an
//! incremental backup keeps its full backup; `copy` brings the WAL along so the second repository
//! recovers to a point in time on its own, and `check` verifies the archive, naming a damaged
//! segment the way `pg wal-fetch` does.
//!
//! Needs `scripts/postgres.sh install` and `eval "$(scripts/postgres.sh env)"`; without them these
//! tests fail, they never skip.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;

use common::pg::{Cluster, PgVersion};
use common::pitr::*;
use common::{json_str, json_u64, EXIT_FATAL, PASSWORD};
use serde_json::Value;

/// The segment names (not history, backup or partial files) of a timeline in the repository.
fn segments(env: &Env, timeline: &str) -> Vec<String> {
    let mut names: Vec<String> = timeline_objects(env, timeline)
        .into_iter()
        .filter(|n| n.len() == 24)
        .collect();
    names.sort();
    names
}

fn backup_line<'a>(status: &'a Value, id: &str) -> Option<&'a Value> {
    status["backups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == id)
}

/// The first WAL segment a base backup needs.
fn start_segment(status: &Value, id: &str, timeline: &str) -> String {
    let lsn = json_str(backup_line(status, id).unwrap(), "start_lsn");
    let (hi, lo) = lsn.split_once('/').unwrap();
    let lsn = (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap();
    let segno = lsn / (16 << 20);
    format!("{timeline}{:08X}{:08X}", segno >> 8, segno & 0xFF)
}

fn forget(env: &Env, args: &[&str]) -> Value {
    let mut all = vec!["--json", "forget"];
    all.extend_from_slice(args);
    let out = env.run(&all);
    out.assert_success();
    out.json()
}

fn wal_expired(plan: &Value, timeline: u64) -> u64 {
    plan["wal_expiry"]["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["timelines"].as_array().unwrap().iter())
        .filter(|t| t["timeline"] == timeline)
        .map(|t| json_u64(t, "files"))
        .sum()
}

/// Backups on timeline 1 (b1, b2), a promotion to timeline 2 with a backup there (b3): expiry
/// follows the timelines, the PITR window shrinks as backups go, and the second repository that
/// `copy` fills recovers by itself.
fn wal_expiry_across_timelines(version: PgVersion) {
    let env = Env::new(version, "expiry", &[]);
    let c = &env.cluster;
    c.psql(TABLE_SQL);
    let b1 = env.backup(&c.url(), &[]);
    commit_row(c, 1);
    switch_wal(c);
    commit_row(c, 2);
    switch_wal(c);
    let b2 = env.backup(&c.url(), &[]);
    let c3 = commit_row(c, 3);
    commit_row(c, 4);
    switch_wal(c);
    // Timeline 2: the primary recovered to after commit 3 and promoted, archiving as before.
    let (tl2, _) = env.restore_started(
        "tl2",
        &[
            "--target-time",
            &c3.after,
            "--target-action",
            "promote",
            "--archive-mode",
            "preserve",
            "--target-timeline",
            "1",
        ],
    );
    let t101 = commit_row(&tl2, 101);
    commit_row(&tl2, 102);
    switch_wal(&tl2);
    let b3 = env.backup(&tl2.url(), &[]);
    let t103 = commit_row(&tl2, 103);
    commit_row(&tl2, 104);
    switch_wal(&tl2);
    let (id1, id2, id3) = (
        json_str(&b1, "snapshot_id"),
        json_str(&b2, "snapshot_id"),
        json_str(&b3, "snapshot_id"),
    );
    let status = env.status();
    assert_eq!(status["backups"].as_array().unwrap().len(), 3, "{status:#}");
    let tl1_before = segments(&env, "00000001");
    let b2_start = start_segment(&status, id2, "00000001");
    assert!(
        tl1_before.iter().any(|s| *s < b2_start),
        "timeline 1 has WAL from before b2: {tl1_before:?}"
    );

    // A second repository, filled by `copy` while all three backups are here.
    let copy_repo = env.path("copy");
    let password = env.path("password");
    env.run(&[
        "--repo",
        s(&copy_repo),
        "--password-file",
        s(&password),
        "init",
    ])
    .assert_success();
    let copy_cfg = env.path("copy.toml");
    fs::write(
        &copy_cfg,
        format!(
            "[repository]\nurl = {:?}\nkey = {{ password_file = {:?} }}\n\n[postgres]\nbin_dir = {:?}\n",
            s(&copy_repo),
            s(&password),
            s(&version.bin_dir())
        ),
    )
    .unwrap();
    let out = env.run(&[
        "--json",
        "copy",
        "--to",
        s(&copy_repo),
        "--to-password-file",
        s(&password),
    ]);
    out.assert_success();
    let copied = out.json();
    assert_eq!(copied["copied"].as_array().unwrap().len(), 3, "{copied:#}");
    assert!(
        json_u64(&copied["wal"], "files") >= tl1_before.len() as u64,
        "{copied:#}"
    );
    let again = env.run(&[
        "--json",
        "copy",
        "--to",
        s(&copy_repo),
        "--to-password-file",
        s(&password),
    ]);
    again.assert_success();
    assert_eq!(
        again.json()["wal"]["files"],
        0,
        "a second copy sends no WAL again"
    );

    // 1. Forgetting b1: timeline 1 keeps only what b2 needs; timeline 2 and its history stay.
    let plan = forget(&env, &[id1]);
    assert!(wal_expired(&plan, 1) > 0, "{plan:#}");
    assert_eq!(wal_expired(&plan, 2), 0, "{plan:#}");
    let tl1 = segments(&env, "00000001");
    assert!(
        !tl1.is_empty() && tl1.iter().all(|s| *s >= b2_start),
        "{tl1:?} (b2 starts in {b2_start})"
    );
    assert!(timeline_objects(&env, "00000002").contains(&"00000002.history".to_string()));
    let status = env.status();
    assert!(
        status["backups"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["restorable"] == true),
        "{status:#}"
    );
    assert_eq!(
        status["pitr_earliest"],
        backup_line(&status, id2).unwrap()["stop_time"],
        "the PITR window now starts at b2: {status:#}"
    );
    env.run(&["check", "--read-data"]).assert_success();
    // Recovery from b2 across the switch to timeline 2 still works.
    let (server, report) = env.restore_started(
        "from-b2",
        &["--target-time", &t101.after, "--target-timeline", "2"],
    );
    assert_eq!(report["backup"], id2, "{report:#}");
    assert_eq!(rows(&server), expected_rows([1, 2, 3, 101]));
    drop(server);

    // 2. --keep-pitr keeps b2 while the window reaches back to before b3 completed.
    let stop = |id: &str| {
        chrono::DateTime::parse_from_rfc3339(json_str(
            backup_line(&status, id).unwrap(),
            "stop_time",
        ))
        .unwrap()
    };
    let middle = stop(id2) + (stop(id3) - stop(id2)) / 2;
    let window = (chrono::Utc::now().fixed_offset() - middle).num_seconds();
    let plan = forget(
        &env,
        &["--keep-last", "1", "--keep-pitr", &format!("{window}s")],
    );
    assert_eq!(plan["removed"], 0, "{plan:#}");
    let reasons = plan["groups"][0]["snapshots"][1]["reasons"].to_string();
    assert!(
        reasons.contains("point-in-time recovery back to"),
        "{plan:#}"
    );

    // 3. Without it b2 goes, and with it all of timeline 1 (b3 cannot reach it) and timeline 2's WAL
    // from before b3; the history file of timeline 2 stays (b3's recovery reads it).
    let plan = forget(&env, &["--keep-last", "1"]);
    assert_eq!(plan["removed"], 1, "{plan:#}");
    assert!(
        segments(&env, "00000001").is_empty(),
        "{:?}",
        segments(&env, "00000001")
    );
    let status = env.status();
    let b3_start = start_segment(&status, id3, "00000002");
    let tl2_left = segments(&env, "00000002");
    assert!(
        !tl2_left.is_empty() && tl2_left.iter().all(|s| *s >= b3_start),
        "{tl2_left:?}"
    );
    assert!(timeline_objects(&env, "00000002").contains(&"00000002.history".to_string()));
    assert_eq!(backup_line(&status, id3).unwrap()["restorable"], true);
    assert!(backup_line(&status, id2).is_none());
    env.run(&["check", "--read-data"]).assert_success();
    env.run(&["prune", "--grace", "0s"]).assert_success();
    env.run(&["check", "--read-data"]).assert_success();
    let (server, report) = env.restore_started("from-b3", &["--target-time", &t103.after]);
    assert_eq!(report["backup"], id3, "{report:#}");
    assert_eq!(rows(&server), expected_rows([1, 2, 3, 101, 102, 103]));
    drop(server);

    // 4. The copy kept everything: it recovers from its own b1 across both timelines.
    let copy_env_run = |args: &[&str]| {
        let mut all = vec!["--config", s(&copy_cfg)];
        all.extend_from_slice(args);
        lifeline(&all)
    };
    let out = copy_env_run(&["--json", "pg", "status"]);
    out.assert_success();
    let copy_status = out.json();
    assert_eq!(
        copy_status["backups"].as_array().unwrap().len(),
        3,
        "{copy_status:#}"
    );
    assert!(copy_status["backups"]
        .as_array()
        .unwrap()
        .iter()
        .all(|b| b["restorable"] == true));
    assert!(copy_status["pitr_blocked_at"].is_null(), "{copy_status:#}");
    let dir = env.path("from-copy");
    let mut server = Cluster::from_data_dir(version, &dir, 0);
    let out = copy_env_run(&[
        "--json",
        "pg",
        "restore",
        "--pgdata",
        s(&dir),
        "--target-time",
        &t103.after,
        "--target-timeline",
        "2",
        "--start",
    ]);
    out.assert_success();
    let report = out.json();
    server.port = u16::try_from(json_u64(&report["recovery"], "port")).unwrap();
    assert_eq!(rows(&server), expected_rows([1, 2, 3, 101, 102, 103]));
    drop(server);
    // Retention runs on each repository on its own: forget and prune on the copy.
    copy_env_run(&["forget", "--keep-last", "2", "--prune", "--grace", "0s"]).assert_success();
    copy_env_run(&["check", "--read-data"]).assert_success();
    let out = copy_env_run(&["--json", "pg", "status"]);
    assert_eq!(out.json()["backups"].as_array().unwrap().len(), 2);
    drop(tl2);
    let _ = PASSWORD;
}

#[test]
fn wal_expiry_across_timelines_pg15() {
    wal_expiry_across_timelines(PgVersion::V15);
}

/// A damaged WAL segment: `pg wal-fetch` refuses it and points at `check`, and `check --read-data`
/// names the same object (the structure check alone cannot see inside it).
#[test]
fn a_damaged_wal_segment_is_named_by_check_as_wal_fetch_says() {
    let env = Env::new(PgVersion::V18, "damaged-wal", &[]);
    let c = &env.cluster;
    c.psql(TABLE_SQL);
    env.backup(&c.url(), &[]);
    commit_row(c, 1);
    let segment = switch_wal(c);
    // A later segment, so the damaged one lies inside the archive.
    commit_row(c, 2);
    switch_wal(c);
    let object = env.wal_object(&segment);
    let mut bytes = fs::read(&object).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x10;
    fs::write(&object, bytes).unwrap();
    let fetched = env.path("fetched");
    let out = env.run(&["pg", "wal-fetch", &segment, s(&fetched)]);
    out.assert_code(EXIT_RECOVERY_MUST_STOP)
        .assert_output_contains("damaged")
        .assert_output_contains("lifeline check");
    env.run(&["check"]).assert_success();
    let out = env.run(&["--json", "check", "--read-data"]);
    out.assert_code(EXIT_FATAL);
    let report = out.json();
    let problems = report["wal"]["problems"].as_array().unwrap();
    assert!(
        problems
            .iter()
            .any(|p| json_str(p, "object").ends_with(&segment)),
        "{report:#}"
    );
    // A missing segment inside the archive is seen without reading data.
    fs::remove_file(&object).unwrap();
    let out = env.run(&["--json", "check"]);
    out.assert_code(EXIT_FATAL);
    assert!(out.json()["wal"]["problems"][0]["object"]
        .as_str()
        .unwrap()
        .ends_with(&segment));
}
