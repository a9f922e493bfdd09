//! Back up paths into one snapshot tree that mirrors their absolute paths.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::{self, File, Metadata};
use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use lifeline_repo::chunker::ChunkProfile;
use lifeline_repo::snapshot::{ItemError, Summary};
use lifeline_repo::tree::{ContentRef, Node, NodeType, Tree};
use lifeline_repo::{Bundle, Id, Result, Writer, BUNDLE_FILE_LIMIT};
use rayon::prelude::*;

use super::exclude::{Exclusions, CACHEDIR_TAG};
use super::metadata::{change_while_read, node_from, unchanged};
use crate::Progress;

pub struct BackupResult {
    pub tree: Id,
    pub summary: Summary,
    /// Items that could not be read; the snapshot records them.
    pub errors: Vec<ItemError>,
    /// Entries the exclusions left out (a directory counts once, not its contents).
    pub excluded: u64,
}

/// How a directory that a running program writes to (a database's data directory) is read.
#[derive(Debug, Clone, Copy, Default)]
pub struct Live {
    /// Reuse a file of the parent only if its recorded mtime (ns since the epoch) is before this:
    /// a file written just before the parent read it can be written again within the same tick of
    /// the file system's clock, after the read, and keep its size and mtime.
    pub settled_before: Option<i64>,
    /// Files change and vanish while read as a matter of course (the database's own log repairs
    /// them): a change is marked in the node, so the next backup reads the file again, but is not
    /// an item error, and a vanished entry is counted, not recorded.
    pub expect_changes: bool,
}

struct Session<'a, 'r> {
    writer: &'a Writer<'r>,
    progress: &'a dyn Progress,
    exclusions: &'a Exclusions,
    live: Live,
    /// With `backup_dir`: the directory backed up, and every file stored below it.
    listing: Option<(PathBuf, Mutex<Vec<ListedFile>>)>,
    errors: Mutex<Vec<ItemError>>,
    excluded: AtomicU64,
    vanished: AtomicU64,
    files: AtomicU64,
    dirs: AtomicU64,
    bytes: AtomicU64,
    new: AtomicU64,
    changed: AtomicU64,
    unmodified: AtomicU64,
}

/// A component trie of the requested paths, so `/a/b` and `/a/c` share the node for `/a`.
#[derive(Default)]
pub(crate) struct Trie {
    pub(crate) children: BTreeMap<Vec<u8>, Trie>,
    /// A path given, not only a directory above one.
    pub(crate) selected: bool,
}

impl Trie {
    /// The trie of `paths` (absolute).
    pub(crate) fn of(paths: &[PathBuf]) -> Trie {
        let mut trie = Trie::default();
        for path in paths {
            let mut node = &mut trie;
            for part in path.components().skip(1) {
                node = node
                    .children
                    .entry(part.as_os_str().as_bytes().to_vec())
                    .or_default();
            }
            node.selected = true;
        }
        trie
    }
}

/// Back up `paths` (absolute). `parent` is the root tree of an earlier snapshot of the same paths:
/// files unchanged since then are not read again. What `exclusions` leave out is not read at all.
pub fn backup(
    writer: &Writer<'_>,
    paths: &[PathBuf],
    parent: Option<Id>,
    exclusions: &Exclusions,
    progress: &dyn Progress,
) -> Result<BackupResult> {
    let trie = Trie::of(paths);
    let session = Session::new(writer, exclusions, Live::default(), progress);
    let tree = session.trie_tree(&trie, Path::new("/"), parent)?;
    Ok(session.result(tree))
}

/// A file stored by [`backup_dir`], by its path below the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedFile {
    pub path: PathBuf,
    pub size: u64,
    /// ns since the epoch.
    pub mtime: i64,
}

/// What [`backup_dir`] stored: the entries of the directory's tree, for the caller to add to and
/// seal (a tree just written cannot be read back before the session ends), and every file below
/// (in the order the readers finished them).
pub struct DirBackup {
    pub nodes: Vec<Node>,
    pub files: Vec<ListedFile>,
    pub summary: Summary,
    pub errors: Vec<ItemError>,
    pub excluded: u64,
    /// Entries that were listed but gone when read ([`Live::expect_changes`]).
    pub vanished: u64,
}

/// Back up the directory `dir` as the root of a tree of its own, as a database's data directory is
/// stored. `parent` is the tree of an earlier backup of it.
pub fn backup_dir(
    writer: &Writer<'_>,
    dir: &Path,
    parent: Option<Id>,
    exclusions: &Exclusions,
    live: Live,
    progress: &dyn Progress,
) -> Result<DirBackup> {
    let meta = fs::metadata(dir).map_err(|e| lifeline_repo::Error::io(dir, e))?;
    let mut session = Session::new(writer, exclusions, live, progress);
    session.listing = Some((dir.to_path_buf(), Mutex::new(Vec::new())));
    let nodes = session.dir_nodes(dir, meta.dev(), parent)?;
    let files = session
        .listing
        .take()
        .map(|(_, files)| files.into_inner().unwrap_or_default())
        .unwrap_or_default();
    let vanished = session.vanished.load(Ordering::Relaxed);
    let (summary, errors, excluded) = session.counts();
    Ok(DirBackup {
        nodes,
        files,
        summary,
        errors,
        excluded,
        vanished,
    })
}

impl<'a, 'r> Session<'a, 'r> {
    fn new(
        writer: &'a Writer<'r>,
        exclusions: &'a Exclusions,
        live: Live,
        progress: &'a dyn Progress,
    ) -> Self {
        Session {
            writer,
            progress,
            exclusions,
            live,
            listing: None,
            errors: Mutex::new(Vec::new()),
            excluded: AtomicU64::new(0),
            vanished: AtomicU64::new(0),
            files: AtomicU64::new(0),
            dirs: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            new: AtomicU64::new(0),
            changed: AtomicU64::new(0),
            unmodified: AtomicU64::new(0),
        }
    }

    fn result(self, tree: Id) -> BackupResult {
        let (summary, errors, excluded) = self.counts();
        BackupResult {
            tree,
            summary,
            errors,
            excluded,
        }
    }

    /// What was stored, what could not be read, and how many entries were left out.
    fn counts(self) -> (Summary, Vec<ItemError>, u64) {
        let summary = Summary {
            files: self.files.into_inner(),
            dirs: self.dirs.into_inner(),
            bytes: self.bytes.into_inner(),
            files_new: self.new.into_inner(),
            files_changed: self.changed.into_inner(),
            files_unmodified: self.unmodified.into_inner(),
            data_added: 0,
            duration_ms: 0,
        };
        (
            summary,
            self.errors.into_inner().unwrap_or_default(),
            self.excluded.into_inner(),
        )
    }
}

impl Session<'_, '_> {
    fn record_error(&self, path: &Path, err: impl std::error::Error + 'static) {
        if self.live.expect_changes && not_found(&err) {
            self.vanished.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // The snapshot records it and the command reports it once; a warning here said it twice.
        tracing::debug!("{}: {err}", path.display());
        if let Ok(mut errors) = self.errors.lock() {
            errors.push(ItemError::unreadable(
                path.display().to_string(),
                err.to_string(),
            ));
        }
    }

    /// A file stored as read although it changed meanwhile: marked in its node and in the
    /// snapshot's item list, so the backup ends with the partial-success code.
    fn record_changed(&self, path: &Path, node: &mut Node, what: String) {
        node.changed_while_read = true;
        if self.live.expect_changes {
            return;
        }
        if let Ok(mut errors) = self.errors.lock() {
            errors.push(ItemError {
                path: path.display().to_string(),
                message: format!(
                    "changed while it was read ({what}); the stored copy may be inconsistent"
                ),
                changed_while_read: true,
            });
        }
    }

    fn parent_tree(&self, id: Option<Id>) -> Option<Tree> {
        let id = id?;
        match self.writer.reader().read_tree(&id) {
            Ok(tree) => Some(tree),
            Err(e) => {
                tracing::warn!("parent tree unreadable, reading everything again: {e}");
                None
            }
        }
    }

    /// The tree for a trie level: selected paths are backed up whole, the rest are their ancestors.
    fn trie_tree(&self, trie: &Trie, path: &Path, parent: Option<Id>) -> Result<Id> {
        let parent_tree = self.parent_tree(parent);
        let nodes = trie
            .children
            .par_iter()
            .map(|(name, child)| {
                let child_path = path.join(std::ffi::OsStr::from_bytes(name));
                if child.selected && self.exclusions.excludes(&child_path) {
                    self.excluded.fetch_add(1, Ordering::Relaxed);
                    return Ok(None);
                }
                let meta = match fs::symlink_metadata(&child_path) {
                    Ok(meta) => meta,
                    Err(e) => {
                        self.record_error(&child_path, e);
                        return Ok(None);
                    }
                };
                let old = parent_tree.as_ref().and_then(|t| t.find(name));
                if child.selected {
                    // A starting path is backed up even where it is a mount point.
                    return self.entry_node(name.clone(), &child_path, &meta, meta.dev(), old);
                }
                let mut node = node_from(name.clone(), &meta);
                node.node_type = NodeType::Dir;
                node.subtree =
                    Some(self.trie_tree(child, &child_path, old.and_then(|o| o.subtree))?);
                Ok(Some(node))
            })
            .collect::<Result<Vec<Option<Node>>>>()?;
        self.writer.add_tree(Tree {
            nodes: nodes.into_iter().flatten().collect(),
        })
    }

    /// The node for one entry that is backed up whole (with everything below it). `dir_dev` is the
    /// device of the directory it is listed in.
    fn entry_node(
        &self,
        name: Vec<u8>,
        path: &Path,
        meta: &Metadata,
        dir_dev: u64,
        old: Option<&Node>,
    ) -> Result<Option<Node>> {
        let mut node = node_from(name, meta);
        match node.node_type {
            NodeType::Dir if self.exclusions.crosses(meta, dir_dev) => {
                // A mount point: kept as an empty directory so a restore has somewhere to mount.
                self.dirs.fetch_add(1, Ordering::Relaxed);
                self.excluded.fetch_add(1, Ordering::Relaxed);
                node.subtree = Some(self.writer.add_tree(Tree { nodes: Vec::new() })?);
            }
            NodeType::Dir => {
                self.dirs.fetch_add(1, Ordering::Relaxed);
                node.subtree =
                    Some(self.dir_tree(path, meta.dev(), old.and_then(|o| o.subtree))?);
            }
            NodeType::Symlink => match fs::read_link(path) {
                Ok(target) => node.target = Some(target.into_os_string().into_vec()),
                Err(e) => {
                    self.record_error(path, e);
                    return Ok(None);
                }
            },
            NodeType::File => {
                node.size = Some(meta.len());
                if let Some(old) = old.filter(|o| self.reusable(o, &node)) {
                    node.content.clone_from(&old.content);
                    self.progress.bytes(meta.len());
                    self.file_counted(path, &node, Some(true));
                } else {
                    match self.file_content(path, meta) {
                        Ok((content, size, change)) => {
                            node.size = Some(size);
                            node.content = Some(content);
                            if let Some(what) = change {
                                self.record_changed(path, &mut node, what);
                            }
                            self.file_counted(path, &node, old.map(|_| false));
                        }
                        // Only a failure to read the source is the item's problem; a repository
                        // that cannot store it fails the backup.
                        Err(e) if reading_failed(&e, path) => {
                            self.record_error(path, e);
                            return Ok(None);
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
            _ => {}
        }
        Ok(Some(node))
    }

    /// Whether `old`'s chunk list stands for `new`: the file is unchanged and every chunk is in a
    /// pack no prune mark names.
    fn reusable(&self, old: &Node, new: &Node) -> bool {
        unchanged(old, new)
            && self.live.settled_before.is_none_or(|t| old.mtime < t)
            && self
                .writer
                .reusable(old.content.as_deref().unwrap_or_default())
    }

    /// `unmodified`: `Some(true)` reused, `Some(false)` changed since the parent, `None` new.
    fn file_counted(&self, path: &Path, node: &Node, unmodified: Option<bool>) {
        let size = node.size.unwrap_or(0);
        if let Some((root, listing)) = &self.listing {
            if let (Ok(rel), Ok(mut listing)) = (path.strip_prefix(root), listing.lock()) {
                listing.push(ListedFile {
                    path: rel.to_path_buf(),
                    size,
                    mtime: node.mtime,
                });
            }
        }
        self.files.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(size, Ordering::Relaxed);
        let counter = match unmodified {
            Some(true) => &self.unmodified,
            Some(false) => &self.changed,
            None => &self.new,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.progress.file_done(size);
    }

    /// The file's chunks and size as read, and how it changed while it was read, if it did.
    fn file_content(
        &self,
        path: &Path,
        before: &Metadata,
    ) -> Result<(Vec<ContentRef>, u64, Option<String>)> {
        let io = |e| lifeline_repo::Error::io(path, e);
        let file = File::open(path).map_err(io)?;
        let (content, size) = self
            .writer
            .add_stream(&file, ChunkProfile::Files, path, &|n| {
                self.progress.bytes(n)
            })?;
        let after = file.metadata().map_err(io)?;
        Ok((content, size, change_while_read(before, &after, size)))
    }

    /// A directory's tree. Small changed files are read in name order into bundles; everything else
    /// runs in parallel. `dev` is the directory's device.
    fn dir_tree(&self, path: &Path, dev: u64, parent: Option<Id>) -> Result<Id> {
        let nodes = self.dir_nodes(path, dev, parent)?;
        self.writer.add_tree(Tree { nodes })
    }

    /// The entries of a directory's tree (see [`Session::dir_tree`]).
    fn dir_nodes(&self, path: &Path, dev: u64, parent: Option<Id>) -> Result<Vec<Node>> {
        let parent_tree = self.parent_tree(parent);
        let mut entries: Vec<(OsString, PathBuf, Metadata)> = Vec::new();
        // A cache directory keeps only its tag, as restic does: the tag says what the directory is.
        let cache = self.exclusions.is_cache(path);
        match fs::read_dir(path) {
            Ok(iter) => {
                for entry in iter {
                    let entry = match entry {
                        Ok(e) => e,
                        Err(e) => {
                            self.record_error(path, e);
                            continue;
                        }
                    };
                    let child = entry.path();
                    if (cache && entry.file_name() != CACHEDIR_TAG)
                        || self.exclusions.excludes(&child)
                    {
                        self.excluded.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    match fs::symlink_metadata(&child) {
                        // Only a directory is a mount point; a file bound from elsewhere is left out.
                        Ok(meta) if !meta.is_dir() && self.exclusions.crosses(&meta, dev) => {
                            self.excluded.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(meta) => entries.push((entry.file_name(), child, meta)),
                        Err(e) => self.record_error(&child, e),
                    }
                }
            }
            Err(e) => self.record_error(path, e),
        }
        entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));

        let old_of = |name: &OsString| find(parent_tree.as_ref(), name);
        let bundled = |meta: &Metadata, name: &OsString| {
            meta.is_file() && meta.len() < BUNDLE_FILE_LIMIT && {
                let mut probe = node_from(Vec::new(), meta);
                probe.size = Some(meta.len());
                !old_of(name).is_some_and(|o| self.reusable(o, &probe))
            }
        };

        let (small, others): (Vec<_>, Vec<_>) = entries
            .iter()
            .partition(|(name, _, meta)| bundled(meta, name));
        let mut nodes = self.bundle_small_files(small.into_iter(), parent_tree.as_ref())?;
        let others = others
            .into_par_iter()
            .map(|(name, child, meta)| {
                self.entry_node(name.as_bytes().to_vec(), child, meta, dev, old_of(name))
            })
            .collect::<Result<Vec<Option<Node>>>>()?;
        nodes.extend(others.into_iter().flatten());
        Ok(nodes)
    }

    fn bundle_small_files<'e>(
        &self,
        files: impl Iterator<Item = &'e (OsString, PathBuf, Metadata)>,
        parent_tree: Option<&Tree>,
    ) -> Result<Vec<Node>> {
        let mut done = Vec::new();
        let mut pending: Vec<Pending<'e>> = Vec::new();
        let mut bundle = Bundle::default();
        let mut seal = |bundle: &mut Bundle, pending: &mut Vec<Pending<'e>>| -> Result<()> {
            if bundle.is_empty() {
                // Only empty files are pending: they need no chunk.
                for (mut node, path, _, _, existed) in pending.drain(..) {
                    node.content = Some(Vec::new());
                    self.file_counted(path, &node, existed.then_some(false));
                    done.push(node);
                }
                return Ok(());
            }
            let id = bundle.seal(self.writer)?;
            for (mut node, path, offset, len, existed) in pending.drain(..) {
                node.content = Some(if len == 0 {
                    Vec::new()
                } else {
                    vec![ContentRef(id, offset, len)]
                });
                self.file_counted(path, &node, existed.then_some(false));
                done.push(node);
            }
            Ok(())
        };
        for (name, path, meta) in files {
            let (data, change) = match read_small(path, meta) {
                Ok(read) => read,
                Err(e) => {
                    self.record_error(path, e);
                    continue;
                }
            };
            let mut node = node_from(name.as_bytes().to_vec(), meta);
            node.size = Some(data.len() as u64);
            if let Some(what) = change {
                self.record_changed(path, &mut node, what);
            }
            self.progress.bytes(data.len() as u64);
            let offset = bundle.push(&data);
            pending.push((
                node,
                path,
                offset,
                data.len() as u64,
                find(parent_tree, name).is_some(),
            ));
            if bundle.is_full() {
                seal(&mut bundle, &mut pending)?;
            }
        }
        seal(&mut bundle, &mut pending)?;
        Ok(done)
    }
}

/// A small file waiting for its bundle: its node, path, offset and length in the bundle, and
/// whether the parent had it.
type Pending<'e> = (Node, &'e Path, u64, u64, bool);

/// A small file's bytes, and how it changed while it was read, if it did.
fn read_small(path: &Path, before: &Metadata) -> std::io::Result<(Vec<u8>, Option<String>)> {
    let mut file = File::open(path)?;
    let mut data = Vec::with_capacity(before.len() as usize);
    file.read_to_end(&mut data)?;
    let after = file.metadata()?;
    let change = change_while_read(before, &after, data.len() as u64);
    Ok((data, change))
}

fn find<'t>(tree: Option<&'t Tree>, name: &OsString) -> Option<&'t Node> {
    tree.and_then(|t| t.find(name.as_bytes()))
}

/// Whether `err` is, or is caused by, an entry not being there (any more).
fn not_found(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound)
        {
            return true;
        }
        cur = e.source();
    }
    false
}

/// Whether `err` is the source file failing to open or read (recorded, the backup goes on) rather than
/// the repository failing (fatal).
fn reading_failed(err: &lifeline_repo::Error, source: &Path) -> bool {
    matches!(err, lifeline_repo::Error::Io { path, .. } if path == source)
}
