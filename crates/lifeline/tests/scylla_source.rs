//! The scylla source (issue 14) on the real binary against Apache Cassandra 5.0 (ScyllaDB speaks the
//! same CQL and nodetool, with the same snapshot layout; no registry here serves Scylla): a plan
//! source of kind scylla run by `lifeline run`, loaded by `lifeline scylla restore` into an empty
//! cluster with equal row counts, a second backup that stores little beyond the new SSTables, writes
//! during the backup, and a node that does not answer.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::cassandra::Cluster;
use common::*;
use serde_json::Value;

const KEYSPACE: &str = "therapeutic_ai";
const TABLE: &str = "therapeutic_ai.messages";

struct Planned {
    repo: Repo,
    plan: PathBuf,
}

impl Planned {
    fn new(cql_port: u16, nodes_toml: &str) -> Planned {
        let repo = Repo::init();
        let plan = repo.plan(&format!(
            "[tiers]\ntier1 = {{ rto = \"15m\", rpo = \"5m\" }}\n\n\
             [classes.phi]\ntier = \"tier1\"\n\n\
             [[sources]]\nname = \"chat\"\nkind = \"scylla\"\nclass = \"phi\"\n\
             keyspaces = [\"{KEYSPACE}\"]\ncql_port = {cql_port}\nnodes = {nodes_toml}\n"
        ));
        Planned { repo, plan }
    }

    fn lifeline(&self, cluster: &Cluster, args: &[&str]) -> Out {
        let mut c = self.repo.sandbox.lifeline();
        c.arg("--config").arg(&self.plan).args(args);
        cluster.env(&mut c);
        run(&mut c, None)
    }

    /// `scylla restore latest --json` into node 1 of `target`.
    fn load_into(&self, target: &Cluster) -> Out {
        let (port, storage) = (target.cql_port.to_string(), target.storage_port.to_string());
        self.lifeline(
            target,
            &[
                "--json",
                "scylla",
                "restore",
                "latest",
                "--node",
                "127.0.0.1",
                "--cql-port",
                &port,
                "--storage-port",
                &storage,
            ],
        )
    }

    /// The snapshots of the source, oldest first.
    fn snapshots(&self) -> Vec<Value> {
        let out = self
            .repo
            .run(["snapshots", "--json", "--tag", "source=chat"]);
        out.assert_success();
        out.json().as_array().unwrap().clone()
    }
}

fn rows(snapshot: &Value) -> Value {
    serde_json::from_str(snapshot["source"]["row_counts"].as_str().unwrap()).unwrap()
}

/// `INSERT`s of messages `from..to` (a session per 25 messages), as one cqlsh script.
fn inserts(from: u32, to: u32) -> String {
    (from..to)
        .map(|i| {
            format!(
                "INSERT INTO {TABLE} (session, seq, body) VALUES ('s{}', {i}, 'message {i}: how are you feeling today?');\n",
                i / 25
            )
        })
        .collect()
}

fn create_schema(cluster: &Cluster) {
    cluster.cql(&format!(
        "CREATE KEYSPACE {KEYSPACE} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}};\n\
         CREATE TABLE {TABLE} (session text, seq int, body text, PRIMARY KEY (session, seq));\n"
    ));
}

#[test]
fn a_cluster_backup_loads_into_an_empty_cluster_and_a_second_stores_only_new_sstables() {
    let source = Cluster::start(1);
    create_schema(&source);
    source.cql(&inserts(0, 500));
    let planned = Planned::new(source.cql_port, &source.nodes_toml());

    let out = planned.lifeline(&source, &["run", "chat", "--json"]);
    out.assert_success();
    let first = planned.snapshots().pop().unwrap();
    assert_eq!(first["kind"], "scylla", "{first:#}");
    assert_eq!(rows(&first)[TABLE]["before"], 500, "{first:#}");
    assert_eq!(rows(&first)[TABLE]["after"], 500, "{first:#}");
    // The node's snapshot is cleared once stored.
    let listed = source.nodetool(1, &["listsnapshots"]);
    assert!(!listed.contains("lifeline-"), "{listed}");
    let tree = planned.repo.run(["ls", "latest"]);
    tree.assert_output_contains("/schema/therapeutic_ai.cql");
    tree.assert_output_contains("/nodes/1-127.0.0.1/therapeutic_ai/messages/");
    tree.assert_output_contains("-big-Data.db");
    tree.assert_output_contains("/nodes/1-127.0.0.1/tokens.txt");

    // More rows, flushed to a new SSTable; inserts keep running while the second backup runs.
    source.cql(&inserts(500, 700));
    source.nodetool(1, &["flush", KEYSPACE]);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = Arc::clone(&stop);
        let (cqlsh, port) = (
            common::cassandra::tools_env()["LIFELINE_CQLSH"].clone(),
            source.cql_port,
        );
        std::thread::spawn(move || {
            let mut i = 10_000;
            while !stop.load(Ordering::Relaxed) {
                let statement = format!(
                    "INSERT INTO {TABLE} (session, seq, body) VALUES ('live', {i}, 'during the backup');"
                );
                let status = std::process::Command::new(&cqlsh)
                    .args(["127.0.0.1", &port.to_string(), "-e", &statement])
                    .output()
                    .unwrap()
                    .status;
                assert!(status.success());
                i += 1;
            }
        })
    };
    let bytes_before = planned.repo.data_bytes();
    let out = planned.lifeline(&source, &["run", "chat", "--json"]);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    out.assert_success();
    let second = planned.snapshots().pop().unwrap();
    let counted = &rows(&second)[TABLE];
    assert!(counted["before"].as_u64().unwrap() >= 700, "{second:#}");
    // The first SSTable was not stored again: the repository grew by less than the snapshot holds.
    let added = planned.repo.data_bytes() - bytes_before;
    let holds = second["summary"]["bytes"].as_u64().unwrap();
    assert!(
        added * 2 < holds,
        "the second backup added {added} bytes for a snapshot of {holds}"
    );

    let target = Cluster::start(1);
    let out = planned.load_into(&target);
    out.assert_success();
    let report = out.json();
    assert_eq!(report["matches"], true, "{report:#}");
    let found = target.count(TABLE, "ALL");
    assert!(
        (counted["before"].as_u64().unwrap()..=counted["after"].as_u64().unwrap()).contains(&found),
        "{found} rows restored; recorded {counted}"
    );
    // Loading it again is refused: the keyspace exists now.
    let out = planned.load_into(&target);
    out.assert_failure();
    out.assert_output_contains("already exists");
}

/// A node whose nodetool does not answer (down) fails the backup with its name; the snapshots the
/// other nodes took are cleared and no recovery point is saved.
#[test]
fn a_node_that_does_not_answer_fails_the_backup_and_clears_the_others() {
    let source = Cluster::start(1);
    create_schema(&source);
    source.cql(&inserts(0, 50));
    let dead = common::redis::free_port();
    let nodes = source.nodes_toml().replace(
        "]",
        &format!(
            ", {{ host = \"127.0.0.2\", nodetool = \"127.0.0.1:{dead}\", data_dir = {:?} }}]",
            source.path().join("node2/data").display().to_string()
        ),
    );
    let planned = Planned::new(source.cql_port, &nodes);
    let out = planned.lifeline(&source, &["run", "chat"]);
    out.assert_failure();
    out.assert_output_contains("node 127.0.0.2");
    out.assert_output_contains("no recovery point was saved");
    let listed = source.nodetool(1, &["listsnapshots"]);
    assert!(!listed.contains("lifeline-"), "{listed}");
    assert!(planned.snapshots().is_empty());
}

/// Three nodes (127.0.0.1-3), replication factor 2: one recovery point holds every node's SSTables,
/// and loads into a one-node cluster (another topology) with every row.
#[test]
fn a_three_node_cluster_is_one_recovery_point_that_loads_onto_another_topology() {
    let source = Cluster::start(3);
    source.cql(&format!(
        "CREATE KEYSPACE {KEYSPACE} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 2}};\n\
         CREATE TABLE {TABLE} (session text, seq int, body text, PRIMARY KEY (session, seq));\n\
         CONSISTENCY ALL;\n{}",
        inserts(0, 300)
    ));
    let planned = Planned::new(source.cql_port, &source.nodes_toml());
    planned
        .lifeline(&source, &["run", "chat", "--json"])
        .assert_success();
    let snapshot = planned.snapshots().pop().unwrap();
    assert_eq!(rows(&snapshot)[TABLE]["after"], 300, "{snapshot:#}");
    let nodes: Value = serde_json::from_str(snapshot["source"]["nodes"].as_str().unwrap()).unwrap();
    assert_eq!(nodes.as_array().unwrap().len(), 3, "{nodes:#}");
    // Every node holds some of the data (two replicas over three nodes).
    for n in nodes.as_array().unwrap() {
        assert!(n["files"].as_u64().unwrap() > 2, "{nodes:#}");
    }

    let target = Cluster::start(1);
    let out = planned.load_into(&target);
    out.assert_success();
    assert_eq!(out.json()["matches"], true, "{}", out.describe());
    // The keyspace keeps its replication factor of 2: one node holds every row.
    assert_eq!(target.count(TABLE, "ONE"), 300);
}
