//! The WAL archive under `lifeline check`: every base backup's WAL from start to stop is there, no
//! segment a backup's recovery would read is missing in the middle of the archive, and (reading the
//! data) every WAL object opens, authenticates and has its full size.

use std::collections::{BTreeMap, BTreeSet};

use lifeline_repo::check::Problem;
use lifeline_repo::Repository;
use rayon::prelude::*;
use serde::Serialize;

use super::archive::{Archive, Segment};
use super::catalog::{self, BaseBackup};
use super::error::Result;
use super::retention::Needs;
use super::wal::{self, WalKind, WalName};

#[derive(Debug, Default, Serialize)]
pub struct ArchiveReport {
    pub clusters: usize,
    pub wal_objects: usize,
    pub wal_objects_read: usize,
    pub problems: Vec<Problem>,
}

/// Check the archive of every cluster in the repository.
pub fn check(repo: &Repository, read_data: bool) -> Result<ArchiveReport> {
    let objects = repo.storage().list("wal/")?;
    let mut clusters: BTreeMap<u64, Vec<lifeline_repo::storage::ObjectInfo>> = BTreeMap::new();
    for o in objects {
        if let Some(id) = o.key.split('/').nth(1).and_then(|s| s.parse::<u64>().ok()) {
            clusters.entry(id).or_default().push(o);
        }
    }
    // Damaged snapshots are named by the check of the repository; the others' WAL is checked here.
    let backups = catalog::readable_base_backups(repo)?;
    let mut report = ArchiveReport {
        clusters: clusters.len(),
        ..ArchiveReport::default()
    };
    for (system_id, objects) in clusters {
        report.wal_objects += objects.len();
        let mine: Vec<&BaseBackup> = backups
            .iter()
            .filter(|b| b.system_id == system_id)
            .collect();
        let segment_size = mine
            .first()
            .map_or(wal::DEFAULT_SEGMENT_SIZE, |b| b.segment_size);
        match Archive::load(repo, system_id, segment_size) {
            Ok(archive) => structure(&archive, &mine, &mut report.problems),
            Err(e) => report.problems.push(Problem {
                object: wal::archive_prefix(system_id),
                detail: format!("the archive cannot be read: {e}"),
                affected: mine
                    .iter()
                    .map(|b| format!("base backup {}", b.id.short()))
                    .collect(),
            }),
        }
        if read_data {
            report.wal_objects_read += objects.len();
            report.problems.extend(
                objects
                    .par_iter()
                    .filter_map(|o| read(repo, &o.key, segment_size))
                    .collect::<Vec<_>>(),
            );
        }
    }
    Ok(report)
}

/// Backups whose WAL is incomplete, and segments missing where a backup's recovery would read.
fn structure(archive: &Archive, backups: &[&BaseBackup], problems: &mut Vec<Problem>) {
    for b in backups {
        let legs = archive
            .path(b.timeline, b.start, b.timeline)
            .unwrap_or_default();
        let walk = archive.walk(
            &legs,
            b.start.segment(b.segment_size),
            b.stop.segment(b.segment_size),
        );
        if let Some(gap) = walk.gap {
            problems.push(Problem {
                object: archive.key(gap).unwrap_or_else(|_| archive.name(gap)),
                detail: format!(
                    "missing: base backup {} needs every WAL segment from its start ({}) to its stop ({}) and cannot be restored without it",
                    b.id.short(),
                    b.start,
                    b.stop
                ),
                affected: vec![format!("snapshot {} (base backup)", b.id.short())],
            });
        }
    }
    let needs = Needs::of(archive, backups);
    for (&timeline, segments) in &archive.segments {
        let Some(first) = needs.first_needed(timeline) else {
            continue;
        };
        let Some(&last) = segments.last() else {
            continue;
        };
        let missing: BTreeSet<u64> = (first..=last).filter(|s| !segments.contains(s)).collect();
        for segno in missing {
            let segment = Segment { timeline, segno };
            problems.push(Problem {
                object: archive
                    .key(segment)
                    .unwrap_or_else(|_| archive.name(segment)),
                detail: "missing from the archive: point-in-time recovery cannot pass it".into(),
                affected: Vec::new(),
            });
        }
    }
}

/// Open one WAL object whole; a problem if it does not authenticate, or a segment or streamed part
/// does not hold the bytes it should.
fn read(repo: &Repository, key: &str, segment_size: u64) -> Option<Problem> {
    let name = key.rsplit('/').next().and_then(|n| WalName::parse(n).ok());
    let detail = match repo.get_named(key) {
        Err(lifeline_repo::Error::ObjectMissing { .. }) => return None,
        Err(e) => e.to_string(),
        Ok(object) => match name {
            Some(WalName {
                kind: WalKind::Segment { .. },
                ..
            }) if object.data.len() as u64 != segment_size => format!(
                "holds {} bytes, not a whole {segment_size}-byte segment",
                object.data.len()
            ),
            // A streamed part holds exactly as many bytes as its name says.
            Some(WalName {
                kind: WalKind::Streamed { bytes, .. },
                ..
            }) if object.data.len() as u64 != bytes => format!(
                "holds {} bytes, but its name says {bytes}",
                object.data.len()
            ),
            _ => return None,
        },
    };
    Some(Problem {
        object: key.to_string(),
        detail,
        affected: vec!["point-in-time recovery through this WAL file".into()],
    })
}
