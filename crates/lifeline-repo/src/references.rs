//! Every blob snapshots reference: their trees, walked once each, and the chunks the trees name.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::index::Index;
use crate::pack::{BlobEntry, BlobKind};
use crate::reader::{poisoned, BlobReader};
use crate::repository::Repository;
use crate::Id;

/// An index of the tree blobs of `packs` alone: a walk needs nothing else, and data blobs are most
/// of a large repository's index.
pub fn tree_index<'a>(packs: impl Iterator<Item = (Id, &'a [BlobEntry])>) -> Index {
    let mut index = Index::default();
    for (pack, entries) in packs {
        let trees: Vec<_> = entries
            .iter()
            .filter(|e| e.kind == BlobKind::Tree)
            .copied()
            .collect();
        if !trees.is_empty() {
            index.add_pack(pack, &trees);
        }
    }
    index
}

/// What a walk adds blobs to: a set, or prune's map from blob to "counted in a pack yet".
pub trait BlobSet {
    /// Add `id`; whether it was new.
    fn add(&mut self, id: Id) -> bool;
}

impl BlobSet for HashSet<Id> {
    fn add(&mut self, id: Id) -> bool {
        self.insert(id)
    }
}

impl BlobSet for HashMap<Id, bool> {
    fn add(&mut self, id: Id) -> bool {
        match self.entry(id) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(false);
                true
            }
            std::collections::hash_map::Entry::Occupied(_) => false,
        }
    }
}

/// Add to `referenced` every blob below the trees of `snapshots` (skipping trees already in it).
/// A snapshot or tree that cannot be read is an error: the caller cannot know what it needs.
pub fn collect(
    repo: &Repository,
    reader: &BlobReader<'_>,
    snapshots: &[Id],
    referenced: &mut impl BlobSet,
) -> Result<()> {
    let roots: Vec<Id> = snapshots
        .par_iter()
        .filter_map(|id| match repo.load_snapshot(id) {
            Ok(s) => Some(Ok(s.tree)),
            // Forgotten since the listing: it needs nothing any more.
            Err(Error::ObjectMissing { .. }) => None,
            Err(e) => Some(Err(unreadable(&format!("snapshot {}", id.short()), e))),
        })
        .collect::<Result<_>>()?;
    let mut frontier: Vec<Id> = roots.into_iter().filter(|t| referenced.add(*t)).collect();
    while !frontier.is_empty() {
        let found = Mutex::new(Vec::new());
        // One level at a time, its trees grouped by pack: each worker reads the trees of one pack in
        // turn, so remote storage fetches every pack once per level instead of once per tree.
        let mut by_pack: HashMap<Option<Id>, Vec<Id>> = HashMap::new();
        for tree in frontier {
            let pack = reader.index().get(&tree).map(|(p, _)| p);
            by_pack.entry(pack).or_default().push(tree);
        }
        let groups: Vec<Vec<Id>> = by_pack.into_values().collect();
        let subtrees: Vec<Id> = groups
            .par_iter()
            .flat_map_iter(|trees| trees.iter())
            .map(|tree_id| -> Result<Vec<Id>> {
                let tree = reader
                    .read_tree(tree_id)
                    .map_err(|e| unreadable(&format!("tree {}", tree_id.short()), e))?;
                let mut subtrees = Vec::new();
                let mut chunks = Vec::new();
                for node in tree.nodes {
                    subtrees.extend(node.subtree);
                    chunks.extend(node.content.iter().flatten().map(|c| *c.id()));
                }
                found.lock().map_err(poisoned)?.extend(chunks);
                Ok(subtrees)
            })
            .collect::<Result<Vec<Vec<Id>>>>()?
            .into_iter()
            .flatten()
            .collect();
        for id in found.into_inner().map_err(poisoned)? {
            referenced.add(id);
        }
        frontier = subtrees
            .into_iter()
            .filter(|t| referenced.add(*t))
            .collect();
    }
    Ok(())
}

fn unreadable(what: &str, e: Error) -> Error {
    Error::Invalid(format!(
        "{what} cannot be read, so what it references is unknown: {e} (run `lifeline check`)"
    ))
}
