//! The audit-table source (issue 12) on a real PostgreSQL 15: hourly exports by a watermark column
//! under concurrent writers and late commits, each row exactly once; the hash chain and what
//! `audit-table verify` finds when an export is removed, altered or reordered; a plan-driven run,
//! its restore by hand with psql, its drill; and an export blocked by an open transaction.
//!
//! Needs `scripts/postgres.sh install` and `eval "$(scripts/postgres.sh env)"`; without them these
//! tests fail, they never skip.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::pg::{as_postgres, shared_dir, Cluster, PgVersion};
use common::*;
use serde_json::Value;
use tempfile::TempDir;

/// The platform's audit table, with a column of every awkward kind for CSV: commas, quotes and
/// newlines in text, JSON, NULLs.
const AUDIT_SQL: &str = "
CREATE TABLE audit_log (
    id bigserial PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    actor text,
    action text NOT NULL,
    details jsonb
);
CREATE INDEX ON audit_log (created_at);
";

/// One source of the plan: name, table, watermark, format and extra keys.
struct Src<'a> {
    name: &'a str,
    table: &'a str,
    watermark: &'a str,
    format: &'a str,
    extra: &'a str,
}

const fn src<'a>(name: &'a str, table: &'a str, watermark: &'a str, format: &'a str) -> Src<'a> {
    Src {
        name,
        table,
        watermark,
        format,
        extra: "",
    }
}

/// A PostgreSQL 15 server with `sql` applied, a repository and a plan with `sources` in a class
/// without retention.
struct Fixture {
    repo: Repo,
    plan: PathBuf,
    pg: Cluster,
    _dir: TempDir,
}

impl Fixture {
    fn new(sql: &str, sources: &[Src<'_>]) -> Fixture {
        let dir = shared_dir("lifeline-audit-table-");
        let pg = Cluster::init(PgVersion::V15, dir.path(), &[]);
        pg.start();
        pg.psql(sql);
        let repo = Repo::init();
        let mut text = format!(
            r#"[repository]
url = "{}"
key = {{ password_file = "{}" }}

[tiers]
tier3 = {{ rto = "4h", rpo = "1h" }}

[classes.permanent]
tier = "tier3"
"#,
            repo.path.display(),
            repo.password_file.display()
        );
        for s in sources {
            text.push_str(&format!(
                "\n[[sources]]\nname = \"{}\"\nkind = \"audit-table\"\nclass = \"permanent\"\ndb = \"{}\"\ntable = \"{}\"\nwatermark = \"{}\"\nformat = \"{}\"\nschedule = \"0 * * * *\"\n{}\n",
                s.name,
                pg.url(),
                s.table,
                s.watermark,
                s.format,
                s.extra
            ));
        }
        let plan = repo.sandbox.write("plan.toml", text);
        Fixture {
            repo,
            plan,
            pg,
            _dir: dir,
        }
    }

    fn lifeline<I, S>(&self, args: I) -> Out
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut c = self.repo.sandbox.lifeline();
        c.arg("--config").arg(&self.plan).args(args);
        run(&mut c, None)
    }

    /// `lifeline run SOURCE` in the background; its output goes to the returned file.
    fn spawn_run(&self, source: &str) -> (Child, PathBuf) {
        let log = self.repo.sandbox.join(format!("run-{source}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = self
            .repo
            .sandbox
            .lifeline()
            .arg("--config")
            .arg(&self.plan)
            .args(["run", source])
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        (child, log)
    }

    /// `lifeline run SOURCE`, which must succeed; returns the new snapshot's ID.
    #[track_caller]
    fn export(&self, source: &str) -> String {
        let out = self.lifeline(["--json", "run", source]);
        out.assert_success();
        out.json()["snapshot"].as_str().unwrap().to_string()
    }

    /// The source's exports, by sequence number.
    fn exports(&self, source: &str) -> Vec<Value> {
        let out = self.lifeline(["snapshots", "--json", "--tag", &format!("source={source}")]);
        let mut all: Vec<Value> = out.assert_success().json().as_array().unwrap().clone();
        all.sort_by_key(seq);
        all
    }

    /// The stored file of an export.
    fn file(&self, export: &Value) -> Vec<u8> {
        let id = export["id"].as_str().unwrap();
        let name = export["source"]["file"].as_str().unwrap();
        self.lifeline(["dump", id, name])
            .assert_success()
            .stdout
            .clone()
    }

    /// The `action` column of every row of an export, in file order.
    fn actions(&self, export: &Value) -> Vec<String> {
        rows(
            &self.file(export),
            export["source"]["format"].as_str().unwrap(),
        )
        .into_iter()
        .map(|r| r["action"].as_str().unwrap().to_string())
        .collect()
    }

    fn client(&self) -> postgres::Client {
        postgres::Client::connect(
            &format!(
                "host=127.0.0.1 port={} user=postgres dbname=postgres",
                self.pg.port
            ),
            postgres::NoTls,
        )
        .unwrap()
    }

    /// `audit-table verify --json ARGS`, with its exit code.
    fn verify(&self, args: &[&str]) -> (Option<i32>, Value) {
        let mut all = vec!["--json", "audit-table", "verify"];
        all.extend_from_slice(args);
        let out = self.lifeline(all);
        (out.code(), out.json())
    }
}

fn seq(export: &Value) -> u64 {
    export["source"]["seq"].as_str().unwrap().parse().unwrap()
}

/// The rows of an export file as JSON objects: JSON lines as they are; CSV with the header's names
/// (a small parser for PostgreSQL's CSV: quoted fields may hold commas, doubled quotes, newlines).
fn rows(bytes: &[u8], format: &str) -> Vec<serde_json::Map<String, Value>> {
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    if format == "jsonl" {
        return text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    }
    let mut records: Vec<Vec<Option<String>>> = Vec::new();
    let (mut record, mut field, mut quoted, mut in_quotes) =
        (Vec::new(), String::new(), false, false);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, in_quotes) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', true) => in_quotes = false,
            ('"', false) => {
                in_quotes = true;
                quoted = true;
            }
            (',', false) => {
                record.push((quoted || !field.is_empty()).then(|| std::mem::take(&mut field)));
                quoted = false;
            }
            ('\n', false) => {
                record.push((quoted || !field.is_empty()).then(|| std::mem::take(&mut field)));
                quoted = false;
                records.push(std::mem::take(&mut record));
            }
            (c, _) => field.push(c),
        }
    }
    assert!(
        record.is_empty() && field.is_empty(),
        "CSV does not end with a newline"
    );
    let header: Vec<String> = records.remove(0).into_iter().map(Option::unwrap).collect();
    records
        .into_iter()
        .map(|r| {
            header
                .iter()
                .cloned()
                .zip(r.into_iter().map(|v| v.map_or(Value::Null, Value::String)))
                .collect()
        })
        .collect()
}

/// Every value of `action` across a source's exports, with how often it appears.
fn exported(f: &Fixture, source: &str) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for e in f.exports(source) {
        for a in f.actions(&e) {
            *seen.entry(a).or_insert(0) += 1;
        }
    }
    seen
}

/// Writers in several threads insert rows in transactions of 1 to 3 rows, some held open a while,
/// while two sources (by id as CSV, by created_at as JSON lines) export again and again: across the
/// exports every row is there exactly once, and the chains verify.
#[test]
fn concurrent_writers_across_exports_every_row_exactly_once() {
    let f = Fixture::new(
        AUDIT_SQL,
        &[
            src("by-id", "audit_log", "id", "csv"),
            src("by-time", "audit_log", "created_at", "jsonl"),
        ],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4u64)
        .map(|w| {
            let stop = Arc::clone(&stop);
            let mut client = f.client();
            thread::spawn(move || {
                let mut rng = Rng::new(w + 1);
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let mut tx = client.transaction().unwrap();
                    for _ in 0..=(rng.next_u64() % 3) {
                        n += 1;
                        tx.execute(
                            "INSERT INTO audit_log (actor, action, details) VALUES ($1, $2, $3::text::jsonb)",
                            &[
                                &format!("writer, \"{w}\""),
                                &format!("w{w}-{n}"),
                                &format!("{{\"n\": {n}}}"),
                            ],
                        )
                        .unwrap();
                        // Some transactions stay open across an export's choice of its bound.
                        if rng.next_u64() % 4 == 0 {
                            thread::sleep(Duration::from_millis(rng.next_u64() % 40));
                        }
                    }
                    tx.commit().unwrap();
                }
                n
            })
        })
        .collect();
    for _ in 0..3 {
        f.export("by-id");
        f.export("by-time");
        thread::sleep(Duration::from_millis(150));
    }
    stop.store(true, Ordering::Relaxed);
    let written: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    // A clock watermark's bound stays a second behind its export: the last rows need that long.
    thread::sleep(Duration::from_millis(1100));
    f.export("by-id");
    f.export("by-time");

    let in_table = f.pg.psql("SELECT count(*) FROM audit_log");
    assert_eq!(in_table, written.to_string());
    for source in ["by-id", "by-time"] {
        let seen = exported(&f, source);
        let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "{source} exported rows twice: {twice:?}");
        assert_eq!(
            seen.len() as u64,
            written,
            "{source} exported {} distinct rows of {written}",
            seen.len()
        );
        let exports = f.exports(source);
        assert_eq!(exports.len(), 4);
        let recorded: u64 = exports
            .iter()
            .map(|e| {
                e["source"]["rows"]
                    .as_str()
                    .unwrap()
                    .parse::<u64>()
                    .unwrap()
            })
            .sum();
        assert_eq!(recorded, written, "{source}: rows recorded");
    }
    let (code, report) = f.verify(&[]);
    assert_eq!(code, Some(EXIT_OK), "{report:#}");
    assert_eq!(report["chains"].as_array().unwrap().len(), 2, "{report:#}");
}

/// A transaction takes a lower id and an earlier `now()` than one that commits before the export
/// starts, and commits only while the export runs: the export waits for it and takes its row, once.
/// First with the row inserted before the export begins (the transaction has an ID), then with only
/// `now()` and `nextval()` taken (no transaction ID yet: only its virtual ID shows it is open, and a
/// bound read from `pg_current_snapshot()` alone would skip the row).
#[test]
fn a_late_commit_below_the_bound_is_exported_exactly_once_by_id_and_by_time() {
    let f = Fixture::new(
        AUDIT_SQL,
        &[
            src("by-id", "audit_log", "id", "csv"),
            src("by-time", "audit_log", "created_at", "jsonl"),
        ],
    );
    let mut late = f.client();
    let mut other = f.client();
    other
        .execute("INSERT INTO audit_log (action) VALUES ('before')", &[])
        .unwrap();
    f.export("by-id");
    f.export("by-time");

    for case in ["a", "b"] {
        let mut tx = late.transaction().unwrap();
        let mut taken: Option<i64> = None;
        if case == "a" {
            tx.execute("INSERT INTO audit_log (action) VALUES ('late-a')", &[])
                .unwrap();
        } else {
            let row = tx
                .query_one(
                    "SELECT nextval('audit_log_id_seq'), pg_current_xact_id_if_assigned() IS NULL",
                    &[],
                )
                .unwrap();
            taken = Some(row.get(0));
            assert!(
                row.get::<_, bool>(1),
                "case b needs a transaction without an ID (nextval logged the sequence?)"
            );
        }
        other
            .execute(
                "INSERT INTO audit_log (action) VALUES ($1)",
                &[&format!("early-{case}")],
            )
            .unwrap();
        // Past the clock watermark's margin, so the export's bound covers both rows.
        thread::sleep(Duration::from_millis(1200));
        let mut runs = [f.spawn_run("by-id"), f.spawn_run("by-time")];
        // Both exports reach their wait (their session runs the wait's query) and stay there.
        let waiting = "SELECT count(*) FROM pg_stat_activity \
                        WHERE application_name = 'lifeline audit-table export' \
                          AND (query LIKE '%virtualxid = ANY%' OR query LIKE '%pg_xact_status%')";
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while other.query_one(waiting, &[]).unwrap().get::<_, i64>(0) < 2 {
            for (r, log) in runs.iter_mut() {
                assert!(
                    r.try_wait().unwrap().is_none(),
                    "case {case}: an export ended without waiting for the open transaction:\n{}",
                    std::fs::read_to_string(log).unwrap()
                );
            }
            assert!(
                std::time::Instant::now() < deadline,
                "case {case}: the exports never began to wait"
            );
            thread::sleep(Duration::from_millis(50));
        }
        thread::sleep(Duration::from_millis(500));
        for (r, _) in runs.iter_mut() {
            assert!(
                r.try_wait().unwrap().is_none(),
                "case {case}: the export did not wait for the open transaction"
            );
        }
        if let Some(id) = taken {
            // The id and now() taken before the other row's, written only now.
            tx.execute(
                "INSERT INTO audit_log (id, action) VALUES ($1, 'late-b')",
                &[&id],
            )
            .unwrap();
        }
        tx.commit().unwrap();
        for (r, log) in runs.iter_mut() {
            let status = wait_timeout(r, Duration::from_secs(120), "the export");
            assert!(
                status.success(),
                "case {case}: the export failed:\n{}",
                std::fs::read_to_string(log).unwrap()
            );
        }
        for source in ["by-id", "by-time"] {
            let newest = f.exports(source).pop().unwrap();
            let actions = f.actions(&newest);
            assert!(
                actions.contains(&format!("late-{case}"))
                    && actions.contains(&format!("early-{case}")),
                "{source}, case {case}: the export that waited holds {actions:?}"
            );
            assert!(
                newest["source"]["waited_for"].as_str().unwrap() != "0",
                "{newest:#}"
            );
        }
    }
    let order =
        f.pg.psql("SELECT string_agg(action, ',' ORDER BY id) FROM audit_log");
    assert_eq!(order, "before,late-a,early-a,late-b,early-b");
    thread::sleep(Duration::from_millis(1100));
    for source in ["by-id", "by-time"] {
        f.export(source);
        let seen = exported(&f, source);
        assert_eq!(
            seen.into_iter().collect::<Vec<_>>(),
            ["before", "early-a", "early-b", "late-a", "late-b"].map(|a| (a.to_string(), 1)),
            "{source}"
        );
    }
    let (code, report) = f.verify(&[]);
    assert_eq!(code, Some(EXIT_OK), "{report:#}");
}

/// An export waits at most `timeout` for a transaction that stays open, then fails naming it, and
/// saves nothing; once the transaction ends the next run exports.
#[test]
fn an_open_transaction_past_the_timeout_fails_the_export_naming_it_and_saves_nothing() {
    let f = Fixture::new(
        AUDIT_SQL,
        &[Src {
            extra: "timeout = \"2s\"",
            ..src("audit", "audit_log", "id", "csv")
        }],
    );
    let mut client = f.client();
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let mut tx = client.transaction().unwrap();
    tx.execute("INSERT INTO audit_log (action) VALUES ('held')", &[])
        .unwrap();
    let out = f.lifeline(["run", "audit"]);
    out.assert_code(EXIT_FATAL);
    let err = out.stderr_str();
    assert!(err.contains("waited 2 s for 1 transaction(s)"), "{err}");
    assert!(
        err.contains(&format!("backend pid {pid} (idle in transaction")),
        "{err}"
    );
    assert!(err.contains("nothing was saved"), "{err}");
    assert!(f.exports("audit").is_empty());
    tx.commit().unwrap();
    f.export("audit");
    let exports = f.exports("audit");
    assert_eq!(f.actions(&exports[0]), ["held"]);
}

/// Three chains of four exports each; then one export is forgotten by ID, one has its pack damaged,
/// and two are swapped and re-linked by a forger who knows the hash: `audit-table verify` names
/// each, per chain, and an anchor shows a cut-off head.
#[test]
fn verify_detects_a_removed_an_altered_and_a_reordered_export() {
    let tables = ["audit_a", "audit_b", "audit_c"];
    let sql: String = tables
        .iter()
        .map(|t| format!("CREATE TABLE {t} (id bigserial PRIMARY KEY, action text NOT NULL);\n"))
        .collect();
    let f = Fixture::new(
        &sql,
        &[
            src("removed", "audit_a", "id", "csv"),
            src("altered", "audit_b", "id", "csv"),
            src("reordered", "audit_c", "id", "jsonl"),
        ],
    );
    let mut altered_pack = None;
    for round in 1..=4 {
        for (source, table) in ["removed", "altered", "reordered"].iter().zip(tables) {
            f.pg.psql(&format!(
                "INSERT INTO {table} (action) SELECT '{table} round {round} row ' || g FROM generate_series(1, 3) g"
            ));
            let before = f.repo.packs();
            f.export(source);
            if *source == "altered" && round == 2 {
                let new: Vec<PathBuf> = f
                    .repo
                    .packs()
                    .into_iter()
                    .filter(|p| !before.contains(p))
                    .collect();
                altered_pack = new
                    .into_iter()
                    .max_by_key(|p| std::fs::metadata(p).unwrap().len());
            }
        }
    }
    let (code, report) = f.verify(&[]);
    assert_eq!(code, Some(EXIT_OK), "{report:#}");
    let head_of_removed = report["chains"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["chain"] == "removed")
        .unwrap()["head"]["chain_sha256"]
        .as_str()
        .unwrap()
        .to_string();

    // Removed: an administrator forgets export #2 by ID (a policy never would).
    let removed = f.exports("removed");
    let second = removed[1]["id"].as_str().unwrap();
    f.lifeline(["forget", second]).assert_success();
    let log = f.lifeline(["audit", "log"]).assert_success().stdout_str();
    assert!(log.lines().any(|l| l.contains("forget")), "{log}");
    let (code, report) = f.verify(&["removed"]);
    assert_eq!(code, Some(EXIT_FATAL));
    let problems = report["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{report:#}");
    assert_eq!(problems[0]["kind"], "missing");
    assert!(
        problems[0]["message"]
            .as_str()
            .unwrap()
            .contains("export #2 is not in the repository"),
        "{report:#}"
    );

    // The newest export deleted from storage: only an anchor taken earlier shows it.
    let head = removed[3]["id"].as_str().unwrap();
    std::fs::remove_file(f.repo.path.join("snapshots").join(head)).unwrap();
    let (_, report) = f.verify(&["removed"]);
    assert_eq!(
        report["problems"].as_array().unwrap().len(),
        1,
        "{report:#}"
    );
    let (code, report) = f.verify(&["removed", "--anchor", &head_of_removed]);
    assert_eq!(code, Some(EXIT_FATAL));
    let problems = report["problems"].as_array().unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p["kind"] == "missing"
                && p["message"].as_str().unwrap().contains(&head_of_removed)),
        "{report:#}"
    );

    // Altered: a byte of export #2's pack flipped.
    let pack = altered_pack.expect("export #2 of `altered` wrote a pack");
    let mut bytes = std::fs::read(&pack).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&pack, bytes).unwrap();
    let (code, report) = f.verify(&["altered"]);
    assert_eq!(code, Some(EXIT_FATAL));
    let problems = report["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{report:#}");
    assert_eq!(problems[0]["kind"], "altered");
    assert_eq!(problems[0]["seq"], 2);

    // Reordered: #2 and #3 swapped and re-linked, every chain hash recomputed.
    forge_swap(&f.repo.path, "reordered");
    let (code, report) = f.verify(&["reordered"]);
    assert_eq!(code, Some(EXIT_FATAL));
    let kinds: Vec<&str> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"reordered"), "{report:#}");
    assert!(!kinds.contains(&"altered"), "{report:#}");

    // The text report: one line per problem, exit 1.
    let out = f.lifeline(["audit-table", "verify"]);
    out.assert_code(EXIT_FATAL);
    let text = out.stdout_str();
    assert!(
        text.contains("error: missing: removed: export #2 is not"),
        "{text}"
    );
    assert!(
        text.contains("error: altered: altered #2: its data cannot be read back"),
        "{text}"
    );
    assert!(text.contains("error: reordered: reordered #3"), "{text}");
}

/// What a forger with the repository's key and the hash's definition does to swap exports #2 and
/// #3: renumber them, re-link them and #4, recompute every chain hash, save the new snapshots and
/// delete the originals.
fn forge_swap(repo: &Path, chain: &str) {
    use lifeline_repo::storage::LocalStorage;
    use lifeline_repo::Repository;
    use lifeline_sources::audit_export::chain::Chains;
    use lifeline_sources::audit_export::keys;

    let repo = Repository::open(
        Arc::new(LocalStorage::new(repo.to_str().unwrap())),
        PASSWORD.as_bytes(),
    )
    .unwrap();
    let mut exports = Chains::load(&repo).unwrap().exports.remove(chain).unwrap();
    assert_eq!(exports.len(), 4);
    let originals: Vec<_> = exports[1..].iter().map(|e| e.id).collect();
    // New order: #1, old #3, old #2, #4.
    exports.swap(1, 2);
    let mut previous = (exports[0].chain_sha256.clone(), exports[0].id);
    for (i, e) in exports.iter_mut().enumerate().skip(1) {
        e.link.seq = i as u64 + 1;
        e.link.previous_chain = Some(previous.0.clone());
        let hash = e.link.hash().unwrap();
        let mut snapshot = e.snapshot.clone();
        e.link.record(&mut snapshot.source);
        snapshot
            .source
            .insert(keys::CHAIN_SHA256.into(), hash.clone());
        snapshot
            .source
            .insert(keys::PREVIOUS.into(), previous.1.to_hex());
        let id = repo.save_snapshot(&snapshot).unwrap();
        previous = (hash, id);
    }
    for id in originals {
        repo.delete_snapshot(&id).unwrap();
    }
}

/// `lifeline run` from a plan: the snapshot, its tags and records; `dump | sha256sum` gives the
/// recorded hash; the exports restore by hand with psql (CSV and JSON lines) into tables equal to
/// the original; the drill passes; no retention policy removes an export; `plan check` refuses a
/// policy on their class.
#[test]
fn a_plan_run_records_tags_and_hashes_restores_with_psql_drills_and_stays_permanent() {
    let f = Fixture::new(
        AUDIT_SQL,
        &[
            src("audit-csv", "audit_log", "id", "csv"),
            src("audit-json", "audit_log", "created_at", "jsonl"),
        ],
    );
    let insert = "INSERT INTO audit_log (actor, action, details) VALUES \
        ('dr. a, md', 'view \"chart\"', '{\"patient\": 7}'), \
        (NULL, E'multi\\nline', NULL), ('b', '', '[]')";
    f.pg.psql(insert);
    thread::sleep(Duration::from_millis(1100));
    f.export("audit-csv");
    f.export("audit-json");
    f.pg.psql(insert);
    thread::sleep(Duration::from_millis(1100));
    let id = f.export("audit-csv");
    f.export("audit-json");
    // An hour without rows is an export too: it proves the hour was empty.
    f.export("audit-csv");

    let exports = f.exports("audit-csv");
    assert_eq!(exports.len(), 3);
    let second = &exports[1];
    assert_eq!(second["id"], id.as_str());
    assert_eq!(second["kind"], "audit-table");
    assert_eq!(second["tags"]["source"], "audit-csv");
    assert_eq!(second["tags"]["retention"], "permanent");
    let s = &second["source"];
    assert_eq!(s["chain"], "audit-csv");
    assert_eq!(s["seq"], "2");
    assert_eq!(s["table"], "audit_log");
    assert_eq!(s["watermark"], "id");
    assert_eq!(s["watermark_type"], "bigint");
    assert_eq!(s["format"], "csv");
    assert_eq!(s["file"], "audit_log.csv");
    assert_eq!(
        (s["after"].as_str(), s["through"].as_str()),
        (Some("3"), Some("6"))
    );
    assert_eq!(
        (s["first"].as_str(), s["last"].as_str()),
        (Some("4"), Some("6"))
    );
    assert_eq!(s["rows"], "3");
    assert_eq!(s["previous"], exports[0]["id"]);
    assert_eq!(
        s["previous_chain_sha256"],
        exports[0]["source"]["chain_sha256"]
    );
    assert_eq!(exports[2]["source"]["rows"], "0");
    assert_eq!(exports[2]["source"]["after"], "6");
    assert!(exports[2]["source"]["first"].is_null());
    // `lifeline dump … | sha256sum`, as the platform's old manifest was checked.
    let mut sha = std::process::Command::new("sha256sum");
    let hashed = run(&mut sha, Some(&f.file(second)))
        .assert_success()
        .stdout_str();
    assert_eq!(
        hashed.split_whitespace().next(),
        s["content_sha256"].as_str()
    );

    // Restore by hand: every export, oldest first, into an empty table of the same shape.
    let shape = "CREATE TABLE audit_log (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, \
                 actor text, action text NOT NULL, details jsonb)";
    for (db, source, load) in [
        (
            "restored_csv",
            "audit-csv",
            vec![r"\copy audit_log FROM STDIN (FORMAT csv, HEADER)"],
        ),
        (
            "restored_json",
            "audit-json",
            vec![
                "CREATE TEMP TABLE export (doc jsonb)",
                r"\copy export FROM STDIN (FORMAT csv, QUOTE e'\x01', DELIMITER e'\x02')",
                "INSERT INTO audit_log SELECT (jsonb_populate_record(NULL::audit_log, doc)).* FROM export",
            ],
        ),
    ] {
        f.pg.psql(&format!("CREATE DATABASE {db}"));
        f.pg.psql_db(db, shape);
        for e in f.exports(source) {
            let mut psql = as_postgres(f.pg.bin("psql"));
            psql.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres"])
                .args(["-p", &f.pg.port.to_string(), "-d", db]);
            for command in &load {
                psql.arg("-c").arg(command);
            }
            run(&mut psql, Some(&f.file(&e))).assert_success();
        }
        let digest = "SELECT count(*) || ' ' || md5(string_agg(t::text, '|' ORDER BY id)) FROM audit_log t";
        assert_eq!(f.pg.psql_db(db, digest), f.pg.psql(digest), "{db}");
        assert!(f.pg.psql(digest).starts_with("6 "));
    }

    // The drill restores the newest export and checks it against its record.
    let out = f.lifeline(["--json", "drill", "audit-csv"]);
    out.assert_success();
    let drilled = out.json();
    assert_eq!(drilled["passed"], true, "{drilled:#}");
    let checks: Vec<(String, String)> = drilled["sources"][0]["record"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["result"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        checks,
        ["content hash", "row count", "chain hash", "columns"]
            .map(|n| (n.to_string(), "pass".to_string()))
    );

    // No policy forgets an export.
    let out = f.lifeline(["--json", "forget", "--keep-last", "1"]);
    out.assert_success();
    assert_eq!(f.exports("audit-csv").len(), 3);
    assert_eq!(f.exports("audit-json").len(), 2);
    assert!(out
        .stdout_str()
        .contains("permanent (tag retention=permanent)"));

    // A retention policy on the class is refused, naming the source.
    let text = std::fs::read_to_string(&f.plan).unwrap().replace(
        "tier = \"tier3\"\n",
        "tier = \"tier3\"\nretention = { daily = 30 }\n",
    );
    std::fs::write(&f.plan, text).unwrap();
    let out = f.lifeline(["plan", "check"]);
    out.assert_code(EXIT_FATAL);
    assert!(
        out.stderr_str().contains(
            "audit-table source \"audit-csv\" is in class \"permanent\", whose retention (daily 30) would forget exports"
        ),
        "{}",
        out.describe()
    );
}
