//! `lifeline recovery-plan --time T` on the real binary (issue 11): each source's recovery point is
//! its newest backup at or before T, a source with none says so, the skew between the points and
//! the restore commands are given, and without drills there is no time estimate. PostgreSQL's
//! point-in-time window is covered in `tests/drill.rs`.
#![allow(clippy::unwrap_used)]

mod common;

use std::thread::sleep;
use std::time::Duration;

use common::*;
use serde_json::Value;

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[test]
fn each_source_comes_back_to_its_newest_backup_before_the_time() {
    let repo = Repo::init();
    let data = repo.sandbox.mkdir("data");
    write_random_file(&data.join("a.bin"), 8, 10_000);
    let plan = repo.sandbox.write(
        "plan.toml",
        format!(
            r#"[repository]
url = "{repo}"
key = {{ password_file = "{pw}" }}

[tiers]
tier1 = {{ rto = "15m", rpo = "5m" }}
tier3 = {{ rto = "4h", rpo = "1h" }}

[classes.fast]
tier = "tier1"

[classes.slow]
tier = "tier3"

[[sources]]
name = "documents"
kind = "files"
class = "slow"
paths = ["{data}"]

[[sources]]
name = "settings"
kind = "command"
class = "fast"
command = "echo 'mode = production'"
filename = "settings.conf"
"#,
            repo = repo.path.display(),
            pw = repo.password_file.display(),
            data = data.display(),
        ),
    );
    let lifeline = |args: &[&str]| {
        let mut c = repo.sandbox.lifeline();
        c.arg("--config").arg(&plan).args(args);
        run(&mut c, None)
    };
    let plan_at = |t: &str| -> Value {
        let out = lifeline(&["recovery-plan", "--time", t, "--json"]);
        out.assert_success();
        out.json()
    };
    lifeline(&["run", "documents"]).assert_success();
    sleep(Duration::from_millis(1100));
    let t1 = now();
    sleep(Duration::from_millis(1100));
    lifeline(&["run", "settings"]).assert_success();
    lifeline(&["run", "documents"]).assert_success();
    let t2 = now();

    let first = plan_at(&t1);
    let sources = first["sources"].as_array().unwrap();
    // Restore order: the tightest RTO first.
    assert_eq!(sources[0]["source"], "settings", "{first:#}");
    assert!(sources[0]["recovery_point"].is_null());
    assert!(
        sources[0]["note"].as_str().unwrap().contains("no backup"),
        "{first:#}"
    );
    let documents = &sources[1];
    let snapshots = repo.snapshots();
    let oldest = snapshots[0]["id"].as_str().unwrap();
    assert_eq!(documents["snapshot"], oldest, "{first:#}");
    assert!(documents["behind_seconds"].as_f64().unwrap() >= 1.0);
    assert!(documents["command"]
        .as_str()
        .unwrap()
        .starts_with("lifeline restore "));

    let second = plan_at(&t2);
    let sources = second["sources"].as_array().unwrap();
    assert!(sources[0]["command"]
        .as_str()
        .unwrap()
        .contains("lifeline dump"));
    assert!(sources.iter().all(|s| !s["recovery_point"].is_null()));
    assert!(second["skew_seconds"].as_f64().unwrap() >= 0.0);
    assert!(second["estimated_seconds"].is_null(), "never drilled");

    let text = lifeline(&["recovery-plan", "--time", &t2]);
    text.assert_success()
        .assert_output_contains("1. settings")
        .assert_output_contains("never drilled");
    lifeline(&["recovery-plan", "--time", "yesterday"])
        .assert_failure()
        .assert_output_contains("RFC 3339");
}
