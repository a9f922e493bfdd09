//! lifeline's repository: storage backends, keys and encryption, chunking, packs, index, trees and
//! snapshots, the write and read paths, and verification. It knows nothing of databases or of the CLI.
//! The byte format is specified in `docs/format.md`.

pub mod audit;
pub mod check;
pub mod chunker;
pub mod copy;
pub mod crypto;
pub mod diff;
pub mod drill;
mod error;
pub mod find;
pub mod garbage;
pub mod hold;
mod host;
mod id;
pub mod index;
pub mod keys;
pub mod named;
pub mod pack;
mod payload;
pub mod permissions;
pub mod prune;
mod reader;
pub mod record;
mod references;
pub mod repair;
mod repository;
pub mod retention;
pub mod session;
pub mod snapshot;
pub mod stats;
pub mod status;
pub mod storage;
pub mod tree;
pub mod verification;
pub mod walk;
mod writer;

pub use error::{Error, ErrorKind, Result};
pub use host::hostname;
pub use id::Id;
pub use reader::BlobReader;
pub use repository::{Config, KeyInfo, Repository, Snapshots, DEFAULT_PACK_SIZE, FORMAT_VERSION};
pub use writer::{Bundle, Writer, BUNDLE_FILE_LIMIT, DEFAULT_COMPRESSION};
