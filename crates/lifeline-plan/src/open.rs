//! Opening a repository from its options: storage by URL, then the key source.

use std::sync::Arc;

use anyhow::{bail, Context as _};
use lifeline_repo::crypto::Secret;
use lifeline_repo::storage::{LocalStorage, S3Settings, S3Storage, Storage};
use lifeline_repo::Repository;

use crate::kms::KmsCommand;
use crate::options::RepositoryOptions;
use crate::{key_file, password};

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

/// The repository at `location`, opened with the key source and S3 settings of `options`.
pub fn open_at(options: &RepositoryOptions, location: &str) -> anyhow::Result<Repository> {
    let storage = open_storage(location, &options.s3)?;
    // The config is read before asking for a password, so a mistyped path says so first.
    if !Repository::exists(storage.as_ref())? {
        return Err(lifeline_repo::Error::RepositoryNotFound {
            location: storage.location(),
        }
        .into());
    }
    // One secret, in this order (docs/config.md): a key file, then a KMS command, then a password.
    let key = &options.key;
    let opened = match (&key.key_file, &key.kms_command) {
        (Some(path), _) => Repository::open_with(storage, Secret::KeyFile(&key_file::read(path)?)),
        (None, Some(command)) => {
            Repository::open_with(storage, Secret::Kms(&KmsCommand::new(command, None)?))
        }
        (None, None) => Repository::open(storage, password::read(key)?.bytes()),
    };
    opened.with_context(|| format!("cannot open repository {location}"))
}

/// The repository the options name.
pub fn open(options: &RepositoryOptions) -> anyhow::Result<Repository> {
    open_at(options, options.location()?)
}
