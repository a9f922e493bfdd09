//! `pg receive-wal` against real PostgreSQL 15 and 18 servers whose archive_command stores nothing,
//! so the receiver is the only way WAL reaches the repository: it creates its slot, stores finished
//! segments under `pg wal-push`'s keys (removing them from its directory and the parts stored of
//! them), stores the segment in progress every few seconds, and on SIGTERM stores the last part and
//! exits 0; a restore then recovers a row committed seconds before, with no segment switch after
//! it. A missing slot, a role without REPLICATION, a directory of another cluster's WAL and a
//! pg_receivewal that dies are each refused or reported by name.
//!
//! Every lifeline command and every server runs as the `postgres` OS user. Needs
//! `scripts/postgres.sh install` and `eval "$(scripts/postgres.sh env)"`; without them these tests
//! fail, they never skip.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::pg::{chown_to_postgres, PgVersion};
use common::pitr::*;
use common::{json_str, Out, EXIT_OK};

const SEGMENT: u64 = 16 << 20;
/// `--partial-every` in these tests: short, so they wait little.
const PARTIAL_EVERY: u64 = 2;

/// A cluster whose archive_command stores nothing (pg backup wants archiving on, and PostgreSQL
/// waits for it when a backup ends): WAL reaches the repository only through the receiver.
fn env(version: PgVersion, name: &str) -> Env {
    Env::new(version, name, &[("archive_command", "/bin/true")])
}

/// `lifeline --config CFG pg receive-wal ARGS` running in the background, as postgres.
struct Receiver {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Receiver {
    fn start(env: &Env, args: &[&str]) -> Receiver {
        let stdout = env.path("receiver.out");
        let stderr = env.path("receiver.err");
        let mut cmd = lifeline_command();
        cmd.args(["--config", s(&env.cfg), "pg", "receive-wal"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout).unwrap())
            .stderr(fs::File::create(&stderr).unwrap());
        Receiver {
            child: cmd.spawn().unwrap(),
            stdout,
            stderr,
        }
    }

    fn output(&self) -> String {
        format!(
            "--- receiver stdout ---\n{}\n--- receiver stderr ---\n{}",
            fs::read_to_string(&self.stdout).unwrap_or_default(),
            fs::read_to_string(&self.stderr).unwrap_or_default()
        )
    }

    /// Waits (at most `limit`) for it to exit; its exit code and output.
    fn wait(&mut self, limit: Duration) -> (Option<i32>, String) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code(), self.output());
            }
            assert!(
                Instant::now() < deadline,
                "the receiver did not exit within {limit:?}\n{}",
                self.output()
            );
            sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM, as a service manager stops it.
    fn terminate(&mut self) -> (Option<i32>, String) {
        let pid = self.child.id().to_string();
        let out = common::run(Command::new("kill").args(["-TERM", &pid]), None);
        out.assert_success();
        self.wait(Duration::from_secs(60))
    }

    #[track_caller]
    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("the receiver exited ({status})\n{}", self.output());
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let _ = self.child.wait();
        }
    }
}

/// Polls `done` every 100 ms for at most `limit`.
#[track_caller]
fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        sleep(Duration::from_millis(100));
    }
}

fn lsn(text: &str) -> u64 {
    let (hi, lo) = text.split_once('/').unwrap();
    (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap()
}

/// The WAL bytes of each part of `segment` in the repository (`<segment>.partial.<16 hex>`).
fn parts(env: &Env, segment: &str) -> Vec<u64> {
    let prefix = format!("{segment}.partial.");
    let mut parts: Vec<u64> = timeline_objects(env, &segment[..8])
        .iter()
        .filter_map(|name| name.strip_prefix(&prefix))
        .map(|hex| {
            assert_eq!(hex.len(), 16, "a part's name ends in 16 hex digits: {hex}");
            u64::from_str_radix(hex, 16).unwrap()
        })
        .collect();
    parts.sort_unstable();
    parts
}

fn dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Commits row `id`; waits until a part of its segment that holds the commit is stored, without
/// any segment switch. Returns the segment.
#[track_caller]
fn commit_and_wait_for_part(env: &Env, receiver: &mut Receiver, id: u32) -> String {
    let c = &env.cluster;
    let commit = commit_row(c, id);
    let segment = c.psql(&format!("SELECT pg_walfile_name('{}')", commit.lsn));
    // pg_current_wal_lsn() after the commit is the end of its record, aligned to 8 bytes; the
    // record's own last bytes may be zeros (a part ends at the last byte that is not).
    let end = lsn(&commit.lsn) % SEGMENT;
    wait_until(
        Duration::from_secs(PARTIAL_EVERY + 8),
        &format!("a part of {segment} holding row {id} (WAL to offset {end:#x})"),
        || {
            receiver.assert_running();
            parts(env, &segment).last().is_some_and(|&b| b + 32 >= end)
        },
    );
    segment
}

fn receive_store_and_recover_to_the_last_seconds(version: PgVersion) {
    let env = env(version, "receive");
    let c = &env.cluster;
    c.psql(TABLE_SQL);
    let dir = env.path("received");
    let every = PARTIAL_EVERY.to_string();
    let mut receiver = Receiver::start(
        &env,
        &[
            "--db",
            &c.url(),
            "--slot",
            "lifeline",
            "--create-slot",
            "--dir",
            s(&dir),
            "--partial-every",
            &every,
        ],
    );
    wait_until(
        Duration::from_secs(30),
        "the receiver streaming on slot lifeline",
        || {
            receiver.assert_running();
            c.psql(
                "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'lifeline' AND active",
            ) == "1"
        },
    );
    assert_eq!(
        c.psql("SELECT slot_type FROM pg_replication_slots WHERE slot_name = 'lifeline'"),
        "physical"
    );

    let backup = env.backup(&c.url(), &["--mode", "stream"]);

    // (b) A part of the segment in progress is stored; once the segment is finished it is stored
    // under pg wal-push's key, its parts are deleted and it leaves the directory.
    let first = commit_and_wait_for_part(&env, &mut receiver, 1);
    let switched = c.psql("SELECT pg_walfile_name(pg_switch_wal())");
    assert_eq!(switched, first);
    wait_until(
        Duration::from_secs(30),
        &format!("{first} archived whole"),
        || {
            receiver.assert_running();
            env.wal_object(&first).exists()
        },
    );
    wait_until(
        Duration::from_secs(5),
        &format!("the parts of {first} deleted"),
        || parts(&env, &first).is_empty(),
    );
    let left = dir_names(&dir);
    assert!(
        left.iter()
            .all(|n| n.ends_with(".partial") && n.as_str() > first.as_str()),
        "finished segments stay in {}: {left:?}",
        dir.display()
    );
    let status = env.status();
    assert_eq!(status["backups"][0]["id"], backup["snapshot_id"]);
    assert_eq!(status["backups"][0]["restorable"], true, "{status:#}");

    // (a) A row committed after the last switch is in the archive within seconds.
    let second = commit_and_wait_for_part(&env, &mut receiver, 2);
    assert!(second > first);
    assert!(
        !env.wal_object(&second).exists(),
        "{second} is not finished"
    );
    let status = env.status();
    let newest = json_str(&status, "newest_wal");
    assert!(
        newest.starts_with(&format!("{second}.partial.")),
        "pg status counts the part stored seconds ago: {status:#}"
    );
    let age = status["newest_wal_age_seconds"].as_i64().unwrap();
    assert!(age <= 10, "the newest WAL is {age} s old: {status:#}");

    let (code, output) = receiver.terminate();
    assert_eq!(code, Some(EXIT_OK), "SIGTERM stops it cleanly\n{output}");
    assert!(output.contains("stopped:"), "{output}");
    assert!(
        output.contains(&format!(
            "archived wal/{}/00000001/{first}\n",
            env.system_id()
        )),
        "each finished segment is named as it is stored\n{output}"
    );
    assert_eq!(
        c.psql("SELECT active FROM pg_replication_slots WHERE slot_name = 'lifeline'"),
        "f",
        "the slot stays, inactive"
    );
    assert!(
        parts(&env, &second).len() == 1,
        "one part of {second} is kept, the largest: {:?}",
        parts(&env, &second)
    );

    // Recovery to the end of the archive replays the part: row 2, committed without a switch.
    let (server, report) = env.restore_started("to-the-end", &[]);
    assert_eq!(report["backup"], backup["snapshot_id"], "{report:#}");
    assert!(
        json_str(&report, "last_archived_segment").starts_with(&format!("{second}.partial.")),
        "{report:#}"
    );
    assert_eq!(rows(&server), expected_rows(1..=2));
    drop(server);

    // The parts are WAL objects like the others to check, and to copy: a second repository
    // recovers as far.
    env.run(&["check", "--read-data"]).assert_success();
    let copy_repo = env.path("copy");
    let password = env.path("password");
    let (r, p) = (s(&copy_repo), s(&password));
    env.run(&["--repo", r, "--password-file", p, "init"])
        .assert_success();
    env.run(&["copy", "--to", r, "--to-password-file", p])
        .assert_success();
    let part = format!("{second}.partial.{:016X}", parts(&env, &second)[0]);
    let copied = copy_repo
        .join("wal")
        .join(env.system_id())
        .join(&second[..8]);
    assert!(
        copied.join(&part).exists() && copied.join(&first).exists(),
        "copy carries {first} and {part}: {:?}",
        dir_names(&copied)
    );
}

#[test]
fn receive_store_and_recover_to_the_last_seconds_pg15() {
    receive_store_and_recover_to_the_last_seconds(PgVersion::V15);
}

#[test]
fn receive_store_and_recover_to_the_last_seconds_pg18() {
    receive_store_and_recover_to_the_last_seconds(PgVersion::V18);
}

fn run_receiver(env: &Env, args: &[&str]) -> Out {
    let mut all = vec!["pg", "receive-wal"];
    all.extend_from_slice(args);
    env.run(&all)
}

fn bad_input_is_refused_by_name(version: PgVersion) {
    let env = env(version, "refused");
    let c = &env.cluster;
    let url = c.url();
    let dir = env.path("received");
    let d = s(&dir);

    // (c) No slot, no --create-slot.
    run_receiver(&env, &["--db", &url, "--slot", "missing", "--dir", d])
        .assert_failure()
        .assert_output_contains("replication slot \"missing\" does not exist")
        .assert_output_contains("--create-slot");
    assert_eq!(
        c.psql("SELECT count(*) FROM pg_replication_slots"),
        "0",
        "nothing was created"
    );

    // A role that may not stream.
    c.psql("CREATE ROLE app LOGIN");
    let app = format!("postgresql://app@127.0.0.1:{}/postgres", c.port);
    run_receiver(
        &env,
        &["--db", &app, "--slot", "s", "--create-slot", "--dir", d],
    )
    .assert_failure()
    .assert_output_contains("role \"app\" may not stream WAL")
    .assert_output_contains("REPLICATION");

    // A directory holding another cluster's WAL.
    let other = env.path("other");
    fs::create_dir(&other).unwrap();
    let mut page = vec![0u8; 8192];
    page[..2].copy_from_slice(&0xD118u16.to_ne_bytes());
    page[2..4].copy_from_slice(&2u16.to_ne_bytes());
    page[24..32].copy_from_slice(&12345u64.to_ne_bytes());
    page[32..36].copy_from_slice(&(16u32 << 20).to_ne_bytes());
    let foreign = other.join("000000010000000000000007.partial");
    fs::write(&foreign, &page).unwrap();
    chown_to_postgres(&other);
    chown_to_postgres(&foreign);
    run_receiver(
        &env,
        &[
            "--db",
            &url,
            "--slot",
            "s",
            "--create-slot",
            "--dir",
            s(&other),
        ],
    )
    .assert_failure()
    .assert_output_contains("holds WAL of cluster 12345")
    .assert_output_contains(&env.system_id())
    .assert_output_contains("its own --dir");
    assert_eq!(c.psql("SELECT count(*) FROM pg_replication_slots"), "0");

    // pg_receivewal dies (its connection is cut): the receiver fails, naming it and its words.
    let mut receiver = Receiver::start(
        &env,
        &["--db", &url, "--slot", "cut", "--create-slot", "--dir", d],
    );
    wait_until(Duration::from_secs(30), "the receiver streaming", || {
        receiver.assert_running();
        c.psql("SELECT count(*) FROM pg_stat_replication") == "1"
    });
    c.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_replication");
    let (code, output) = receiver.wait(Duration::from_secs(30));
    assert_ne!(code, Some(EXIT_OK), "{output}");
    assert!(output.contains("pg_receivewal failed"), "{output}");
}

#[test]
fn bad_input_is_refused_by_name_pg15() {
    bad_input_is_refused_by_name(PgVersion::V15);
}

#[test]
fn bad_input_is_refused_by_name_pg18() {
    bad_input_is_refused_by_name(PgVersion::V18);
}
