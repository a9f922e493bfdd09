//! File-level base backups (`pg backup --mode files`) against real PostgreSQL 15 and 18 servers: a
//! full and an incremental by change recover exact rows to a point in time, with tables written
//! while the files are read; the incremental reads only what changed; pg_verifybackup accepts the
//! restored directories; tablespaces are restored where `--tablespace-dir` says (where they were is
//! refused while the original's are there) and linked from the new data directory; a role that may not read the data directory gets a stream backup under `auto`
//! and a named refusal under `files`.
//!
//! Every lifeline command and every server runs as the `postgres` OS user. Needs
//! `scripts/postgres.sh install` and `eval "$(scripts/postgres.sh env)"`; without them these tests
//! fail, they never skip.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::thread;

use common::pg::{as_postgres, chown_to_postgres, Cluster, PgVersion};
use common::pitr::*;
use common::{json_str, json_u64, run, EXIT_FATAL};

const ACCOUNTS_MD5: &str =
    "SELECT md5(string_agg(aid || ':' || abalance, ',' ORDER BY aid)) FROM pgbench_accounts";

/// pgbench writing for `seconds` on its own thread, while the caller backs up.
fn load(c: &Cluster, seconds: u32) -> thread::JoinHandle<()> {
    let mut cmd = as_postgres(c.bin("pgbench"));
    cmd.args([
        "-h",
        "127.0.0.1",
        "-U",
        "postgres",
        "-p",
        &c.port.to_string(),
    ])
    .args(["-c", "2", "-j", "2", "-T", &seconds.to_string(), "postgres"]);
    thread::spawn(move || {
        run(&mut cmd, None).assert_success();
    })
}

fn full_and_incremental_recover_exact_rows(version: PgVersion) {
    let env = Env::new(version, "files", &[]);
    let c = &env.cluster;
    c.pgbench(["-i", "-s", "4", "-q", "postgres"])
        .assert_success();
    c.psql(TABLE_SQL);
    let _ = commit_row(c, 1);

    // The full backup reads every file while pgbench writes.
    let writing = load(c, 4);
    let full = env.backup(&c.url(), &["--mode", "files", "--jobs", "3"]);
    writing.join().unwrap();
    assert_eq!(json_str(&full, "backup_mode"), "files", "{full}");
    assert_eq!(json_str(&full, "backup_type"), "full", "{full}");
    assert_eq!(json_u64(&full, "files_reused"), 0, "{full}");
    let after_full = commit_row(c, 2);
    let accounts_after_full = c.psql(ACCOUNTS_MD5);

    // About 1% of the accounts change; the incremental reads only the files that did.
    c.psql("UPDATE pgbench_accounts SET abalance = abalance + 7 WHERE aid % 100 = 0");
    c.psql("CHECKPOINT");
    let writing = load(c, 3);
    let incremental = env.backup(&c.url(), &["--mode", "files", "--incremental"]);
    writing.join().unwrap();
    assert_eq!(json_str(&incremental, "backup_type"), "incremental");
    let read = json_u64(&incremental, "files_read");
    let reused = json_u64(&incremental, "files_reused");
    assert!(
        reused > 4 * read && read > 0,
        "the incremental read {read} files and reused {reused}: {incremental}"
    );
    let after_incremental = commit_row(c, 3);
    let accounts_after_incremental = c.psql(ACCOUNTS_MD5);
    switch_wal(c);

    // Before the incremental's end: recovered from the full, exactly rows 1 and 2.
    let (server, report) = env.restore_started("from-full", &["--target-xid", &after_full.xid]);
    assert_eq!(report["backup"], full["snapshot_id"], "{report:#}");
    assert_eq!(rows(&server), expected_rows(1..=2));
    assert_eq!(server.psql(ACCOUNTS_MD5), accounts_after_full);
    drop(server);

    // After it: recovered from the incremental alone (no chain), exactly rows 1 to 3.
    let (server, report) = env.restore_started(
        "from-incremental",
        &["--target-xid", &after_incremental.xid],
    );
    assert_eq!(report["backup"], incremental["snapshot_id"], "{report:#}");
    assert_eq!(report["backups_combined"], 1, "{report:#}");
    assert_eq!(rows(&server), expected_rows(1..=3));
    assert_eq!(server.psql(ACCOUNTS_MD5), accounts_after_incremental);
    drop(server);

    for (name, id) in [("verify-full", &full), ("verify-incremental", &incremental)] {
        let set = json_str(id, "snapshot_id");
        let (out, dir) = env.restore(name, &["--target", "immediate", "--set", set]);
        out.assert_success();
        verifybackup(version, &dir).assert_success();
    }
    let check = env.run(&["check", "--read-data"]);
    check.assert_success();
}

#[test]
fn full_and_incremental_recover_exact_rows_pg15() {
    full_and_incremental_recover_exact_rows(PgVersion::V15);
}

#[test]
fn full_and_incremental_recover_exact_rows_pg18() {
    full_and_incremental_recover_exact_rows(PgVersion::V18);
}

fn tablespaces_restore_under_the_tablespace_dir(version: PgVersion) {
    let env = Env::new(version, "tablespace", &[]);
    let c = &env.cluster;
    c.psql(TABLE_SQL);
    let location = env.path("space");
    fs::create_dir(&location).unwrap();
    chown_to_postgres(&location);
    c.psql(&format!(
        "CREATE TABLESPACE space LOCATION '{}'",
        s(&location)
    ));
    c.psql("CREATE TABLE far (id int PRIMARY KEY, val text) TABLESPACE space");
    c.psql("INSERT INTO far SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g");
    let oid = c.psql("SELECT oid FROM pg_tablespace WHERE spcname = 'space'");
    // A file modified in the last second before a backup is never trusted by the next one (its
    // mtime may not show a later change): on a fast machine initdb's files were all that young.
    thread::sleep(std::time::Duration::from_millis(1100));
    let full = env.backup(&c.url(), &["--mode", "files"]);
    c.psql("INSERT INTO far VALUES (20001, 'after')");
    let incremental = env.backup(&c.url(), &["--mode", "files", "--incremental"]);
    assert!(json_u64(&incremental, "files_reused") > 0, "{incremental}");
    let _ = commit_row(c, 1);
    switch_wal(c);
    let original: Vec<_> = fs::read_dir(&location).unwrap().collect();

    // Where it was is the running original's: refused before anything is written.
    let (out, dir) = env.restore("refused", &[]);
    out.assert_code(EXIT_FATAL)
        .assert_output_contains("not empty")
        .assert_output_contains("--tablespace-dir");
    assert_nothing_at(&dir);
    let spaces = env.path("restored-spaces");
    let (server, _) = env.restore_started("restored", &["--tablespace-dir", s(&spaces)]);
    assert_eq!(server.psql("SELECT count(*) FROM far"), "20001");
    let link = server.dir.join("pg_tblspc").join(&oid);
    assert_eq!(fs::read_link(&link).unwrap(), spaces.join(&oid));
    // The restored server writes its own copy, never the original's tablespace.
    server.psql("INSERT INTO far SELECT g, 'restored' FROM generate_series(30000, 40000) g");
    server.psql("CHECKPOINT");
    assert_eq!(c.psql("SELECT count(*) FROM far"), "20001");
    assert_eq!(fs::read_dir(&location).unwrap().count(), original.len());
    drop(server);

    let set = json_str(&full, "snapshot_id");
    let verify_spaces = env.path("verify-spaces");
    let (out, dir) = env.restore(
        "verify",
        &[
            "--target",
            "immediate",
            "--set",
            set,
            "--tablespace-dir",
            s(&verify_spaces),
        ],
    );
    out.assert_success();
    verifybackup(version, &dir).assert_success();
}

#[test]
fn tablespaces_restore_under_the_tablespace_dir_pg15() {
    tablespaces_restore_under_the_tablespace_dir(PgVersion::V15);
}

#[test]
fn tablespaces_restore_under_the_tablespace_dir_pg18() {
    tablespaces_restore_under_the_tablespace_dir(PgVersion::V18);
}

/// A replication role that may not read the server's settings or files: `auto` streams, `files`
/// says what is missing.
#[test]
fn a_role_that_cannot_read_the_data_directory_streams_under_auto_and_is_refused_files() {
    let env = Env::new(PgVersion::V15, "role", &[]);
    let c = &env.cluster;
    c.psql("CREATE ROLE replicator LOGIN REPLICATION");
    let url = format!("postgresql://replicator@127.0.0.1:{}/postgres", c.port);
    let auto = env.backup(&url, &[]);
    assert_eq!(json_str(&auto, "backup_mode"), "stream", "{auto}");
    env.run(&["pg", "backup", "--db", &url, "--mode", "files"])
        .assert_code(EXIT_FATAL)
        .assert_output_contains("--mode files")
        .assert_output_contains("GRANT pg_read_all_settings");
    let superuser = env.backup(&c.url(), &[]);
    assert_eq!(json_str(&superuser, "backup_mode"), "files", "{superuser}");
}
