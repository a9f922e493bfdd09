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

/// A node with the metadata every kind of entry carries (files, config); content fields are left
/// for the caller.
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
        changed_while_read: false,
    }
}

/// A file is unchanged when size, mtime, ctime and inode all match: then its chunks are reused without
/// reading it. A copy taken while the file changed is never reused: it may be inconsistent.
pub fn unchanged(old: &Node, new: &Node) -> bool {
    old.node_type == NodeType::File
        && old.content.is_some()
        && !old.changed_while_read
        && old.size == new.size
        && old.mtime == new.mtime
        && old.ctime == new.ctime
        && old.inode == new.inode
}

/// How a file changed between the stat before reading it (`before`) and the stat of the open handle
/// after (`after`), given the bytes actually read; `None` when it held still.
pub fn change_while_read(before: &Metadata, after: &Metadata, read: u64) -> Option<String> {
    let mut what = Vec::new();
    if after.ino() != before.ino() {
        what.push("replaced by another file".to_string());
    }
    if read != before.len() || after.len() != before.len() {
        what.push(format!(
            "size {} bytes when listed, {read} read, {} after",
            before.len(),
            after.len()
        ));
    }
    if nanos(after.mtime(), after.mtime_nsec()) != nanos(before.mtime(), before.mtime_nsec()) {
        what.push("modified".to_string());
    } else if nanos(after.ctime(), after.ctime_nsec()) != nanos(before.ctime(), before.ctime_nsec())
    {
        what.push("status changed".to_string());
    }
    (!what.is_empty()).then(|| what.join(", "))
}
