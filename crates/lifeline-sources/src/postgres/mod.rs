//! PostgreSQL: WAL archiving, physical base backups and point-in-time recovery, logical dumps, and
//! pgvector answers recorded at backup time. Base backups read the data directory on the database
//! host; elsewhere, and for dumps and restores, the server's own tools (`pg_basebackup`, `pg_dump`,
//! `pg_restore`, `pg_combinebackup`) do the protocol work, and this module stores, selects and
//! verifies.

pub mod ahead;
pub mod archive;
pub mod archive_check;
pub mod audit_table;
pub mod backup;
pub mod basebackup;
pub mod catalog;
pub mod datadir;
pub mod delta;
pub mod dump;
mod error;
pub mod prefetch;
pub mod receive;
pub mod recovery;
pub mod restore;
pub mod retention;
pub mod server;
pub mod socket;
pub mod status;
pub mod tablespaces;
pub mod tar_tree;
pub mod tools;
pub mod vector;
pub mod wal;

pub use error::{Error, Result};
