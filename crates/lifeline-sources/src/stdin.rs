//! A stream (standard input, a pipe from a dump tool) stored as one file in a snapshot.

use std::io::Read;
use std::path::Path;

use lifeline_repo::chunker::ChunkProfile;
use lifeline_repo::snapshot::Summary;
use lifeline_repo::tree::{Node, Tree};
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
    let node = Node::file(name.as_bytes().to_vec(), size, content, now_nanos());
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

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
