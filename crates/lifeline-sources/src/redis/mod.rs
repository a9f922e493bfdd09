//! Redis: a point-in-time RDB taken over the replication protocol (as `redis-cli --rdb` does: no
//! file-system access to the server, no BGSAVE of our own), streamed into the repository as
//! `dump.rdb` while its key counts are read from the RDB itself; optionally the server's Redis 7
//! multi-part AOF directory, read with rewrites paused. Restored by laying the files out for a
//! `redis-server` to load, and proven by starting one and comparing its key counts.

mod aof;
pub mod capture;
pub mod client;
pub mod compare;
mod error;
mod manifest;
mod payload;
pub mod rdb;
pub mod restore;
pub mod server;
pub mod source;
mod tls;
pub mod url;

pub use capture::{capture, CaptureRequest};
pub use client::{Client, ConnectOptions};
pub use compare::{DbKeys, KeyCounts};
pub use error::{Error, Result};
pub use source::RedisSource;

/// The snapshot kind of a Redis capture.
pub const KIND: &str = "redis";

/// The name of the RDB in a snapshot's tree, the name `redis-server` loads by default.
pub const RDB_FILE: &str = "dump.rdb";

/// Keys of a Redis snapshot's `source` map.
pub mod record {
    pub const REDIS_VERSION: &str = "redis_version";
    /// `master` or `slave`, as INFO says.
    pub const ROLE: &str = "role";
    /// Bytes, as INFO's `used_memory` says before the RDB was taken.
    pub const USED_MEMORY: &str = "used_memory";
    /// The RDB format version from the file's header.
    pub const RDB_VERSION: &str = "rdb_version";
    pub const RDB_BYTES: &str = "rdb_bytes";
    /// `verified` (the RDB's CRC-64 matched), `disabled` (the server writes none: `rdbchecksum no`).
    pub const RDB_CHECKSUM: &str = "rdb_checksum";
    /// JSON object `"db0"` → `{"keys": N, "expires": M}`: the keys of the RDB, per database.
    pub const KEY_COUNTS: &str = "key_counts";
    /// `rdb` (counted in the RDB itself, exact) or `info` (INFO keyspace before the RDB was taken,
    /// when the RDB holds a value this reader cannot step over).
    pub const KEY_COUNTS_FROM: &str = "key_counts_from";
    /// Why the key counts are not from the RDB.
    pub const KEY_COUNTS_NOTE: &str = "key_counts_note";
    /// JSON like `key_counts`: INFO keyspace as read before the RDB was requested.
    pub const INFO_KEYSPACE: &str = "info_keyspace";
    /// The captured AOF directory's name in the snapshot (`appendonlydir`).
    pub const AOF_DIR: &str = "aof_dir";
    /// The AOF manifest's file name (`appendonly.aof.manifest`).
    pub const AOF_MANIFEST: &str = "aof_manifest";
    /// JSON like `key_counts`: INFO keyspace when the AOF was read.
    pub const AOF_KEY_COUNTS: &str = "aof_key_counts";
    /// `true` when no write reached the AOF between its reading and those counts, so a server
    /// started from the AOF must hold exactly them.
    pub const AOF_KEY_COUNTS_EXACT: &str = "aof_key_counts_exact";
}
