//! Restore a snapshot tree into a directory: all of it or a selection, merged with what the target
//! already holds as the overwrite policy says, and optionally pruned to match the snapshot. In
//! place (delta), existing files are compared chunk by chunk and only differing chunks written.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, File, FileTimes, Metadata, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, FileExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use filetime::FileTime;
use lifeline_repo::tree::{ContentRef, Node, NodeType, Tree};
use lifeline_repo::walk::components;
use lifeline_repo::{BlobReader, Error, Id, Result};
use nix::sys::stat::{mknod, Mode, SFlag};
use rayon::prelude::*;

use crate::Progress;

/// What to do where the target already holds an entry that the snapshot has too. Directories are
/// always merged into; this decides for files, symlinks and special files (and for a non-directory
/// standing where the snapshot has a directory).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Overwrite {
    /// Rewrite every entry.
    Always,
    /// Rewrite entries whose type, size or mtime (for symlinks: target) differ from the snapshot's.
    IfChanged,
    /// Rewrite entries that differ when the snapshot's mtime is newer than theirs.
    IfNewer,
    /// Never touch an existing entry: nothing the target holds can be lost.
    #[default]
    Never,
}

/// A test of an entry's path in the snapshot (`/home/u/docs/a.txt`).
pub type Matcher<'a> = dyn Fn(&[u8]) -> bool + Sync + 'a;

/// Which entries to restore. A match decides for the entry and everything below it.
#[derive(Clone, Copy, Default)]
pub struct Selection<'a> {
    /// Restore only matching entries and the directories leading to them; `None`: every entry.
    pub include: Option<&'a Matcher<'a>>,
    /// Leave matching entries out (an excluded directory with everything below it).
    pub exclude: Option<&'a Matcher<'a>>,
}

#[derive(Clone, Copy, Default)]
pub struct RestoreOptions<'a> {
    /// Where the restored tree is in the snapshot (`/home/u` when only that directory's contents
    /// are restored); empty for the whole snapshot. The selection sees full snapshot paths.
    pub prefix: &'a [u8],
    pub select: Selection<'a>,
    pub overwrite: Overwrite,
    /// Remove what the target holds, within the selection, that the snapshot does not.
    pub delete: bool,
    /// Decide and count everything, change nothing.
    pub dry_run: bool,
    /// Update a regular file the target holds in place, writing only the chunks whose bytes differ
    /// (a keyed hash of the local bytes against the chunk's ID, so equal chunks are not even
    /// fetched), and replace a directory standing where the snapshot has something else.
    pub in_place: bool,
}

#[derive(Debug, Default)]
pub struct RestoreResult {
    /// Files written (or, in a dry run, that would be).
    pub files: u64,
    pub dirs: u64,
    pub bytes: u64,
    /// The bytes actually written (holes and, in place, equal chunks are not).
    pub bytes_written: u64,
    /// Existing entries that already matched the snapshot (type, size and mtime; in place: every
    /// byte) and were not rewritten.
    pub unchanged: u64,
    /// Existing entries that differ from the snapshot and were left alone by the overwrite policy.
    pub kept: Vec<PathBuf>,
    /// Entries removed by `delete` (a directory counts once, with what was in it).
    pub deleted: Vec<PathBuf>,
    /// Entries that could not be restored, with the reason: the restore goes on past them.
    pub errors: Vec<(PathBuf, String)>,
    /// Entries left out on purpose (sockets; device nodes when not root), with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

struct Session<'a, 'r> {
    reader: &'a BlobReader<'r>,
    progress: &'a dyn Progress,
    opts: &'a RestoreOptions<'a>,
    as_root: bool,
    // Directories not selected themselves that lead to selected entries (only with `include`).
    parents: HashSet<Vec<u8>>,
    // First restored path of each multiply-linked inode, so later names become hard links to it.
    links: Mutex<HashMap<(u64, u64), PathBuf>>,
    errors: Mutex<Vec<(PathBuf, String)>>,
    skipped: Mutex<Vec<(PathBuf, String)>>,
    kept: Mutex<Vec<PathBuf>>,
    deleted: Mutex<Vec<PathBuf>>,
    files: AtomicU64,
    dirs: AtomicU64,
    bytes: AtomicU64,
    written: AtomicU64,
    unchanged: AtomicU64,
}

/// Make `target` equal to the tree `root`, in place: every file is compared with the snapshot and
/// only differing chunks are written; entries the snapshot does not hold are removed. Metadata is
/// set on everything. The caller decides whether `target` may be changed at all.
pub fn restore_delta(
    reader: &BlobReader<'_>,
    root: Id,
    target: &Path,
    progress: &dyn Progress,
) -> Result<RestoreResult> {
    let opts = RestoreOptions {
        overwrite: Overwrite::Always,
        delete: true,
        in_place: true,
        ..RestoreOptions::default()
    };
    restore(reader, root, target, &opts, progress)
}

/// Restore the tree `root` into `target` (created if missing) as `opts` say.
pub fn restore(
    reader: &BlobReader<'_>,
    root: Id,
    target: &Path,
    opts: &RestoreOptions<'_>,
    progress: &dyn Progress,
) -> Result<RestoreResult> {
    // Whether the restored tree itself is selected, from the directories leading to it.
    let mut included = false;
    let mut path = Vec::new();
    for name in components(opts.prefix) {
        path = child(&path, name);
        match opts.select.verdict(&path, included) {
            Verdict::Out => {
                return Err(Error::Invalid(format!(
                    "{} is excluded by the exclude patterns: nothing to restore",
                    String::from_utf8_lossy(&path)
                )))
            }
            Verdict::In => included = true,
            Verdict::Maybe => {}
        }
    }
    let mut parents = HashSet::new();
    if opts.select.include.is_some()
        && !included
        && !plan(reader, &opts.select, root, &path, &mut parents)
    {
        return Err(Error::Invalid(format!(
            "nothing in {} matches the include patterns",
            if path.is_empty() {
                "the snapshot".to_string()
            } else {
                String::from_utf8_lossy(&path).into_owned()
            }
        )));
    }
    if !opts.dry_run {
        fs::create_dir_all(target).map_err(|e| Error::io(target, e))?;
    }
    let session = Session {
        reader,
        progress,
        opts,
        as_root: is_root(),
        parents,
        links: Mutex::new(HashMap::new()),
        errors: Mutex::new(Vec::new()),
        skipped: Mutex::new(Vec::new()),
        kept: Mutex::new(Vec::new()),
        deleted: Mutex::new(Vec::new()),
        files: AtomicU64::new(0),
        dirs: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        written: AtomicU64::new(0),
        unchanged: AtomicU64::new(0),
    };
    session.restore_dir(root, target, &path, included);
    let sorted = |list: Mutex<Vec<PathBuf>>| {
        let mut list = list.into_inner().unwrap_or_default();
        list.sort();
        list
    };
    Ok(RestoreResult {
        files: session.files.into_inner(),
        dirs: session.dirs.into_inner(),
        bytes: session.bytes.into_inner(),
        bytes_written: session.written.into_inner(),
        unchanged: session.unchanged.into_inner(),
        kept: sorted(session.kept),
        deleted: sorted(session.deleted),
        errors: session.errors.into_inner().unwrap_or_default(),
        skipped: session.skipped.into_inner().unwrap_or_default(),
    })
}

/// What the selection says of one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Excluded: left out with everything below it.
    Out,
    /// Selected, with everything below it that is not excluded.
    In,
    /// Not selected itself; a directory is searched for selected entries.
    Maybe,
}

impl Selection<'_> {
    /// `included`: a directory above `path` is selected.
    fn verdict(&self, path: &[u8], included: bool) -> Verdict {
        if self.exclude.is_some_and(|m| m(path)) {
            Verdict::Out
        } else if included || self.include.is_none_or(|m| m(path)) {
            Verdict::In
        } else {
            Verdict::Maybe
        }
    }
}

/// Whether anything below `tree` (at `path`) is selected; the unselected directories leading to
/// selected entries go into `parents`, so the restore creates them and no others. Reads trees only.
fn plan(
    reader: &BlobReader<'_>,
    select: &Selection<'_>,
    tree: Id,
    path: &[u8],
    parents: &mut HashSet<Vec<u8>>,
) -> bool {
    // An unreadable tree counts as a hit: the restore then reaches it and names the damage.
    let Ok(tree) = reader.read_tree(&tree) else {
        return true;
    };
    let mut any = false;
    for node in &tree.nodes {
        let sub_path = child(path, &node.name);
        match select.verdict(&sub_path, false) {
            Verdict::Out => {}
            Verdict::In => any = true,
            Verdict::Maybe => {
                if let (NodeType::Dir, Some(sub)) = (node.node_type, node.subtree) {
                    if plan(reader, select, sub, &sub_path, parents) {
                        parents.insert(sub_path);
                        any = true;
                    }
                }
            }
        }
    }
    any
}

/// `path/name` in the snapshot.
fn child(path: &[u8], name: &[u8]) -> Vec<u8> {
    [path, b"/", name].concat()
}

fn is_root() -> bool {
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

/// Work within one directory: a group of small files that share a bundle, or one other entry (with
/// its path in the snapshot and whether it is selected as a whole).
enum Work<'n> {
    Bundle(Id, Vec<(&'n Node, PathBuf)>),
    Single(&'n Node, PathBuf, Vec<u8>, bool),
}

impl Session<'_, '_> {
    fn fail(&self, path: &Path, err: impl std::fmt::Display) {
        tracing::error!("{}: {err}", path.display());
        if let Ok(mut errors) = self.errors.lock() {
            errors.push((path.to_path_buf(), err.to_string()));
        }
    }

    /// Restore the selected entries of `tree` into `dir`; `snap_path` is its path in the snapshot.
    fn restore_dir(&self, tree: Id, dir: &Path, snap_path: &[u8], included: bool) {
        let tree = match self.reader.read_tree(&tree) {
            Ok(t) => t,
            Err(e) => return self.fail(dir, e),
        };
        let mut bundles: HashMap<Id, Vec<(&Node, PathBuf)>> = HashMap::new();
        let mut work = Vec::new();
        for node in &tree.nodes {
            let node_path = child(snap_path, &node.name);
            let selected = match self.opts.select.verdict(&node_path, included) {
                Verdict::Out => continue,
                Verdict::In => true,
                Verdict::Maybe if self.parents.contains(&node_path) => false,
                Verdict::Maybe => continue,
            };
            let Some(path) = self.child_path(node, dir) else {
                continue;
            };
            if node.node_type != NodeType::Dir && !self.should_write(node, &path) {
                continue;
            }
            match node.content.as_deref() {
                Some([ContentRef(id, _, len)])
                    if node.node_type == NodeType::File && Some(*len) == node.size =>
                {
                    bundles.entry(*id).or_default().push((node, path))
                }
                _ => work.push(Work::Single(node, path, node_path, selected)),
            }
        }
        work.extend(
            bundles
                .into_iter()
                .map(|(id, nodes)| Work::Bundle(id, nodes)),
        );
        work.par_iter().for_each(|w| match w {
            Work::Single(node, path, node_path, selected) => {
                self.restore_node(node, path, node_path, *selected)
            }
            Work::Bundle(id, nodes) => self.restore_bundle(*id, nodes),
        });
        if self.opts.delete {
            self.delete_extras(&tree, dir, snap_path, included);
        }
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

    /// Whether to (re)write this non-directory entry, by what the target holds at `path` and the
    /// overwrite policy. Counts what is left alone; in a dry run counts what would be written and
    /// returns false.
    fn should_write(&self, node: &Node, path: &Path) -> bool {
        if self.unrestorable(node).is_some() {
            return true; // restore_node notes the skip
        }
        let write = match fs::symlink_metadata(path) {
            // Absent, or not even inspectable: the write names the problem.
            Err(_) => true,
            Ok(meta) if self.opts.overwrite != Overwrite::Always && matches(node, path, &meta) => {
                self.unchanged.fetch_add(1, Ordering::Relaxed);
                if node.nlink > 1 {
                    // Later names of the inode link to this one: its content is the snapshot's.
                    if let Ok(mut links) = self.links.lock() {
                        links
                            .entry((node.dev, node.inode))
                            .or_insert_with(|| path.to_path_buf());
                    }
                }
                false
            }
            Ok(meta) if self.replaces(node, &meta) => true,
            Ok(_) => {
                self.keep(path);
                false
            }
        };
        if write && self.opts.dry_run {
            if node.node_type == NodeType::File {
                let size = node.size.unwrap_or(0);
                self.files.fetch_add(1, Ordering::Relaxed);
                self.bytes.fetch_add(size, Ordering::Relaxed);
            }
            return false;
        }
        write
    }

    /// Whether the policy replaces an existing entry that differs from `node`.
    fn replaces(&self, node: &Node, existing: &Metadata) -> bool {
        match self.opts.overwrite {
            Overwrite::Always | Overwrite::IfChanged => true,
            Overwrite::IfNewer => node.mtime > mtime_ns(existing),
            Overwrite::Never => false,
        }
    }

    fn keep(&self, path: &Path) {
        if let Ok(mut kept) = self.kept.lock() {
            kept.push(path.to_path_buf());
        }
    }

    /// Why `node` cannot be recreated by this process, if it cannot.
    fn unrestorable(&self, node: &Node) -> Option<&'static str> {
        match node.node_type {
            NodeType::Socket => Some("socket: the program that listens on it creates it; skipped"),
            NodeType::Chardev | NodeType::Blockdev if !self.as_root => {
                Some("device node: only root can create one; skipped")
            }
            _ => None,
        }
    }

    fn restore_node(&self, node: &Node, path: &Path, snap_path: &[u8], selected: bool) {
        if let Some(why) = self.unrestorable(node) {
            return self.skip(path, why);
        }
        let result = match node.node_type {
            NodeType::Dir => self.restore_subdir(node, path, snap_path, selected),
            NodeType::File => self
                .restore_file(node, path, None)
                .inspect_err(|_| discard(path)),
            NodeType::Symlink => self.restore_symlink(node, path),
            NodeType::Fifo => self.restore_special(node, path, SFlag::S_IFIFO),
            NodeType::Chardev => self.restore_special(node, path, SFlag::S_IFCHR),
            NodeType::Blockdev => self.restore_special(node, path, SFlag::S_IFBLK),
            // Ruled out by `unrestorable` above.
            NodeType::Socket => Ok(()),
        };
        if let Err(e) = result {
            self.fail(path, e);
        }
    }

    fn restore_bundle(&self, id: Id, nodes: &[(&Node, PathBuf)]) {
        let data = self.reader.read_blob(&id);
        for (node, path) in nodes {
            let result = match &data {
                Ok(bytes) => self.restore_file(node, path, Some(bytes)),
                Err(e) => Err(Error::Invalid(e.to_string())),
            }
            .inspect_err(|_| discard(path));
            if let Err(e) = result {
                self.fail(path, e);
            }
        }
    }

    fn restore_subdir(
        &self,
        node: &Node,
        path: &Path,
        snap_path: &[u8],
        selected: bool,
    ) -> Result<()> {
        let sub = node
            .subtree
            .ok_or_else(|| Error::corrupt("tree", "directory without subtree"))?;
        match fs::symlink_metadata(path) {
            Ok(meta) if meta.is_dir() => {}
            // In place, a symlink to a directory stays and is followed, as PostgreSQL follows
            // `pg_wal` on another disk; the caller has vouched for the target.
            Ok(meta) if self.opts.in_place && meta.is_symlink() && path.is_dir() => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !self.opts.dry_run {
                    fs::create_dir(path).map_err(|e| Error::io(path, e))?;
                }
            }
            Err(e) => return Err(Error::io(path, e)),
            // A file or symlink where the snapshot has a directory. Never restore through it: a
            // symlink would lead the restore outside the target.
            Ok(meta) => {
                if !self.replaces(node, &meta) {
                    self.keep(path);
                    return Ok(());
                }
                if !self.opts.dry_run {
                    fs::remove_file(path).map_err(|e| Error::io(path, e))?;
                    fs::create_dir(path).map_err(|e| Error::io(path, e))?;
                }
            }
        }
        self.restore_dir(sub, path, snap_path, selected);
        self.dirs.fetch_add(1, Ordering::Relaxed);
        if self.opts.dry_run {
            return Ok(());
        }
        // After the children: writing them would change the directory's mtime again.
        File::open(path)
            .and_then(|dir| self.apply_metadata(node, &dir))
            .map_err(|e| Error::io(path, e))
    }

    /// With `delete`: remove what `dir` holds that `tree` lacks, where the selection covers it.
    fn delete_extras(&self, tree: &Tree, dir: &Path, snap_path: &[u8], included: bool) {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            // A dry run does not create the directories it would restore.
            Err(e) if self.opts.dry_run && e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => return self.fail(dir, Error::io(dir, e)),
        };
        for entry in entries {
            match entry {
                Ok(entry) if tree.find(entry.file_name().as_bytes()).is_some() => {}
                Ok(entry) => self.delete_extra(
                    &entry.path(),
                    &child(snap_path, entry.file_name().as_bytes()),
                    included,
                ),
                Err(e) => self.fail(dir, Error::io(dir, e)),
            }
        }
    }

    /// An entry the snapshot lacks: removed when selected; an unselected directory is searched for
    /// selected entries, as the restore searched the snapshot. Never follows a symlink.
    fn delete_extra(&self, path: &Path, snap_path: &[u8], included: bool) {
        let is_dir = fs::symlink_metadata(path).is_ok_and(|m| m.is_dir());
        match self.opts.select.verdict(snap_path, included) {
            Verdict::Out => {}
            Verdict::In => {
                if !self.opts.dry_run {
                    let removed = if is_dir {
                        fs::remove_dir_all(path)
                    } else {
                        fs::remove_file(path)
                    };
                    if let Err(e) = removed {
                        return self.fail(path, Error::io(path, e));
                    }
                }
                if let Ok(mut deleted) = self.deleted.lock() {
                    deleted.push(path.to_path_buf());
                }
            }
            Verdict::Maybe if is_dir => match fs::read_dir(path) {
                Ok(entries) => {
                    for entry in entries {
                        match entry {
                            Ok(entry) => self.delete_extra(
                                &entry.path(),
                                &child(snap_path, entry.file_name().as_bytes()),
                                false,
                            ),
                            Err(e) => self.fail(path, Error::io(path, e)),
                        }
                    }
                }
                Err(e) => self.fail(path, Error::io(path, e)),
            },
            Verdict::Maybe => {}
        }
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

    /// The blob a content slice is cut from: the bundle already read, or the chunk, fetched.
    fn chunk_of<'b>(&self, part: &ContentRef, bundle: Option<&'b [u8]>) -> Result<Cow<'b, [u8]>> {
        match bundle {
            Some(b) => Ok(Cow::Borrowed(b)),
            None => self.reader.read_blob(part.id()).map(Cow::Owned),
        }
    }

    fn restore_file(&self, node: &Node, path: &Path, bundle: Option<&[u8]>) -> Result<()> {
        if self.opts.in_place {
            match fs::symlink_metadata(path) {
                // Hard-linked files are written afresh, so their sharing is rebuilt.
                Ok(meta) if meta.is_file() && node.nlink <= 1 => {
                    return self.update_file(node, path, meta.len(), bundle)
                }
                _ => self.clear_dir(path)?,
            }
        }
        let Some(mut file) = self.create(node, path)? else {
            self.files.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        };
        let size = node.size.unwrap_or(0);
        for part in node.content.iter().flatten() {
            let chunk = self.chunk_of(part, bundle)?;
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

    /// In place: a directory where the snapshot has something else goes, with its contents.
    fn clear_dir(&self, path: &Path) -> Result<()> {
        if self.opts.in_place && fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
            fs::remove_dir_all(path).map_err(|e| Error::io(path, e))?;
            if let Ok(mut deleted) = self.deleted.lock() {
                deleted.push(path.to_path_buf());
            }
        }
        Ok(())
    }

    /// In place: the regular file at `path` (`old_len` bytes) made equal to `node`, writing only the
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
                let chunk = self.chunk_of(part, bundle)?;
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

/// Whether the entry the target holds already is `node`: same type, size (symlinks: target,
/// devices: number) and mtime. As restic's fast path, content is not read.
fn matches(node: &Node, path: &Path, existing: &Metadata) -> bool {
    let kind = existing.file_type();
    let same = match node.node_type {
        NodeType::File => kind.is_file() && node.size == Some(existing.len()),
        NodeType::Symlink => {
            kind.is_symlink()
                && fs::read_link(path)
                    .is_ok_and(|t| node.target.as_deref() == Some(t.as_os_str().as_bytes()))
        }
        NodeType::Fifo => kind.is_fifo(),
        NodeType::Chardev => kind.is_char_device() && node.rdev == Some(existing.rdev()),
        NodeType::Blockdev => kind.is_block_device() && node.rdev == Some(existing.rdev()),
        NodeType::Dir | NodeType::Socket => false,
    };
    same && node.mtime == mtime_ns(existing)
}

fn mtime_ns(meta: &Metadata) -> i64 {
    meta.mtime()
        .saturating_mul(1_000_000_000)
        .saturating_add(meta.mtime_nsec())
}
