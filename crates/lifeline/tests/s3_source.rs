//! The s3 source (issue 12): a bucket prefix captured by `lifeline run` from a plan, incrementally by
//! ETag, size and Last-Modified; restored into a directory with `lifeline restore` and back into a
//! bucket with `lifeline s3 restore`, content types and user metadata included; drilled.
//!
//! The Garage cluster comes from the environment (`scripts/test.sh` starts one and exports
//! AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, LIFELINE_TEST_BUCKET and
//! LIFELINE_TEST_BUCKET2). Without them these tests fail: they never skip. Every test works under its
//! own random prefix. Objects are set up and checked with lifeline's own bucket client
//! (`lifeline_sources::s3::Bucket`) against the real store; what is tested runs through the binary.
//! The lifeline processes get no AWS_* variables: the plan's `s3` settings must be enough.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use common::fault_proxy::{self, FaultProxy};
use common::garage::S3Env;
use common::*;
use lifeline_repo::storage::S3Settings;
use lifeline_sources::s3::{Bucket, Headers, Listed};
use serde_json::Value;

impl S3Env {
    /// Lifeline's client for `url`, with the test's credentials.
    #[track_caller]
    fn open(&self, url: &str) -> Bucket {
        let secret = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(secret.path(), &self.secret).unwrap();
        let settings = S3Settings {
            endpoint: Some(self.endpoint.clone()),
            region: Some(self.region.clone()),
            access_key_id: Some(self.key_id.clone()),
            secret_access_key_file: Some(secret.path().to_path_buf()),
        };
        Bucket::open(url, &settings).unwrap_or_else(|e| panic!("open {url}: {e}"))
    }
}

/// `NAME-<16 hex digits>`, new for every call.
fn unique_prefix(name: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mix = nanos
        ^ (u64::from(std::process::id()) << 40)
        ^ COUNTER.fetch_add(1, Ordering::SeqCst) as u64;
    format!("{name}-{:016x}", Rng::new(mix).next_u64())
}

/// An object of the test: key, bytes, headers.
#[derive(Clone, Debug)]
struct Object {
    key: String,
    data: Vec<u8>,
    headers: Headers,
}

fn object(key: &str, data: Vec<u8>, content_type: Option<&str>, meta: &[(&str, &str)]) -> Object {
    Object {
        key: key.into(),
        data,
        headers: Headers {
            content_type: content_type.map(str::to_string),
            metadata: meta
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Headers::default()
        },
    }
}

/// Object `i` of the big bucket: small, of one of three content types; every third has user
/// metadata, every seventh none of either.
fn numbered(i: usize, version: u64) -> Object {
    let mut rng = Rng::new(i as u64 * 7919 + version);
    let size = 100 + (rng.next_u64() % 1900) as usize;
    let key = format!("d{:02}/e{}/obj{i:05}.bin", i % 20, i % 3);
    let content_type = ["text/plain", "application/json", "image/png"][i % 3];
    let owner = format!("team-{}", i % 5);
    let seq = i.to_string();
    let meta: Vec<(&str, &str)> = if i % 3 == 0 {
        vec![("owner", &owner), ("seq", &seq)]
    } else {
        vec![]
    };
    object(
        &key,
        rng.bytes(size),
        (i % 7 != 0).then_some(content_type),
        &meta,
    )
}

/// Put `objects` into `bucket`, many at once (set-up must stay short).
fn put_all(bucket: &Bucket, objects: &[Object]) {
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..32 {
            s.spawn(|| {
                while let Some(o) = objects.get(next.fetch_add(1, Ordering::Relaxed)) {
                    bucket
                        .put(&o.key, o.data.clone(), &o.headers)
                        .unwrap_or_else(|e| panic!("put {}: {e}", o.key));
                }
            });
        }
    });
}

/// Every object of `bucket`, read back with its headers, by key.
fn get_all(bucket: &Bucket) -> BTreeMap<String, (Vec<u8>, Headers)> {
    let keys: Vec<String> = bucket.list().unwrap().into_iter().map(|l| l.key).collect();
    let next = AtomicUsize::new(0);
    let got = Mutex::new(BTreeMap::new());
    std::thread::scope(|s| {
        for _ in 0..32 {
            s.spawn(|| {
                while let Some(key) = keys.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let object = bucket.get(key).unwrap_or_else(|e| panic!("get {key}: {e}"));
                    got.lock().unwrap().insert(key.clone(), object);
                }
            });
        }
    });
    got.into_inner().unwrap()
}

/// Assert that `bucket` holds exactly `expected`, bytes, content types and user metadata.
#[track_caller]
fn assert_bucket_holds(bucket: &Bucket, expected: &BTreeMap<String, Object>) {
    let got = get_all(bucket);
    let got_keys: BTreeSet<&String> = got.keys().collect();
    let want_keys: BTreeSet<&String> = expected.keys().collect();
    assert_eq!(
        got_keys.len(),
        want_keys.len(),
        "{}: {} objects, expected {}; missing {:?}, extra {:?}",
        bucket.url(),
        got_keys.len(),
        want_keys.len(),
        want_keys.difference(&got_keys).take(5).collect::<Vec<_>>(),
        got_keys.difference(&want_keys).take(5).collect::<Vec<_>>()
    );
    for (key, want) in expected {
        let (data, headers) = &got[key];
        assert!(data == &want.data, "{}/{key}: bytes differ", bucket.url());
        assert_eq!(
            headers.content_type,
            want.headers.content_type,
            "{}/{key}: content type",
            bucket.url()
        );
        assert_eq!(
            headers.metadata,
            want.headers.metadata,
            "{}/{key}: user metadata",
            bucket.url()
        );
    }
}

/// A plan whose s3 sources reach the store through `endpoint`, its repository (initialised through
/// the plan), and no AWS_* variables in the lifeline processes.
struct Planned {
    sandbox: Sandbox,
    plan: PathBuf,
}

impl Planned {
    /// `repository`: an `s3://` URL (opened with the same settings), else a directory of the sandbox.
    /// `sources` is the plan's `[[sources]]` text; `{S3}` in it becomes the `s3 = {…}` settings.
    #[track_caller]
    fn new(garage: &S3Env, endpoint: &str, repository: Option<&str>, sources: &str) -> Planned {
        let sandbox = Sandbox::new();
        let password = sandbox.write("password", PASSWORD);
        let secret = sandbox.write("s3-secret", &garage.secret);
        let s3 = format!(
            r#"s3 = {{ endpoint = "{endpoint}", region = "{}", access_key_id = "{}", secret_access_key_file = "{}" }}"#,
            garage.region,
            garage.key_id,
            secret.display()
        );
        let repository = match repository {
            Some(url) => format!("url = \"{url}\"\n{s3}"),
            None => format!("url = \"{}\"", sandbox.join("repo").display()),
        };
        let text = format!(
            r#"[repository]
{repository}
key = {{ password_file = "{pw}" }}

[tiers]
tier3 = {{ rto = "4h", rpo = "1h" }}

[classes.media]
tier = "tier3"

{sources}
"#,
            pw = password.display(),
            sources = sources.replace("{S3}", &s3),
        );
        let plan = sandbox.write("plan.toml", text);
        let p = Planned { sandbox, plan };
        p.lifeline(["init"]).assert_success();
        p
    }

    #[track_caller]
    fn lifeline<I, S>(&self, args: I) -> Out
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut c = self.sandbox.lifeline();
        for var in [
            "AWS_ENDPOINT_URL",
            "AWS_REGION",
            "AWS_DEFAULT_REGION",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
        ] {
            c.env_remove(var);
        }
        c.arg("--config").arg(&self.plan).args(args);
        run(&mut c, None)
    }

    /// `lifeline run SOURCE --json`, asserting success; returns the job report.
    #[track_caller]
    fn run_job(&self, source: &str) -> Value {
        let out = self.lifeline(["run", source, "--json"]);
        out.assert_success();
        let report = out.json();
        assert_eq!(report["outcome"], "success", "{report}");
        report
    }

    /// The snapshot `id` as `snapshots --json` shows it.
    #[track_caller]
    fn snapshot(&self, id: &str) -> Value {
        let all = self
            .lifeline(["snapshots", "--json"])
            .assert_success()
            .json();
        all.as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("snapshot {id} is not listed"))
    }

    /// `lifeline restore SNAPSHOT --target DIR` into a new directory `name` of the sandbox.
    #[track_caller]
    fn restore(&self, snapshot: &str, name: &str) -> PathBuf {
        let target = self.sandbox.join(name);
        self.lifeline([
            std::ffi::OsStr::new("restore"),
            std::ffi::OsStr::new(snapshot),
            std::ffi::OsStr::new("--target"),
            target.as_os_str(),
        ])
        .assert_success();
        target
    }
}

fn recorded(snapshot: &Value, key: &str) -> u64 {
    snapshot["source"][key]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("snapshot records no {key}: {snapshot}"))
}

/// Every regular file below `dir`, by its path relative to `dir`.
fn files_below(dir: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, path);
            }
        }
    }
    out
}

fn mtime_ms(path: &Path) -> i64 {
    let modified = std::fs::metadata(path).unwrap().modified().unwrap();
    modified.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// 10,000 objects: a full capture, then one after 10 changes, 5 additions and 5 deletions that
/// reads only those 15 (the recorded count, and the requests the store saw); the second snapshot
/// restored into a directory equals the bucket; `s3 restore` into a second bucket puts back every
/// object with its content type and metadata, and run again puts nothing.
#[test]
fn ten_thousand_objects_incrementally_captured_and_restored_to_a_directory_and_a_bucket() {
    let garage = S3Env::from_env();
    let prefix = unique_prefix("s3src-10k");
    let src_url = format!("s3://{}/{prefix}/live", garage.bucket);
    let dst_url = format!("s3://{}/{prefix}/restored", garage.bucket2);
    let src = garage.open(&src_url);

    let clock = Instant::now();
    let mut objects: BTreeMap<String, Object> = (0..10_000)
        .map(|i| numbered(i, 0))
        .map(|o| (o.key.clone(), o))
        .collect();
    put_all(&src, &objects.values().cloned().collect::<Vec<_>>());
    eprintln!(
        "set-up: 10,000 objects put in {:.1} s",
        clock.elapsed().as_secs_f64()
    );

    // Counting the requests the store sees proves what was (not) read.
    let proxy: FaultProxy = fault_proxy::start(fault_proxy::endpoint_addr(&garage.endpoint), 0.0);
    let p = Planned::new(
        &garage,
        &proxy.url(),
        None,
        &format!(
            r#"[[sources]]
name = "media"
kind = "s3"
class = "media"
bucket = "{src_url}/"
tags = ["team=web"]
{{S3}}
"#
        ),
    );

    let before = proxy.stats();
    let clock = Instant::now();
    let first = p.run_job("media");
    let full_secs = clock.elapsed().as_secs_f64();
    let full_requests = proxy.stats().since(&before).requests;
    let first_id = first["snapshot"].as_str().unwrap().to_string();
    let snap = p.snapshot(&first_id);
    assert_eq!(snap["kind"], "s3", "{snap}");
    assert_eq!(snap["paths"], serde_json::json!([src_url]), "{snap}");
    assert_eq!(snap["tags"]["source"], "media");
    assert_eq!(snap["tags"]["team"], "web");
    assert_eq!(recorded(&snap, "objects"), 10_000);
    assert_eq!(recorded(&snap, "fetched"), 10_000);
    assert_eq!(recorded(&snap, "unchanged"), 0);
    let bytes: u64 = objects.values().map(|o| o.data.len() as u64).sum();
    assert_eq!(recorded(&snap, "bytes_fetched"), bytes);
    assert_eq!(snap["summary"]["files"], 10_000);
    assert!(
        full_requests >= 10_000,
        "a full capture made only {full_requests} requests"
    );

    // 10 changed (3 of them to the same size, one to another content type), 5 added, 5 deleted.
    let mut changed: Vec<Object> = (0..10).map(|n| numbered(n * 997 + 3, 1)).collect();
    for o in changed.iter_mut().take(3) {
        let old = &objects[&o.key];
        o.data = Rng::new(42).bytes(old.data.len());
    }
    changed[4].headers.content_type = Some("text/csv".into());
    let added: Vec<Object> = (10_000..10_005).map(|i| numbered(i, 0)).collect();
    let deleted: Vec<String> = (0..5).map(|n| numbered(n * 1009 + 500, 0).key).collect();
    put_all(&src, &[changed.clone(), added.clone()].concat());
    for key in &deleted {
        src.delete(key).unwrap();
        objects.remove(key);
    }
    for o in changed.into_iter().chain(added) {
        objects.insert(o.key.clone(), o);
    }
    assert_eq!(objects.len(), 10_000);

    let before = proxy.stats();
    let clock = Instant::now();
    let second = p.run_job("media");
    let incremental_secs = clock.elapsed().as_secs_f64();
    let incremental_requests = proxy.stats().since(&before).requests;
    eprintln!(
        "capture of 10,000 objects: full {full_secs:.1} s ({full_requests} requests), \
         incremental {incremental_secs:.1} s ({incremental_requests} requests)"
    );
    let second_id = second["snapshot"].as_str().unwrap().to_string();
    let snap = p.snapshot(&second_id);
    assert_eq!(snap["parent"], first_id.as_str(), "{snap}");
    assert_eq!(recorded(&snap, "objects"), 10_000);
    assert_eq!(recorded(&snap, "fetched"), 15, "{snap}");
    assert_eq!(recorded(&snap, "unchanged"), 9_985, "{snap}");
    assert_eq!(snap["summary"]["files_new"], 5);
    assert_eq!(snap["summary"]["files_changed"], 10);
    assert_eq!(snap["summary"]["files_unmodified"], 9_985);
    // 15 GETs and the listing (1,000 keys a page); a single GET of an unchanged object would not
    // fit, let alone 9,985.
    assert!(
        incremental_requests <= 15 + 11 + 10,
        "the incremental capture made {incremental_requests} requests"
    );

    // Into a directory: objects/ mirrors the keys, with their Last-Modified as mtime.
    let dir = p.restore(&second_id, "restored");
    let files = files_below(&dir.join("objects"));
    assert_eq!(files.len(), objects.len());
    let listed: HashMap<String, Listed> = src
        .list()
        .unwrap()
        .into_iter()
        .map(|l| (l.key.clone(), l))
        .collect();
    for (key, o) in &objects {
        let path = files
            .get(key)
            .unwrap_or_else(|| panic!("{key} not restored"));
        assert!(
            std::fs::read(path).unwrap() == o.data,
            "{key}: bytes differ"
        );
        assert_eq!(
            mtime_ms(path),
            listed[key].last_modified.timestamp_millis(),
            "{key}: mtime"
        );
    }
    let manifest = std::fs::read_to_string(dir.join("objects.jsonl")).unwrap();
    let lines: Vec<Value> = manifest
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), objects.len());
    let csv = lines
        .iter()
        .find(|l| l["content_type"] == "text/csv")
        .expect("the changed content type is recorded");
    assert_eq!(
        csv["etag"].as_str(),
        listed[csv["key"].as_str().unwrap()].etag.as_deref()
    );

    // Back into a bucket, with the plan source's credentials.
    let clock = Instant::now();
    let out = p.lifeline([
        "s3", "restore", &second_id, "--to", &dst_url, "--source", "media", "--json",
    ]);
    out.assert_success();
    eprintln!(
        "s3 restore of 10,000 objects: {:.1} s",
        clock.elapsed().as_secs_f64()
    );
    let restored = out.json();
    assert_eq!(restored["put"], 10_000, "{restored}");
    assert_eq!(restored["present"], 0, "{restored}");
    let dst = garage.open(&dst_url);
    assert_bucket_holds(&dst, &objects);

    // Run again, it finds everything there and puts nothing; --force puts what --include selects.
    let again = p
        .lifeline([
            "s3", "restore", "latest", "--to", &dst_url, "--source", "media", "--json",
        ])
        .assert_success()
        .json();
    assert_eq!(again["put"], 0, "{again}");
    assert_eq!(again["present"], 10_000, "{again}");
    let forced = p
        .lifeline([
            "s3",
            "restore",
            "latest",
            "--to",
            &dst_url,
            "--source",
            "media",
            "--include",
            "d07/*/*",
            "--force",
            "--json",
        ])
        .assert_success()
        .json();
    let d07 = objects.keys().filter(|k| k.starts_with("d07/")).count();
    assert_eq!(forced["objects"], d07, "{forced}");
    assert_eq!(forced["put"], d07, "{forced}");
}

/// Keys a directory cannot hold as they are, an empty object and large ones (streamed at capture,
/// uploaded in parts at restore) survive the round trip; the drill restores and verifies them.
#[test]
fn awkward_keys_and_large_objects_round_trip_and_drill() {
    let garage = S3Env::from_env();
    let prefix = unique_prefix("s3src-awkward");
    let src_url = format!("s3://{}/{prefix}/src", garage.bucket);
    let src = garage.open(&src_url);
    let mut rng = Rng::new(7);
    let objects: Vec<Object> = vec![
        object("a", b"the object a".to_vec(), Some("text/plain"), &[]),
        object("a/b", b"below a".to_vec(), None, &[("k", "v")]),
        object("a/%object", b"a real key".to_vec(), None, &[]),
        object("%top", b"percent".to_vec(), Some("text/x-percent"), &[]),
        object(
            "dir with space/f#1?.txt",
            b"spaces".to_vec(),
            Some("text/plain; charset=utf-8"),
            &[("note", "with space")],
        ),
        object("ünï/cödé", "unicode".as_bytes().to_vec(), None, &[]),
        object("empty", Vec::new(), Some("application/x-empty"), &[]),
        object(
            "big/medium.bin",
            rng.bytes(300 * KIB),
            Some("application/octet-stream"),
            &[],
        ),
        object(
            "big/stream.bin",
            rng.bytes(3 * MIB),
            None,
            &[("part", "no")],
        ),
        object(
            "big/huge.bin",
            rng.bytes(65 * MIB),
            Some("application/x-huge"),
            &[("parts", "yes")],
        ),
    ];
    put_all(&src, &objects);
    let expected: BTreeMap<String, Object> =
        objects.iter().map(|o| (o.key.clone(), o.clone())).collect();

    // The repository lives on S3 too: its client and the source's share no runtime.
    let repo_url = format!("s3://{}/{prefix}/repo", garage.bucket2);
    let p = Planned::new(
        &garage,
        &garage.endpoint,
        Some(&repo_url),
        &format!(
            r#"[[sources]]
name = "awkward"
kind = "s3"
class = "media"
bucket = "{src_url}"
{{S3}}
"#
        ),
    );
    let report = p.run_job("awkward");
    let id = report["snapshot"].as_str().unwrap().to_string();
    let snap = p.snapshot(&id);
    assert_eq!(recorded(&snap, "objects"), objects.len() as u64);

    // The key mapping, as documented in docs/sources/s3.md.
    let dir = p.restore(&id, "dir");
    let files = files_below(&dir.join("objects"));
    let mapped = [
        ("a/%object", "a"),
        ("a/b", "a/b"),
        ("a/%%object", "a/%object"),
        ("%%top", "%top"),
        ("dir with space/f#1?.txt", "dir with space/f#1?.txt"),
        ("ünï/cödé", "ünï/cödé"),
        ("empty", "empty"),
        ("big/medium.bin", "big/medium.bin"),
        ("big/stream.bin", "big/stream.bin"),
        ("big/huge.bin", "big/huge.bin"),
    ];
    let want: BTreeSet<String> = mapped.iter().map(|(path, _)| path.to_string()).collect();
    let got: BTreeSet<String> = files.keys().cloned().collect();
    assert_eq!(got, want);
    for (path, key) in mapped {
        assert!(
            std::fs::read(&files[path]).unwrap() == expected[key].data,
            "{path} does not hold the object {key}"
        );
    }

    // `SNAPSHOT:/objects` restores the objects alone: plain keys land as they are.
    let plain = p.restore(&format!("{id}:/objects"), "plain");
    assert!(
        std::fs::read(plain.join("big/stream.bin")).unwrap() == expected["big/stream.bin"].data
    );
    assert!(!plain.join("objects.jsonl").exists());

    // The drill restores into scratch space and reads every file back.
    let drill = p.lifeline(["drill", "awkward", "--json"]);
    drill.assert_success();
    let drilled = drill.json();
    assert_eq!(drilled["passed"], true, "{drilled:#}");
    assert!(
        drilled["sources"][0]
            .to_string()
            .contains("equal the snapshot"),
        "{drilled:#}"
    );

    // Only what --include selects, then everything, into the second bucket.
    let part_url = format!("s3://{}/{prefix}/part", garage.bucket2);
    p.lifeline([
        "s3",
        "restore",
        &id,
        "--to",
        &part_url,
        "--source",
        "awkward",
        "--include",
        "a/**",
        "--include",
        "%top",
        "--include",
        "big/*",
    ])
    .assert_success();
    let part: BTreeMap<String, Object> = expected
        .iter()
        .filter(|(k, _)| k.starts_with("a/") || *k == "%top" || k.starts_with("big/"))
        .map(|(k, o)| (k.clone(), o.clone()))
        .collect();
    assert_eq!(part.len(), 6);
    assert_bucket_holds(&garage.open(&part_url), &part);
    let all_url = format!("s3://{}/{prefix}/all", garage.bucket2);
    p.lifeline([
        "s3", "restore", "latest", "--to", &all_url, "--source", "awkward",
    ])
    .assert_success()
    .assert_output_contains("10 of 10 object(s) put");
    assert_bucket_holds(&garage.open(&all_url), &expected);
}

/// Mistakes are refused with what to do: a bucket URL without a bucket, a missing bucket, a
/// snapshot of another kind, a source that is not an s3 one.
#[test]
fn mistakes_are_refused_with_what_to_do() {
    let garage = S3Env::from_env();
    let p = Planned::new(
        &garage,
        &garage.endpoint,
        None,
        r#"[[sources]]
name = "nobucket"
kind = "s3"
class = "media"
bucket = "s3:///prefix"
s3 = { secret_access_key_file = "/nonexistent/secret" }
"#,
    );
    let out = p.lifeline(["plan", "check"]);
    out.assert_code(EXIT_FATAL);
    for needle in ["names no bucket", "/nonexistent/secret does not exist"] {
        assert!(out.stderr_str().contains(needle), "{}", out.describe());
    }

    let p = Planned::new(
        &garage,
        &garage.endpoint,
        None,
        r#"[[sources]]
name = "missing"
kind = "s3"
class = "media"
bucket = "s3://lifeline-no-such-bucket/x"
{S3}

[[sources]]
name = "docs"
kind = "files"
class = "media"
paths = ["/etc/passwd"]
"#,
    );
    let out = p.lifeline(["run", "missing"]);
    out.assert_code(EXIT_FATAL);
    assert!(
        out.all_output().contains("lifeline-no-such-bucket"),
        "{}",
        out.describe()
    );
    let files = p.run_job("docs");
    let id = files["snapshot"].as_str().unwrap();
    let dst = format!("s3://{}/{}", garage.bucket2, unique_prefix("s3src-never"));
    let out = p.lifeline(["s3", "restore", id, "--to", &dst, "--source", "missing"]);
    out.assert_code(EXIT_FATAL);
    assert!(
        out.stderr_str()
            .contains("is a files snapshot, not an s3 one"),
        "{}",
        out.describe()
    );
    let out = p.lifeline(["s3", "restore", "latest", "--to", &dst, "--source", "docs"]);
    out.assert_code(EXIT_FATAL);
    assert!(
        out.stderr_str()
            .contains("is a files source, not an s3 one"),
        "{}",
        out.describe()
    );
    assert!(garage.open(&dst).list().unwrap().is_empty());
}

/// PUT `data` under `key` with curl, which, unlike lifeline's client, can name any key.
#[track_caller]
fn curl_put(garage: &S3Env, bucket: &str, key: &str, data: &str) {
    let out = run(
        std::process::Command::new("curl")
            .args(["-sS", "--fail-with-body", "-X", "PUT", "--aws-sigv4"])
            .arg(format!("aws:amz:{}:s3", garage.region))
            .arg("--user")
            .arg(format!("{}:{}", garage.key_id, garage.secret))
            .args([
                "-H",
                "x-amz-content-sha256: UNSIGNED-PAYLOAD",
                "--data-binary",
                data,
            ])
            .arg(format!("{}/{bucket}/{key}", garage.endpoint)),
        None,
    );
    out.assert_success();
}

/// A folder marker (`dir/`) is listed as `dir`, found missing and counted as vanished; a key with
/// an empty segment makes the listing fail, saying why (docs/sources/s3.md, limits).
#[test]
fn folder_markers_vanish_and_unnamable_keys_fail_the_capture_saying_why() {
    let garage = S3Env::from_env();
    let prefix = unique_prefix("s3src-limits");
    let src_url = format!("s3://{}/{prefix}", garage.bucket);
    let src = garage.open(&src_url);
    put_all(
        &src,
        &[
            object("ok", b"ok".to_vec(), None, &[]),
            object("folder/x", b"x".to_vec(), None, &[]),
        ],
    );
    curl_put(&garage, &garage.bucket, &format!("{prefix}/folder/"), "");
    let p = Planned::new(
        &garage,
        &garage.endpoint,
        None,
        &format!(
            r#"[[sources]]
name = "limits"
kind = "s3"
class = "media"
bucket = "{src_url}"
{{S3}}
"#
        ),
    );
    let report = p.run_job("limits");
    let snap = p.snapshot(report["snapshot"].as_str().unwrap());
    assert_eq!(recorded(&snap, "objects"), 2, "{snap}");
    assert_eq!(recorded(&snap, "vanished"), 1, "{snap}");

    curl_put(&garage, &garage.bucket, &format!("{prefix}/a//b"), "x");
    let out = p.lifeline(["run", "limits"]);
    out.assert_code(EXIT_FATAL);
    for needle in ["cannot name", "empty segment", "docs/sources/s3.md"] {
        assert!(out.stderr_str().contains(needle), "{}", out.describe());
    }
}
