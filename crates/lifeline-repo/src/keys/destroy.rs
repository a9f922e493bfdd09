//! `key destroy-epoch` (format.md §3.2): crypto-shredding. Deleting an epoch's object deletes the
//! only copy of its data, tree, snapshot and index keys, so whatever they sealed can never be read
//! again, in this repository or in any copy of its bytes, backups of the bucket included.
//!
//! It refuses while anything that must stay readable is sealed under the epoch: snapshots (forget
//! them), packs (`prune --repack-epoch` re-seals what kept snapshots need), WAL, prune marks, or a
//! session that may still seal under it. Index files are re-sealed here, since they only describe
//! packs of every epoch. Records and audit bodies stay readable: the tombstone keeps their key.

use std::collections::HashMap;
use std::time::SystemTime;

use rayon::prelude::*;
use serde::Serialize;

use super::rotate::require_v2_admin;
use super::{tag_hex, tag_of_key, write_tombstone, EPOCH_PREFIX};
use crate::crypto::{Epoch, Header, KeySlot, HEADER_LEN};
use crate::error::{Error, ErrorKind, Result};
use crate::garbage;
use crate::hold::{HoldRecord, Holds};
use crate::record::Record;
use crate::repair::{refuse_beside_prune, REPAIR};
use crate::repository::Repository;
use crate::session::{self, Session, CLOCK_SKEW, SESSION_TIMEOUT};
use crate::storage::ObjectInfo;
use crate::Id;

/// What `key destroy-epoch` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DestroyReport {
    pub epoch: u32,
    /// The tags of the epochs destroyed (two rotations racing can give one number two tags).
    pub tags: Vec<String>,
    /// Tombstones written.
    pub tombstones: Vec<String>,
    /// Epoch objects deleted: with them, the keys.
    pub deleted: Vec<String>,
    /// Sealed objects whose headers were read to learn which epoch sealed them.
    pub objects_scanned: usize,
    /// Index files that were sealed under the epoch, written again under the current one.
    pub index_files_resealed: usize,
    /// The epoch had been destroyed already; only a leftover epoch object (a destroy that was
    /// killed after its tombstone) was deleted, if any.
    pub already_destroyed: bool,
}

/// How many of a list of blockers a message names before it says "and N more".
const NAMED: usize = 10;

/// Destroy epoch `number` (administrators of v2 repositories only).
pub fn destroy_epoch(repo: &Repository, number: u32) -> Result<DestroyReport> {
    require_v2_admin(repo, "destroying a key epoch")?;
    // Another process may have rotated since this handle was opened: the current epoch (which
    // re-sealed index files go under) and the targets come from what storage holds now.
    let repo = repo.refreshed()?;
    let keyring = repo.keyring();
    let targets: Vec<&Epoch> = keyring
        .epochs
        .iter()
        .filter(|e| e.epoch == number)
        .collect();
    if targets.is_empty() {
        return Err(Error::Invalid(format!(
            "this repository has no key epoch {number}: `lifeline key list` shows its epochs"
        )));
    }
    let mut report = DestroyReport {
        epoch: number,
        tags: targets.iter().map(|e| tag_hex(e.tag)).collect(),
        ..DestroyReport::default()
    };
    let live: Vec<&Epoch> = targets
        .iter()
        .copied()
        .filter(|e| e.destroyed.is_none())
        .collect();
    if live.is_empty() {
        report.already_destroyed = true;
        report.deleted = delete_epoch_objects(&repo, &targets)?;
        return Ok(report);
    }
    let current = keyring.current()?;
    if live.iter().any(|e| e.tag == current.tag) {
        return Err(Error::EpochNeeded {
            epoch: number,
            needs: vec!["it is the current epoch: everything written now is sealed under it".into()],
            fixes: vec![
                "run `lifeline key rotate`".into(),
                format!("run `lifeline key destroy-epoch {number}` again: it names what else still needs the epoch"),
            ],
        });
    }
    let tags: Vec<u32> = live.iter().map(|e| e.tag).collect();

    // A session like a repair's, so that no prune or repair rewrites the index beside the
    // re-sealing below, and a prune waits for it.
    let session = Session::start_sealing(repo.shared_storage(), REPAIR, Some(current.tag))?;
    refuse_beside_prune(&repo, &session)?;
    let now = session.started();
    let replaced_at = replaced_at(&repo, &live)?;
    let mut needs = Vec::new();
    let mut fixes = Vec::new();
    // Comes last among the steps: the others take longer.
    let mut wait_until = None;
    if let Some(at) = replaced_at {
        if now < at + SESSION_TIMEOUT {
            needs.push(format!(
                "it was replaced {} ago: a process that opened the repository before may still seal new objects under it",
                crate::retention::human_duration(now.duration_since(at).unwrap_or_default())
            ));
            let wait = (at + SESSION_TIMEOUT)
                .duration_since(now)
                .unwrap_or_default();
            wait_until = Some(
                (chrono::Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default())
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            );
        }
    }
    let sessions: Vec<String> = session::list(repo.storage(), now)?
        .into_iter()
        .filter(|s| s.live && s.session != session.id())
        .filter(|s| match s.epoch {
            Some(tag) => tags.contains(&tag),
            // A marker that does not say: sessions that started before the rotation may.
            None => replaced_at.is_none_or(|at| s.started <= at + CLOCK_SKEW),
        })
        .map(|s| {
            format!(
                "a {} session on {} (process {}, since {}) seals under it",
                s.command, s.hostname, s.pid, s.started_at
            )
        })
        .collect();
    if !sessions.is_empty() {
        needs.extend(sessions);
        fixes.push("let those sessions finish (one that died is presumed dead an hour after its last heartbeat)".into());
    }

    let mut scanned = Scan::default();
    let mut prefixes = vec!["snapshots/", "data/", "wal/", "garbage/", "index/"];
    // Only a legacy epoch's tombstone loses the record key that hold records are sealed with.
    if live.iter().any(|e| e.legacy) {
        prefixes.push(HoldRecord::PREFIX);
    }
    for prefix in prefixes {
        let found = headers(&repo, prefix)?;
        report.objects_scanned += found.len();
        scanned.by_prefix.insert(
            prefix,
            found
                .into_iter()
                .filter(|(_, tag)| tags.contains(tag))
                .map(|(info, _)| info)
                .collect(),
        );
    }
    scanned.explain(&repo, number, &live, &mut needs, &mut fixes)?;
    if !needs.is_empty() {
        fixes.push(match wait_until {
            Some(t) => format!(
                "run `lifeline key destroy-epoch {number}` again, after {t} (an hour after the rotation)"
            ),
            None => format!("run `lifeline key destroy-epoch {number}` again"),
        });
        return Err(Error::EpochNeeded {
            epoch: number,
            needs,
            fixes,
        });
    }

    // Index files describe packs of every epoch: written again under the current epoch, the new
    // file first, so every pack is named by some readable file at every moment.
    let index_files = scanned.take("index/");
    session.ensure_trusted()?;
    index_files.par_iter().try_for_each(|info| {
        let packs = match repo.load_index_file(&info.key) {
            Ok(packs) => packs,
            // Superseded by a prune since the scan.
            Err(Error::ObjectMissing { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        let bytes = crate::index::seal(repo.keyring(), &packs)?;
        repo.storage()
            .put(&format!("index/{}", Id::of_stored(&bytes)), &bytes)?;
        repo.storage().delete(&info.key)
    })?;
    report.index_files_resealed = index_files.len();

    // The tombstone before the deletion: killed in between, the tombstone wins and the next run
    // deletes the epoch object.
    session.ensure_trusted()?;
    for epoch in &live {
        report
            .tombstones
            .push(write_tombstone(repo.storage(), keyring, epoch)?);
    }
    report.deleted = delete_epoch_objects(&repo, &targets)?;
    session.end();
    Ok(report)
}

/// When the epochs were replaced: the earliest storage time of an epoch object ranked above
/// them. A writer that read the keyring after that seals under a newer epoch.
fn replaced_at(repo: &Repository, live: &[&Epoch]) -> Result<Option<SystemTime>> {
    let rank = |e: &Epoch| (e.epoch, e.created.clone(), e.tag);
    let Some(highest) = live.iter().map(|e| rank(e)).max() else {
        return Ok(None);
    };
    let newer: Vec<u32> = repo
        .keyring()
        .epochs
        .iter()
        .filter(|e| rank(e) > highest)
        .map(|e| e.tag)
        .collect();
    Ok(repo
        .storage()
        .list(EPOCH_PREFIX)?
        .into_iter()
        .filter(|o| tag_of_key(&o.key).is_some_and(|t| newer.contains(&t)))
        .map(|o| o.modified)
        .min())
}

/// Delete every epoch object of `epochs` (a racing writer may have stored one twice).
fn delete_epoch_objects(repo: &Repository, epochs: &[&Epoch]) -> Result<Vec<String>> {
    let mut deleted = Vec::new();
    for epoch in epochs {
        let prefix = format!("{EPOCH_PREFIX}{}-", tag_hex(epoch.tag));
        for info in repo.storage().list(&prefix)? {
            repo.storage().delete(&info.key)?;
            deleted.push(info.key);
        }
    }
    Ok(deleted)
}

/// Every sealed object under `prefix` with the epoch tag its header carries. An object deleted
/// since the listing is left out; one whose header is damaged too (`check` names it: it is not
/// readable under any epoch).
fn headers(repo: &Repository, prefix: &str) -> Result<Vec<(ObjectInfo, u32)>> {
    let listed = repo.storage().list(prefix)?;
    let read: Vec<Option<(ObjectInfo, u32)>> = listed
        .into_par_iter()
        .map(|info| {
            let bytes = match repo.storage().get_range(&info.key, 0, HEADER_LEN as u64) {
                Ok(b) => b,
                Err(Error::ObjectMissing { .. }) => return Ok(None),
                Err(e) if e.kind() == ErrorKind::Damaged => {
                    tracing::warn!("{e}");
                    return Ok(None);
                }
                Err(e) => return Err(e),
            };
            match Header::parse(&bytes, &info.key) {
                Ok(h) => Ok(Some((info, h.epoch))),
                Err(e) => {
                    tracing::warn!("{e}");
                    Ok(None)
                }
            }
        })
        .collect::<Result<_>>()?;
    Ok(read.into_iter().flatten().collect())
}

/// The objects sealed under the epochs being destroyed, by prefix.
#[derive(Default)]
struct Scan {
    by_prefix: HashMap<&'static str, Vec<ObjectInfo>>,
}

impl Scan {
    fn take(&mut self, prefix: &str) -> Vec<ObjectInfo> {
        self.by_prefix.remove(prefix).unwrap_or_default()
    }

    /// What of the scan keeps the epochs, one line each, and how to release it.
    fn explain(
        &mut self,
        repo: &Repository,
        number: u32,
        live: &[&Epoch],
        needs: &mut Vec<String>,
        fixes: &mut Vec<String>,
    ) -> Result<()> {
        let snapshots = self.take("snapshots/");
        if !snapshots.is_empty() {
            let holds = Holds::load(repo)?;
            let mut lines: Vec<String> = snapshots
                .iter()
                .map(|info| {
                    let name = info.key.trim_start_matches("snapshots/");
                    let Some(id) = Id::from_hex(name) else {
                        return format!("snapshot {name}");
                    };
                    let what = match repo.load_snapshot(&id) {
                        Ok(s) => format!(
                            "snapshot {} ({}, {} on {})",
                            id.short(),
                            s.time,
                            s.paths.join(" "),
                            s.hostname
                        ),
                        Err(_) => format!("snapshot {}", id.short()),
                    };
                    match holds.get(&id) {
                        Some(h) => format!("{what}, held: {}", h.reason),
                        None => what,
                    }
                })
                .collect();
            lines.sort();
            needs.push(format!(
                "{} snapshot(s) are sealed under it: {}",
                lines.len(),
                named(&lines)
            ));
            fixes.push(format!(
                "forget them (`lifeline forget ID ...`{})",
                if lines.iter().any(|l| l.contains(", held: ")) {
                    "; a held one only after `lifeline hold remove ID`"
                } else {
                    ""
                }
            ));
        }
        let packs = self.take("data/");
        if !packs.is_empty() {
            let bytes: u64 = packs.iter().map(|p| p.size).sum();
            needs.push(format!(
                "{} pack(s) ({bytes} bytes) are sealed under it, which later snapshots may share",
                packs.len()
            ));
            fixes.push(format!(
                "run `lifeline prune --repack-epoch {number}`: it re-seals under the current epoch what kept snapshots still need, and marks the epoch's packs"
            ));
            fixes.push("run `lifeline prune` again once the grace period (--grace, 24 h by default) has passed: it deletes them".into());
        }
        let wal = self.take("wal/");
        if !wal.is_empty() {
            let keys: Vec<String> = wal.iter().map(|o| o.key.clone()).collect();
            needs.push(format!(
                "{} WAL object(s) are sealed under it: {}",
                keys.len(),
                named(&keys)
            ));
            fixes.push("forget the base backups that need them: `lifeline forget` expires the WAL no kept backup needs".into());
        }
        let marks = self.take("garbage/");
        if !marks.is_empty() {
            let keys: Vec<String> = marks.iter().map(|o| o.key.clone()).collect();
            needs.push(format!(
                "{} prune mark(s) are sealed under it: {}",
                keys.len(),
                named(&keys)
            ));
            fixes.push("run `lifeline prune` once their grace period has passed, which carries them out and deletes them".into());
        }
        // An index file a pending mark supersedes is deleted when the mark is carried out; written
        // again, it would outlive the packs it names.
        let index_files = self.by_prefix.get("index/").cloned().unwrap_or_default();
        if !index_files.is_empty() {
            let superseded: Vec<Id> = garbage::load(repo)?
                .items
                .iter()
                .flat_map(|m| m.record.indexes.iter().copied())
                .collect();
            let pending: Vec<String> = index_files
                .iter()
                .filter(|o| {
                    Id::from_hex(o.key.trim_start_matches("index/"))
                        .is_some_and(|id| superseded.contains(&id))
                })
                .map(|o| o.key.clone())
                .collect();
            if !pending.is_empty() {
                needs.push(format!(
                    "{} index file(s) sealed under it are superseded by a prune mark not yet carried out: {}",
                    pending.len(),
                    named(&pending)
                ));
                fixes.push("run `lifeline prune` once the mark's grace period has passed".into());
            }
        }
        let holds = self.take(HoldRecord::PREFIX);
        if live.iter().any(|e| e.legacy) {
            // A legacy epoch's record key was its meta key, which the tombstone cannot keep.
            if !holds.is_empty() {
                let hold_records: Vec<String> = holds.iter().map(|o| o.key.clone()).collect();
                needs.push(format!(
                    "it is a legacy epoch (made from format v1), whose records are destroyed with it, and {} hold record(s) are sealed under it: {}; lifeline decides no hold with a hold record it cannot read",
                    hold_records.len(),
                    named(&hold_records)
                ));
                fixes.push(format!(
                    "keep epoch {number}: the hold history must stay readable ({} records are never deleted)",
                    HoldRecord::PREFIX
                ));
            }
            let v1_slots: Vec<String> = repo
                .storage()
                .list("keys/")?
                .into_iter()
                .filter(|o| {
                    repo.storage()
                        .get(&o.key)
                        .ok()
                        .and_then(|b| KeySlot::from_json(&b, &o.key).ok())
                        .is_some_and(|s| s.version == 1)
                })
                .map(|o| o.key)
                .collect();
            if !v1_slots.is_empty() {
                needs.push(format!(
                    "format v1 key slot(s) still hold its keys: {}",
                    named(&v1_slots)
                ));
                fixes.push("remove them (`lifeline key remove ID`), or finish `lifeline migrate --remove-unconverted`".into());
            }
        }
        Ok(())
    }
}

/// The first [`NAMED`] of `items`, and how many more.
fn named(items: &[String]) -> String {
    let mut text = items
        .iter()
        .take(NAMED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > NAMED {
        text.push_str(&format!(" and {} more", items.len() - NAMED));
    }
    text
}
