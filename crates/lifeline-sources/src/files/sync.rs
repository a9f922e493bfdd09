//! Making a restored tree durable: every file and directory is flushed before the restore reports
//! success, so a crash right after it cannot leave a data directory with files that never reached
//! the disk.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use lifeline_repo::{Error, Result};
use rayon::prelude::*;

/// fsync every regular file and directory under `root` (symlinks are not followed), in parallel.
pub fn sync_tree(root: &Path) -> Result<()> {
    let mut files = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let entry = entry.map_err(|e| Error::io(&dir, e))?;
            let kind = entry.file_type().map_err(|e| Error::io(entry.path(), e))?;
            if kind.is_dir() {
                dirs.push(entry.path());
                pending.push(entry.path());
            } else if kind.is_file() {
                files.push(entry.path());
            }
        }
    }
    // Files first, then the directories that name them.
    files.par_iter().try_for_each(sync_one)?;
    dirs.par_iter().try_for_each(sync_one)
}

fn sync_one(path: &PathBuf) -> Result<()> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(path, e))
}
