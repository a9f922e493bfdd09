//! Repairs for damage `check` reports, as restic has them: `repair index` rebuilds the index from the
//! packs' own trailers, and `repair snapshots` writes new snapshots without what was lost.

mod index;
mod snapshots;

pub use index::{repair_index, IndexReport};
pub use snapshots::{repair_snapshots, Options, Repaired, SnapshotsReport, REPAIRED_TAG};

use crate::error::{Error, Result};
use crate::repository::Repository;
use crate::session::{self, Session};

/// The session command of a repair. Prune and repair both rewrite what the index says, so each
/// refuses to start beside the other (format.md §13).
pub const REPAIR: &str = "repair";

pub(crate) fn refuse_beside_prune(repo: &Repository, ours: &Session) -> Result<()> {
    match session::running(repo.storage(), ours, &["prune", REPAIR])? {
        Some(other) => Err(Error::Invalid(format!(
            "a {} is running (host {}, process {}, since {}); prune and repair run one at a time: try again when it has finished",
            other.command, other.hostname, other.pid, other.started_at
        ))),
        None => Ok(()),
    }
}
