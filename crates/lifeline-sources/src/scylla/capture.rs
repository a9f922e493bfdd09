//! A cluster capture: row counts, `nodetool snapshot` on every node with one tag, the snapshots'
//! files stored per node, the schema and tokens, row counts again, `nodetool clearsnapshot`.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use lifeline_repo::chunker::ChunkProfile;
use lifeline_repo::snapshot::{Snapshot, Summary};
use lifeline_repo::tree::{Node as TreeNode, NodeType, Tree};
use lifeline_repo::{Id, Writer};
use serde::{Deserialize, Serialize};

use super::error::{Error, Result};
use super::tools::Tools;
use super::{record, KIND, NODES_DIR, SCHEMA_DIR};
use crate::Progress;

/// One node of the cluster, as the plan names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// The node's CQL address.
    pub host: String,
    /// Where `nodetool` reaches it: `HOST:PORT` (Cassandra's JMX, Scylla's REST API).
    pub nodetool: String,
    /// Its data directory on this machine (`data_file_directories`).
    pub data_dir: PathBuf,
}

/// What to capture.
#[derive(Debug, Clone)]
pub struct CaptureRequest<'a> {
    pub nodes: &'a [Node],
    pub cql_port: u16,
    pub keyspaces: &'a [String],
    pub tools: &'a Tools,
}

/// Rows of one table, counted before and after the snapshots were taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowCount {
    pub before: u64,
    pub after: u64,
}

/// What was stored of one node.
#[derive(Debug, Clone, Serialize)]
struct NodeRecord {
    host: String,
    nodetool: String,
    files: u64,
    bytes: u64,
}

/// Snapshot every node and store the result; the snapshot is returned unsaved.
pub fn capture(
    writer: &Writer<'_>,
    request: &CaptureRequest<'_>,
    progress: &dyn Progress,
) -> Result<Snapshot> {
    check_request(request)?;
    let tools = request.tools;
    let first = &request.nodes[0];
    let version = values(&tools.cql(
        &first.host,
        request.cql_port,
        "SELECT release_version FROM system.local",
    )?)
    .into_iter()
    .next()
    .unwrap_or_default();
    let tables = tables(request)?;
    let before = counts(request, &tables)?;

    let tag = format!(
        "lifeline-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
    );
    let mut taken: Vec<&Node> = Vec::new();
    for node in request.nodes {
        let mut args = vec!["snapshot", "-t", &tag, "--"];
        args.extend(request.keyspaces.iter().map(String::as_str));
        if let Err(e) = tools.nodetool(&node.nodetool, &args) {
            clear(tools, &taken, &tag);
            return Err(Error::Invalid(format!(
                "node {} ({}) could not be snapshotted: {e}; the snapshots of the other nodes were cleared and no recovery point was saved",
                node.host, node.nodetool
            )));
        }
        taken.push(node);
    }
    // Everything below happens with the snapshots in place; they are cleared whatever happens.
    let stored = counts(request, &tables)
        .and_then(|after| store(writer, request, &tag, &tables, progress).map(|s| (after, s)));
    clear(tools, &taken, &tag);
    let (after, (tree, summary, nodes)) = stored?;

    let mut snapshot = Snapshot::new(
        KIND,
        request.nodes.iter().map(|n| n.host.clone()).collect(),
        tree,
    );
    snapshot.summary = summary;
    let rows: BTreeMap<String, RowCount> = tables
        .iter()
        .map(|t| {
            (
                t.clone(),
                RowCount {
                    before: before.get(t).copied().unwrap_or(0),
                    after: after.get(t).copied().unwrap_or(0),
                },
            )
        })
        .collect();
    let src = &mut snapshot.source;
    src.insert(record::TAG.into(), tag);
    src.insert(record::KEYSPACES.into(), request.keyspaces.join(","));
    src.insert(record::SERVER_VERSION.into(), version);
    src.insert(record::NODES.into(), to_json(&nodes)?);
    src.insert(record::ROW_COUNTS.into(), to_json(&rows)?);
    Ok(snapshot)
}

fn check_request(request: &CaptureRequest<'_>) -> Result<()> {
    if request.nodes.is_empty() {
        return Err(Error::Invalid(
            "no nodes: name every node of the cluster (host, nodetool, data_dir)".into(),
        ));
    }
    if request.keyspaces.is_empty() {
        return Err(Error::Invalid(
            "no keyspaces: name the keyspaces to capture".into(),
        ));
    }
    for ks in request.keyspaces {
        if ks.is_empty() || !ks.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(Error::Invalid(format!(
                "{ks:?} is not a keyspace name (letters, digits and _)"
            )));
        }
    }
    Ok(())
}

/// `keyspace.table` of every table of the keyspaces, sorted.
fn tables(request: &CaptureRequest<'_>) -> Result<Vec<String>> {
    let first = &request.nodes[0];
    let mut out = Vec::new();
    for ks in request.keyspaces {
        let found = values(&request.tools.cql(
            &first.host,
            request.cql_port,
            &format!("SELECT table_name FROM system_schema.tables WHERE keyspace_name = '{ks}'"),
        )?);
        if found.is_empty() {
            let exists = values(&request.tools.cql(
                &first.host,
                request.cql_port,
                &format!(
                    "SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name = '{ks}'"
                ),
            )?);
            if exists.is_empty() {
                return Err(Error::Invalid(format!(
                    "keyspace {ks} does not exist on {}",
                    first.host
                )));
            }
        }
        out.extend(found.into_iter().map(|t| format!("{ks}.{t}")));
    }
    out.sort();
    Ok(out)
}

/// `SELECT COUNT(*)` of every table at consistency ALL, so every replica is asked.
pub fn counts(request: &CaptureRequest<'_>, tables: &[String]) -> Result<BTreeMap<String, u64>> {
    count_tables(
        request.tools,
        &request.nodes[0].host,
        request.cql_port,
        tables,
        "ALL",
    )
}

/// `SELECT COUNT(*)` of every table at `consistency` (`ALL`, `ONE`).
pub fn count_tables(
    tools: &Tools,
    host: &str,
    port: u16,
    tables: &[String],
    consistency: &str,
) -> Result<BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    for t in tables {
        let text = tools.cql(
            host,
            port,
            &format!("CONSISTENCY {consistency}; SELECT COUNT(*) FROM {t};"),
        )?;
        let n = values(&text)
            .into_iter()
            .find_map(|v| v.parse::<u64>().ok())
            .ok_or_else(|| Error::Invalid(format!("cqlsh printed no count for {t}: {text}")))?;
        out.insert(t.clone(), n);
    }
    Ok(out)
}

/// The values of a cqlsh result table: the lines between the dashes under the header and the blank
/// line before `(N rows)`.
pub fn values(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        let t = line.trim();
        if !inside {
            inside = !t.is_empty() && t.chars().all(|c| c == '-' || c == '+');
            continue;
        }
        if t.is_empty() || t.starts_with('(') {
            inside = false;
            continue;
        }
        out.push(t.to_string());
    }
    out
}

fn clear(tools: &Tools, nodes: &[&Node], tag: &str) {
    for node in nodes {
        if let Err(e) = tools.nodetool(&node.nodetool, &["clearsnapshot", "-t", tag, "--"]) {
            tracing::warn!("node {}: clearing snapshot {tag}: {e}", node.host);
        }
    }
}

/// The tree: `schema/<keyspace>.cql`, `nodes/<n>-<host>/{manifest.json, tokens.txt, <keyspace>/<table>/…}`.
fn store(
    writer: &Writer<'_>,
    request: &CaptureRequest<'_>,
    tag: &str,
    tables: &[String],
    progress: &dyn Progress,
) -> Result<(Id, Summary, Vec<NodeRecord>)> {
    let mut summary = Summary::default();
    let first = &request.nodes[0];
    let mut schema = Vec::new();
    for ks in request.keyspaces {
        let text = request.tools.cql(
            &first.host,
            request.cql_port,
            &format!("DESCRIBE KEYSPACE {ks}"),
        )?;
        schema.push(small_file(
            writer,
            &format!("{ks}.cql"),
            text.as_bytes(),
            &mut summary,
        )?);
    }
    let mut node_dirs = Vec::new();
    let mut records = Vec::new();
    for (i, node) in request.nodes.iter().enumerate() {
        let before = (summary.files, summary.bytes);
        let mut entries = Vec::new();
        for ks in request.keyspaces {
            let mut table_dirs = Vec::new();
            for t in tables
                .iter()
                .filter_map(|t| t.strip_prefix(&format!("{ks}.")))
            {
                let Some(dir) = snapshot_dir(&node.data_dir, ks, t, tag)? else {
                    continue;
                };
                let files = store_dir(writer, &dir, &mut summary, progress)?;
                table_dirs.push(dir_node(t, writer.add_tree(Tree { nodes: files })?));
            }
            entries.push(dir_node(ks, writer.add_tree(Tree { nodes: table_dirs })?));
        }
        let tokens = request
            .tools
            .nodetool(&node.nodetool, &["info", "--tokens"])?;
        entries.push(small_file(
            writer,
            "tokens.txt",
            tokens.as_bytes(),
            &mut summary,
        )?);
        let record = NodeRecord {
            host: node.host.clone(),
            nodetool: node.nodetool.clone(),
            files: summary.files - before.0,
            bytes: summary.bytes - before.1,
        };
        let manifest =
            serde_json::json!({ "tag": tag, "node": &record, "keyspaces": request.keyspaces });
        entries.push(small_file(
            writer,
            "manifest.json",
            serde_json::to_string_pretty(&manifest)
                .unwrap_or_default()
                .as_bytes(),
            &mut summary,
        )?);
        records.push(record);
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        let name = format!("{}-{}", i + 1, node.host);
        node_dirs.push(dir_node(&name, writer.add_tree(Tree { nodes: entries })?));
    }
    let root = Tree {
        nodes: vec![
            dir_node(NODES_DIR, writer.add_tree(Tree { nodes: node_dirs })?),
            dir_node(SCHEMA_DIR, writer.add_tree(Tree { nodes: schema })?),
        ],
    };
    Ok((writer.add_tree(root)?, summary, records))
}

/// `DATA/<ks>/<table>-<id>/snapshots/<tag>` on this machine; `None` when the node holds no data of
/// the table (a table created after the node's last flush, or of another data directory).
fn snapshot_dir(data_dir: &Path, ks: &str, table: &str, tag: &str) -> Result<Option<PathBuf>> {
    let ks_dir = data_dir.join(ks);
    let entries = fs::read_dir(&ks_dir).map_err(|e| {
        Error::Io(
            format!(
                "reading {} (is data_dir this node's data directory?)",
                ks_dir.display()
            ),
            e,
        )
    })?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::Io(format!("reading {}", ks_dir.display()), e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(id) = name.strip_prefix(&format!("{table}-")) else {
            continue;
        };
        // Table directories end in the table's id: 32 hex digits.
        if id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()) {
            let dir = entry.path().join("snapshots").join(tag);
            if dir.is_dir() {
                return Ok(Some(dir));
            }
        }
    }
    Ok(None)
}

/// Every file of a snapshot directory (SSTable components, Cassandra's manifest and schema).
fn store_dir(
    writer: &Writer<'_>,
    dir: &Path,
    summary: &mut Summary,
    progress: &dyn Progress,
) -> Result<Vec<TreeNode>> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map_err(|e| Error::Io(format!("reading {}", dir.display()), e))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut out = Vec::new();
    for name in names {
        let path = dir.join(&name);
        let file =
            File::open(&path).map_err(|e| Error::Io(format!("opening {}", path.display()), e))?;
        let meta = file
            .metadata()
            .map_err(|e| Error::Io(format!("reading {}", path.display()), e))?;
        let (content, size) =
            writer.add_stream(&file, ChunkProfile::Files, &path, &|n| progress.bytes(n))?;
        progress.file_done(size);
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as i64);
        summary.files += 1;
        summary.bytes += size;
        out.push(TreeNode::file(name.into_bytes(), size, content, mtime));
    }
    Ok(out)
}

fn small_file(
    writer: &Writer<'_>,
    name: &str,
    bytes: &[u8],
    summary: &mut Summary,
) -> Result<TreeNode> {
    let (content, size) =
        writer.add_stream(bytes, ChunkProfile::Files, Path::new(name), &|_| {})?;
    summary.files += 1;
    summary.bytes += size;
    Ok(TreeNode::file(
        name.as_bytes().to_vec(),
        size,
        content,
        now_nanos(),
    ))
}

fn dir_node(name: &str, subtree: Id) -> TreeNode {
    let mut node = TreeNode::file(name.as_bytes().to_vec(), 0, Vec::new(), now_nanos());
    node.node_type = NodeType::Dir;
    node.mode = 0o700;
    node.size = None;
    node.content = None;
    node.subtree = Some(subtree);
    node
}

fn now_nanos() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
}

fn to_json<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::Invalid(format!("recording: {e}")))
}

#[cfg(test)]
mod tests {
    use super::values;

    #[test]
    fn cqlsh_tables_are_read_between_the_dashes_and_the_row_count() {
        let out = "\n count\n-------\n   123\n\n(1 rows)\n\nWarnings :\nAggregation query used without partition key\n";
        assert_eq!(values(out), ["123"]);
        let out = "\n table_name\n------------\n   messages\n   sessions\n\n(2 rows)\n";
        assert_eq!(values(out), ["messages", "sessions"]);
        assert!(values("\n table_name\n------------\n\n(0 rows)\n").is_empty());
    }
}
