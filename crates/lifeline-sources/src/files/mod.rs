//! Files and directory trees.

mod backup;
mod metadata;
mod restore;
mod sync;

pub use backup::{backup, BackupResult};
pub use restore::{
    restore, restore_delta, Matcher, Overwrite, RestoreOptions, RestoreResult, Selection,
};
pub use sync::sync_tree;
