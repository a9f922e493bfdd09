//! The redis source (issue 12) on the real binary against Debian's redis-server 7.0: a plan source
//! of kind redis run by `lifeline run`, restored by `lifeline redis restore --start` and drilled.
//! Writes during the backup, ACL users with a password file, TLS, the AOF directory, and a 1 GB
//! instance streamed in bounded memory (about 15 s in a debug build).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::redis::{cmd, get, keyspace, Detached, Server};
use common::*;
use lifeline_sources::redis::client::{ConnectOptions, Reply};
use serde_json::Value;

/// A repository and a plan whose `[[sources]]` are `sources`.
struct Planned {
    repo: Repo,
    plan: PathBuf,
}

impl Planned {
    fn new(sources: &str) -> Planned {
        let repo = Repo::init();
        let plan = repo.plan(&format!(
            "[tiers]\ntier2 = {{ rto = \"1h\", rpo = \"15m\" }}\n\n\
             [classes.cache]\ntier = \"tier2\"\n\n{sources}\n"
        ));
        Planned { repo, plan }
    }

    fn lifeline(&self, args: &[&str]) -> Out {
        let mut c = self.repo.sandbox.lifeline();
        c.arg("--config").arg(&self.plan).args(args);
        run(&mut c, None)
    }

    /// `lifeline run SOURCE --json`, asserting success; the job's report.
    #[track_caller]
    fn backup(&self, source: &str) -> Value {
        let out = self.lifeline(&["run", source, "--json"]);
        out.assert_success();
        let report = out.json();
        assert_eq!(report["outcome"], "success", "{report:#}");
        assert_eq!(report["verified"], true, "{report:#}");
        report
    }

    /// The snapshots of a plan source, oldest first.
    fn snapshots(&self, source: &str) -> Vec<Value> {
        let out = self
            .repo
            .run(["snapshots", "--json", "--tag", &format!("source={source}")]);
        out.assert_success();
        out.json().as_array().unwrap().clone()
    }

    /// `redis restore latest --tag source=SOURCE --dir DIR --start --json EXTRA…`, with the test
    /// server; the report and a guard that shuts the started server down.
    #[track_caller]
    fn restore_start(&self, source: &str, dir: &Path, extra: &[&str]) -> (Value, Detached) {
        let tag = format!("source={source}");
        let mut args: Vec<&str> = vec!["--json", "redis", "restore", "latest", "--tag", &tag];
        let dir_text = dir.to_str().unwrap();
        args.extend(["--dir", dir_text, "--start"]);
        args.extend(extra);
        let mut c = self.repo.cmd(&args);
        c.env("LIFELINE_REDIS_SERVER", common::redis::server_bin());
        let out = run(&mut c, None);
        let report = out.json();
        let detached = Detached {
            port: report["started"]["port"].as_u64().unwrap_or(0) as u16,
            pid: report["started"]["pid"].as_u64().unwrap_or(0) as u32,
        };
        out.assert_success();
        assert_eq!(report["matches"], true, "{report:#}");
        (report, detached)
    }
}

fn source_map(snapshot: &Value) -> &serde_json::Map<String, Value> {
    snapshot["source"].as_object().unwrap()
}

fn recorded(snapshot: &Value, key: &str) -> Value {
    serde_json::from_str(snapshot["source"][key].as_str().unwrap()).unwrap()
}

/// `count` string keys `key:N` → `value:N` padded to `size` bytes, written fast by the server.
fn populate(client: &mut lifeline_sources::redis::Client, count: u64, prefix: &str, size: u64) {
    cmd(
        client,
        &[
            "DEBUG",
            "POPULATE",
            &count.to_string(),
            prefix,
            &size.to_string(),
        ],
    );
}

/// Keys of every kind of value, in two databases, some with a time to live.
fn write_every_type(c: &mut lifeline_sources::redis::Client) {
    cmd(c, &["HSET", "h:small", "f", "v", "g", "w"]);
    let fields: Vec<String> = (0..300)
        .flat_map(|i| [format!("f{i}"), format!("v{i}")])
        .collect();
    let mut hset = vec!["HSET", "h:big"];
    hset.extend(fields.iter().map(String::as_str));
    cmd(c, &hset);
    cmd(c, &["RPUSH", "l", "a", "b", "c"]);
    cmd(c, &["SADD", "s:int", "1", "2", "3"]);
    cmd(c, &["SADD", "s:text", "x", "y"]);
    cmd(c, &["ZADD", "z", "1.5", "a", "2", "b"]);
    cmd(c, &["XADD", "x", "*", "k", "v"]);
    cmd(c, &["XGROUP", "CREATE", "x", "g", "0"]);
    cmd(
        c,
        &["XREADGROUP", "GROUP", "g", "consumer", "STREAMS", "x", ">"],
    );
    cmd(c, &["SET", "ttl:1", "v", "EX", "3600"]);
    cmd(c, &["SET", "ttl:2", "v", "PX", "7200000"]);
    cmd(c, &["SET", "n", "12345"]);
    cmd(c, &["SELECT", "3"]);
    cmd(c, &["SET", "other", "db"]);
    cmd(c, &["SELECT", "0"]);
}

/// (a, f) Writes during the backup: the snapshot holds one point in time, whose key counts it
/// records from the RDB itself; `redis restore --start` brings exactly those keys back with their
/// values; the plan's tags are on the snapshot and a drill passes.
#[test]
fn writes_during_the_backup_leave_one_point_in_time_that_restores_exactly() {
    let server = Server::start(&["--enable-debug-command", "yes"]);
    let mut c = server.client();
    populate(&mut c, 50_000, "key", 200);
    write_every_type(&mut c);
    let p = Planned::new(&format!(
        r#"[[sources]]
name = "sessions"
kind = "redis"
class = "cache"
url = "{}"
tags = ["team=platform"]
"#,
        server.url()
    ));
    p.lifeline(&["plan", "check"]).assert_success();

    // A writer adds keys, and rewrites one, for as long as the backup runs.
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, written) = (Arc::clone(&stop), Arc::clone(&written));
        let connect = server.connect.clone();
        std::thread::spawn(move || {
            let mut c = lifeline_sources::redis::Client::connect(&connect).unwrap();
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                cmd(&mut c, &["SET", &format!("w:{i}"), &"x".repeat(100)]);
                cmd(&mut c, &["INCR", "counter"]);
                i += 1;
                written.store(i, Ordering::SeqCst);
            }
        })
    };
    while written.load(Ordering::SeqCst) < 100 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let before = written.load(Ordering::SeqCst);
    let started = Instant::now();
    let report = p.backup("sessions");
    let backup_time = started.elapsed();
    let after = written.load(Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    assert!(after > before, "the writer wrote nothing during the backup");
    eprintln!(
        "backup with writes: {backup_time:?}, {} writes during it",
        after - before
    );

    let snapshots = p.snapshots("sessions");
    assert_eq!(snapshots.len(), 1);
    let snap = &snapshots[0];
    assert_eq!(json_str(snap, "id"), report["snapshot"].as_str().unwrap());
    assert_eq!(snap["kind"], "redis");
    assert_eq!(snap["tags"]["source"], "sessions");
    assert_eq!(snap["tags"]["team"], "platform");
    assert_eq!(snap["paths"][0], server.url());
    let source = source_map(snap);
    assert_eq!(source["redis_version"], "7.0.15");
    assert_eq!(source["role"], "master");
    assert_eq!(source["key_counts_from"], "rdb", "{source:#?}");
    assert_eq!(source["rdb_checksum"], "verified");
    assert!(
        source["used_memory"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 10_000_000
    );
    // The counts are the RDB's: every key written before the backup, and some of the writer's.
    let counts = recorded(snap, "key_counts");
    let db0_keys = counts["db0"]["keys"].as_u64().unwrap();
    let fixed = 50_000 + 10; // populated keys and write_every_type's in db0
    assert!(
        db0_keys >= fixed + before && db0_keys <= fixed + after + 1,
        "db0 holds {db0_keys} keys; before the backup {}, after {}",
        fixed + before,
        fixed + after + 1
    );
    assert_eq!(counts["db0"]["expires"], 2);
    assert_eq!(counts["db3"]["keys"], 1);
    let info_keys = recorded(snap, "info_keyspace")["db0"]["keys"]
        .as_u64()
        .unwrap();
    assert!(
        info_keys <= db0_keys,
        "INFO keyspace is read before the RDB"
    );

    // Restored: the snapshot's counts exactly, and the values written before the backup.
    let dir = p.repo.sandbox.join("restored");
    let (restored, detached) = p.restore_start("sessions", &dir, &[]);
    assert_eq!(restored["started"]["from"], "rdb");
    assert_eq!(restored["counts_exact"], true);
    let mut r = detached.client();
    let found = keyspace(&mut r);
    assert_eq!(found[0], ("db0".to_string(), db0_keys, 2));
    assert_eq!(found[1], ("db3".to_string(), 1, 0));
    for i in [0u64, 1, 4_999, 25_000, 49_999] {
        let value = get(&mut r, &format!("key:{i}")).expect("a populated key");
        let expected = format!("value:{i}");
        assert_eq!(&value[..expected.len()], expected.as_bytes());
        assert_eq!(value.len(), 200);
        assert_eq!(get(&mut c, &format!("key:{i}")), Some(value));
    }
    assert_eq!(get(&mut r, "n").as_deref(), Some(&b"12345"[..]));
    assert_eq!(
        cmd(&mut r, &["HGET", "h:big", "f299"]),
        Reply::Bulk(Some(b"v299".to_vec()))
    );
    assert_eq!(cmd(&mut r, &["XLEN", "x"]), Reply::Integer(1));
    assert_eq!(
        cmd(&mut r, &["ZSCORE", "z", "a"]),
        Reply::Bulk(Some(b"1.5".to_vec()))
    );
    // The writer's keys are there up to the point in time, and its counter with them.
    let counter: u64 = String::from_utf8(get(&mut r, "counter").unwrap())
        .unwrap()
        .parse()
        .unwrap();
    // The writer sets w:N, then counts it: the fork may fall between the two.
    let between = u64::from(get(&mut r, &format!("w:{counter}")).is_some());
    assert_eq!(
        db0_keys,
        fixed + counter + 1 + between,
        "w:0..w:{counter} and the counter itself"
    );
    assert!(get(&mut r, &format!("w:{}", counter - 1)).is_some());
    assert!(get(&mut r, &format!("w:{}", counter + 1)).is_none());
    drop(detached);

    // A directory holding a dump.rdb is refused, before anything is written.
    let out = p
        .repo
        .run(["redis", "restore", "latest", "--dir", dir.to_str().unwrap()]);
    out.assert_code(EXIT_FATAL);
    out.assert_output_contains("exists already");

    // A drill restores it into a scratch directory, loads it and compares.
    let mut drill = p.repo.sandbox.lifeline();
    drill
        .arg("--config")
        .arg(&p.plan)
        .args(["--json", "drill", "sessions"])
        .env("LIFELINE_REDIS_SERVER", common::redis::server_bin());
    let out = run(&mut drill, None);
    out.assert_success();
    let drilled = out.json();
    assert_eq!(drilled["passed"], true, "{drilled:#}");
}

/// (b) An ACL user with only the commands a backup needs, its password in a file; a wrong
/// password is a clear error and leaves no snapshot.
#[test]
fn an_acl_user_with_a_password_file_backs_up_and_a_wrong_password_saves_nothing() {
    let server = Server::start(&["--requirepass", "admin-secret"]);
    let admin = ConnectOptions::new(
        &format!("redis://:admin-secret@127.0.0.1:{}", server.port),
        None,
        None,
    )
    .unwrap();
    let mut c = lifeline_sources::redis::Client::connect(&admin).unwrap();
    cmd(
        &mut c,
        &[
            "ACL",
            "SETUSER",
            "backup",
            "on",
            ">s3cret pass",
            "+sync",
            "+replconf",
            "+info",
            "+ping",
        ],
    );
    for i in 0..500 {
        cmd(&mut c, &["SET", &format!("k{i}"), &i.to_string()]);
    }
    let good = Repo::uninit(); // only for its sandbox
    let password = good.sandbox.write("redis-password", "s3cret pass\n");
    let wrong = good.sandbox.write("wrong-password", "nope\n");
    let source = |name: &str, file: &Path| {
        format!(
            r#"[[sources]]
name = "{name}"
kind = "redis"
class = "cache"
url = "redis://backup@127.0.0.1:{}"
password_file = "{}"
"#,
            server.port,
            file.display()
        )
    };
    let p = Planned::new(&format!(
        "{}\n{}",
        source("acl", &password),
        source("wrong", &wrong)
    ));
    p.backup("acl");
    let snap = &p.snapshots("acl")[0];
    assert_eq!(
        snap["paths"][0],
        format!("redis://backup@127.0.0.1:{}", server.port)
    );
    assert_eq!(recorded(snap, "key_counts")["db0"]["keys"], 500);

    let out = p.lifeline(&["run", "wrong"]);
    out.assert_code(EXIT_FATAL);
    out.assert_output_contains("refused the credentials");
    out.assert_output_contains("WRONGPASS");
    assert!(!out.all_output().contains("nope"), "{}", out.describe());
    assert!(p.snapshots("wrong").is_empty());

    // Without the password the server says it wants one, and lifeline says where to put it.
    let p = Planned::new(&format!(
        "[[sources]]\nname = \"anon\"\nkind = \"redis\"\nclass = \"cache\"\nurl = \"{}\"\n",
        server.url()
    ));
    let out = p.lifeline(&["run", "anon"]);
    out.assert_code(EXIT_FATAL);
    out.assert_output_contains("set password_file");
    assert!(p.snapshots("anon").is_empty());
}

/// Certificates for a TLS server: a CA and a server certificate for localhost and 127.0.0.1.
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap_or_else(|e| panic!("openssl (apt-get install openssl) cannot run: {e}"));
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=lifeline test CA",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    (
        dir.join("ca.crt"),
        dir.join("server.crt"),
        dir.join("server.key"),
    )
}

/// (c) rediss:// with a private CA: captured over TLS and restored; without the CA the
/// certificate is refused with a hint.
#[test]
fn a_tls_server_is_captured_with_its_ca_file_and_refused_without_it() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(certs.path());
    let port = common::redis::free_port();
    let url = format!("rediss://localhost:{port}");
    let connect = ConnectOptions::new(&url, None, Some(ca.clone())).unwrap();
    let server = Server::start_with(
        port,
        &["--port", "0", "--tls-port", &port.to_string()],
        &[
            "--tls-cert-file",
            cert.to_str().unwrap(),
            "--tls-key-file",
            key.to_str().unwrap(),
            "--tls-ca-cert-file",
            ca.to_str().unwrap(),
            "--tls-auth-clients",
            "no",
            // More than the 16 databases a restored server has by default.
            "--databases",
            "32",
        ],
        connect,
    );
    let mut c = server.client();
    write_every_type(&mut c);
    cmd(&mut c, &["SELECT", "20"]);
    cmd(&mut c, &["SET", "far", "away"]);
    cmd(&mut c, &["SELECT", "0"]);
    let p = Planned::new(&format!(
        r#"[[sources]]
name = "tls"
kind = "redis"
class = "cache"
url = "{url}"
tls_ca_file = "{}"

[[sources]]
name = "untrusted"
kind = "redis"
class = "cache"
url = "{url}"
"#,
        ca.display()
    ));
    p.backup("tls");
    let snap = &p.snapshots("tls")[0];
    assert_eq!(snap["paths"][0], url);
    assert_eq!(recorded(snap, "key_counts")["db0"]["keys"], 10);
    assert_eq!(recorded(snap, "key_counts")["db20"]["keys"], 1);
    let (_, detached) = p.restore_start("tls", &p.repo.sandbox.join("restored"), &[]);
    let mut r = detached.client();
    assert_eq!(
        cmd(&mut r, &["LRANGE", "l", "0", "-1"]),
        cmd(&mut c, &["LRANGE", "l", "0", "-1"])
    );
    cmd(&mut r, &["SELECT", "20"]);
    assert_eq!(get(&mut r, "far").as_deref(), Some(&b"away"[..]));

    let out = p.lifeline(&["run", "untrusted"]);
    out.assert_code(EXIT_FATAL);
    out.assert_output_contains("set tls_ca_file");
    assert!(p.snapshots("untrusted").is_empty());
}

/// (d) The AOF directory: captured beside the RDB with rewrites paused (a running rewrite waited
/// for, the setting put back), restored and loaded by a server started from it.
#[test]
fn the_aof_directory_is_captured_with_rewrites_paused_and_a_server_loads_it() {
    let server = Server::start(&["--appendonly", "yes", "--enable-debug-command", "yes"]);
    let mut c = server.client();
    write_every_type(&mut c);
    populate(&mut c, 20_000, "key", 100);
    // DEBUG POPULATE writes no AOF; a rewrite puts the keys in the base file. The backup starts
    // while it may still run, and must wait for it.
    cmd(&mut c, &["BGREWRITEAOF"]);
    for i in 0..200 {
        cmd(&mut c, &["SET", &format!("after-rewrite:{i}"), "v"]);
    }
    let aof_dir = server.path().join("appendonlydir");
    let p = Planned::new(&format!(
        r#"[[sources]]
name = "aof"
kind = "redis"
class = "cache"
url = "{}"
aof_dir = "{}"
"#,
        server.url(),
        aof_dir.display()
    ));
    p.backup("aof");
    // The server rewrites by itself again.
    assert_eq!(
        cmd(&mut c, &["CONFIG", "GET", "auto-aof-rewrite-percentage"]),
        Reply::Array(Some(vec![
            Reply::Bulk(Some(b"auto-aof-rewrite-percentage".to_vec())),
            Reply::Bulk(Some(b"100".to_vec()))
        ]))
    );
    let snap = &p.snapshots("aof")[0];
    let source = source_map(snap);
    assert_eq!(source["aof_dir"], "appendonlydir");
    assert_eq!(source["aof_manifest"], "appendonly.aof.manifest");
    assert_eq!(source["aof_key_counts_exact"], "true", "{source:#?}");
    let aof_counts = recorded(snap, "aof_key_counts");
    assert_eq!(aof_counts["db0"]["keys"], 20_000 + 10 + 200);
    assert_eq!(aof_counts, recorded(snap, "key_counts"));

    // Laid out without --start: dump.rdb and the directory with every file the manifest lists.
    let dir = p.repo.sandbox.join("laid-out");
    p.repo
        .run(["redis", "restore", "latest", "--dir", dir.to_str().unwrap()])
        .assert_success()
        .assert_output_contains("--appendonly yes --appenddirname appendonlydir");
    let manifest =
        std::fs::read_to_string(dir.join("appendonlydir/appendonly.aof.manifest")).unwrap();
    for line in manifest
        .lines()
        .filter(|l| l.ends_with(" i") || l.ends_with(" b"))
    {
        let name = line.split_whitespace().nth(1).unwrap();
        assert!(
            dir.join("appendonlydir").join(name).is_file(),
            "{name} of {manifest}"
        );
    }
    assert!(dir.join("dump.rdb").is_file());

    // Started: from the AOF, by default, with the counts recorded for it.
    let (report, detached) = p.restore_start("aof", &p.repo.sandbox.join("from-aof"), &[]);
    assert_eq!(report["started"]["from"], "aof");
    let mut r = detached.client();
    assert_eq!(
        cmd(&mut r, &["CONFIG", "GET", "appendonly"]),
        Reply::Array(Some(vec![
            Reply::Bulk(Some(b"appendonly".to_vec())),
            Reply::Bulk(Some(b"yes".to_vec()))
        ]))
    );
    assert_eq!(get(&mut r, "after-rewrite:199").as_deref(), Some(&b"v"[..]));
    assert_eq!(get(&mut r, "key:19999"), get(&mut c, "key:19999"));
    drop(detached);
    // And from the RDB when asked.
    let (report, _detached) =
        p.restore_start("aof", &p.repo.sandbox.join("from-rdb"), &["--from", "rdb"]);
    assert_eq!(report["started"]["from"], "rdb");

    // A drill loads both, each compared with its own counts.
    let mut drill = p.repo.sandbox.lifeline();
    drill
        .arg("--config")
        .arg(&p.plan)
        .args(["--json", "drill", "aof"])
        .env("LIFELINE_REDIS_SERVER", common::redis::server_bin());
    let out = run(&mut drill, None);
    out.assert_success();
    let drilled = out.json();
    assert_eq!(drilled["passed"], true, "{drilled:#}");
    let checks: Vec<&str> = drilled["sources"][0]["record"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        checks,
        [
            "keys db0 (rdb)",
            "keys db3 (rdb)",
            "keys db0 (aof)",
            "keys db3 (aof)"
        ],
        "{drilled:#}"
    );

    // An aof_dir on a server without appendonly is refused before anything is stored.
    let plain = Server::start(&[]);
    let p = Planned::new(&format!(
        "[[sources]]\nname = \"noaof\"\nkind = \"redis\"\nclass = \"cache\"\nurl = \"{}\"\naof_dir = \"{}\"\n",
        plain.url(),
        aof_dir.display()
    ));
    let out = p.lifeline(&["run", "noaof"]);
    out.assert_code(EXIT_FATAL);
    out.assert_output_contains("appendonly no");
}

/// The largest resident set of a process so far (VmHWM), in bytes.
fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// (e) A 1 GB instance streams through in bounded memory: lifeline's peak resident set (sampled
/// from /proc while it runs; VmHWM only grows) stays far below the RDB's size.
#[test]
fn a_large_instance_streams_in_bounded_memory() {
    const KEYS: u64 = 100_000;
    const VALUE: u64 = 10_240;
    // Uncompressed, so the RDB is as large as the data.
    let server = Server::start(&["--enable-debug-command", "yes", "--rdbcompression", "no"]);
    let mut c = server.client();
    let clock = Instant::now();
    populate(&mut c, KEYS, "big", VALUE);
    eprintln!(
        "populated {KEYS} keys of {VALUE} bytes in {:?}",
        clock.elapsed()
    );
    let p = Planned::new(&format!(
        "[[sources]]\nname = \"big\"\nkind = \"redis\"\nclass = \"cache\"\nurl = \"{}\"\n",
        server.url()
    ));
    let mut command = p.repo.sandbox.lifeline();
    command
        .arg("--config")
        .arg(&p.plan)
        .args(["run", "big", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let clock = Instant::now();
    let mut child = command.spawn().unwrap();
    let pid = child.id();
    let mut peak = 0;
    let status = loop {
        if let Some(rss) = peak_rss(pid) {
            peak = peak.max(rss);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(clock.elapsed() < TIMEOUT, "the backup did not finish");
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = clock.elapsed();
    let out = child.wait_with_output().unwrap();
    assert!(status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let snap = &p.snapshots("big")[0];
    let rdb_bytes: u64 = snap["source"]["rdb_bytes"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    eprintln!(
        "backed up a {} MB RDB in {took:?}; lifeline's peak RSS {} MB",
        rdb_bytes >> 20,
        peak >> 20
    );
    assert!(rdb_bytes > KEYS * VALUE, "the RDB is {rdb_bytes} bytes");
    assert_eq!(recorded(snap, "key_counts")["db0"]["keys"], KEYS);
    assert!(peak > 0, "the peak RSS was never read");
    assert!(
        peak < 300 << 20,
        "lifeline's peak RSS was {} MB for a {} MB RDB",
        peak >> 20,
        rdb_bytes >> 20
    );
}

/// `plan check` refuses what a redis source cannot use, with the line and a fix.
#[test]
fn plan_check_refuses_a_bad_url_and_misplaced_tls_settings() {
    let p = Planned::new(
        r#"[[sources]]
name = "bad"
kind = "redis"
class = "cache"
url = "http://redis:6379"

[[sources]]
name = "mixed"
kind = "redis"
class = "cache"
url = "redis://u:inline@redis:6379"
password_file = "/etc/lifeline/redis-password"
tls_ca_file = "ca.pem"
"#,
    );
    let out = p.lifeline(&["plan", "check"]);
    out.assert_code(EXIT_FATAL);
    let err = out.stderr_str();
    assert!(err.contains("redis:// or rediss://"), "{err}");
    assert!(err.contains("tls_ca_file but a redis:// url"), "{err}");
    assert!(
        err.contains("a password in its url and a password_file"),
        "{err}"
    );
    assert!(
        err.contains("tls_ca_file of source \"mixed\" is relative"),
        "{err}"
    );
    assert!(!err.contains("inline"), "the password is not shown: {err}");
}
