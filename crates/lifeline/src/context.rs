//! What every command needs: the merged options, and the repository opened with them.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use lifeline_repo::crypto::Secret;
use lifeline_repo::storage::{LocalStorage, S3Settings, S3Storage, Storage};
use lifeline_repo::Repository;

use crate::options::{ConfigFile, PostgresConfig, RepositoryOptions};
use crate::{key_file, password};

pub struct Context {
    pub options: RepositoryOptions,
    pub json: bool,
    pub postgres: PostgresConfig,
    /// The `--config` file, for commands that hand it on (a restore's `restore_command`).
    pub config_path: Option<std::path::PathBuf>,
}

impl Context {
    pub fn new(
        cli_options: RepositoryOptions,
        config: Option<&Path>,
        json: bool,
    ) -> anyhow::Result<Self> {
        let file = match config {
            Some(path) => ConfigFile::load(path)?,
            None => ConfigFile::default(),
        };
        Ok(Context {
            options: cli_options.merged_with(file.repository),
            json,
            postgres: file.postgres,
            config_path: config.map(Path::to_path_buf),
        })
    }

    pub fn storage(&self) -> anyhow::Result<Arc<dyn Storage>> {
        open_storage(self.options.location()?, &self.options.s3)
    }

    pub fn open(&self) -> anyhow::Result<Repository> {
        self.open_at(self.options.location()?)
    }

    /// The repository at `location`, opened with this context's key source and S3 settings.
    pub fn open_at(&self, location: &str) -> anyhow::Result<Repository> {
        let storage = open_storage(location, &self.options.s3)?;
        // The config is read before asking for a password, so a mistyped path says so first.
        if !Repository::exists(storage.as_ref())? {
            return Err(lifeline_repo::Error::RepositoryNotFound {
                location: storage.location(),
            }
            .into());
        }
        let opened = match &self.options.key.key_file {
            Some(path) => Repository::open_with(storage, Secret::KeyFile(&key_file::read(path)?)),
            None => Repository::open(storage, password::read(&self.options.key)?.bytes()),
        };
        opened.with_context(|| format!("cannot open repository {location}"))
    }
}

/// The storage a repository URL names: `s3://BUCKET/PREFIX`, `file://PATH` or a plain path.
pub fn open_storage(location: &str, s3: &S3Settings) -> anyhow::Result<Arc<dyn Storage>> {
    if location.starts_with("s3://") {
        return Ok(Arc::new(S3Storage::open(location, s3)?));
    }
    if location.contains("://") && !location.starts_with("file://") {
        bail!("repository {location:?}: use a local path, file://PATH or s3://BUCKET/PREFIX");
    }
    Ok(Arc::new(LocalStorage::new(
        location.trim_start_matches("file://"),
    )))
}

/// Print a value as JSON on stdout.
pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
