//! What changed between two snapshots: paths added, removed, changed in content or type, and (on
//! request) in metadata. Subtrees with the same ID are equal and never read.

use serde::Serialize;

use crate::error::Result;
use crate::reader::BlobReader;
use crate::tree::{Node, NodeType};
use crate::Id;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// `+`
    Added,
    /// `-`
    Removed,
    /// `M`: a file's content or a link's target.
    Modified,
    /// `T`: a file became a directory, a link, …
    Type,
    /// `U`: mode, owner or times only.
    Metadata,
}

impl Change {
    pub fn symbol(self) -> char {
        match self {
            Change::Added => '+',
            Change::Removed => '-',
            Change::Modified => 'M',
            Change::Type => 'T',
            Change::Metadata => 'U',
        }
    }
}

/// Differences between the trees `a` and `b`, in path order. `metadata` also reports entries whose
/// content is the same but whose mode, owner or modification time differ.
pub fn diff(
    reader: &BlobReader<'_>,
    a: Id,
    b: Id,
    metadata: bool,
) -> Result<Vec<(Vec<u8>, Change)>> {
    let mut out = Vec::new();
    compare(reader, Some(a), Some(b), b"", metadata, &mut out)?;
    Ok(out)
}

fn compare(
    reader: &BlobReader<'_>,
    a: Option<Id>,
    b: Option<Id>,
    prefix: &[u8],
    metadata: bool,
    out: &mut Vec<(Vec<u8>, Change)>,
) -> Result<()> {
    if a == b {
        return Ok(());
    }
    let read = |t: Option<Id>| -> Result<Vec<Node>> {
        Ok(match t {
            Some(id) => reader.read_tree(&id)?.nodes,
            None => Vec::new(),
        })
    };
    let (left, right) = (read(a)?, read(b)?);
    let (mut i, mut j) = (0, 0);
    while i < left.len() || j < right.len() {
        let order = match (left.get(i), right.get(j)) {
            (Some(x), Some(y)) => x.name.cmp(&y.name),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        match order {
            std::cmp::Ordering::Less => {
                everything(reader, &left[i], prefix, Change::Removed, out)?;
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                everything(reader, &right[j], prefix, Change::Added, out)?;
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                let (x, y) = (&left[i], &right[j]);
                let path = join(prefix, &x.name);
                if x.node_type != y.node_type {
                    out.push((path, Change::Type));
                } else if x.node_type == NodeType::Dir {
                    if metadata && meta_differs(x, y) {
                        out.push((path.clone(), Change::Metadata));
                    }
                    compare(reader, x.subtree, y.subtree, &path, metadata, out)?;
                } else if !same_content(reader, x, y)? || x.target != y.target || x.rdev != y.rdev {
                    out.push((path, Change::Modified));
                } else if metadata && meta_differs(x, y) {
                    out.push((path, Change::Metadata));
                }
                i += 1;
                j += 1;
            }
        }
    }
    Ok(())
}

/// Whether two files hold the same bytes. Files of the bundle size and up are cut by content-defined
/// chunking, so equal bytes give equal chunk lists; smaller files are slices of per-directory bundles,
/// which differ whenever a neighbour changed, so their bytes are compared.
fn same_content(reader: &BlobReader<'_>, x: &Node, y: &Node) -> Result<bool> {
    if x.content == y.content {
        return Ok(true);
    }
    if x.size != y.size || x.size.unwrap_or(0) >= crate::BUNDLE_FILE_LIMIT {
        return Ok(false);
    }
    Ok(bytes_of(reader, x)? == bytes_of(reader, y)?)
}

fn bytes_of(reader: &BlobReader<'_>, node: &Node) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for part in node.content.iter().flatten() {
        let chunk = reader.read_blob(part.id())?;
        let start = usize::try_from(part.offset()).unwrap_or(usize::MAX);
        let end = start.saturating_add(usize::try_from(part.len()).unwrap_or(usize::MAX));
        out.extend_from_slice(chunk.get(start..end).ok_or_else(|| {
            crate::Error::corrupt(format!("blob {}", part.id()), "shorter than the file needs")
        })?);
    }
    Ok(out)
}

fn meta_differs(x: &Node, y: &Node) -> bool {
    (x.mode, x.uid, x.gid, x.mtime) != (y.mode, y.uid, y.gid, y.mtime)
}

fn join(prefix: &[u8], name: &[u8]) -> Vec<u8> {
    let mut path = prefix.to_vec();
    path.push(b'/');
    path.extend_from_slice(name);
    path
}

/// A node and, for a directory, everything below it, all with the same change.
fn everything(
    reader: &BlobReader<'_>,
    node: &Node,
    prefix: &[u8],
    change: Change,
    out: &mut Vec<(Vec<u8>, Change)>,
) -> Result<()> {
    let path = join(prefix, &node.name);
    out.push((path.clone(), change));
    if let (NodeType::Dir, Some(sub)) = (node.node_type, node.subtree) {
        crate::walk::walk(reader, sub, &path, &mut |p, _| {
            out.push((p.to_vec(), change));
            Ok(())
        })?;
    }
    Ok(())
}
