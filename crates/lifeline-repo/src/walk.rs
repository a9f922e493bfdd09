//! Navigating snapshot trees by path.

use crate::error::{Error, Result};
use crate::reader::BlobReader;
use crate::tree::{Node, NodeType};
use crate::Id;

/// The components of a snapshot path (`/a/b` → `a`, `b`).
pub fn components(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
}

/// The node at `path` below the tree `root`, or `None` when there is no such entry. The root itself
/// has no node; `path` must name something inside it.
pub fn lookup(reader: &BlobReader<'_>, root: Id, path: &[u8]) -> Result<Option<Node>> {
    let mut tree = reader.read_tree(&root)?;
    let mut parts = components(path).peekable();
    while let Some(name) = parts.next() {
        let Some(node) = tree.find(name).cloned() else {
            return Ok(None);
        };
        if parts.peek().is_none() {
            return Ok(Some(node));
        }
        match (node.node_type, node.subtree) {
            (NodeType::Dir, Some(sub)) => tree = reader.read_tree(&sub)?,
            _ => return Ok(None),
        }
    }
    Ok(None)
}

/// Visit every node below `tree` depth-first in name order, with its full path (`prefix/name`).
pub fn walk(
    reader: &BlobReader<'_>,
    tree: Id,
    prefix: &[u8],
    visit: &mut dyn FnMut(&[u8], &Node) -> Result<()>,
) -> Result<()> {
    for node in reader.read_tree(&tree)?.nodes {
        let mut path = prefix.to_vec();
        path.push(b'/');
        path.extend_from_slice(&node.name);
        visit(&path, &node)?;
        if node.node_type == NodeType::Dir {
            let sub = node.subtree.ok_or_else(|| {
                Error::corrupt(format!("tree {tree}"), "directory without subtree")
            })?;
            walk(reader, sub, &path, visit)?;
        }
    }
    Ok(())
}
