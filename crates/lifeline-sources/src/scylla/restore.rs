//! Loading a cluster snapshot into a cluster: each keyspace's schema recreated (refused when the
//! keyspace exists), every node's SSTables streamed in with `sstableloader` (which sends each row to
//! the nodes that own it, so the target's topology may differ), then every table's rows counted and
//! compared with the records.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use lifeline_repo::snapshot::Snapshot;
use lifeline_repo::tree::{Node, NodeType, Tree};
use lifeline_repo::BlobReader;
use serde::Serialize;

use super::capture::{count_tables, values, RowCount};
use super::error::{Error, Result};
use super::tools::Tools;
use super::{record, KIND, NODES_DIR, SCHEMA_DIR};
use crate::Progress;

/// Where to load.
#[derive(Debug, Clone)]
pub struct RestoreRequest<'a> {
    /// A node of the target cluster (CQL, and sstableloader's contact point).
    pub host: &'a str,
    pub cql_port: u16,
    /// The target's storage port, when it is not sstableloader's default (7000).
    pub storage_port: Option<u16>,
    pub tools: &'a Tools,
}

/// One table, compared.
#[derive(Debug, Clone, Serialize)]
pub struct TableCheck {
    pub table: String,
    pub recorded: RowCount,
    pub found: u64,
    /// Equal to the count after the snapshots (or, when writes ran while they were taken, within
    /// the counts before and after).
    pub ok: bool,
}

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct Restored {
    pub keyspaces: Vec<String>,
    pub files_loaded: u64,
    pub bytes_loaded: u64,
    pub checks: Vec<TableCheck>,
}

impl Restored {
    pub fn matches(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }
}

/// The row counts a snapshot recorded.
pub fn recorded(snapshot: &Snapshot) -> Result<BTreeMap<String, RowCount>> {
    crate::source::recorded_json(snapshot, KIND, record::ROW_COUNTS, "row counts")
        .map_err(Error::Invalid)
}

pub fn restore(
    reader: &BlobReader<'_>,
    snapshot: &Snapshot,
    request: &RestoreRequest<'_>,
    progress: &dyn Progress,
) -> Result<Restored> {
    let rows = recorded(snapshot)?;
    let root = reader.read_tree(&snapshot.tree)?;
    let schema = subtree(reader, &root, SCHEMA_DIR)?;
    let nodes = subtree(reader, &root, NODES_DIR)?;
    let staging = tempfile::Builder::new()
        .prefix("lifeline-scylla-")
        .tempdir()
        .map_err(|e| Error::Io("creating a staging directory".into(), e))?;

    // Refused before anything is created: a keyspace that exists is somebody's data.
    let mut keyspaces = Vec::new();
    for file in &schema.nodes {
        let name = String::from_utf8_lossy(&file.name);
        let ks = name.strip_suffix(".cql").unwrap_or(&name).to_string();
        let exists = values(&request.tools.cql(
            request.host,
            request.cql_port,
            &format!(
                "SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name = '{ks}'"
            ),
        )?);
        if !exists.is_empty() {
            return Err(Error::Invalid(format!(
                "keyspace {ks} already exists on {}: restore into a cluster without it (or drop it first)",
                request.host
            )));
        }
        keyspaces.push(ks);
    }
    for file in &schema.nodes {
        let path = staging
            .path()
            .join(String::from_utf8_lossy(&file.name).as_ref());
        write_file(reader, file, &path, progress)?;
        request
            .tools
            .cql_file(request.host, request.cql_port, &path)?;
    }

    let (mut files_loaded, mut bytes_loaded) = (0, 0);
    for node in &nodes.nodes {
        let node_tree = reader.read_tree(&subtree_id(node)?)?;
        for ks in node_tree
            .nodes
            .iter()
            .filter(|n| n.node_type == NodeType::Dir)
        {
            let ks_name = String::from_utf8_lossy(&ks.name).into_owned();
            for table in reader.read_tree(&subtree_id(ks)?)?.nodes {
                let table_name = String::from_utf8_lossy(&table.name).into_owned();
                // sstableloader reads the keyspace and table from the last two path components.
                let dir = staging
                    .path()
                    .join(String::from_utf8_lossy(&node.name).as_ref())
                    .join(&ks_name)
                    .join(&table_name);
                std::fs::create_dir_all(&dir)
                    .map_err(|e| Error::Io(format!("creating {}", dir.display()), e))?;
                let mut any = false;
                for file in reader.read_tree(&subtree_id(&table)?)?.nodes {
                    let name = String::from_utf8_lossy(&file.name).into_owned();
                    // Cassandra's snapshot manifest and schema are not SSTable components.
                    if name == "manifest.json" || name == "schema.cql" {
                        continue;
                    }
                    bytes_loaded += write_file(reader, &file, &dir.join(&name), progress)?;
                    files_loaded += 1;
                    any = true;
                }
                if any {
                    request.tools.load(
                        request.host,
                        request.cql_port,
                        request.storage_port,
                        &dir,
                    )?;
                }
            }
        }
    }

    let tables: Vec<String> = rows.keys().cloned().collect();
    // ALL asks every replica; a target with fewer nodes than the keyspace's replication factor
    // cannot answer at ALL, and holds every row on the nodes it has, so ONE counts them there.
    let found = match count_tables(
        request.tools,
        request.host,
        request.cql_port,
        &tables,
        "ALL",
    ) {
        Err(Error::Tool { output, .. }) if output.contains("Cannot achieve consistency level") => {
            count_tables(
                request.tools,
                request.host,
                request.cql_port,
                &tables,
                "ONE",
            )?
        }
        other => other?,
    };
    let checks = rows
        .iter()
        .map(|(table, recorded)| {
            let n = found.get(table).copied().unwrap_or(0);
            let (lo, hi) = (
                recorded.before.min(recorded.after),
                recorded.before.max(recorded.after),
            );
            TableCheck {
                table: table.clone(),
                recorded: *recorded,
                found: n,
                ok: (lo..=hi).contains(&n),
            }
        })
        .collect();
    Ok(Restored {
        keyspaces,
        files_loaded,
        bytes_loaded,
        checks,
    })
}

fn subtree(reader: &BlobReader<'_>, tree: &Tree, name: &str) -> Result<Tree> {
    let node = tree
        .find(name.as_bytes())
        .ok_or_else(|| Error::Invalid(format!("the snapshot has no {name}/")))?;
    Ok(reader.read_tree(&subtree_id(node)?)?)
}

fn subtree_id(node: &Node) -> Result<lifeline_repo::Id> {
    node.subtree.ok_or_else(|| {
        Error::Invalid(format!(
            "{} is not a directory in the snapshot",
            String::from_utf8_lossy(&node.name)
        ))
    })
}

/// Write one file of the snapshot to `path`; returns its size.
fn write_file(
    reader: &BlobReader<'_>,
    node: &Node,
    path: &Path,
    progress: &dyn Progress,
) -> Result<u64> {
    let mut out = std::fs::File::create(path)
        .map_err(|e| Error::Io(format!("creating {}", path.display()), e))?;
    let mut written = 0u64;
    for part in node.content.iter().flatten() {
        let slice = reader.read_part(part)?;
        out.write_all(&slice)
            .map_err(|e| Error::Io(format!("writing {}", path.display()), e))?;
        written += slice.len() as u64;
        progress.bytes(slice.len() as u64);
    }
    progress.file_done(written);
    Ok(written)
}
