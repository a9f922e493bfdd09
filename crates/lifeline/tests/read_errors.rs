//! A source that fails to read in the middle of a file, as a failing disk does (issue 15): the file
//! is served by faultfs (`tests/common/faultfs.rs`), which returns EIO after its first bytes.
//!
//! - A files backup records the file as unreadable, stores every other file exactly, never a
//!   truncated copy of the failing one, and exits 3; `check --read-data` passes, and once the disk
//!   reads again the next backup is whole.
//! - A file-mode PostgreSQL backup whose tablespace file fails fails as a whole (a base backup with
//!   a file missing would restore to a broken cluster), naming the file and the error, and saves
//!   nothing; once the disk reads again a backup succeeds and restores every row.
//!
//! Mounting needs root and `/dev/fuse`, as CI has; needs `scripts/faultfs.sh install` and
//! `eval "$(scripts/faultfs.sh env)"`, and for PostgreSQL `scripts/postgres.sh install` and its env.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;

use common::faultfs::FaultFs;
use common::pg::{chown_to_postgres, PgVersion};
use common::pitr::*;
use common::*;

#[test]
fn a_source_file_failing_to_read_mid_file_is_recorded_the_rest_stored_and_the_backup_exits_3() {
    let repo = Repo::init();
    let disk = repo.sandbox.mkdir("disk");
    write_random_file(&disk.join("big.bin"), 1, 8 * MIB);
    write_random_file(&disk.join("sub/other.bin"), 2, 3 * MIB);
    write_file(&disk.join("notes.txt"), b"small and readable");
    let src = repo.sandbox.mkdir("src");
    let faults = FaultFs::mount(&disk, &src);
    faults.fail_after("big.bin", 3 * MIB as u64);

    let out = repo.run([
        std::ffi::OsStr::new("backup"),
        std::ffi::OsStr::new("--json"),
        src.as_os_str(),
    ]);
    out.assert_code(EXIT_PARTIAL);
    let errors = out.json()["errors"].as_array().unwrap().clone();
    assert_eq!(errors.len(), 1, "only the failing file: {errors:?}");
    assert_eq!(json_str(&errors[0], "path"), s(&src.join("big.bin")));
    assert!(
        json_str(&errors[0], "message").contains("Input/output error"),
        "{errors:?}"
    );
    assert!(errors[0].get("changed_while_read").is_none(), "{errors:?}");
    let snapshots = repo.snapshots();
    assert_eq!(snapshots.len(), 1);
    assert_eq!(snapshots[0]["errors"][0]["path"], errors[0]["path"]);

    // Every other file exactly; the failing one absent, never a truncated copy.
    let target = repo.restore("latest", "restored");
    let mut expected = file_contents(&disk);
    expected.remove(std::path::Path::new("big.bin"));
    assert_eq!(file_contents(&restored(&target, &src)), expected);
    // The chunks stored before the failure are unreferenced, not damage.
    repo.run(["check", "--read-data"]).assert_success();

    faults.heal();
    repo.backup(&[&src], &[]);
    let target = repo.restore("latest", "healed");
    assert_eq!(
        file_contents(&restored(&target, &src)),
        file_contents(&disk)
    );
}

#[test]
fn a_data_file_failing_to_read_mid_file_fails_the_file_mode_pg_backup_naming_it() {
    let env = Env::new(PgVersion::V15, "eio", &[]);
    let c = &env.cluster;
    let disk = env.path("disk");
    fs::create_dir_all(disk.join("space")).unwrap();
    chown_to_postgres(&disk);
    chown_to_postgres(&disk.join("space"));
    let mnt = env.path("mnt");
    fs::create_dir(&mnt).unwrap();
    let faults = FaultFs::mount(&disk, &mnt);
    c.psql(&format!(
        "CREATE TABLESPACE space LOCATION '{}'",
        s(&mnt.join("space"))
    ));
    c.psql("CREATE TABLE far (id int PRIMARY KEY, val text) TABLESPACE space");
    c.psql("INSERT INTO far SELECT g, repeat('x', 100) FROM generate_series(1, 40000) g");
    c.psql("CHECKPOINT");
    // pg_tblspc/OID/PG_15_.../DB/RELFILENODE; under the tablespace's location from the version directory on.
    let relation = c.psql("SELECT pg_relation_filepath('far')");
    let in_space: Vec<&str> = relation.split('/').skip(2).collect();
    let file = in_space.last().unwrap().to_string();
    faults.fail_after(&format!("space/{}", in_space.join("/")), 1 << 20);

    let out = env.run(&["pg", "backup", "--db", &c.url(), "--mode", "files"]);
    out.assert_code(EXIT_FATAL)
        .assert_output_contains(&format!("/{file}"))
        .assert_output_contains("Input/output error");
    // An I/O error is not a permission problem: no advice to change users.
    assert!(
        !out.all_output().contains("owner"),
        "misleading hint\n{}",
        out.describe()
    );
    env.run(&["pg", "status"])
        .assert_code(EXIT_FATAL)
        .assert_output_contains("holds no PostgreSQL base backup");

    faults.heal();
    env.backup(&c.url(), &["--mode", "files"]);
    let spaces = env.path("restored-spaces");
    let (server, _) = env.restore_started("restored", &["--tablespace-dir", s(&spaces)]);
    assert_eq!(server.psql("SELECT count(*) FROM far"), "40000");
    drop(server);
    // The server stops before its tablespace's file system goes.
    c.stop();
    drop(faults);
}
