//! ScyllaDB and Cassandra: one recovery point over every node of a cluster. On each node
//! `nodetool snapshot` with a lifeline tag (hard links of the flushed SSTables), the snapshot's
//! files stored per node (SSTables are immutable, so an unchanged one deduplicates to nothing
//! new), each keyspace's schema, each node's tokens and a manifest, then `nodetool clearsnapshot`.
//! Restored by recreating the schema and streaming the SSTables in with `sstableloader`, and
//! proven by counting every table's rows.

pub mod capture;
mod error;
pub mod restore;
pub mod source;
pub mod tools;

pub use capture::{capture, CaptureRequest, Node};
pub use error::{Error, Result};
pub use source::ScyllaSource;
pub use tools::Tools;

/// The snapshot kind of a cluster capture.
pub const KIND: &str = "scylla";

/// Top-level entries of a snapshot's tree.
pub const SCHEMA_DIR: &str = "schema";
pub const NODES_DIR: &str = "nodes";

/// Keys of a scylla snapshot's `source` map.
pub mod record {
    /// The tag given to `nodetool snapshot` on every node.
    pub const TAG: &str = "snapshot_tag";
    /// The keyspaces captured, comma-separated.
    pub const KEYSPACES: &str = "keyspaces";
    /// JSON list of the nodes: `{host, nodetool, files, bytes}`.
    pub const NODES: &str = "nodes";
    /// JSON object `"keyspace.table"` → `{"before": N, "after": M}`: the rows counted just before
    /// the snapshots were taken and just after; equal when nothing was written in between.
    pub const ROW_COUNTS: &str = "row_counts";
    /// `release_version` of the first node.
    pub const SERVER_VERSION: &str = "server_version";
}
