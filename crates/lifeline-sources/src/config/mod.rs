//! Service configuration as a source: allowed environment variables, with secrets redacted or
//! refused by name, and configuration files (Kubernetes ConfigMaps mounted as files included).
//!
//! A snapshot's tree holds `environment.env` (when the source names variables) and the configured
//! paths under their absolute paths, as a files snapshot holds them: `lifeline dump SNAPSHOT
//! environment.env` gives the variables, `lifeline restore SNAPSHOT --target DIR` everything.

mod drill;
pub mod environment;
mod files;
mod source;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use lifeline_repo::chunker::ChunkProfile;
use lifeline_repo::snapshot::Snapshot;
use lifeline_repo::tree::{Node, Tree};
use lifeline_repo::Writer;
use serde::{Deserialize, Serialize};

pub use environment::{REDACTED, SECRET_NAMES};
pub use files::{is_volume, VOLUME_MARK};
pub use source::ConfigSource;

use crate::Progress;

/// The snapshot kind of a config capture.
pub const KIND: &str = "config";

/// The file at the root of a config snapshot that holds the variables.
pub const ENV_FILE: &str = "environment.env";

/// Keys of a config snapshot's `source` map. Names only: no value is ever recorded there.
pub mod keys {
    /// JSON list of the stored variables' names.
    pub const VARIABLES: &str = "variables";
    /// JSON object: name of each redacted variable → why (`name matches *_TOKEN`, `password in a URL`).
    pub const REDACTED: &str = "redacted";
    /// JSON list of sentences: allow-list entries that matched nothing, variables left out.
    pub const WARNINGS: &str = "warnings";
    /// `redact` or `refuse`, as the plan said.
    pub const SECRETS: &str = "secrets";
    /// JSON list of the directories stored as Kubernetes volumes (keys followed).
    pub const VOLUMES: &str = "kubernetes_volumes";
}

/// What a variable whose name looks like a secret does to a capture.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Secrets {
    /// Stored with its value replaced, and named in the snapshot's record of redactions.
    #[default]
    Redact,
    /// The capture fails, naming the variable.
    Refuse,
}

impl Secrets {
    pub fn as_str(self) -> &'static str {
        match self {
            Secrets::Redact => "redact",
            Secrets::Refuse => "refuse",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("refused to back up {} secret-looking variable(s): {}; no snapshot was saved (fix: leave them out of `env`, or set `secrets = \"redact\"` to store them as {REDACTED} with a record of their names)", .found.len(), list(.found))]
    Secrets {
        /// Each offending variable with why it is taken for a secret.
        found: Vec<(String, String)>,
    },
    #[error("the config source is not valid: {}", .0.join("; "))]
    Invalid(Vec<String>),
    #[error(transparent)]
    Repo(#[from] lifeline_repo::Error),
}

fn list(found: &[(String, String)]) -> String {
    found
        .iter()
        .map(|(name, why)| format!("{name} ({why})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What to capture.
#[derive(Debug, Clone)]
pub struct ConfigRequest<'a> {
    /// Variable names, or prefixes ending in `*`.
    pub env: &'a [String],
    pub secrets: Secrets,
    /// More secret name patterns (`*` wildcards, case ignored).
    pub redact: &'a [String],
    /// Absolute files and directories.
    pub paths: &'a [PathBuf],
    /// The variables to choose from: the process's own (`std::env::vars_os`).
    pub environment: Vec<(OsString, OsString)>,
}

/// Something wrong in a config source's keys, for `lifeline plan check` and the capture alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The plan key at fault.
    pub key: &'static str,
    pub message: String,
    pub fix: String,
}

/// The problems of a config source's `env`, `redact` and `paths`.
pub fn problems(env: &[String], redact: &[String], paths: &[PathBuf]) -> Vec<Problem> {
    let mut found = Vec::new();
    let mut add = |key, message: String, fix: &str| {
        found.push(Problem {
            key,
            message,
            fix: fix.into(),
        })
    };
    if env.is_empty() && paths.is_empty() {
        add(
            "env",
            "it captures nothing".into(),
            "add `env = [\"APP_*\", \"DATABASE_HOST\"]` and/or `paths = [\"/etc/app\"]`",
        );
    }
    for entry in env {
        let name = entry.strip_suffix('*').unwrap_or(entry);
        let plain = name.is_empty() || environment::is_name(name);
        if entry.is_empty() || !plain {
            add(
                "env",
                format!("env entry {entry:?} is not a variable name or a prefix ending in *"),
                "write names such as DATABASE_HOST, or prefixes such as APP_* (letters, digits and _; one * at the end)",
            );
        }
    }
    for pattern in redact {
        let plain = pattern
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '*');
        if !plain || pattern.trim_matches('*').is_empty() {
            add(
                "redact",
                format!("redact pattern {pattern:?} is not a name pattern"),
                "write names with * for any run of characters, such as *_CREDENTIALS or PGPASSWORD",
            );
        }
    }
    for p in paths {
        if !p.is_absolute() {
            add(
                "paths",
                format!("path {} is relative", p.display()),
                "give absolute paths: jobs do not run in a fixed directory",
            );
        } else if p.parent().is_none() {
            add(
                "paths",
                "path / is the whole file system".into(),
                "name the configuration's files and directories, such as /etc/app",
            );
        } else if p.components().nth(1).map(|c| c.as_os_str()) == Some(ENV_FILE.as_ref()) {
            add(
                "paths",
                format!("path {} would take the place of {ENV_FILE}", p.display()),
                "a config snapshot keeps its variables in /environment.env; move the file",
            );
        }
    }
    found
}

/// Capture the allowed variables and the configured files; the snapshot is returned unsaved. With
/// `secrets = refuse`, a secret fails the capture before anything is stored.
pub fn capture(
    writer: &Writer<'_>,
    request: ConfigRequest<'_>,
    progress: &dyn Progress,
) -> Result<Snapshot, Error> {
    let wrong = problems(request.env, request.redact, request.paths);
    if !wrong.is_empty() {
        return Err(Error::Invalid(
            wrong
                .into_iter()
                .map(|p| format!("{} (fix: {})", p.message, p.fix))
                .collect(),
        ));
    }
    let has_env = !request.env.is_empty();
    let selected =
        has_env.then(|| environment::select(request.environment, request.env, request.redact));
    if let Some(selected) = &selected {
        if request.secrets == Secrets::Refuse && !selected.secrets.is_empty() {
            return Err(Error::Secrets {
                found: selected.secrets.clone().into_iter().collect(),
            });
        }
        for warning in &selected.warnings {
            tracing::warn!("{warning}");
        }
    }
    let mut paths = request.paths.to_vec();
    paths.sort();
    paths.dedup();
    let walked = files::walk(writer, &paths, progress)?;
    let mut nodes = walked.nodes;
    let mut summary = walked.summary;
    if let Some(selected) = &selected {
        let text = environment::encode(&selected.variables);
        let (content, size) = writer.add_stream(
            text.as_slice(),
            ChunkProfile::Files,
            Path::new(ENV_FILE),
            &|n| progress.bytes(n),
        )?;
        progress.file_done(size);
        // Mode 0600: the file may hold what the environment held, whoever restores it.
        nodes.push(Node::file(ENV_FILE.into(), size, content, now_nanos()));
        summary.files += 1;
        summary.files_new += 1;
        summary.bytes += size;
    }
    let tree = writer.add_tree(Tree { nodes })?;
    let mut names: Vec<String> = Vec::new();
    if has_env {
        names.push(ENV_FILE.into());
    }
    names.extend(paths.iter().map(|p| p.display().to_string()));
    let mut snapshot = Snapshot::new(KIND, names, tree);
    snapshot.summary = summary;
    snapshot.errors = walked.errors;
    snapshot
        .source
        .insert(keys::SECRETS.into(), request.secrets.as_str().into());
    if let Some(selected) = selected {
        let variables: Vec<&str> = selected.variables.iter().map(|(n, _)| n.as_str()).collect();
        snapshot
            .source
            .insert(keys::VARIABLES.into(), json(&variables));
        snapshot
            .source
            .insert(keys::REDACTED.into(), json(&selected.secrets));
        if !selected.warnings.is_empty() {
            snapshot
                .source
                .insert(keys::WARNINGS.into(), json(&selected.warnings));
        }
    }
    if !walked.volumes.is_empty() {
        snapshot
            .source
            .insert(keys::VOLUMES.into(), json(&walked.volumes));
    }
    Ok(snapshot)
}

/// Lists and maps of strings: they always encode.
fn json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn problems_name_their_key() {
        let keys = |env: &[&str], redact: &[&str], paths: &[&str]| {
            let paths: Vec<PathBuf> = paths.iter().map(PathBuf::from).collect();
            problems(&strings(env), &strings(redact), &paths)
                .into_iter()
                .map(|p| p.key)
                .collect::<Vec<_>>()
        };
        assert!(keys(
            &["APP_*", "HOST", "*"],
            &["*_CREDS", "PGPASSWORD"],
            &["/etc/app"]
        )
        .is_empty());
        assert_eq!(keys(&[], &[], &[]), ["env"]);
        assert_eq!(keys(&["A*B", "", "1X", "A-B"], &[], &[]), ["env"; 4]);
        assert_eq!(keys(&["A"], &["*", "A.B", ""], &[]), ["redact"; 3]);
        assert_eq!(
            keys(
                &[],
                &[],
                &["etc/app", "/", "/environment.env", "/environment.env/x"]
            ),
            ["paths"; 4]
        );
    }
}
