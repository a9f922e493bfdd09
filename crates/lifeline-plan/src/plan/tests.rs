use std::path::Path;

use super::*;

/// The issue's plan, exactly as written.
const EXAMPLE: &str = r#"[repository]
url = "/srv/lifeline/repo"
key = { password_file = "/etc/lifeline/password" }

[tiers]
tier1 = { rto = "15m", rpo = "5m" }
tier3 = { rto = "4h", rpo = "1h" }

[classes.documents]
tier = "tier3"
retention = { daily = 30, weekly = 12, monthly = 12, yearly = 7 }

[[sources]]
name = "docs"
kind = "files"
class = "documents"
paths = ["/srv/uploads"]
schedule = "*/10 * * * * *"        # cron; six fields = with seconds, five = without

[[sources]]
name = "tfstate"
kind = "command"
class = "documents"
command = "terraform state pull"
schedule = "0 2 * * *"

[metrics]
listen = "127.0.0.1:9184"

[[notify]]
url = "http://127.0.0.1:8099/hook"          # generic JSON; `pagerduty_routing_key_file = "..."` for PagerDuty
"#;

fn problems(text: &str) -> Vec<String> {
    let plan = Plan::parse(Path::new("plan.toml"), text).expect("parses");
    check(&plan, Path::new("plan.toml"), text)
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn the_example_plan_reads_and_only_its_missing_password_file_is_a_problem() {
    let plan = Plan::parse(Path::new("plan.toml"), EXAMPLE).expect("parses");
    assert_eq!(plan.sources.len(), 2);
    assert_eq!(plan.sources[0].kind, SourceKind::Files);
    assert_eq!(
        plan.sources[1].command.as_deref(),
        Some("terraform state pull")
    );
    let tier = &plan.tiers["tier3"];
    assert_eq!((tier.rto.as_secs(), tier.rpo.as_secs()), (4 * 3600, 3600));
    let retention = plan.classes["documents"].retention.as_ref().expect("set");
    assert_eq!(retention.keep_yearly, 7);
    let p = problems(EXAMPLE);
    // This machine has no /etc/lifeline/password; nothing else is wrong.
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with(
            "plan.toml:3: [repository]: key source /etc/lifeline/password does not exist"
        ),
        "{p:?}"
    );
    let view = show(&plan, chrono::Utc::now());
    assert_eq!(view.sources[1].schedules[0].next.len(), 3);
    assert_eq!(view.sources[0].tier, "tier3");
    assert_eq!(
        view.sources[0].retention.as_deref(),
        Some("daily 30, weekly 12, monthly 12, yearly 7")
    );
}

#[test]
fn unknown_names_keys_and_bad_schedules_are_named_with_their_lines() {
    let text = EXAMPLE
        .replace(
            "class = \"documents\"\ncommand",
            "class = \"secrets\"\ncommand",
        )
        .replace(
            "paths = [\"/srv/uploads\"]",
            "paths = [\"/srv/uploads\"]\npathz = [\"/x\"]\ncommand = \"ls\"",
        )
        .replace("0 2 * * *", "0 2 * *")
        .replace("tier = \"tier3\"", "tier = \"tier9\"");
    let p = problems(&text).join("\n");
    assert!(
        p.contains("plan.toml:10: class \"documents\" names tier \"tier9\""),
        "{p}"
    );
    assert!(
        p.contains("plan.toml:18: source \"docs\" has an unknown key \"pathz\""),
        "{p}"
    );
    assert!(
        p.contains("plan.toml:19: source \"docs\" is kind files, which has no \"command\""),
        "{p}"
    );
    assert!(
        p.contains("plan.toml:25: source \"tfstate\" names class \"secrets\""),
        "{p}"
    );
    assert!(
        p.contains("plan.toml:27: source \"tfstate\": \"0 2 * *\" has 4 field(s)"),
        "{p}"
    );
    assert!(p.contains("fix: add [classes.secrets]"), "{p}");
}

#[test]
fn shape_errors_carry_the_parsers_line() {
    let text = EXAMPLE.replace("[metrics]", "[metrix]");
    let err = Plan::parse(Path::new("plan.toml"), &text).expect_err("unknown table");
    let msg = err.to_string();
    assert!(
        msg.contains("plan.toml") && msg.contains("line 27") && msg.contains("metrix"),
        "{msg}"
    );
}

#[test]
fn a_missing_key_source_is_a_problem() {
    let text = EXAMPLE.replace("key = { password_file = \"/etc/lifeline/password\" }\n", "");
    let p = problems(&text).join("\n");
    assert!(p.contains("[repository] has no key source"), "{p}");
}

#[test]
fn a_kms_command_is_a_key_source() {
    let text = EXAMPLE.replace(
        "key = { password_file = \"/etc/lifeline/password\" }\n",
        "key = { kms_command = \"/usr/local/bin/lifeline-kms\" }\n",
    );
    assert_ne!(text, EXAMPLE);
    let p = problems(&text).join("\n");
    assert!(!p.contains("key source"), "{p}");
}

#[test]
fn drill_schedules_and_checks_are_read_and_checked_with_their_lines() {
    let text = r#"[repository]
url = "/srv/lifeline/repo"
key = { password_command = "cat /etc/lifeline/password" }

[tiers]
tier1 = { rto = "15m", rpo = "5m" }

[classes.db]
tier = "tier1"

[[sources]]
name = "app"
kind = "postgres"
class = "db"
db = "postgresql://backup@db/app"
drill = "0 4 * * 0"
checks = [
  { name = "users", sql = "SELECT count(*) FROM chatbot_auth.users", expect = "42" },
  { name = "audit", sql = "SELECT count(*) FROM audit_logs" },
]

[[sources]]
name = "docs"
kind = "files"
class = "db"
paths = ["/srv/uploads"]
drill = "0 4 * *"
checks = [{ name = "x", sql = "SELECT 1" }]

[[sources]]
name = "dump"
kind = "postgres-dump"
class = "db"
db = "postgresql://backup@db/app"
checks = [
  { name = "same", sql = "SELECT 1" },
  { name = "same", sql = " " },
]
"#;
    let plan = Plan::parse(Path::new("plan.toml"), text).expect("parses");
    let app = &plan.sources[0];
    assert_eq!(app.checks.len(), 2);
    assert_eq!(app.checks[0].expect.as_deref(), Some("42"));
    assert_eq!(app.checks[1].expect, None);
    let schedule = plan.drill_schedule(app).expect("valid").expect("set");
    assert_eq!(schedule.expression(), "0 4 * * 0");
    assert!(plan
        .drill_schedule(&plan.sources[2])
        .expect("none")
        .is_none());
    assert_eq!(
        problems(text),
        [
            "plan.toml:28: source \"docs\" is kind files, which has no \"checks\" (fix: remove it, or change the kind; files takes paths, exclude, exclude_file, exclude_caches, one_file_system)",
            "plan.toml:27: source \"docs\": drill schedule \"0 4 * *\" has 4 field(s): a schedule has five (minute hour day month weekday) or six (second first) (fix: five fields (minute hour day month weekday) or six with seconds first, e.g. drill = \"0 4 * * 0\" (Sundays 04:00); see docs/drills.md)",
            "plan.toml:37: source \"dump\" has two checks named \"same\" (fix: give each check its own name)",
            "plan.toml:37: check \"same\" of source \"dump\" has no query (fix: give one statement whose first column is the answer, e.g. sql = \"SELECT count(*) FROM chatbot_auth.users\")",
        ]
    );
    // A check with a key it does not know is refused when the plan is read.
    let bad = text.replace("expect = \"42\"", "expected = \"42\"");
    let err = Plan::parse(Path::new("plan.toml"), &bad).expect_err("unknown key");
    assert!(err.to_string().contains("expected"), "{err}");
}
