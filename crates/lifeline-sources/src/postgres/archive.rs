//! The WAL archive of one cluster as recovery needs to see it: which segments each timeline has,
//! how timelines branch, where the gaps are, and how far recovery can go from a given backup.

use std::collections::{BTreeMap, BTreeSet};

use lifeline_repo::Repository;

use super::error::{Error, Result};
use super::wal::{self, Branch, Lsn, WalKind, WalName};

#[derive(Debug, Default)]
pub struct Archive {
    pub system_id: u64,
    pub segment_size: u64,
    /// Full segments by timeline.
    pub segments: BTreeMap<u32, BTreeSet<u64>>,
    /// Each timeline's ancestry from its `.history` file (absent for timeline 1).
    pub histories: BTreeMap<u32, Vec<Branch>>,
    pub partials: usize,
    pub backup_files: usize,
}

/// A timeline to follow from `begin` (the segment holding its switch point) on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leg {
    pub timeline: u32,
    pub begin: u64,
}

/// A segment recovery will ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub timeline: u32,
    pub segno: u64,
}

impl Archive {
    /// List the archive of `system_id` (one LIST of `wal/<id>/`, plus each history file).
    pub fn load(repo: &Repository, system_id: u64, segment_size: u64) -> Result<Archive> {
        let prefix = wal::archive_prefix(system_id);
        let mut archive = Archive {
            system_id,
            segment_size,
            ..Archive::default()
        };
        for object in repo.storage().list(&prefix)? {
            let file = object.key.rsplit('/').next().unwrap_or_default();
            let Ok(name) = WalName::parse(file) else {
                tracing::warn!(
                    "ignoring {} in the WAL archive: not a WAL file name",
                    object.key
                );
                continue;
            };
            match name.kind {
                WalKind::Segment { .. } => {
                    if let Some(segno) = name.segment_number(segment_size) {
                        archive
                            .segments
                            .entry(name.timeline)
                            .or_default()
                            .insert(segno);
                    }
                }
                WalKind::Partial { .. } => archive.partials += 1,
                WalKind::Backup => archive.backup_files += 1,
                WalKind::History => {
                    let data = repo.get_named(&object.key)?.data;
                    let text = String::from_utf8_lossy(&data);
                    archive
                        .histories
                        .insert(name.timeline, wal::parse_history(&text)?);
                }
            }
        }
        Ok(archive)
    }

    /// Every timeline the archive knows of.
    pub fn timelines(&self) -> BTreeSet<u32> {
        self.segments
            .keys()
            .chain(self.histories.keys())
            .copied()
            .collect()
    }

    /// Whether `ancestor` is `timeline` or one it descends from.
    fn descends(&self, timeline: u32, ancestor: u32) -> bool {
        timeline == ancestor
            || self
                .histories
                .get(&timeline)
                .is_some_and(|h| h.iter().any(|b| b.parent == ancestor))
    }

    /// The newest timeline that descends from `from` (what `recovery_target_timeline = 'latest'`
    /// follows), and the legs recovery takes to it.
    pub fn path_from(&self, from: u32, from_lsn: Lsn) -> (u32, Vec<Leg>) {
        let target = self
            .timelines()
            .into_iter()
            .filter(|&t| self.descends(t, from))
            .max()
            .unwrap_or(from);
        let mut legs = vec![Leg {
            timeline: from,
            begin: from_lsn.segment(self.segment_size),
        }];
        if let Some(history) = self.histories.get(&target) {
            // A history lists each ancestor with the point where its child branched off it.
            let mut ancestors: Vec<(u32, Lsn)> =
                history.iter().map(|b| (b.parent, b.switch)).collect();
            ancestors.sort_by_key(|(_, switch)| *switch);
            let children: Vec<u32> = ancestors
                .iter()
                .skip(1)
                .map(|(t, _)| *t)
                .chain(std::iter::once(target))
                .collect();
            for ((parent, switch), child) in ancestors.iter().zip(children) {
                if *parent < from || child <= from {
                    continue;
                }
                legs.push(Leg {
                    timeline: child,
                    begin: switch.segment(self.segment_size),
                });
            }
        }
        (target, legs)
    }

    /// The timeline recovery reads segment `segno` from.
    pub fn timeline_for(legs: &[Leg], segno: u64) -> u32 {
        legs.iter()
            .rev()
            .find(|leg| leg.begin <= segno)
            .or(legs.first())
            .map_or(1, |leg| leg.timeline)
    }

    fn has(&self, segment: Segment) -> bool {
        self.segments
            .get(&segment.timeline)
            .is_some_and(|s| s.contains(&segment.segno))
    }

    /// The newest segment archived on any leg.
    pub fn newest(&self, legs: &[Leg]) -> Option<Segment> {
        legs.iter()
            .filter_map(|leg| {
                let newest = *self.segments.get(&leg.timeline)?.last()?;
                (newest >= leg.begin).then_some(Segment {
                    timeline: leg.timeline,
                    segno: newest,
                })
            })
            .max_by_key(|s| s.segno)
    }

    /// Walk from `from` along `legs` while segments are present. Returns the last present segment
    /// (None when even the first is missing) and the first missing one before `until` (inclusive),
    /// if any.
    pub fn walk(&self, legs: &[Leg], from: u64, until: u64) -> (Option<Segment>, Option<Segment>) {
        let mut last = None;
        for segno in from..=until {
            let segment = Segment {
                timeline: Self::timeline_for(legs, segno),
                segno,
            };
            if !self.has(segment) {
                return (last, Some(segment));
            }
            last = Some(segment);
        }
        (last, None)
    }

    pub fn name(&self, segment: Segment) -> String {
        wal::segment_name(segment.timeline, segment.segno, self.segment_size)
    }

    pub fn key(&self, segment: Segment) -> Result<String> {
        Ok(wal::object_key(
            self.system_id,
            &WalName::parse(&self.name(segment))?,
        ))
    }

    /// Contiguous ranges of segment numbers of one timeline.
    pub fn ranges(&self, timeline: u32) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        for &segno in self.segments.get(&timeline).into_iter().flatten() {
            match out.last_mut() {
                Some((_, end)) if *end + 1 == segno => *end = segno,
                _ => out.push((segno, segno)),
            }
        }
        out
    }
}

/// When the object holding `segment` was archived (ms since the epoch).
pub fn archived_at(repo: &Repository, archive: &Archive, segment: Segment) -> Result<u64> {
    let key = archive.key(segment)?;
    repo.get_named(&key)
        .map(|o| o.stored_at_ms)
        .map_err(|e| match e {
            lifeline_repo::Error::ObjectMissing { .. } => {
                Error::Invalid(format!("{key} vanished from the archive while it was read"))
            }
            other => other.into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEG: u64 = wal::DEFAULT_SEGMENT_SIZE;

    fn archive(segments: &[(u32, &[u64])], histories: &[(u32, &str)]) -> Archive {
        Archive {
            system_id: 1,
            segment_size: SEG,
            segments: segments
                .iter()
                .map(|(t, s)| (*t, s.iter().copied().collect()))
                .collect(),
            histories: histories
                .iter()
                .map(|(t, h)| (*t, wal::parse_history(h).expect("history")))
                .collect(),
            ..Archive::default()
        }
    }

    #[test]
    fn recovery_follows_the_newest_descendant_timeline() {
        // Timeline 2 branched off 1 in segment 5, timeline 3 off 2 in segment 8.
        let a = archive(
            &[(1, &[2, 3, 4, 5, 6]), (2, &[5, 6, 7, 8]), (3, &[8, 9])],
            &[
                (2, "1\t0/5000100\tx"),
                (3, "1\t0/5000100\tx\n2\t0/8000200\ty"),
            ],
        );
        let (target, legs) = a.path_from(1, Lsn(0x200_0028));
        assert_eq!(target, 3);
        assert_eq!(
            legs,
            vec![
                Leg {
                    timeline: 1,
                    begin: 2
                },
                Leg {
                    timeline: 2,
                    begin: 5
                },
                Leg {
                    timeline: 3,
                    begin: 8
                }
            ]
        );
        assert_eq!(Archive::timeline_for(&legs, 4), 1);
        assert_eq!(Archive::timeline_for(&legs, 5), 2);
        assert_eq!(Archive::timeline_for(&legs, 9), 3);
        assert_eq!(
            a.newest(&legs),
            Some(Segment {
                timeline: 3,
                segno: 9
            })
        );
        let (last, gap) = a.walk(&legs, 2, 9);
        assert_eq!(
            last,
            Some(Segment {
                timeline: 3,
                segno: 9
            })
        );
        assert_eq!(gap, None);
    }

    #[test]
    fn a_missing_segment_is_the_first_gap() {
        let a = archive(&[(1, &[3, 4, 6, 7])], &[]);
        let (_, legs) = a.path_from(1, Lsn(0x300_0028));
        let (last, gap) = a.walk(&legs, 3, 7);
        assert_eq!(
            last,
            Some(Segment {
                timeline: 1,
                segno: 4
            })
        );
        assert_eq!(
            gap,
            Some(Segment {
                timeline: 1,
                segno: 5
            })
        );
        assert_eq!(a.ranges(1), vec![(3, 4), (6, 7)]);
    }
}
