//! Restore a snapshot tree into a directory.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File, FileTimes, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use filetime::FileTime;
use lifeline_repo::tree::{ContentRef, Node, NodeType};
use lifeline_repo::{BlobReader, Error, Id, Result};
use nix::sys::stat::{mknod, Mode, SFlag};
use rayon::prelude::*;

use crate::Progress;

#[derive(Debug, Default)]
pub struct RestoreResult {
    pub files: u64,
    pub dirs: u64,
    pub bytes: u64,
    /// Entries that could not be restored, with the reason: the restore goes on past them.
    pub errors: Vec<(PathBuf, String)>,
    /// Entries left out on purpose (sockets; device nodes when not root), with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

struct Session<'a, 'r> {
    reader: &'a BlobReader<'r>,
    progress: &'a dyn Progress,
    as_root: bool,
    // First restored path of each multiply-linked inode, so later names become hard links to it.
    links: Mutex<HashMap<(u64, u64), PathBuf>>,
    errors: Mutex<Vec<(PathBuf, String)>>,
    skipped: Mutex<Vec<(PathBuf, String)>>,
    files: AtomicU64,
    dirs: AtomicU64,
    bytes: AtomicU64,
}

/// Restore the tree `root` into `target` (created if missing).
pub fn restore(
    reader: &BlobReader<'_>,
    root: Id,
    target: &Path,
    progress: &dyn Progress,
) -> Result<RestoreResult> {
    fs::create_dir_all(target).map_err(|e| Error::io(target, e))?;
    let session = Session {
        reader,
        progress,
        as_root: is_root(),
        links: Mutex::new(HashMap::new()),
        errors: Mutex::new(Vec::new()),
        skipped: Mutex::new(Vec::new()),
        files: AtomicU64::new(0),
        dirs: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
    };
    session.restore_dir(root, target);
    Ok(RestoreResult {
        files: session.files.into_inner(),
        dirs: session.dirs.into_inner(),
        bytes: session.bytes.into_inner(),
        errors: session.errors.into_inner().unwrap_or_default(),
        skipped: session.skipped.into_inner().unwrap_or_default(),
    })
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A name from a snapshot must be one path component, or a damaged or hostile snapshot could write
/// outside the target.
fn safe_name(name: &[u8]) -> Option<&OsStr> {
    let ok = !name.is_empty()
        && name != b"."
        && name != b".."
        && !name.contains(&b'/')
        && !name.contains(&0);
    ok.then(|| OsStr::from_bytes(name))
}

/// Work within one directory: a group of small files that share a bundle, or one other entry.
enum Work<'n> {
    Bundle(Id, Vec<&'n Node>),
    Single(&'n Node),
}

impl Session<'_, '_> {
    fn fail(&self, path: &Path, err: impl std::fmt::Display) {
        tracing::error!("{}: {err}", path.display());
        if let Ok(mut errors) = self.errors.lock() {
            errors.push((path.to_path_buf(), err.to_string()));
        }
    }

    fn restore_dir(&self, tree: Id, dir: &Path) {
        let tree = match self.reader.read_tree(&tree) {
            Ok(t) => t,
            Err(e) => return self.fail(dir, e),
        };
        let mut bundles: HashMap<Id, Vec<&Node>> = HashMap::new();
        let mut work = Vec::new();
        for node in &tree.nodes {
            match node.content.as_deref() {
                Some([ContentRef(id, _, len)])
                    if node.node_type == NodeType::File && Some(*len) == node.size =>
                {
                    bundles.entry(*id).or_default().push(node)
                }
                _ => work.push(Work::Single(node)),
            }
        }
        work.extend(
            bundles
                .into_iter()
                .map(|(id, nodes)| Work::Bundle(id, nodes)),
        );
        work.par_iter().for_each(|w| match w {
            Work::Single(node) => self.restore_node(node, dir),
            Work::Bundle(id, nodes) => self.restore_bundle(*id, nodes, dir),
        });
    }

    fn child_path(&self, node: &Node, dir: &Path) -> Option<PathBuf> {
        match safe_name(&node.name) {
            Some(name) => Some(dir.join(name)),
            None => {
                self.fail(
                    &dir.join(OsStr::from_bytes(&node.name)),
                    "unsafe name in snapshot; skipped",
                );
                None
            }
        }
    }

    fn restore_node(&self, node: &Node, dir: &Path) {
        let Some(path) = self.child_path(node, dir) else {
            return;
        };
        let result = match node.node_type {
            NodeType::Dir => self.restore_subdir(node, &path),
            NodeType::File => self
                .restore_file(node, &path, None)
                .inspect_err(|_| discard(&path)),
            NodeType::Symlink => self.restore_symlink(node, &path),
            NodeType::Fifo => self.restore_special(node, &path, SFlag::S_IFIFO),
            NodeType::Chardev if self.as_root => self.restore_special(node, &path, SFlag::S_IFCHR),
            NodeType::Blockdev if self.as_root => self.restore_special(node, &path, SFlag::S_IFBLK),
            NodeType::Chardev | NodeType::Blockdev => {
                return self.skip(&path, "device node: only root can create one; skipped");
            }
            NodeType::Socket => {
                return self.skip(
                    &path,
                    "socket: the program that listens on it creates it; skipped",
                );
            }
        };
        if let Err(e) = result {
            self.fail(&path, e);
        }
    }

    fn restore_bundle(&self, id: Id, nodes: &[&Node], dir: &Path) {
        let data = self.reader.read_blob(&id);
        for node in nodes {
            let Some(path) = self.child_path(node, dir) else {
                continue;
            };
            let result = match &data {
                Ok(bytes) => self.restore_file(node, &path, Some(bytes)),
                Err(e) => Err(Error::Invalid(e.to_string())),
            }
            .inspect_err(|_| discard(&path));
            if let Err(e) = result {
                self.fail(&path, e);
            }
        }
    }

    fn restore_subdir(&self, node: &Node, path: &Path) -> Result<()> {
        match fs::create_dir(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => {}
            Err(e) => return Err(Error::io(path, e)),
        }
        let sub = node
            .subtree
            .ok_or_else(|| Error::corrupt("tree", "directory without subtree"))?;
        self.restore_dir(sub, path);
        self.dirs.fetch_add(1, Ordering::Relaxed);
        // After the children: writing them would change the directory's mtime again.
        File::open(path)
            .and_then(|dir| self.apply_metadata(node, &dir))
            .map_err(|e| Error::io(path, e))
    }

    /// Create the file, or link it to an already restored name of the same inode (returns `None`).
    fn create(&self, node: &Node, path: &Path) -> Result<Option<File>> {
        remove_non_dir(path)?;
        let open = || {
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(path)
                .map_err(|e| Error::io(path, e))
        };
        if node.nlink <= 1 {
            return open().map(Some);
        }
        let mut links = self
            .links
            .lock()
            .map_err(|_| Error::Invalid("hard-link table poisoned".into()))?;
        match links.get(&(node.dev, node.inode)) {
            Some(first) => {
                fs::hard_link(first, path).map_err(|e| Error::io(path, e))?;
                Ok(None)
            }
            None => {
                let file = open()?;
                links.insert((node.dev, node.inode), path.to_path_buf());
                Ok(Some(file))
            }
        }
    }

    fn restore_file(&self, node: &Node, path: &Path, bundle: Option<&[u8]>) -> Result<()> {
        let Some(mut file) = self.create(node, path)? else {
            self.files.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        };
        let size = node.size.unwrap_or(0);
        for part in node.content.iter().flatten() {
            let data;
            let chunk: &[u8] = match bundle {
                Some(b) => b,
                None => {
                    data = self.reader.read_blob(part.id())?;
                    &data
                }
            };
            let (start, end) = (
                part.offset() as usize,
                (part.offset() + part.len()) as usize,
            );
            let slice = chunk.get(start..end).ok_or_else(|| {
                Error::corrupt(format!("blob {}", part.id()), "shorter than the file needs")
            })?;
            // All-zero chunks become holes, so sparse files stay sparse.
            if slice.iter().all(|&b| b == 0) {
                file.seek(SeekFrom::Current(slice.len() as i64))
            } else {
                file.write_all(slice).map(|()| 0)
            }
            .map_err(|e| Error::io(path, e))?;
            self.progress.bytes(part.len());
        }
        file.set_len(size).map_err(|e| Error::io(path, e))?;
        self.apply_metadata(node, &file)
            .map_err(|e| Error::io(path, e))?;
        self.files.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(size, Ordering::Relaxed);
        self.progress.file_done(size);
        Ok(())
    }

    fn restore_symlink(&self, node: &Node, path: &Path) -> Result<()> {
        remove_non_dir(path)?;
        let target = node
            .target
            .as_deref()
            .ok_or_else(|| Error::corrupt("tree", "symlink without target"))?;
        symlink(OsStr::from_bytes(target), path).map_err(|e| Error::io(path, e))?;
        if self.as_root {
            std::os::unix::fs::lchown(path, Some(node.uid), Some(node.gid))
                .map_err(|e| Error::io(path, e))?;
        }
        filetime::set_symlink_file_times(path, filetime_of(node.atime), filetime_of(node.mtime))
            .map_err(|e| Error::io(path, e))
    }

    /// A FIFO or device node, with its owner, mode and times set by path (opening a FIFO would
    /// wait for a writer).
    fn restore_special(&self, node: &Node, path: &Path, kind: SFlag) -> Result<()> {
        remove_non_dir(path)?;
        let dev = node.rdev.unwrap_or(0);
        mknod(path, kind, Mode::from_bits_truncate(node.mode & 0o777), dev)
            .map_err(|e| Error::io(path, std::io::Error::from(e)))?;
        let io = |e| Error::io(path, e);
        if self.as_root {
            std::os::unix::fs::lchown(path, Some(node.uid), Some(node.gid)).map_err(io)?;
        }
        fs::set_permissions(path, fs::Permissions::from_mode(node.mode)).map_err(io)?;
        // utimensat by path: `filetime::set_file_times` opens the file, which blocks on a FIFO.
        // The path is the node just made, never a symlink.
        filetime::set_symlink_file_times(path, filetime_of(node.atime), filetime_of(node.mtime))
            .map_err(io)
    }

    fn skip(&self, path: &Path, why: &str) {
        if let Ok(mut skipped) = self.skipped.lock() {
            skipped.push((path.to_path_buf(), why.to_string()));
        }
    }

    /// Owner, mode and times through an open handle: path-based calls would each look the path up
    /// again, and setting times by path reopens the file.
    fn apply_metadata(&self, node: &Node, file: &File) -> std::io::Result<()> {
        if self.as_root {
            std::os::unix::fs::fchown(file, Some(node.uid), Some(node.gid))?;
        }
        // Mode after chown: chown clears setuid/setgid bits.
        file.set_permissions(fs::Permissions::from_mode(node.mode))?;
        file.set_times(
            FileTimes::new()
                .set_accessed(system_time(node.atime))
                .set_modified(system_time(node.mtime)),
        )
    }
}

/// A file whose content could not be restored is removed, so that nobody mistakes a partial copy for
/// the real one; the error names it.
fn discard(path: &Path) {
    if fs::symlink_metadata(path).is_ok_and(|m| m.is_file()) {
        let _ = fs::remove_file(path);
    }
}

fn remove_non_dir(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if !meta.is_dir() => fs::remove_file(path).map_err(|e| Error::io(path, e)),
        _ => Ok(()),
    }
}

fn system_time(nanos: i64) -> SystemTime {
    let (secs, sub) = (
        nanos.div_euclid(1_000_000_000),
        nanos.rem_euclid(1_000_000_000) as u32,
    );
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, sub)
    } else {
        UNIX_EPOCH - Duration::new(secs.unsigned_abs(), 0) + Duration::new(0, sub)
    }
}

fn filetime_of(nanos: i64) -> FileTime {
    FileTime::from_unix_time(
        nanos.div_euclid(1_000_000_000),
        nanos.rem_euclid(1_000_000_000) as u32,
    )
}
