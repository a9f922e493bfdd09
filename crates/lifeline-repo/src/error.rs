use std::path::PathBuf;

/// The one error type of the repository layer. `kind()` lets the binary map errors to exit codes
/// without matching on messages.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "no repository at {location}: it has no `config` object (create one with `lifeline init`)"
    )]
    RepositoryNotFound { location: String },
    #[error("{location} already holds files; `init` needs a new or empty location")]
    RepositoryExists { location: String },
    #[error("wrong password: no key slot of this repository opens with it")]
    WrongPassword,
    #[error("object {key} is damaged: {detail}")]
    Corrupt { key: String, detail: String },
    #[error("object {key} is missing from the repository")]
    ObjectMissing { key: String },
    #[error("object {key} already exists")]
    AlreadyExists { key: String },
    #[error("storage {location}: {message}{hint}")]
    Backend {
        location: String,
        message: String,
        /// What to do about it, starting with "; " when present.
        hint: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no snapshot matches {0:?}")]
    SnapshotNotFound(String),
    #[error("no snapshot matches the filter ({0}); `lifeline snapshots` with the same filter lists what does")]
    NoSnapshotInFilter(String),
    #[error("snapshot {id} does not match the filter ({filter}); name a snapshot that does, or drop the filter")]
    OutsideFilter { id: String, filter: String },
    #[error(
        "snapshot prefix {0:?} is ambiguous: it matches several snapshots; give more characters"
    )]
    AmbiguousSnapshot(String),
    #[error("repository format: {0}")]
    Format(String),
    #[error("this credential's role is `{role}`: {what} needs a credential of role {needs} (format.md §3.1; docs/keys.md)")]
    NotPermitted {
        role: String,
        what: String,
        needs: String,
    },
    #[error("object {key} is shredded: key epoch {epoch} was destroyed, so nobody can decrypt it")]
    Shredded { key: String, epoch: u32 },
    /// The KMS command of a KMS slot failed: it could not run, exited non-zero, ran too long, or
    /// printed no key. Not a wrong password: the service said nothing about the secret, and another
    /// KMS slot (wrapped by another service) may still open.
    #[error("{0}")]
    Kms(String),
    /// `key destroy-epoch` refused: what still needs the epoch, and how to release it.
    #[error("key epoch {epoch} is still needed and was not destroyed:\n  - {}\nto destroy it:\n{}", .needs.join("\n  - "), numbered(.fixes))]
    EpochNeeded {
        epoch: u32,
        needs: Vec<String>,
        /// The steps, in order.
        fixes: Vec<String>,
    },
    #[error("{0}")]
    Invalid(String),
}

/// Coarse classes of errors, stable for callers that map them to exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    RepositoryNotFound,
    WrongPassword,
    /// The credential opened the repository, but its role does not allow the operation.
    NotPermitted,
    Damaged,
    Other,
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::RepositoryNotFound { .. } => ErrorKind::RepositoryNotFound,
            Error::WrongPassword => ErrorKind::WrongPassword,
            Error::NotPermitted { .. } => ErrorKind::NotPermitted,
            Error::Corrupt { .. } | Error::ObjectMissing { .. } => ErrorKind::Damaged,
            _ => ErrorKind::Other,
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub fn corrupt(key: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Corrupt {
            key: key.into(),
            detail: detail.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Steps as `  1. ...` lines.
fn numbered(steps: &[String]) -> String {
    steps
        .iter()
        .enumerate()
        .map(|(i, s)| format!("  {}. {s}", i + 1))
        .collect::<Vec<_>>()
        .join("\n")
}
