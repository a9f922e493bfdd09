//! The S3 backend against a real Garage cluster: round trips, exit codes for
//! missing repositories, buckets and bad credentials, `lifeline copy` between
//! buckets, 20% injected network faults, a node stopped mid-backup and
//! concurrent writers.
//!
//! The cluster comes from the environment (`scripts/test.sh` starts one and
//! exports AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID,
//! AWS_SECRET_ACCESS_KEY, LIFELINE_TEST_BUCKET and LIFELINE_TEST_BUCKET2).
//! Without them these tests fail: they never skip. Every test works under its
//! own random prefix, so tests and runs never see each other's objects. The
//! node-failure test starts a private cluster with `scripts/garage.sh`.
#![allow(clippy::unwrap_used)]

mod common;

use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::fault_proxy::{self, FaultProxy};
use common::garage::{S3Env, REQUIRED_VARS};
use common::*;
use serde_json::Value;

/// Upper bound for one lifeline command against S3 (the default 15 min would
/// make a hang expensive).
const S3_TIMEOUT: Duration = Duration::from_secs(300);

/// A permanent error (403, missing bucket) must be reported within this.
const FAIL_FAST: Duration = Duration::from_secs(15);

const OTHER_PASSWORD: &str = "a different password for the copy";

// ---------------------------------------------------------------------------
// Environment and repositories
// ---------------------------------------------------------------------------

impl S3Env {
    /// From an `export K=V` file written by `scripts/garage.sh start`.
    #[track_caller]
    fn from_file(path: &Path) -> S3Env {
        let text =
            fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let vars = parse_env_file(&text);
        let get = |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        for k in REQUIRED_VARS {
            assert!(get(k).is_some(), "{} lacks {k}:\n{text}", path.display());
        }
        S3Env::from_lookup(get)
    }

    fn with_endpoint(&self, endpoint: &str) -> S3Env {
        S3Env {
            endpoint: endpoint.to_string(),
            ..self.clone()
        }
    }

    /// Puts exactly these credentials and this endpoint into `cmd`'s environment.
    fn apply(&self, cmd: &mut Command) {
        for var in ["AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_REGION"] {
            cmd.env_remove(var);
        }
        cmd.env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_REGION", &self.region)
            .env("AWS_ACCESS_KEY_ID", &self.key_id)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret);
    }
}

/// `export K=V` lines (values as bash's `printf %q` writes simple strings).
fn parse_env_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let line = line.strip_prefix("export ").unwrap_or(line);
            let (k, v) = line.split_once('=')?;
            let v = if let Some(inner) = v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
                inner.to_string()
            } else if let Some(inner) = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
                inner.to_string()
            } else {
                // printf %q escapes specials with a backslash.
                let mut out = String::new();
                let mut chars = v.chars();
                while let Some(c) = chars.next() {
                    if c == '\\' {
                        out.extend(chars.next());
                    } else {
                        out.push(c);
                    }
                }
                out
            };
            Some((k.trim().to_string(), v))
        })
        .collect()
}

/// A fresh, unique object-key prefix: `<name>-<16 hex digits>`.
fn unique_prefix(name: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mix =
        nanos ^ (u64::from(std::process::id()) << 40) ^ COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("{name}-{:016x}", Rng::new(mix).next_u64())
}

/// A repository at `s3://BUCKET/PREFIX`, with its own sandbox (HOME, password
/// file, sources, restore targets) and its own S3 environment.
struct S3Repo {
    sandbox: Sandbox,
    url: String,
    password_file: PathBuf,
    env: S3Env,
}

impl S3Repo {
    /// Not initialised yet.
    fn new(env: &S3Env, bucket: &str, name: &str) -> S3Repo {
        S3Repo::with_password(env, bucket, name, PASSWORD)
    }

    fn with_password(env: &S3Env, bucket: &str, name: &str, password: &str) -> S3Repo {
        let sandbox = Sandbox::new();
        let password_file = sandbox.write("password", password);
        S3Repo {
            sandbox,
            url: format!("s3://{bucket}/{}", unique_prefix(name)),
            password_file,
            env: env.clone(),
        }
    }

    /// The same repository reached through another endpoint (e.g. a proxy).
    fn via(&self, env: &S3Env) -> S3Repo {
        let sandbox = Sandbox::new();
        let password_file = sandbox.write("password", fs::read(&self.password_file).unwrap());
        S3Repo {
            sandbox,
            url: self.url.clone(),
            password_file,
            env: env.clone(),
        }
    }

    fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.sandbox.join(rel)
    }

    /// `lifeline` with this repository's S3 environment, no --repo, no password.
    fn bare(&self) -> Command {
        let mut c = self.sandbox.lifeline();
        self.env.apply(&mut c);
        c
    }

    fn cmd_with_password_file<I, S>(&self, password_file: &Path, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = self.bare();
        c.args(args).arg("--repo").arg(&self.url);
        c.env("LIFELINE_PASSWORD_FILE", password_file);
        c
    }

    fn cmd<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd_with_password_file(&self.password_file, args)
    }

    #[track_caller]
    fn run<I, S>(&self, args: I) -> Out
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run_timeout(&mut self.cmd(args), None, S3_TIMEOUT)
    }

    #[track_caller]
    fn run_with_password_file<I, S>(&self, password_file: &Path, args: I) -> Out
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run_timeout(
            &mut self.cmd_with_password_file(password_file, args),
            None,
            S3_TIMEOUT,
        )
    }

    #[track_caller]
    fn init(&self, extra: &[&str]) {
        let mut args = vec!["init"];
        args.extend_from_slice(extra);
        self.run(&args).assert_success();
    }

    /// `backup --json PATHS...`, asserting exit 0; returns the JSON summary.
    #[track_caller]
    fn backup(&self, paths: &[&Path]) -> Value {
        let mut args: Vec<OsString> = vec!["backup".into(), "--json".into()];
        args.extend(paths.iter().map(|p| p.as_os_str().to_owned()));
        let out = self.run(&args);
        out.assert_success();
        let v = out.json();
        assert!(
            is_hex(json_str(&v, "snapshot_id"), 64),
            "backup --json printed no 64-hex snapshot_id\n{}",
            out.describe()
        );
        v
    }

    #[track_caller]
    fn snapshots(&self) -> Vec<Value> {
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
    fn restore(&self, snapshot: &str, name: &str) -> PathBuf {
        let target = self.join(name);
        assert!(!target.exists(), "{} already exists", target.display());
        self.run([
            OsStr::new("restore"),
            OsStr::new(snapshot),
            OsStr::new("--target"),
            target.as_os_str(),
        ])
        .assert_success();
        target
    }

    /// `lifeline copy --from self --to dest --to-password-file DEST_PW --json SNAPSHOTS...`
    fn copy_cmd(&self, dest: &S3Repo, dest_password_file: &Path, snapshots: &[&str]) -> Command {
        let mut c = self.bare();
        c.args(["copy", "--json", "--from", &self.url, "--to", &dest.url])
            .arg("--to-password-file")
            .arg(dest_password_file)
            .args(snapshots)
            .env("LIFELINE_PASSWORD_FILE", &self.password_file);
        c
    }

    /// Copies to `dest` (asserting exit 0) and returns the JSON summary.
    #[track_caller]
    fn copy_to(&self, dest: &S3Repo, snapshots: &[&str]) -> CopySummary {
        let out = run_timeout(
            &mut self.copy_cmd(dest, &dest.password_file, snapshots),
            None,
            S3_TIMEOUT,
        );
        out.assert_success();
        CopySummary::parse(&out)
    }
}

struct CopySummary {
    copied: Vec<String>,
    skipped: Vec<String>,
    data_added: u64,
    raw: Value,
}

impl CopySummary {
    #[track_caller]
    fn parse(out: &Out) -> CopySummary {
        let v = out.json();
        let ids = |field: &str| -> Vec<String> {
            match v.get(field) {
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|x| {
                        x.as_str()
                            .unwrap_or_else(|| panic!("{field} holds a non-string: {v}"))
                            .to_string()
                    })
                    .collect(),
                _ => panic!("copy --json has no array {field:?}\n{}", out.describe()),
            }
        };
        CopySummary {
            copied: ids("copied"),
            skipped: ids("skipped"),
            data_added: json_u64(&v, "data_added"),
            raw: v.clone(),
        }
    }
}

/// Does the id list name exactly `expected` (full ids; 8+ digit prefixes accepted)?
#[track_caller]
fn assert_ids(what: &str, got: &[String], expected: &[&str], summary: &Value) {
    let matches = |g: &String, e: &str| g.len() >= 8 && e.starts_with(g.as_str());
    let ok = got.len() == expected.len()
        && expected
            .iter()
            .all(|e| got.iter().filter(|g| matches(g, e)).count() == 1);
    assert!(
        ok,
        "copy --json: {what} should be {expected:?} but is {got:?}\nsummary: {summary}"
    );
}

// ---------------------------------------------------------------------------
// Source trees
// ---------------------------------------------------------------------------

/// A few MiB: empty, tiny and text files, random files of 100 KiB to
/// `big_mib` MiB, a duplicate, a symlink, nested and empty directories.
fn make_tree(dir: &Path, seed: u64, big_mib: usize) {
    fs::create_dir_all(dir).unwrap();
    write_file(&dir.join("empty"), b"");
    write_file(&dir.join("one"), b"1");
    write_file(
        &dir.join("notes.txt"),
        format!("tree {seed}\n").repeat(2000),
    );
    for i in 0..20u64 {
        write_file(
            &dir.join(format!("small/f{i:02}.bin")),
            random_bytes(seed * 100 + i, 100 + 997 * i as usize),
        );
    }
    write_file(&dir.join("medium.bin"), random_bytes(seed + 1, 100 * KIB));
    write_random_file(&dir.join("sub/big.bin"), seed + 2, big_mib * MIB);
    write_random_file(&dir.join("sub/deeper/odd.bin"), seed + 3, MIB + 12345);
    fs::copy(
        dir.join("medium.bin"),
        dir.join("sub/deeper/medium-copy.bin"),
    )
    .unwrap();
    symlink("../medium.bin", dir.join("sub/link")).unwrap();
    fs::create_dir_all(dir.join("empty-dir")).unwrap();
    stamp_mtimes(dir, 1_700_000_000 + seed as i64);
}

/// About `mib` MiB of mixed data: hundreds of small files, compressible text,
/// duplicates and random files up to 6 MiB.
fn make_mixed_tree(dir: &Path, seed: u64, mib: usize) -> u64 {
    let budget = (mib * MIB) as u64;
    let mut rng = Rng::new(seed);
    let mut total = 0u64;
    let mut i = 0u64;
    // 300 small files (up to 16 KiB), a tenth of them compressible text.
    for _ in 0..300 {
        let len = (rng.next_u64() % (16 * KIB as u64)) as usize;
        let path = dir.join(format!("small/{:02}/s{i:04}", i % 17));
        if i % 10 == 0 {
            write_file(
                &path,
                format!("line {i} of some text\n").repeat(len / 24 + 1),
            );
        } else {
            write_file(&path, random_bytes(seed ^ (i << 8), len));
        }
        total += fs::metadata(&path).unwrap().len();
        i += 1;
    }
    // A duplicate of a large file: deduplicated, not uploaded twice.
    write_random_file(&dir.join("dup/a.bin"), seed + 7, 2 * MIB);
    write_random_file(&dir.join("dup/b.bin"), seed + 7, 2 * MIB);
    total += 4 * MIB as u64;
    // Random files of 64 KiB .. 6 MiB until the budget is used.
    while total < budget {
        let len = (64 * KIB as u64 + rng.next_u64() % (6 * MIB as u64)).min(budget - total + 1);
        write_random_file(
            &dir.join(format!("big/b{i:04}.bin")),
            seed ^ (i << 20),
            len as usize,
        );
        total += len;
        i += 1;
    }
    stamp_mtimes(dir, 1_710_000_000 + seed as i64);
    total
}

// ---------------------------------------------------------------------------
// Round trip, exit codes, fast failures
// ---------------------------------------------------------------------------

#[test]
fn s3_round_trip_backup_restore_check() {
    let env = S3Env::from_env();
    let repo = S3Repo::new(&env, &env.bucket, "roundtrip");
    repo.init(&[]);
    assert!(
        repo.snapshots().is_empty(),
        "a new repository has snapshots"
    );

    let src = repo.join("src");
    make_tree(&src, 1, 3);
    let first = repo.backup(&[&src]);
    assert!(json_u64(&first, "files_new") >= 20, "{first}");
    assert!(json_u64(&first, "data_added") > 3 * MIB as u64, "{first}");

    let snaps = repo.snapshots();
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    assert_eq!(json_str(&snaps[0], "id"), json_str(&first, "snapshot_id"));

    let target = repo.restore("latest", "restore");
    assert_trees_equal(&src, &restored(&target, &src), Compare::everything());
    repo.run(["check"]).assert_success();
    repo.run(["check", "--read-data"]).assert_success();

    // Unchanged source: deduplicated against what is already in the bucket.
    let second = repo.backup(&[&src]);
    assert!(
        json_u64(&second, "data_added") < 64 * KIB as u64,
        "an unchanged re-backup uploaded data: {second}"
    );
    assert_eq!(repo.snapshots().len(), 2);

    // A second init on the same prefix is refused and breaks nothing.
    repo.run(["init"]).assert_failure();
    assert_eq!(repo.snapshots().len(), 2);
    repo.run(["check"]).assert_success();
}

#[test]
fn s3_wrong_password_exits_12() {
    let env = S3Env::from_env();
    let repo = S3Repo::new(&env, &env.bucket, "wrongpw");
    repo.init(&[]);
    let src = repo.join("src");
    write_file(&src.join("f"), random_bytes(9, 50 * KIB));
    repo.backup(&[&src]);

    let wrong = repo.sandbox.write("wrong-password", "not the password");
    let target = repo.join("target");
    let cases: Vec<Vec<&OsStr>> = vec![
        vec!["snapshots".as_ref(), "--json".as_ref()],
        vec!["backup".as_ref(), src.as_os_str()],
        vec!["check".as_ref()],
        vec![
            "restore".as_ref(),
            "latest".as_ref(),
            "--target".as_ref(),
            target.as_os_str(),
        ],
    ];
    for args in &cases {
        repo.run_with_password_file(&wrong, args)
            .assert_code(EXIT_WRONG_PASSWORD);
    }
    assert!(
        !target.exists(),
        "restore with a wrong password wrote files"
    );
    assert_eq!(
        repo.snapshots().len(),
        1,
        "the right password must still work"
    );
}

#[test]
fn s3_missing_prefix_exits_10_and_creates_nothing() {
    let env = S3Env::from_env();
    let repo = S3Repo::new(&env, &env.bucket, "missing");
    let src = repo.sandbox.mkdir("src");
    write_file(&src.join("f"), b"data");
    let target = repo.join("target");
    let cases: Vec<Vec<&OsStr>> = vec![
        vec!["snapshots".as_ref(), "--json".as_ref()],
        vec!["backup".as_ref(), src.as_os_str()],
        vec!["check".as_ref()],
        vec![
            "restore".as_ref(),
            "latest".as_ref(),
            "--target".as_ref(),
            target.as_os_str(),
        ],
    ];
    for args in &cases {
        let t0 = Instant::now();
        repo.run(args).assert_code(EXIT_REPO_NOT_FOUND);
        assert!(
            t0.elapsed() < FAIL_FAST,
            "{args:?} on a missing prefix took {:?}",
            t0.elapsed()
        );
    }
    assert!(
        !target.exists(),
        "restore created its target for a missing repository"
    );
    // Nothing was left behind that would block an init there.
    repo.init(&[]);
    assert!(repo.snapshots().is_empty());
}

/// Runs `cmd` expecting a fast, clean failure; returns the output.
#[track_caller]
fn assert_fails_fast(mut cmd: Command, what: &str) -> Out {
    let t0 = Instant::now();
    let out = run_timeout(&mut cmd, None, Duration::from_secs(120));
    let took = t0.elapsed();
    out.assert_failure();
    assert!(
        took < FAIL_FAST,
        "{what}: failing took {took:?} (a permanent error must not be retried)\n{}",
        out.describe()
    );
    out
}

#[track_caller]
fn assert_output_mentions_any(out: &Out, what: &str, needles: &[&str]) {
    let all = out.all_output().to_lowercase();
    assert!(
        needles.iter().any(|n| all.contains(&n.to_lowercase())),
        "{what}: the output names none of {needles:?}\n{}",
        out.describe()
    );
}

#[test]
fn s3_missing_bucket_fails_fast_naming_the_bucket() {
    let env = S3Env::from_env();
    let bucket = unique_prefix("lifeline-no-such-bucket");
    let repo = S3Repo::new(&env, &bucket, "x");
    let src = repo.sandbox.mkdir("src");
    write_file(&src.join("f"), b"data");

    for args in [
        vec![OsStr::new("snapshots"), OsStr::new("--json")],
        vec![OsStr::new("backup"), src.as_os_str()],
        vec![OsStr::new("init")],
    ] {
        let what = format!("{args:?} on bucket {bucket}");
        let out = assert_fails_fast(repo.cmd(&args), &what);
        // 10 ("repository not found") or 1 are both honest; 12 would be a lie.
        assert_ne!(
            out.code(),
            Some(EXIT_WRONG_PASSWORD),
            "{what}\n{}",
            out.describe()
        );
        assert_output_mentions_any(&out, &what, &[&bucket]);
    }
}

#[test]
fn s3_bad_credentials_fail_fast_naming_the_problem() {
    let env = S3Env::from_env();
    let repo = S3Repo::new(&env, &env.bucket, "badcreds");
    repo.init(&[]);
    let bad_secret = S3Env {
        secret: "0000000000000000000000000000000000000000000000000000000000000000".into(),
        ..env.clone()
    };
    let bad_key = S3Env {
        key_id: "GK00000000000000000000dead".into(),
        ..env.clone()
    };
    for (label, creds) in [
        ("wrong secret key", &bad_secret),
        ("unknown access key", &bad_key),
    ] {
        let other = repo.via(creds);
        for args in [vec!["snapshots", "--json"], vec!["check"]] {
            let what = format!("{args:?} with a {label}");
            let out = assert_fails_fast(other.cmd(&args), &what);
            // Neither "wrong password" nor "repository not found": the repository
            // is there, the credentials are wrong.
            assert!(
                !matches!(out.code(), Some(EXIT_WRONG_PASSWORD | EXIT_REPO_NOT_FOUND)),
                "{what}: misleading exit code\n{}",
                out.describe()
            );
            assert_output_mentions_any(
                &out,
                &what,
                &[
                    "403",
                    "forbidden",
                    "access denied",
                    "accessdenied",
                    "credential",
                    "signature",
                    "permission",
                    "unauthori",
                    "access key",
                ],
            );
        }
    }
    // The good credentials still work.
    assert!(repo.snapshots().is_empty());
}

// ---------------------------------------------------------------------------
// copy
// ---------------------------------------------------------------------------

#[test]
fn s3_copy_to_second_bucket_with_another_password() {
    let env = S3Env::from_env();
    let src_repo = S3Repo::new(&env, &env.bucket, "copy-src");
    src_repo.init(&[]);
    let dest = S3Repo::with_password(&env, &env.bucket2, "copy-dest", OTHER_PASSWORD);
    dest.init(&[]);

    let src = src_repo.join("src");
    make_tree(&src, 11, 4);
    let tree_bytes = du(&src);
    let b1 = src_repo.backup(&[&src]);
    let id1 = json_str(&b1, "snapshot_id").to_string();

    // The destination's password is not the source's.
    let wrong = run_timeout(
        &mut src_repo.copy_cmd(&dest, &src_repo.password_file, &[]),
        None,
        S3_TIMEOUT,
    );
    wrong.assert_code(EXIT_WRONG_PASSWORD);

    let c1 = src_repo.copy_to(&dest, &[]);
    assert_ids("copied", &c1.copied, &[&id1], &c1.raw);
    assert_ids("skipped", &c1.skipped, &[], &c1.raw);
    assert!(
        c1.data_added >= tree_bytes / 2,
        "the first copy of a {tree_bytes}-byte tree added only {} bytes: {}",
        c1.data_added,
        c1.raw
    );

    let dsnaps = dest.snapshots();
    assert_eq!(dsnaps.len(), 1, "{dsnaps:?}");
    assert_eq!(dsnaps[0]["paths"], src_repo.snapshots()[0]["paths"]);
    let target = dest.restore("latest", "restore1");
    assert_trees_equal(&src, &restored(&target, &src), Compare::everything());
    dest.run(["check", "--read-data"]).assert_success();
    // Opened with its own password only.
    dest.run_with_password_file(&src_repo.password_file, ["snapshots"])
        .assert_code(EXIT_WRONG_PASSWORD);

    // A re-run finds nothing to do.
    let c2 = src_repo.copy_to(&dest, &[]);
    assert_ids("copied", &c2.copied, &[], &c2.raw);
    assert_ids("skipped", &c2.skipped, &[&id1], &c2.raw);
    assert!(
        c2.data_added <= 16 * KIB as u64,
        "a copy with nothing new added {} bytes: {}",
        c2.data_added,
        c2.raw
    );
    assert_eq!(dest.snapshots().len(), 1);

    // An incremental snapshot: only the new data travels.
    write_random_file(&src.join("added.bin"), 99, 300 * KIB);
    write_file(&src.join("one"), b"changed");
    let b2 = src_repo.backup(&[&src]);
    let id2 = json_str(&b2, "snapshot_id").to_string();
    let source_added = json_u64(&b2, "data_added");
    let c3 = src_repo.copy_to(&dest, &[&id2]);
    assert_ids("copied", &c3.copied, &[&id2], &c3.raw);
    assert!(
        c3.data_added <= source_added + 256 * KIB as u64 && c3.data_added < tree_bytes / 4,
        "copying an incremental snapshot (source added {source_added} bytes) sent {} bytes \
         of a {tree_bytes}-byte tree: {}",
        c3.data_added,
        c3.raw
    );
    let c4 = src_repo.copy_to(&dest, &[]);
    assert_ids("copied", &c4.copied, &[], &c4.raw);
    assert_ids("skipped", &c4.skipped, &[&id1, &id2], &c4.raw);

    assert_eq!(dest.snapshots().len(), 2);
    let target = dest.restore("latest", "restore2");
    assert_trees_equal(&src, &restored(&target, &src), Compare::everything());
    dest.run(["check", "--read-data"]).assert_success();
}

// ---------------------------------------------------------------------------
// 20% injected faults
// ---------------------------------------------------------------------------

#[test]
fn s3_everything_succeeds_through_20_percent_faults() {
    let env = S3Env::from_env();
    let proxy = fault_proxy::start(fault_proxy::endpoint_addr(&env.endpoint), 0.2);
    let faulty = env.with_endpoint(&proxy.url());
    let mut phases: Vec<(&str, fault_proxy::Stats)> = Vec::new();
    let mut last = proxy.stats();
    let mut phase = |name: &'static str, proxy: &FaultProxy| {
        let now = proxy.stats();
        let d = now.since(&last);
        eprintln!("faults: {name}: {d}");
        phases.push((name, d));
        last = now;
    };

    // 1 MiB packs: many objects, hence many requests to fault.
    let repo = S3Repo::new(&faulty, &env.bucket, "faults");
    repo.init(&["--pack-size", "1"]);
    phase("init", &proxy);

    let src = repo.join("src");
    let total = make_mixed_tree(&src, 5, 32);
    let summary = repo.backup(&[&src]);
    let id = json_str(&summary, "snapshot_id").to_string();
    assert!(json_u64(&summary, "data_added") > total / 2, "{summary}");
    phase("backup", &proxy);

    let target = repo.restore(&id, "restore");
    assert_trees_equal(&src, &restored(&target, &src), Compare::everything());
    phase("restore", &proxy);

    repo.run(["check", "--read-data"]).assert_success();
    phase("check --read-data", &proxy);

    let dest = S3Repo::with_password(&faulty, &env.bucket2, "faults-copy", OTHER_PASSWORD);
    dest.init(&["--pack-size", "1"]);
    let copy = repo.copy_to(&dest, &[]);
    assert_ids("copied", &copy.copied, &[&id], &copy.raw);
    phase("copy", &proxy);

    let stats = proxy.stats();
    drop(proxy);
    eprintln!("faults: total: {stats}");
    assert!(
        stats.faults() >= 10,
        "only {} faults were injected, too few to mean anything: {stats}\nper phase: {phases:?}",
        stats.faults()
    );
    assert!(
        stats.kinds_seen() >= 3,
        "faults of too few kinds were injected: {stats}"
    );

    // Straight to Garage: what the faulty runs wrote is whole.
    let direct = repo.via(&env);
    direct.run(["check", "--read-data"]).assert_success();
    assert_eq!(direct.snapshots().len(), 1);
    let direct_dest = dest.via(&env);
    direct_dest.run(["check", "--read-data"]).assert_success();
    let restored_copy = direct_dest.restore("latest", "restore-copy");
    assert_trees_equal(&src, &restored(&restored_copy, &src), Compare::everything());
}

/// Three generations of a directory (a file that stays, a file that changes), each snapshot with
/// what it holds; `repo` must be initialised.
fn three_generations(repo: &S3Repo) -> (PathBuf, Vec<(String, PathBuf)>) {
    let src = repo.join("src");
    let mut held = Vec::new();
    for g in 0..3u64 {
        write_random_file(&src.join("stays.bin"), 1, 1500 * KIB);
        write_random_file(&src.join("changes.bin"), 10 + g, 1500 * KIB);
        let id = json_str(&repo.backup(&[&src]), "snapshot_id").to_string();
        // A copy of what this generation held, to compare restores with.
        let copy = repo.join(format!("gen{g}"));
        for f in ["stays.bin", "changes.bin"] {
            write_file(&copy.join(f), fs::read(src.join(f)).unwrap());
        }
        held.push((id, copy));
    }
    (src, held)
}

/// Every snapshot of `held` restores from `repo` to what it held.
#[track_caller]
fn assert_restores(repo: &S3Repo, src: &Path, held: &[(String, PathBuf)], tag: &str) {
    for (id, copy) in held {
        let target = repo.restore(id, &format!("{tag}-{}", &id[..8]));
        assert_trees_equal(copy, &restored(&target, src), Compare::content_only());
    }
}

/// Forget, prune (both phases: mark, then delete with no grace) and check, each through 20% injected
/// faults: every command succeeds (retrying what failed), nothing a kept snapshot needs is deleted,
/// and what the faulty runs left passes `check --read-data` straight on Garage.
#[test]
fn s3_forget_prune_and_check_through_20_percent_faults_delete_nothing_still_needed() {
    let env = S3Env::from_env();
    let repo = S3Repo::new(&env, &env.bucket, "faults-gc");
    repo.init(&["--pack-size", "1"]);
    let (src, mut held) = three_generations(&repo);
    held.remove(0);

    let proxy = fault_proxy::start(fault_proxy::endpoint_addr(&env.endpoint), 0.2);
    let faulty = repo.via(&env.with_endpoint(&proxy.url()));
    faulty.run(["forget", "--keep-last", "2"]).assert_success();
    faulty
        .run(["prune", "--grace", "0s", "--max-unused", "0"])
        .assert_success();
    faulty.run(["check"]).assert_success();
    let stats = proxy.stats();
    drop(proxy);
    eprintln!("faults: forget, prune, check: {stats}");
    assert!(
        stats.faults() >= 5,
        "only {} faults were injected: {stats}",
        stats.faults()
    );

    repo.run(["check", "--read-data"]).assert_success();
    assert_eq!(repo.snapshots().len(), 2);
    assert_restores(&repo, &src, &held, "after-faults");
    // The prune completed: a second one finds nothing left to do.
    let out = repo.run(["prune", "--grace", "0s", "--max-unused", "0"]);
    out.assert_success()
        .assert_output_contains("no new garbage");
}

/// The proxy itself, against a tiny local HTTP server: every kind of fault
/// happens, at about the configured rate, and clean requests come back intact.
#[test]
fn fault_proxy_injects_every_kind_of_fault() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{TcpListener, TcpStream};

    const BODY: usize = 100 * KIB;
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let server_addr = server.local_addr().unwrap();
    thread::spawn(move || {
        for conn in server.incoming() {
            let Ok(conn) = conn else { continue };
            conn.set_nodelay(true).unwrap();
            thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut writer = conn;
                let body = random_bytes(42, BODY);
                loop {
                    // Headers, then a Content-Length body.
                    let mut len = 0usize;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap();
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let mut req_body = vec![0u8; len];
                    if reader.read_exact(&mut req_body).is_err() {
                        return;
                    }
                    let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {BODY}\r\n\r\n");
                    if writer.write_all(head.as_bytes()).is_err()
                        || writer.write_all(&body).is_err()
                    {
                        return;
                    }
                }
            });
        }
    });

    let mut config = fault_proxy::Config::new(0.3, 7);
    config.stall = Duration::from_millis(100);
    config.cut_max = 256 * KIB as u64;
    let proxy = fault_proxy::start_with(server_addr, config);

    let expected = random_bytes(42, BODY);
    let request_body = random_bytes(43, 20 * KIB);
    let (mut ok, mut failed) = (0u32, 0u32);
    let mut conn: Option<(TcpStream, BufReader<TcpStream>)> = None;
    for _ in 0..300 {
        let (w, r) = conn.get_or_insert_with(|| {
            let s = TcpStream::connect(proxy.addr).unwrap();
            s.set_nodelay(true).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            (s.try_clone().unwrap(), BufReader::new(s))
        });
        let attempt = (|| -> std::io::Result<Vec<u8>> {
            w.write_all(
                format!(
                    "PUT /x HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
                    request_body.len()
                )
                .as_bytes(),
            )?;
            w.write_all(&request_body)?;
            let mut status = String::new();
            r.read_line(&mut status)?;
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line)? == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0u8; len];
            r.read_exact(&mut body)?;
            if !status.starts_with("HTTP/1.1 200") {
                assert!(status.starts_with("HTTP/1.1 503"), "{status}");
                assert_eq!(body, fault_proxy::SLOW_DOWN_BODY.as_bytes());
                return Err(std::io::ErrorKind::Other.into());
            }
            Ok(body)
        })();
        match attempt {
            Ok(body) => {
                assert!(body == expected, "a forwarded response was corrupted");
                ok += 1;
            }
            Err(_) => {
                failed += 1;
                conn = None;
            }
        }
    }
    let stats = proxy.stats();
    eprintln!("proxy self-test: {ok} ok, {failed} failed; {stats}");
    assert_eq!(stats.kinds_seen(), 4, "{stats}");
    assert_eq!(u64::from(failed), stats.faults(), "{stats}");
    assert!(
        (30..=150).contains(&failed),
        "{failed} of 300 failed at p=0.3: {stats}"
    );
    assert!(stats.connections > 1 && stats.connections < 300, "{stats}");
}

// ---------------------------------------------------------------------------
// A node stopped during a backup (private cluster)
// ---------------------------------------------------------------------------

/// A private 3-node Garage cluster, stopped when dropped (also on panic).
struct OwnCluster {
    dir: tempfile::TempDir,
    env: S3Env,
}

fn garage_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/garage.sh")
}

fn garage(dir: &Path, args: &[&str]) -> Out {
    let mut c = Command::new("bash");
    c.arg(garage_script())
        .args(args.iter().take(1))
        .arg(dir)
        .args(args.iter().skip(1));
    run_timeout(&mut c, None, Duration::from_secs(240))
}

struct StopOnDrop(PathBuf);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let out = garage(&self.0, &["stop"]);
        if out.code() != Some(0) {
            eprintln!(
                "stopping the private Garage cluster failed:\n{}",
                out.describe()
            );
        }
    }
}

impl OwnCluster {
    #[track_caller]
    fn start() -> (OwnCluster, StopOnDrop) {
        let dir = tempfile::Builder::new()
            .prefix("lifeline-garage-")
            .tempdir()
            .unwrap();
        // Armed before starting, so that a half-started cluster is stopped too.
        let guard = StopOnDrop(dir.path().to_path_buf());
        let out = garage(dir.path(), &["start"]);
        assert_eq!(
            out.code(),
            Some(0),
            "could not start a private Garage cluster with {}\n{}",
            garage_script().display(),
            out.describe()
        );
        let env = S3Env::from_file(&dir.path().join("env"));
        (OwnCluster { dir, env }, guard)
    }

    #[track_caller]
    fn node(&self, action: &str, n: u32) {
        let out = garage(self.dir.path(), &[action, &n.to_string()]);
        assert_eq!(
            out.code(),
            Some(0),
            "garage.sh {action} {n}\n{}",
            out.describe()
        );
    }
}

/// Bytes read so far by a running process (`rchar` of /proc/PID/io).
fn bytes_read_by(child: &Child) -> u64 {
    fs::read_to_string(format!("/proc/{}/io", child.id()))
        .ok()
        .and_then(|io| {
            io.lines().find_map(|l| {
                l.strip_prefix("rchar:")
                    .map(|v| v.trim().parse().unwrap_or(0))
            })
        })
        .unwrap_or(0)
}

#[test]
fn s3_backup_survives_a_garage_node_stopping() {
    // Drop order: `cluster` (and its temp dir) after `_guard` stops the nodes.
    let (cluster, _guard) = OwnCluster::start();
    let repo = S3Repo::new(&cluster.env, &cluster.env.bucket, "node-down");
    repo.init(&["--pack-size", "4"]);

    let src = repo.join("src");
    for i in 0..25u64 {
        write_random_file(&src.join(format!("part{i:02}.bin")), 500 + i, 4 * MIB);
    }
    stamp_mtimes(&src, 1_720_000_000);

    let log = fs::File::create(repo.join("backup.log")).unwrap();
    let mut child = repo
        .cmd([OsStr::new("backup"), OsStr::new("--json"), src.as_os_str()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stdout, &mut v);
        v
    });

    // Stop node 3 once the backup is well under way.
    let t0 = Instant::now();
    while bytes_read_by(&child) < 8 * MIB as u64 {
        if let Some(st) = child.try_wait().unwrap() {
            panic!(
                "backup ended ({st:?}) before node 3 could be stopped\n{}",
                fs::read_to_string(repo.join("backup.log")).unwrap_or_default()
            );
        }
        assert!(t0.elapsed() < S3_TIMEOUT, "backup made no progress");
        thread::sleep(Duration::from_millis(20));
    }
    cluster.node("stop-node", 3);
    let still_running = child.try_wait().unwrap().is_none();
    eprintln!(
        "node 3 stopped {:?} into the backup, backup still running: {still_running}",
        t0.elapsed()
    );
    let status = wait_timeout(&mut child, S3_TIMEOUT, "backup while node 3 is down");
    let stdout = reader.join().unwrap();
    let log = fs::read_to_string(repo.join("backup.log")).unwrap_or_default();
    assert!(
        status.success(),
        "backup failed after node 3 stopped: {status:?}\nstdout: {}\nstderr: {log}",
        String::from_utf8_lossy(&stdout)
    );
    assert!(
        still_running,
        "the backup finished before node 3 was down; the test proved nothing (make the source larger)"
    );
    let summary: Value = serde_json::from_slice(&stdout).unwrap();
    let id = json_str(&summary, "snapshot_id").to_string();

    // Two of three replicas are enough to read, too.
    let target = repo.restore(&id, "restore");
    assert_trees_equal(&src, &restored(&target, &src), Compare::everything());

    cluster.node("start-node", 3);
    repo.run(["check"]).assert_success();
}

/// A Garage node stopped in the middle of a prune, then check, forget and copy with the node still
/// down: each succeeds on the two nodes left, and once the node is back the repository and the
/// copy pass `check --read-data` and restore what the kept snapshots held.
#[test]
fn s3_prune_survives_a_garage_node_stopping_and_check_forget_copy_run_without_it() {
    let (cluster, _guard) = OwnCluster::start();
    // A proxy that injects nothing counts the prune's requests, to stop the node mid-run, and
    // holds each for 100 ms: unslowed, the prune could finish before the node was down.
    let proxy = fault_proxy::start_with(
        fault_proxy::endpoint_addr(&cluster.env.endpoint),
        fault_proxy::Config {
            delay: Duration::from_millis(100),
            ..fault_proxy::Config::new(0.0, 0)
        },
    );
    let counted = cluster.env.with_endpoint(&proxy.url());
    let repo = S3Repo::new(&counted, &cluster.env.bucket, "node-down-gc");
    repo.init(&["--pack-size", "1"]);
    let (src, mut held) = three_generations(&repo);
    repo.run(["forget", "--keep-last", "2"]).assert_success();
    held.remove(0);

    let before = proxy.stats();
    let mut child = repo
        .cmd(["prune", "--grace", "0s", "--max-unused", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while proxy.stats().since(&before).requests < 10 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "prune ended before node 3 could be stopped"
        );
        assert!(t0.elapsed() < S3_TIMEOUT, "prune made no requests");
        thread::sleep(Duration::from_millis(5));
    }
    cluster.node("stop-node", 3);
    let still_running = child.try_wait().unwrap().is_none();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "prune failed after node 3 stopped: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        still_running,
        "prune finished before node 3 was down; the test proved nothing"
    );

    // Node 3 stays down.
    repo.run(["check", "--read-data"]).assert_success();
    repo.run(["forget", "--keep-last", "1"]).assert_success();
    held.remove(0);
    let dest = S3Repo::with_password(
        &counted,
        &cluster.env.bucket2,
        "node-down-copy",
        OTHER_PASSWORD,
    );
    dest.init(&[]);
    let copy = repo.copy_to(&dest, &[]);
    assert_eq!(copy.copied.len(), 1, "{}", copy.raw);

    cluster.node("start-node", 3);
    repo.run(["check", "--read-data"]).assert_success();
    dest.run(["check", "--read-data"]).assert_success();
    assert_restores(&repo, &src, &held, "source");
    let copied = json_str(&dest.snapshots()[0], "id").to_string();
    let target = dest.restore(&copied, "from-copy");
    assert_trees_equal(
        &held[0].1,
        &restored(&target, &src),
        Compare::content_only(),
    );
}

// ---------------------------------------------------------------------------
// Concurrent writers
// ---------------------------------------------------------------------------

#[test]
fn s3_four_simultaneous_backups_into_one_repository() {
    let env = S3Env::from_env();
    let repo = S3Repo::new(&env, &env.bucket, "concurrent");
    repo.init(&[]);

    let dirs: Vec<PathBuf> = (0..4u64)
        .map(|k| {
            let dir = repo.join(format!("src{k}"));
            for i in 0..3 {
                write_random_file(
                    &dir.join(format!("own{i}.bin")),
                    300 + 10 * k + i,
                    MIB + 999 * i as usize,
                );
            }
            // The same content in every tree: all four race to store it.
            write_random_file(&dir.join("shared.bin"), 77, 2 * MIB);
            write_file(&dir.join("small.txt"), format!("tree {k}"));
            stamp_mtimes(&dir, 1_730_000_000 + k as i64);
            dir
        })
        .collect();

    let barrier = std::sync::Barrier::new(dirs.len());
    let outs: Vec<Out> = thread::scope(|s| {
        let handles: Vec<_> = dirs
            .iter()
            .map(|dir| {
                let barrier = &barrier;
                let repo = &repo;
                s.spawn(move || {
                    barrier.wait();
                    repo.run([OsStr::new("backup"), OsStr::new("--json"), dir.as_os_str()])
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut ids = Vec::new();
    for out in &outs {
        out.assert_success();
        ids.push(json_str(&out.json(), "snapshot_id").to_string());
    }
    let distinct: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), 4, "{ids:?}");

    let snaps = repo.snapshots();
    assert_eq!(snaps.len(), 4, "{snaps:?}");
    for (k, (id, dir)) in ids.iter().zip(&dirs).enumerate() {
        let s = snaps
            .iter()
            .find(|s| json_str(s, "id") == id.as_str())
            .unwrap_or_else(|| panic!("snapshot {id} is not listed: {snaps:?}"));
        assert_eq!(
            s["paths"],
            serde_json::json!([dir.to_str().unwrap()]),
            "{s}"
        );
        let target = repo.restore(id, &format!("restore{k}"));
        assert_trees_equal(dir, &restored(&target, dir), Compare::everything());
    }
    repo.run(["check", "--read-data"]).assert_success();
}

// ---------------------------------------------------------------------------
// Retention and garbage collection on Garage
// ---------------------------------------------------------------------------

/// GFS retention with a legal hold, then prune on S3: the held snapshot and the newest survive and
/// restore exactly, the others' data is freed, and `check --read-data` passes.
#[test]
fn s3_forget_prune_and_holds() {
    let env = S3Env::from_env();
    let repo = S3Repo::new(&env, &env.bucket, "retention");
    repo.init(&["--pack-size", "1"]);
    let src = repo.join("src");
    let mut ids = Vec::new();
    for day in 1..=4u64 {
        write_random_file(&src.join("scan.bin"), 500 + day, 2 * MIB);
        let out = repo.run([
            OsStr::new("backup"),
            OsStr::new("--json"),
            OsStr::new("--time"),
            OsStr::new(&format!("2026-11-0{day}T02:00:00Z")),
            src.as_os_str(),
        ]);
        out.assert_success();
        ids.push(json_str(&out.json(), "snapshot_id").to_string());
    }
    repo.run(["hold", "add", &ids[1], "--reason", "case 9"])
        .assert_success();
    let out = repo.run(["forget", "--keep-daily", "1", "--json"]);
    out.assert_success();
    assert_eq!(out.json()["removed"], 2, "{}", out.describe());
    let out = repo.run(["prune", "--grace", "0s", "--json"]);
    out.assert_success();
    let report = out.json();
    assert!(
        json_u64(&report["deleted"], "bytes") >= 3 * MIB as u64,
        "{report:#}"
    );
    repo.run(["check", "--read-data"]).assert_success();
    let left: Vec<String> = repo
        .snapshots()
        .iter()
        .map(|s| json_str(s, "id").to_string())
        .collect();
    assert_eq!(left.len(), 2);
    for (id, seed) in [(&ids[1], 502), (&ids[3], 504)] {
        let target = repo.restore(id, &format!("r-{seed}"));
        write_random_file(&repo.join(format!("expected-{seed}")), seed, 2 * MIB);
        assert_eq!(
            fs::read(restored(&target, &src).join("scan.bin")).unwrap(),
            fs::read(repo.join(format!("expected-{seed}"))).unwrap()
        );
    }
}

/// Two backup loops write into one S3 repository while prune runs in a loop beside them (no grace
/// period, repacking everything), with `check` after every round; every snapshot left restores what
/// its backup read. `LIFELINE_S3_STRESS_SECS` sets the length (default 45 s).
#[test]
fn s3_prune_beside_backup_loops_never_breaks_a_snapshot() {
    use std::sync::atomic::AtomicBool;
    use std::sync::Mutex;
    let seconds: u64 = std::env::var("LIFELINE_S3_STRESS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(45);
    let env = S3Env::from_env();
    let repo = S3Repo::new(&env, &env.bucket, "prune-loop");
    repo.init(&["--pack-size", "1"]);
    let stop = AtomicBool::new(false);
    let stored: Mutex<Vec<(String, PathBuf, u64)>> = Mutex::new(Vec::new());
    let mut rounds = 0;
    thread::scope(|s| {
        for worker in 0..2u64 {
            let (repo, stop, stored) = (&repo, &stop, &stored);
            s.spawn(move || {
                let src = repo.join(format!("src{worker}"));
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    // Contents come back after their snapshots were forgotten (see the local test).
                    let seed = 900 + worker * 10 + (i * 3) % 4;
                    write_random_file(&src.join("data.bin"), seed, 500 * KIB);
                    let out =
                        repo.run([OsStr::new("backup"), OsStr::new("--json"), src.as_os_str()]);
                    out.assert_success();
                    let id = json_str(&out.json(), "snapshot_id").to_string();
                    stored.lock().unwrap().push((id, src.clone(), seed));
                    i += 1;
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(seconds);
        while Instant::now() < deadline {
            repo.run([
                "forget",
                "--keep-last",
                "1",
                "--prune",
                "--grace",
                "0s",
                "--max-unused",
                "0",
            ])
            .assert_success();
            repo.run(["check"]).assert_success();
            rounds += 1;
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert!(rounds >= 2, "{rounds} prune rounds");
    repo.run(["check", "--read-data"]).assert_success();
    let stored = stored.into_inner().unwrap();
    for snap in repo.snapshots() {
        let id = json_str(&snap, "id");
        let (_, src, seed) = stored.iter().find(|(s, _, _)| s == id).unwrap();
        let target = repo.restore(id, &format!("r-{}", &id[..12]));
        let expected = repo.join(format!("expected-{}", &id[..12]));
        write_random_file(&expected, *seed, 500 * KIB);
        assert_eq!(
            fs::read(restored(&target, src).join("data.bin")).unwrap(),
            fs::read(&expected).unwrap(),
            "snapshot {id}"
        );
    }
}
