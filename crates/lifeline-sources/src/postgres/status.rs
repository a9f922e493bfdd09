//! What `pg status` reports: base backups, the archive per timeline with its gaps, the age of the
//! newest archived WAL (the data that would be lost right now; a part `pg receive-wal` streamed
//! counts), and the window PITR can reach.

use lifeline_repo::Repository;
use serde::Serialize;

use super::archive::{self, Archive, Segment};
use super::catalog::{self, BaseBackup};
use super::error::Result;

#[derive(Debug, Serialize)]
pub struct BackupLine {
    pub id: String,
    pub backup_type: String,
    pub timeline: u32,
    pub start_lsn: String,
    pub stop_lsn: String,
    pub stop_time: String,
    pub bytes: u64,
    pub server_version: String,
    /// Whether the WAL from its start to its stop is in the archive.
    pub restorable: bool,
}

#[derive(Debug, Serialize)]
pub struct TimelineLine {
    pub timeline: u32,
    pub segments: usize,
    /// Contiguous ranges as (first, last) segment names.
    pub ranges: Vec<(String, String)>,
    /// Segments missing between ranges.
    pub gaps: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub system_id: String,
    pub backups: Vec<BackupLine>,
    pub timelines: Vec<TimelineLine>,
    pub newest_wal: Option<String>,
    pub newest_wal_archived_at: Option<String>,
    /// Seconds since the newest WAL was archived: the recovery point objective right now.
    pub newest_wal_age_seconds: Option<i64>,
    /// The earliest point PITR can reach (the end of the oldest restorable backup).
    pub pitr_earliest: Option<String>,
    /// The latest point PITR can reach without a gap (when the last usable segment was archived).
    pub pitr_latest: Option<String>,
    /// The first missing segment between the newest restorable backup and the newest archived WAL.
    pub pitr_blocked_at: Option<String>,
    /// Other histories that follow the newest backup (a timeline that went on after another
    /// branched off it): restores to a time after the fork must name a timeline.
    pub forks: Vec<String>,
}

fn time_of(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(i64::try_from(ms).unwrap_or(0))
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

fn age_seconds(stored_at_ms: u64) -> i64 {
    (chrono::Utc::now().timestamp_millis() - i64::try_from(stored_at_ms).unwrap_or(0)) / 1000
}

pub fn status(repo: &Repository, system_id: Option<u64>) -> Result<Status> {
    let backups = catalog::of_cluster(catalog::base_backups(repo)?, system_id)?;
    let first = &backups[0];
    let archive = Archive::load(repo, first.system_id, first.segment_size)?;
    // What `recovery_target_timeline = 'latest'` would follow from a backup.
    let latest_path = |b: &BaseBackup| {
        let newest = archive
            .descendants(b.timeline, b.start)
            .last()
            .copied()
            .unwrap_or(b.timeline);
        archive
            .path(b.timeline, b.start, newest)
            .unwrap_or_default()
    };
    let restorable: Vec<bool> = backups
        .iter()
        .map(|b| {
            let walk = archive.walk(
                &latest_path(b),
                b.start.segment(b.segment_size),
                b.stop.segment(b.segment_size),
            );
            walk.gap.is_none() && walk.limit.is_none_or(|(lsn, _)| b.stop <= lsn)
        })
        .collect();
    let lines = backups
        .iter()
        .zip(&restorable)
        .map(|(b, &restorable)| BackupLine {
            id: b.id.to_hex(),
            backup_type: b
                .snapshot
                .source
                .get(catalog::keys::BACKUP_TYPE)
                .cloned()
                .unwrap_or_default(),
            timeline: b.timeline,
            start_lsn: b.start.to_string(),
            stop_lsn: b.stop.to_string(),
            stop_time: b.stop_time.to_rfc3339(),
            bytes: b.snapshot.summary.bytes,
            server_version: b
                .snapshot
                .source
                .get(catalog::keys::SERVER_VERSION)
                .cloned()
                .unwrap_or_default(),
            restorable,
        })
        .collect();
    let timelines = archive
        .segments
        .keys()
        .map(|&tl| {
            let ranges = archive.ranges(tl);
            let name = |segno| {
                archive.name(Segment {
                    timeline: tl,
                    segno,
                })
            };
            TimelineLine {
                timeline: tl,
                segments: archive.segments.get(&tl).map_or(0, |s| s.len()),
                gaps: ranges
                    .windows(2)
                    .flat_map(|w| (w[0].1 + 1)..w[1].0)
                    .map(name)
                    .collect(),
                ranges: ranges.iter().map(|&(a, b)| (name(a), name(b))).collect(),
            }
        })
        .collect();

    let mut status = Status {
        system_id: first.system_id.to_string(),
        backups: lines,
        timelines,
        newest_wal: None,
        newest_wal_archived_at: None,
        newest_wal_age_seconds: None,
        pitr_earliest: backups
            .iter()
            .zip(&restorable)
            .find(|(_, &r)| r)
            .map(|(b, _)| b.stop_time.to_rfc3339()),
        pitr_latest: None,
        pitr_blocked_at: None,
        forks: Vec::new(),
    };
    let Some((newest_backup, _)) = backups.iter().zip(&restorable).rev().find(|(_, &r)| r) else {
        return Ok(status);
    };
    let legs = latest_path(newest_backup);
    if let Some(newest) = archive.newest(&legs) {
        let at = archive::archived_at(repo, &archive, newest)?;
        status.newest_wal = Some(archive.name(newest));
        status.newest_wal_archived_at = Some(time_of(at));
        status.newest_wal_age_seconds = Some(age_seconds(at));
        let walk = archive.walk(
            &legs,
            newest_backup.start.segment(newest_backup.segment_size),
            newest.segno,
        );
        status.pitr_blocked_at = walk
            .gap
            .or(walk.limit.map(|(_, seg)| seg))
            .map(|g| archive.name(g));
        status.forks = archive
            .forks(&legs, newest_backup.start)
            .into_iter()
            .map(|(_, f)| f)
            .collect();
        if let Some(last) = walk.last {
            let archived = if last == newest {
                at
            } else {
                archive::archived_at(repo, &archive, last)?
            };
            // Never before the backup's own end, which the archive time (shown to the second) may
            // precede by a moment.
            let shown_ms = archived / 1000 * 1000;
            status.pitr_latest = Some(
                if i64::try_from(shown_ms).unwrap_or(i64::MAX)
                    < newest_backup.stop_time.timestamp_millis()
                {
                    newest_backup.stop_time.to_rfc3339()
                } else {
                    time_of(archived)
                },
            );
            // `pg receive-wal`'s part of the segment after the newest: recovery reads it too, so
            // only what was written after it was stored is at risk.
            if let Some((_, part)) = Some(last)
                .filter(|&l| l == newest && walk.gap.is_none())
                .and_then(|l| archive.streamed_after(l))
            {
                let at = archive::streamed_at(repo, &archive, part)?;
                status.newest_wal = Some(part.name.clone());
                status.newest_wal_archived_at = Some(time_of(at));
                status.newest_wal_age_seconds = Some(age_seconds(at));
                status.pitr_latest = Some(time_of(at));
            }
        }
    }
    Ok(status)
}
