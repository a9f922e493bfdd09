//! Retention as `forget` and every plan job apply it: judge the chosen snapshots by a policy (or
//! remove named ones) under the guards — holds, verified backups, incremental parents, PITR
//! windows — then expire the PostgreSQL WAL no kept backup needs.

use std::collections::HashSet;

use lifeline_repo::hold::Holds;
use lifeline_repo::retention::{self, GroupBy, Guards, Plan};
use lifeline_repo::snapshot::SnapshotFilter;
use lifeline_repo::verification::Verifications;
use lifeline_repo::{Id, Repository};
use lifeline_sources::postgres::retention as pg;
use rayon::prelude::*;

use crate::options::RetentionOptions;

/// Which snapshots go.
pub enum Selection<'a> {
    /// Those the policy does not keep, among the snapshots the filter matches.
    Policy(&'a RetentionOptions),
    /// These, unless a guard keeps them.
    Ids(Vec<Id>),
}

pub struct Forgotten {
    pub plan: Plan,
    pub wal: pg::WalExpiry,
}

/// Decide, and unless `dry_run`, remove. Snapshots outside `filter` stay, and so does what they need.
pub fn forget(
    repo: &Repository,
    selection: &Selection<'_>,
    filter: &SnapshotFilter,
    group_by: GroupBy,
    keep_verified: usize,
    dry_run: bool,
) -> anyhow::Result<Forgotten> {
    let snapshots = repo.snapshots()?;
    let holds = Holds::load(repo)?;
    let verified = Verifications::load(repo)?.latest();
    let mut pinned = match selection {
        Selection::Policy(RetentionOptions {
            keep_pitr: Some(window),
            ..
        }) => pg::pitr_anchors(repo, *window, chrono::Utc::now())?,
        _ => Default::default(),
    };
    for (id, reason) in
        retention::needed_outside(&snapshots, &|s| filter.matches(s), &pg::depends_on)
    {
        pinned.entry(id).or_insert(reason);
    }
    let guards = Guards {
        holds: &holds,
        verified: &verified,
        keep_verified,
        pinned,
        depends_on: &pg::depends_on,
    };
    let plan = match selection {
        Selection::Policy(options) => {
            let judged: Vec<_> = snapshots
                .iter()
                .filter(|(_, s)| filter.matches(s))
                .cloned()
                .collect();
            retention::apply(&judged, &options.policy(), group_by, &guards)
        }
        Selection::Ids(ids) => retention::explicit(&snapshots, ids, group_by, &guards)?,
    };
    let removed = plan.removed();
    // Everything not removed stays, judged or not: WAL expiry must serve the snapshots outside the
    // filter as well.
    let gone: HashSet<Id> = removed.iter().copied().collect();
    let kept: HashSet<Id> = snapshots
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| !gone.contains(id))
        .collect();
    let wal = pg::plan_expiry(repo, &kept)?;
    if !dry_run {
        removed
            .par_iter()
            .try_for_each(|id| repo.delete_snapshot(id))?;
        pg::expire(repo, &wal)?;
    }
    Ok(Forgotten { plan, wal })
}
