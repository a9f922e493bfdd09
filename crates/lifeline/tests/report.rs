//! `lifeline report --month` on the real binary (issue 11): a month with one failed backup reports a
//! success rate below 100 % and names the failure with its cause, from the repository alone — and
//! the same from the copy in the other region. The page itself is checked in headless Chromium by
//! `crates/lifeline-plan/tests/compliance.rs`.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::Value;

#[test]
fn a_month_with_one_failed_backup_is_below_100_percent_and_names_the_failure() {
    let repo = Repo::init();
    let data = repo.sandbox.mkdir("data");
    write_random_file(&data.join("a.bin"), 7, 20_000);
    let (copy, copy_password) = repo.init_copy("the copy's own password");
    let flag = repo.join("fail-next");
    let plan = repo.sandbox.write(
        "plan.toml",
        format!(
            r#"[repository]
url = "{repo}"
key = {{ password_file = "{pw}" }}

[[copies]]
url = "{copy}"
key = {{ password_file = "{copy_pw}" }}

[tiers]
tier3 = {{ rto = "4h", rpo = "1h" }}

[classes.config]
tier = "tier3"

[[sources]]
name = "documents"
kind = "files"
class = "config"
paths = ["{data}"]

[[sources]]
name = "settings"
kind = "command"
class = "config"
command = "test ! -e {flag} && echo 'mode = production' || (echo 'vault unreachable' >&2; exit 4)"
"#,
            repo = repo.path.display(),
            pw = repo.password_file.display(),
            copy = copy.display(),
            copy_pw = copy_password.display(),
            data = data.display(),
            flag = flag.display(),
        ),
    );
    let lifeline = |args: &[&str]| {
        let mut c = repo.sandbox.lifeline();
        c.arg("--config").arg(&plan).args(args);
        run(&mut c, None)
    };
    lifeline(&["run", "--all"]).assert_success();
    lifeline(&["run", "settings"]).assert_success();
    std::fs::write(&flag, "").unwrap();
    lifeline(&["run", "settings"]).assert_failure();
    std::fs::remove_file(&flag).unwrap();
    lifeline(&["run", "--all"]).assert_success();

    let month = chrono::Utc::now().format("%Y-%m").to_string();
    let out = lifeline(&["report", "--month", &month, "--format", "json"]);
    out.assert_success();
    let report = out.json();
    let settings = source_row(&report, "settings");
    assert_eq!(settings["attempts"], 4, "{settings:#}");
    assert_eq!(settings["failed"], 1, "{settings:#}");
    let rate = settings["success_rate_percent"].as_f64().unwrap();
    assert!((74.9..100.0).contains(&rate), "{settings:#}");
    assert_eq!(
        source_row(&report, "documents")["success_rate_percent"],
        100.0
    );
    let failures = report["failures"].as_array().unwrap();
    let failure = failures
        .iter()
        .find(|f| f["target"] == "settings")
        .unwrap_or_else(|| panic!("the failure is listed: {failures:#?}"));
    assert!(
        failure["cause"]
            .as_str()
            .unwrap()
            .contains("vault unreachable"),
        "the cause is the command's own words: {failure:#}"
    );
    assert_eq!(
        report["summary"]["verdict"], "not_met",
        "{:#}",
        report["summary"]
    );

    // Markdown says the same in words.
    let md = lifeline(&["report", "--month", &month, "--format", "md"]);
    md.assert_success()
        .assert_output_contains("vault unreachable");

    // The copy in the other region reports the same backups from its own trail.
    let out = run(
        repo.sandbox
            .lifeline()
            .args(["report", "--month", &month, "--format", "json", "--repo"])
            .arg(&copy)
            .arg("--password-file")
            .arg(&copy_password),
        None,
    );
    out.assert_success();
    let from_copy = out.json();
    let settings = source_row(&from_copy, "settings");
    assert_eq!(settings["failed"], 1, "{settings:#}");
    assert!(settings["attempts"].as_u64().unwrap() >= 3, "{settings:#}");

    // Producing the report is itself on the record.
    let log = lifeline(&["audit", "log", "--json"]).json();
    assert_eq!(log.as_array().unwrap().last().unwrap()["action"], "report");
}

fn source_row<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["backups"]["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source"] == name)
        .unwrap_or_else(|| panic!("no row for {name}: {:#}", report["backups"]))
}
