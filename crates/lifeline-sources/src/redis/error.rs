//! What can go wrong talking to Redis, reading its files, and restoring them.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid Redis URL {url:?}: {reason} (expected redis://[USER[:PASSWORD]@]HOST[:PORT] or rediss://…)")]
    Url { url: String, reason: String },
    #[error("cannot connect to Redis at {address}: {source}")]
    Connect {
        address: String,
        source: std::io::Error,
    },
    #[error("TLS with Redis at {address}: {reason}")]
    Tls { address: String, reason: String },
    #[error("Redis at {address} refused the credentials: {message} (check the URL's user and the password file)")]
    Auth { address: String, message: String },
    #[error("Redis at {address} wants a password: {message} (set password_file, or a password in the URL)")]
    NoAuth { address: String, message: String },
    #[error("Redis at {address} answered {command} with an error: {message}")]
    Command {
        address: String,
        command: String,
        message: String,
    },
    #[error("talking to Redis at {address}: {detail}")]
    Protocol { address: String, detail: String },
    #[error("reading from Redis at {address} ({doing}): {source}")]
    Io {
        address: String,
        doing: String,
        source: std::io::Error,
    },
    #[error("the RDB from {address} is damaged: {detail}; no snapshot was saved")]
    Rdb { address: String, detail: String },
    #[error("AOF directory {}: {detail}", .dir.display())]
    Aof { dir: PathBuf, detail: String },
    #[error("{}: {source}", .path.display())]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("redis-server: {0}")]
    Server(String),
    #[error(transparent)]
    Repo(#[from] lifeline_repo::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn file(path: &Path, source: std::io::Error) -> Self {
        Error::File {
            path: path.to_path_buf(),
            source,
        }
    }
}
