//! The drill of files and command output: restore the snapshot into a directory of the scratch
//! target and read every restored file back against the snapshot.
//!
//! The restore already authenticates every blob it reads and checks it against its ID, so what is
//! left to prove is that the bytes reached the disk: each restored file must have the snapshot's
//! size, and each of its chunks must hash (keyed, as chunk IDs are made) to the chunk's ID. Slices of
//! shared blobs (small files bundled together) cannot be hashed alone; those are compared with the
//! blob's bytes instead.

use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use lifeline_repo::tree::{Node, NodeType};
use lifeline_repo::{BlobReader, Repository};
use rayon::prelude::*;

use super::{check, remove_tree, CheckResult, DrillRequest, Drilled, Recorder, CLEANUP};
use crate::files::{self, RestoreOptions, RestoreResult};
use crate::Progress;

/// Restore, verify every file, clean up.
pub fn drill(
    repo: &Repository,
    request: &DrillRequest<'_>,
    progress: &dyn Progress,
) -> Result<Drilled, lifeline_repo::Error> {
    let mut rec = Recorder::default();
    let target = request.scratch.join("files");
    let reader = repo.reader()?;
    let restored = rec.step(
        "restore",
        || restore(&reader, request, &target, progress),
        |r| {
            format!(
                "{} file(s) and {} directories, {} bytes, into {}",
                r.files,
                r.dirs,
                r.bytes,
                target.display()
            )
        },
    );
    if restored.is_some() {
        rec.drilled.recovery_point = Some(request.snapshot.timestamp());
        rec.drilled.restored = vec![request.id];
        let verified = rec.step(
            "verify",
            || verify(&reader, request.snapshot.tree, &target),
            |v| format!("{} file(s), {} bytes read back", v.files, v.bytes),
        );
        if let Some(v) = verified {
            rec.check(match v.differences.first() {
                None => check(
                    "files",
                    CheckResult::Pass,
                    format!(
                        "all {} file(s) ({} bytes) equal the snapshot",
                        v.files, v.bytes
                    ),
                ),
                Some((path, why)) => check(
                    "files",
                    CheckResult::Fail,
                    format!(
                        "{} of {} file(s) differ from the snapshot; first {}: {why}",
                        v.differences.len(),
                        v.files,
                        path.display()
                    ),
                ),
            });
        }
    }
    rec.step(
        CLEANUP,
        || remove_tree(&target),
        |_| format!("removed {}", target.display()),
    );
    Ok(rec.finish())
}

/// The restore, failing on the first entry it could not write (a damaged blob names its pack).
fn restore(
    reader: &BlobReader<'_>,
    request: &DrillRequest<'_>,
    target: &Path,
    progress: &dyn Progress,
) -> Result<RestoreResult, String> {
    progress.total(request.snapshot.summary.bytes);
    let result = files::restore(
        reader,
        request.snapshot.tree,
        target,
        &RestoreOptions::default(),
        progress,
    )
    .map_err(|e| e.to_string())?;
    match result.errors.first() {
        None => Ok(result),
        Some((path, err)) => Err(format!(
            "{} entr{} could not be restored; first {}: {err}",
            result.errors.len(),
            if result.errors.len() == 1 { "y" } else { "ies" },
            path.display()
        )),
    }
}

/// What reading the restored files back found.
#[derive(Debug, Default)]
pub struct Verification {
    pub files: u64,
    pub bytes: u64,
    /// Files that differ from the snapshot, with how; empty when all are equal.
    pub differences: Vec<(PathBuf, String)>,
}

/// Compare every regular file of the tree `root`, restored into `dir`, with the snapshot.
pub fn verify(
    reader: &BlobReader<'_>,
    root: lifeline_repo::Id,
    dir: &Path,
) -> Result<Verification, lifeline_repo::Error> {
    let mut files: Vec<(PathBuf, Node)> = Vec::new();
    lifeline_repo::walk::walk(reader, root, b"", &mut |path, node| {
        if node.node_type == NodeType::File {
            let relative = path.strip_prefix(b"/").unwrap_or(path);
            files.push((dir.join(OsStr::from_bytes(relative)), node.clone()));
        }
        Ok(())
    })?;
    let mut differences: Vec<(PathBuf, String)> = files
        .par_iter()
        .filter_map(|(path, node)| {
            compare(reader, node, path)
                .err()
                .map(|why| (path.clone(), why))
        })
        .collect();
    differences.sort();
    Ok(Verification {
        files: files.len() as u64,
        bytes: files.iter().map(|(_, n)| n.size.unwrap_or(0)).sum(),
        differences,
    })
}

/// One restored file against its node: size, then every chunk's bytes.
fn compare(reader: &BlobReader<'_>, node: &Node, path: &Path) -> Result<(), String> {
    let file = File::open(path).map_err(|e| format!("cannot be read: {e}"))?;
    let len = file
        .metadata()
        .map_err(|e| format!("cannot be read: {e}"))?
        .len();
    let size = node.size.unwrap_or(0);
    if len != size {
        return Err(format!("holds {len} bytes, the snapshot {size}"));
    }
    let keyring = reader.repo().keyring();
    let (mut pos, mut local) = (0u64, Vec::new());
    for part in node.content.iter().flatten() {
        local.resize(usize::try_from(part.len()).unwrap_or(usize::MAX), 0);
        file.read_exact_at(&mut local, pos)
            .map_err(|e| format!("cannot be read at byte {pos}: {e}"))?;
        // A whole chunk is named by the keyed hash of its bytes; a slice of a bundle is not.
        let whole = part.offset() == 0 && keyring.chunk_id(&local) == *part.id();
        if !whole {
            let blob = reader
                .read_blob(part.id())
                .map_err(|e| format!("its chunk cannot be read to compare: {e}"))?;
            let start = usize::try_from(part.offset()).unwrap_or(usize::MAX);
            let slice = blob.get(start..start.saturating_add(local.len()));
            if slice != Some(local.as_slice()) {
                return Err(format!(
                    "bytes {pos}..{} differ from the snapshot's",
                    pos + part.len()
                ));
            }
        }
        pos += part.len();
    }
    Ok(())
}
