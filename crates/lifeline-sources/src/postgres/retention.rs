//! Retention for PostgreSQL: what a kept base backup needs (the full backup under an incremental
//! one, the WAL from its start on, along every timeline it can follow), the backup that opens the
//! point-in-time window `--keep-pitr` asks for, and the WAL no kept backup needs — which expiry
//! removes and copies leave out.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use lifeline_repo::snapshot::Snapshot;
use lifeline_repo::{Id, Repository};
use serde::Serialize;

use super::archive::Archive;
use super::catalog::{self, BaseBackup};
use super::error::{Error, Result};
use super::wal::{self, WalKind, WalName};

/// The snapshots a PostgreSQL snapshot needs to be restored: an incremental backup's parent.
pub fn depends_on(snapshot: &Snapshot) -> Vec<Id> {
    if snapshot.kind != catalog::KIND {
        return Vec::new();
    }
    snapshot
        .source
        .get(catalog::keys::PARENT_BACKUP)
        .and_then(|p| Id::from_hex(p))
        .into_iter()
        .collect()
}

/// Per cluster, the newest base backup completed at or before `now − window`: recovery to any time
/// in the window starts from it, so it is kept (with the WAL after it).
pub fn pitr_anchors(
    repo: &Repository,
    window: Duration,
    now: DateTime<Utc>,
) -> Result<HashMap<Id, String>> {
    let horizon = now - chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
    let mut anchors: BTreeMap<u64, &BaseBackup> = BTreeMap::new();
    let backups = catalog::base_backups(repo)?;
    for b in &backups {
        if b.stop_time.with_timezone(&Utc) <= horizon {
            anchors.insert(b.system_id, b);
        }
    }
    Ok(anchors
        .into_values()
        .map(|b| {
            (
                b.id,
                format!(
                    "point-in-time recovery back to {} (--keep-pitr {})",
                    horizon.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    lifeline_repo::retention::human_duration(window)
                ),
            )
        })
        .collect())
}

/// What kept base backups need of one cluster's archive.
pub(crate) struct Needs {
    /// Per timeline, the first segment needed; absent: nothing on that timeline is needed.
    from: BTreeMap<u32, u64>,
    /// Timelines newer than every kept backup's: a backup of them may be under way; all kept.
    newer_than: u32,
    /// History files of timelines below this are not read by any recovery from a kept backup.
    history_from: u32,
}

impl Needs {
    pub(crate) fn of(archive: &Archive, kept: &[&BaseBackup]) -> Needs {
        let mut from: BTreeMap<u32, u64> = BTreeMap::new();
        for b in kept {
            for target in archive.descendants(b.timeline, b.start) {
                let Some(legs) = archive.path(b.timeline, b.start, target) else {
                    continue;
                };
                for leg in legs {
                    let first = from.entry(leg.timeline).or_insert(leg.begin);
                    *first = (*first).min(leg.begin);
                }
            }
        }
        Needs {
            from,
            newer_than: kept.iter().map(|b| b.timeline).max().unwrap_or(u32::MAX),
            history_from: kept.iter().map(|b| b.timeline).min().unwrap_or(0),
        }
    }

    /// The first segment of `timeline` some kept backup needs.
    pub(crate) fn first_needed(&self, timeline: u32) -> Option<u64> {
        self.from.get(&timeline).copied()
    }

    /// Whether some kept backup may need the WAL file `name`.
    fn needs(&self, name: &WalName, segment_size: u64) -> bool {
        if name.timeline > self.newer_than {
            return true;
        }
        match name.kind {
            // Recovery reads the target timeline's history, and looks for newer timelines by
            // probing 1, 2, … past its own: every history file from the oldest kept backup's
            // timeline on is needed.
            WalKind::History => name.timeline >= self.history_from,
            // Segments, segments cut at a switch, backup files and the parts `pg receive-wal`
            // streamed: by the segment they belong to.
            WalKind::Segment { .. }
            | WalKind::Partial { .. }
            | WalKind::Backup
            | WalKind::Streamed { .. } => {
                match (self.from.get(&name.timeline), name.segment_of(segment_size)) {
                    (Some(&first), Some(segno)) => segno >= first,
                    (Some(_), None) => true,
                    (None, _) => false,
                }
            }
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct TimelineExpiry {
    pub timeline: u32,
    /// WAL files removed (segments, partial segments, backup and history files).
    pub files: usize,
    pub first: Option<String>,
    pub last: Option<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct ClusterExpiry {
    pub system_id: String,
    pub timelines: Vec<TimelineExpiry>,
    pub bytes: u64,
    #[serde(skip)]
    keys: Vec<String>,
}

/// The WAL files no kept base backup needs.
#[derive(Debug, Default, Serialize)]
pub struct WalExpiry {
    pub clusters: Vec<ClusterExpiry>,
}

impl WalExpiry {
    pub fn files(&self) -> usize {
        self.clusters.iter().map(|c| c.keys.len()).sum()
    }
}

/// Plan WAL expiry for the base backups among `kept`. A cluster none of whose backups is kept is
/// left alone (it may be new, its first backup under way). Refused when a kept backup that is
/// restorable now would not be afterwards.
pub fn plan_expiry(repo: &Repository, kept: &HashSet<Id>) -> Result<WalExpiry> {
    let backups = catalog::base_backups(repo)?;
    let mut clusters: BTreeMap<u64, Vec<&BaseBackup>> = BTreeMap::new();
    for b in backups.iter().filter(|b| kept.contains(&b.id)) {
        clusters.entry(b.system_id).or_default().push(b);
    }
    let mut plan = WalExpiry::default();
    for (system_id, kept) in clusters {
        let segment_size = kept[0].segment_size;
        let archive = Archive::load(repo, system_id, segment_size)?;
        let needs = Needs::of(&archive, &kept);
        let mut cluster = ClusterExpiry {
            system_id: system_id.to_string(),
            ..ClusterExpiry::default()
        };
        let mut per_timeline: BTreeMap<u32, TimelineExpiry> = BTreeMap::new();
        let mut objects: Vec<(WalName, lifeline_repo::storage::ObjectInfo)> = repo
            .storage()
            .list(&wal::archive_prefix(system_id))?
            .into_iter()
            .filter_map(|o| Some((WalName::parse(o.key.rsplit('/').next()?).ok()?, o)))
            .collect();
        objects.sort_by(|a, b| a.1.key.cmp(&b.1.key));
        let mut remaining = archive.clone();
        for (name, object) in objects {
            if needs.needs(&name, segment_size) {
                continue;
            }
            let t = per_timeline
                .entry(name.timeline)
                .or_insert_with(|| TimelineExpiry {
                    timeline: name.timeline,
                    ..TimelineExpiry::default()
                });
            t.files += 1;
            if t.first.is_none() {
                t.first = Some(name.name.clone());
            }
            t.last = Some(name.name.clone());
            cluster.bytes += object.size;
            if let Some(segno) = name.segment_number(segment_size) {
                if matches!(name.kind, WalKind::Segment { .. }) {
                    remaining.remove(name.timeline, segno);
                }
            }
            if name.kind == WalKind::History {
                remaining.histories.remove(&name.timeline);
            }
            cluster.keys.push(object.key);
        }
        // The safety net under the rules above: every kept backup restorable now stays restorable.
        for b in &kept {
            if restorable(&archive, b) && !restorable(&remaining, b) {
                return Err(Error::Invalid(format!(
                    "refusing to expire WAL: base backup {} would no longer be restorable; nothing was removed",
                    b.id.short()
                )));
            }
        }
        cluster.timelines = per_timeline.into_values().collect();
        if !cluster.keys.is_empty() {
            plan.clusters.push(cluster);
        }
    }
    Ok(plan)
}

/// Whether the WAL from `b`'s start to its stop is in `archive` along its own timeline's path.
fn restorable(archive: &Archive, b: &BaseBackup) -> bool {
    let Some(legs) = archive.path(b.timeline, b.start, b.timeline) else {
        return false;
    };
    let walk = archive.walk(
        &legs,
        b.start.segment(b.segment_size),
        b.stop.segment(b.segment_size),
    );
    walk.gap.is_none()
}

/// Remove the planned WAL files. Returns how many.
pub fn expire(repo: &Repository, plan: &WalExpiry) -> Result<usize> {
    use rayon::prelude::*;
    let keys: Vec<&String> = plan.clusters.iter().flat_map(|c| c.keys.iter()).collect();
    keys.par_iter()
        .try_for_each(|key| repo.delete_named(key))
        .map_err(Error::from)?;
    Ok(keys.len())
}

/// What a WAL copy did.
#[derive(Debug, Default, Serialize)]
pub struct WalCopy {
    pub files: usize,
    pub bytes: u64,
    /// Files the destination already had.
    pub present: usize,
}

/// Copy to `dst` the WAL its base backups need that it lacks, each file re-sealed for its keys with
/// its original archive time. WAL the destination's own retention would expire is not copied, so a
/// copy after an expiry does not bring it back.
pub fn copy_wal(src: &Repository, dst: &Repository) -> Result<WalCopy> {
    use rayon::prelude::*;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    let backups = catalog::base_backups(dst)?;
    let mut clusters: BTreeMap<u64, Vec<&BaseBackup>> = BTreeMap::new();
    for b in &backups {
        clusters.entry(b.system_id).or_default().push(b);
    }
    let mut wanted = Vec::new();
    let present = AtomicUsize::new(0);
    for (system_id, kept) in clusters {
        let segment_size = kept[0].segment_size;
        let archive = Archive::load(src, system_id, segment_size)?;
        let needs = Needs::of(&archive, &kept);
        let prefix = wal::archive_prefix(system_id);
        let there: HashSet<String> = dst
            .storage()
            .list(&prefix)?
            .into_iter()
            .map(|o| o.key)
            .collect();
        for o in src.storage().list(&prefix)? {
            let Some(name) = o
                .key
                .rsplit('/')
                .next()
                .and_then(|n| WalName::parse(n).ok())
            else {
                continue;
            };
            if !needs.needs(&name, segment_size) {
                continue;
            }
            if there.contains(&o.key) {
                present.fetch_add(1, Ordering::Relaxed);
            } else {
                wanted.push(o);
            }
        }
    }
    let bytes = AtomicU64::new(0);
    wanted.par_iter().try_for_each(|o| -> Result<()> {
        src.copy_named_to(dst, &o.key, wal::WAL_COMPRESSION)?;
        bytes.fetch_add(o.size, Ordering::Relaxed);
        Ok(())
    })?;
    Ok(WalCopy {
        files: wanted.len(),
        bytes: bytes.into_inner(),
        present: present.into_inner(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_streamed_part_is_needed_as_its_segment_is() {
        let needs = Needs {
            from: BTreeMap::from([(1, 5)]),
            newer_than: 1,
            history_from: 1,
        };
        let size = wal::DEFAULT_SEGMENT_SIZE;
        let part = |segno| {
            WalName::parse(&wal::streamed_name(
                &wal::segment_name(1, segno, size),
                0x8000,
            ))
            .expect("streamed")
        };
        assert!(!needs.needs(&part(4), size), "before every kept backup");
        assert!(needs.needs(&part(5), size));
        assert!(needs.needs(&part(9), size));
    }
}
