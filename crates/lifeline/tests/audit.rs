//! The audit trail on the real binary (issue 11): every operation on backup data or keys leaves a
//! record, `audit verify` names what was done to the trail, the trail travels with `copy`, two
//! writers at once keep it valid, and records reach a SIEM file and the platform's `audit_logs`.
//! The four kinds of tampering are pinned on the library's records in
//! `crates/lifeline-repo/tests/audit_trail.rs`; here they are seen through the command.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::PathBuf;

use common::pg::{shared_dir, Cluster, PgVersion};
use common::*;
use serde_json::Value;

fn records(repo: &Repo) -> Vec<Value> {
    let out = repo.run(["audit", "log", "--json"]);
    out.assert_success();
    out.json().as_array().unwrap().clone()
}

fn actions(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| r["action"].as_str().unwrap().to_string())
        .collect()
}

/// The audit objects of a local repository, oldest first (their names start with the time).
fn audit_objects(repo: &Repo) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for month in fs::read_dir(repo.path.join("audit")).unwrap() {
        for f in fs::read_dir(month.unwrap().path()).unwrap() {
            files.push(f.unwrap().path());
        }
    }
    files.sort_by_key(|p| p.file_name().unwrap().to_owned());
    files
}

#[test]
fn every_operation_on_backup_data_or_keys_leaves_a_record() {
    let repo = Repo::init();
    let data = repo.sandbox.mkdir("data");
    write_random_file(&data.join("a.bin"), 1, 50_000);
    let backup = repo.backup(&[&data], &["--tag", "source=documents"]);
    let id = backup["snapshot_id"].as_str().unwrap().to_string();
    repo.restore("latest", "restored");
    repo.run(["restore", "deadbeef", "--target", "nowhere"])
        .assert_failure();
    repo.add_password_slot("a second password");
    repo.run(["hold", "add", "latest", "--reason", "litigation 42"])
        .assert_success();
    repo.run(["forget", "--keep-last", "1"]).assert_success();
    repo.run(["check"]).assert_success();

    let records = records(&repo);
    assert_eq!(
        actions(&records),
        ["init", "backup", "restore", "restore", "key add", "hold add", "forget", "check"],
        "{records:#?}"
    );
    let backup = &records[1];
    assert_eq!(backup["result"], "ok");
    assert_eq!(backup["details"]["source"], "documents");
    assert_eq!(backup["touched"][0]["access"], "wrote");
    assert_eq!(backup["touched"][0]["id"], id.as_str());
    for r in &records {
        assert!(r["username"].as_str().is_some_and(|u| !u.is_empty()));
        assert!(r["hostname"].as_str().is_some_and(|h| !h.is_empty()));
        assert!(r["time"].as_str().unwrap().ends_with('Z'));
    }
    let failed = &records[3];
    assert_eq!(failed["result"], "failed", "{failed:#}");
    assert!(
        failed["error"].as_str().unwrap().contains("deadbeef"),
        "the failed restore's record names the cause: {failed:#}"
    );
    assert_eq!(records[2]["touched"][0]["id"], id.as_str());
    assert_eq!(records[5]["details"]["reason"], "litigation 42");

    // `--since` keeps the records from that time on.
    let later = records[4]["time"].as_str().unwrap();
    let out = repo.run(["audit", "log", "--json", "--since", later]);
    let since: Vec<Value> = out.json().as_array().unwrap().clone();
    assert_eq!(actions(&since), ["key add", "hold add", "forget", "check"]);

    repo.run(["audit", "verify"])
        .assert_success()
        .assert_output_contains("intact");
    // Without a password: the chain is still checked.
    run(
        repo.sandbox
            .lifeline()
            .args(["audit", "verify", "--without-key", "--repo"])
            .arg(&repo.path),
        None,
    )
    .assert_success()
    .assert_output_contains("without keys");
}

#[test]
fn audit_verify_names_a_deleted_record_and_an_altered_one() {
    let repo = Repo::init();
    let data = repo.sandbox.mkdir("data");
    write_random_file(&data.join("a.bin"), 2, 10_000);
    for _ in 0..4 {
        repo.backup(&[&data], &[]);
    }
    let objects = audit_objects(&repo);
    assert_eq!(objects.len(), 5, "init and four backups");

    fs::remove_file(&objects[2]).unwrap();
    let out = repo.run(["audit", "verify", "--json"]);
    out.assert_code(1);
    let problems = out.json()["problems"].as_array().unwrap().clone();
    assert!(
        problems.iter().any(|p| p["kind"] == "missing"),
        "{problems:#?}"
    );
    // Without keys too.
    run(
        repo.sandbox
            .lifeline()
            .args(["audit", "verify", "--without-key", "--repo"])
            .arg(&repo.path),
        None,
    )
    .assert_code(1)
    .assert_output_contains("missing");

    let mut bytes = fs::read(&objects[3]).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&objects[3], bytes).unwrap();
    let out = repo.run(["audit", "verify", "--json"]);
    out.assert_code(1);
    let problems = out.json()["problems"].as_array().unwrap().clone();
    assert!(
        problems.iter().any(|p| p["kind"] == "altered"
            && p["record"]
                .as_str()
                .is_some_and(|r| objects[3].to_str().unwrap().ends_with(r))),
        "{problems:#?}"
    );
}

#[test]
fn an_anchor_detects_the_newest_record_being_cut_off() {
    let repo = Repo::init();
    let data = repo.sandbox.mkdir("data");
    write_random_file(&data.join("a.bin"), 3, 10_000);
    repo.backup(&[&data], &[]);
    let records = records(&repo);
    let newest = records.last().unwrap()["id"].as_str().unwrap().to_string();
    repo.run(["audit", "verify", "--anchor", &newest])
        .assert_success();
    fs::remove_file(audit_objects(&repo).last().unwrap()).unwrap();
    // Nothing links to the newest record: only the anchor knows it was there.
    repo.run(["audit", "verify"]).assert_success();
    repo.run(["audit", "verify", "--anchor", &newest])
        .assert_code(1)
        .assert_output_contains(&newest[..16]);
}

#[test]
fn copy_carries_the_audit_trail_to_the_second_region() {
    let repo = Repo::init();
    let data = repo.sandbox.mkdir("data");
    write_random_file(&data.join("a.bin"), 4, 20_000);
    repo.backup(&[&data], &[]);
    let (copy, copy_password) = repo.init_copy("the copy's own password");
    let copy_args = |extra: &[&str]| {
        let mut c = repo.cmd(["copy", "--to", copy.to_str().unwrap()]);
        c.arg("--to-password-file").arg(&copy_password).args(extra);
        c
    };
    run(&mut copy_args(&[]), None).assert_success();
    run(&mut copy_args(&[]), None).assert_success();

    let on_copy = |args: &[&str]| {
        run(
            repo.sandbox
                .lifeline()
                .args(args)
                .arg("--repo")
                .arg(&copy)
                .arg("--password-file")
                .arg(&copy_password),
            None,
        )
    };
    on_copy(&["audit", "verify"]).assert_success();
    let out = on_copy(&["audit", "log", "--json"]);
    let copied: Vec<Value> = out.json().as_array().unwrap().clone();
    let imported: Vec<&Value> = copied.iter().filter(|r| !r["origin"].is_null()).collect();
    // The primary's init and backup, then its first copy (written after the import, so it travels
    // with the second copy): each once, however often `copy` runs.
    assert_eq!(
        imported
            .iter()
            .map(|r| r["action"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["init", "backup", "copy"],
        "{copied:#?}"
    );
    let source_ids: Vec<String> = records(&repo)
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    for r in &imported {
        assert!(source_ids.contains(&r["origin"]["record"].as_str().unwrap().to_string()));
    }
    // The copy's own record of each copy it received.
    let received: Vec<&Value> = copied
        .iter()
        .filter(|r| r["origin"].is_null() && r["action"] == "copy")
        .collect();
    assert_eq!(received.len(), 2, "{copied:#?}");
}

#[test]
fn two_backups_at_once_keep_one_valid_trail() {
    let repo = Repo::init();
    let data = repo.sandbox.mkdir("data");
    write_random_file(&data.join("a.bin"), 5, 2_000_000);
    let mut children: Vec<_> = (0..2)
        .map(|_| {
            repo.cmd(["backup", data.to_str().unwrap()])
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in &mut children {
        assert!(child.wait().unwrap().success());
    }
    let out = repo.run(["audit", "verify", "--json"]);
    out.assert_success();
    let verified = out.json();
    assert_eq!(verified["records"], 3);
    // The next record joins whatever heads two writers at once left.
    repo.run(["check"]).assert_success();
    let verified = repo.run(["audit", "verify", "--json"]).json();
    assert_eq!(verified["records"], 4);
    assert_eq!(
        verified["heads"].as_array().unwrap().len(),
        1,
        "{verified:#}"
    );
}

#[test]
fn records_reach_the_siem_file_and_the_platforms_audit_logs_table() {
    let tmp = shared_dir("lifeline-audit-");
    let cluster = Cluster::init(PgVersion::V18, tmp.path(), &[]);
    cluster.start();
    cluster.psql(
        "CREATE SCHEMA chatbot_compliance;
         CREATE TABLE chatbot_compliance.audit_logs (
             id bigserial PRIMARY KEY, event_type text NOT NULL, user_id text NOT NULL,
             action text NOT NULL, resource text, description text, phi_accessed boolean,
             compliance_context text, metadata jsonb, created_at timestamptz DEFAULT now())",
    );
    let repo = Repo::init();
    let data = repo.sandbox.mkdir("data");
    write_random_file(&data.join("a.bin"), 6, 10_000);
    let jsonl = repo.join("audit.jsonl");
    let plan = repo.sandbox.write(
        "lifeline.toml",
        format!(
            "[audit]\njsonl = \"{}\"\npostgres = \"{}\"\ntable = \"chatbot_compliance.audit_logs\"\n",
            jsonl.display(),
            cluster.url()
        ),
    );
    let config = plan.to_str().unwrap();
    repo.run(["--config", config, "backup", data.to_str().unwrap()])
        .assert_success();
    repo.run(["--config", config, "restore", "latest", "--target", "r"])
        .assert_success();

    let lines: Vec<Value> = fs::read_to_string(&jsonl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(actions(&lines), ["backup", "restore"]);
    let ids: Vec<String> = records(&repo)
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        lines[0]["id"],
        ids[1].as_str(),
        "the file names the repository's record"
    );

    let rows = cluster.psql(
        "SELECT event_type, action, phi_accessed, compliance_context, metadata->>'lifeline_record'
           FROM chatbot_compliance.audit_logs ORDER BY id",
    );
    let rows: Vec<&str> = rows.lines().collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        rows[0],
        format!(
            "backup_operation|backup_completed|f|hipaa_164_308_a_7|{}",
            ids[1]
        )
    );
    assert!(
        rows[1].starts_with(
            "disaster_recovery|restore_completed|t|hipaa_164_308_a_7_disaster_recovery|"
        ),
        "{}",
        rows[1]
    );

    // A table that is not there: the operation succeeds, the record is in the repository, and the
    // failed delivery is a warning naming the table.
    cluster.psql("DROP TABLE chatbot_compliance.audit_logs");
    repo.run(["--config", config, "check"])
        .assert_success()
        .assert_output_contains("chatbot_compliance.audit_logs");
    assert_eq!(actions(&records(&repo)).last().unwrap(), "check");
}
