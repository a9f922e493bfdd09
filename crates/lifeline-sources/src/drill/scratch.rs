//! Servers a drill starts and must stop: a new, empty cluster to restore a logical dump into, and
//! the guard that stops a restored base backup's server however the drill ends.

use std::path::{Path, PathBuf};

use crate::postgres::server::shell_quote;
use crate::postgres::socket;
use crate::postgres::tools::{self, Tools};
use crate::postgres::{Error, Result};

/// The port number in the socket's name. The scratch server listens on no TCP port at all, only on
/// a socket in a private directory, so no other server's port can be in the way.
const PORT: u16 = 5432;

/// The superuser of a scratch cluster.
const USER: &str = "postgres";

/// A server whose data directory a drill made: stopped when dropped, so a drill that fails or
/// panics leaves no server behind.
pub(super) struct Running {
    tools: Tools,
    pgdata: PathBuf,
}

impl Running {
    /// Watch the server of `pgdata` (started, or about to be).
    pub(super) fn new(tools: Tools, pgdata: &Path) -> Self {
        Running {
            tools,
            pgdata: pgdata.to_path_buf(),
        }
    }

    /// Stop it now: a fast shutdown, or an immediate one when that does not finish (the data is
    /// thrown away after). A server that is not running is fine.
    pub(super) fn stop(&self) -> Result<()> {
        if !self.pgdata.join("postmaster.pid").exists() {
            return Ok(());
        }
        let stop = |mode: &str| {
            let mut cmd = self.tools.command("pg_ctl");
            cmd.arg("-D")
                .arg(&self.pgdata)
                .args(["stop", "-w", "-t", "60", "-m", mode]);
            tools::run(&mut cmd, "pg_ctl stop")
        };
        match stop("fast") {
            Ok(_) => Ok(()),
            Err(_) if !self.pgdata.join("postmaster.pid").exists() => Ok(()),
            Err(_) => stop("immediate").map(|_| ()),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::warn!(
                "the drill's server on {} did not stop: {e}",
                self.pgdata.display()
            );
        }
    }
}

/// A new cluster in `dir`, started and reachable only through its socket there.
pub(super) struct ScratchServer {
    pub running: Running,
    socket_dir: PathBuf,
}

impl ScratchServer {
    /// initdb and start a cluster of the programs `tools` (one major version) in `dir/pgdata`.
    pub(super) fn start(tools: Tools, dir: &Path) -> Result<Self> {
        let pgdata = dir.join("pgdata");
        let socket_dir = dir.join("sock");
        std::fs::create_dir_all(&socket_dir).map_err(|e| Error::io(&socket_dir, e))?;
        let mut initdb = tools.command("initdb");
        initdb
            .arg("-D")
            .arg(&pgdata)
            .args(["-U", USER, "--auth=trust", "-E", "UTF8", "--locale=C"])
            // A scratch cluster is thrown away: initdb's own fsyncs would only add to the RTO.
            .arg("--no-sync");
        tools::run(&mut initdb, "initdb")?;
        let running = Running::new(tools.clone(), &pgdata);
        // pg_ctl hands -o to a shell.
        let options = format!(
            "-p {PORT} -c listen_addresses='' -k {}",
            shell_quote(&socket_dir.display().to_string())
        );
        let log = dir.join("pgdata.log");
        let mut start = tools.command("pg_ctl");
        start
            .arg("-D")
            .arg(&pgdata)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "120", "-o", &options, "start"]);
        if let Err(e) = tools::run(&mut start, "pg_ctl start") {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(10).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(Error::Invalid(format!(
                "the scratch server did not start ({e}); the end of its log:\n{}",
                tail.join("\n")
            )));
        }
        Ok(ScratchServer {
            running,
            socket_dir,
        })
    }

    /// The connection string of database `db`.
    pub(super) fn url(&self, db: &str) -> String {
        socket::socket_url(USER, db, &self.socket_dir.display().to_string(), PORT)
    }
}
