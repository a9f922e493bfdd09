//! The PostgreSQL test servers themselves (tests/common/pg.rs), one smoke test
//! per version: a cluster starts, answers SQL, and the client tools the
//! `lifeline pg` tests lean on work against it (pg_basebackup and
//! pg_verifybackup, an incremental backup and pg_combinebackup from 17 on,
//! pg_dump and pg_restore, pgbench), a restored data directory starts on a port
//! of its own, and the postgres user can run the lifeline binary.
//!
//! pgvector: required on 18 (the wheel ships 0.8.5). Debian bookworm has no
//! `postgresql-15-pgvector`, so on 15 the vector check runs only if the server
//! lists the extension.
//!
//! Needs `scripts/postgres.sh install` and its `env`: without them these tests
//! fail, they never skip.
#![allow(clippy::unwrap_used)]

mod common;

use common::pg::*;
use common::run;

fn smoke(version: PgVersion) {
    let major = version.major();
    let tmp = shared_dir(&format!("lifeline-pg{major}-smoke-"));
    let c = Cluster::init(version, tmp.path(), &[("shared_buffers", "32MB")]);
    c.start();
    assert!(c.is_running());

    let num: u32 = c.psql("SHOW server_version_num").parse().unwrap();
    assert_eq!(num / 10000, major, "server_version_num {num}");
    assert_eq!(c.psql("SHOW data_checksums"), "on");
    assert_eq!(c.psql("SHOW wal_level"), "replica");
    assert_eq!(c.psql("SHOW listen_addresses"), "127.0.0.1");
    assert_eq!(c.psql("SHOW shared_buffers"), "32MB");
    if major >= 17 {
        assert_eq!(c.psql("SHOW summarize_wal"), "on");
    }

    c.psql(
        "CREATE TABLE t (id int PRIMARY KEY, body text);
         INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 1000) g;",
    );
    assert_eq!(c.psql("SELECT count(*) FROM t"), "1000");

    let has_vector =
        c.psql("SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'") == "1";
    if version == PgVersion::V18 {
        assert!(has_vector, "the PostgreSQL 18 server lacks pgvector");
    }
    if has_vector {
        c.psql(
            "CREATE EXTENSION vector;
             CREATE TABLE items (id int PRIMARY KEY, v vector(3));
             INSERT INTO items VALUES (1, '[1,2,3]'), (2, '[4,5,6]'), (3, '[1,2,4]');",
        );
        assert_eq!(
            c.psql("SELECT id FROM items ORDER BY v <-> '[1,2,3.9]' LIMIT 2"),
            "3\n1"
        );
    }

    // A full base backup, verified, then (17+) an incremental one combined with it.
    let full = tmp.path().join("full");
    run(
        as_postgres(c.bin("pg_basebackup"))
            .args(["-d", &c.url(), "-X", "stream", "-c", "fast", "-D"])
            .arg(&full),
        None,
    )
    .assert_success();
    run(as_postgres(c.bin("pg_verifybackup")).arg(&full), None).assert_success();
    let mut restore_from = full.clone();
    if major >= 17 {
        c.psql("INSERT INTO t SELECT g, 'incremental' FROM generate_series(1001, 1100) g");
        let incr = tmp.path().join("incr");
        run(
            as_postgres(c.bin("pg_basebackup"))
                .args(["-d", &c.url(), "-X", "stream", "-c", "fast", "-D"])
                .arg(&incr)
                .arg("--incremental")
                .arg(full.join("backup_manifest")),
            None,
        )
        .assert_success();
        let combined = tmp.path().join("combined");
        run(
            as_postgres(c.bin("pg_combinebackup"))
                .arg(&full)
                .arg(&incr)
                .arg("-o")
                .arg(&combined),
            None,
        )
        .assert_success();
        run(as_postgres(c.bin("pg_verifybackup")).arg(&combined), None).assert_success();
        restore_from = combined;
    }
    let expected_rows = if major >= 17 { "1100" } else { "1000" };

    // A logical dump restored into another database.
    let dump = tmp.path().join("t.dump");
    run(
        as_postgres(c.bin("pg_dump"))
            .args(["-d", &c.url(), "-Fc", "-t", "t", "-f"])
            .arg(&dump),
        None,
    )
    .assert_success();
    c.psql("CREATE DATABASE copy");
    run(
        as_postgres(c.bin("pg_restore"))
            .args(["-d", &c.url_db("copy")])
            .arg(&dump),
        None,
    )
    .assert_success();
    assert_eq!(c.psql_db("copy", "SELECT count(*) FROM t"), expected_rows);

    let bench = c.pgbench(["-i", "-s", "1", "-q"]);
    assert!(bench.all_output().contains("done"), "{}", bench.describe());
    let bench = c.pgbench(["-c", "2", "-t", "50", "-n"]);
    assert!(
        bench
            .stdout_str()
            .contains("number of transactions actually processed: 100/100"),
        "{}",
        bench.describe()
    );

    // The restored data directory starts beside the original, on its own port
    // and socket although its postgresql.conf names the original's.
    let restored = Cluster::from_data_dir(version, &restore_from, free_port());
    restored.start();
    assert_eq!(restored.psql("SELECT count(*) FROM t"), expected_rows);
    assert!(c.is_running());
    restored.stop();
    assert!(!restored.is_running());

    c.stop_immediate();
    assert!(!c.is_running());
    c.start(); // crash recovery
    assert_eq!(c.psql("SELECT count(*) FROM t"), expected_rows);
    c.stop();
    assert!(!c.is_running());

    // The postgres user can run lifeline.
    let out = run(as_postgres(lifeline_bin()).arg("--version"), None);
    out.assert_success().assert_output_contains("lifeline");
}

#[test]
fn pg15_server_and_tools() {
    smoke(PgVersion::V15);
}

#[test]
fn pg18_server_and_tools() {
    smoke(PgVersion::V18);
}
