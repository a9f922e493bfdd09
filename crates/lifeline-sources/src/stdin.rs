//! A stream (standard input, a pipe from a dump tool) stored as one file in a snapshot.

use std::io::Read;
use std::path::Path;

use lifeline_repo::chunker::ChunkProfile;
use lifeline_repo::snapshot::Summary;
use lifeline_repo::tree::{Node, NodeType, Tree};
use lifeline_repo::{Error, Id, Result, Writer};

use crate::Progress;

/// Store `input` as the file `name` at the snapshot's root. Returns the root tree and the summary.
pub fn backup(
    writer: &Writer<'_>,
    name: &str,
    input: impl Read + Send,
    progress: &dyn Progress,
) -> Result<(Id, Summary)> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(Error::Invalid(format!(
            "--name {name:?} is not a valid file name: give a plain name such as db.dump"
        )));
    }
    let (content, size) =
        writer.add_stream(input, ChunkProfile::Stream, Path::new(name), &|n| {
            progress.bytes(n)
        })?;
    progress.file_done(size);
    let now = chrono_now_nanos();
    let node = Node {
        name: name.as_bytes().to_vec(),
        node_type: NodeType::File,
        mode: 0o600,
        uid: 0,
        gid: 0,
        mtime: now,
        atime: now,
        ctime: now,
        dev: 0,
        inode: 0,
        nlink: 1,
        size: Some(size),
        content: Some(content),
        subtree: None,
        target: None,
        rdev: None,
    };
    let tree = writer.add_tree(Tree { nodes: vec![node] })?;
    Ok((
        tree,
        Summary {
            files: 1,
            bytes: size,
            files_new: 1,
            ..Summary::default()
        },
    ))
}

fn chrono_now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
