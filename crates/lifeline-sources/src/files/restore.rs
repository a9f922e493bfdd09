//! Restore a snapshot tree into a directory: a new one, or (delta) one that already holds an older
//! or diverged copy, which is made equal to the snapshot by writing only the chunks that differ.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File, FileTimes, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, FileExt, PermissionsExt};
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
    /// The size of the files restored (or, in a delta restore, checked).
    pub bytes: u64,
    /// The bytes actually written (holes and, in a delta restore, equal chunks are not).
    pub bytes_written: u64,
    /// Delta restore: files found equal to the snapshot's, so not written.
    pub unchanged: u64,
    /// Delta restore: entries the target held that the snapshot does not (a directory counts with
    /// everything in it), removed.
    pub removed: u64,
    /// Entries that could not be restored, with the reason: the restore goes on past them.
    pub errors: Vec<(PathBuf, String)>,
    /// Entries left out on purpose (sockets; device nodes when not root), with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

struct Session<'a, 'r> {
    reader: &'a BlobReader<'r>,
    progress: &'a dyn Progress,
    as_root: bool,
    delta: bool,
    // First restored path of each multiply-linked inode, so later names become hard links to it.
    links: Mutex<HashMap<(u64, u64), PathBuf>>,
    errors: Mutex<Vec<(PathBuf, String)>>,
    skipped: Mutex<Vec<(PathBuf, String)>>,
    files: AtomicU64,
    dirs: AtomicU64,
    bytes: AtomicU64,
    written: AtomicU64,
    unchanged: AtomicU64,
    removed: AtomicU64,
}

/// Restore the tree `root` into `target` (created if missing).
pub fn restore(
    reader: &BlobReader<'_>,
    root: Id,
    target: &Path,
    progress: &dyn Progress,
) -> Result<RestoreResult> {
    run(reader, root, target, progress, false)
}

/// Make `target` equal to the tree `root`, in place: each file is compared chunk by chunk with the
/// snapshot (a keyed hash of the local bytes against the chunk's ID, so equal chunks are not even
/// fetched) and only differing chunks are written; entries the snapshot does not hold are removed.
/// Metadata is set on everything. The caller decides whether `target` may be changed at all.
pub fn restore_delta(
    reader: &BlobReader<'_>,
    root: Id,
    target: &Path,
    progress: &dyn Progress,
) -> Result<RestoreResult> {
    run(reader, root, target, progress, true)
}

fn run(
    reader: &BlobReader<'_>,
    root: Id,
    target: &Path,
    progress: &dyn Progress,
    delta: bool,
) -> Result<RestoreResult> {
    fs::create_dir_all(target).map_err(|e| Error::io(target, e))?;
    let session = Session {
        reader,
        progress,
        as_root: is_root(),
        delta,
        links: Mutex::new(HashMap::new()),
        errors: Mutex::new(Vec::new()),
        skipped: Mutex::new(Vec::new()),
        files: AtomicU64::new(0),
        dirs: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        written: AtomicU64::new(0),
        unchanged: AtomicU64::new(0),
        removed: AtomicU64::new(0),
    };
    session.restore_dir(root, target);
    Ok(RestoreResult {
        files: session.files.into_inner(),
        dirs: session.dirs.into_inner(),
        bytes: session.bytes.into_inner(),
        bytes_written: session.written.into_inner(),
        unchanged: session.unchanged.into_inner(),
        removed: session.removed.into_inner(),
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
        if self.delta {
            self.remove_extra(&tree.nodes, dir);
        }
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
                .write_file(node, &path, None)
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
                Ok(bytes) => self.write_file(node, &path, Some(bytes)),
                Err(e) => Err(Error::Invalid(e.to_string())),
            }
            .inspect_err(|_| discard(&path));
            if let Err(e) = result {
                self.fail(&path, e);
            }
        }
    }

    fn restore_subdir(&self, node: &Node, path: &Path) -> Result<()> {
        // Delta: a file where the snapshot has a directory goes. A symlink to a directory stays
        // and is followed, as a full restore follows it (pg_wal on another disk).
        if self.delta && !path.is_dir() {
            remove_non_dir(path)?;
        }
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

    /// A file: compared and updated in place in a delta restore when the target holds a regular
    /// file there (hard links are written afresh, so their sharing is rebuilt), else written.
    fn write_file(&self, node: &Node, path: &Path, bundle: Option<&[u8]>) -> Result<()> {
        if self.delta {
            match fs::symlink_metadata(path) {
                Ok(meta) if meta.is_file() && node.nlink <= 1 => {
                    return self.update_file(node, path, meta.len(), bundle)
                }
                _ => self.clear_dir(path)?,
            }
        }
        self.restore_file(node, path, bundle)
    }

    /// Delta: a directory where the snapshot has something else goes, with its contents.
    fn clear_dir(&self, path: &Path) -> Result<()> {
        if self.delta && fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
            let removed = remove_tree(path)?;
            self.removed.fetch_add(removed, Ordering::Relaxed);
        }
        Ok(())
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
                    .map_err(|e| Error::io(path, e))?;
            } else {
                file.write_all(slice).map_err(|e| Error::io(path, e))?;
                self.written.fetch_add(part.len(), Ordering::Relaxed);
            }
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

    /// Delta: the regular file at `path` (`old_len` bytes) made equal to `node`, writing only the
    /// chunks whose bytes differ.
    fn update_file(
        &self,
        node: &Node,
        path: &Path,
        old_len: u64,
        bundle: Option<&[u8]>,
    ) -> Result<()> {
        let io = |e| Error::io(path, e);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(io)?;
        let size = node.size.unwrap_or(0);
        let keyring = self.reader.repo().keyring();
        let (mut pos, mut written, mut local) = (0u64, 0u64, Vec::new());
        for part in node.content.iter().flatten() {
            let len = part.len();
            let on_disk = pos + len <= old_len;
            if on_disk {
                local.resize(len as usize, 0);
                file.read_exact_at(&mut local, pos).map_err(io)?;
            }
            // A chunk of its own is named by the keyed hash of its bytes: equal ones are not fetched.
            let equal_id = on_disk && bundle.is_none() && part.offset() == 0;
            if !(equal_id && keyring.chunk_id(&local) == *part.id()) {
                let data;
                let chunk: &[u8] = match bundle {
                    Some(b) => b,
                    None => {
                        data = self.reader.read_blob(part.id())?;
                        &data
                    }
                };
                let slice = chunk
                    .get(part.offset() as usize..(part.offset() + len) as usize)
                    .ok_or_else(|| {
                        Error::corrupt(format!("blob {}", part.id()), "shorter than the file needs")
                    })?;
                // Beyond the old end an all-zero chunk is a hole: set_len below reads as zeros.
                let hole = pos >= old_len && slice.iter().all(|&b| b == 0);
                let same = on_disk && slice == local.as_slice();
                if !(same || hole) {
                    file.write_all_at(slice, pos).map_err(io)?;
                    written += len;
                }
            }
            pos += len;
            self.progress.bytes(len);
        }
        if old_len != size {
            file.set_len(size).map_err(io)?;
        }
        self.apply_metadata(node, &file).map_err(io)?;
        if written == 0 && old_len == size {
            self.unchanged.fetch_add(1, Ordering::Relaxed);
        } else {
            tracing::debug!(
                "{}: {written} bytes rewritten, {old_len} -> {size} bytes",
                path.display()
            );
        }
        self.files.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(size, Ordering::Relaxed);
        self.written.fetch_add(written, Ordering::Relaxed);
        self.progress.file_done(size);
        Ok(())
    }

    /// Delta: remove what `dir` holds that `nodes` do not name (a directory with its contents).
    fn remove_extra(&self, nodes: &[Node], dir: &Path) {
        let names: std::collections::HashSet<&[u8]> =
            nodes.iter().map(|n| n.name.as_slice()).collect();
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => return self.fail(dir, e),
        };
        for entry in entries {
            let path = match entry {
                Ok(entry) if !names.contains(entry.file_name().as_bytes()) => entry.path(),
                Ok(_) => continue,
                Err(e) => return self.fail(dir, e),
            };
            match remove_tree(&path) {
                Ok(n) => {
                    self.removed.fetch_add(n, Ordering::Relaxed);
                }
                Err(e) => self.fail(&path, e),
            }
        }
    }

    fn restore_symlink(&self, node: &Node, path: &Path) -> Result<()> {
        self.clear_dir(path)?;
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
        self.clear_dir(path)?;
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

/// Remove `path` whatever it is (a symlink itself, never its target); the number of entries
/// removed.
fn remove_tree(path: &Path) -> Result<u64> {
    let meta = fs::symlink_metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_dir() {
        fs::remove_file(path).map_err(|e| Error::io(path, e))?;
        return Ok(1);
    }
    let mut count = 1;
    for entry in fs::read_dir(path).map_err(|e| Error::io(path, e))? {
        let entry = entry.map_err(|e| Error::io(path, e))?;
        count += remove_tree(&entry.path())?;
    }
    fs::remove_dir(path).map_err(|e| Error::io(path, e))?;
    Ok(count)
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
