//! One options model for flags, environment and the `--config` file: each setting is one field, read
//! by clap and by serde alike, so the config file grows into the backup plan without a second parser.

use std::path::PathBuf;

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

    /// Shell command that unwraps a KMS key slot (`key add --new-kms-command`): a cloud KMS, Vault
    /// transit, an HSM; used instead of a password, after a key file
    #[arg(long, env = "LIFELINE_KMS_COMMAND", global = true, value_name = "CMD")]
    pub kms_command: Option<String>,
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
                kms_command: self.key.kms_command.or(file.key.kms_command),
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

/// A retention policy: `forget`'s flags, and (in the plan) a class's `retention = { daily = 30, … }`.
#[derive(Debug, Default, Clone, clap::Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionOptions {
    /// Keep the newest N snapshots
    #[arg(
        long = "keep-last",
        value_name = "N",
        default_value_t = 0,
        hide_default_value = true
    )]
    #[serde(default, rename = "last")]
    pub keep_last: usize,

    /// Keep the newest snapshot of each of the last N hours (UTC) that have one
    #[arg(
        long = "keep-hourly",
        value_name = "N",
        default_value_t = 0,
        hide_default_value = true
    )]
    #[serde(default, rename = "hourly")]
    pub keep_hourly: usize,

    /// Keep the newest snapshot of each of the last N days (UTC) that have one
    #[arg(
        long = "keep-daily",
        value_name = "N",
        default_value_t = 0,
        hide_default_value = true
    )]
    #[serde(default, rename = "daily")]
    pub keep_daily: usize,

    /// Keep the newest snapshot of each of the last N ISO weeks that have one
    #[arg(
        long = "keep-weekly",
        value_name = "N",
        default_value_t = 0,
        hide_default_value = true
    )]
    #[serde(default, rename = "weekly")]
    pub keep_weekly: usize,

    /// Keep the newest snapshot of each of the last N months that have one
    #[arg(
        long = "keep-monthly",
        value_name = "N",
        default_value_t = 0,
        hide_default_value = true
    )]
    #[serde(default, rename = "monthly")]
    pub keep_monthly: usize,

    /// Keep the newest snapshot of each of the last N years that have one
    #[arg(
        long = "keep-yearly",
        value_name = "N",
        default_value_t = 0,
        hide_default_value = true
    )]
    #[serde(default, rename = "yearly")]
    pub keep_yearly: usize,

    /// Keep every snapshot within this long of the group's newest (e.g. 30d, 12w, 36h)
    #[arg(long = "keep-within", value_name = "DURATION", value_parser = parse_duration)]
    #[serde(default, rename = "within", deserialize_with = "duration_from_text")]
    pub keep_within: Option<std::time::Duration>,

    /// Keep every snapshot with this tag (repeatable)
    #[arg(long = "keep-tag", value_name = "KEY=VALUE", value_parser = parse_tag)]
    #[serde(default, rename = "tags", deserialize_with = "tags_from_text")]
    pub keep_tags: Vec<(String, String)>,

    /// Also keep the newest N snapshots of each group that passed a data verification
    #[arg(long = "keep-verified", value_name = "N", default_value_t = 1)]
    #[serde(default = "one", rename = "verified")]
    pub keep_verified: usize,

    /// PostgreSQL: keep the base backup and WAL that point-in-time recovery this far back needs
    #[arg(long = "keep-pitr", value_name = "DURATION", value_parser = parse_duration)]
    #[serde(default, rename = "pitr", deserialize_with = "duration_from_text")]
    pub keep_pitr: Option<std::time::Duration>,
}

/// What a file backup leaves out: `backup`'s flags, and (in the plan) a source's `exclude = [...]`.
/// restic's flags, with restic's meaning.
#[derive(Debug, Default, Clone, clap::Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExcludeOptions {
    /// Leave out what matches this glob (repeatable). `/srv/cache` matches that path from the root;
    /// a pattern without a leading `/` matches the end of any path (`*.tmp` every file so named).
    /// `*` and `?` stay within a name, `**` crosses directories, `[...]` is a class. A directory
    /// that matches is left out with everything below it
    #[arg(long = "exclude", value_name = "PATTERN")]
    #[serde(default)]
    pub exclude: Vec<String>,

    /// Read exclude patterns from FILE, one per line; blank lines and `#` comments are skipped
    /// (repeatable)
    #[arg(long = "exclude-file", value_name = "FILE")]
    #[serde(default)]
    pub exclude_file: Vec<PathBuf>,

    /// Leave out the contents of directories holding a valid CACHEDIR.TAG (the directory and the
    /// tag are kept)
    #[arg(long)]
    #[serde(default)]
    pub exclude_caches: bool,

    /// Stay on the file system of each path given: a mount point below one is kept as an empty
    /// directory
    #[arg(long, short = 'x')]
    #[serde(default)]
    pub one_file_system: bool,
}

impl ExcludeOptions {
    pub fn is_empty(&self) -> bool {
        self.exclude.is_empty()
            && self.exclude_file.is_empty()
            && !self.exclude_caches
            && !self.one_file_system
    }

    /// The patterns of the flags and the files, compiled; a bad pattern or a missing file is named.
    pub fn exclusions(&self) -> anyhow::Result<lifeline_sources::files::Exclusions> {
        let mut patterns = self.exclude.clone();
        for file in &self.exclude_file {
            patterns.extend(
                lifeline_sources::files::patterns_from_file(file)
                    .with_context(|| format!("cannot read exclude file {}", file.display()))?,
            );
        }
        Ok(lifeline_sources::files::Exclusions::new(
            &patterns,
            self.exclude_caches,
            self.one_file_system,
        )?)
    }
}

/// Which snapshots a command considers (restic's `--tag`, `--host`, `--path`). Every SNAPSHOT argument
/// is taken within it: `latest` is the newest snapshot that matches, and an ID of one that does not
/// is refused.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct SnapshotFilterArgs {
    /// Only snapshots with this tag (repeatable: all of them)
    #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = parse_tag)]
    pub tags: Vec<(String, String)>,

    /// Only snapshots from this host (repeatable: any of them)
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,

    /// Only snapshots that include this path (repeatable: all of them)
    #[arg(long = "path", value_name = "PATH")]
    pub paths: Vec<String>,
}

impl SnapshotFilterArgs {
    pub fn filter(&self) -> lifeline_repo::snapshot::SnapshotFilter {
        lifeline_repo::snapshot::SnapshotFilter {
            tags: self.tags.clone(),
            hosts: self.hosts.clone(),
            paths: self.paths.iter().map(|p| clean_path(p)).collect(),
        }
    }
}

/// An absolute path as backups record it (`/srv/data/` and `/srv//data` are `/srv/data`); other
/// names, such as a `--stdin` snapshot's, as given.
fn clean_path(path: &str) -> String {
    if !path.starts_with('/') {
        return path.to_string();
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

fn one() -> usize {
    1
}

impl RetentionOptions {
    pub fn policy(&self) -> lifeline_repo::retention::Policy {
        lifeline_repo::retention::Policy {
            last: self.keep_last,
            hourly: self.keep_hourly,
            daily: self.keep_daily,
            weekly: self.keep_weekly,
            monthly: self.keep_monthly,
            yearly: self.keep_yearly,
            within: self.keep_within,
            tags: self.keep_tags.clone(),
        }
    }
}

/// `30d`, `12w`, `36h`, `90min` (humantime's units; `m` is minutes, months are `M`).
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text).map_err(|e| {
        format!("{text:?} is not a duration ({e}); write it like 30d, 12w, 36h or 90min")
    })
}

/// A duration written as people write it (`2s`, `90min`, `30d`), for serde's `with`: the plan's
/// tiers, daemon and notify settings.
pub mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

pub fn duration_from_text<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<std::time::Duration>, D::Error> {
    let text = String::deserialize(d)?;
    parse_duration(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

pub fn tags_from_text<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<(String, String)>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|t| parse_tag(t).map_err(serde::de::Error::custom))
        .collect()
}

/// `KEY=VALUE`, as tags are written everywhere.
pub fn parse_tag(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!(
            "tag {s:?} is not KEY=VALUE (for example --tag env=prod)"
        )),
    }
}

/// A percentage, `10%` or `10`, from 0 to 100.
pub fn parse_percent(s: &str) -> Result<f64, String> {
    let n: f64 = s
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("{s:?} is not a percentage such as 10%"))?;
    if (0.0..=100.0).contains(&n) {
        Ok(n)
    } else {
        Err(format!("{s:?} must be from 0% to 100%"))
    }
}

/// A percentage above 0.
pub fn parse_share(s: &str) -> Result<f64, String> {
    match parse_percent(s)? {
        n if n > 0.0 => Ok(n),
        _ => Err(format!("{s:?} must be above 0%")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plan's `exclude = [...]` and `backup`'s flags are one struct.
    #[test]
    fn an_exclude_table_reads_into_the_options_backup_takes() {
        let e: ExcludeOptions = toml::from_str(
            r#"exclude = ["*.tmp", "/srv/cache"]
exclude_file = ["/etc/lifeline/excludes"]
exclude_caches = true
one_file_system = true"#,
        )
        .expect("parse");
        assert_eq!(e.exclude, ["*.tmp", "/srv/cache"]);
        assert_eq!(e.exclude_file, [PathBuf::from("/etc/lifeline/excludes")]);
        assert!(e.exclude_caches && e.one_file_system);
        assert!(toml::from_str::<ExcludeOptions>("excludes = []").is_err());
    }

    #[test]
    fn filter_paths_are_compared_as_backups_record_them() {
        assert_eq!(clean_path("/srv//data/./x/../"), "/srv/data");
        assert_eq!(clean_path("/"), "/");
        assert_eq!(clean_path("mydb.sql"), "mydb.sql");
    }

    /// The plan's `retention = { … }` and `forget`'s flags are one struct.
    #[test]
    fn a_retention_table_reads_into_the_options_forget_takes() {
        let r: RetentionOptions = toml::from_str(
            r#"daily = 30
weekly = 12
monthly = 12
yearly = 7
within = "30d"
tags = ["legal=keep"]
pitr = "7d""#,
        )
        .expect("parse");
        assert_eq!(
            (r.keep_daily, r.keep_weekly, r.keep_monthly, r.keep_yearly),
            (30, 12, 12, 7)
        );
        assert_eq!(
            r.keep_within,
            Some(std::time::Duration::from_secs(30 * 86_400))
        );
        assert_eq!(
            r.keep_pitr,
            Some(std::time::Duration::from_secs(7 * 86_400))
        );
        assert_eq!(r.keep_tags, [("legal".to_string(), "keep".to_string())]);
        assert_eq!(r.keep_verified, 1, "the default, as for the flag");
        let err = toml::from_str::<RetentionOptions>("dayly = 3").expect_err("unknown key");
        assert!(err.to_string().contains("dayly"), "{err}");
        let err = toml::from_str::<RetentionOptions>("within = \"30 parsecs\"").expect_err("bad");
        assert!(err.to_string().contains("not a duration"), "{err}");
    }
}
