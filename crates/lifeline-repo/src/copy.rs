//! Copy snapshots to another repository (a second region, a compliance vault). The destination has
//! its own keys, so chunks are re-keyed from their plaintext: only chunks it lacks are sent, and every
//! pack written is read back and verified.

use std::collections::HashMap;
use std::sync::Mutex;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::pack::BlobKind;
use crate::reader::{poisoned, BlobReader};
use crate::repository::Repository;
use crate::tree::{ContentRef, NodeType, Tree};
use crate::writer::{Writer, DEFAULT_COMPRESSION};
use crate::Id;

/// Snapshot metadata key naming the source snapshot of a copy; makes re-runs skip it.
pub const COPIED_FROM: &str = "copied_from";

#[derive(Debug, Default)]
pub struct CopyOutcome {
    /// (source snapshot, destination snapshot)
    pub copied: Vec<(Id, Id)>,
    /// Source snapshots the destination already had.
    pub skipped: Vec<Id>,
    pub data_added: u64,
}

/// Source → destination IDs of chunks and trees already known to be in the destination.
#[derive(Default)]
struct IdMap {
    chunks: Mutex<HashMap<Id, Id>>,
    trees: Mutex<HashMap<Id, Id>>,
}

struct Session<'a, 'r> {
    src: &'a BlobReader<'r>,
    dst_reader: &'a BlobReader<'a>,
    map: &'a IdMap,
}

/// Copy the snapshots `ids` (all when empty) from `src` to `dst`.
pub fn copy(src: &Repository, dst: &Repository, ids: &[Id]) -> Result<CopyOutcome> {
    src.require_read("copying snapshots out of a repository")?;
    // The destination's snapshots say what is copied already, and every pack written is read back.
    dst.require_read("copying into a repository")?;
    let src_reader = src.reader()?;
    let mut wanted: Vec<(Id, crate::snapshot::Snapshot)> = src
        .snapshots()?
        .into_iter()
        .filter(|(id, _)| ids.is_empty() || ids.contains(id))
        .collect();
    wanted.sort_by_key(|(id, s)| (s.timestamp(), *id));
    let map = IdMap::default();
    let mut outcome = CopyOutcome::default();
    for (src_id, snap) in wanted {
        let present: HashMap<String, (Id, Id)> = dst
            .snapshots()?
            .into_iter()
            .filter_map(|(id, s)| Some((s.source.get(COPIED_FROM)?.clone(), (id, s.tree))))
            .collect();
        if present.contains_key(&src_id.to_hex()) {
            outcome.skipped.push(src_id);
            continue;
        }
        let writer = Writer::new(dst, None, DEFAULT_COMPRESSION)?;
        let parent = snap.parent.as_ref().and_then(|p| present.get(p)).copied();
        if let (Some(src_parent), Some((_, dst_parent_tree))) = (&snap.parent, parent) {
            // The parent's copy mirrors it node for node: pair them up so unchanged data is not read.
            if let Some(src_parent_id) = Id::from_hex(src_parent) {
                let src_parent_tree = src.load_snapshot(&src_parent_id)?.tree;
                seed(
                    &src_reader,
                    writer.reader(),
                    &map,
                    src_parent_tree,
                    dst_parent_tree,
                )?;
            }
        }
        let session = Session {
            src: &src_reader,
            dst_reader: writer.reader(),
            map: &map,
        };
        let tree = session.copy_tree(&writer, snap.tree)?;
        let mut copied = snap.clone();
        copied.tree = tree;
        copied.parent = parent.map(|(id, _)| id.to_hex());
        copied.source.insert(COPIED_FROM.into(), src_id.to_hex());
        let (dst_id, saved, packs) = writer.finish_with_packs(copied)?;
        let problems = crate::check::verify_packs(dst, &packs);
        if let Some(p) = problems.first() {
            return Err(Error::corrupt(
                &p.object,
                format!(
                    "read back after copy: {} (the copy is not trustworthy)",
                    p.detail
                ),
            ));
        }
        outcome.data_added += saved.summary.data_added;
        outcome.copied.push((src_id, dst_id));
    }
    Ok(outcome)
}

/// Record that the source tree `src` is the destination tree `dst`, recursively.
fn seed(
    src: &BlobReader<'_>,
    dst: &BlobReader<'_>,
    map: &IdMap,
    src_tree: Id,
    dst_tree: Id,
) -> Result<()> {
    if map
        .trees
        .lock()
        .map_err(poisoned)?
        .insert(src_tree, dst_tree)
        .is_some()
    {
        return Ok(());
    }
    let (a, b) = (src.read_tree(&src_tree)?, dst.read_tree(&dst_tree)?);
    if a.nodes.len() != b.nodes.len() {
        return Ok(());
    }
    for (x, y) in a.nodes.iter().zip(&b.nodes) {
        if x.name != y.name || x.node_type != y.node_type {
            continue;
        }
        if let (Some(xs), Some(ys)) = (x.subtree, y.subtree) {
            seed(src, dst, map, xs, ys)?;
        }
        if let (Some(xc), Some(yc)) = (&x.content, &y.content) {
            let mut chunks = map.chunks.lock().map_err(poisoned)?;
            for (p, q) in xc.iter().zip(yc) {
                chunks.insert(*p.id(), *q.id());
            }
        }
    }
    Ok(())
}

impl Session<'_, '_> {
    fn copy_tree(&self, writer: &Writer<'_>, src_tree: Id) -> Result<Id> {
        if let Some(known) = self.map.trees.lock().map_err(poisoned)?.get(&src_tree) {
            if self.dst_reader.index().contains_live(known) {
                return Ok(*known);
            }
        }
        let tree = self.src.read_tree(&src_tree)?;
        let nodes = tree
            .nodes
            .into_par_iter()
            .map(|mut node| {
                if node.node_type == NodeType::Dir {
                    if let Some(sub) = node.subtree {
                        node.subtree = Some(self.copy_tree(writer, sub)?);
                    }
                }
                if let Some(content) = node.content.take() {
                    node.content = Some(
                        content
                            .into_iter()
                            .map(|c| {
                                Ok(ContentRef(
                                    self.copy_chunk(writer, c.id())?,
                                    c.offset(),
                                    c.len(),
                                ))
                            })
                            .collect::<Result<Vec<_>>>()?,
                    );
                }
                Ok(node)
            })
            .collect::<Result<Vec<_>>>()?;
        let id = writer.add_tree(Tree { nodes })?;
        self.map
            .trees
            .lock()
            .map_err(poisoned)?
            .insert(src_tree, id);
        Ok(id)
    }

    fn copy_chunk(&self, writer: &Writer<'_>, src_chunk: &Id) -> Result<Id> {
        if let Some(known) = self.map.chunks.lock().map_err(poisoned)?.get(src_chunk) {
            if self.dst_reader.index().contains_live(known) {
                return Ok(*known);
            }
        }
        let data = self.src.read_blob(src_chunk)?;
        let id = writer.add_blob(BlobKind::Data, &data)?;
        self.map
            .chunks
            .lock()
            .map_err(poisoned)?
            .insert(*src_chunk, id);
        Ok(id)
    }
}
