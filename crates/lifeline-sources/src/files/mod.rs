//! Files and directory trees.

mod backup;
mod exclude;
mod metadata;
mod restore;
mod sync;

pub use backup::{backup, BackupResult};
pub use exclude::{patterns_from_file, Exclusions, CACHEDIR_TAG};
pub use restore::{restore, RestoreResult};
pub use sync::sync_tree;
