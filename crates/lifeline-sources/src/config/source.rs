//! The config kind under the source contract: `lifeline run`, the daemon and drills call this.

use std::path::PathBuf;

use lifeline_repo::{Repository, Writer};

use super::{capture, drill, ConfigRequest, Secrets};
use crate::drill::{DrillRequest, Drilled, CLEANUP};
use crate::source::{Captured, Error, Source};
use crate::Progress;

/// Environment variables of this process by allow-list, and configuration files.
pub struct ConfigSource {
    /// Names, or prefixes ending in `*`.
    pub env: Vec<String>,
    pub secrets: Secrets,
    /// More secret name patterns.
    pub redact: Vec<String>,
    /// Absolute files and directories.
    pub paths: Vec<PathBuf>,
}

impl Source for ConfigSource {
    fn kind(&self) -> &'static str {
        super::KIND
    }

    /// The environment is this process's: what the daemon, or the CronJob's container, was given.
    fn capture(
        &self,
        _repo: &Repository,
        writer: &Writer<'_>,
        progress: &dyn Progress,
    ) -> Result<Captured, Error> {
        let started = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let request = ConfigRequest {
            env: &self.env,
            secrets: self.secrets,
            redact: &self.redact,
            paths: &self.paths,
            environment: std::env::vars_os().collect(),
        };
        let mut snapshot = capture(writer, request, progress)?;
        snapshot.time = started;
        Ok(Captured {
            snapshot,
            excluded: 0,
        })
    }

    /// The variables are loaded with `sh` from a restored `environment.env`, then the whole tree is
    /// restored and read back as the files drill does.
    fn drill(
        &self,
        repo: &Repository,
        request: &DrillRequest<'_>,
        progress: &dyn Progress,
    ) -> Result<Drilled, Error> {
        let reader = repo.reader()?;
        let environment = drill::environment(&reader, request.snapshot, request.scratch);
        let mut drilled = crate::drill::files::drill(repo, request, progress)?;
        if let Some((step, check)) = environment {
            // Before the files drill's steps, as it ran first; the cleanup stays last.
            debug_assert!(drilled.steps.last().is_none_or(|s| s.name == CLEANUP));
            drilled.steps.insert(0, step);
            if let Some(check) = check {
                drilled.checks.insert(0, check);
            }
        }
        Ok(drilled)
    }
}
