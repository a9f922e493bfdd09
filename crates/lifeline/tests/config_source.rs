//! The `config` kind (issue 12): environment variables by allow-list with secrets redacted or
//! refused, configuration files, Kubernetes ConfigMap volumes as key files; and the `command` kind
//! as it covers `terraform state pull`. All through `lifeline run` on the real binary; no server is
//! needed.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;

/// A repository and a plan with `sources` (`{DATA}` is the sandbox's `data` directory).
struct Planned {
    repo: Repo,
    data: PathBuf,
    plan: PathBuf,
}

impl Planned {
    fn new(sources: &str) -> Planned {
        let repo = Repo::init();
        let data = repo.sandbox.mkdir("data");
        let sources = sources.replace("{DATA}", data.to_str().unwrap());
        let text = format!(
            r#"[repository]
url = "{repo}"
key = {{ password_file = "{pw}" }}

[tiers]
tier4 = {{ rto = "24h", rpo = "4h" }}

[classes.config]
tier = "tier4"
verify = "snapshot"

{sources}
"#,
            repo = repo.path.display(),
            pw = repo.password_file.display(),
        );
        let plan = repo.sandbox.write("plan.toml", text);
        Planned { repo, data, plan }
    }

    /// `lifeline --config PLAN ARGS…` with `env` added to its environment.
    fn lifeline(&self, args: &[&str], env: &[(&str, &str)]) -> Out {
        let mut c = self.repo.sandbox.lifeline();
        c.arg("--config").arg(&self.plan).args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        run(&mut c, None)
    }

    /// The snapshots tagged with `source`, oldest first.
    fn snapshots_of(&self, source: &str) -> Vec<Value> {
        let tag = format!("source={source}");
        self.repo
            .run(["snapshots", "--json", "--tag", &tag])
            .assert_success()
            .json()
            .as_array()
            .unwrap()
            .clone()
    }
}

/// A JSON text stored in a snapshot's `source` map.
fn recorded(snapshot: &Value, key: &str) -> Value {
    let text = snapshot["source"][key]
        .as_str()
        .unwrap_or_else(|| panic!("no source.{key} in {snapshot:#}"));
    serde_json::from_str(text).unwrap()
}

/// Load `file` with `sh` as a person restoring it would (`set -a; . ./FILE`) in an otherwise empty
/// environment, and return the values of `names` as the shell then holds them.
fn load_with_sh(file: &Path, names: &[&str]) -> BTreeMap<String, String> {
    let mut script = String::from("set -a; . ./\"$1\"; printf '%s\\0'");
    for n in names {
        script.push_str(&format!(" \"${{{n}}}\""));
    }
    let out = Command::new("/bin/sh")
        .args(["-c", &script, "sh"])
        .arg(file.file_name().unwrap())
        .current_dir(file.parent().unwrap())
        .env_clear()
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sh could not load {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    names
        .iter()
        .zip(text.split('\0'))
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

const SECRET_VALUES: [&str; 6] = [
    "hunter2",
    "ghp_0123456789abcdef",
    "sk-live-signing",
    "cookie-jar-secret",
    "LICENSE-4242",
    "pg-url-pass",
];

/// The environment of the `lifeline run` process the config tests capture.
fn service_environment() -> Vec<(&'static str, &'static str)> {
    vec![
        ("CHATBOT_MODE", "production"),
        (
            "CHATBOT_GREETING",
            "it's \"quoted\", costs $5 and `spans`\ntwo lines",
        ),
        ("CHATBOT_DB_PASSWORD", "hunter2"),
        ("CHATBOT_Github_Token", "ghp_0123456789abcdef"),
        ("CHATBOT_SIGNING_KEY", "sk-live-signing"),
        ("CHATBOT_SESSION_SECRET", "cookie-jar-secret"),
        ("CHATBOT_LICENSE", "LICENSE-4242"),
        (
            "DATABASE_URL",
            "postgresql://chatbot:pg-url-pass@db.internal:5432/chatbot?sslmode=require",
        ),
        ("REDIS_URL", "redis://cache.internal:6379/0"),
        ("LOG_LEVEL", "info"),
        ("UNRELATED_SETTING", "not asked for"),
    ]
}

const CONFIG_SOURCE: &str = r#"[[sources]]
name = "chatbot-config"
kind = "config"
class = "config"
env = ["CHATBOT_*", "LOG_LEVEL", "DATABASE_URL", "REDIS_URL", "FEATURE_FLAGS", "PAYMENTS_*"]
redact = ["*_license"]
paths = ["{DATA}/etc/chatbot", "{DATA}/configmap", "{DATA}/secret/tls.key"]
tags = ["env=prod"]
"#;

/// A Kubernetes ConfigMap volume as the kubelet lays it out: the keys are links through `..data`
/// into a timestamped directory, which the kubelet replaces by swapping `..data`.
fn configmap_volume(dir: &Path, stamp: &str, keys: &[(&str, &str)]) {
    let data = dir.join(stamp);
    for (key, value) in keys {
        write_file(&data.join(key), value);
    }
    let link = dir.join("..data_tmp");
    symlink(stamp, &link).unwrap();
    fs::rename(&link, dir.join("..data")).unwrap();
    for (key, _) in keys {
        let top = key.split('/').next().unwrap();
        let entry = dir.join(top);
        if fs::symlink_metadata(&entry).is_err() {
            symlink(format!("..data/{top}"), &entry).unwrap();
        }
    }
}

/// The files of the config tests: a plain configuration directory with a symlink of its own, a
/// ConfigMap volume, and one key of a Secret volume given by its path.
fn service_files(data: &Path) {
    write_file(
        &data.join("etc/chatbot/chatbot.toml"),
        "[server]\nport = 8080\n",
    );
    write_file(&data.join("etc/chatbot/conf.d/limits.toml"), "rate = 10\n");
    symlink("chatbot.toml", data.join("etc/chatbot/current.toml")).unwrap();
    configmap_volume(
        &data.join("configmap"),
        "..2026_12_02_10_00_00.000000001",
        &[
            ("app.yaml", "replicas: 2\n"),
            ("log.level", "info"),
            ("nested/rules.json", "{\"rules\": []}\n"),
        ],
    );
    let secret = data.join("secret");
    configmap_volume(
        &secret,
        "..2026_12_02_10_00_00.000000002",
        &[("tls.key", "-----BEGIN PRIVATE KEY-----\n")],
    );
    set_mode(
        &secret.join("..2026_12_02_10_00_00.000000002/tls.key"),
        0o400,
    );
}

#[test]
fn a_config_source_keeps_allowed_variables_redacts_secrets_by_name_and_url_and_restores() {
    let p = Planned::new(CONFIG_SOURCE);
    service_files(&p.data);
    p.lifeline(&["plan", "check"], &[]).assert_success();
    let env = service_environment();
    let out = p.lifeline(&["run", "chatbot-config", "--json"], &env);
    out.assert_success();
    let report = out.json();
    assert_eq!(report["outcome"], "success", "{report:#}");
    assert_eq!(report["verified"], true, "{report:#}");
    for secret in SECRET_VALUES {
        assert!(
            !out.all_output().contains(secret),
            "{secret} was printed\n{}",
            out.describe()
        );
    }

    let snapshots = p.snapshots_of("chatbot-config");
    assert_eq!(snapshots.len(), 1);
    let snap = &snapshots[0];
    assert_eq!(snap["kind"], "config");
    assert_eq!(snap["tags"]["env"], "prod");
    assert_eq!(snap["source"]["secrets"], "redact");
    assert_eq!(snap["paths"][0], "environment.env");
    // The record says which names were redacted and why, and never a value.
    let redacted = recorded(snap, "redacted");
    assert_eq!(
        redacted,
        serde_json::json!({
            "CHATBOT_DB_PASSWORD": "name matches *_PASSWORD",
            "CHATBOT_Github_Token": "name matches *_TOKEN",
            "CHATBOT_LICENSE": "name matches *_license",
            "CHATBOT_SESSION_SECRET": "name matches *_SECRET",
            "CHATBOT_SIGNING_KEY": "name matches *_KEY",
            "DATABASE_URL": "password in a URL",
        })
    );
    let listed = snap.to_string();
    for secret in SECRET_VALUES {
        assert!(!listed.contains(secret), "{secret} is in {snap:#}");
    }
    let variables = recorded(snap, "variables");
    assert_eq!(
        variables,
        serde_json::json!([
            "CHATBOT_DB_PASSWORD",
            "CHATBOT_GREETING",
            "CHATBOT_Github_Token",
            "CHATBOT_LICENSE",
            "CHATBOT_MODE",
            "CHATBOT_SESSION_SECRET",
            "CHATBOT_SIGNING_KEY",
            "DATABASE_URL",
            "LOG_LEVEL",
            "REDIS_URL"
        ])
    );
    // Entries that matched nothing are warnings in the snapshot, not failures.
    assert_eq!(
        recorded(snap, "warnings"),
        serde_json::json!([
            "env entry \"FEATURE_FLAGS\" matched no variable",
            "env entry \"PAYMENTS_*\" matched no variable"
        ])
    );

    // `lifeline dump` gives the dotenv file, sorted, which sh loads back to the values.
    let dumped = p.repo.dump("latest", "environment.env");
    let text = String::from_utf8(dumped.clone()).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("='"))
        .map(|l| l.split_once('=').unwrap().0)
        .collect();
    assert_eq!(
        lines,
        variables
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect::<Vec<_>>()
    );
    for secret in SECRET_VALUES {
        assert!(!text.contains(secret), "{secret} is stored:\n{text}");
    }
    let file = p.repo.sandbox.write("dumped/environment.env", &dumped);
    let names: Vec<&str> = variables
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let loaded = load_with_sh(&file, &names);
    let given: BTreeMap<&str, &str> = env.iter().copied().collect();
    for name in &names {
        let expected = match redacted[*name].as_str() {
            Some("password in a URL") => {
                "postgresql://chatbot:[REDACTED]@db.internal:5432/chatbot?sslmode=require"
            }
            Some(_) => "[REDACTED]",
            None => given[name],
        };
        assert_eq!(loaded[*name], expected, "{name}");
    }
    assert!(!loaded.contains_key("UNRELATED_SETTING"));

    // `lifeline restore` gives environment.env at the top and the files under their paths; the
    // ConfigMap's and Secret's keys as plain files, without the kubelet's `..` entries.
    let target = p.repo.restore("latest", "restored");
    assert_eq!(fs::read(target.join("environment.env")).unwrap(), dumped);
    let etc = restored(&target, &p.data.join("etc/chatbot"));
    assert_eq!(
        fs::read_to_string(etc.join("chatbot.toml")).unwrap(),
        "[server]\nport = 8080\n"
    );
    assert_eq!(
        fs::read_to_string(etc.join("conf.d/limits.toml")).unwrap(),
        "rate = 10\n"
    );
    // A link in an ordinary directory stays a link, as the files kind keeps it.
    assert_eq!(
        fs::read_link(etc.join("current.toml")).unwrap(),
        Path::new("chatbot.toml")
    );
    let cm = restored(&target, &p.data.join("configmap"));
    let mut entries: Vec<String> = fs::read_dir(&cm)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    entries.sort();
    assert_eq!(entries, ["app.yaml", "log.level", "nested"]);
    for (key, value) in [
        ("app.yaml", "replicas: 2\n"),
        ("log.level", "info"),
        ("nested/rules.json", "{\"rules\": []}\n"),
    ] {
        let path = cm.join(key);
        assert!(
            fs::symlink_metadata(&path).unwrap().file_type().is_file(),
            "{} is not a plain file",
            path.display()
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), value);
    }
    assert!(fs::symlink_metadata(cm.join("nested"))
        .unwrap()
        .file_type()
        .is_dir());
    let key = restored(&target, &p.data.join("secret/tls.key"));
    assert!(fs::symlink_metadata(&key).unwrap().file_type().is_file());
    assert_eq!(mode_of(&key) & 0o777, 0o400);
    assert_eq!(
        fs::read_to_string(&key).unwrap(),
        "-----BEGIN PRIVATE KEY-----\n"
    );
    assert!(!restored(&target, &p.data.join("secret/..data")).exists());
    assert_eq!(
        recorded(snap, "kubernetes_volumes"),
        serde_json::json!([p.data.join("configmap").display().to_string()])
    );

    // The kubelet swaps in a new version of the ConfigMap: the next run stores the new keys.
    configmap_volume(
        &p.data.join("configmap"),
        "..2026_12_03_10_00_00.000000001",
        &[
            ("app.yaml", "replicas: 5\n"),
            ("log.level", "debug"),
            ("nested/rules.json", "{\"rules\": [1]}\n"),
        ],
    );
    p.lifeline(&["run", "chatbot-config"], &env)
        .assert_success();
    let newer = p.repo.restore("latest", "restored-newer");
    let cm = restored(&newer, &p.data.join("configmap"));
    assert_eq!(
        fs::read_to_string(cm.join("app.yaml")).unwrap(),
        "replicas: 5\n"
    );
    assert_eq!(fs::read_to_string(cm.join("log.level")).unwrap(), "debug");

    // The drill loads the variables with sh and reads every restored file back.
    let out = p.lifeline(&["--json", "drill", "chatbot-config"], &[]);
    out.assert_success();
    let drilled = out.json();
    assert_eq!(drilled["passed"], true, "{drilled:#}");
    let record = &drilled["sources"][0]["record"];
    assert_eq!(record["kind"], "config");
    let steps: Vec<(&str, bool)> = record["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["ok"] == true))
        .collect();
    assert_eq!(
        steps,
        [
            ("environment", true),
            ("restore", true),
            ("verify", true),
            ("cleanup", true)
        ]
    );
    let checks: BTreeMap<&str, &Value> = record["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c))
        .collect();
    assert_eq!(checks["environment"]["result"], "pass", "{record:#}");
    assert!(checks["environment"]["message"]
        .as_str()
        .unwrap()
        .starts_with("all 10 variable(s)"));
    assert_eq!(checks["files"]["result"], "pass", "{record:#}");
}

#[test]
fn refuse_mode_fails_naming_every_secret_and_the_fix_and_saves_no_snapshot() {
    let p = Planned::new(
        r#"[[sources]]
name = "strict"
kind = "config"
class = "config"
env = ["CHATBOT_*", "DATABASE_URL", "REDIS_URL", "LOG_LEVEL"]
secrets = "refuse"
redact = ["*_LICENSE"]
paths = ["{DATA}/etc/chatbot"]
"#,
    );
    service_files(&p.data);
    let out = p.lifeline(&["run", "strict"], &service_environment());
    out.assert_code(EXIT_FATAL);
    let err = out.stderr_str();
    for named in [
        "CHATBOT_DB_PASSWORD (name matches *_PASSWORD)",
        "CHATBOT_Github_Token (name matches *_TOKEN)",
        "CHATBOT_LICENSE (name matches *_LICENSE)",
        "CHATBOT_SESSION_SECRET (name matches *_SECRET)",
        "CHATBOT_SIGNING_KEY (name matches *_KEY)",
        "DATABASE_URL (password in a URL)",
        "refused to back up 6 secret-looking variable(s)",
        "no snapshot was saved",
        "secrets = \"redact\"",
    ] {
        assert!(err.contains(named), "{named:?} missing\n{}", out.describe());
    }
    assert!(!err.contains("REDIS_URL"), "{}", out.describe());
    for secret in SECRET_VALUES {
        assert!(!out.all_output().contains(secret), "{}", out.describe());
    }
    assert!(p.snapshots_of("strict").is_empty());

    // Without the secrets in its environment the same source backs up.
    let clean: Vec<(&str, &str)> = service_environment()
        .into_iter()
        .filter(|(n, _)| {
            !n.ends_with("PASSWORD")
                && !n.ends_with("Token")
                && !n.ends_with("KEY")
                && !n.ends_with("SECRET")
                && !n.ends_with("LICENSE")
                && *n != "DATABASE_URL"
        })
        .collect();
    let mut c = p.repo.sandbox.lifeline();
    c.arg("--config")
        .arg(&p.plan)
        .args(["run", "strict", "--json"]);
    for (n, _) in service_environment() {
        c.env_remove(n);
    }
    for (n, v) in &clean {
        c.env(n, v);
    }
    let report = run(&mut c, None).assert_success().json();
    assert_eq!(report["outcome"], "success", "{report:#}");
    let snap = &p.snapshots_of("strict")[0];
    assert_eq!(snap["source"]["secrets"], "refuse");
    assert_eq!(recorded(snap, "redacted"), serde_json::json!({}));
    assert_eq!(
        recorded(snap, "variables"),
        serde_json::json!(["CHATBOT_GREETING", "CHATBOT_MODE", "LOG_LEVEL", "REDIS_URL"])
    );
}

#[test]
fn plan_check_names_bad_config_keys() {
    let p = Planned::new(
        r#"[[sources]]
name = "bad"
kind = "config"
class = "config"
env = ["APP_*_HOST", ""]
redact = ["*"]
paths = ["etc/app", "/environment.env"]
secrets = "maybe"
"#,
    );
    let out = p.lifeline(&["plan", "check"], &[]);
    out.assert_code(EXIT_FATAL);
    // An unknown `secrets` value is refused when the plan is read.
    out.assert_output_contains("maybe");
    let p = Planned::new(
        r#"[[sources]]
name = "bad"
kind = "config"
class = "config"
env = ["APP_*_HOST", ""]
redact = ["*"]
paths = ["etc/app", "/environment.env"]
"#,
    );
    let out = p.lifeline(&["plan", "check", "--json"], &[]);
    out.assert_code(EXIT_FATAL);
    let v = out.json();
    let messages: Vec<&str> = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        messages,
        [
            "config source \"bad\": env entry \"APP_*_HOST\" is not a variable name or a prefix ending in *",
            "config source \"bad\": env entry \"\" is not a variable name or a prefix ending in *",
            "config source \"bad\": redact pattern \"*\" is not a name pattern",
            "config source \"bad\": path etc/app is relative",
            "config source \"bad\": path /environment.env would take the place of environment.env",
        ],
        "{v:#}"
    );
}

// ---------------------------------------------------------------------------------------------
// The command kind, as it covers `terraform state pull`
// ---------------------------------------------------------------------------------------------

/// A stand-in for `terraform` on PATH (Terraform is not installed where the tests run): with the
/// local backend, `state pull` prints the state file and `state push FILE` replaces it, which is
/// all lifeline relies on. What is under test is lifeline's handling of the output and exit code.
fn fake_terraform(p: &Planned) -> (PathBuf, String) {
    let bin = p.repo.sandbox.mkdir("bin");
    let state = p.data.join("terraform.tfstate");
    let script = format!(
        r#"#!/bin/sh
set -e
case "$1 $2" in
  "state pull") echo "Acquiring state lock..." >&2; cat '{state}' ;;
  "state push") cp "$3" '{state}' ;;
  *) echo "unexpected: $*" >&2; exit 1 ;;
esac
"#,
        state = state.display()
    );
    let path = bin.join("terraform");
    write_file(&path, script);
    set_mode(&path, 0o755);
    let search = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    (state, search)
}

#[test]
fn terraform_state_pull_is_stored_byte_for_byte_and_pushed_back_from_a_dump() {
    let p = Planned::new(
        r#"[[sources]]
name = "tfstate"
kind = "command"
class = "config"
command = "terraform state pull"
filename = "terraform.tfstate"
timeout = "1m"
"#,
    );
    let (state, search) = fake_terraform(&p);
    // A state of a few MiB with every byte value: stored as printed, stderr left out.
    let mut bytes = b"{\"version\": 4, \"serial\": 17, \"lineage\": \"x\"}\n".to_vec();
    bytes.extend(random_bytes(12, 3 * MIB + 17));
    fs::write(&state, &bytes).unwrap();
    let report = p
        .lifeline(&["run", "tfstate", "--json"], &[("PATH", &search)])
        .assert_success()
        .json();
    assert_eq!(report["outcome"], "success", "{report:#}");
    assert_eq!(report["bytes"], bytes.len() as u64);
    let snap = &p.snapshots_of("tfstate")[0];
    assert_eq!(snap["kind"], "command");
    assert_eq!(snap["source"]["command"], "terraform state pull");
    let dumped = p.repo.dump("latest", "terraform.tfstate");
    assert!(dumped == bytes, "the dump differs from the state");

    // Restore by hand, as docs/sources/command.md says: dump, then `terraform state push`.
    fs::write(
        &state,
        b"{\"version\": 4, \"serial\": 18, \"broken\": true}\n",
    )
    .unwrap();
    let restored = p.repo.sandbox.write("terraform.tfstate", &dumped);
    let out = Command::new("terraform")
        .args(["state", "push"])
        .arg(&restored)
        .env("PATH", &search)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(fs::read(&state).unwrap() == bytes);
}

/// Every way a command can fail to give a backup fails the job and saves no snapshot: a non-zero
/// exit after printing, a kill by a signal, output only on stderr, a pipeline whose last program
/// prints nothing.
#[test]
fn a_command_that_fails_or_prints_only_to_stderr_fails_the_job_and_saves_no_snapshot() {
    let p = Planned::new(
        r#"[[sources]]
name = "locked"
kind = "command"
class = "config"
command = "terraform state pull"

[[sources]]
name = "killed"
kind = "command"
class = "config"
command = "echo '{\"version\": 4'; kill -9 $$"

[[sources]]
name = "stderr-only"
kind = "command"
class = "config"
command = "echo 'Error: no state' >&2"

[[sources]]
name = "empty-pipe"
kind = "command"
class = "config"
command = "false | cat"
"#,
    );
    let (state, search) = fake_terraform(&p);
    // No state file: the stand-in prints its lock message, then `cat` fails.
    assert!(!state.exists());
    let path = [("PATH", search.as_str())];
    let out = p.lifeline(&["run", "locked"], &path);
    out.assert_code(EXIT_FATAL);
    out.assert_output_contains("exit status: 1")
        .assert_output_contains("No such file or directory");
    let out = p.lifeline(&["run", "killed"], &path);
    out.assert_code(EXIT_FATAL);
    out.assert_output_contains("signal: 9");
    for source in ["stderr-only", "empty-pipe"] {
        let out = p.lifeline(&["run", source, "--json"], &path);
        out.assert_code(EXIT_FATAL);
        let message = out.json()["message"].as_str().unwrap().to_string();
        assert!(message.contains("printed nothing"), "{source}: {message}");
    }
    for source in ["locked", "killed", "stderr-only", "empty-pipe"] {
        assert!(p.snapshots_of(source).is_empty(), "{source}");
    }
}
