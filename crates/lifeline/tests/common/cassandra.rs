//! Real Cassandra 5.0 clusters for the end-to-end tests of the scylla source, started by
//! `scripts/cassandra.sh start DIR NODES` (installed by `scripts/cassandra.sh install`, which
//! scripts/test.sh runs when it is missing). Without it the tests fail: they never skip. Each cluster
//! has a directory and ports of its own and is stopped when dropped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use tempfile::TempDir;

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/cassandra.sh")
}

/// `export K=V` lines (values maybe single-quoted) as a map.
fn exports(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
        .collect()
}

/// The tools' paths (`LIFELINE_NODETOOL`, `LIFELINE_CQLSH`, `LIFELINE_SSTABLELOADER`).
pub fn tools_env() -> HashMap<String, String> {
    let out = Command::new("bash")
        .arg(script())
        .arg("env")
        .output()
        .expect("run scripts/cassandra.sh env");
    exports(&String::from_utf8_lossy(&out.stdout))
}

pub struct Cluster {
    pub dir: TempDir,
    pub cql_port: u16,
    pub storage_port: u16,
    pub jmx_ports: Vec<u16>,
    tools: HashMap<String, String>,
}

impl Cluster {
    #[track_caller]
    pub fn start(nodes: usize) -> Cluster {
        // One start at a time: the script picks free ports before the JVMs bind them, and
        // Cassandra's start-up is CPU-bound; clusters started side by side raced for both.
        static STARTING: Mutex<()> = Mutex::new(());
        let _one = STARTING.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().expect("temp dir");
        let out = Command::new("bash")
            .arg(script())
            .arg("start")
            .arg(dir.path())
            .arg(nodes.to_string())
            .output()
            .expect("run scripts/cassandra.sh");
        assert!(
            out.status.success(),
            "Cassandra did not start (install it with `scripts/cassandra.sh install`; scripts/test.sh does): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let env = exports(&String::from_utf8_lossy(&out.stdout));
        let port = |k: &str| -> u16 { env[k].parse().unwrap_or_else(|_| panic!("{k}: {env:?}")) };
        Cluster {
            cql_port: port("CASSANDRA_CQL_PORT"),
            storage_port: port("CASSANDRA_STORAGE_PORT"),
            jmx_ports: env["CASSANDRA_JMX_PORTS"]
                .split(',')
                .map(|p| p.parse().unwrap())
                .collect(),
            dir,
            tools: tools_env(),
        }
    }

    /// Node `n`'s (1-based) data directory.
    pub fn data_dir(&self, n: usize) -> PathBuf {
        self.dir.path().join(format!("node{n}/data"))
    }

    /// The plan's `nodes = [...]` for this cluster.
    pub fn nodes_toml(&self) -> String {
        let nodes: Vec<String> = self
            .jmx_ports
            .iter()
            .enumerate()
            .map(|(i, jmx)| {
                format!(
                    "{{ host = \"127.0.0.{}\", nodetool = \"127.0.0.1:{jmx}\", data_dir = {:?} }}",
                    i + 1,
                    self.data_dir(i + 1).display().to_string()
                )
            })
            .collect();
        format!("[{}]", nodes.join(", "))
    }

    /// Set the tools' environment on `cmd` (lifeline finds nodetool, cqlsh and sstableloader there).
    pub fn env<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        cmd.envs(&self.tools)
    }

    /// cqlsh on node 1, failing the test on an error; its output.
    #[track_caller]
    pub fn cql(&self, statements: &str) -> String {
        let file = self.dir.path().join("statements.cql");
        std::fs::write(&file, statements).unwrap();
        let out = Command::new(&self.tools["LIFELINE_CQLSH"])
            .args(["127.0.0.1", &self.cql_port.to_string(), "-f"])
            .arg(&file)
            .output()
            .expect("run cqlsh");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && !stderr.contains("Error"),
            "cqlsh failed: {stderr}"
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `SELECT COUNT(*)` of `table` at `consistency` (`ALL`, or `ONE` on a cluster smaller than
    /// the keyspace's replication factor).
    #[track_caller]
    pub fn count(&self, table: &str, consistency: &str) -> u64 {
        let out = self.cql(&format!(
            "CONSISTENCY {consistency};\nSELECT COUNT(*) FROM {table};\n"
        ));
        lifeline_sources::scylla::capture::values(&out)
            .iter()
            .find_map(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no count in {out}"))
    }

    /// `nodetool ARGS` against node `n`.
    #[track_caller]
    pub fn nodetool(&self, n: usize, args: &[&str]) -> String {
        let out = Command::new(&self.tools["LIFELINE_NODETOOL"])
            .args(["-h", "127.0.0.1", "-p", &self.jmx_ports[n - 1].to_string()])
            .args(args)
            .output()
            .expect("run nodetool");
        assert!(out.status.success(), "nodetool {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}
