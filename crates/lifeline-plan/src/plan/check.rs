//! `plan check`: what serde cannot see — names that refer to nothing, keys that do not belong to a
//! source's kind, schedules, key sources — each named with its file, line and the fix.

use std::collections::HashSet;
use std::path::Path;

use serde::Serialize;

use super::locate::{Locator, Seg};
use super::{Plan, SourceKind};
use crate::options::{KeySource, RepositoryOptions};

/// One thing wrong with a plan.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub file: String,
    /// 1-based; absent when the setting is missing and no table holds its place.
    pub line: Option<usize>,
    pub message: String,
    pub fix: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file, self.message)?,
            None => write!(f, "{}: {}", self.file, self.message)?,
        }
        write!(f, " (fix: {})", self.fix)
    }
}

struct Checker<'a> {
    file: String,
    locator: Locator,
    problems: Vec<Problem>,
    base: &'a Path,
}

impl Checker<'_> {
    fn add(&mut self, at: &[Seg<'_>], message: impl Into<String>, fix: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.clone(),
            line: self.locator.line(at),
            message: message.into(),
            fix: fix.into(),
        });
    }

    /// A plan runs unattended: its key must come from a file or a command, and a file must exist.
    fn key_source(&mut self, at: &[Seg<'_>], what: &str, key: &KeySource) {
        let mut at = at.to_vec();
        at.push(Seg::Key("key"));
        match (&key.password_file, &key.password_command, &key.key_file, &key.kms_command) {
            (None, None, None, None) => self.add(
                &at,
                format!("{what} has no key source, so scheduled jobs could not open it"),
                "add `key = { password_file = \"/etc/lifeline/password\" }` (or password_command, key_file or kms_command)",
            ),
            (file, _, key_file, _) => {
                for path in [file, key_file].into_iter().flatten() {
                    let full = self.base.join(path);
                    if !full.exists() {
                        self.add(
                            &at,
                            format!("{what}: key source {} does not exist", full.display()),
                            "create the file (mode 0600) or correct the path",
                        );
                    }
                }
            }
        }
    }

    fn repository(&mut self, at: &[Seg<'_>], what: &str, repo: &RepositoryOptions) {
        if repo.url.as_deref().is_none_or(str::is_empty) {
            let mut at = at.to_vec();
            at.push(Seg::Key("url"));
            self.add(
                &at,
                format!("{what} has no url"),
                "set `url = \"/srv/lifeline/repo\"` or `url = \"s3://BUCKET/PREFIX\"`",
            );
        }
        self.key_source(at, what, &repo.key);
    }
}

/// Every problem of `plan`, read from `path` whose text is `text`; empty when the plan is good.
/// Relative key files are judged from the current directory, as the commands read them.
pub fn check(plan: &Plan, path: &Path, text: &str) -> Vec<Problem> {
    let mut c = Checker {
        file: path.display().to_string(),
        locator: Locator::new(text),
        problems: Vec::new(),
        base: Path::new("."),
    };
    c.repository(&[Seg::Key("repository")], "[repository]", &plan.repository);
    let primary = plan.repository.url.as_deref();
    for (i, copy) in plan.copies.iter().enumerate() {
        let at = [Seg::Key("copies"), Seg::Index(i)];
        c.repository(&at, &format!("[[copies]] #{}", i + 1), copy);
        if copy.url.is_some() && copy.url.as_deref() == primary {
            c.add(
                &[Seg::Key("copies"), Seg::Index(i), Seg::Key("url")],
                "a copy target is the repository itself",
                "give the second region's repository URL",
            );
        }
    }
    for (name, class) in &plan.classes {
        if !plan.tiers.contains_key(&class.tier) {
            let known = names(plan.tiers.keys());
            c.add(
                &[Seg::Key("classes"), Seg::Key(name), Seg::Key("tier")],
                format!("class {name:?} names tier {:?}, which [tiers] does not define", class.tier),
                format!("define it under [tiers] (e.g. {} = {{ rto = \"4h\", rpo = \"1h\" }}) or use one of: {known}", class.tier),
            );
        }
    }
    if plan.daemon.timezone.parse::<chrono_tz::Tz>().is_err() {
        c.add(
            &[Seg::Key("daemon"), Seg::Key("timezone")],
            format!("{:?} is not a time zone", plan.daemon.timezone),
            "give an IANA name such as UTC or Europe/Berlin",
        );
    }
    if plan.keys.rotate_every.is_some_and(|d| d.is_zero()) {
        c.add(
            &[Seg::Key("keys"), Seg::Key("rotate_every")],
            "rotate_every = \"0s\" would start a key epoch at every check",
            "give the rotation period, e.g. \"90d\" (or remove the key: no automatic rotation)",
        );
    }
    if plan.daemon.max_concurrent_jobs == 0 {
        c.add(
            &[Seg::Key("daemon"), Seg::Key("max_concurrent_jobs")],
            "max_concurrent_jobs = 0 would never run a job",
            "set it to 1 or more",
        );
    }
    if let Some(listen) = &plan.metrics.listen {
        if listen.parse::<std::net::SocketAddr>().is_err() {
            c.add(
                &[Seg::Key("metrics"), Seg::Key("listen")],
                format!("{listen:?} is not an address to listen on"),
                "write it as HOST:PORT, e.g. \"127.0.0.1:9184\" or \"0.0.0.0:9184\"",
            );
        }
    }
    for (i, notify) in plan.notify.iter().enumerate() {
        if let Err(e) = notify.check() {
            c.add(
                &[Seg::Key("notify"), Seg::Index(i)],
                e,
                "see [[notify]] in docs/plan.md",
            );
        }
    }
    audit(plan, &mut c);
    sources(plan, &mut c);
    c.problems
}

fn audit(plan: &Plan, c: &mut Checker<'_>) {
    if let Some(path) = &plan.audit.jsonl {
        if !path.is_absolute() {
            c.add(
                &[Seg::Key("audit"), Seg::Key("jsonl")],
                format!("{} is a relative path", path.display()),
                "give an absolute path: the daemon and CronJobs run from other directories",
            );
        }
    }
    let table = &plan.audit.table;
    let plain =
        |p: &str| !p.is_empty() && p.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_');
    if table.split('.').count() > 2 || !table.split('.').all(plain) {
        c.add(
            &[Seg::Key("audit"), Seg::Key("table")],
            format!("{table:?} is not a table name"),
            "write audit_logs or schema.audit_logs (letters, digits and _)",
        );
    }
}

fn sources(plan: &Plan, c: &mut Checker<'_>) {
    let mut seen = HashSet::new();
    for (i, source) in plan.sources.iter().enumerate() {
        let at = |key: &'static str| [Seg::Key("sources"), Seg::Index(i), Seg::Key(key)];
        let name = &source.name;
        if name.is_empty()
            || !name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "._-".contains(ch))
        {
            c.add(
                &at("name"),
                format!("source name {name:?} is not a plain name"),
                "use letters, digits, '.', '_' and '-' (it becomes a tag and a metrics label)",
            );
        }
        if !seen.insert(name.as_str()) {
            c.add(
                &at("name"),
                format!("two sources are named {name:?}"),
                "give each source its own name",
            );
        }
        if !plan.classes.contains_key(&source.class) {
            c.add(
                &at("class"),
                format!(
                    "source {name:?} names class {:?}, which the plan does not define",
                    source.class
                ),
                format!(
                    "add [classes.{}] with a tier and retention, or use one of: {}",
                    source.class,
                    names(plan.classes.keys())
                ),
            );
        }
        for key in source.unknown.keys() {
            c.problems.push(Problem {
                file: c.file.clone(),
                line: c
                    .locator
                    .line(&[Seg::Key("sources"), Seg::Index(i), Seg::Key(key)]),
                message: format!("source {name:?} has an unknown key {key:?}"),
                fix: format!(
                    "remove it or correct its spelling; a {} source knows name, kind, class, schedule, timezone, tags, drill, {}",
                    source.kind.as_str(),
                    source.kind.own_keys().join(", ")
                ),
            });
        }
        let foreign: Vec<&str> = set_keys(source)
            .into_iter()
            .filter(|k| !source.kind.own_keys().contains(k))
            .collect();
        for key in foreign {
            c.problems.push(Problem {
                file: c.file.clone(),
                line: c
                    .locator
                    .line(&[Seg::Key("sources"), Seg::Index(i), Seg::Key(key)]),
                message: format!(
                    "source {name:?} is kind {}, which has no {key:?}",
                    source.kind.as_str()
                ),
                fix: format!(
                    "remove it, or change the kind; {} takes {}",
                    source.kind.as_str(),
                    source.kind.own_keys().join(", ")
                ),
            });
        }
        match source.kind {
            SourceKind::Files => {
                if source.paths.is_empty() {
                    c.add(
                        &at("paths"),
                        format!("files source {name:?} has no paths"),
                        "add `paths = [\"/srv/uploads\"]`",
                    );
                }
                for p in &source.paths {
                    if !p.is_absolute() {
                        c.add(
                            &at("paths"),
                            format!("path {} of source {name:?} is relative", p.display()),
                            "give absolute paths: jobs do not run in a fixed directory",
                        );
                    }
                }
                if let Err(e) = source.exclude.exclusions() {
                    c.add(
                        &at("exclude"),
                        format!("source {name:?}: {e:#}"),
                        "correct the pattern or the exclude file",
                    );
                }
            }
            SourceKind::Postgres | SourceKind::PostgresDump => {
                if source.db.is_none() {
                    c.add(
                        &at("db"),
                        format!("source {name:?} has no db"),
                        "add `db = \"postgresql://backup@host:5432/postgres\"`",
                    );
                }
            }
            SourceKind::Command => {
                if source
                    .command
                    .as_deref()
                    .is_none_or(|c| c.trim().is_empty())
                {
                    c.add(&at("command"), format!("command source {name:?} has no command"), "add `command = \"terraform state pull\"`: its standard output is the backup");
                }
            }
            SourceKind::Scylla => {
                if source.nodes.is_empty() {
                    c.add(
                        &at("nodes"),
                        format!("scylla source {name:?} names no nodes"),
                        "add `nodes = [{ host = \"10.0.0.1\", nodetool = \"10.0.0.1:7199\", data_dir = \"/var/lib/scylla/data\" }, …]`, every node of the cluster",
                    );
                }
                if source.keyspaces.is_empty() {
                    c.add(
                        &at("keyspaces"),
                        format!("scylla source {name:?} names no keyspaces"),
                        "add `keyspaces = [\"therapeutic_ai\"]`",
                    );
                }
            }
            SourceKind::Mongodb => {
                let url = source.url.as_deref().unwrap_or_default();
                if !(url.starts_with("mongodb://") || url.starts_with("mongodb+srv://")) {
                    c.add(
                        &at("url"),
                        format!("mongodb source {name:?} has no mongodb:// url"),
                        "add `url = \"mongodb://backup@db1:27017,db2:27017/?replicaSet=rs0\"`",
                    );
                }
            }
            SourceKind::Redis => {
                match source
                    .url
                    .as_deref()
                    .map(lifeline_sources::redis::url::Target::parse)
                {
                    None => c.add(
                        &at("url"),
                        format!("redis source {name:?} has no url"),
                        "add `url = \"redis://backup@redis.internal:6379\"` (rediss:// for TLS)",
                    ),
                    Some(Err(e)) => c.add(
                        &at("url"),
                        format!("redis source {name:?}: {e}"),
                        "write it as redis://USER@HOST:PORT, or rediss://… for TLS",
                    ),
                    Some(Ok(target)) => {
                        if source.tls_ca_file.is_some() && !target.tls {
                            c.add(
                                &at("tls_ca_file"),
                                format!("redis source {name:?} has tls_ca_file but a redis:// url"),
                                "use rediss:// to connect with TLS, or remove tls_ca_file",
                            );
                        }
                        if target.password.is_some() && source.password_file.is_some() {
                            c.add(
                                &at("password_file"),
                                format!("redis source {name:?} has a password in its url and a password_file"),
                                "keep the password in password_file only; remove it from the url",
                            );
                        }
                    }
                }
                for (key, path) in [
                    ("password_file", &source.password_file),
                    ("tls_ca_file", &source.tls_ca_file),
                    ("aof_dir", &source.aof_dir),
                ] {
                    if path.as_ref().is_some_and(|p| !p.is_absolute()) {
                        c.add(
                            &at(key),
                            format!("{key} of source {name:?} is relative"),
                            "give an absolute path: jobs do not run in a fixed directory",
                        );
                    }
                }
            }
            SourceKind::S3 => {
                match source.bucket.as_deref().and_then(|b| b.strip_prefix("s3://")) {
                    None => c.add(
                        &at("bucket"),
                        format!("s3 source {name:?} has no bucket URL"),
                        "add `bucket = \"s3://BUCKET/PREFIX\"`",
                    ),
                    Some(rest) if rest.split('/').next().is_none_or(str::is_empty) => c.add(
                        &at("bucket"),
                        format!("the bucket URL of s3 source {name:?} names no bucket"),
                        "write it as `s3://BUCKET/PREFIX` (the prefix may be left out)",
                    ),
                    // The S3 client cannot name such a prefix (docs/sources/s3.md, limits).
                    Some(rest)
                        if rest
                            .trim_end_matches('/')
                            .split('/')
                            .skip(1)
                            .any(|s| s.is_empty() || s == "." || s == "..") =>
                    {
                        c.add(
                            &at("bucket"),
                            format!("the prefix of s3 source {name:?} has an empty, `.` or `..` segment"),
                            "write the prefix as the keys begin, segments separated by single slashes",
                        )
                    }
                    Some(_) => {}
                }
                let secret = source
                    .s3
                    .as_ref()
                    .and_then(|s| s.secret_access_key_file.as_ref());
                if let Some(file) = secret {
                    let full = c.base.join(file);
                    if !full.exists() {
                        c.add(
                            &at("s3"),
                            format!(
                                "s3 source {name:?}: secret_access_key_file {} does not exist",
                                full.display()
                            ),
                            "create the file (mode 0600) or correct the path",
                        );
                    }
                }
            }
            SourceKind::Config => {
                // The capture refuses the same problems: one list of rules, in the source's module.
                for p in
                    lifeline_sources::config::problems(&source.env, &source.redact, &source.paths)
                {
                    c.add(
                        &at(p.key),
                        format!("config source {name:?}: {}", p.message),
                        p.fix,
                    );
                }
            }
            SourceKind::AuditTable => {
                for (key, set, example) in [
                    (
                        "db",
                        source.db.is_some(),
                        "db = \"postgresql://backup@host:5432/app\"",
                    ),
                    ("table", source.table.is_some(), "table = \"audit_log\""),
                    (
                        "watermark",
                        source.watermark.is_some(),
                        "watermark = \"id\" (or \"created_at\")",
                    ),
                ] {
                    if !set {
                        c.add(
                            &at(key),
                            format!("audit-table source {name:?} has no {key}"),
                            format!("add `{example}`"),
                        );
                    }
                }
                let plain = |v: &str| {
                    !v.is_empty() && v.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
                };
                if let Some(table) = &source.table {
                    if table.split('.').count() > 2 || !table.split('.').all(plain) {
                        c.add(
                            &at("table"),
                            format!("{table:?} is not a table name"),
                            "write audit_log or schema.audit_log (letters, digits and _)",
                        );
                    }
                }
                if let Some(column) = source.watermark.as_deref().filter(|w| !plain(w)) {
                    c.add(
                        &at("watermark"),
                        format!("{column:?} is not a column name"),
                        "name one column (letters, digits and _), e.g. watermark = \"id\"",
                    );
                }
                // Exports are chained: one a policy removed would be a hole `audit-table verify`
                // reports. They are tagged retention=permanent, which every policy keeps anyway; a
                // policy on their class would only pretend otherwise.
                if let Some(policy) = plan
                    .classes
                    .get(&source.class)
                    .and_then(|class| class.retention.as_ref())
                {
                    let policy = policy.policy();
                    if !policy.is_empty() {
                        c.add(
                            &[Seg::Key("classes"), Seg::Key(&source.class), Seg::Key("retention")],
                            format!(
                                "audit-table source {name:?} is in class {:?}, whose retention ({policy}) would forget exports; audit exports are permanent",
                                source.class
                            ),
                            "put the source in a class without retention, e.g. [classes.permanent] tier = \"tier3\" (docs/sources/audit-table.md)",
                        );
                    }
                }
                if source
                    .tags
                    .iter()
                    .any(|(k, _)| k == lifeline_repo::retention::PERMANENT_TAG.0)
                {
                    c.add(
                        &at("tags"),
                        format!("audit-table source {name:?} sets the tag retention, which marks its exports permanent"),
                        "remove it: every export is tagged retention=permanent",
                    );
                }
            }
        }
        if source.kind == SourceKind::Postgres
            && source.schedule.is_some()
            && source.base_backup.is_some()
        {
            c.add(
                &at("schedule"),
                format!("source {name:?} has both schedule and base_backup"),
                "use base_backup = { full = \"0 2 * * *\", incremental = \"0 * * * *\" } alone",
            );
        }
        let drill_bad = plan.drill_schedule(source).is_err();
        if let Err(e) = plan.drill_schedule(source) {
            c.add(
                &at("drill"),
                format!("source {name:?}: drill schedule {e}"),
                "five fields (minute hour day month weekday) or six with seconds first, e.g. drill = \"0 4 * * 0\" (Sundays 04:00); see docs/drills.md",
            );
        }
        sql_checks(c, i, source);
        // `schedules` includes the drill's: a bad one is reported once, above.
        let schedules = if drill_bad {
            Ok(Vec::new())
        } else {
            plan.schedules(source)
        };
        if let Err(e) = schedules {
            let key = if source.base_backup.is_some() && source.schedule.is_none() {
                "base_backup"
            } else if source.timezone.is_some() && e.contains("time zone") {
                "timezone"
            } else {
                "schedule"
            };
            c.add(&at(key), format!("source {name:?}: {e}"), "five fields (minute hour day month weekday) or six with seconds first; see docs/plan.md");
        }
    }
}

/// The drill's queries: each named once, with a statement to run.
fn sql_checks(c: &mut Checker<'_>, i: usize, source: &super::SourceDef) {
    let mut names = HashSet::new();
    for (j, check) in source.checks.iter().enumerate() {
        let at = |key: &'static str| {
            [
                Seg::Key("sources"),
                Seg::Index(i),
                Seg::Key("checks"),
                Seg::Index(j),
                Seg::Key(key),
            ]
        };
        let source_name = &source.name;
        if check.name.trim().is_empty() {
            c.add(
                &at("name"),
                format!("check #{} of source {source_name:?} has no name", j + 1),
                "name it: it labels the check in drill records, e.g. name = \"users\"",
            );
        } else if !names.insert(check.name.as_str()) {
            c.add(
                &at("name"),
                format!(
                    "source {source_name:?} has two checks named {:?}",
                    check.name
                ),
                "give each check its own name",
            );
        }
        if check.sql.trim().is_empty() {
            c.add(
                &at("sql"),
                format!(
                    "check {:?} of source {source_name:?} has no query",
                    check.name
                ),
                "give one statement whose first column is the answer, e.g. sql = \"SELECT count(*) FROM chatbot_auth.users\"",
            );
        }
    }
}

/// The kind-specific keys a source sets.
fn set_keys(s: &super::SourceDef) -> Vec<&'static str> {
    let e = &s.exclude;
    [
        ("paths", !s.paths.is_empty()),
        ("exclude", !e.exclude.is_empty()),
        ("exclude_file", !e.exclude_file.is_empty()),
        ("exclude_caches", e.exclude_caches),
        ("one_file_system", e.one_file_system),
        ("db", s.db.is_some()),
        ("base_backup", s.base_backup.is_some()),
        ("wal_timeout", s.wal_timeout.is_some()),
        ("schemas", !s.schemas.is_empty()),
        ("mode", s.mode.is_some()),
        ("jobs", s.jobs.is_some()),
        ("checks", !s.checks.is_empty()),
        ("command", s.command.is_some()),
        ("filename", s.filename.is_some()),
        ("timeout", s.timeout.is_some()),
        ("url", s.url.is_some()),
        ("password_file", s.password_file.is_some()),
        ("tls_ca_file", s.tls_ca_file.is_some()),
        ("aof_dir", s.aof_dir.is_some()),
        ("bucket", s.bucket.is_some()),
        ("s3", s.s3.is_some()),
        ("env", !s.env.is_empty()),
        ("secrets", s.secrets.is_some()),
        ("redact", !s.redact.is_empty()),
        ("table", s.table.is_some()),
        ("watermark", s.watermark.is_some()),
        ("format", s.format.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, set)| set.then_some(k))
    .collect()
}

fn names<'a>(keys: impl Iterator<Item = &'a String>) -> String {
    let list: Vec<&str> = keys.map(String::as_str).collect();
    if list.is_empty() {
        "(none defined)".into()
    } else {
        list.join(", ")
    }
}
