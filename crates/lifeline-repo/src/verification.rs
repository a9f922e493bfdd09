//! Verification records (format.md §12): what `check --read-data`, its rotating subsets and restore
//! drills proved, per snapshot, so that retention can keep the newest verified backups and subset
//! runs cover every pack over a cycle.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::record::{self, Record, Stamp, Stored};
use crate::repository::Repository;
use crate::Id;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Every pack was read (`check --read-data`).
    All,
    /// A share of the packs, rotating (`check --read-data-subset`).
    Subset,
    /// The snapshots were restored into a scratch target and proven usable (`drill`); no pack is
    /// listed, as a restore reads only the blobs the snapshots need.
    Restore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Damaged,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotResult {
    pub id: Id,
    pub result: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerificationRecord {
    #[serde(flatten)]
    pub stamp: Stamp,
    pub scope: Scope,
    pub cycle: u64,
    /// This run read the last packs of its cycle.
    pub complete: bool,
    pub packs: Vec<Id>,
    pub snapshots: Vec<SnapshotResult>,
}

impl Record for VerificationRecord {
    const PREFIX: &'static str = "verifications/";
    const TYPE: &'static str = "verification";
    fn stamp(&self) -> &Stamp {
        &self.stamp
    }
}

/// A snapshot's most recent data verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verified {
    pub time: String,
    pub result: Outcome,
    pub scope: Scope,
}

/// Which packs a subset run reads, and where it stands in its cycle.
#[derive(Debug, Clone, Default)]
pub struct SubsetPlan {
    pub cycle: u64,
    /// Packs read earlier in this cycle.
    pub covered: usize,
    pub selected: Vec<Id>,
    /// After this run every pack has been read within the cycle.
    pub completes: bool,
    /// Snapshots found damaged by earlier runs of this cycle.
    pub damaged_earlier: HashSet<Id>,
}

/// Every verification record, oldest first.
#[derive(Debug, Default)]
pub struct Verifications {
    records: Vec<Stored<VerificationRecord>>,
}

impl Verifications {
    /// Read the records. One that cannot be read only loses its information (it is reported by
    /// `check`): at worst a snapshot counts as unverified.
    pub fn load(repo: &Repository) -> Result<Self> {
        let records = record::load_all::<VerificationRecord>(repo)?;
        for (key, e) in &records.damaged {
            tracing::warn!("ignoring verification record {key}: {e}");
        }
        Ok(Verifications {
            records: records.items,
        })
    }

    /// Each snapshot's newest verification.
    pub fn latest(&self) -> HashMap<Id, Verified> {
        let mut out = HashMap::new();
        for stored in &self.records {
            for s in &stored.record.snapshots {
                out.insert(
                    s.id,
                    Verified {
                        time: stored.record.stamp.time.clone(),
                        result: s.result,
                        scope: stored.record.scope,
                    },
                );
            }
        }
        out
    }

    /// Choose `pct`% of `packs` (at least one) among those no run of the current cycle has read; a
    /// cycle whose runs covered every pack is over, and this run starts the next one.
    pub fn plan_subset(&self, packs: &[Id], pct: f64) -> SubsetPlan {
        use rand::seq::SliceRandom;
        let subsets: Vec<&VerificationRecord> = self
            .records
            .iter()
            .map(|s| &s.record)
            .filter(|r| r.scope == Scope::Subset)
            .collect();
        let mut cycle = subsets.iter().map(|r| r.cycle).max().unwrap_or(1).max(1);
        let in_cycle = |c: u64| subsets.iter().filter(move |r| r.cycle == c);
        let mut covered: HashSet<Id> = in_cycle(cycle)
            .flat_map(|r| r.packs.iter().copied())
            .collect();
        let mut uncovered: Vec<Id> = packs
            .iter()
            .filter(|p| !covered.contains(p))
            .copied()
            .collect();
        // A cycle ends with the run that read its last packs; one whose packs all went (pruned) or
        // whose last run was interrupted before recording ends too.
        if in_cycle(cycle).any(|r| r.complete) || uncovered.is_empty() {
            cycle += 1;
            covered.clear();
            uncovered = packs.to_vec();
        }
        let damaged_earlier = in_cycle(cycle)
            .flat_map(|r| r.snapshots.iter())
            .filter(|s| s.result == Outcome::Damaged)
            .map(|s| s.id)
            .collect();
        let want = ((packs.len() as f64) * pct / 100.0).ceil().max(1.0) as usize;
        let mut rng = rand::thread_rng();
        uncovered.shuffle(&mut rng);
        uncovered.truncate(want);
        let completes = packs
            .iter()
            .all(|p| covered.contains(p) || uncovered.contains(p));
        // A share larger than what is left of the cycle reads packs read before too: 100% is
        // everything.
        let mut again: Vec<Id> = packs
            .iter()
            .filter(|p| covered.contains(p))
            .copied()
            .collect();
        again.shuffle(&mut rng);
        let mut selected = uncovered;
        selected.extend(again.into_iter().take(want.saturating_sub(selected.len())));
        SubsetPlan {
            cycle,
            covered: covered.len(),
            selected,
            completes,
            damaged_earlier,
        }
    }
}

/// Store what a data verification proved (built by `check::Report::verification`).
pub fn save(repo: &Repository, record: VerificationRecord) -> Result<Id> {
    record::save(repo, &record)
}

/// The record of a restore drill that proved `snapshots` usable: they count as verified for
/// `--keep-verified` from now on.
pub fn restored(snapshots: &[Id]) -> VerificationRecord {
    VerificationRecord {
        stamp: Stamp::now(VerificationRecord::TYPE),
        scope: Scope::Restore,
        cycle: 0,
        complete: false,
        packs: Vec::new(),
        snapshots: snapshots
            .iter()
            .map(|id| SnapshotResult {
                id: *id,
                result: Outcome::Ok,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subset_record(cycle: u64, packs: &[u8], complete: bool) -> Stored<VerificationRecord> {
        Stored {
            id: Id([cycle as u8; 32]),
            stored: std::time::UNIX_EPOCH,
            record: VerificationRecord {
                stamp: Stamp::now(VerificationRecord::TYPE),
                scope: Scope::Subset,
                cycle,
                complete,
                packs: packs.iter().map(|b| Id([*b; 32])).collect(),
                snapshots: Vec::new(),
            },
        }
    }

    #[test]
    fn a_restore_drill_verifies_its_snapshots_without_touching_subset_cycles() {
        let packs: Vec<Id> = (1..=4).map(|b| Id([b; 32])).collect();
        let drilled = Id([9; 32]);
        let v = Verifications {
            records: vec![
                subset_record(1, &[1, 2], false),
                Stored {
                    id: Id([7; 32]),
                    stored: std::time::UNIX_EPOCH,
                    record: restored(&[drilled]),
                },
            ],
        };
        let latest = v.latest();
        assert_eq!(latest[&drilled].scope, Scope::Restore);
        assert_eq!(latest[&drilled].result, Outcome::Ok);
        let plan = v.plan_subset(&packs, 50.0);
        assert_eq!((plan.cycle, plan.covered), (1, 2), "drills read no packs");
    }

    #[test]
    fn subsets_read_what_the_cycle_has_not_and_all_of_it_at_100_percent() {
        let packs: Vec<Id> = (1..=8).map(|b| Id([b; 32])).collect();
        let v = Verifications {
            records: vec![subset_record(1, &[1, 2, 3], false)],
        };
        let quarter = v.plan_subset(&packs, 25.0);
        assert_eq!(
            (quarter.cycle, quarter.covered, quarter.selected.len()),
            (1, 3, 2)
        );
        assert!(
            quarter.selected.iter().all(|p| p.0[0] > 3),
            "only unread packs"
        );
        assert!(!quarter.completes);
        let all = v.plan_subset(&packs, 100.0);
        assert_eq!(all.selected.len(), 8, "100% reads packs read before too");
        assert!(all.completes);
        // A completed cycle starts the next one.
        let v = Verifications {
            records: vec![subset_record(1, &[1, 2, 3, 4, 5, 6, 7, 8], true)],
        };
        let next = v.plan_subset(&packs, 50.0);
        assert_eq!((next.cycle, next.covered, next.selected.len()), (2, 0, 4));
    }
}
