//! `lifeline drill` (issue: restore drills that measure RTO/RPO), on the real binary: a healthy
//! PostgreSQL source passes with its RTO and RPO recorded, a logical dump is restored into a scratch
//! server with its counts compared, a missed target, a flipped byte in a pack and a deleted WAL
//! segment each fail the drill and say why; files and command output are read back file by file.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/drill.rs"]
mod drill_helpers;

use std::fs;
use std::path::Path;

use common::pg::PgVersion;
use common::pitr::{s, switch_wal, Env, NOW_SQL};
use common::*;
use drill_helpers::{check, drill_records, metric, steps, FlippedPack};
use serde_json::Value;

const SCHEMA_SQL: &str = "
CREATE SCHEMA chatbot_auth;
CREATE TABLE chatbot_auth.users (id int PRIMARY KEY, name text NOT NULL);
INSERT INTO chatbot_auth.users SELECT g, 'user ' || g FROM generate_series(1, 42) g;
CREATE TABLE audit_logs (id serial PRIMARY KEY, what text NOT NULL);
CREATE INDEX ON audit_logs (what);
INSERT INTO audit_logs (what) SELECT 'event ' || g FROM generate_series(1, 7) g;
";

/// The plan's tiers, classes and sources, appended to the harness's config (repository, key,
/// PostgreSQL programs).
fn pg_plan(url: &str, rto: &str) -> String {
    format!(
        r#"
[tiers]
tier1 = {{ rto = "{rto}", rpo = "1h" }}

[classes.db]
tier = "tier1"

[[sources]]
name = "pg"
kind = "postgres"
class = "db"
db = "{url}"
checks = [
  {{ name = "users", sql = "SELECT count(*) FROM chatbot_auth.users", expect = "42" }},
  {{ name = "audit", sql = "SELECT count(*) FROM audit_logs" }},
]

[[sources]]
name = "dump"
kind = "postgres-dump"
class = "db"
db = "{url}"
checks = [{{ name = "users", sql = "SELECT count(*) FROM chatbot_auth.users", expect = "42" }}]
"#
    )
}

/// The plan's sources back up database `app`; `base` is the harness's config.
fn write_plan(env: &Env, base: &str, rto: &str) {
    fs::write(
        &env.cfg,
        format!("{base}{}", pg_plan(&env.cluster.url_db("app"), rto)),
    )
    .unwrap();
}

/// A cluster whose database `app` holds the schema, and the plan for it.
fn env_with_app(version: PgVersion, name: &str) -> (Env, String) {
    let env = Env::new(version, name, &[]);
    env.cluster.psql("CREATE DATABASE app");
    env.cluster.psql_db("app", SCHEMA_SQL);
    let base = fs::read_to_string(&env.cfg).unwrap();
    write_plan(&env, &base, "15m");
    env.run(&["plan", "check"]).assert_success();
    (env, base)
}

/// `drill --json SOURCE`: the one source's drill.
#[track_caller]
fn drill_json(env: &Env, source: &str, code: i32) -> Value {
    let out = env.run(&["--json", "drill", source]);
    out.assert_code(code);
    let report = out.json();
    assert_eq!(report["passed"], code == EXIT_OK, "{report:#}");
    report["sources"][0].clone()
}

/// One PostgreSQL 15 server (it has amcheck) for every PostgreSQL case, in the order a damaged
/// repository allows: healthy drills first, the deleted WAL segment last.
#[test]
fn postgres_drills_measure_rto_and_rpo_and_fail_on_missed_targets_and_damage() {
    let (env, base) = env_with_app(PgVersion::V15, "drill");
    let c = &env.cluster;
    env.run(&["run", "pg"]).assert_success();
    // Written after the backup and archived: the drill recovers past it, so the counts recorded at
    // backup time differ (a warning), and the plan's query sees the new rows.
    c.psql_db(
        "app",
        "INSERT INTO audit_logs (what) VALUES ('after the backup')",
    );
    let later = switch_wal(c);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let between = c.psql(NOW_SQL);
    std::thread::sleep(std::time::Duration::from_millis(300));
    c.psql_db(
        "app",
        "INSERT INTO audit_logs (what) VALUES ('later still')",
    );
    switch_wal(c);

    // A healthy base backup: every step, the checks, RTO and RPO within the tier.
    let drilled = drill_json(&env, "pg", EXIT_OK);
    let record = &drilled["record"];
    assert_eq!(drilled["passed"], true, "{drilled:#}");
    assert_eq!(record["passed"], true);
    assert_eq!(
        steps(record),
        [
            "wal",
            "restore",
            "start server",
            "amcheck",
            "compare",
            "cleanup"
        ]
        .map(|n| (n.to_string(), true))
    );
    let wal = &record["steps"][0]["message"];
    assert!(
        wal.as_str().unwrap().contains(&later) || wal.as_str().unwrap().contains("continuous"),
        "{wal}"
    );
    assert_eq!(check(record, "pg_amcheck")["result"], "pass", "{record:#}");
    let users = check(record, "rows chatbot_auth.users");
    assert_eq!(
        (&users["result"], &users["expected"], &users["actual"]),
        (&"pass".into(), &"42".into(), &"42".into())
    );
    let audit = check(record, "rows public.audit_logs");
    assert_eq!(
        (&audit["result"], &audit["expected"], &audit["actual"]),
        (&"warn".into(), &"7".into(), &"9".into()),
        "{record:#}"
    );
    assert_eq!(check(record, "sql users")["actual"], "42");
    assert_eq!(check(record, "sql users")["result"], "pass");
    assert_eq!(check(record, "sql audit")["actual"], "9");
    let rto = record["rto_seconds"].as_f64().unwrap();
    let rpo = record["rpo_seconds"].as_f64().unwrap();
    assert!(rto > 0.0 && rto < 900.0, "{record:#}");
    assert!((0.0..600.0).contains(&rpo), "{record:#}");
    assert_eq!(record["rto_target_seconds"], 900.0);
    assert_eq!(record["rpo_target_seconds"], 3600.0);
    assert_eq!(record["tier"], "tier1");
    assert!(is_rfc3339(json_str(record, "recovery_point")), "{record:#}");
    assert!(json_str(&record["versions"], "postgres").starts_with("15"));
    // The sealed record in the repository says the same.
    let id = json_str(&drilled, "record_id").to_string();
    let stored = drill_records(&env.repo);
    let (_, mine) = stored.iter().find(|(i, _)| *i == id).unwrap();
    assert!(mine.passed && mine.source == "pg", "{mine:#?}");
    // JSON carries the figure to the last digit, but its parser may round the last bit.
    assert!((mine.rto_seconds - rto).abs() < 1e-9, "{mine:#?}");
    // The base backup counts as verified (by a restore) for --keep-verified.
    let snapshots = env.run(&["--json", "snapshots", "--tag", "source=pg"]);
    let snapshots = snapshots.assert_success().json();
    assert_eq!(snapshots[0]["id"], record["snapshot"]);
    assert_eq!(
        snapshots[0]["verified"]["scope"], "restore",
        "{snapshots:#}"
    );

    // The metrics of a later job carry the drill; this job is the dump the next drill restores.
    let metrics = env.path("lifeline.prom");
    env.run(&["run", "dump", "--metrics-file", s(&metrics)])
        .assert_success();
    let text = fs::read_to_string(&metrics).unwrap();
    let finished = chrono::DateTime::parse_from_rfc3339(json_str(record, "finished")).unwrap();
    let verified = metric(
        &text,
        "lifeline_last_verified_restore_timestamp_seconds{source=\"pg\"",
    );
    assert!((verified - finished.timestamp_millis() as f64 / 1000.0).abs() < 0.01);
    assert!((metric(&text, "lifeline_drill_rto_seconds{source=\"pg\"") - rto).abs() < 1e-9);

    // A chosen time: recovery stops there, and its age is not judged as the RPO.
    let out = env.run(&["--json", "drill", "pg", "--time", &between]);
    out.assert_success();
    let at_time = &out.json()["sources"][0]["record"];
    assert_eq!(check(at_time, "sql audit")["actual"], "8", "{at_time:#}");
    assert_eq!(at_time["rpo_target_seconds"], Value::Null);
    let point = chrono::DateTime::parse_from_rfc3339(json_str(at_time, "recovery_point")).unwrap();
    let wanted = chrono::DateTime::parse_from_rfc3339(&between).unwrap();
    assert!(
        (point - wanted).num_milliseconds().abs() <= 1,
        "{at_time:#}"
    );

    // A logical dump: restored into a scratch server, every count compared exactly.
    let drilled = drill_json(&env, "dump", EXIT_OK);
    let record = &drilled["record"];
    assert_eq!(
        steps(record),
        ["records", "scratch server", "restore", "compare", "cleanup"]
            .map(|n| (n.to_string(), true))
    );
    for (table, rows) in [("chatbot_auth.users", "42"), ("public.audit_logs", "9")] {
        let rows_check = check(record, &format!("rows {table}"));
        assert_eq!(rows_check["result"], "pass", "{record:#}");
        assert_eq!(rows_check["actual"], rows);
    }
    assert_eq!(check(record, "sql users")["result"], "pass");
    assert!(json_str(&record["versions"], "pg_restore").starts_with("15"));

    // A tier whose RTO no restore can meet: the drill restores fine and still fails, naming it.
    write_plan(&env, &base, "1ms");
    let out = env.run(&["drill", "pg"]);
    out.assert_code(EXIT_FATAL)
        .assert_output_contains("RTO target missed")
        .assert_output_contains("tier1 allows 1 ms")
        .assert_output_contains("FAILED");
    write_plan(&env, &base, "15m");

    // A flipped byte in a pack: the restore stops at the damaged object and names it.
    let flipped = FlippedPack::largest(&env.repo);
    let drilled = drill_json(&env, "pg", EXIT_FATAL);
    let reasons = drilled["reasons"].to_string();
    assert!(
        reasons.contains("step restore failed") && reasons.contains(&flipped.name()),
        "{drilled:#}"
    );
    assert!(reasons.contains("damaged"), "{reasons}");
    let record = &drilled["record"];
    assert_eq!(
        steps(record).last(),
        Some(&("cleanup".to_string(), true)),
        "cleaned up after the failure"
    );
    assert_eq!(record["passed"], false);
    assert!(json_str(record, "error").contains(&flipped.name()));
    flipped.restore();

    // A deleted WAL segment between the backup and the newest: the drill fails before restoring,
    // naming the segment.
    fs::remove_file(env.wal_object(&later)).unwrap();
    let drilled = drill_json(&env, "pg", EXIT_FATAL);
    let record = &drilled["record"];
    assert_eq!(
        steps(record),
        [("wal".to_string(), false), ("cleanup".to_string(), true)]
    );
    let error = json_str(record, "error");
    assert!(
        error.contains(&format!("WAL segment {later} is missing")),
        "{error}"
    );
    // Every drill left its record, the failed ones too.
    assert_eq!(drill_records(&env.repo).len(), 6);
}

/// PostgreSQL 18 as the seeds run it: pgvector answers are asked again, an incremental backup is
/// restored with its full backup, and a server without the amcheck extension is a warning.
#[test]
fn pg18_drills_restore_an_incremental_chain_check_pgvector_and_warn_without_amcheck() {
    let (env, _) = env_with_app(PgVersion::V18, "drill18");
    // Streamed, so the incremental job takes a block-level incremental that builds a chain.
    let plan = fs::read_to_string(&env.cfg).unwrap().replace(
        "kind = \"postgres\"\n",
        "kind = \"postgres\"\nmode = \"stream\"\n",
    );
    fs::write(&env.cfg, plan).unwrap();
    env.run(&["plan", "check"]).assert_success();
    let c = &env.cluster;
    c.psql_db(
        "app",
        "CREATE EXTENSION vector;
         CREATE TABLE docs (id int PRIMARY KEY, embedding vector(3) NOT NULL);
         INSERT INTO docs SELECT g, ARRAY[g, g % 7, g % 3]::vector FROM generate_series(1, 30) g;",
    );
    env.run(&["run", "pg"]).assert_success();
    c.psql_db(
        "app",
        "INSERT INTO audit_logs (what) VALUES ('between the backups')",
    );
    env.run(&["run", "pg", "--job", "incremental"])
        .assert_success();

    let drilled = drill_json(&env, "pg", EXIT_OK);
    let record = &drilled["record"];
    let restored = json_str(&record["steps"][1], "message");
    assert!(restored.starts_with("2 base backup(s)"), "{record:#}");
    let amcheck = check(record, "pg_amcheck");
    assert_eq!(amcheck["result"], "warn", "{record:#}");
    assert!(json_str(amcheck, "message").contains("amcheck"));
    assert_eq!(
        check(record, "pgvector public.docs.embedding")["result"],
        "pass"
    );
    // Counted when the incremental backup started, and nothing was written after it.
    let audit = check(record, "rows public.audit_logs");
    assert_eq!(
        (&audit["result"], &audit["actual"]),
        (&"pass".into(), &"8".into())
    );
    assert_eq!(check(record, "rows public.docs")["actual"], "30");
    assert!(json_str(&record["versions"], "postgres").starts_with("18"));
    // The full backup was read too: both count as verified.
    let snapshots = env.run(&["--json", "snapshots", "--tag", "source=pg"]);
    for s in snapshots.assert_success().json().as_array().unwrap() {
        assert_eq!(s["verified"]["scope"], "restore", "{s:#}");
    }

    env.run(&["run", "dump"]).assert_success();
    let drilled = drill_json(&env, "dump", EXIT_OK);
    let record = &drilled["record"];
    assert_eq!(
        check(record, "pgvector public.docs.embedding")["result"],
        "pass"
    );
    assert_eq!(check(record, "rows public.docs")["result"], "pass");
    assert_eq!(check(record, "rows public.audit_logs")["actual"], "8");
}

/// A repository and a plan with a files source and a command source.
fn files_plan(repo: &Repo, data: &Path, rpo: &str) -> std::path::PathBuf {
    repo.sandbox.write(
        "plan.toml",
        format!(
            r#"[repository]
url = "{repo}"
key = {{ password_file = "{pw}" }}

[tiers]
tier3 = {{ rto = "4h", rpo = "{rpo}" }}

[classes.documents]
tier = "tier3"

[[sources]]
name = "docs"
kind = "files"
class = "documents"
paths = ["{data}"]
drill = "0 4 * * 0"

[[sources]]
name = "state"
kind = "command"
class = "documents"
command = "echo '{{\"version\": 4}}'"

[[sources]]
name = "never"
kind = "files"
class = "documents"
paths = ["{data}"]
"#,
            repo = repo.path.display(),
            pw = repo.password_file.display(),
            data = data.display(),
        ),
    )
}

fn lifeline(repo: &Repo, plan: &Path, args: &[&str]) -> Out {
    let mut c = repo.sandbox.lifeline();
    c.arg("--config").arg(plan).args(args);
    run(&mut c, None)
}

#[test]
fn files_and_command_drills_read_every_file_back_and_a_flipped_byte_names_its_pack() {
    let repo = Repo::init();
    let data = repo.sandbox.mkdir("data");
    write_random_file(&data.join("big.bin"), 1, 3 * MIB);
    for i in 0..20 {
        write_file(&data.join(format!("small/{i}.txt")), format!("note {i}\n"));
    }
    write_file(&data.join("deep/er/file.txt"), "deep");
    let plan = files_plan(&repo, &data, "1h");
    lifeline(&repo, &plan, &["plan", "check"]).assert_success();
    lifeline(&repo, &plan, &["run", "docs"]).assert_success();
    let older = repo.snapshots()[0]["id"].as_str().unwrap().to_string();
    write_file(&data.join("small/new.txt"), "new");
    lifeline(&repo, &plan, &["run", "docs"]).assert_success();
    lifeline(&repo, &plan, &["run", "state"]).assert_success();

    let out = lifeline(&repo, &plan, &["--json", "drill", "docs", "state"]);
    out.assert_success();
    let report = out.json();
    assert_eq!(report["passed"], true, "{report:#}");
    let docs = &report["sources"][0]["record"];
    assert_eq!(
        steps(docs),
        ["restore", "verify", "cleanup"].map(|n| (n.to_string(), true))
    );
    let files = check(docs, "files");
    assert_eq!(files["result"], "pass");
    assert!(
        json_str(files, "message").starts_with("all 23 file(s)"),
        "{files}"
    );
    assert!(docs["rpo_seconds"].as_f64().unwrap() < 600.0);
    assert_eq!(docs["rpo_target_seconds"], 3600.0);
    let state = &report["sources"][1]["record"];
    assert_eq!(state["kind"], "command");
    assert!(json_str(check(state, "files"), "message").starts_with("all 1 file(s)"));
    // Nothing is left in the scratch directory's place.
    let scratch_left: Vec<_> = fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("lifeline-drill-")
                && e.path().join("files").exists()
        })
        .collect();
    assert!(scratch_left.is_empty(), "{scratch_left:?}");

    // An older snapshot on request: restored and verified, its age not judged as the RPO.
    let out = lifeline(
        &repo,
        &plan,
        &["--json", "drill", "docs", "--snapshot", &older[..8]],
    );
    out.assert_success();
    let record = &out.json()["sources"][0]["record"];
    assert_eq!(record["snapshot"], older.as_str());
    assert_eq!(record["rpo_target_seconds"], Value::Null);
    assert!(json_str(check(record, "files"), "message").starts_with("all 22 file(s)"));

    // A recovery-point group: both sources to their points for now, one RTO for the group; each
    // drill is on the audit record with the drill record it wrote.
    let now = chrono::Utc::now().to_rfc3339();
    let out = lifeline(
        &repo,
        &plan,
        &[
            "--json",
            "drill",
            "docs",
            "state",
            "--group",
            "full-system",
            "--time",
            &now,
        ],
    );
    out.assert_success();
    let report = out.json();
    assert_eq!(report["group"], "full-system");
    let group_rto = report["group_rto_seconds"].as_f64().unwrap();
    let rtos: f64 = report["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["record"]["rto_seconds"].as_f64().unwrap())
        .sum();
    assert!(group_rto >= rtos * 0.99, "{report:#}");
    for s in report["sources"].as_array().unwrap() {
        assert_eq!(s["record"]["group"], "full-system");
    }
    let log = lifeline(&repo, &plan, &["audit", "log", "--json"]).json();
    let drills: Vec<&Value> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "drill")
        .collect();
    assert_eq!(drills.len(), 5, "{log:#}");
    let last = drills.last().unwrap();
    assert_eq!(last["details"]["group"], "full-system");
    assert_eq!(last["result"], "ok");
    assert!(last["touched"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["kind"] == "drill" && t["id"] == report["sources"][1]["record_id"]));

    // A source never backed up cannot be drilled, and says so.
    let out = lifeline(&repo, &plan, &["drill", "never"]);
    out.assert_code(EXIT_FATAL)
        .assert_output_contains("holds no files snapshot of source never");

    // A flipped byte: the restore names the damaged pack, and the drill fails.
    let flipped = FlippedPack::largest(&repo.path);
    let out = lifeline(&repo, &plan, &["--json", "drill", "docs"]);
    out.assert_code(EXIT_FATAL);
    let failed = &out.json()["sources"][0];
    let error = json_str(&failed["record"], "error");
    assert!(
        error.contains("step restore failed") && error.contains(&flipped.name()),
        "{failed:#}"
    );
    let flipped_name = flipped.name();
    flipped.restore();
    let records = drill_records(&repo.path);
    assert_eq!(
        records.iter().filter(|(_, r)| r.passed).count(),
        5,
        "{records:#?}"
    );
    assert_eq!(records.iter().filter(|(_, r)| !r.passed).count(), 2);
    let log = lifeline(&repo, &plan, &["audit", "log", "--json"]).json();
    let failed = log
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|r| r["action"] == "drill")
        .unwrap();
    assert_eq!(failed["result"], "failed");
    assert!(
        json_str(failed, "error").contains(&flipped_name),
        "{failed:#}"
    );
}
