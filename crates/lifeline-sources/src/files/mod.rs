//! Files and directory trees.

pub(crate) mod backup;
mod exclude;
mod metadata;
mod restore;
mod sync;

pub use backup::{backup, backup_dir, BackupResult, DirBackup, ListedFile, Live};
pub use exclude::{patterns_from_file, Exclusions, Globs, CACHEDIR_TAG};
pub use metadata::node_from;
pub use restore::{
    restore, restore_delta, Matcher, Overwrite, RestoreOptions, RestoreResult, Selection,
};
pub use sync::sync_tree;
