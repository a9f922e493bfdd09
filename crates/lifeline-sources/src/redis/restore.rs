//! Laying a snapshot's files out for a `redis-server` to load: `dump.rdb`, and the AOF directory
//! when one was captured, in a directory that must not already hold them.

use std::path::{Path, PathBuf};

use lifeline_repo::snapshot::Snapshot;
use lifeline_repo::BlobReader;

use super::compare::{self, KeyCounts};
use super::error::{Error, Result};
use super::{record, KIND, RDB_FILE};
use crate::files::{self, RestoreOptions};
use crate::Progress;

/// The AOF directory a snapshot holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AofLayout {
    /// Its name, the server's `appenddirname`.
    pub dir_name: String,
    /// The manifest's file name: `appendfilename` followed by `.manifest`.
    pub manifest: String,
}

impl AofLayout {
    /// The server's `appendfilename`, which names the manifest it looks for.
    pub fn append_filename(&self) -> &str {
        self.manifest
            .strip_suffix(".manifest")
            .unwrap_or(&self.manifest)
    }

    pub fn of(snapshot: &Snapshot) -> Option<AofLayout> {
        Some(AofLayout {
            dir_name: snapshot.source.get(record::AOF_DIR)?.clone(),
            manifest: snapshot.source.get(record::AOF_MANIFEST)?.clone(),
        })
    }
}

/// What a started server is expected to hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub counts: KeyCounts,
    /// The counts describe exactly what is loaded; otherwise a difference is only worth a warning
    /// (an AOF read while the server took writes, or counts from INFO).
    pub exact: bool,
}

/// Which of the snapshot's files a server loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadFrom {
    Rdb,
    Aof,
}

impl LoadFrom {
    pub fn as_str(self) -> &'static str {
        match self {
            LoadFrom::Rdb => "rdb",
            LoadFrom::Aof => "aof",
        }
    }
}

/// The counts a server loading `from` must show.
pub fn expected(snapshot: &Snapshot, from: LoadFrom) -> Result<Expected> {
    let read = |key: &str| -> Result<KeyCounts> {
        let text = snapshot
            .source
            .get(key)
            .ok_or_else(|| Error::Invalid(format!("the snapshot records no {key}")))?;
        compare::decode(text).map_err(Error::Invalid)
    };
    Ok(match from {
        LoadFrom::Rdb => Expected {
            counts: read(record::KEY_COUNTS)?,
            exact: snapshot
                .source
                .get(record::KEY_COUNTS_FROM)
                .map(String::as_str)
                == Some("rdb"),
        },
        LoadFrom::Aof => Expected {
            counts: read(record::AOF_KEY_COUNTS)?,
            exact: snapshot
                .source
                .get(record::AOF_KEY_COUNTS_EXACT)
                .map(String::as_str)
                == Some("true"),
        },
    })
}

/// The laid-out files.
#[derive(Debug, Clone)]
pub struct Laid {
    pub dir: PathBuf,
    pub rdb: PathBuf,
    pub aof: Option<AofLayout>,
    pub files: u64,
    pub bytes: u64,
}

/// Refuse a directory that already holds what the snapshot would write.
pub fn check_target(dir: &Path, snapshot: Option<&Snapshot>) -> Result<()> {
    let mut names = vec![RDB_FILE.to_string()];
    if let Some(aof) = snapshot.and_then(AofLayout::of) {
        names.push(aof.dir_name);
    }
    for name in names {
        let path = dir.join(&name);
        if path.symlink_metadata().is_ok() {
            return Err(Error::Invalid(format!(
                "{} exists already; restore into an empty directory (--dir), or move it away first: a restore never overwrites",
                path.display()
            )));
        }
    }
    Ok(())
}

/// Write the snapshot's files into `dir` (created when missing).
pub fn lay_out(
    reader: &BlobReader<'_>,
    snapshot: &Snapshot,
    dir: &Path,
    progress: &dyn Progress,
) -> Result<Laid> {
    if snapshot.kind != KIND {
        return Err(Error::Invalid(format!(
            "the snapshot is of kind {:?}, not a redis snapshot",
            snapshot.kind
        )));
    }
    check_target(dir, Some(snapshot))?;
    progress.total(snapshot.summary.bytes);
    let restored = files::restore(
        reader,
        snapshot.tree,
        dir,
        &RestoreOptions::default(),
        progress,
    )?;
    if let Some((path, why)) = restored.errors.first() {
        return Err(Error::Invalid(format!(
            "{} entr{} could not be restored; first {}: {why}",
            restored.errors.len(),
            if restored.errors.len() == 1 {
                "y"
            } else {
                "ies"
            },
            path.display()
        )));
    }
    let rdb = dir.join(RDB_FILE);
    if !rdb.is_file() {
        return Err(Error::Invalid(format!("the snapshot holds no {RDB_FILE}")));
    }
    Ok(Laid {
        dir: dir.to_path_buf(),
        rdb,
        aof: AofLayout::of(snapshot),
        files: restored.files,
        bytes: restored.bytes,
    })
}
