//! What every command needs: the merged options, and the repository opened with them.

use std::path::Path;
use std::sync::Arc;

pub use lifeline_plan::open::open_storage;
use lifeline_repo::storage::Storage;
use lifeline_repo::Repository;

use lifeline_plan::plan::{Plan, PostgresConfig};

use crate::options::RepositoryOptions;

pub struct Context {
    pub options: RepositoryOptions,
    pub json: bool,
    pub postgres: PostgresConfig,
    /// The plan's `[[copies]]`: `copy --to` one of them opens it with its own key and S3 settings.
    pub copies: Vec<RepositoryOptions>,
    /// The `--config` file, for commands that hand it on (a restore's `restore_command`).
    pub config_path: Option<std::path::PathBuf>,
    /// Where audit records go besides the repository (`[audit]`).
    pub audit_options: lifeline_plan::audit::AuditOptions,
    /// This command's audit record.
    pub audit: crate::recorder::Recorder,
}

impl Context {
    pub fn new(
        cli_options: RepositoryOptions,
        config: Option<&Path>,
        json: bool,
    ) -> anyhow::Result<Self> {
        let file = match config {
            Some(path) => Plan::load(path)?,
            None => Plan::default(),
        };
        Ok(Context {
            options: cli_options.merged_with(file.repository),
            json,
            postgres: file.postgres,
            copies: file.copies,
            config_path: config.map(Path::to_path_buf),
            audit_options: file.audit,
            audit: Default::default(),
        })
    }

    pub fn storage(&self) -> anyhow::Result<Arc<dyn Storage>> {
        open_storage(self.options.location()?, &self.options.s3)
    }

    /// The repository; an audited command's record goes to it.
    pub fn open(&self) -> anyhow::Result<Repository> {
        let repo = self.open_at(self.options.location()?)?;
        self.audit.opened(&repo);
        Ok(repo)
    }

    /// The repository at `location`, opened with this context's key source and S3 settings.
    pub fn open_at(&self, location: &str) -> anyhow::Result<Repository> {
        lifeline_plan::open::open_at(&self.options, location)
    }
}

/// Print a value as JSON on stdout.
pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
