//! A tar stream (what `pg_basebackup -D - -Ft` writes) stored as a snapshot tree, entry by entry as
//! it arrives: large files are chunked like files on disk, small ones share bundles, so a later base
//! backup of a mostly unchanged cluster stores only what changed and restore writes files in parallel.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use lifeline_repo::chunker::ChunkProfile;
use lifeline_repo::snapshot::Summary;
use lifeline_repo::tree::{ContentRef, Node, NodeType, Tree};
use lifeline_repo::{Bundle, Id, Writer, BUNDLE_FILE_LIMIT};

use super::error::{Error, Result};
use crate::Progress;

const BLOCK: usize = 512;

/// A small file waiting for its bundle to be sealed: where its node is and where its bytes sit.
struct Pending {
    dir: String,
    index: usize,
    offset: u64,
    len: u64,
}

#[derive(Default)]
struct Builder {
    /// Entries per directory ("" is the root), in arrival order.
    dirs: BTreeMap<String, Vec<Node>>,
    /// Metadata of each directory, from its own tar entry.
    dir_nodes: BTreeMap<String, Node>,
    pending: Vec<Pending>,
    bundle: Bundle,
    summary: Summary,
}

/// The stored tree, and the files the caller asked to keep a copy of (by path).
pub struct Stored {
    pub tree: Id,
    pub summary: Summary,
    pub kept: BTreeMap<String, Vec<u8>>,
}

/// Read a tar stream to its end and store it. Files named in `keep` (small text files such as
/// `backup_manifest`) are also returned.
pub fn store(
    writer: &Writer<'_>,
    mut input: impl Read + Send,
    keep: &[&str],
    progress: &dyn Progress,
) -> Result<Stored> {
    let mut builder = Builder::default();
    let mut kept = BTreeMap::new();
    let mut block = [0u8; BLOCK];
    loop {
        if !read_block(&mut input, &mut block)? {
            break;
        }
        if block.iter().all(|&b| b == 0) {
            break;
        }
        let header = tar::Header::from_byte_slice(&block);
        let path = header
            .path()
            .map_err(|e| bad(format!("entry name: {e}")))?
            .to_string_lossy()
            .trim_end_matches('/')
            .trim_start_matches("./")
            .to_string();
        let size = header
            .entry_size()
            .map_err(|e| bad(format!("{path}: size: {e}")))?;
        let mut node = node_for(header, &path)?;
        match node.node_type {
            NodeType::Dir => {
                if size != 0 {
                    return Err(bad(format!("directory {path} has {size} bytes of content")));
                }
                builder.summary.dirs += 1;
                builder.dirs.entry(path.clone()).or_default();
                builder.dir_nodes.insert(path, node);
                continue;
            }
            NodeType::File => {}
            _ => {
                builder.add(&path, node);
                skip_padding(&mut input, size)?;
                continue;
            }
        }
        node.size = Some(size);
        let mut body = (&mut input).take(size);
        if size > BUNDLE_FILE_LIMIT && !keep.contains(&path.as_str()) {
            let (content, stored) =
                writer.add_stream(&mut body, ChunkProfile::Files, Path::new(&path), &|n| {
                    progress.bytes(n)
                })?;
            if stored != size {
                return Err(bad(format!("{path} ends after {stored} of {size} bytes")));
            }
            node.content = Some(content);
            builder.add(&path, node);
        } else {
            // Sized by what arrives, not by the header: a kept file's header may claim any size.
            let mut data =
                Vec::with_capacity(usize::try_from(size.min(BUNDLE_FILE_LIMIT)).unwrap_or(0));
            body.read_to_end(&mut data)
                .map_err(|e| Error::io(&path, e))?;
            if data.len() as u64 != size {
                return Err(bad(format!(
                    "{path} ends after {} of {size} bytes",
                    data.len()
                )));
            }
            progress.bytes(size);
            if keep.contains(&path.as_str()) {
                kept.insert(path.clone(), data.clone());
            }
            builder.add_small(writer, &path, node, &data)?;
        }
        builder.summary.files += 1;
        builder.summary.bytes += size;
        progress.file_done(size);
        skip_padding(&mut input, size)?;
    }
    // Drain what follows the end-of-archive blocks so the producer never blocks on a full pipe.
    std::io::copy(&mut input, &mut std::io::sink()).map_err(|e| Error::io("tar stream", e))?;
    let (tree, summary) = builder.finish(writer)?;
    Ok(Stored {
        tree,
        summary,
        kept,
    })
}

fn bad(detail: String) -> Error {
    Error::Invalid(format!(
        "the base backup's tar stream is malformed: {detail}"
    ))
}

/// Fill `block`; `false` at a clean end of stream.
fn read_block(input: &mut impl Read, block: &mut [u8; BLOCK]) -> Result<bool> {
    let mut filled = 0;
    while filled < BLOCK {
        match input.read(&mut block[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => return Err(bad("stream ends inside a header".into())),
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("tar stream", e)),
        }
    }
    Ok(true)
}

fn skip_padding(input: &mut impl Read, size: u64) -> Result<()> {
    let pad = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
    let skipped = std::io::copy(&mut input.take(pad), &mut std::io::sink())
        .map_err(|e| Error::io("tar stream", e))?;
    if skipped != pad {
        return Err(bad("stream ends inside padding".into()));
    }
    Ok(())
}

fn node_for(header: &tar::Header, path: &str) -> Result<Node> {
    let name = path.rsplit('/').next().unwrap_or(path).as_bytes().to_vec();
    let mtime = header
        .mtime()
        // A GNU base-256 field can state any u64: saturate instead of overflowing.
        .map(|t| i64::try_from(t).unwrap_or(0).saturating_mul(1_000_000_000))
        .unwrap_or(0);
    let mut node = Node::file(name, 0, Vec::new(), mtime);
    node.mode = header.mode().unwrap_or(0o600);
    node.uid = header
        .uid()
        .ok()
        .and_then(|u| u32::try_from(u).ok())
        .unwrap_or(0);
    node.gid = header
        .gid()
        .ok()
        .and_then(|g| u32::try_from(g).ok())
        .unwrap_or(0);
    match header.entry_type() {
        tar::EntryType::Regular | tar::EntryType::Continuous => {}
        tar::EntryType::Directory => {
            node.node_type = NodeType::Dir;
            node.size = None;
            node.content = None;
        }
        tar::EntryType::Symlink => {
            node.node_type = NodeType::Symlink;
            node.size = None;
            node.content = None;
            node.target = header.link_name_bytes().map(|t| t.into_owned());
        }
        other => {
            return Err(bad(format!(
                "{path}: entry type {other:?} is not one pg_basebackup writes"
            )))
        }
    }
    Ok(node)
}

fn parent_of(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(dir, _)| dir)
}

impl Builder {
    fn add(&mut self, path: &str, node: Node) -> usize {
        let entries = self.dirs.entry(parent_of(path).to_string()).or_default();
        entries.push(node);
        entries.len() - 1
    }

    fn add_small(
        &mut self,
        writer: &Writer<'_>,
        path: &str,
        node: Node,
        data: &[u8],
    ) -> Result<()> {
        let index = self.add(path, node);
        if data.is_empty() {
            return Ok(());
        }
        let offset = self.bundle.push(data);
        self.pending.push(Pending {
            dir: parent_of(path).to_string(),
            index,
            offset,
            len: data.len() as u64,
        });
        if self.bundle.is_full() {
            self.seal(writer)?;
        }
        Ok(())
    }

    fn seal(&mut self, writer: &Writer<'_>) -> Result<()> {
        if self.bundle.is_empty() {
            return Ok(());
        }
        let id = self.bundle.seal(writer)?;
        for p in self.pending.drain(..) {
            if let Some(node) = self.dirs.get_mut(&p.dir).and_then(|n| n.get_mut(p.index)) {
                node.content = Some(vec![ContentRef(id, p.offset, p.len)]);
            }
        }
        Ok(())
    }

    /// Store the directory trees deepest first, so each parent can name its children's subtrees.
    fn finish(mut self, writer: &Writer<'_>) -> Result<(Id, Summary)> {
        self.seal(writer)?;
        let mut paths: Vec<String> = self.dirs.keys().cloned().collect();
        for dir in self.dir_nodes.keys() {
            let mut cur = dir.as_str();
            while !cur.is_empty() {
                cur = parent_of(cur);
                if !self.dirs.contains_key(cur) && !paths.iter().any(|p| p == cur) {
                    paths.push(cur.to_string());
                }
            }
        }
        if !paths.iter().any(|p| p.is_empty()) {
            paths.push(String::new());
        }
        paths.sort_by_key(|p| {
            std::cmp::Reverse(if p.is_empty() {
                0
            } else {
                p.split('/').count()
            })
        });
        let mut subtrees: BTreeMap<String, Id> = BTreeMap::new();
        for path in paths {
            let mut nodes = self.dirs.remove(&path).unwrap_or_default();
            let children: Vec<(String, Id)> = subtrees
                .iter()
                .filter(|(child, _)| !child.is_empty() && parent_of(child) == path)
                .map(|(c, id)| (c.clone(), *id))
                .collect();
            for (child, id) in children {
                let mut node = self.dir_nodes.remove(&child).unwrap_or_else(|| {
                    let name = child
                        .rsplit('/')
                        .next()
                        .unwrap_or(&child)
                        .as_bytes()
                        .to_vec();
                    let mut n = Node::file(name, 0, Vec::new(), 0);
                    n.mode = 0o700;
                    n
                });
                node.node_type = NodeType::Dir;
                node.size = None;
                node.content = None;
                node.subtree = Some(id);
                nodes.push(node);
                subtrees.remove(&child);
            }
            let id = writer.add_tree(Tree { nodes })?;
            subtrees.insert(path, id);
        }
        let root = subtrees
            .remove("")
            .ok_or_else(|| bad("no root directory".into()))?;
        Ok((root, self.summary))
    }
}
