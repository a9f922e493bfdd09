//! What can go wrong dumping MongoDB, storing the dump, and restoring it.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("MongoDB at {at}: {doing}: {source}")]
    Mongo {
        at: String,
        doing: String,
        // Boxed: the driver's error is large, and every Result here would carry its size.
        source: Box<mongodb::error::Error>,
    },
    #[error("the dump is not a valid mongodump archive: {0}")]
    Archive(#[from] super::archive::Error),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error(transparent)]
    Repo(#[from] lifeline_repo::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
