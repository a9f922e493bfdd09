//! The point-in-time recovery harness shared by the PostgreSQL suites: a cluster that archives into
//! a repository through `lifeline pg wal-push`, rows committed one by one with the time, LSN and
//! transaction of each, WAL switched and waited for until archived, and restores started and read.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use super::pg::{as_postgres, lifeline_bin, shared_dir, Cluster, PgVersion};
use super::{json_u64, run, Out, EXIT_FATAL, EXIT_OK, PASSWORD};

/// `pg wal-fetch`'s exit code for a WAL object it cannot supply intact: PostgreSQL stops recovery.
pub const EXIT_RECOVERY_MUST_STOP: i32 = 126;

/// How long a segment may take to reach the archive after `pg_switch_wal()`.
pub const ARCHIVE_WAIT: Duration = Duration::from_secs(180);

/// The server's clock, in UTC, as `--target-time` takes it.
pub const NOW_SQL: &str = "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', \
                       'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')";

pub fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

pub fn s(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// `pg_verifybackup --no-parse-wal DIR` as the postgres user (a restored directory has no WAL).
#[track_caller]
pub fn verifybackup(version: PgVersion, dir: &Path) -> Out {
    run(
        as_postgres(version.bin("pg_verifybackup"))
            .arg("--no-parse-wal")
            .arg(dir),
        None,
    )
}

/// `lifeline ARGS` as the postgres user, with nothing from the test's environment choosing the
/// repository, key or servers.
pub fn lifeline(args: &[&str]) -> Out {
    let mut cmd = lifeline_command();
    cmd.args(args);
    run(&mut cmd, None)
}

/// The command [`lifeline`] runs, with no arguments yet: for a test that runs it in the background.
pub fn lifeline_command() -> Command {
    let mut cmd = as_postgres(lifeline_bin());
    for var in [
        "LIFELINE_REPO",
        "LIFELINE_PASSWORD_FILE",
        "LIFELINE_PASSWORD_COMMAND",
        "LIFELINE_KEY_FILE",
        "LIFELINE_KMS_COMMAND",
        "LIFELINE_CONFIG",
        "LIFELINE_PG_BIN",
        "LIFELINE_PG_DB",
        "LIFELINE_LOG",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("NO_COLOR", "1");
    cmd
}

/// A cluster that archives its WAL into a repository with `lifeline pg wal-push`, and the config
/// file every lifeline command (and the restored servers' restore_command) reads.
pub struct Env {
    pub version: PgVersion,
    // Fields drop in order: the server stops before its directory goes.
    pub cluster: Cluster,
    pub repo: PathBuf,
    pub cfg: PathBuf,
    pub tmp: TempDir,
}

impl Env {
    #[track_caller]
    pub fn new(version: PgVersion, name: &str, conf: &[(&str, &str)]) -> Env {
        let tmp = shared_dir(&format!("lifeline-pg{}-pitr-{name}-", version.major()));
        let repo = tmp.path().join("repo");
        let password = tmp.path().join("password");
        fs::write(&password, PASSWORD).unwrap();
        let key = tmp.path().join("archive.key");
        let (r, p) = (s(&repo), s(&password));
        lifeline(&["--repo", r, "--password-file", p, "init"]).assert_success();
        lifeline(&[
            "--repo",
            r,
            "--password-file",
            p,
            "key",
            "add",
            "--new-key-file",
            s(&key),
        ])
        .assert_success();
        let cfg = tmp.path().join("lifeline.toml");
        fs::write(
            &cfg,
            format!(
                "[repository]\nurl = {r:?}\nkey = {{ key_file = {:?} }}\n\n[postgres]\nbin_dir = {:?}\n",
                s(&key),
                s(&version.bin_dir())
            ),
        )
        .unwrap();
        let archive_command = format!(
            "{} --config {} pg wal-push %p",
            quote(s(&lifeline_bin())),
            quote(s(&cfg))
        );
        let mut settings = vec![
            ("archive_mode", "on"),
            ("archive_command", archive_command.as_str()),
        ];
        settings.extend_from_slice(conf);
        let cluster = Cluster::init(version, tmp.path(), &settings);
        cluster.start();
        Env {
            version,
            cluster,
            repo,
            cfg,
            tmp,
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    /// `lifeline --config CFG ARGS`
    pub fn run(&self, args: &[&str]) -> Out {
        let mut all = vec!["--config", s(&self.cfg)];
        all.extend_from_slice(args);
        lifeline(&all)
    }

    /// `pg backup --json` of the server at `url`; its summary.
    #[track_caller]
    pub fn backup(&self, url: &str, extra: &[&str]) -> Value {
        let mut args = vec!["--json", "pg", "backup", "--db", url];
        args.extend_from_slice(extra);
        let out = self.run(&args);
        out.assert_success();
        out.json()
    }

    #[track_caller]
    pub fn status(&self) -> Value {
        let out = self.run(&["--json", "pg", "status"]);
        out.assert_success();
        out.json()
    }

    /// `pg restore --json --pgdata DIR ARGS` (DIR = `name` in the shared directory).
    pub fn restore(&self, name: &str, args: &[&str]) -> (Out, PathBuf) {
        let dir = self.path(name);
        let mut all = vec!["--json", "pg", "restore", "--pgdata", s(&dir)];
        all.extend_from_slice(args);
        (self.run(&all), dir)
    }

    /// `pg restore --start`: the recovered server (stopped when dropped) and the report.
    #[track_caller]
    pub fn restore_started(&self, name: &str, args: &[&str]) -> (Cluster, Value) {
        self.try_restore_started(name, args)
            .unwrap_or_else(|failure| panic!("{failure}"))
    }

    /// `restore_started`, with a failure described instead of panicking.
    pub fn try_restore_started(
        &self,
        name: &str,
        args: &[&str],
    ) -> Result<(Cluster, Value), String> {
        let dir = self.path(name);
        // Wrapped before the restore, so a server left running by a failure is stopped too.
        let mut server = Cluster::from_data_dir(self.version, &dir, 0);
        let mut all = vec!["--start"];
        all.extend_from_slice(args);
        let (out, _) = self.restore(name, &all);
        if out.code() != Some(EXIT_OK) {
            let log =
                fs::read_to_string(format!("{}.recovery.log", dir.display())).unwrap_or_default();
            return Err(format!(
                "pg restore {args:?} failed\n{}\n--- tail of the recovery log ---\n{}",
                out.describe(),
                tail(&log, 30)
            ));
        }
        let report = out.json();
        server.port = u16::try_from(json_u64(&report["recovery"], "port")).unwrap();
        Ok((server, report))
    }

    pub fn system_id(&self) -> String {
        self.cluster
            .psql("SELECT system_identifier FROM pg_control_system()")
    }

    /// The repository file holding WAL file `name` (timeline from its name).
    pub fn wal_object(&self, name: &str) -> PathBuf {
        self.repo
            .join("wal")
            .join(self.system_id())
            .join(&name[..8])
            .join(name)
    }
}

// ---------------------------------------------------------------------------
// Rows committed one by one, and the WAL that carries them to the archive
// ---------------------------------------------------------------------------

/// Server settings under which segments stay in `pg_wal` (no checkpoint recycles them), so a test
/// can compare the archive with them.
pub const KEEP_WAL: &[(&str, &str)] = &[("checkpoint_timeout", "1h"), ("max_wal_size", "1GB")];

pub const TABLE_SQL: &str = "CREATE TABLE pitr (id int PRIMARY KEY, val text NOT NULL)";

pub fn row_value(id: u32) -> String {
    format!("row {id}: {}", u64::from(id) * 7919 % 1000)
}

/// The rows as `SELECT id, val FROM pitr ORDER BY id` prints them.
pub fn expected_rows(ids: impl IntoIterator<Item = u32>) -> String {
    ids.into_iter()
        .map(|i| format!("{i}|{}", row_value(i)))
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn rows(c: &Cluster) -> String {
    c.psql("SELECT id, val FROM pitr ORDER BY id")
}

pub struct Commit {
    pub id: u32,
    pub xid: String,
    /// `pg_current_wal_lsn()` right after the commit.
    pub lsn: String,
    /// The server's clock after this commit and before the next one.
    pub after: String,
}

/// Inserts row `id` in a transaction of its own; commits are at least 0.3 s apart.
pub fn commit_row(c: &Cluster, id: u32) -> Commit {
    let xid = c.psql(&format!(
        "BEGIN; INSERT INTO pitr VALUES ({id}, '{}'); SELECT txid_current(); COMMIT;",
        row_value(id)
    ));
    assert!(xid.parse::<u64>().is_ok(), "txid_current() gave {xid:?}");
    let lsn = c.psql("SELECT pg_current_wal_lsn()");
    sleep(Duration::from_millis(150));
    let after = c.psql(NOW_SQL);
    sleep(Duration::from_millis(150));
    Commit {
        id,
        xid,
        lsn,
        after,
    }
}

/// Ends the current WAL segment (a separate statement: a switch inside the transaction of a commit
/// would come before the commit) and waits until it is archived. Returns its name.
#[track_caller]
pub fn switch_wal(c: &Cluster) -> String {
    let segment = c.psql("SELECT pg_walfile_name(pg_switch_wal())");
    wait_archived(c, &segment);
    segment
}

#[track_caller]
pub fn wait_archived(c: &Cluster, segment: &str) {
    let deadline = Instant::now() + ARCHIVE_WAIT;
    loop {
        let row = c.psql(
            "SELECT coalesce(last_archived_wal, ''), failed_count, coalesce(last_failed_wal, '')
               FROM pg_stat_archiver",
        );
        let last = row.split('|').next().unwrap_or_default();
        // Segments are archived in order; a .partial or .history name is not the segment.
        if !last.contains('.') && last >= segment {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{segment} not archived after {ARCHIVE_WAIT:?}: pg_stat_archiver says {row}\n--- tail of the server log ---\n{}",
            tail(&c.log(), 30)
        );
        sleep(Duration::from_millis(100));
    }
}

pub fn archiver_failures(c: &Cluster) -> u64 {
    c.psql("SELECT failed_count FROM pg_stat_archiver")
        .parse()
        .unwrap()
}

/// The timeline the server writes WAL on now.
pub fn current_timeline(c: &Cluster) -> String {
    c.psql("SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)")
}

#[track_caller]
pub fn timeline_entry(status: &Value, timeline: u64) -> &Value {
    status["timelines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["timeline"] == timeline)
        .unwrap_or_else(|| panic!("pg status lists no timeline {timeline}: {status:#}"))
}

#[track_caller]
pub fn assert_nothing_at(dir: &Path) {
    if dir.exists() {
        let left: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert!(left.is_empty(), "a refused restore left {left:?}");
    }
    let log = PathBuf::from(format!("{}.recovery.log", dir.display()));
    assert!(!log.exists(), "a refused restore wrote {}", log.display());
}

/// The settings `pg restore` wrote for the restored server.
pub fn auto_conf(dir: &Path) -> String {
    fs::read_to_string(dir.join("postgresql.auto.conf")).unwrap()
}

/// A restore to a target after a fork, without `--target-timeline`, is refused before anything is
/// written, naming both timelines and the option that chooses one.
#[track_caller]
pub fn assert_two_histories(env: &Env, name: &str, args: &[&str], timelines: [u64; 2]) {
    let (out, dir) = env.restore(name, args);
    out.assert_code(EXIT_FATAL)
        .assert_output_contains("two histories follow base backup")
        .assert_output_contains("--target-timeline");
    for t in timelines {
        out.assert_output_contains(&format!("timeline {t}"));
    }
    assert_nothing_at(&dir);
}

/// The names of the repository's WAL objects of timeline `timeline` (e.g. "00000002"), history file
/// included.
pub fn timeline_objects(env: &Env, timeline: &str) -> Vec<String> {
    let dir = env.repo.join("wal").join(env.system_id()).join(timeline);
    match fs::read_dir(&dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("{}: {e}", dir.display()),
    }
}
