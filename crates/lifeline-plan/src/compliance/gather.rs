//! What [`build`](super::build) needs, read from a repository: the trail (and how it verified),
//! the drill records, the keyring's epochs and the holds in force, with the plan's sources. The
//! primary and its copy in the other region answer alike.

use chrono::{DateTime, Utc};
use lifeline_repo::hold::Holds;
use lifeline_repo::{audit, drill, Repository};

use super::model::{Inputs, KeyEpoch, PlannedSource, TrailCheck};
use super::month::Month;
use crate::plan::Plan;

/// The report's inputs for `month` from `repo`. A trail with problems is still reported on (the
/// problems are part of the report); records that cannot be opened are left out of the figures.
pub fn gather(
    repo: &Repository,
    plan: &Plan,
    month: Month,
    generated_at: DateTime<Utc>,
) -> anyhow::Result<Inputs> {
    // One read of the trail: a trail with a deleted record still opens record by record; one with
    // an altered or forged record does not, and then the figures are left empty rather than
    // half-counted.
    let (verification, records) = audit::verify_and_load(repo)?;
    let records = records.unwrap_or_default();
    let trail = TrailCheck {
        records: verification.records,
        problems: verification
            .problems
            .iter()
            .map(|p| match &p.record {
                Some(record) => format!("{}: {record}: {}", p.kind, p.message),
                None => format!("{}: {}", p.kind, p.message),
            })
            .collect(),
        heads: verification.heads.iter().map(|h| h.to_hex()).collect(),
        authenticated: verification.authenticated,
    };
    let (drills, _) = drill::load_all(repo)?;
    let holds = Holds::load(repo)?;
    Ok(Inputs {
        month,
        generated_at,
        repository: repo.storage().location(),
        records,
        drills: drills.into_iter().map(|d| d.record).collect(),
        trail,
        key_epochs: repo
            .keyring()
            .epochs
            .iter()
            .map(|e| KeyEpoch {
                epoch: e.epoch,
                created: e.created.clone(),
                destroyed: e.destroyed.clone(),
            })
            .collect(),
        holds: holds.active().into_iter().cloned().collect(),
        sources: plan
            .sources
            .iter()
            .map(|s| {
                let tier = plan.class_of(s).and_then(|(_, t)| t);
                PlannedSource {
                    name: s.name.clone(),
                    kind: s.kind.as_str().into(),
                    tier: plan.class_of(s).map(|(c, _)| c.tier.clone()),
                    rto_target_seconds: tier.map(|t| t.rto.as_secs_f64()),
                    rpo_target_seconds: tier.map(|t| t.rpo.as_secs_f64()),
                }
            })
            .collect(),
    })
}
