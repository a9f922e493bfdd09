//! Verification (format.md §10): structure always, data on request, and for every damaged object the
//! snapshots and files that depend on it.

use std::collections::{BTreeSet, HashMap, HashSet};

use rayon::prelude::*;
use serde::Serialize;

use crate::drill::DrillRecord;
use crate::error::Result;
use crate::hold::HoldRecord;
use crate::index::Index;
use crate::pack::{pack_key, PackContents};
use crate::reader::BlobReader;
use crate::record::{self, Record, Stamp};
use crate::repository::Repository;
use crate::tree::NodeType;
use crate::verification::{
    Outcome, Scope, SnapshotResult, SubsetPlan, VerificationRecord, Verifications,
};
use crate::Id;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReadData {
    None,
    All,
    /// A percentage of packs, chosen among those the current cycle has not read yet, so that N runs
    /// of 1/N read every pack (format.md §12).
    Subset(f64),
}

#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// The damaged object: a storage key, or `blob <id>`.
    pub object: String,
    pub detail: String,
    /// `snapshot <id> <path>` for every file or directory that depends on the object.
    pub affected: Vec<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub snapshots: usize,
    pub packs: usize,
    pub packs_read: usize,
    pub blobs: usize,
    /// Packs no index names: left by an interrupted backup; harmless, and reused by the next backup.
    pub unindexed_packs: usize,
    /// Packs a prune mark names: garbage being collected (format.md §13), present or already gone.
    pub packs_being_deleted: usize,
    /// Staging files of writes that never finished (local storage), their bytes, and how many are
    /// stale (the next backup removes those).
    pub staging_files: usize,
    pub staging_bytes: u64,
    pub staging_stale: usize,
    /// Where a rotating `--read-data-subset` run stands.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subset: Option<SubsetStatus>,
    /// Snapshots that depend on damage found by this run (full IDs).
    pub damaged_snapshots: Vec<String>,
    pub problems: Vec<Problem>,
    /// Objects sealed under a key epoch that `key destroy-epoch` destroyed, which nothing kept
    /// needs: what crypto-shredding leaves, not damage (a snapshot that needs one is damaged and
    /// listed under `problems`). Prune deletes unreferenced packs; others were put back from
    /// elsewhere, and can be deleted.
    pub shredded: Vec<Problem>,
    /// What a data verification proved, to be recorded (`verification::save`).
    #[serde(skip)]
    pub verification: Option<VerificationRecord>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SubsetStatus {
    pub cycle: u64,
    /// Packs read by earlier runs of this cycle, by this run, and in all.
    pub packs_covered_before: usize,
    pub packs_read_now: usize,
    pub packs_total: usize,
    /// Every pack has now been read within this cycle.
    pub cycle_complete: bool,
}

struct Damage {
    problems: Vec<Problem>,
    /// Blob → index into `problems`.
    blobs: HashMap<Id, usize>,
    /// Problems that are objects sealed under a destroyed epoch.
    shredded: HashSet<usize>,
}

impl Damage {
    /// An object that could not be opened: shredded, or damaged.
    fn error(&mut self, object: String, e: &crate::Error, blobs: impl IntoIterator<Item = Id>) {
        if matches!(e, crate::Error::Shredded { .. }) {
            self.shredded.insert(self.problems.len());
        }
        self.add(object, e.to_string(), blobs);
    }

    fn add(&mut self, object: String, detail: String, blobs: impl IntoIterator<Item = Id>) {
        let at = self.problems.len();
        self.problems.push(Problem {
            object,
            detail,
            affected: Vec::new(),
        });
        for b in blobs {
            self.blobs.entry(b).or_insert(at);
        }
    }
}

pub fn check(repo: &Repository, read_data: ReadData) -> Result<Report> {
    // Every snapshot and tree is opened: without their key each would be reported as damage.
    repo.require_read("check")?;
    let mut damage = Damage {
        problems: Vec::new(),
        blobs: HashMap::new(),
        shredded: HashSet::new(),
    };
    let mut report = Report::default();

    // Snapshots first: a backup stores its index before its snapshot, so every snapshot listed now
    // has its index in the listing below, even while backups run.
    let snapshot_ids = repo.snapshot_ids()?;
    let marks = crate::garbage::load(repo)?;
    for (key, e) in &marks.damaged {
        damage.error(key.clone(), e, []);
    }
    let doomed = crate::garbage::doomed_packs(&marks.items);
    for (key, e) in record::load_all::<HoldRecord>(repo)?.damaged {
        damage.error(key, &e, []);
    }
    let verifications = Verifications::load(repo)?;
    for (key, e) in record::load_all::<VerificationRecord>(repo)?.damaged {
        damage.error(key, &e, []);
    }
    for (key, e) in record::load_all::<DrillRecord>(repo)?.damaged {
        damage.error(key, &e, []);
    }
    for (key, e) in repo.damaged_key_slots()? {
        damage.error(key, &e, []);
    }

    let mut files = Vec::new();
    for key in repo.index_keys()? {
        match repo.load_index_file(&key) {
            Ok(packs) => files.push(packs),
            // Deleted since the listing: a prune finishing its work, not damage.
            Err(crate::Error::ObjectMissing { .. }) => {}
            Err(e) => damage.error(key, &e, []),
        }
    }
    let stored = stored_packs(repo)?;
    // A pack a mark names may be gone already (a prune was interrupted between deleting it and
    // deleting the index files that name it): its entries are garbage, not damage, unless a
    // snapshot needs one of its blobs — then that blob is reported below.
    let mut index = Index::default();
    let mut gone: HashMap<Id, Id> = HashMap::new();
    for (pack, entries) in files.iter().flatten() {
        match (doomed.contains(pack), stored.contains_key(pack)) {
            (true, false) => gone.extend(entries.iter().map(|e| (e.id, *pack))),
            (true, true) => index.add_doomed_pack(*pack, entries),
            (false, _) => index.add_pack(*pack, entries),
        }
    }
    drop(files);
    report.blobs = index.blob_count();
    let unindexed: Vec<Id> = stored
        .keys()
        .filter(|p| !index.has_pack(p))
        .copied()
        .collect();
    report.unindexed_packs = unindexed.len();
    for (key, e) in shredded_packs(repo, &unindexed) {
        damage.error(key, &e, []);
    }
    report.packs_being_deleted = doomed.len();
    let staged = repo.storage().staging()?;
    report.staging_files = staged.len();
    report.staging_bytes = staged.iter().map(|s| s.info.size).sum();
    report.staging_stale = staged.iter().filter(|s| s.stale).count();
    let by_pack = index.blobs_by_pack();
    report.packs = by_pack.len();
    for (pack, entries) in &by_pack {
        let key = pack_key(pack);
        let needed = entries
            .iter()
            .map(|e| u64::from(e.offset) + u64::from(e.sealed_len))
            .max()
            .unwrap_or(0)
            + 4;
        let ids = entries.iter().map(|e| e.id);
        match stored.get(pack) {
            None => damage.add(
                key,
                "missing: the index names it but storage has no such object".into(),
                ids,
            ),
            Some(&size) if size < needed => damage.add(
                key,
                format!("truncated: {size} bytes, its blobs need at least {needed}"),
                ids,
            ),
            Some(_) => {}
        }
    }

    let present: Vec<Id> = {
        let mut ids: Vec<Id> = by_pack
            .keys()
            .filter(|p| stored.contains_key(p))
            .copied()
            .collect();
        ids.sort();
        ids
    };
    let (selected, mut subset): (Vec<Id>, Option<SubsetPlan>) = match read_data {
        ReadData::None => (Vec::new(), None),
        ReadData::All => (present.clone(), None),
        ReadData::Subset(pct) => {
            let plan = verifications.plan_subset(&present, pct);
            (plan.selected.clone(), Some(plan))
        }
    };
    report.packs_read = selected.len();
    let read_results: Vec<PackDamage> = selected
        .par_iter()
        .flat_map_iter(|pack| verify_pack(repo, pack, &by_pack[pack]))
        .collect();
    // A pack read with damage does not count as verified: a rotating check reads it again, and its
    // cycle cannot complete while it is damaged.
    let damaged_packs: HashSet<&str> = read_results.iter().map(|r| r.object.as_str()).collect();
    let verified: Vec<Id> = selected
        .iter()
        .filter(|p| !damaged_packs.contains(pack_key(p).as_str()))
        .copied()
        .collect();
    for r in &read_results {
        if r.shredded {
            damage.shredded.insert(damage.problems.len());
        }
        damage.add(r.object.clone(), r.detail.clone(), r.blobs.iter().copied());
    }

    let reader = BlobReader::new(repo, index);
    report.snapshots = snapshot_ids.len();
    let mut seen_trees = HashSet::new();
    let mut affected: HashMap<usize, BTreeSet<String>> = HashMap::new();
    let mut damaged_snapshots: BTreeSet<Id> = BTreeSet::new();
    let mut checked = Vec::new();
    for id in snapshot_ids {
        let snap = match repo.load_snapshot(&id) {
            Ok(s) => s,
            // Forgotten since the listing.
            Err(crate::Error::ObjectMissing { .. }) => continue,
            // What a destroyed epoch sealed: gone by intent, and nothing else depends on a
            // snapshot.
            Err(e @ crate::Error::Shredded { .. }) => {
                damage.error(format!("snapshots/{id}"), &e, []);
                continue;
            }
            Err(e) => {
                damage.add(format!("snapshots/{id}"), e.to_string(), []);
                damaged_snapshots.insert(id);
                continue;
            }
        };
        checked.push(id);
        let mut hit = |p: usize, place: String, affected: &mut HashMap<usize, BTreeSet<String>>| {
            damaged_snapshots.insert(id);
            affected.entry(p).or_default().insert(place);
        };
        // With no known damage, a tree seen in one snapshot need not be walked again.
        let walk_all = !damage.blobs.is_empty();
        let mut stack = vec![(snap.tree, String::new())];
        while let Some((tree_id, path)) = stack.pop() {
            if !walk_all && !seen_trees.insert(tree_id) {
                continue;
            }
            let shown = if path.is_empty() {
                "/".to_string()
            } else {
                path.clone()
            };
            let where_ = format!("snapshot {} {shown}", id.short());
            if let Some(&p) = damage.blobs.get(&tree_id) {
                hit(p, where_, &mut affected);
                continue;
            }
            let tree = match reader.read_tree(&tree_id) {
                Ok(t) => t,
                Err(e) => {
                    damage.error(format!("tree {tree_id}"), &e, [tree_id]);
                    hit(damage.problems.len() - 1, where_, &mut affected);
                    continue;
                }
            };
            for node in tree.nodes {
                let child = format!("{path}/{}", String::from_utf8_lossy(&node.name));
                match node.node_type {
                    NodeType::Dir => match node.subtree {
                        Some(sub) => stack.push((sub, child)),
                        None => damage.add(
                            format!("tree {tree_id}"),
                            format!("{child}: directory without subtree"),
                            [],
                        ),
                    },
                    NodeType::File => {
                        for c in node.content.iter().flatten() {
                            let place = format!("snapshot {} {child}", id.short());
                            if let Some(&p) = damage.blobs.get(c.id()) {
                                hit(p, place, &mut affected);
                            } else if !reader.index().contains(c.id()) {
                                let detail = match gone.get(c.id()) {
                                    Some(pack) => format!(
                                        "missing: its only copy was in {}, which a prune deleted",
                                        pack_key(pack)
                                    ),
                                    None => "missing: no index names it".into(),
                                };
                                damage.add(format!("blob {}", c.id()), detail, [*c.id()]);
                                hit(damage.problems.len() - 1, place, &mut affected);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    for (p, paths) in affected {
        damage.problems[p].affected = paths.into_iter().collect();
    }
    // Shredded and needed by no snapshot: expected after a destroy. Needed: a snapshot is damaged.
    for (i, p) in damage.problems.into_iter().enumerate() {
        if damage.shredded.contains(&i) && p.affected.is_empty() {
            report.shredded.push(p);
        } else {
            report.problems.push(p);
        }
    }
    report.damaged_snapshots = damaged_snapshots.iter().map(Id::to_hex).collect();
    if let Some(plan) = subset.as_mut() {
        plan.completes &= verified.len() == selected.len();
    }
    report.verification = verification_record(
        read_data,
        subset.as_ref(),
        &verified,
        &checked,
        &damaged_snapshots,
    );
    report.subset = subset.map(|plan| SubsetStatus {
        cycle: plan.cycle,
        packs_covered_before: plan.covered,
        packs_read_now: plan.selected.len(),
        packs_total: present.len(),
        cycle_complete: plan.completes,
    });
    Ok(report)
}

/// What a run that read data proved, for `verification::save`.
fn verification_record(
    read_data: ReadData,
    subset: Option<&SubsetPlan>,
    read: &[Id],
    checked: &[Id],
    damaged: &BTreeSet<Id>,
) -> Option<VerificationRecord> {
    let result = |id: &Id, earlier: &HashSet<Id>| SnapshotResult {
        id: *id,
        result: if damaged.contains(id) || earlier.contains(id) {
            Outcome::Damaged
        } else {
            Outcome::Ok
        },
    };
    let (scope, cycle, complete, snapshots) = match (read_data, subset) {
        (ReadData::None, _) => return None,
        (ReadData::All, _) => (
            Scope::All,
            0,
            false,
            checked
                .iter()
                .map(|id| result(id, &HashSet::new()))
                .collect(),
        ),
        (ReadData::Subset(_), Some(plan)) if plan.completes => (
            Scope::Subset,
            plan.cycle,
            true,
            checked
                .iter()
                .map(|id| result(id, &plan.damaged_earlier))
                .collect(),
        ),
        (ReadData::Subset(_), Some(plan)) => (
            Scope::Subset,
            plan.cycle,
            false,
            damaged
                .iter()
                .map(|id| result(id, &HashSet::new()))
                .collect(),
        ),
        (ReadData::Subset(_), None) => return None,
    };
    Some(VerificationRecord {
        stamp: Stamp::now(VerificationRecord::TYPE),
        scope,
        cycle,
        complete,
        packs: read.to_vec(),
        snapshots,
    })
}

/// Read back packs just written and check, without keys, that each is stored as written: its bytes
/// hash to its name. What a write-only credential can verify of its own upload.
pub fn verify_stored(repo: &Repository, packs: &[crate::pack::PackBlobs]) -> Vec<Problem> {
    packs
        .par_iter()
        .filter_map(|(pack, _)| {
            let key = pack_key(pack);
            let detail = match repo.storage().get(&key) {
                Ok(bytes) if Id::of_stored(&bytes) == *pack => return None,
                Ok(_) => "read back after upload, its bytes do not hash to its name".to_string(),
                Err(e) => format!("read back after upload: {e}"),
            };
            Some(Problem {
                object: key,
                detail,
                affected: Vec::new(),
            })
        })
        .collect()
}

/// Read back packs just written and verify them whole; one problem per damaged blob or pack.
pub fn verify_packs(repo: &Repository, packs: &[crate::pack::PackBlobs]) -> Vec<Problem> {
    packs
        .par_iter()
        .flat_map_iter(|(pack, entries)| verify_pack(repo, pack, entries))
        .map(|d| Problem {
            object: d.object,
            detail: d.detail,
            affected: Vec::new(),
        })
        .collect()
}

/// What reading one pack found wrong.
struct PackDamage {
    object: String,
    detail: String,
    blobs: Vec<Id>,
    /// Sealed under a destroyed epoch.
    shredded: bool,
}

impl PackDamage {
    fn new(object: &str, detail: String, blobs: Vec<Id>) -> Self {
        PackDamage {
            object: object.to_string(),
            detail,
            blobs,
            shredded: false,
        }
    }
}

/// The packs of `packs` sealed under a destroyed epoch, from their headers, with the error that
/// opening them gives. A header that cannot be read is left to the rest of the check.
fn shredded_packs(repo: &Repository, packs: &[Id]) -> Vec<(String, crate::Error)> {
    let destroyed: HashMap<u32, u32> = repo
        .keyring()
        .epochs
        .iter()
        .filter(|e| e.destroyed.is_some())
        .map(|e| (e.tag, e.epoch))
        .collect();
    if destroyed.is_empty() {
        return Vec::new();
    }
    packs
        .par_iter()
        .filter_map(|pack| {
            let key = pack_key(pack);
            let bytes = repo
                .storage()
                .get_range(&key, 0, crate::crypto::HEADER_LEN as u64)
                .ok()?;
            let header = crate::crypto::Header::parse(&bytes, &key).ok()?;
            let epoch = *destroyed.get(&header.epoch)?;
            Some((key.clone(), crate::Error::Shredded { key, epoch }))
        })
        .collect()
}

/// Read one pack whole and verify its name, trailer and every blob the index places in it.
fn verify_pack(
    repo: &Repository,
    pack: &Id,
    indexed: &[crate::pack::BlobEntry],
) -> Vec<PackDamage> {
    let key = pack_key(pack);
    let all_ids = || indexed.iter().map(|e| e.id).collect::<Vec<_>>();
    let contents = match repo
        .storage()
        .get(&key)
        .and_then(|bytes| PackContents::parse(bytes, repo.keyring(), pack, &key))
    {
        Ok(c) => c,
        Err(e) => {
            let mut d = PackDamage::new(&key, e.to_string(), all_ids());
            d.shredded = matches!(e, crate::Error::Shredded { .. });
            return vec![d];
        }
    };
    let in_trailer: HashMap<(Id, u32), &crate::pack::BlobEntry> = contents
        .entries
        .iter()
        .map(|e| ((e.id, e.offset), e))
        .collect();
    let mut out = Vec::new();
    for entry in indexed {
        match in_trailer.get(&(entry.id, entry.offset)) {
            Some(t) if *t == entry => {
                if let Err(e) = contents.blob(entry, repo.keyring(), &key) {
                    out.push(PackDamage::new(&key, e.to_string(), vec![entry.id]));
                }
            }
            _ => out.push(PackDamage::new(
                &key,
                format!(
                    "the index places blob {} here but the pack's trailer disagrees",
                    entry.id.short()
                ),
                vec![entry.id],
            )),
        }
    }
    out
}

/// Every pack in storage, with its size.
pub(crate) fn stored_packs(repo: &Repository) -> Result<HashMap<Id, u64>> {
    Ok(repo
        .storage()
        .list("data/")?
        .into_iter()
        .filter_map(|o| Some((Id::from_hex(o.key.rsplit('/').next()?)?, o.size)))
        .collect())
}
