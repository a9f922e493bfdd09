use std::fs::Metadata;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use lifeline_repo::tree::{Node, NodeType};

fn nanos(secs: i64, nsec: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}

pub fn node_type(meta: &Metadata) -> NodeType {
    let ft = meta.file_type();
    if ft.is_dir() {
        NodeType::Dir
    } else if ft.is_symlink() {
        NodeType::Symlink
    } else if ft.is_fifo() {
        NodeType::Fifo
    } else if ft.is_socket() {
        NodeType::Socket
    } else if ft.is_char_device() {
        NodeType::Chardev
    } else if ft.is_block_device() {
        NodeType::Blockdev
    } else {
        NodeType::File
    }
}

/// A node with the metadata every kind of entry carries; content fields are left for the caller.
pub fn node_from(name: Vec<u8>, meta: &Metadata) -> Node {
    let node_type = node_type(meta);
    Node {
        name,
        node_type,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        mtime: nanos(meta.mtime(), meta.mtime_nsec()),
        atime: nanos(meta.atime(), meta.atime_nsec()),
        ctime: nanos(meta.ctime(), meta.ctime_nsec()),
        dev: meta.dev(),
        inode: meta.ino(),
        nlink: meta.nlink(),
        size: None,
        content: None,
        subtree: None,
        target: None,
        rdev: matches!(node_type, NodeType::Chardev | NodeType::Blockdev).then(|| meta.rdev()),
    }
}

/// A file is unchanged when size, mtime, ctime and inode all match: then its chunks are reused without
/// reading it.
pub fn unchanged(old: &Node, new: &Node) -> bool {
    old.node_type == NodeType::File
        && old.content.is_some()
        && old.size == new.size
        && old.mtime == new.mtime
        && old.ctime == new.ctime
        && old.inode == new.inode
}
