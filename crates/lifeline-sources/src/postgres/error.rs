use std::path::PathBuf;

/// Errors of the PostgreSQL source. Repository errors keep their own type so the binary can map
/// them to exit codes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Repo(#[from] lifeline_repo::Error),
    #[error("PostgreSQL {context}: {source}")]
    Db {
        context: String,
        #[source]
        source: postgres::Error,
    },
    #[error("{tool} failed ({status}){stderr}")]
    Tool {
        tool: String,
        status: String,
        /// The tool's last lines of standard error, starting with ": " when present.
        stderr: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    pub fn db(context: impl Into<String>, source: postgres::Error) -> Self {
        Error::Db {
            context: context.into(),
            source,
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
