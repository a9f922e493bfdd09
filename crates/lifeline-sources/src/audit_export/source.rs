//! The audit-table kind behind the source contract, for `lifeline run`, the daemon and drills.

use std::time::Duration;

use lifeline_repo::{Repository, Writer};

use super::export::{self, ExportRequest};
use super::{drill, Format, KIND};
use crate::drill::{DrillRequest, Drilled};
use crate::source::{Captured, Error, Source};
use crate::Progress;

/// A PostgreSQL table exported incrementally by a watermark column, one hash-chained export per run.
pub struct AuditTableSource {
    pub url: String,
    /// The chain's name: the plan source's name.
    pub chain: String,
    pub table: String,
    pub watermark: String,
    pub format: Format,
    /// How long an export waits for open transactions.
    pub timeout: Duration,
}

impl Source for AuditTableSource {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn capture(
        &self,
        repo: &Repository,
        writer: &Writer<'_>,
        progress: &dyn Progress,
    ) -> Result<Captured, Error> {
        let request = ExportRequest {
            url: &self.url,
            chain: &self.chain,
            table: &self.table,
            watermark: &self.watermark,
            format: self.format,
            timeout: self.timeout,
        };
        let exported = export::export(repo, writer, &request, progress)?;
        tracing::info!(
            "export #{} of {}: {} row(s) after {} through {} (waited {} ms for {} transaction(s))",
            exported.link.seq,
            self.table,
            exported.link.rows,
            exported.link.after.as_deref().unwrap_or("the start"),
            exported.link.through.as_deref().unwrap_or("-"),
            exported.waited.as_millis(),
            exported.waited_for
        );
        Ok(Captured {
            snapshot: exported.snapshot,
            excluded: 0,
        })
    }

    fn drill(
        &self,
        repo: &Repository,
        request: &DrillRequest<'_>,
        progress: &dyn Progress,
    ) -> Result<Drilled, Error> {
        Ok(drill::drill(repo, request, progress)?)
    }
}
