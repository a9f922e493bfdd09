//! Which snapshots hold a path. Every snapshot is searched; when the pattern looks at names only, a
//! tree shared by several snapshots is searched once.

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::Result;
use crate::reader::BlobReader;
use crate::tree::{Node, NodeType};
use crate::Id;

/// What a pattern is matched against.
pub enum Pattern<'a> {
    /// The entry's name (a pattern without `/`).
    Name(&'a dyn Fn(&[u8]) -> bool),
    /// The entry's whole path in the snapshot, `/a/b/c`.
    Path(&'a dyn Fn(&[u8]) -> bool),
}

/// A matching entry and its path in the snapshot.
pub type Hit = (Vec<u8>, Node);

/// Entries of the snapshot tree `root` that match, in path order. `memo` keeps the hits of every
/// subtree searched by name, relative to it, for the next snapshots.
pub fn find(
    reader: &BlobReader<'_>,
    root: Id,
    pattern: &Pattern<'_>,
    memo: &mut HashMap<Id, Arc<Vec<Hit>>>,
) -> Result<Vec<Hit>> {
    match pattern {
        Pattern::Name(matches) => Ok(by_name(reader, root, *matches, memo)?.to_vec()),
        Pattern::Path(matches) => {
            let mut hits = Vec::new();
            crate::walk::walk(reader, root, b"", &mut |path, node| {
                if matches(path) {
                    hits.push((path.to_vec(), node.clone()));
                }
                Ok(())
            })?;
            Ok(hits)
        }
    }
}

fn by_name(
    reader: &BlobReader<'_>,
    tree: Id,
    matches: &dyn Fn(&[u8]) -> bool,
    memo: &mut HashMap<Id, Arc<Vec<Hit>>>,
) -> Result<Arc<Vec<Hit>>> {
    if let Some(hits) = memo.get(&tree) {
        return Ok(Arc::clone(hits));
    }
    let mut hits = Vec::new();
    for node in reader.read_tree(&tree)?.nodes {
        let path = [b"/".as_slice(), &node.name].concat();
        let below = match (node.node_type, node.subtree) {
            (NodeType::Dir, Some(sub)) => Some(by_name(reader, sub, matches, memo)?),
            _ => None,
        };
        if matches(&node.name) {
            hits.push((path.clone(), node));
        }
        for (p, n) in below.iter().flat_map(|b| b.iter()) {
            hits.push(([path.as_slice(), p].concat(), n.clone()));
        }
    }
    let hits = Arc::new(hits);
    memo.insert(tree, Arc::clone(&hits));
    Ok(hits)
}
