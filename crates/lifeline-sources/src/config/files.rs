//! The files part of a config capture: configured paths stored as the files kind stores them (one
//! tree mirroring their absolute paths, each node with its metadata), except that a Kubernetes
//! ConfigMap or Secret volume is stored as the files its keys name.
//!
//! Such a volume is a directory of symlinks the kubelet swaps atomically: `key -> ..data/key`,
//! `..data -> ..2026_12_02_10_00_00.123`, the timestamped directory holding the files. Stored as
//! they are, a restore would give links into a timestamp directory nobody wants; so in a directory
//! that holds a `..data` symlink, every entry not starting with `..` is followed and stored as what
//! it points to, and the `..` entries are left out.
//!
//! This walks itself rather than through `files::backup`: that keeps every symlink as a link (what
//! a files backup must do), and its trees cannot be amended afterwards within the same session.
//! Configuration is small, so the walk is sequential and reads every file each time; unchanged
//! files add no data all the same, as their chunks are already in the repository.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use lifeline_repo::chunker::ChunkProfile;
use lifeline_repo::snapshot::{ItemError, Summary};
use lifeline_repo::tree::{Node, NodeType, Tree};
use lifeline_repo::{Result, Writer};

use crate::files::backup::Trie;
use crate::Progress;

/// The symlink that marks a Kubernetes ConfigMap, Secret or projected volume.
pub const VOLUME_MARK: &str = "..data";

/// What the walk stored: the nodes of the snapshot's root directory (the first components of the
/// paths), with counts and the entries that could not be read.
pub(super) struct Walked {
    pub nodes: Vec<Node>,
    pub summary: Summary,
    pub errors: Vec<ItemError>,
    /// Directories stored as Kubernetes volumes (their keys followed).
    pub volumes: Vec<String>,
}

struct Walk<'a, 'r> {
    writer: &'a Writer<'r>,
    progress: &'a dyn Progress,
    summary: Summary,
    errors: Vec<ItemError>,
    volumes: Vec<String>,
}

/// Store `paths` (absolute).
pub(super) fn walk(
    writer: &Writer<'_>,
    paths: &[PathBuf],
    progress: &dyn Progress,
) -> Result<Walked> {
    let trie = Trie::of(paths);
    let mut walk = Walk {
        writer,
        progress,
        summary: Summary::default(),
        errors: Vec::new(),
        volumes: Vec::new(),
    };
    let nodes = walk.level(&trie, Path::new("/"))?;
    Ok(Walked {
        nodes,
        summary: walk.summary,
        errors: walk.errors,
        volumes: walk.volumes,
    })
}

/// Whether `dir` is a Kubernetes volume: it holds the `..data` symlink the kubelet swaps.
pub fn is_volume(dir: &Path) -> bool {
    fs::symlink_metadata(dir.join(VOLUME_MARK)).is_ok_and(|m| m.file_type().is_symlink())
}

/// Whether an entry of a Kubernetes volume is the kubelet's own (`..data`, `..2026_…`).
fn is_internal(name: &[u8]) -> bool {
    name.starts_with(b"..")
}

impl Walk<'_, '_> {
    fn record_error(&mut self, path: &Path, err: impl std::fmt::Display) {
        tracing::debug!("{}: {err}", path.display());
        self.errors.push(ItemError::unreadable(
            path.display().to_string(),
            err.to_string(),
        ));
    }

    /// The nodes of one trie level in `dir`: configured paths whole, the rest as their ancestors.
    fn level(&mut self, trie: &Trie, dir: &Path) -> Result<Vec<Node>> {
        let volume = is_volume(dir);
        let mut nodes = Vec::new();
        for (name, child) in &trie.children {
            let path = dir.join(OsStr::from_bytes(name));
            if child.selected {
                nodes.extend(self.entry(name, &path, volume)?);
                continue;
            }
            // Followed: the path to a configured file may pass through a link (`/etc/app -> /opt/app`).
            let meta = match fs::metadata(&path) {
                Ok(meta) => meta,
                Err(e) => {
                    self.record_error(&path, e);
                    continue;
                }
            };
            let mut node = crate::files::node_from(name.clone(), &meta);
            node.node_type = NodeType::Dir;
            let children = self.level(child, &path)?;
            node.subtree = Some(self.writer.add_tree(Tree { nodes: children })?);
            nodes.push(node);
        }
        Ok(nodes)
    }

    /// One entry, with everything below it. `in_volume`: its directory is a Kubernetes volume, so
    /// a key's link is followed.
    fn entry(&mut self, name: &[u8], path: &Path, in_volume: bool) -> Result<Option<Node>> {
        let follow = in_volume && !is_internal(name);
        let meta = if follow {
            fs::metadata(path)
        } else {
            fs::symlink_metadata(path)
        };
        let meta = match meta {
            Ok(meta) => meta,
            Err(e) => {
                self.record_error(path, e);
                return Ok(None);
            }
        };
        let mut node = crate::files::node_from(name.to_vec(), &meta);
        match node.node_type {
            NodeType::Dir => {
                self.summary.dirs += 1;
                node.subtree = Some(self.dir(path)?);
            }
            NodeType::Symlink => match fs::read_link(path) {
                Ok(target) => node.target = Some(target.into_os_string().into_encoded_bytes()),
                Err(e) => {
                    self.record_error(path, e);
                    return Ok(None);
                }
            },
            NodeType::File => match self.content(path) {
                Ok((content, size)) => {
                    node.size = Some(size);
                    node.content = Some(content);
                    self.summary.files += 1;
                    self.summary.files_new += 1;
                    self.summary.bytes += size;
                    self.progress.file_done(size);
                }
                // A file that cannot be read is the item's problem; a repository that cannot
                // store it fails the capture.
                Err(lifeline_repo::Error::Io {
                    path: failed,
                    source,
                }) if failed == path => {
                    self.record_error(path, source);
                    return Ok(None);
                }
                Err(e) => return Err(e),
            },
            _ => {}
        }
        Ok(Some(node))
    }

    /// A directory's tree; a Kubernetes volume's without the kubelet's entries, keys followed.
    fn dir(&mut self, path: &Path) -> Result<lifeline_repo::Id> {
        let volume = is_volume(path);
        if volume {
            self.volumes.push(path.display().to_string());
        }
        let mut names: Vec<Vec<u8>> = Vec::new();
        match fs::read_dir(path) {
            Ok(entries) => {
                for entry in entries {
                    match entry {
                        Ok(e) => names.push(e.file_name().as_bytes().to_vec()),
                        Err(e) => self.record_error(path, e),
                    }
                }
            }
            Err(e) => self.record_error(path, e),
        }
        names.sort();
        let mut nodes = Vec::new();
        for name in names {
            if volume && is_internal(&name) {
                continue;
            }
            let child = path.join(OsStr::from_bytes(&name));
            nodes.extend(self.entry(&name, &child, volume)?);
        }
        self.writer.add_tree(Tree { nodes })
    }

    fn content(&self, path: &Path) -> Result<(Vec<lifeline_repo::tree::ContentRef>, u64)> {
        let file = File::open(path).map_err(|e| lifeline_repo::Error::io(path, e))?;
        self.writer
            .add_stream(&file, ChunkProfile::Files, path, &|n| {
                self.progress.bytes(n)
            })
    }
}
