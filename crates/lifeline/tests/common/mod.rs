//! Shared helpers for lifeline's end-to-end tests.
//!
//! Every test runs the real `lifeline` binary in its own temporary directory
//! (`Sandbox`). The child's environment is scrubbed of `LIFELINE_*` variables
//! and `HOME`/`XDG_*` point inside the sandbox, so tests share no state.
#![allow(dead_code)]
#![allow(clippy::unwrap_used)]

pub mod cassandra;
pub mod fault_proxy;
pub mod faultfs;
pub mod garage;
pub mod hsm;
pub mod pg;
pub mod pitr;
pub mod redis;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_lifeline");

/// Generous: debug builds of crypto code are slow and the machine is shared.
pub const TIMEOUT: Duration = Duration::from_secs(900);

pub const EXIT_OK: i32 = 0;
pub const EXIT_FATAL: i32 = 1;
pub const EXIT_PARTIAL: i32 = 3;
pub const EXIT_REPO_NOT_FOUND: i32 = 10;
pub const EXIT_WRONG_PASSWORD: i32 = 12;

pub const KIB: usize = 1024;
pub const MIB: usize = 1024 * 1024;

pub const PASSWORD: &str = "correct horse battery staple";

// ---------------------------------------------------------------------------
// Random data
// ---------------------------------------------------------------------------

/// xorshift64* — fast, deterministic, good enough to defeat compression and
/// accidental deduplication.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        // Avoid the all-zero state and decorrelate small seeds.
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03 | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for chunk in &mut chunks {
            chunk.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next_u64().to_le_bytes();
        let n = rest.len();
        rest.copy_from_slice(&last[..n]);
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.fill(&mut v);
        v
    }
}

pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    Rng::new(seed).bytes(len)
}

/// Writes `len` pseudo-random bytes (streamed, 1 MiB at a time).
pub fn write_random_file(path: &Path, seed: u64, len: usize) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    let mut rng = Rng::new(seed);
    let mut f = File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    let mut buf = vec![0u8; MIB];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len());
        rng.fill(&mut buf[..n]);
        f.write_all(&buf[..n]).unwrap();
        left -= n;
    }
}

// ---------------------------------------------------------------------------
// Running processes
// ---------------------------------------------------------------------------

pub struct Out {
    pub cmdline: String,
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}… [{} more bytes]", &s[..cut], s.len() - cut)
}

impl Out {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// stdout followed by stderr, for "the output names X" assertions.
    pub fn all_output(&self) -> String {
        format!("{}\n{}", self.stdout_str(), self.stderr_str())
    }

    pub fn describe(&self) -> String {
        format!(
            "command: {}\nstatus: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}\n--------------",
            self.cmdline,
            self.status,
            clip(&self.stdout_str(), 6000),
            clip(&self.stderr_str(), 6000)
        )
    }

    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code(),
            Some(code),
            "expected exit code {code}\n{}",
            self.describe()
        );
        self
    }

    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        self.assert_code(EXIT_OK)
    }

    /// Exited by itself (no signal) with a non-zero code.
    #[track_caller]
    pub fn assert_failure(&self) -> &Self {
        match self.code() {
            Some(c) if c != 0 => self,
            _ => panic!("expected a non-zero exit code\n{}", self.describe()),
        }
    }

    #[track_caller]
    pub fn assert_output_contains(&self, needle: &str) -> &Self {
        assert!(
            self.all_output().contains(needle),
            "expected the output to contain {needle:?}\n{}",
            self.describe()
        );
        self
    }

    /// stdout parsed as exactly one JSON value.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON value: {e}\n{}", self.describe()))
    }
}

fn cmdline(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&format!("{:?}", a.to_string_lossy()));
    }
    s
}

/// Runs `cmd` to completion (with `TIMEOUT`), feeding `stdin` if given.
#[track_caller]
pub fn run(cmd: &mut Command, stdin: Option<&[u8]>) -> Out {
    run_timeout(cmd, stdin, TIMEOUT)
}

#[track_caller]
pub fn run_timeout(cmd: &mut Command, stdin: Option<&[u8]>, timeout: Duration) -> Out {
    let line = cmdline(cmd);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {line}: {e}"));
    let writer = stdin.map(|data| {
        let data = data.to_vec();
        let mut pipe = child.stdin.take().unwrap();
        // A broken pipe (child exits early) is the child's business.
        thread::spawn(move || {
            let _ = pipe.write_all(&data);
        })
    });
    let mut out_pipe = child.stdout.take().unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let out_reader = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out_pipe.read_to_end(&mut v);
        v
    });
    let err_reader = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err_pipe.read_to_end(&mut v);
        v
    });
    let status = wait_timeout(&mut child, timeout, &line);
    if let Some(w) = writer {
        let _ = w.join();
    }
    Out {
        cmdline: line,
        status,
        stdout: out_reader.join().unwrap(),
        stderr: err_reader.join().unwrap(),
    }
}

#[track_caller]
pub fn wait_timeout(child: &mut Child, timeout: Duration, what: &str) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("timed out after {timeout:?}: {what}");
        }
        thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------
// Sandbox and repository
// ---------------------------------------------------------------------------

/// A private temporary directory. The child's HOME and XDG dirs live inside.
pub struct Sandbox {
    dir: TempDir,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("lifeline-e2e-")
            .tempdir()
            .expect("create temp dir");
        let s = Sandbox { dir };
        fs::create_dir_all(s.home()).unwrap();
        s
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn home(&self) -> PathBuf {
        self.join("home")
    }

    /// Creates (and returns) a fresh directory inside the sandbox.
    pub fn mkdir(&self, rel: impl AsRef<Path>) -> PathBuf {
        let p = self.join(rel);
        fs::create_dir_all(&p).unwrap();
        p
    }

    pub fn write(&self, rel: impl AsRef<Path>, content: impl AsRef<[u8]>) -> PathBuf {
        let p = self.join(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(&p, content).unwrap();
        p
    }

    /// `lifeline` with a clean environment and no repository or password.
    pub fn lifeline(&self) -> Command {
        lifeline_at(&self.home(), self.path())
    }
}

/// `lifeline` with `home` as its HOME (and cache and config), run in `cwd`, with none of the
/// caller's `LIFELINE_*` settings.
pub fn lifeline_at(home: &Path, cwd: &Path) -> Command {
    let mut c = Command::new(BIN);
    for var in [
        "LIFELINE_REPO",
        "LIFELINE_PASSWORD_FILE",
        "LIFELINE_PASSWORD_COMMAND",
        "LIFELINE_PASSWORD",
        "LIFELINE_KMS_COMMAND",
        "LIFELINE_CONFIG",
        "RUST_LOG",
    ] {
        c.env_remove(var);
    }
    c.env("HOME", home)
        .env("XDG_CACHE_HOME", home.join(".cache"))
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("NO_COLOR", "1")
        .current_dir(cwd);
    c
}

/// A repository inside its own sandbox, opened with `LIFELINE_PASSWORD_FILE`.
pub struct Repo {
    pub sandbox: Sandbox,
    pub path: PathBuf,
    pub password_file: PathBuf,
}

impl Repo {
    /// A sandbox with a password file, but no repository yet.
    pub fn uninit() -> Repo {
        let sandbox = Sandbox::new();
        let password_file = sandbox.write("password", PASSWORD);
        let path = sandbox.join("repo");
        Repo {
            sandbox,
            path,
            password_file,
        }
    }

    /// A freshly initialised repository.
    #[track_caller]
    pub fn init() -> Repo {
        let repo = Repo::uninit();
        repo.run(["init"]).assert_success();
        assert!(
            repo.path.join("config").is_file(),
            "init did not write config"
        );
        repo
    }

    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.sandbox.join(rel)
    }

    /// `lifeline ARGS... --repo PATH` with `LIFELINE_PASSWORD_FILE` set.
    pub fn cmd<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd_with_password_file(&self.password_file, args)
    }

    pub fn cmd_with_password_file<I, S>(&self, password_file: &Path, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = self.sandbox.lifeline();
        c.args(args).arg("--repo").arg(&self.path);
        c.env("LIFELINE_PASSWORD_FILE", password_file);
        c
    }

    #[track_caller]
    pub fn run<I, S>(&self, args: I) -> Out
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run(&mut self.cmd(args), None)
    }

    #[track_caller]
    pub fn run_with_password_file<I, S>(&self, password_file: &Path, args: I) -> Out
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run(&mut self.cmd_with_password_file(password_file, args), None)
    }

    #[track_caller]
    pub fn run_stdin<I, S>(&self, args: I, stdin: &[u8]) -> Out
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run(&mut self.cmd(args), Some(stdin))
    }

    /// `backup --json EXTRA... PATHS...`, asserting exit 0; returns the JSON summary.
    #[track_caller]
    pub fn backup(&self, paths: &[&Path], extra: &[&str]) -> Value {
        let mut args: Vec<OsString> = vec!["backup".into(), "--json".into()];
        args.extend(extra.iter().map(OsString::from));
        args.extend(paths.iter().map(|p| p.as_os_str().to_owned()));
        let out = self.run(&args);
        out.assert_success();
        let v = out.json();
        assert!(
            v.is_object(),
            "backup --json did not print an object\n{}",
            out.describe()
        );
        v
    }

    /// `snapshots --json`, asserting exit 0.
    #[track_caller]
    pub fn snapshots(&self) -> Vec<Value> {
        let out = self.run(["snapshots", "--json"]);
        out.assert_success();
        match out.json() {
            Value::Array(a) => a,
            other => panic!(
                "snapshots --json is not an array: {other}\n{}",
                out.describe()
            ),
        }
    }

    /// Restores `snapshot` into a new directory `name` of the sandbox; asserts exit 0.
    #[track_caller]
    pub fn restore(&self, snapshot: &str, name: &str) -> PathBuf {
        let target = self.join(name);
        assert!(
            !target.exists(),
            "restore target {} already exists",
            target.display()
        );
        let out = self.run([
            OsStr::new("restore"),
            OsStr::new(snapshot),
            OsStr::new("--target"),
            target.as_os_str(),
        ]);
        out.assert_success();
        target
    }

    #[track_caller]
    pub fn dump(&self, snapshot: &str, path: impl AsRef<OsStr>) -> Vec<u8> {
        let out = self.run([OsStr::new("dump"), OsStr::new(snapshot), path.as_ref()]);
        out.assert_success();
        out.stdout
    }

    /// Pack files under `data/`, sorted.
    pub fn packs(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = regular_files_under(&self.path.join("data"));
        v.sort();
        v
    }

    /// Total size of the pack files under `data/` (complete packs only).
    pub fn data_bytes(&self) -> u64 {
        du(&self.path.join("data"))
    }

    /// Total size of all regular files of the repository.
    pub fn total_bytes(&self) -> u64 {
        du(&self.path)
    }

    /// A second repository in the sandbox (`copy`, a second region) with its own password
    /// (`copy-password`); returns its path and password file.
    #[track_caller]
    pub fn init_copy(&self, password: &str) -> (PathBuf, PathBuf) {
        let copy = self.join("copy");
        let copy_password = self.sandbox.write("copy-password", password);
        run(
            self.sandbox
                .lifeline()
                .args(["init", "--repo"])
                .arg(&copy)
                .arg("--password-file")
                .arg(&copy_password),
            None,
        )
        .assert_success();
        (copy, copy_password)
    }

    /// Size of everything but the audit trail, which even a refused operation adds a record to.
    pub fn bytes_but_audit(&self) -> u64 {
        du(&self.path) - du(&self.path.join("audit"))
    }

    /// `plan.toml` in the sandbox: this repository's `[repository]` section, then `body`.
    pub fn plan(&self, body: &str) -> PathBuf {
        let text = format!(
            "[repository]\nurl = {:?}\nkey = {{ password_file = {:?} }}\n\n{body}",
            self.path.display().to_string(),
            self.password_file.display().to_string(),
        );
        self.sandbox.write("plan.toml", text)
    }

    /// `key add` of a second (admin) password slot opened by `password`; returns its password file.
    pub fn add_password_slot(&self, password: &str) -> PathBuf {
        let file = self.sandbox.write("second-password", password);
        self.run([
            OsStr::new("key"),
            OsStr::new("add"),
            OsStr::new("--new-password-file"),
            file.as_os_str(),
        ])
        .assert_success();
        file
    }

    /// `key add --new-key-file path`: an admin key-file slot.
    pub fn add_key_file(&self, path: &Path) {
        self.run([
            OsStr::new("key"),
            OsStr::new("add"),
            OsStr::new("--new-key-file"),
            path.as_os_str(),
        ])
        .assert_success();
    }

    /// Files in `keys/`.
    pub fn key_files(&self) -> Vec<PathBuf> {
        let mut v = regular_files_under(&self.path.join("keys"));
        v.sort();
        v
    }
}

/// Where `source` (an absolute path) ends up when restored into `target`.
pub fn restored(target: &Path, source: &Path) -> PathBuf {
    assert!(source.is_absolute(), "{} is not absolute", source.display());
    target.join(source.strip_prefix("/").unwrap())
}

// ---------------------------------------------------------------------------
// Filesystem helpers
// ---------------------------------------------------------------------------

/// Every regular file under `dir`, by its path relative to `dir`, with its bytes.
pub fn file_contents(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    regular_files_under(dir)
        .into_iter()
        .map(|p| {
            let bytes = fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
            (p.strip_prefix(dir).unwrap().to_path_buf(), bytes)
        })
        .collect()
}

pub fn write_file(path: &Path, content: impl AsRef<[u8]>) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

pub fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {:o} {}: {e}", mode, path.display()));
}

pub fn mode_of(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

pub fn time_at(secs: i64, nanos: u32) -> SystemTime {
    assert!(secs >= 0);
    UNIX_EPOCH + Duration::new(secs as u64, nanos)
}

/// Sets the mtime (and atime) of a file or directory, or of a symlink itself.
pub fn set_mtime(path: &Path, secs: i64, nanos: u32) {
    let md = fs::symlink_metadata(path).unwrap();
    if md.file_type().is_symlink() {
        // std cannot set a symlink's own times; GNU touch -h can.
        let st = Command::new("touch")
            .arg("-h")
            .arg("-d")
            .arg(format!("@{secs}.{nanos:09}"))
            .arg(path)
            .status()
            .expect("run touch");
        assert!(st.success(), "touch -h {} failed", path.display());
    } else {
        let f = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        let t = time_at(secs, nanos);
        f.set_times(fs::FileTimes::new().set_accessed(t).set_modified(t))
            .unwrap_or_else(|e| panic!("set times of {}: {e}", path.display()));
    }
}

/// Gives every entry under `root` (and `root`) a distinct, deterministic mtime
/// with a nanosecond part. Directories are stamped last, deepest first.
pub fn stamp_mtimes(root: &Path, base_secs: i64) {
    let tree = scan_tree(root);
    let mut dirs = Vec::new();
    for (i, (rel, e)) in tree.iter().enumerate() {
        let secs = base_secs + 7 * i as i64;
        let nanos = ((i as u32).wrapping_mul(7919) % 1_000_000) * 1000 + 123;
        if e.kind == Kind::Dir {
            dirs.push((rel.clone(), secs, nanos));
        } else {
            set_mtime(&root.join(rel), secs, nanos);
        }
    }
    dirs.sort_by_key(|(rel, _, _)| std::cmp::Reverse(rel.components().count()));
    for (rel, secs, nanos) in dirs {
        set_mtime(&root.join(rel), secs, nanos);
    }
}

pub fn regular_files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if !dir.exists() {
        return out;
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let rd = match fs::read_dir(&d) {
            Ok(rd) => rd,
            Err(_) => continue, // a tmp dir may vanish while we look
        };
        for e in rd.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                out.push(e.path());
            }
        }
    }
    out
}

/// Sum of the sizes of regular files under `dir` (robust against files vanishing).
pub fn du(dir: &Path) -> u64 {
    regular_files_under(dir)
        .iter()
        .filter_map(|p| fs::symlink_metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

pub fn file_name_str(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

pub fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Is the process running as root? (Owner of /proc/self is our euid.)
pub fn is_root() -> bool {
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

// ---------------------------------------------------------------------------
// Tree snapshots and comparison
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink(OsString),
    Other(String),
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub kind: Kind,
    pub mode: u32,
    pub mtime: i64,
    pub mtime_nsec: i64,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
}

fn entry_of(path: &Path) -> Entry {
    let md = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()));
    let ft = md.file_type();
    let kind = if ft.is_symlink() {
        Kind::Symlink(fs::read_link(path).unwrap().into_os_string())
    } else if ft.is_dir() {
        Kind::Dir
    } else if ft.is_file() {
        Kind::File
    } else {
        Kind::Other(format!("{ft:?}"))
    };
    Entry {
        kind,
        mode: md.mode() & 0o7777,
        mtime: md.mtime(),
        mtime_nsec: md.mtime_nsec(),
        uid: md.uid(),
        gid: md.gid(),
        size: md.len(),
        dev: md.dev(),
        ino: md.ino(),
        nlink: md.nlink(),
    }
}

/// Every entry under `root`, keyed by path relative to `root` (root itself is "").
pub fn scan_tree(root: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut map = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let abs = if rel.as_os_str().is_empty() {
            root.to_path_buf()
        } else {
            root.join(&rel)
        };
        let e = entry_of(&abs);
        if e.kind == Kind::Dir {
            for child in
                fs::read_dir(&abs).unwrap_or_else(|e| panic!("read_dir {}: {e}", abs.display()))
            {
                stack.push(rel.join(child.unwrap().file_name()));
            }
        }
        map.insert(rel, e);
    }
    map
}

/// Byte-for-byte comparison; Err describes the first difference.
pub fn compare_files(a: &Path, b: &Path) -> Result<(), String> {
    let mut fa = File::open(a).map_err(|e| format!("open {}: {e}", a.display()))?;
    let mut fb = File::open(b).map_err(|e| format!("open {}: {e}", b.display()))?;
    let mut ba = vec![0u8; MIB];
    let mut bb = vec![0u8; MIB];
    let mut offset: u64 = 0;
    loop {
        let na = read_full(&mut fa, &mut ba);
        let nb = read_full(&mut fb, &mut bb);
        if ba[..na] != bb[..nb] {
            let i = ba[..na.min(nb)]
                .iter()
                .zip(&bb[..na.min(nb)])
                .position(|(x, y)| x != y)
                .unwrap_or(na.min(nb));
            return Err(format!("contents differ at byte {}", offset + i as u64));
        }
        if na == 0 {
            return Ok(());
        }
        offset += na as u64;
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("read: {e}"),
        }
    }
    n
}

#[derive(Clone, Copy, Debug)]
pub struct Compare {
    pub content: bool,
    pub mode: bool,
    /// mtime, compared to the second (files, dirs and symlinks).
    pub mtime: bool,
    pub owner: bool,
    pub hardlinks: bool,
}

impl Compare {
    pub fn everything() -> Self {
        Compare {
            content: true,
            mode: true,
            mtime: true,
            owner: true,
            hardlinks: true,
        }
    }

    pub fn content_only() -> Self {
        Compare {
            content: true,
            mode: false,
            mtime: false,
            owner: false,
            hardlinks: false,
        }
    }
}

/// Groups of paths (relative) that share an inode, among regular files.
fn hardlink_groups(tree: &BTreeMap<PathBuf, Entry>) -> BTreeSet<BTreeSet<PathBuf>> {
    let mut by_inode: BTreeMap<(u64, u64), BTreeSet<PathBuf>> = BTreeMap::new();
    for (rel, e) in tree {
        if e.kind == Kind::File {
            by_inode
                .entry((e.dev, e.ino))
                .or_default()
                .insert(rel.clone());
        }
    }
    by_inode.into_values().filter(|g| g.len() > 1).collect()
}

/// All differences between the trees at `expected` and `actual`.
pub fn tree_differences(expected: &Path, actual: &Path, cmp: Compare) -> Vec<String> {
    let exp = scan_tree(expected);
    if !actual.exists() {
        return vec![format!("{} does not exist", actual.display())];
    }
    let act = scan_tree(actual);
    let mut diffs = Vec::new();
    for rel in exp.keys().filter(|k| !act.contains_key(*k)) {
        diffs.push(format!("missing: {rel:?}"));
    }
    for rel in act.keys().filter(|k| !exp.contains_key(*k)) {
        diffs.push(format!("unexpected: {rel:?}"));
    }
    for (rel, e) in &exp {
        let Some(a) = act.get(rel) else { continue };
        if e.kind != a.kind {
            diffs.push(format!("{rel:?}: kind {:?} became {:?}", e.kind, a.kind));
            continue;
        }
        if e.kind == Kind::File {
            if e.size != a.size {
                diffs.push(format!("{rel:?}: size {} became {}", e.size, a.size));
            } else if cmp.content {
                if let Err(msg) = compare_files(&expected.join(rel), &actual.join(rel)) {
                    diffs.push(format!("{rel:?}: {msg}"));
                }
            }
        }
        let is_link = matches!(e.kind, Kind::Symlink(_));
        if cmp.mode && !is_link && e.mode != a.mode {
            diffs.push(format!("{rel:?}: mode {:o} became {:o}", e.mode, a.mode));
        }
        if cmp.mtime && e.mtime != a.mtime {
            diffs.push(format!(
                "{rel:?}: mtime {}.{:09} became {}.{:09}",
                e.mtime, e.mtime_nsec, a.mtime, a.mtime_nsec
            ));
        }
        if cmp.owner && (e.uid, e.gid) != (a.uid, a.gid) {
            diffs.push(format!(
                "{rel:?}: owner {}:{} became {}:{}",
                e.uid, e.gid, a.uid, a.gid
            ));
        }
    }
    if cmp.hardlinks {
        let (ge, ga) = (hardlink_groups(&exp), hardlink_groups(&act));
        if ge != ga {
            diffs.push(format!("hard-link groups {ge:?} became {ga:?}"));
        }
    }
    diffs
}

#[track_caller]
pub fn assert_trees_equal(expected: &Path, actual: &Path, cmp: Compare) {
    let diffs = tree_differences(expected, actual, cmp);
    if !diffs.is_empty() {
        let shown: Vec<&String> = diffs.iter().take(60).collect();
        panic!(
            "restored tree {} differs from {} ({} differences):\n  {}",
            actual.display(),
            expected.display(),
            diffs.len(),
            shown
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n  ")
        );
    }
}

/// Cheap 64-bit FNV-1a, only for fingerprinting small repository files.
pub fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Recursive listing of a directory: relative path -> (kind, size, content hash, mode).
pub fn fingerprint_dir(root: &Path) -> BTreeMap<PathBuf, (String, u64, u64, u32)> {
    scan_tree(root)
        .into_iter()
        .map(|(rel, e)| {
            let (kind, hash) = match &e.kind {
                Kind::File => (
                    "file".to_string(),
                    fnv1a(&fs::read(root.join(&rel)).unwrap()),
                ),
                Kind::Dir => ("dir".to_string(), 0),
                other => (format!("{other:?}"), 0),
            };
            let size = if e.kind == Kind::Dir { 0 } else { e.size };
            (rel, (kind, size, hash, e.mode))
        })
        .collect()
}

// ---------------------------------------------------------------------------
// JSON helpers
// ---------------------------------------------------------------------------

#[track_caller]
pub fn json_u64(v: &Value, field: &str) -> u64 {
    v.get(field)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("field {field:?} missing or not an unsigned integer in {v}"))
}

#[track_caller]
pub fn json_str<'a>(v: &'a Value, field: &str) -> &'a str {
    v.get(field)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("field {field:?} missing or not a string in {v}"))
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`
pub fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        b.get(r.clone())
            .is_some_and(|x| x.iter().all(u8::is_ascii_digit))
    };
    if b.len() < 20
        || !digits(0..4)
        || b[4] != b'-'
        || !digits(5..7)
        || b[7] != b'-'
        || !digits(8..10)
        || !matches!(b[10], b'T' | b't' | b' ')
        || !digits(11..13)
        || b[13] != b':'
        || !digits(14..16)
        || b[16] != b':'
        || !digits(17..19)
    {
        return false;
    }
    let mut i = 19;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match &b[i..] {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit()),
        _ => false,
    }
}

/// Paths as `ls` prints them: one per line.
pub fn lines(out: &Out) -> Vec<String> {
    out.stdout_str().lines().map(str::to_string).collect()
}

/// Convenience for building an OsString from raw bytes (non-UTF-8 names).
pub fn os(bytes: &[u8]) -> OsString {
    OsStr::from_bytes(bytes).to_owned()
}

/// The processes whose parent is `pid` (from /proc).
pub fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let child: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = fs::read_to_string(e.path().join("stat")).ok()?;
            // "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses.
            let ppid: u32 = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            (ppid == pid).then_some(child)
        })
        .collect()
}
