//! lifeline's data sources: how each kind of data is captured into a snapshot and brought back.
//! Sources speak to the repository only through its `Writer` and `BlobReader`.

pub mod audit_export;
pub mod command;
pub mod config;
pub mod drill;
pub mod files;
pub mod mongodb;
pub mod postgres;
mod read_ahead;
pub mod redis;
pub use read_ahead::ReadAhead;
pub mod s3;
pub mod scylla;
pub mod source;
pub mod stdin;

/// Progress of long work, reported by sources and drawn by whoever runs them.
pub trait Progress: Sync {
    /// A file was finished (read for backup, written for restore); `bytes` is its size.
    fn file_done(&self, _bytes: u64) {}
    /// Bytes were processed within a file still in progress.
    fn bytes(&self, _n: u64) {}
    /// The work will process about `bytes` in all (known only once the source has looked).
    fn total(&self, _bytes: u64) {}
}

/// Progress that nobody watches.
pub struct Quiet;

impl Progress for Quiet {}
