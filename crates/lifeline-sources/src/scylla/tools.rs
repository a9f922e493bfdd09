//! The programs a cluster is driven with: `nodetool` (snapshot, clearsnapshot, info), `cqlsh`
//! (schema, row counts) and `sstableloader` (restore). Scylla ships the same three.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::error::{Error, Result};

/// Where the three programs are.
#[derive(Debug, Clone)]
pub struct Tools {
    pub nodetool: PathBuf,
    pub cqlsh: PathBuf,
    pub sstableloader: PathBuf,
}

impl Tools {
    /// `$LIFELINE_NODETOOL`, `$LIFELINE_CQLSH`, `$LIFELINE_SSTABLELOADER`, else the names on `PATH`.
    pub fn from_env() -> Tools {
        let program = |env: &str, name: &str| {
            std::env::var_os(env)
                .filter(|v| !v.is_empty())
                .map_or_else(|| PathBuf::from(name), PathBuf::from)
        };
        Tools {
            nodetool: program("LIFELINE_NODETOOL", "nodetool"),
            cqlsh: program("LIFELINE_CQLSH", "cqlsh"),
            sstableloader: program("LIFELINE_SSTABLELOADER", "sstableloader"),
        }
    }

    /// `nodetool -h HOST -p PORT ARGS…` against the node whose management address is `at`
    /// (`host:port`: JMX for Cassandra, the REST API for Scylla).
    pub fn nodetool(&self, at: &str, args: &[&str]) -> Result<String> {
        let (host, port) = at.rsplit_once(':').ok_or_else(|| {
            Error::Invalid(format!(
                "nodetool address {at:?} is not HOST:PORT (e.g. 127.0.0.1:7199)"
            ))
        })?;
        let mut cmd = Command::new(&self.nodetool);
        cmd.args(["-h", host, "-p", port]).args(args);
        run(
            cmd,
            &self.nodetool,
            &format!("nodetool {} on {at}", args.join(" ")),
        )
        .map(|(out, _)| out)
    }

    /// `cqlsh HOST PORT -e STATEMENT`; cqlsh's own warnings (a version it was not built for) are
    /// dropped from what it printed.
    pub fn cql(&self, host: &str, port: u16, statement: &str) -> Result<String> {
        let mut cmd = Command::new(&self.cqlsh);
        cmd.args([host, &port.to_string(), "-e", statement]);
        let (out, _) = run(cmd, &self.cqlsh, &format!("cqlsh on {host}:{port}"))?;
        Ok(out
            .lines()
            .filter(|l| !l.starts_with("WARNING:"))
            .collect::<Vec<_>>()
            .join("\n"))
    }

    /// `cqlsh HOST PORT -f FILE`.
    pub fn cql_file(&self, host: &str, port: u16, file: &Path) -> Result<()> {
        let mut cmd = Command::new(&self.cqlsh);
        cmd.args([host, &port.to_string(), "-f"]).arg(file);
        let (_, errors) = run(cmd, &self.cqlsh, &format!("cqlsh -f {}", file.display()))?;
        // cqlsh -f reports a failed statement on stderr yet exits 0 in some versions.
        if let Some(line) = errors.lines().find(|l| l.contains("Error")) {
            return Err(Error::Tool {
                what: format!("cqlsh -f {}", file.display()),
                status: "a statement failed".into(),
                output: line.to_string(),
            });
        }
        Ok(())
    }

    /// `sstableloader -d HOSTS -p CQL_PORT [-sp STORAGE_PORT] DIR`, DIR ending in `keyspace/table`.
    pub fn load(
        &self,
        hosts: &str,
        port: u16,
        storage_port: Option<u16>,
        dir: &Path,
    ) -> Result<()> {
        let mut cmd = Command::new(&self.sstableloader);
        cmd.args(["-d", hosts, "-p", &port.to_string()]);
        if let Some(sp) = storage_port {
            cmd.args(["-sp", &sp.to_string()]);
        }
        cmd.arg(dir);
        run(
            cmd,
            &self.sstableloader,
            &format!("sstableloader {}", dir.display()),
        )
        .map(|_| ())
    }
}

/// Run to completion: stdout and stderr; both in the error on failure (the tools split their
/// messages between them).
fn run(mut cmd: Command, program: &Path, what: &str) -> Result<(String, String)> {
    let out = cmd.output().map_err(|source| Error::Spawn {
        program: program.display().to_string(),
        source,
    })?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        return Err(Error::Tool {
            what: what.to_string(),
            status: out.status.to_string(),
            output: format!("{stdout}\n{stderr}"),
        });
    }
    Ok((stdout, stderr))
}
