//! The server's Redis 7 multi-part AOF directory, read consistently: automatic rewrites are turned
//! off for the duration (and set back, also on failure), a running rewrite is waited for, then the
//! manifest and the files it lists are read, the last incremental file only up to the size it had
//! when the manifest was read. If the manifest changed meanwhile (a rewrite someone started by
//! hand), everything is read again.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lifeline_repo::chunker::ChunkProfile;
use lifeline_repo::tree::{Node, NodeType, Tree};
use lifeline_repo::Writer;

use super::client::Client;
use super::compare::KeyCounts;
use super::error::{Error, Result};
use super::manifest;
use crate::Progress;

/// The setting that makes the server rewrite its AOF by itself.
const AUTO_REWRITE: &str = "auto-aof-rewrite-percentage";

/// Attempts at reading the directory while its manifest keeps changing.
const ATTEMPTS: usize = 5;

/// The captured directory.
pub(super) struct AofCaptured {
    /// The directory's node, its subtree stored.
    pub node: Node,
    pub name: String,
    pub manifest: String,
    pub files: u64,
    pub bytes: u64,
    /// INFO keyspace when the files were measured.
    pub counts: KeyCounts,
    /// No write reached the AOF between the measuring and those counts.
    pub exact: bool,
}

/// Refuse early, before the RDB is fetched, what cannot work.
pub(super) fn check(client: &mut Client, dir: &Path) -> Result<()> {
    let info = client.info(&["persistence"])?;
    if info.get("aof_enabled") != Some("1") {
        return Err(aof_error(
            dir,
            format!(
                "the server at {} has appendonly no, so it writes no AOF: remove aof_dir from the source, or turn appendonly on",
                client.address()
            ),
        ));
    }
    manifest_name(dir).map(|_| ())
}

pub(super) fn capture(
    client: &mut Client,
    dir: &Path,
    writer: &Writer<'_>,
    progress: &dyn Progress,
    wait: Duration,
) -> Result<AofCaptured> {
    let manifest_name = manifest_name(dir)?;
    let old = client.config_get(AUTO_REWRITE)?.ok_or_else(|| {
        aof_error(
            dir,
            format!("the server has no {AUTO_REWRITE} setting: is it Redis 7?"),
        )
    })?;
    client.config_set(AUTO_REWRITE, "0")?;
    let captured = read_consistently(client, dir, &manifest_name, writer, progress, wait);
    let restored = client.config_set(AUTO_REWRITE, &old);
    match (captured, restored) {
        (Ok(c), Ok(())) => Ok(c),
        (Ok(_), Err(e)) => Err(aof_error(
            dir,
            format!(
                "the AOF was read, but {AUTO_REWRITE} could not be set back to {old} ({e}); the server no longer rewrites its AOF by itself: run CONFIG SET {AUTO_REWRITE} {old}"
            ),
        )),
        (Err(e), Ok(())) => Err(e),
        (Err(e), Err(restore)) => {
            tracing::error!(
                "{AUTO_REWRITE} of the server could not be set back to {old} ({restore}): run CONFIG SET {AUTO_REWRITE} {old}"
            );
            Err(e)
        }
    }
}

fn aof_error(dir: &Path, detail: String) -> Error {
    Error::Aof {
        dir: dir.to_path_buf(),
        detail,
    }
}

/// The one `*.manifest` file of the directory.
fn manifest_name(dir: &Path) -> Result<String> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::file(dir, e))?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::file(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".manifest") {
            found.push(name);
        }
    }
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(aof_error(
            dir,
            "holds no *.manifest file: give the server's appenddirname directory (Redis 7's multi-part AOF), e.g. /var/lib/redis/appendonlydir".into(),
        )),
        many => Err(aof_error(
            dir,
            format!("holds several manifests ({}): it must be one server's AOF directory", many.join(", ")),
        )),
    }
}

fn wait_for_rewrite(client: &mut Client, dir: &Path, wait: Duration) -> Result<()> {
    let deadline = Instant::now() + wait;
    loop {
        let info = client.info(&["persistence"])?;
        let busy = info.get("aof_rewrite_in_progress") != Some("0")
            || info.get("aof_rewrite_scheduled") != Some("0");
        if !busy {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(aof_error(
                dir,
                format!(
                    "an AOF rewrite was still running after {} s",
                    wait.as_secs()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn read_consistently(
    client: &mut Client,
    dir: &Path,
    manifest_name: &str,
    writer: &Writer<'_>,
    progress: &dyn Progress,
    wait: Duration,
) -> Result<AofCaptured> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| aof_error(dir, "has no directory name".into()))?;
    let manifest_path = dir.join(manifest_name);
    for attempt in 1..=ATTEMPTS {
        wait_for_rewrite(client, dir, wait)?;
        let text = std::fs::read(&manifest_path).map_err(|e| Error::file(&manifest_path, e))?;
        let listed = manifest::parse(&String::from_utf8_lossy(&text)).map_err(|e| {
            aof_error(
                dir,
                format!("its manifest {manifest_name} is not readable: {e}"),
            )
        })?;
        let last = listed.incr.last().map(|n| dir.join(n));
        let (counts, exact, last_size) = measure(client, last.as_deref())?;
        let mut nodes = Vec::new();
        let (mut files, mut bytes) = (1u64, text.len() as u64);
        let files_to_read = listed.base.iter().chain(listed.incr.iter());
        for file in files_to_read {
            let path = dir.join(file);
            let limit = match (&last, last_size) {
                (Some(l), Some(size)) if *l == path => Some(size),
                _ => None,
            };
            let node = store_file(writer, &path, file, limit, progress)?;
            bytes += node.size.unwrap_or(0);
            files += 1;
            nodes.push(node);
        }
        let again = std::fs::read(&manifest_path).map_err(|e| Error::file(&manifest_path, e))?;
        if again != text {
            tracing::info!(
                "the AOF manifest {} changed while it was read (attempt {attempt} of {ATTEMPTS}); reading again",
                manifest_path.display()
            );
            continue;
        }
        let meta = std::fs::metadata(&manifest_path).map_err(|e| Error::file(&manifest_path, e))?;
        let (content, size) =
            writer.add_stream(text.as_slice(), ChunkProfile::Files, &manifest_path, &|n| {
                progress.bytes(n)
            })?;
        progress.file_done(size);
        nodes.push(file_node(manifest_name, size, content, &meta));
        let tree = writer.add_tree(Tree { nodes })?;
        let dir_meta = std::fs::metadata(dir).map_err(|e| Error::file(dir, e))?;
        let mut node = file_node(&name, 0, Vec::new(), &dir_meta);
        node.node_type = NodeType::Dir;
        node.size = None;
        node.content = None;
        node.subtree = Some(tree);
        return Ok(AofCaptured {
            node,
            name,
            manifest: manifest_name.to_string(),
            files,
            bytes,
            counts,
            exact,
        });
    }
    Err(aof_error(
        dir,
        format!("its manifest changed during each of {ATTEMPTS} readings: is something rewriting the AOF over and over?"),
    ))
}

/// The last incremental file's size and the server's key counts at one moment: exact when the
/// file did not grow while INFO ran and no write waited in the server's AOF buffer.
fn measure(client: &mut Client, last: Option<&Path>) -> Result<(KeyCounts, bool, Option<u64>)> {
    let size = |path: Option<&Path>| -> Result<Option<u64>> {
        path.map(|p| {
            std::fs::metadata(p)
                .map(|m| m.len())
                .map_err(|e| Error::file(p, e))
        })
        .transpose()
    };
    let mut result = None;
    for _ in 0..5 {
        let before = size(last)?;
        let info = client.info(&[])?;
        let after = size(last)?;
        let exact = before == after && info.number("aof_buffer_length") == Some(0);
        result = Some((info.keyspace(), exact, before));
        if exact {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    result.ok_or_else(|| Error::Invalid("the AOF was never measured".into()))
}

fn store_file(
    writer: &Writer<'_>,
    path: &Path,
    name: &str,
    limit: Option<u64>,
    progress: &dyn Progress,
) -> Result<Node> {
    let file = File::open(path).map_err(|e| missing(path, e))?;
    let meta = file.metadata().map_err(|e| Error::file(path, e))?;
    let want = limit.unwrap_or(meta.len());
    let (content, size) = writer.add_stream(file.take(want), ChunkProfile::Files, path, &|n| {
        progress.bytes(n)
    })?;
    if size != want {
        return Err(Error::Aof {
            dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
            detail: format!("{name} ended after {size} of {want} bytes while it was read"),
        });
    }
    progress.file_done(size);
    Ok(file_node(name, size, content, &meta))
}

fn missing(path: &Path, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        Error::Aof {
            dir: path.parent().map(PathBuf::from).unwrap_or_default(),
            detail: format!(
                "{} is listed in the manifest but missing",
                path.file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default()
            ),
        }
    } else {
        Error::file(path, e)
    }
}

fn file_node(
    name: &str,
    size: u64,
    content: Vec<lifeline_repo::tree::ContentRef>,
    meta: &std::fs::Metadata,
) -> Node {
    let mut node = Node::file(
        name.as_bytes().to_vec(),
        size,
        content,
        meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
    );
    node.mode = meta.mode() & 0o7777;
    node.uid = meta.uid();
    node.gid = meta.gid();
    node
}
