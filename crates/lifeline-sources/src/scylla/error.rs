//! What can go wrong snapshotting a cluster, storing it, and loading it back.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot run {program}: {source} (install Cassandra's or ScyllaDB's tools, or set LIFELINE_NODETOOL, LIFELINE_CQLSH, LIFELINE_SSTABLELOADER)")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{what} failed ({status}){}", crate::command::stderr_tail(.output))]
    Tool {
        what: String,
        status: String,
        output: String,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error(transparent)]
    Repo(#[from] lifeline_repo::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
