//! Every blob snapshots reference: their trees, walked once each, and the chunks the trees name.

use std::collections::HashSet;
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

/// Add to `referenced` every blob below the trees of `snapshots` (skipping trees already in it).
/// A snapshot or tree that cannot be read is an error: the caller cannot know what it needs.
pub fn collect(
    repo: &Repository,
    reader: &BlobReader<'_>,
    snapshots: &[Id],
    referenced: &mut HashSet<Id>,
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
    let mut frontier: Vec<Id> = roots
        .into_iter()
        .filter(|t| referenced.insert(*t))
        .collect();
    while !frontier.is_empty() {
        let found = Mutex::new(Vec::new());
        let subtrees: Vec<Id> = frontier
            .par_iter()
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
        referenced.extend(found.into_inner().map_err(poisoned)?);
        frontier = subtrees
            .into_iter()
            .filter(|t| referenced.insert(*t))
            .collect();
    }
    Ok(())
}

fn unreadable(what: &str, e: Error) -> Error {
    Error::Invalid(format!(
        "{what} cannot be read, so what it references is unknown: {e} (run `lifeline check`)"
    ))
}
