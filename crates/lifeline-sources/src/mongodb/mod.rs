//! MongoDB: every collection of every user database read with the official driver and stored as
//! one mongodump archive, counted as it is written (documents, documents with an embedding,
//! distinct therapeutic categories, index definitions, per collection); restored by reading the
//! archive back into a server, indexes last, and proven by counting the server again.

pub mod archive;
pub mod capture;
pub mod client;
mod error;
pub mod restore;
pub mod source;

pub use capture::{capture, CaptureRequest};
pub use error::{Error, Result};
pub use source::MongoSource;

/// The snapshot kind of a MongoDB capture.
pub const KIND: &str = "mongodb";

/// The archive's name in a snapshot: `lifeline dump SNAPSHOT dump.archive | mongorestore --archive`.
pub const ARCHIVE_FILE: &str = "dump.archive";

/// Keys of a MongoDB snapshot's `source` map.
pub mod record {
    /// The connection string without its password.
    pub const URI: &str = "uri";
    /// `buildInfo.version`.
    pub const SERVER_VERSION: &str = "server_version";
    /// What wrote the archive (`lifeline X.Y.Z`), as the archive's header says.
    pub const TOOL_VERSION: &str = "dump_tool";
    /// `replica set NAME` or `a standalone server`, from `hello`.
    pub const TOPOLOGY: &str = "topology";
    /// `none`: collections were read one after another (no oplog; docs/sources/mongodb.md).
    pub const CONSISTENCY: &str = "consistency";
    pub const CONSISTENCY_NOTE: &str = "consistency_note";
    /// JSON object `"db.collection"` → [`super::archive::CollectionStats`].
    pub const COLLECTIONS: &str = "collections";
}
