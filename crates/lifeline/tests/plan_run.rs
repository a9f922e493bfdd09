//! The plan file and `lifeline run` (issue 10): what a Kubernetes CronJob calls, on the real binary.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// A repository, a copy target with its own password, and a plan naming both.
struct Planned {
    repo: Repo,
    copy: PathBuf,
    plan: PathBuf,
}

impl Planned {
    /// `{DATA}` in `sources` is the sandbox's `data` directory.
    fn new(sources: &str, retention: &str) -> Planned {
        let repo = Repo::init();
        let data = repo.sandbox.mkdir("data");
        let sources = sources.replace("{DATA}", data.to_str().unwrap());
        let (copy, copy_password) = repo.init_copy("another password entirely");
        let text = format!(
            r#"[repository]
url = "{repo}"
key = {{ password_file = "{pw}" }}

[[copies]]
url = "{copy}"
key = {{ password_file = "{copy_pw}" }}

[tiers]
tier3 = {{ rto = "4h", rpo = "1h" }}

[classes.documents]
tier = "tier3"
{retention}

{sources}
"#,
            repo = repo.path.display(),
            pw = repo.password_file.display(),
            copy = copy.display(),
            copy_pw = copy_password.display(),
        );
        let plan = repo.sandbox.write("plan.toml", text);
        Planned { repo, copy, plan }
    }

    fn lifeline<const N: usize>(&self, args: [&str; N]) -> Out {
        let mut c = self.repo.sandbox.lifeline();
        c.arg("--config").arg(&self.plan).args(args);
        run(&mut c, None)
    }

    /// Snapshots of `repo` (the primary, or the copy) tagged with a plan source.
    fn snapshots_of(&self, repo: &Path, password: &Path, source: &str) -> usize {
        let mut c = self.repo.sandbox.lifeline();
        c.args(["snapshots", "--json", "--tag"])
            .arg(format!("source={source}"))
            .arg("--repo")
            .arg(repo)
            .arg("--password-file")
            .arg(password);
        run(&mut c, None)
            .assert_success()
            .json()
            .as_array()
            .unwrap()
            .len()
    }
}

#[test]
fn plan_check_names_file_line_and_fix_and_fails() {
    let p = Planned::new(
        r#"[[sources]]
name = "docs"
kind = "files"
class = "documentz"
paths = ["/srv/uploads"]
schedule = "0 2 * *"
"#,
        "",
    );
    let out = p.lifeline(["plan", "check"]);
    out.assert_code(EXIT_FATAL);
    let err = out.stderr_str();
    let plan = p.plan.display().to_string();
    assert!(
        err.contains(&format!(
            "{plan}:19: source \"docs\" names class \"documentz\""
        )),
        "{err}"
    );
    assert!(err.contains("fix: add [classes.documentz]"), "{err}");
    assert!(
        err.contains(&format!(
            "{plan}:21: source \"docs\": \"0 2 * *\" has 4 field(s)"
        )),
        "{err}"
    );
    let json = p.lifeline(["plan", "check", "--json"]);
    json.assert_code(EXIT_FATAL);
    let v = json.json();
    assert_eq!(v["ok"], false);
    assert_eq!(v["problems"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(v["problems"][0]["line"], 19);
    // `run` refuses a plan with problems before touching anything.
    p.lifeline(["run", "docs"]).assert_code(EXIT_FATAL);
}

#[test]
fn a_command_source_is_backed_up_copied_with_the_copys_own_key_and_retention_applies_to_both() {
    let p = Planned::new(
        r#"[[sources]]
name = "tfstate"
kind = "command"
class = "documents"
command = "echo '{\"version\": 4}'; date +%s%N"
schedule = "0 2 * * *"
"#,
        "retention = { last = 2 }",
    );
    let show = p
        .lifeline(["plan", "show", "--json"])
        .assert_success()
        .json();
    assert_eq!(show["sources"][0]["tier"], "tier3");
    assert_eq!(show["sources"][0]["rpo_seconds"], 3600);
    assert_eq!(
        show["sources"][0]["schedules"][0]["next"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    for _ in 0..3 {
        let r = p
            .lifeline(["run", "tfstate", "--json"])
            .assert_success()
            .json();
        assert_eq!(r["outcome"], "success", "{r}");
        assert_eq!(r["verified"], true);
        assert_eq!(r["copies"][0]["ok"], true, "{r}");
    }
    let copy_password = p.repo.join("copy-password");
    assert_eq!(
        p.snapshots_of(&p.repo.path, &p.repo.password_file, "tfstate"),
        2
    );
    assert_eq!(p.snapshots_of(&p.copy, &copy_password, "tfstate"), 2);
    // The stored bytes are the command's output.
    let dumped = p
        .repo
        .run(["dump", "latest", "tfstate"])
        .assert_success()
        .stdout_str();
    assert!(dumped.starts_with("{\"version\": 4}\n"), "{dumped}");
}

/// A command that fails or prints nothing fails the job and leaves no snapshot.
#[test]
fn a_failing_or_silent_command_fails_the_job_and_saves_no_snapshot() {
    let p = Planned::new(
        r#"[[sources]]
name = "broken"
kind = "command"
class = "documents"
command = "echo partial; echo 'state locked' >&2; exit 4"

[[sources]]
name = "silent"
kind = "command"
class = "documents"
command = "true"

[[sources]]
name = "slow"
kind = "command"
class = "documents"
command = "echo start; sleep 30"
timeout = "1s"
"#,
        "",
    );
    let out = p.lifeline(["run", "broken"]);
    out.assert_code(EXIT_FATAL);
    assert!(
        out.stderr_str().contains("exit status: 4"),
        "{}",
        out.describe()
    );
    assert!(
        out.stderr_str().contains("state locked"),
        "{}",
        out.describe()
    );
    let out = p.lifeline(["run", "silent", "--json"]);
    out.assert_code(EXIT_FATAL);
    assert!(
        out.json()["message"]
            .as_str()
            .unwrap()
            .contains("printed nothing"),
        "{}",
        out.describe()
    );
    let started = std::time::Instant::now();
    let out = p.lifeline(["run", "slow"]);
    out.assert_code(EXIT_FATAL);
    assert!(out.stderr_str().contains("timeout"), "{}", out.describe());
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    for source in ["broken", "silent", "slow"] {
        assert_eq!(
            p.snapshots_of(&p.repo.path, &p.repo.password_file, source),
            0
        );
    }
}

/// `--metrics-file` for node_exporter: replaced each run, counters continuing from the last file.
#[test]
fn run_writes_a_metrics_file_whose_counters_continue_across_runs() {
    let p = Planned::new(
        r#"[[sources]]
name = "docs"
kind = "files"
class = "documents"
paths = ["{DATA}"]

[[sources]]
name = "broken"
kind = "command"
class = "documents"
command = "exit 2"
"#,
        "",
    );
    write_file(&p.repo.join("data/a.txt"), "hello");
    let metrics = p.repo.join("lifeline.prom");
    let m = metrics.to_str().unwrap();
    for _ in 0..2 {
        p.lifeline(["run", "--all", "--metrics-file", m])
            .assert_code(EXIT_FATAL);
    }
    let text = std::fs::read_to_string(&metrics).unwrap();
    let value = |series: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(series))
            .unwrap_or_else(|| panic!("{series} missing in:\n{text}"))
            .rsplit_once(' ')
            .unwrap()
            .1
            .parse()
            .unwrap()
    };
    assert_eq!(value("lifeline_failures_total{source=\"broken\""), 2.0);
    assert_eq!(value("backup_failures_total{database=\"broken\"}"), 2.0);
    assert_eq!(
        value("lifeline_runs_total{source=\"docs\",kind=\"files\",class=\"documents\",tier=\"tier3\",result=\"success\"}"),
        2.0
    );
    assert_eq!(value("lifeline_rpo_target_seconds{source=\"docs\""), 3600.0);
    assert!(value("lifeline_rpo_seconds{source=\"docs\"") < 60.0);
    assert!(value("backup_completion_time{database=\"docs\"}") > 1.7e9);
    assert!(value("lifeline_repository_size_bytes{repository=") > 0.0);
}

/// Regression: `copy --to` opened the destination with the source's password and S3 settings, even
/// when the plan names the destination under [[copies]] with a key of its own.
#[test]
fn copy_to_a_planned_target_uses_its_own_key_not_the_sources() {
    let p = Planned::new(
        r#"[[sources]]
name = "docs"
kind = "files"
class = "documents"
paths = ["{DATA}"]
"#,
        "",
    );
    write_file(&p.repo.join("data/a.txt"), "hello");
    p.repo
        .backup(&[&p.repo.join("data")], &["--tag", "source=docs"]);
    let copy = p.copy.to_str().unwrap().to_string();
    let out = p.lifeline(["copy", "--to", &copy, "--json"]);
    out.assert_success();
    assert_eq!(out.json()["copied"].as_array().unwrap().len(), 1);
    assert_eq!(
        p.snapshots_of(&p.copy, &p.repo.join("copy-password"), "docs"),
        1
    );
}
