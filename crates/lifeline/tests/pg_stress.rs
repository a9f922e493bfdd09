//! PostgreSQL under stress (issue 15): the repository unreachable while PostgreSQL archives (the
//! archive_command fails, PostgreSQL keeps the segments, archiving resumes when the repository is
//! back, with no gap), `pg_basebackup` or a file-mode `lifeline pg backup` killed in the middle of
//! a backup, and the server crashing during either (no snapshot, nothing a restore would pick, and
//! the next backup succeeds); a backlog of segments archived ahead with no gap.
//!
//! Needs `scripts/postgres.sh install` and its `env` exports (scripts/test.sh does it).
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::process::{Child, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::pg::{as_postgres, lifeline_bin, PgVersion};
use common::pitr::*;
use common::*;

/// Snapshots in the repository.
fn snapshot_count(env: &Env) -> usize {
    let out = env.run(&["snapshots", "--json"]);
    out.assert_success();
    out.json().as_array().unwrap().len()
}

/// Ends the current segment without waiting for the archive; returns its name.
fn switch_wal_now(c: &common::pg::Cluster) -> String {
    c.psql("SELECT pg_walfile_name(pg_switch_wal())")
}

#[test]
fn archiving_resumes_with_no_gap_after_the_repository_was_unreachable() {
    let env = Env::new(PgVersion::V15, "unreachable", KEEP_WAL);
    let c = &env.cluster;
    c.psql(TABLE_SQL);
    env.backup(&c.url(), &[]);
    let _ = commit_row(c, 1);
    switch_wal(c);

    // The repository goes away (an unmounted volume, a store that is down).
    let away = env.path("repo-away");
    fs::rename(&env.repo, &away).unwrap();
    let failures_before = archiver_failures(c);
    let mut held = Vec::new();
    for id in 2..=4 {
        let _ = commit_row(c, id);
        held.push(switch_wal_now(c));
    }
    let deadline = Instant::now() + ARCHIVE_WAIT;
    while archiver_failures(c) < failures_before + 3 {
        assert!(
            Instant::now() < deadline,
            "the archiver did not fail while the repository was away\n{}",
            tail(&c.log(), 30)
        );
        sleep(Duration::from_millis(200));
    }
    // PostgreSQL keeps every segment it could not archive.
    for seg in &held {
        assert!(
            c.dir.join("pg_wal").join(seg).is_file(),
            "{seg} left pg_wal before it was archived"
        );
        assert!(
            c.dir
                .join("pg_wal/archive_status")
                .join(format!("{seg}.ready"))
                .is_file(),
            "{seg} is not waiting to be archived"
        );
    }
    let log = c.log();
    assert!(
        log.contains("repository not found") || log.contains("archive command failed"),
        "the server log does not say why archiving failed\n{}",
        tail(&log, 30)
    );

    // Back: the next segment wakes the archiver, which archives everything in order.
    fs::rename(&away, &env.repo).unwrap();
    let _ = commit_row(c, 5);
    let last = switch_wal(c);
    assert!(last > held[2], "{last} after {}", held[2]);
    // `check` finds no segment missing from the backup's start on.
    let out = env.run(&["check", "--read-data"]);
    assert_eq!(out.code(), Some(EXIT_OK), "{}", out.describe());
    // Recovery replays all of it: every row, including those written while the repository was away.
    let (restored, _) = env.restore_started("restored", &[]);
    assert_eq!(rows(&restored), expected_rows(1..=5));
}

/// All processes below `pid`, depth first.
fn descendants(pid: u32) -> Vec<u32> {
    children_of(pid)
        .into_iter()
        .flat_map(|child| std::iter::once(child).chain(descendants(child)))
        .collect()
}

/// The process's arguments, NUL-separated as the kernel keeps them.
fn cmdline(pid: u32) -> String {
    String::from_utf8_lossy(&fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default())
        .into_owned()
}

fn comm(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// `lifeline pg backup --mode MODE --jobs 1` of the env's server, running. Streamed, through a
/// `pg_basebackup` held to 16 MB/s, so the test can catch it mid-backup.
fn start_backup(env: &Env, mode: &str) -> Child {
    let cfg = if mode == "stream" {
        throttled_config(env)
    } else {
        env.cfg.clone()
    };
    let mut cmd = as_postgres(lifeline_bin());
    cmd.args([
        "--config",
        s(&cfg),
        "pg",
        "backup",
        "--db",
        &env.cluster.url(),
        "--mode",
        mode,
        "--jobs",
        "1",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    cmd.spawn().unwrap()
}

/// Waits until `child` runs the `pg_basebackup` that streams the backup; its PID. lifeline first
/// runs `pg_basebackup --version`, which ends at once: catching that one left nothing to kill.
fn pg_basebackup_under(child: &mut Child) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the backup ended before pg_basebackup could be caught"
        );
        if let Some(pid) = descendants(child.id())
            .into_iter()
            .find(|p| comm(*p) == "pg_basebackup" && !cmdline(*p).contains("--version"))
        {
            return pid;
        }
        assert!(Instant::now() < deadline, "no pg_basebackup appeared");
        sleep(Duration::from_millis(5));
    }
}

/// The env's config with `[postgres] bin_dir` naming a directory whose `pg_basebackup` runs the
/// real one with `--max-rate`.
fn throttled_config(env: &Env) -> std::path::PathBuf {
    let bin = env.path("throttled-bin");
    fs::create_dir_all(&bin).unwrap();
    let real = env.version.bin("pg_basebackup");
    let wrapper = bin.join("pg_basebackup");
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\ncase \"$1\" in --version) exec {real} \"$@\";; esac\nexec {real} --max-rate=16M \"$@\"\n",
            real = quote(s(&real))
        ),
    )
    .unwrap();
    fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let cfg = env.path("throttled.toml");
    let text = fs::read_to_string(&env.cfg).unwrap().replace(
        &format!("bin_dir = {:?}", s(&env.version.bin_dir())),
        &format!("bin_dir = {:?}", s(&bin)),
    );
    assert!(text.contains(s(&bin)), "no bin_dir to replace in {text}");
    fs::write(&cfg, text).unwrap();
    cfg
}

/// A database big enough for a backup to take a while.
fn loaded_env(name: &str) -> Env {
    let env = Env::new(PgVersion::V15, name, &[]);
    env.cluster
        .pgbench(["-i", "-s", "8", "-q"])
        .assert_success();
    env
}

/// After a failed backup: exit 1 saying `why`, no new snapshot, `check` passes, the next backup
/// succeeds and restores.
#[track_caller]
fn assert_failed_cleanly(env: &Env, child: Child, before: usize, why: &[&str]) {
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(EXIT_FATAL), "{stderr}");
    assert!(
        why.iter().any(|w| stderr.contains(w)),
        "the error does not say {why:?}: {stderr}"
    );
    assert_no_trace_and_the_next_backup_restores(env, before);
}

/// No new snapshot, `check` passes, and the next backup succeeds and restores.
#[track_caller]
fn assert_no_trace_and_the_next_backup_restores(env: &Env, before: usize) {
    assert_eq!(
        snapshot_count(env),
        before,
        "a failed backup left a snapshot"
    );
    let check = env.run(&["check", "--read-data"]);
    assert_eq!(check.code(), Some(EXIT_OK), "{}", check.describe());
    let before_rows = env.cluster.psql("SELECT count(*) FROM pgbench_accounts");
    env.backup(&env.cluster.url(), &[]);
    assert_eq!(snapshot_count(env), before + 1);
    let (restored, _) = env.restore_started("restored", &[]);
    assert_eq!(
        restored.psql("SELECT count(*) FROM pgbench_accounts"),
        before_rows
    );
}

#[test]
fn pg_basebackup_killed_mid_backup_leaves_no_snapshot() {
    let env = loaded_env("kill-basebackup");
    let before = snapshot_count(&env);
    let mut child = start_backup(&env, "stream");
    let pid = pg_basebackup_under(&mut child);
    run(
        std::process::Command::new("kill").args(["-9", &pid.to_string()]),
        None,
    )
    .assert_success();
    assert_failed_cleanly(&env, child, before, &["pg_basebackup"]);
}

#[test]
fn the_server_crashing_during_a_base_backup_leaves_no_snapshot() {
    let env = loaded_env("crash-server");
    let before = snapshot_count(&env);
    let mut child = start_backup(&env, "stream");
    pg_basebackup_under(&mut child);
    sleep(Duration::from_millis(100));
    env.cluster.stop_immediate();
    // The backup fails on its own, whatever it was doing; then the server comes back.
    let out = child.wait_with_output().unwrap();
    env.cluster.start();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(EXIT_FATAL), "{stderr}");
    assert!(
        stderr.contains("pg_basebackup") || stderr.contains("connection"),
        "the error does not say what failed: {stderr}"
    );
    assert_eq!(
        snapshot_count(&env),
        before,
        "a failed backup left a snapshot"
    );
    let mut child = start_backup(&env, "stream");
    let status = wait_timeout(
        &mut child,
        Duration::from_secs(300),
        "the backup after the crash",
    );
    assert!(status.success(), "the backup after the crash failed");
    let check = env.run(&["check", "--read-data"]);
    assert_eq!(check.code(), Some(EXIT_OK), "{}", check.describe());
}

/// Waits until the backup `child` runs has called pg_backup_start on the server: it is reading the
/// data directory.
fn reading_files(env: &Env, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the backup ended before it could be caught reading"
        );
        let sessions = env.cluster.psql(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_backup_start%'",
        );
        if sessions != "0" {
            return;
        }
        assert!(Instant::now() < deadline, "no backup started on the server");
        sleep(Duration::from_millis(5));
    }
}

#[test]
fn lifeline_killed_while_reading_the_data_directory_leaves_no_snapshot() {
    let env = loaded_env("kill-files");
    let before = snapshot_count(&env);
    let mut child = start_backup(&env, "files");
    reading_files(&env, &mut child);
    child.kill().unwrap();
    child.wait().unwrap();
    // The server ended the backup with the session: the next one starts and completes.
    assert_no_trace_and_the_next_backup_restores(&env, before);
}

/// The server stops while the files are read: the backup fails naming the lost connection, or, if
/// it had already ended the backup on the server, completes one that restores.
#[test]
fn the_server_crashing_during_a_file_mode_backup_leaves_nothing_a_restore_would_pick() {
    let env = loaded_env("crash-files");
    let before = snapshot_count(&env);
    let mut child = start_backup(&env, "files");
    reading_files(&env, &mut child);
    env.cluster.stop_immediate();
    let out = child.wait_with_output().unwrap();
    env.cluster.start();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    if out.status.success() {
        assert_eq!(snapshot_count(&env), before + 1);
        let (restored, _) = env.restore_started("completed", &[]);
        assert_eq!(
            restored.psql("SELECT count(*) FROM pgbench_accounts"),
            "800000"
        );
        return;
    }
    assert_eq!(out.status.code(), Some(EXIT_FATAL), "{stderr}");
    assert!(
        stderr.contains("pg_backup_stop") || stderr.contains("connection"),
        "the error does not say what failed: {stderr}"
    );
    assert_no_trace_and_the_next_backup_restores(&env, before);
}

/// A backlog (the repository was away while 40 segments filled) is archived ahead: the first call
/// stores the asked segment and the next ones in parallel, PostgreSQL's calls for those are answered
/// by their markers, every segment reaches the archive byte for byte and no marker is left over.
#[test]
fn a_backlog_of_segments_is_archived_ahead_with_no_gap() {
    let env = Env::new(
        PgVersion::V15,
        "ahead",
        &[
            ("checkpoint_timeout", "1h"),
            ("max_wal_size", "4GB"),
            ("wal_keep_size", "4GB"),
        ],
    );
    let c = &env.cluster;
    c.psql(TABLE_SQL);
    switch_wal(c);
    let away = env.path("repo-away");
    fs::rename(&env.repo, &away).unwrap();
    let mut held = Vec::new();
    for id in 1..=40 {
        let _ = commit_row(c, id);
        held.push(switch_wal_now(c));
    }
    fs::rename(&away, &env.repo).unwrap();
    let clock = Instant::now();
    let _ = commit_row(c, 41);
    let last = switch_wal(c);
    let seconds = clock.elapsed().as_secs_f64();
    assert!(last > held[39]);
    for seg in &held {
        let fetched = env.path(&format!("fetched-{seg}"));
        env.run(&["pg", "wal-fetch", seg, s(&fetched), "--pgdata", s(&c.dir)])
            .assert_success();
        assert!(
            fs::read(&fetched).unwrap() == fs::read(c.dir.join("pg_wal").join(seg)).unwrap(),
            "{seg} in the archive differs from the server's"
        );
    }
    let markers = c.dir.join("pg_wal/lifeline_ahead");
    assert!(markers.is_dir(), "nothing was archived ahead");
    let left: Vec<_> = fs::read_dir(&markers).unwrap().collect();
    assert!(left.is_empty(), "markers left over: {left:?}");
    eprintln!("pg wal-push ahead: a backlog of 41 segments archived in {seconds:.1} s");
}
