//! Physical backups and point-in-time recovery against real PostgreSQL 15 and 18 servers: WAL
//! archived by `lifeline pg wal-push` as archive_command (under pgbench load, and from a second
//! timeline), base backups (full, deduplicated, incremental), `pg status`, and `pg restore` to a
//! time, an LSN, a transaction, a restore point or the end of a backup, each proven by the exact rows
//! the recovered server holds (with `pg wal-fetch` fetching ahead, as it does by default). A
//! missing or damaged WAL object is named and stops recovery; pg_verifybackup accepts restored data
//! directories; pgvector answers survive a restore. A restored server archives nothing unless
//! `--archive-mode preserve` says so; a restore drill that does archive into the same repository
//! neither blocks nor silently reroutes the original's recovery: when two histories follow a
//! backup, a target after the fork needs `--target-timeline`.
//!
//! Every lifeline command and every server runs as the `postgres` OS user, as PostgreSQL's own
//! archive_command and restore_command do. Needs `scripts/postgres.sh install` and
//! `eval "$(scripts/postgres.sh env)"`; without them these tests fail, they never skip.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::pg::{as_postgres, chown_to_postgres, Cluster, PgVersion};
use common::pitr::*;
use common::{json_str, json_u64, run, EXIT_FATAL, EXIT_OK};

// ---------------------------------------------------------------------------
// 1. Archiving under load, a full backup, status, and a deduplicated second backup
// ---------------------------------------------------------------------------

fn archiving_under_load(version: PgVersion) {
    let env = Env::new(version, "load", &[]);
    let c = &env.cluster;
    c.pgbench(["-i", "-s", "2", "-q", "postgres"]);
    c.pgbench(["-c", "4", "-j", "2", "-T", "8", "postgres"]);
    let last_load_segment = switch_wal(c);
    assert_eq!(
        archiver_failures(c),
        0,
        "archive_command failed under load\n{}",
        tail(&c.log(), 30)
    );

    let first = env.backup(&c.url(), &[]);
    assert_eq!(first["backup_type"], "full", "{first}");
    assert_eq!(first["timeline"], 1, "{first}");
    assert_eq!(json_str(&first, "system_id"), env.system_id());
    let first_bytes = json_u64(&first, "bytes");
    // pgbench scale 2 alone is ~30 MB of tables and indexes.
    assert!(first_bytes > 20 << 20, "{first}");

    let status = env.status();
    assert_eq!(json_str(&status, "system_id"), env.system_id());
    let backups = status["backups"].as_array().unwrap();
    assert_eq!(backups.len(), 1, "{status:#}");
    assert_eq!(backups[0]["id"], first["snapshot_id"]);
    assert_eq!(backups[0]["restorable"], true, "{status:#}");
    assert_eq!(backups[0]["start_lsn"], first["start_lsn"]);
    assert_eq!(backups[0]["stop_lsn"], first["stop_lsn"]);
    assert_eq!(
        status["timelines"].as_array().unwrap().len(),
        1,
        "{status:#}"
    );
    let tl1 = timeline_entry(&status, 1);
    let newest = json_str(&status, "newest_wal");
    assert!(newest > last_load_segment.as_str(), "{status:#}");
    assert_eq!(
        tl1["ranges"],
        serde_json::json!([["000000010000000000000001", newest]]),
        "every segment since initdb is archived, without a gap: {status:#}"
    );
    assert_eq!(tl1["gaps"], serde_json::json!([]), "{status:#}");
    let segments = json_u64(tl1, "segments");
    assert!(segments >= 4, "pgbench wrote several segments: {status:#}");
    // One object per segment in the repository.
    let objects = fs::read_dir(env.repo.join("wal").join(env.system_id()).join("00000001"))
        .unwrap()
        .count() as u64;
    assert!(
        objects >= segments,
        "{objects} objects for {segments} segments"
    );
    let age = status["newest_wal_age_seconds"].as_i64().unwrap();
    assert!(
        (0..60).contains(&age),
        "the newest WAL is {age} s old: {status:#}"
    );
    assert_eq!(
        status["pitr_earliest"], backups[0]["stop_time"],
        "{status:#}"
    );
    assert!(
        status["pitr_latest"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "{status:#}"
    );
    assert!(status["pitr_blocked_at"].is_null(), "{status:#}");

    // Nothing changed: the second backup stores next to nothing new.
    let second = env.backup(&c.url(), &[]);
    let added = json_u64(&second, "data_added");
    assert!(
        added * 20 < first_bytes,
        "a backup of an unchanged database added {added} bytes (the first is {first_bytes})\n{second}"
    );
    let status = env.status();
    let backups = status["backups"].as_array().unwrap();
    assert_eq!(backups.len(), 2, "{status:#}");
    assert!(
        backups.iter().all(|b| b["restorable"] == true),
        "{status:#}"
    );
    assert_eq!(timeline_entry(&status, 1)["gaps"], serde_json::json!([]));
}

#[test]
fn archiving_under_load_pg15() {
    archiving_under_load(PgVersion::V15);
}

#[test]
fn archiving_under_load_pg18() {
    archiving_under_load(PgVersion::V18);
}

// ---------------------------------------------------------------------------
// 2. Recovery to a time, an LSN, a transaction or a restore point stops exactly there
// ---------------------------------------------------------------------------

fn pitr_exact(version: PgVersion) {
    let env = Env::new(version, "exact", &[]);
    let c = &env.cluster;
    c.psql(TABLE_SQL);
    let backup = env.backup(&c.url(), &[]);
    let k: u32 = 3;
    let mut commits = Vec::new();
    for id in 1..=6 {
        commits.push(commit_row(c, id));
        if id == k {
            c.psql(&format!("SELECT pg_create_restore_point('after row {k}')"));
        }
    }
    switch_wal(c);
    assert_eq!(rows(c), expected_rows(1..=6));

    // Both ends of the window `pg status` reports can be restored to.
    let status = env.status();
    assert_eq!(status["pitr_earliest"], status["backups"][0]["stop_time"]);
    for (name, end) in [
        ("pitr_earliest", "window-start"),
        ("pitr_latest", "window-end"),
    ] {
        let time = json_str(&status, name);
        let (out, dir) = env.restore(end, &["--target-time", time]);
        assert!(
            out.code() == Some(EXIT_OK),
            "pg status reports {name} {time}, but a restore to it fails\n{}",
            out.describe()
        );
        // By default a restored server is a copy: it archives nothing into the repository.
        let conf = auto_conf(&dir);
        assert!(
            conf.lines().any(|l| l.trim() == "archive_mode = 'off'"),
            "a default restore must turn archiving off; postgresql.auto.conf:\n{conf}"
        );
    }
    let at_k = &commits[k as usize - 1];
    let next = &commits[k as usize];

    // To the LSN right after commit k, pausing there (read-only).
    let (server, report) = env.restore_started(
        "by-lsn",
        &["--target-lsn", &at_k.lsn, "--target-action", "pause"],
    );
    assert_eq!(rows(&server), expected_rows(1..=at_k.id), "{report:#}");
    assert_eq!(report["backup"], backup["snapshot_id"]);
    assert!(
        json_str(&report["recovery"], "state").starts_with("paused"),
        "{report:#}"
    );
    assert_eq!(server.psql("SELECT pg_is_in_recovery()"), "t");
    drop(server);

    // To transaction k, inclusive.
    let (server, report) = env.restore_started("by-xid", &["--target-xid", &at_k.xid]);
    assert_eq!(rows(&server), expected_rows(1..=at_k.id), "{report:#}");
    assert!(
        json_str(&report["recovery"], "stop")
            .contains(&format!("after commit of transaction {}", at_k.xid)),
        "{report:#}"
    );
    drop(server);

    // To a restore point made right after commit k.
    let (server, report) =
        env.restore_started("by-name", &["--target-name", &format!("after row {k}")]);
    assert_eq!(rows(&server), expected_rows(1..=at_k.id), "{report:#}");
    drop(server);

    // To a time between commits k and k+1, then promoted: a read-write server on timeline 2.
    let (server, report) = env.restore_started(
        "by-time",
        &["--target-time", &at_k.after, "--target-action", "promote"],
    );
    assert_eq!(rows(&server), expected_rows(1..=at_k.id), "{report:#}");
    let recovery = &report["recovery"];
    assert_eq!(json_str(recovery, "state"), "promoted and running");
    assert!(
        json_str(recovery, "stop").contains(&format!("before commit of transaction {}", next.xid)),
        "recovery stops at the first commit after the target: {report:#}"
    );
    assert_eq!(server.psql("SELECT pg_is_in_recovery()"), "f");
    assert_eq!(current_timeline(&server), "00000002");
    assert_eq!(server.psql("SHOW archive_mode"), "off");
    server.psql("INSERT INTO pitr VALUES (100, 'written after the restore')");
    drop(server);

    // A time before the backup was complete is refused before anything is written.
    let (out, dir) = env.restore("too-early", &["--target-time", "2001-01-01T00:00:00Z"]);
    out.assert_code(EXIT_FATAL)
        .assert_output_contains("before the earliest base backup");
    assert_nothing_at(&dir);
}

#[test]
fn pitr_exact_pg15() {
    pitr_exact(PgVersion::V15);
}

#[test]
fn pitr_exact_pg18() {
    pitr_exact(PgVersion::V18);
}

// ---------------------------------------------------------------------------
// 3. The promoted server archives timeline 2 into the same repository; PITR onto timeline 2
// ---------------------------------------------------------------------------

fn second_timeline(version: PgVersion) {
    let env = Env::new(version, "timeline", &[]);
    let c = &env.cluster;
    c.psql(TABLE_SQL);
    let first_backup = env.backup(&c.url(), &[]);
    let commits: Vec<Commit> = (1..=4).map(|id| commit_row(c, id)).collect();
    switch_wal(c);

    // Recovering the primary itself: `--archive-mode preserve` keeps the archive_command that came
    // with the backup, so timeline 2 goes to the same repository.
    let (tl2, _) = env.restore_started(
        "tl2",
        &[
            "--target-time",
            &commits[1].after,
            "--target-action",
            "promote",
            "--archive-mode",
            "preserve",
        ],
    );
    assert_eq!(rows(&tl2), expected_rows(1..=2));
    assert_eq!(current_timeline(&tl2), "00000002");
    assert_eq!(tl2.psql("SHOW archive_mode"), "on");
    let conf = auto_conf(&env.path("tl2"));
    assert!(!conf.contains("archive_mode"), "{conf}");
    let t2: Vec<Commit> = (101..=103).map(|id| commit_row(&tl2, id)).collect();
    let segment = switch_wal(&tl2);
    assert!(segment.starts_with("00000002"), "{segment}");
    assert_eq!(archiver_failures(&tl2), 0, "{}", tail(&tl2.log(), 30));
    assert!(env.wal_object("00000002.history").is_file());
    assert!(env.wal_object(&segment).is_file());

    // A base backup of timeline 2, then more commits there.
    let tl2_backup = env.backup(&tl2.url(), &[]);
    assert_eq!(tl2_backup["timeline"], 2, "{tl2_backup}");
    assert_eq!(json_str(&tl2_backup, "system_id"), env.system_id());
    let t2_late: Vec<Commit> = (104..=105).map(|id| commit_row(&tl2, id)).collect();
    switch_wal(&tl2);

    let status = env.status();
    let backups = status["backups"].as_array().unwrap();
    assert_eq!(backups.len(), 2, "{status:#}");
    assert_eq!(backups[1]["timeline"], 2, "{status:#}");
    assert!(
        backups.iter().all(|b| b["restorable"] == true),
        "{status:#}"
    );
    assert_eq!(timeline_entry(&status, 1)["gaps"], serde_json::json!([]));
    let tl2_entry = timeline_entry(&status, 2);
    assert_eq!(tl2_entry["gaps"], serde_json::json!([]), "{status:#}");
    assert!(
        json_str(&status, "newest_wal").starts_with("00000002"),
        "{status:#}"
    );
    assert!(status["pitr_blocked_at"].is_null(), "{status:#}");
    // Only timeline 2 follows its newest backup (taken on timeline 2).
    assert_eq!(status["forks"], serde_json::json!([]), "{status:#}");

    // A timeline that does not follow the backup is refused, naming the ones that do.
    let (out, dir) = env.restore(
        "no-such-timeline",
        &["--target-time", &t2[0].after, "--target-timeline", "7"],
    );
    out.assert_code(EXIT_FATAL)
        .assert_output_contains("timeline 7 does not follow base backup");
    assert_nothing_at(&dir);

    // Between commits 101 and 102. Timeline 1 went on (commits 3 and 4) after timeline 2 left
    // it, so that time lies on both histories: without --target-timeline the restore is refused.
    assert_two_histories(
        &env,
        "on-tl2-refused",
        &["--target-time", &t2[0].after],
        [1, 2],
    );
    // Along timeline 2: from the timeline-1 backup, across the switch to timeline 2.
    let (server, report) = env.restore_started(
        "on-tl2-a",
        &["--target-time", &t2[0].after, "--target-timeline", "2"],
    );
    assert_eq!(report["backup"], first_backup["snapshot_id"], "{report:#}");
    assert_eq!(report["timeline"], 2, "{report:#}");
    assert_eq!(
        rows(&server),
        expected_rows([1, 2, 101]),
        "recovered to {}: {report:#}",
        t2[0].after
    );
    drop(server);

    // Between commits 104 and 105: from the timeline-2 backup.
    let (server, report) = env.restore_started(
        "on-tl2-b",
        &[
            "--target-time",
            &t2_late[0].after,
            "--target-action",
            "promote",
        ],
    );
    assert_eq!(report["backup"], tl2_backup["snapshot_id"], "{report:#}");
    assert_eq!(rows(&server), expected_rows([1, 2, 101, 102, 103, 104]));
    assert_eq!(current_timeline(&server), "00000003");
    drop(server);
    drop(tl2);
}

#[test]
fn second_timeline_pg15() {
    second_timeline(PgVersion::V15);
}

#[test]
fn second_timeline_pg18() {
    second_timeline(PgVersion::V18);
}

// ---------------------------------------------------------------------------
// 4. A missing WAL segment is reported, and recovery past it is refused
// ---------------------------------------------------------------------------

fn missing_wal(version: PgVersion) {
    let env = Env::new(version, "missing", &[]);
    let c = &env.cluster;
    c.psql(TABLE_SQL);
    let backup = env.backup(&c.url(), &[]);
    let mut commits = Vec::new();
    let mut segments = Vec::new();
    for id in 1..=4 {
        commits.push(commit_row(c, id));
        segments.push(switch_wal(c));
    }
    let missing = &segments[1];
    let object = env.wal_object(missing);
    assert!(object.is_file(), "{} is not there", object.display());
    fs::remove_file(&object).unwrap();

    let status = env.status();
    assert_eq!(status["pitr_blocked_at"], missing.as_str(), "{status:#}");
    assert_eq!(
        timeline_entry(&status, 1)["gaps"],
        serde_json::json!([missing]),
        "{status:#}"
    );
    assert_eq!(status["backups"][0]["restorable"], true, "{status:#}");
    assert_eq!(status["newest_wal"], segments[3].as_str(), "{status:#}");

    // To the end of the archive: refused, naming the segment, before anything is written.
    let (out, dir) = env.restore("latest", &[]);
    out.assert_code(EXIT_FATAL).assert_output_contains(missing);
    assert_nothing_at(&dir);
    assert!(!dir.exists(), "a refused restore created {}", dir.display());

    // To a time past the gap, into an empty directory: refused too, and the directory stays empty.
    let empty = env.path("empty");
    fs::create_dir(&empty).unwrap();
    chown_to_postgres(&empty);
    let (out, _) = env.restore("empty", &["--target-time", &commits[3].after]);
    out.assert_code(EXIT_FATAL).assert_output_contains(missing);
    assert_nothing_at(&empty);

    // Before the gap, recovery is possible: to the LSN of commit 1.
    let (server, report) = env.restore_started("before-gap", &["--target-lsn", &commits[0].lsn]);
    assert_eq!(report["backup"], backup["snapshot_id"]);
    assert_eq!(rows(&server), expected_rows([1]), "{report:#}");
}

#[test]
fn missing_wal_pg15() {
    missing_wal(PgVersion::V15);
}

#[test]
fn missing_wal_pg18() {
    missing_wal(PgVersion::V18);
}

// ---------------------------------------------------------------------------
// 5. wal-fetch: intact, never archived, damaged; wal-push: idempotent, never overwrites
// ---------------------------------------------------------------------------

fn wal_fetch_and_push(version: PgVersion) {
    let env = Env::new(version, "fetch", KEEP_WAL);
    let c = &env.cluster;
    c.psql(TABLE_SQL);
    env.backup(&c.url(), &[]);
    commit_row(c, 1);
    let a = switch_wal(c);
    commit_row(c, 2);
    let b = switch_wal(c);
    let original_a = fs::read(c.dir.join("pg_wal").join(&a)).unwrap();

    let scratch = scratch_data_dir(&env);
    let fetch =
        |name: &str, dest: &str| env.run(&["pg", "wal-fetch", name, dest, "--pgdata", s(&scratch)]);

    // Intact: the segment PostgreSQL wrote, byte for byte.
    fetch(&a, "pg_wal/RECOVERYXLOG").assert_success();
    let fetched = fs::read(scratch.join("pg_wal/RECOVERYXLOG")).unwrap();
    assert!(
        fetched == original_a,
        "wal-fetch {a} gave {} bytes that differ from pg_wal/{a}",
        fetched.len()
    );

    // Never archived: exit 1 without a word, nothing written.
    let out = fetch("0000000100000000000000F7", "pg_wal/NEVER");
    out.assert_code(EXIT_FATAL);
    assert!(out.stderr.is_empty(), "{}", out.describe());
    let out = fetch("00000009.history", "pg_wal/NEVER");
    out.assert_code(EXIT_FATAL);
    assert!(out.stderr.is_empty(), "{}", out.describe());
    assert!(!scratch.join("pg_wal/NEVER").exists());

    // Damaged: one byte flipped in the middle of the object. Exit 126 (recovery stops), said loudly.
    let object_a = env.wal_object(&a);
    let mut bytes = fs::read(&object_a).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    fs::write(&object_a, &bytes).unwrap();
    let out = fetch(&a, "pg_wal/DAMAGED");
    out.assert_code(EXIT_RECOVERY_MUST_STOP);
    let stderr = out.stderr_str();
    assert!(
        stderr.contains("damaged") && stderr.contains(&a),
        "{}",
        out.describe()
    );
    let left: Vec<_> = fs::read_dir(scratch.join("pg_wal"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["RECOVERYXLOG"], "a damaged fetch wrote something");

    // Pushing a segment again (PostgreSQL retries after a crash) succeeds and changes nothing.
    let object_b = env.wal_object(&b);
    let stored_b = fs::read(&object_b).unwrap();
    let wal_b = format!("pg_wal/{b}");
    env.run(&["pg", "wal-push", &wal_b, "--pgdata", s(&c.dir)])
        .assert_success();
    assert!(
        fs::read(&object_b).unwrap() == stored_b,
        "the object was rewritten"
    );

    // Different bytes under the same name are refused, and the stored object stays as it was.
    let mut altered = fs::read(c.dir.join(&wal_b)).unwrap();
    altered[1000] ^= 0x01;
    let altered_path = scratch.join(&wal_b);
    fs::write(&altered_path, &altered).unwrap();
    chown_to_postgres(&altered_path);
    env.run(&["pg", "wal-push", &wal_b, "--pgdata", s(&scratch)])
        .assert_code(EXIT_FATAL)
        .assert_output_contains("different content");
    assert!(
        fs::read(&object_b).unwrap() == stored_b,
        "the object was overwritten"
    );
    fetch(&b, "pg_wal/CHECK").assert_success();
    assert!(
        fs::read(scratch.join("pg_wal/CHECK")).unwrap() == fs::read(c.dir.join(&wal_b)).unwrap(),
        "the archive no longer holds the server's segment {b}"
    );
}

/// A scratch directory with the cluster's pg_control, where wal-fetch writes.
fn scratch_data_dir(env: &Env) -> std::path::PathBuf {
    let scratch = env.path("scratch");
    for d in ["", "global", "pg_wal"] {
        let p = scratch.join(d);
        fs::create_dir_all(&p).unwrap();
        chown_to_postgres(&p);
    }
    let control = scratch.join("global/pg_control");
    fs::copy(env.cluster.dir.join("global/pg_control"), &control).unwrap();
    chown_to_postgres(&control);
    scratch
}

#[test]
fn wal_fetch_and_push_pg15() {
    wal_fetch_and_push(PgVersion::V15);
}

#[test]
fn wal_fetch_and_push_pg18() {
    wal_fetch_and_push(PgVersion::V18);
}

/// `pg wal-fetch` starts a worker that fetches the next segments into `pg_wal/lifeline_prefetch`;
/// PostgreSQL's call for one of them is answered from there, byte for byte what was archived, the
/// worker moves on as recovery does, and a file the archive lacks empties the queue.
#[test]
fn wal_fetch_ahead_pg15() {
    let env = Env::new(PgVersion::V15, "ahead", KEEP_WAL);
    let c = &env.cluster;
    c.psql(TABLE_SQL);
    let segments: Vec<String> = (1..=5)
        .map(|id| {
            commit_row(c, id);
            switch_wal(c)
        })
        .collect();
    let original = |name: &str| fs::read(c.dir.join("pg_wal").join(name)).unwrap();

    let scratch = scratch_data_dir(&env);
    let queue = scratch.join("pg_wal/lifeline_prefetch");
    let fetch = |name: &str, dest: &str, depth: &str| {
        env.run(&[
            "pg",
            "wal-fetch",
            name,
            dest,
            "--pgdata",
            s(&scratch),
            "--prefetch",
            depth,
        ])
    };
    let wait_queued = |names: &[String]| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !names.iter().all(|n| queue.join(n).is_file()) {
            assert!(
                Instant::now() < deadline,
                "{names:?} not all fetched ahead within a minute: the queue holds {:?}",
                fs::read_dir(&queue)
                    .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
            );
            sleep(Duration::from_millis(50));
        }
    };

    // The first call fetches from the repository and queues the next two.
    fetch(&segments[0], "pg_wal/RECOVERYXLOG", "2").assert_success();
    assert!(fs::read(scratch.join("pg_wal/RECOVERYXLOG")).unwrap() == original(&segments[0]));
    wait_queued(&segments[1..3]);
    for name in &segments[1..3] {
        assert!(
            fs::read(queue.join(name)).unwrap() == original(name),
            "{name} fetched ahead differs from what the server wrote"
        );
    }

    // The next call is answered from the queue: its repository object is not even read.
    fs::remove_file(env.wal_object(&segments[1])).unwrap();
    fetch(&segments[1], "pg_wal/RECOVERYXLOG", "2").assert_success();
    assert!(fs::read(scratch.join("pg_wal/RECOVERYXLOG")).unwrap() == original(&segments[1]));
    assert!(!queue.join(&segments[1]).exists());
    // ... and the worker moves on with recovery.
    wait_queued(&segments[2..4]);
    assert!(fs::read(queue.join(&segments[3])).unwrap() == original(&segments[3]));

    // A file the archive lacks: exit 1, and nothing stays queued.
    fetch("0000000100000000000000F7", "pg_wal/NEVER", "2").assert_code(EXIT_FATAL);
    assert!(!queue.exists(), "the queue outlived the end of recovery");

    // --prefetch 0 fetches only what is asked.
    fetch(&segments[3], "pg_wal/RECOVERYXLOG", "0").assert_success();
    assert!(fs::read(scratch.join("pg_wal/RECOVERYXLOG")).unwrap() == original(&segments[3]));
    assert!(!queue.exists(), "--prefetch 0 fetched ahead");
}

// ---------------------------------------------------------------------------
// 6. pg_verifybackup accepts restored data directories; incremental backups (17+)
// ---------------------------------------------------------------------------

fn verified_restores(version: PgVersion) {
    let env = Env::new(version, "verify", &[]);
    let c = &env.cluster;
    c.psql(TABLE_SQL);
    let insert = |c: &Cluster, from: u32, to: u32| {
        c.psql(&format!(
            "INSERT INTO pitr SELECT g, 'row ' || g || ': ' || (g::bigint * 7919 % 1000)
               FROM generate_series({from}, {to}) g"
        ))
    };
    insert(c, 1, 1000);
    let full = env.backup(&c.url(), &[]);

    let (out, dir) = env.restore("full", &["--target", "immediate"]);
    out.assert_success();
    let report = out.json();
    assert_eq!(report["backup"], full["snapshot_id"]);
    assert_eq!(report["backups_combined"], 1);
    assert!(dir.join("recovery.signal").is_file());
    verifybackup(version, &dir).assert_success();
    // The check has teeth: a changed file is caught.
    let version_file = dir.join("PG_VERSION");
    let mut text = fs::read(&version_file).unwrap();
    text.push(b'\n');
    fs::write(&version_file, text).unwrap();
    verifybackup(version, &dir)
        .assert_failure()
        .assert_output_contains("PG_VERSION");

    if version.major() < 17 {
        // No block-level incremental backups before 17: refused, saying so.
        env.run(&[
            "pg",
            "backup",
            "--db",
            &c.url(),
            "--mode",
            "stream",
            "--incremental",
        ])
        .assert_code(EXIT_FATAL)
        .assert_output_contains("PostgreSQL 17");
        return;
    }

    insert(c, 1001, 2000);
    c.psql("UPDATE pitr SET val = val || ' (updated)' WHERE id % 100 = 0");
    // Block-level, on top of a file-mode full (PostgreSQL reads lifeline's manifest of it).
    assert_eq!(full["backup_mode"], "files", "{full}");
    let incremental = env.backup(&c.url(), &["--mode", "stream", "--incremental"]);
    assert_eq!(incremental["backup_type"], "incremental", "{incremental}");
    assert!(
        json_u64(&incremental, "bytes") < json_u64(&full, "bytes"),
        "full {full}\nincremental {incremental}"
    );
    let before_incremental = c.psql("SELECT md5(string_agg(id || val, ',' ORDER BY id)) FROM pitr");
    insert(c, 2001, 2100);
    switch_wal(c);
    let everything = c.psql("SELECT md5(string_agg(id || val, ',' ORDER BY id)) FROM pitr");

    // The end of the incremental backup: pg_combinebackup rebuilds it from the chain.
    let (server, report) = env.restore_started("incremental", &["--target", "immediate"]);
    assert_eq!(report["backup"], incremental["snapshot_id"], "{report:#}");
    assert_eq!(report["backups_combined"], 2, "{report:#}");
    assert_eq!(
        server.psql("SELECT md5(string_agg(id || val, ',' ORDER BY id)) FROM pitr"),
        before_incremental
    );
    assert_eq!(server.psql("SELECT count(*) FROM pitr"), "2000");
    drop(server);

    // The end of the archive, from the same chain.
    let (server, report) = env.restore_started("latest", &[]);
    assert_eq!(report["backups_combined"], 2, "{report:#}");
    assert_eq!(
        server.psql("SELECT md5(string_agg(id || val, ',' ORDER BY id)) FROM pitr"),
        everything
    );
    assert_eq!(server.psql("SELECT count(*) FROM pitr"), "2100");
    drop(server);

    let (out, dir) = env.restore("incremental-verify", &["--target", "immediate"]);
    out.assert_success();
    verifybackup(version, &dir).assert_success();
}

#[test]
fn verified_restores_pg15() {
    verified_restores(PgVersion::V15);
}

#[test]
fn verified_restores_pg18() {
    verified_restores(PgVersion::V18);
}

// ---------------------------------------------------------------------------
// 7. pgvector answers are the same after a restore (18: the only server with pgvector)
// ---------------------------------------------------------------------------

#[test]
fn pgvector_restore_pg18() {
    let version = PgVersion::V18;
    let env = Env::new(version, "vector", &[]);
    let c = &env.cluster;
    c.psql(
        "CREATE EXTENSION vector;
         CREATE TABLE document_embeddings (id bigint PRIMARY KEY, embedding vector(384));
         INSERT INTO document_embeddings
             SELECT g, (SELECT array_agg((('x' || substr(md5(g || ':' || i), 1, 8))::bit(32)::int
                                          / 2147483648.0)::real ORDER BY i)
                        FROM generate_series(1, 384) i)::vector(384)
             FROM generate_series(1, 1000) g;",
    );
    let digest_sql = "SELECT md5(string_agg(id || ':' || embedding::text, ',' ORDER BY id))
                        FROM document_embeddings";
    let digest = c.psql(digest_sql);
    let backup = env.backup(&c.url(), &[]);
    assert_eq!(json_u64(&backup, "pgvector_tables"), 1, "{backup}");

    let (server, report) = env.restore_started(
        "vector",
        &["--target", "immediate", "--target-action", "promote"],
    );
    let recovery = &report["recovery"];
    assert!(json_u64(recovery, "pgvector_checks") > 0, "{report:#}");
    assert_eq!(json_u64(recovery, "pgvector_mismatches"), 0, "{report:#}");
    assert_eq!(server.psql(digest_sql), digest);

    // The same checks catch a change: a vector copied onto another row ties with a sample.
    let id = json_str(&backup, "snapshot_id");
    env.run(&["pg", "verify", id, "--db", &server.url()])
        .assert_success();
    server.psql(
        "UPDATE document_embeddings
            SET embedding = (SELECT embedding FROM document_embeddings WHERE id = 1)
          WHERE id = 700",
    );
    env.run(&["pg", "verify", id, "--db", &server.url()])
        .assert_code(EXIT_FATAL)
        .assert_output_contains("document_embeddings");
}

// ---------------------------------------------------------------------------
// 8. A restore drill: a promoted copy archives nothing by default; with `--archive-mode preserve`
//    its timeline 2 reaches the same repository, and the original's recovery is neither blocked
//    nor silently rerouted by it
// ---------------------------------------------------------------------------

/// A copy restored with `--target-action promote --archive-mode preserve` (a drill that keeps the
/// backup's archive_command) on timeline 2 of the same cluster; its history file is archived.
#[track_caller]
fn drill(env: &Env, name: &str, target_time: &str) -> Cluster {
    let (drill, _) = env.restore_started(
        name,
        &[
            "--target-time",
            target_time,
            "--target-action",
            "promote",
            "--archive-mode",
            "preserve",
        ],
    );
    assert_eq!(current_timeline(&drill), "00000002");
    let history = env.wal_object("00000002.history");
    let deadline = Instant::now() + ARCHIVE_WAIT;
    while !history.is_file() {
        assert!(
            Instant::now() < deadline,
            "00000002.history was not archived\n--- tail of the drill's log ---\n{}",
            tail(&drill.log(), 30)
        );
        sleep(Duration::from_millis(100));
    }
    drill
}

/// A restore drill: the original keeps running on timeline 1 while a copy restored from its backup
/// is promoted to timeline 2.
///
/// * By default (`--archive-mode off`) the copy archives nothing: no timeline-2 object reaches the
///   repository, however much it writes.
/// * With `--archive-mode preserve` it archives timeline 2 into the same repository. While its
///   first segment is still open, timeline 2 holds only its history file: `pg status` names that
///   segment as where recovery along timeline 2 stops, recovery to an LSN before the fork works
///   (PostgreSQL reads the fork's segment from timeline 1 when timeline 2 has no copy of it), and
///   recovery past it along timeline 2 is refused, naming the segment.
/// * A time after the fork exists on both timelines: without `--target-timeline` the restore is
///   refused naming both; with `--target-timeline 1` it gives exactly the original's rows.
/// * A backup of the original taken after the fork is no descendant of timeline 2 (PostgreSQL
///   itself refuses such a timeline: "requested timeline 2 is not a child of this server's
///   history"): it is restorable along timeline 1, and the latest restore gives the original's rows.
fn restore_drill(version: PgVersion) {
    let env = Env::new(version, "drill", &[]);
    let c = &env.cluster;
    c.psql(TABLE_SQL);
    let before = env.backup(&c.url(), &[]);
    let c1 = commit_row(c, 1);
    commit_row(c, 2);
    switch_wal(c);

    // (a) A default restore, promoted and written to, keeps its timeline to itself.
    let (copy, _) = env.restore_started(
        "copy",
        &["--target-time", &c1.after, "--target-action", "promote"],
    );
    assert_eq!(rows(&copy), expected_rows([1]));
    assert_eq!(current_timeline(&copy), "00000002");
    assert_eq!(copy.psql("SHOW archive_mode"), "off");
    let conf = auto_conf(&env.path("copy"));
    assert!(
        conf.lines().any(|l| l.trim() == "archive_mode = 'off'"),
        "{conf}"
    );
    copy.psql("INSERT INTO pitr VALUES (100, 'written by the copy')");
    let ended = copy.psql("SELECT pg_walfile_name(pg_switch_wal())");
    assert!(ended.starts_with("00000002"), "{ended}");
    // An archiver would have pushed the history file and the finished segment by now.
    sleep(Duration::from_secs(2));
    assert_eq!(
        copy.psql("SELECT archived_count FROM pg_stat_archiver"),
        "0"
    );
    assert_eq!(
        timeline_objects(&env, "00000002"),
        Vec::<String>::new(),
        "a copy restored with the default --archive-mode off archived into the repository"
    );
    let status = env.status();
    assert_eq!(
        status["timelines"].as_array().unwrap().len(),
        1,
        "{status:#}"
    );
    assert_eq!(status["forks"], serde_json::json!([]), "{status:#}");
    assert!(status["pitr_blocked_at"].is_null(), "{status:#}");
    drop(copy);

    // (b) The same drill with --archive-mode preserve: timeline 2 reaches the repository. (The
    // copy's timeline 2 was never archived, so the drill's new timeline is 2 again.)
    let drill = drill(&env, "drill", &c1.after);
    assert_eq!(rows(&drill), expected_rows([1]));
    // Its first segment is still open: timeline 2 has only its history file in the archive.
    let first_tl2 = drill.psql("SELECT pg_walfile_name(pg_current_wal_lsn())");
    assert!(first_tl2.starts_with("00000002"), "{first_tl2}");
    assert!(!env.wal_object(&first_tl2).exists());
    let status = env.status();
    assert_eq!(status["backups"][0]["restorable"], true, "{status:#}");
    assert_eq!(
        status["pitr_blocked_at"],
        first_tl2.as_str(),
        "recovery along timeline 2 stops where its first segment is missing: {status:#}"
    );
    let forks = status["forks"].as_array().unwrap();
    assert!(
        forks.len() == 1
            && forks[0]
                .as_str()
                .is_some_and(|f| f.contains("timeline 1") && f.contains("timeline 2")),
        "timeline 1 went on (commit 2) after timeline 2 left it: {status:#}"
    );

    // Along timeline 2 past the fork, recovery needs that segment: refused, naming it.
    let (out, dir) = env.restore("tl2-latest", &["--target-timeline", "latest"]);
    out.assert_code(EXIT_FATAL)
        .assert_output_contains(&first_tl2);
    assert_nothing_at(&dir);

    // Before the fork both histories agree: no --target-timeline needed, and the missing segment
    // of timeline 2 is read from timeline 1.
    let (server, report) = env.restore_started("before-fork", &["--target-lsn", &c1.lsn]);
    assert_eq!(report["backup"], before["snapshot_id"], "{report:#}");
    assert_eq!(report["timeline"], 2, "{report:#}");
    assert_eq!(rows(&server), expected_rows([1]), "{report:#}");
    drop(server);

    // Both sides go on: the original commits rows 3 and 4 (a time target needs a commit after it
    // to stop at), the drill rows 100 and 101 (later).
    let c3 = commit_row(c, 3);
    commit_row(c, 4);
    switch_wal(c);
    drill.psql("INSERT INTO pitr VALUES (100, 'written by the drill')");
    let archived = switch_wal(&drill);
    assert!(archived.starts_with("00000002"), "{archived}");
    drill.psql("INSERT INTO pitr VALUES (101, 'written by the drill')");
    switch_wal(&drill);
    assert_eq!(archiver_failures(&drill), 0, "{}", tail(&drill.log(), 30));
    assert!(env.wal_object(&first_tl2).is_file());
    let status = env.status();
    assert!(status["pitr_blocked_at"].is_null(), "{status:#}");

    // A time after the original's commit 3 lies on both histories.
    assert_two_histories(
        &env,
        "after-fork-refused",
        &["--target-time", &c3.after],
        [1, 2],
    );
    let (server, report) = env.restore_started(
        "after-fork",
        &["--target-time", &c3.after, "--target-timeline", "1"],
    );
    assert_eq!(report["timeline"], 1, "{report:#}");
    assert_eq!(rows(&server), expected_rows(1..=3), "{report:#}");
    drop(server);
    drop(drill);

    // A backup of the original after the fork: timeline 2 does not follow it.
    let after = env.backup(&c.url(), &[]);
    commit_row(c, 5);
    switch_wal(c);
    let status = env.status();
    let line = status["backups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == after["snapshot_id"])
        .unwrap();
    assert_eq!(line["restorable"], true, "{status:#}");
    assert!(status["pitr_blocked_at"].is_null(), "{status:#}");
    assert_eq!(status["forks"], serde_json::json!([]), "{status:#}");

    let (server, report) = env.restore_started("latest", &["--target-timeline", "current"]);
    assert_eq!(report["backup"], after["snapshot_id"], "{report:#}");
    assert_eq!(report["timeline"], 1, "{report:#}");
    assert_eq!(rows(&server), expected_rows(1..=5), "{report:#}");
    drop(server);
    // Without --target-timeline too: only timeline 1 follows that backup.
    let (out, _) = env.restore("latest-default", &[]);
    out.assert_success();
    let report = out.json();
    assert_eq!(report["backup"], after["snapshot_id"], "{report:#}");
    assert_eq!(report["timeline"], 1, "{report:#}");
}

#[test]
fn restore_drill_pg15() {
    restore_drill(PgVersion::V15);
}

#[test]
fn restore_drill_pg18() {
    restore_drill(PgVersion::V18);
}

/// `pg_ctl -D data` (relative) hands PostgreSQL `PGDATA=data`, and PostgreSQL runs archive_command
/// inside the data directory, where `data` names nothing: every push failed with "No such file".
#[test]
fn archiving_works_when_pg_ctl_was_given_a_relative_data_directory() {
    let env = Env::new(PgVersion::V15, "relative", &[]);
    let c = &env.cluster;
    c.stop();
    let opts = format!("-p {} -k '{}'", c.port, s(&c.socket_dir));
    let mut start = as_postgres(c.bin("pg_ctl"));
    start
        .current_dir(c.dir.parent().unwrap())
        .arg("-D")
        .arg(c.dir.file_name().unwrap())
        .args(["start", "-w", "-l", s(&c.log_file), "-o", &opts]);
    run(&mut start, None).assert_success();
    c.psql(TABLE_SQL);
    let _ = commit_row(c, 1);
    let segment = switch_wal(c);
    assert_eq!(archiver_failures(c), 0, "{}", tail(&c.log(), 20));
    assert!(env.wal_object(&segment).is_file());
}
