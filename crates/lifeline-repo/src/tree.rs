//! Directory trees as stored in tree blobs (format.md §8).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::Id;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeType {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    Chardev,
    Blockdev,
}

/// A slice of a chunk: a whole CDC chunk (offset 0) or one small file inside a bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentRef(pub Id, pub u64, pub u64);

impl ContentRef {
    pub fn id(&self) -> &Id {
        &self.0
    }
    pub fn offset(&self) -> u64 {
        self.1
    }
    pub fn len(&self) -> u64 {
        self.2
    }
    pub fn is_empty(&self) -> bool {
        self.2 == 0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    #[serde(with = "serde_bytes")]
    pub name: Vec<u8>,
    #[serde(rename = "type")]
    pub node_type: NodeType,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub atime: i64,
    pub ctime: i64,
    pub dev: u64,
    pub inode: u64,
    pub nlink: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Vec<ContentRef>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtree: Option<Id>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_bytes")]
    pub target: Option<Vec<u8>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rdev: Option<u64>,
    /// The file changed while it was read: the stored bytes may mix old and new content. Omitted
    /// when false, so trees of quiet files encode as before.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub changed_while_read: bool,
}

mod opt_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_some(serde_bytes::Bytes::new(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<serde_bytes::ByteBuf>::deserialize(d).map(|o| o.map(|b| b.into_vec()))
    }
}

impl Node {
    /// A regular file that has no file system behind it (a stream, a dump): owned by root, mode 0600,
    /// one link, `mtime` for all three times.
    pub fn file(name: Vec<u8>, size: u64, content: Vec<ContentRef>, mtime: i64) -> Self {
        Node {
            name,
            node_type: NodeType::File,
            mode: 0o600,
            uid: 0,
            gid: 0,
            mtime,
            atime: mtime,
            ctime: mtime,
            dev: 0,
            inode: 0,
            nlink: 1,
            size: Some(size),
            content: Some(content),
            subtree: None,
            target: None,
            rdev: None,
            changed_while_read: false,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    pub nodes: Vec<Node>,
}

impl Tree {
    /// Encode with nodes in name order, so equal directories give equal tree IDs.
    pub fn encode(mut self) -> Vec<u8> {
        self.nodes.sort_by(|a, b| a.name.cmp(&b.name));
        let mut out = Vec::new();
        ciborium::into_writer(&self, &mut out).unwrap_or_else(|e| panic!("CBOR into a Vec: {e}"));
        out
    }

    pub fn decode(bytes: &[u8], id: &Id) -> Result<Self> {
        ciborium::from_reader(bytes)
            .map_err(|e| Error::corrupt(format!("tree {}", id.short()), format!("CBOR: {e}")))
    }

    pub fn find(&self, name: &[u8]) -> Option<&Node> {
        self.nodes
            .binary_search_by(|n| n.name.as_slice().cmp(name))
            .ok()
            .map(|i| &self.nodes[i])
    }
}
