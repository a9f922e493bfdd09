//! The source contract for ScyllaDB/Cassandra: capture every node; the drill restores the snapshot's
//! files and checks them as files are checked (a cluster to load into is `lifeline scylla restore`).

use lifeline_repo::{Repository, Writer};

use super::capture::{capture, CaptureRequest, Node};
use super::tools::Tools;
use crate::drill::{self, DrillRequest, Drilled};
use crate::source::{now, Captured, Error, Source};
use crate::Progress;

/// A cluster: its nodes, their CQL port and the keyspaces to capture.
pub struct ScyllaSource {
    pub nodes: Vec<Node>,
    pub cql_port: u16,
    pub keyspaces: Vec<String>,
    pub tools: Tools,
}

impl Source for ScyllaSource {
    fn kind(&self) -> &'static str {
        super::KIND
    }

    fn capture(
        &self,
        _repo: &Repository,
        writer: &Writer<'_>,
        progress: &dyn Progress,
    ) -> Result<Captured, Error> {
        let started = now();
        let request = CaptureRequest {
            nodes: &self.nodes,
            cql_port: self.cql_port,
            keyspaces: &self.keyspaces,
            tools: &self.tools,
        };
        let mut snapshot = capture(writer, &request, progress)?;
        snapshot.time = started;
        Ok(Captured {
            snapshot,
            excluded: 0,
        })
    }

    fn drill(
        &self,
        repo: &Repository,
        request: &DrillRequest<'_>,
        progress: &dyn Progress,
    ) -> Result<Drilled, Error> {
        Ok(drill::files::drill(repo, request, progress)?)
    }
}
