//! `pg restore` into places that already exist: `--start` keeps the restored cluster's own unix
//! socket directory and prints a connection string that works, and `--delta` updates a stopped copy
//! of the cluster in place, writing only what differs, and refuses a running server's directory,
//! another cluster's, and incremental backups.
//!
//! Real PostgreSQL servers run as the `postgres` OS user, as in `pg_pitr.rs`; needs
//! `scripts/postgres.sh install` and `eval "$(scripts/postgres.sh env)"`.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::Path;

use common::pg::{as_postgres, chown_to_postgres, Cluster, PgVersion};
use common::pitr::*;
use common::{json_u64, run, EXIT_FATAL};

/// `psql -d CONNINFO -c SQL` as the postgres user: the connection string exactly as printed.
#[track_caller]
fn psql_with(version: PgVersion, conninfo: &str, sql: &str) -> String {
    let out = run(
        as_postgres(version.bin("psql"))
            .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"])
            .args(["-d", conninfo, "-c", sql]),
        None,
    );
    out.assert_success();
    out.stdout_str().trim().to_string()
}

fn socket_files(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(".s.PGSQL.") && !n.ends_with(".lock"))
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// --start: the cluster's own socket directory, and a connection string that works
// ---------------------------------------------------------------------------

#[test]
fn pg_restore_start_keeps_the_clusters_socket_directory_and_prints_a_working_connection_string() {
    let version = PgVersion::V18;
    let env = Env::new(version, "socket", &[]);
    let c = &env.cluster;
    c.psql(TABLE_SQL);
    commit_row(c, 1);
    // The backup's postgresql.auto.conf names a socket directory this host does not have (yet).
    let own = env.path("own.sock");
    c.psql(&format!(
        "ALTER SYSTEM SET unix_socket_directories = '{}'",
        s(&own)
    ));
    env.backup(&c.url(), &[]);

    // Missing: the server falls back to the temporary directory, and the report says so.
    let (server, report) = env.restore_started("fallback", &["--target", "immediate"]);
    let recovery = &report["recovery"];
    let tmp = std::env::temp_dir().display().to_string();
    assert_eq!(
        recovery["socket_directories"],
        serde_json::json!([tmp]),
        "{report:#}"
    );
    let notes = recovery["socket_notes"].to_string();
    assert!(
        notes.contains(s(&own)) && notes.contains("does not exist"),
        "{report:#}"
    );
    let conn = recovery["connection"].as_str().unwrap();
    assert!(conn.contains(&format!("host={tmp}")), "{report:#}");
    assert_eq!(psql_with(version, conn, "SELECT count(*) FROM pitr"), "1");
    drop(server);

    // Present: the server keeps it (no -k /tmp any more), and the printed string reaches it.
    fs::create_dir(&own).unwrap();
    chown_to_postgres(&own);
    let dir = env.path("kept");
    let _server = Cluster::from_data_dir(version, &dir, 0);
    let out = env.run(&[
        "pg",
        "restore",
        "--pgdata",
        s(&dir),
        "--target",
        "immediate",
        "--start",
    ]);
    out.assert_success();
    let text = out.stdout_str();
    let conn = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("connect: psql '")?.strip_suffix('\''))
        .unwrap_or_else(|| panic!("no connection string printed:\n{text}"))
        .to_string();
    assert!(!text.contains("note:"), "{text}");
    assert!(conn.contains(&format!("host={}", s(&own))), "{conn}");
    let sockets = socket_files(&own);
    assert_eq!(sockets.len(), 1, "{sockets:?} in {}", own.display());
    assert!(
        conn.ends_with(&format!("port={}", &sockets[0][".s.PGSQL.".len()..])),
        "{conn} vs {sockets:?}"
    );
    assert_eq!(psql_with(version, &conn, "SELECT count(*) FROM pitr"), "1");
}

// ---------------------------------------------------------------------------
// --delta: in place, writing only what differs
// ---------------------------------------------------------------------------

const ACCOUNTS_SUM: &str = "SELECT sum(abalance), count(*) FROM pgbench_accounts";

#[test]
fn pg_restore_delta_rewrites_only_changed_files() {
    let version = PgVersion::V15;
    let env = Env::new(version, "delta", &[]);
    let c = &env.cluster;
    c.pgbench(["-i", "-s", "2", "-q", "postgres"]);
    c.psql(TABLE_SQL);
    for id in 1..=3 {
        commit_row(c, id);
    }
    let accounts = c.psql(ACCOUNTS_SUM);
    let backup = env.backup(&c.url(), &[]);
    let backup_bytes = json_u64(&backup, "bytes");
    let args = ["--target", "immediate", "--target-action", "promote"];

    // A full restore, promoted, then changed a little and stopped: a copy that went its own way.
    let (copy, full) = env.restore_started("copy", &args);
    let full_ms = json_u64(&full, "restore_ms");
    copy.psql("INSERT INTO pitr VALUES (4, 'diverged'), (5, 'diverged')");
    copy.psql("UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid <= 20");
    copy.psql("CREATE TABLE added_later (x int); INSERT INTO added_later VALUES (1)");
    copy.psql("CHECKPOINT");
    copy.stop();
    drop(copy);
    let dir = env.path("copy");
    fs::write(dir.join("added-by-hand.conf"), "work_mem = '1GB'\n").unwrap();

    let (server, report) = env.restore_started("copy", &[&["--delta"], &args[..]].concat());
    let delta = &report["delta"];
    let (checked, rewritten, removed, written) = (
        json_u64(delta, "files_checked"),
        json_u64(delta, "files_rewritten"),
        json_u64(delta, "entries_removed"),
        json_u64(delta, "bytes_written"),
    );
    let delta_ms = json_u64(&report, "restore_ms");
    eprintln!(
        "full restore {full_ms} ms ({backup_bytes} bytes); delta restore {delta_ms} ms: {checked} files checked, {rewritten} rewritten, {written} bytes written, {removed} entries removed"
    );
    assert!(checked > 500, "{report:#}");
    assert!(
        rewritten * 10 < checked,
        "a delta restore after a small change rewrote {rewritten} of {checked} files\n{report:#}"
    );
    // The copy differs from the backup in three pages of the two big files (pgbench_accounts'
    // first and last page, one index page) plus small catalog files. Each changed page costs its
    // whole chunk, 256 KiB to 4 MiB (files profile), and chunk boundaries move with each
    // repository's secret gear: seen 2.8-14 MB of 55 MB over ten runs, bounded by 3 x 4 MiB plus
    // the small files. pgBackRest rewrites whole files: the 26 MB pgbench_accounts among them.
    assert!(
        written * 2 < backup_bytes,
        "a delta restore after a small change wrote {written} bytes of {backup_bytes}\n{report:#}"
    );
    assert!(removed >= 2, "the added file and table go: {report:#}");
    assert!(!dir.join("added-by-hand.conf").exists());

    // The data equals the backup's again.
    assert_eq!(rows(&server), expected_rows(1..=3), "{report:#}");
    assert_eq!(server.psql(ACCOUNTS_SUM), accounts);
    assert_eq!(
        server.psql("SELECT count(*) FROM pg_class WHERE relname = 'added_later'"),
        "0"
    );
    server.psql("SELECT count(*) FROM pgbench_history");
}

#[test]
fn pg_restore_delta_refuses_a_running_server() {
    let version = PgVersion::V15;
    let env = Env::new(version, "delta-running", &[]);
    let c = &env.cluster;
    c.psql(TABLE_SQL);
    commit_row(c, 1);
    env.backup(&c.url(), &[]);

    // The original's own data directory, while it runs.
    let (out, _) = env.restore("data", &["--delta"]);
    out.assert_code(EXIT_FATAL)
        .assert_output_contains("is running on")
        .assert_output_contains("stop it first");
    assert!(c.is_running());
    assert_eq!(rows(c), expected_rows(1..=1));
    assert!(!c.dir.join("recovery.signal").exists());

    // A postmaster.pid of a process that is gone is not judged stale for the user.
    c.stop();
    fs::write(c.dir.join("postmaster.pid"), "999999999\n").unwrap();
    let (out, _) = env.restore("data", &["--delta"]);
    out.assert_code(EXIT_FATAL)
        .assert_output_contains("not running on this host")
        .assert_output_contains("remove postmaster.pid");
    assert!(!c.dir.join("recovery.signal").exists());
    fs::remove_file(c.dir.join("postmaster.pid")).unwrap();
}

#[test]
fn pg_restore_delta_refuses_another_clusters_directory() {
    let version = PgVersion::V15;
    let env = Env::new(version, "delta-other", &[]);
    let c = &env.cluster;
    c.psql(TABLE_SQL);
    env.backup(&c.url(), &[]);

    let other_parent = env.path("other");
    fs::create_dir(&other_parent).unwrap();
    chown_to_postgres(&other_parent);
    let other = Cluster::init(version, &other_parent, &[]);
    let before = fs::read(other.dir.join("global/pg_control")).unwrap();
    let (out, _) = env.restore("other/data", &["--delta"]);
    out.assert_code(EXIT_FATAL)
        .assert_output_contains(&format!("but the backup is of cluster {}", env.system_id()))
        .assert_output_contains("new or empty directory");
    assert_eq!(
        fs::read(other.dir.join("global/pg_control")).unwrap(),
        before
    );
    assert!(other.dir.join("postgresql.conf").exists());

    // Not a data directory at all.
    let dir = env.path("not-pgdata");
    fs::create_dir(&dir).unwrap();
    chown_to_postgres(&dir);
    fs::write(dir.join("notes.txt"), "mine").unwrap();
    let (out, _) = env.restore("not-pgdata", &["--delta"]);
    out.assert_code(EXIT_FATAL)
        .assert_output_contains("is not a PostgreSQL data directory");
    assert_eq!(fs::read_to_string(dir.join("notes.txt")).unwrap(), "mine");

    // Without --delta a non-empty directory is refused as before, naming the option.
    let (out, _) = env.restore("not-pgdata", &[]);
    out.assert_code(EXIT_FATAL)
        .assert_output_contains("is not empty")
        .assert_output_contains("--delta");
}

#[test]
fn pg_restore_delta_refuses_an_incremental_backup() {
    let version = PgVersion::V18;
    let env = Env::new(version, "delta-incr", &[]);
    let c = &env.cluster;
    c.psql(TABLE_SQL);
    env.backup(&c.url(), &[]);
    commit_row(c, 1);
    // A block-level incremental (a file-mode one is whole and restores in place like a full).
    let incremental = env.backup(&c.url(), &["--mode", "stream", "--incremental"]);
    assert_eq!(incremental["backup_type"], "incremental", "{incremental}");
    let (out, dir) = env.restore("incr", &["--delta"]);
    out.assert_code(EXIT_FATAL)
        .assert_output_contains("is incremental")
        .assert_output_contains("--set");
    assert_nothing_at(&dir);
}
