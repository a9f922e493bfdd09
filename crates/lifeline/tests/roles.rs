//! Role separation (issue 13): a write-only `backup` credential stores and deduplicates but reads
//! nothing, not even what it wrote; an `audit` credential reads the trail and the records but no
//! data; a `restore` credential does everything but key management. On the real binary.
#![allow(clippy::unwrap_used)]

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use lifeline_repo::crypto::Secret;
use lifeline_repo::storage::LocalStorage;
use lifeline_repo::{Id, Repository};
use serde_json::Value;

const EXIT_NOT_PERMITTED: i32 = 13;

/// In a file the write-only credential backs up: no output of any refused command may show it.
const SECRET: &str = "the patient's diagnosis, which a backup host must never read back";

/// What envelope scheme 2 (sealed to the epoch's public key) says in a header's byte 8.
const SCHEME_SEALED_TO: u8 = 2;

/// A repository with a backed-up directory and one key file per role besides the admin password.
struct Roles {
    repo: Repo,
    src: PathBuf,
    backup_key: PathBuf,
    restore_key: PathBuf,
    audit_key: PathBuf,
    /// The admin's snapshot of `src`.
    first: String,
}

impl Roles {
    fn new() -> Roles {
        let repo = Repo::init();
        let src = repo.sandbox.mkdir("src");
        write_random_file(&src.join("big.bin"), 1, 3 * MIB);
        write_file(&src.join("notes.txt"), "kept by the administrator\n");
        let first = json_str(&repo.backup(&[&src], &[]), "snapshot_id").to_string();
        let key = |role_args: &[&str], name: &str| {
            let path = repo.join(name);
            let mut args = vec!["key", "add"];
            args.extend_from_slice(role_args);
            args.extend(["--new-key-file", path.to_str().unwrap()]);
            repo.run(&args).assert_success();
            path
        };
        let backup_key = key(&["--write-only"], "backup.key");
        let restore_key = key(&["--role", "restore"], "restore.key");
        let audit_key = key(&["--role", "audit"], "audit.key");
        Roles {
            repo,
            src,
            backup_key,
            restore_key,
            audit_key,
            first,
        }
    }

    /// `lifeline ARGS --key-file KEY`.
    fn with_key<I, S>(&self, key: &Path, args: I) -> Out
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.repo.cmd(args);
        cmd.arg("--key-file").arg(key);
        run(&mut cmd, None)
    }

    /// A backup of `src` with the write-only key file; its JSON summary.
    #[track_caller]
    fn write_only_backup(&self) -> Value {
        let out = self.with_key(
            &self.backup_key,
            [
                OsStr::new("backup"),
                "--json".as_ref(),
                self.src.as_os_str(),
            ],
        );
        out.assert_success();
        out.json()
    }

    /// The repository opened as the library opens it, with `key`.
    fn open(&self, key: &Path) -> Repository {
        let bytes = lifeline_plan::key_file::read(key).unwrap();
        Repository::open_with(
            Arc::new(LocalStorage::new(self.repo.path.to_str().unwrap())),
            Secret::KeyFile(&bytes),
        )
        .unwrap()
    }

    /// A plan whose one source, `docs`, backs up `src` with `key`; `class` adds to its class.
    fn plan(&self, key: &Path, class: &str) -> PathBuf {
        self.repo.sandbox.write(
            "plan.toml",
            format!(
                r#"[repository]
url = {:?}
key = {{ key_file = {:?} }}

[tiers]
tier3 = {{ rto = "4h", rpo = "1h" }}

[classes.documents]
tier = "tier3"
{class}

[[sources]]
name = "docs"
kind = "files"
class = "documents"
paths = [{:?}]
schedule = "0 2 * * *"
"#,
                self.repo.path.to_str().unwrap(),
                key.to_str().unwrap(),
                self.src.to_str().unwrap()
            ),
        )
    }

    fn snapshot_count(&self) -> usize {
        self.repo.snapshots().len()
    }
}

/// The envelope scheme of a stored object (format.md §5: byte 8 of the header).
fn scheme_of(path: &Path) -> u8 {
    std::fs::read(path).unwrap()[8]
}

/// Refused with exit 13, and the message names the credential's role and the role it needs.
#[track_caller]
fn assert_refused(out: &Out, role: &str, needs: &str) {
    out.assert_code(EXIT_NOT_PERMITTED);
    out.assert_output_contains(&format!("this credential's role is `{role}`"))
        .assert_output_contains(&format!("`{needs}`"));
}

#[test]
fn a_write_only_credential_backs_up_and_deduplicates_against_existing_data() {
    let r = Roles::new();
    let keys = r
        .repo
        .run(["key", "list", "--json"])
        .assert_success()
        .json();
    let roles: Vec<&str> = keys["slots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| json_str(k, "role"))
        .collect();
    assert_eq!(roles, ["admin", "backup", "restore", "audit"], "{keys:#}");
    let text = r.repo.run(["key", "list"]).assert_success().stdout_str();
    assert!(
        text.lines().next().unwrap().contains("role") && text.contains("backup"),
        "key list shows no role column:\n{text}"
    );

    write_file(&r.src.join("new.txt"), SECRET);
    let packs_before = r.repo.packs();
    let summary = r.write_only_backup();
    // No parent (it cannot open snapshots), so every file was read again; the 3 MiB file's chunks
    // were found in the index, so only the new file and the trees were stored.
    assert_eq!(summary["parent"], Value::Null, "{summary:#}");
    assert_eq!(json_u64(&summary, "files"), 3, "{summary:#}");
    let added = json_u64(&summary, "data_added");
    assert!(
        added < 64 * KIB as u64,
        "deduplication failed: {added} bytes added"
    );

    let id = json_str(&summary, "snapshot_id");
    let snapshot_file = r.repo.path.join("snapshots").join(id);
    assert_eq!(scheme_of(&snapshot_file), SCHEME_SEALED_TO);
    let new_packs: Vec<PathBuf> = r
        .repo
        .packs()
        .into_iter()
        .filter(|p| !packs_before.contains(p))
        .collect();
    assert!(!new_packs.is_empty());
    for p in &new_packs {
        assert_eq!(scheme_of(p), SCHEME_SEALED_TO, "{}", p.display());
    }

    // The administrator restores it byte for byte.
    let target = r.repo.restore(&id[..8], "restored");
    assert_trees_equal(&r.src, &restored(&target, &r.src), Compare::content_only());
    assert_eq!(r.snapshot_count(), 2);
}

#[test]
fn every_read_path_refuses_a_write_only_credential() {
    let r = Roles::new();
    write_file(&r.src.join("new.txt"), SECRET);
    let own = json_str(&r.write_only_backup(), "snapshot_id").to_string();
    let (first, own) = (&r.first[..8], &own[..8]);
    r.repo
        .run(["hold", "add", first, "--reason", "litigation"])
        .assert_success();
    let restore_target = r.repo.join("restore-target");
    let restore_target = restore_target.to_str().unwrap();
    let (copy, copy_password) = r.repo.init_copy("another password");
    let plan = r.plan(&r.backup_key, "");
    let plan = plan.to_str().unwrap();
    let new_file = r.src.join("new.txt");
    let month = chrono_month();
    let refused: Vec<Vec<&str>> = vec![
        vec!["snapshots"],
        vec!["ls", "latest"],
        vec!["ls", own],
        vec!["restore", own, "--target", restore_target],
        vec!["restore", first, "--target", restore_target],
        vec!["dump", own, new_file.to_str().unwrap()],
        vec!["diff", first, own],
        vec!["find", "new.txt"],
        vec!["check"],
        vec!["check", "--read-data"],
        vec!["check", "--read-data-subset", "50"],
        vec!["forget", own],
        vec!["forget", "--keep-last", "1"],
        vec!["prune"],
        vec!["repair", "index"],
        vec!["repair", "snapshots"],
        vec!["hold", "add", own, "--reason", "case 1"],
        vec!["hold", "list"],
        vec!["report", "--month", &month],
        vec!["audit", "verify"],
        vec!["audit", "log"],
        vec!["stats"],
        vec!["status"],
        vec!["pg", "status"],
        vec![
            "copy",
            "--to",
            copy.to_str().unwrap(),
            "--to-password-file",
            copy_password.to_str().unwrap(),
        ],
        vec!["--config", plan, "drill", "docs"],
        vec![
            "--config",
            plan,
            "recovery-plan",
            "--time",
            "2026-01-01T00:00:00Z",
        ],
        vec!["key", "add", "--new-password-file", "/dev/null"],
    ];
    for args in &refused {
        let out = r.with_key(&r.backup_key, args);
        let needs = if matches!(args[..], ["hold", "list"] | ["report", ..] | ["audit", ..]) {
            "audit"
        } else if args[0] == "key" {
            "admin"
        } else {
            "restore"
        };
        assert_refused(&out, "backup", needs);
        assert!(
            !out.all_output().contains(SECRET),
            "{args:?} leaked the content:\n{}",
            out.describe()
        );
    }
    assert!(
        !Path::new(restore_target).exists(),
        "a refused restore wrote"
    );
    // Nothing was forgotten, and the structure of the trail needs no credential at all.
    assert_eq!(r.snapshot_count(), 2);
    r.with_key(&r.backup_key, ["audit", "verify", "--without-key"])
        .assert_success();

    // The library refuses it too, whatever path is taken around the commands.
    let repo = r.open(&r.backup_key);
    let own_id = Id::from_hex(json_str(r.repo.snapshots().last().unwrap(), "id")).unwrap();
    for result in [
        repo.load_snapshot(&own_id).map(|_| ()),
        repo.load_snapshots().map(|_| ()),
        lifeline_repo::hold::Holds::load(&repo).map(|_| ()),
        lifeline_repo::audit::load(&repo).map(|_| ()),
    ] {
        let e = result.unwrap_err();
        assert_eq!(e.kind(), lifeline_repo::ErrorKind::NotPermitted, "{e}");
    }
    // It reads the index (that is how it deduplicates) but no blob the index names.
    let reader = repo.reader().unwrap();
    let admin = Repository::open(
        Arc::new(LocalStorage::new(r.repo.path.to_str().unwrap())),
        PASSWORD.as_bytes(),
    )
    .unwrap();
    let tree = admin.load_snapshot(&own_id).unwrap().tree;
    assert!(reader.index().contains_live(&tree));
    let e = reader.read_tree(&tree).unwrap_err();
    assert_eq!(e.kind(), lifeline_repo::ErrorKind::NotPermitted, "{e}");
    // Encrypted at rest: the content is in no stored object.
    for f in regular_files_under(&r.repo.path) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
            "{} holds the content in the clear",
            f.display()
        );
    }
}

#[test]
fn a_write_only_credential_cannot_open_its_own_snapshots() {
    let r = Roles::new();
    write_file(&r.src.join("new.txt"), SECRET);
    let own = json_str(&r.write_only_backup(), "snapshot_id").to_string();
    let target = r.repo.join("own");
    let out = r.with_key(
        &r.backup_key,
        [
            OsStr::new("restore"),
            OsStr::new(&own[..8]),
            OsStr::new("--target"),
            target.as_os_str(),
        ],
    );
    assert_refused(&out, "backup", "restore");
    assert!(!target.exists());
    let out = r.with_key(
        &r.backup_key,
        [
            OsStr::new("dump"),
            OsStr::new(&own[..8]),
            r.src.join("new.txt").as_os_str(),
        ],
    );
    assert_refused(&out, "backup", "restore");
    assert!(!out.all_output().contains(SECRET));
    // The restore credential can.
    let out = r.with_key(
        &r.restore_key,
        [
            OsStr::new("dump"),
            OsStr::new(&own[..8]),
            r.src.join("new.txt").as_os_str(),
        ],
    );
    out.assert_success();
    assert_eq!(out.stdout_str(), SECRET);
}

#[test]
fn the_auditor_verifies_the_whole_trail_and_reads_no_data() {
    let r = Roles::new();
    let own = json_str(&r.write_only_backup(), "snapshot_id").to_string();
    // A refusal is evidence too: it is in the trail, sealed by the backup host.
    let target = r.repo.join("never");
    assert_refused(
        &r.with_key(
            &r.backup_key,
            [
                OsStr::new("restore"),
                OsStr::new(&own[..8]),
                OsStr::new("--target"),
                target.as_os_str(),
            ],
        ),
        "backup",
        "restore",
    );
    r.with_key(&r.restore_key, ["check"]).assert_success();

    // The write-only credential sealed its records to the audit public key (scheme 2).
    let records = regular_files_under(&r.repo.path.join("audit"));
    let sealed_to: Vec<&PathBuf> = records
        .iter()
        .filter(|f| body_scheme(f) == SCHEME_SEALED_TO)
        .collect();
    assert_eq!(
        sealed_to.len(),
        2,
        "backup and refused restore: {records:?}"
    );

    let out = r.with_key(&r.audit_key, ["--json", "audit", "verify"]);
    out.assert_success();
    let verified = out.json();
    assert_eq!(verified["authenticated"], true, "{verified:#}");
    assert_eq!(json_u64(&verified, "records"), records.len() as u64);
    assert_eq!(verified["problems"], Value::Array(vec![]), "{verified:#}");

    let log = r
        .with_key(&r.audit_key, ["--json", "audit", "log"])
        .assert_success()
        .json();
    let events: Vec<&Value> = log.as_array().unwrap().iter().collect();
    let touched_own = |e: &&Value| {
        e["touched"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["id"] == own.as_str()))
    };
    assert!(
        events
            .iter()
            .any(|e| touched_own(e) && e["action"] == "backup"),
        "the auditor does not see the write-only backup: {log:#}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["action"] == "restore" && e["details"]["refused"] == "backup"),
        "the refused restore is not marked refused: {log:#}"
    );
    for action in ["key add", "check"] {
        assert!(
            events.iter().any(|e| e["action"] == action),
            "no {action} record: {log:#}"
        );
    }

    // The monthly report is made from the trail and the records alone.
    let month = chrono_month();
    let report = r
        .with_key(
            &r.audit_key,
            ["report", "--month", month.as_str(), "--format", "json"],
        )
        .assert_success()
        .json();
    assert_eq!(report["backups"]["attempts"], 2, "{:#}", report["backups"]);
    assert_eq!(report["backups"]["ok"], 2, "{:#}", report["backups"]);
    let notes = report["summary"]["notes"].to_string();
    assert!(notes.contains("refused"), "{notes}");
    r.with_key(&r.audit_key, ["hold", "list"]).assert_success();

    for args in [
        vec!["snapshots"],
        vec!["ls", &own[..8]],
        vec!["restore", &own[..8], "--target", "/nonexistent/x"],
        vec!["check"],
        vec!["backup", r.src.to_str().unwrap()],
    ] {
        let needs = if args[0] == "backup" {
            "backup"
        } else {
            "restore"
        };
        assert_refused(&r.with_key(&r.audit_key, &args), "audit", needs);
    }
}

#[test]
fn the_restorer_restores_and_manages_no_keys() {
    let r = Roles::new();
    let target = r.repo.join("restored");
    r.with_key(
        &r.restore_key,
        [
            OsStr::new("restore"),
            OsStr::new(&r.first[..8]),
            OsStr::new("--target"),
            target.as_os_str(),
        ],
    )
    .assert_success();
    assert_trees_equal(&r.src, &restored(&target, &r.src), Compare::content_only());
    r.with_key(&r.restore_key, ["check", "--read-data"])
        .assert_success();

    let keys_before = r.repo.key_files();
    let new_key = r.repo.join("new.key");
    let out = r.with_key(
        &r.restore_key,
        [
            OsStr::new("key"),
            OsStr::new("add"),
            OsStr::new("--new-key-file"),
            new_key.as_os_str(),
        ],
    );
    assert_refused(&out, "restore", "admin");
    assert!(!new_key.exists(), "a refused key add left a key file");
    let admin_slot = &r
        .repo
        .run(["key", "list", "--json"])
        .assert_success()
        .json()["slots"][0]["id"];
    assert_refused(
        &r.with_key(
            &r.restore_key,
            ["key", "remove", admin_slot.as_str().unwrap()],
        ),
        "restore",
        "admin",
    );
    assert_eq!(r.repo.key_files(), keys_before);

    // Its own slot it may re-key: the new password opens the same role.
    let password = r.repo.sandbox.write("restore-password", "restorer's own");
    r.with_key(
        &r.restore_key,
        [
            OsStr::new("key"),
            OsStr::new("passwd"),
            OsStr::new("--new-password-file"),
            password.as_os_str(),
        ],
    )
    .assert_success();
    let keys = r
        .repo
        .run_with_password_file(&password, ["key", "list", "--json"])
        .assert_success()
        .json();
    let current: Vec<&Value> = keys["slots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["current"] == true)
        .collect();
    assert_eq!(current.len(), 1, "{keys:#}");
    assert_eq!(current[0]["role"], "restore", "{keys:#}");
    r.with_key(&r.restore_key, ["snapshots"])
        .assert_code(EXIT_WRONG_PASSWORD);
}

/// `lifeline run` of a plan source whose key is write-only: the backup is stored, what it cannot do
/// (read back, retention) is skipped, not failed.
#[test]
fn a_plan_job_runs_with_a_write_only_key() {
    let r = Roles::new();
    let plan = r.plan(&r.backup_key, "retention = { last = 1 }");
    let metrics = r.repo.join("lifeline.prom");
    for _ in 0..2 {
        let mut cmd = r.repo.sandbox.lifeline();
        cmd.arg("--config")
            .arg(&plan)
            .args(["run", "docs", "--json", "--metrics-file"])
            .arg(&metrics);
        let report = run(&mut cmd, None).assert_success().json();
        assert_eq!(report["outcome"], "success", "{report:#}");
        assert_eq!(report["verified"], Value::Null, "{report:#}");
        assert_eq!(report["forgotten"], 0, "{report:#}");
    }
    // Retention was not applied by the backup host: the admin's snapshot and both runs remain.
    assert_eq!(r.snapshot_count(), 3);
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert!(
        text.contains("lifeline_runs_total{source=\"docs\""),
        "{text}"
    );
}

/// `pg wal-push` with a write-only key stores WAL it cannot read back; pushing the same segment
/// again (archive_command retried after an upload whose success was lost) succeeds without
/// rewriting; a restore credential fetches it byte for byte.
#[test]
fn wal_pushed_with_a_write_only_key_is_fetched_by_a_restore_credential() {
    let r = Roles::new();
    let pgdata = r.repo.sandbox.mkdir("pgdata");
    let system_id: u64 = 7_123_456_789_012_345_678;
    let mut control = system_id.to_ne_bytes().to_vec();
    control.resize(8192, 0);
    write_file(&pgdata.join("global/pg_control"), control);
    let segment = "000000010000000000000003";
    write_random_file(&pgdata.join("pg_wal").join(segment), 3, 16 * MIB);
    let push = |key: &Path| {
        r.with_key(
            key,
            [
                "pg",
                "wal-push",
                "--pgdata",
                pgdata.to_str().unwrap(),
                &format!("pg_wal/{segment}"),
            ],
        )
    };
    push(&r.backup_key).assert_success();
    let object = r
        .repo
        .path
        .join(format!("wal/{system_id}/00000001/{segment}"));
    assert_eq!(scheme_of(&object), SCHEME_SEALED_TO);
    let stored = std::fs::read(&object).unwrap();
    push(&r.backup_key)
        .assert_success()
        .assert_output_contains("cannot compare");
    assert_eq!(std::fs::read(&object).unwrap(), stored, "rewritten");

    let fetch = |key: &Path, dest: &str| {
        r.with_key(
            key,
            [
                "pg",
                "wal-fetch",
                "--pgdata",
                pgdata.to_str().unwrap(),
                segment,
                dest,
            ],
        )
    };
    // Refused as PostgreSQL must read it: stop recovery (126), never "not archived" (1).
    let out = fetch(&r.backup_key, "fetched-by-backup");
    out.assert_code(126);
    out.assert_output_contains("role is `backup`");
    assert!(!pgdata.join("fetched-by-backup").exists());
    fetch(&r.restore_key, "fetched").assert_success();
    compare_files(
        &pgdata.join("pg_wal").join(segment),
        &pgdata.join("fetched"),
    )
    .unwrap();
}

/// The month of the records just written, as `report --month` takes it.
fn chrono_month() -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "+%Y-%m"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The scheme of an audit record's sealed body: the envelope (CBOR) holds it as bytes, and the
/// body starts with the 48-byte header.
fn body_scheme(record: &Path) -> u8 {
    let bytes = std::fs::read(record).unwrap();
    let magic = b"LLREPO\0\x01";
    let at = bytes
        .windows(magic.len())
        .position(|w| w == magic)
        .unwrap_or_else(|| panic!("{} holds no sealed body", record.display()));
    bytes[at + 8]
}

/// A PostgreSQL server whose archive_command and base backups use a write-only key: the WAL and
/// the full backup it stores are sealed to the restore key, an incremental backup (which reads the
/// previous manifest) is refused, and the administrator recovers every committed row from them.
#[test]
fn postgres_archives_and_backs_up_with_a_write_only_key_pg15() {
    use common::pg::{lifeline_bin, PgVersion};
    use common::pitr::{self, commit_row, expected_rows, quote, rows, switch_wal, Env, TABLE_SQL};

    let env = Env::new(PgVersion::V15, "roles", &[]);
    let c = &env.cluster;
    let key = env.path("backup.key");
    env.run(&[
        "key",
        "add",
        "--write-only",
        "--new-key-file",
        pitr::s(&key),
    ])
    .assert_success();
    let cfg = env.path("backup.toml");
    std::fs::write(
        &cfg,
        format!(
            "[repository]\nurl = {:?}\nkey = {{ key_file = {:?} }}\n\n[postgres]\nbin_dir = {:?}\n",
            pitr::s(&env.repo),
            pitr::s(&key),
            pitr::s(&env.version.bin_dir())
        ),
    )
    .unwrap();
    let archive_command = format!(
        "{} --config {} pg wal-push %p",
        quote(pitr::s(&lifeline_bin())),
        quote(pitr::s(&cfg))
    );
    c.psql(&format!(
        "ALTER SYSTEM SET archive_command = '{}'",
        archive_command.replace('\'', "''")
    ));
    c.psql("SELECT pg_reload_conf()");
    c.psql(TABLE_SQL);
    let as_backup = |args: &[&str]| {
        let mut all = vec!["--config", pitr::s(&cfg)];
        all.extend_from_slice(args);
        pitr::lifeline(&all)
    };
    let url = c.url();
    let backup = as_backup(&["--json", "pg", "backup", "--db", &url]);
    backup.assert_success();
    let backup = backup.json();
    assert_eq!(backup["backup_type"], "full", "{backup:#}");
    let snapshot = env
        .repo
        .join("snapshots")
        .join(json_str(&backup, "snapshot_id"));
    assert_eq!(scheme_of(&snapshot), SCHEME_SEALED_TO);
    let out = as_backup(&["pg", "backup", "--db", &url, "--incremental"]);
    assert_refused(&out, "backup", "restore");
    out.assert_output_contains("incremental base backup");

    for id in 1..=3 {
        commit_row(c, id);
    }
    let segment = switch_wal(c);
    assert_eq!(pitr::archiver_failures(c), 0);
    assert_eq!(scheme_of(&env.wal_object(&segment)), SCHEME_SEALED_TO);
    assert_refused(&as_backup(&["pg", "status"]), "backup", "restore");

    let (server, report) = env.restore_started("restored", &[]);
    assert_eq!(rows(&server), expected_rows(1..=3), "{report:#}");
    assert_eq!(report["backup"], backup["snapshot_id"], "{report:#}");
}
