//! One options model for flags, environment and the `--config` file: each setting is one field, read
//! by clap and by serde alike, so the config file grows into the backup plan without a second parser.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use lifeline_repo::storage::S3Settings;
use serde::Deserialize;

/// Where the repository is and how to unlock it. Flags and environment win over the config file.
#[derive(Debug, Default, Clone, clap::Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositoryOptions {
    /// Repository location: a local directory, or s3://BUCKET/PREFIX
    #[arg(
        long = "repo",
        env = "LIFELINE_REPO",
        global = true,
        value_name = "PATH"
    )]
    pub url: Option<String>,

    #[command(flatten)]
    #[serde(default)]
    pub key: KeySource,

    /// Endpoint, region and credentials of an `s3://` repository; the standard `AWS_*` environment
    /// variables fill what is not set here.
    #[arg(skip)]
    #[serde(default)]
    pub s3: S3Settings,
}

/// How the repository password is obtained. Never from a plain environment variable: those leak into
/// process listings and crash reports.
#[derive(Debug, Default, Clone, clap::Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySource {
    /// File whose first line is the password
    #[arg(
        long,
        env = "LIFELINE_PASSWORD_FILE",
        global = true,
        value_name = "FILE"
    )]
    pub password_file: Option<PathBuf>,

    /// Shell command that prints the password (a KMS, a secrets manager)
    #[arg(
        long,
        env = "LIFELINE_PASSWORD_COMMAND",
        global = true,
        value_name = "CMD"
    )]
    pub password_command: Option<String>,

    /// Key file made by `key add --new-key-file` (for unattended use such as archive_command)
    #[arg(long, env = "LIFELINE_KEY_FILE", global = true, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
}

/// The `--config` file. Today it holds the repository; sources, schedules, retention and tiers join
/// it as sections of their own (docs/config.md).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub repository: RepositoryOptions,
    #[serde(default)]
    pub postgres: PostgresConfig,
}

/// The `[postgres]` section.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// Directory of PostgreSQL's client programs (`--pg-bin` wins).
    pub bin_dir: Option<PathBuf>,
}

impl ConfigFile {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| {
            format!(
                "config file {} is not valid (see docs/config.md for its format)",
                path.display()
            )
        })
    }
}

impl RepositoryOptions {
    /// Flags/environment first, then the config file.
    pub fn merged_with(self, file: RepositoryOptions) -> RepositoryOptions {
        RepositoryOptions {
            url: self.url.or(file.url),
            key: KeySource {
                password_file: self.key.password_file.or(file.key.password_file),
                password_command: self.key.password_command.or(file.key.password_command),
                key_file: self.key.key_file.or(file.key.key_file),
            },
            s3: file.s3,
        }
    }

    pub fn location(&self) -> anyhow::Result<&str> {
        match self.url.as_deref() {
            Some(url) if !url.is_empty() => Ok(url),
            _ => bail!("no repository given: pass --repo PATH, set LIFELINE_REPO, or put `url` under [repository] in --config"),
        }
    }
}
