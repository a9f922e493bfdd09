//! Files and directory trees.

mod backup;
mod metadata;
mod restore;

pub use backup::{backup, BackupResult};
pub use restore::{restore, RestoreResult};
