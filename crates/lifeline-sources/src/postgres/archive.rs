//! The WAL archive of one cluster as recovery needs to see it: which segments each timeline has,
//! how timelines branch, where the gaps are, and how far recovery can go from a given backup.

use std::collections::{BTreeMap, BTreeSet};

use lifeline_repo::Repository;

use super::error::{Error, Result};
use super::wal::{self, Branch, Lsn, WalKind, WalName};

#[derive(Debug, Default, Clone)]
pub struct Archive {
    pub system_id: u64,
    pub segment_size: u64,
    /// Full segments by timeline.
    pub segments: BTreeMap<u32, BTreeSet<u64>>,
    /// Each timeline's ancestry from its `.history` file (absent for timeline 1).
    pub histories: BTreeMap<u32, Vec<Branch>>,
    /// By timeline and segment, the largest part `pg receive-wal` stored of a segment not (yet)
    /// archived whole.
    pub streamed: BTreeMap<u32, BTreeMap<u64, WalName>>,
}

/// A timeline to follow from `begin` (the segment holding its switch point) on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leg {
    pub timeline: u32,
    pub begin: u64,
    /// Where this timeline left its parent (None for the backup's own timeline).
    pub switch: Option<Lsn>,
}

/// How far a walk through the archive got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Walk {
    /// The last segment recovery can read.
    pub last: Option<Segment>,
    /// The first segment that is missing on every timeline that could supply it.
    pub gap: Option<Segment>,
    /// Recovery can go no further than this LSN, because this newer timeline's segment is missing.
    pub limit: Option<(Lsn, Segment)>,
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
                // PostgreSQL never asks for these during recovery; they are kept, not counted.
                WalKind::Partial { .. } | WalKind::Backup => {}
                // Not a segment recovery can read past: `wal-fetch` serves the largest one only
                // where no whole segment is archived, and recovery ends inside it.
                WalKind::Streamed { bytes, .. } => {
                    if let Some(segno) = name.segment_number(segment_size) {
                        let parts = archive.streamed.entry(name.timeline).or_default();
                        let larger = match parts.get(&segno) {
                            Some(WalName {
                                kind: WalKind::Streamed { bytes: had, .. },
                                ..
                            }) => bytes > *had,
                            _ => true,
                        };
                        if larger {
                            parts.insert(segno, name);
                        }
                    }
                }
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

    /// The streamed part recovery reads after segment `last` (the end of a walk) when the segment
    /// after it was never archived whole: where recovery from this archive really ends.
    pub fn streamed_after(&self, last: Segment) -> Option<(Segment, &WalName)> {
        let next = Segment {
            timeline: last.timeline,
            segno: last.segno + 1,
        };
        if self.has(next) {
            return None;
        }
        let name = self.streamed.get(&next.timeline)?.get(&next.segno)?;
        Some((next, name))
    }

    /// Forget one segment (to judge the archive as it would be without it).
    pub fn remove(&mut self, timeline: u32, segno: u64) {
        if let Some(segments) = self.segments.get_mut(&timeline) {
            segments.remove(&segno);
        }
    }

    /// Every timeline the archive knows of.
    pub fn timelines(&self) -> BTreeSet<u32> {
        self.segments
            .keys()
            .chain(self.histories.keys())
            .copied()
            .collect()
    }

    /// Where `timeline` left `ancestor`, if it descends from it (its history names the switch).
    fn branch_point(&self, timeline: u32, ancestor: u32) -> Option<Lsn> {
        self.histories
            .get(&timeline)?
            .iter()
            .find(|b| b.parent == ancestor)
            .map(|b| b.switch)
    }

    /// Timelines whose history runs through `from` past `from_lsn` (a backup's start): the ones
    /// recovery from that backup can follow. `from` itself is one of them.
    pub fn descendants(&self, from: u32, from_lsn: Lsn) -> Vec<u32> {
        self.timelines()
            .into_iter()
            .chain(std::iter::once(from))
            .filter(|&t| t == from || self.branch_point(t, from).is_some_and(|s| s > from_lsn))
            .collect::<BTreeSet<u32>>()
            .into_iter()
            .collect()
    }

    /// The legs recovery takes from `from` (at `from_lsn`) to `target`, which must be a descendant.
    pub fn path(&self, from: u32, from_lsn: Lsn, target: u32) -> Option<Vec<Leg>> {
        if !self.descendants(from, from_lsn).contains(&target) {
            return None;
        }
        let mut legs = vec![Leg {
            timeline: from,
            begin: from_lsn.segment(self.segment_size),
            switch: None,
        }];
        if let Some(history) = self.histories.get(&target) {
            // A history lists each ancestor with the point where the next timeline left it.
            let mut ancestors: Vec<(u32, Lsn)> =
                history.iter().map(|b| (b.parent, b.switch)).collect();
            ancestors.sort_by_key(|(_, switch)| *switch);
            let children = ancestors
                .iter()
                .skip(1)
                .map(|(t, _)| *t)
                .chain(std::iter::once(target));
            for ((parent, switch), child) in ancestors.iter().zip(children) {
                if *switch <= from_lsn
                    || (*parent != from && !legs.iter().any(|l| l.timeline == *parent))
                {
                    continue;
                }
                legs.push(Leg {
                    timeline: child,
                    begin: switch.segment(self.segment_size),
                    switch: Some(*switch),
                });
            }
        }
        Some(legs)
    }

    /// Other histories that also start from this path: a timeline on the path that went on being
    /// written after the next one left it, or a branch off the path that the path does not take.
    /// Recovery to a time or transaction after such a point could mean either history.
    pub fn forks(&self, legs: &[Leg], from_lsn: Lsn) -> Vec<(Lsn, String)> {
        let mut out = Vec::new();
        for pair in legs.windows(2) {
            let (parent, child) = (pair[0].timeline, pair[1]);
            let continued = self
                .segments
                .get(&parent)
                .and_then(|s| s.last())
                .is_some_and(|&last| last >= child.begin);
            if continued {
                let at = child.switch.unwrap_or_default();
                out.push((
                    at,
                    format!(
                        "timeline {parent} went on after timeline {} branched off it at {at}",
                        child.timeline
                    ),
                ));
            }
        }
        let on_path: BTreeSet<u32> = legs.iter().map(|l| l.timeline).collect();
        for t in self.timelines() {
            if on_path.contains(&t) {
                continue;
            }
            for leg in legs {
                if let Some(switch) = self.branch_point(t, leg.timeline) {
                    let direct = self
                        .histories
                        .get(&t)
                        .and_then(|h| h.iter().max_by_key(|b| b.switch))
                        .is_some_and(|b| b.parent == leg.timeline);
                    if direct && switch > from_lsn {
                        out.push((
                            switch,
                            format!(
                                "timeline {t} branched off timeline {} at {switch}",
                                leg.timeline
                            ),
                        ));
                    }
                }
            }
        }
        out
    }

    /// The timelines recovery may read segment `segno` from, newest first (as PostgreSQL tries them).
    fn candidates(legs: &[Leg], segno: u64) -> impl Iterator<Item = &Leg> {
        legs.iter().rev().filter(move |leg| leg.begin <= segno)
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

    /// Walk from segment `from` to `until` along `legs`, finding each segment as PostgreSQL does
    /// (newest timeline first, then older ones). A segment found only on an older timeline than the
    /// path wants there (the new timeline's copy of its first segment is not archived yet) lets
    /// recovery reach only that branch point: the walk stops there.
    pub fn walk(&self, legs: &[Leg], from: u64, until: u64) -> Walk {
        let mut walk = Walk::default();
        for segno in from..=until {
            let mut candidates = Self::candidates(legs, segno).peekable();
            let wanted = candidates.peek().copied();
            let found = candidates
                .map(|leg| Segment {
                    timeline: leg.timeline,
                    segno,
                })
                .find(|s| self.has(*s));
            match (found, wanted) {
                (Some(seg), Some(want)) if seg.timeline != want.timeline => {
                    walk.last = Some(seg);
                    walk.limit = want.switch.map(|lsn| {
                        (
                            lsn,
                            Segment {
                                timeline: want.timeline,
                                segno,
                            },
                        )
                    });
                    return walk;
                }
                (Some(seg), _) => walk.last = Some(seg),
                (None, want) => {
                    walk.gap = Some(Segment {
                        timeline: want.map_or(1, |l| l.timeline),
                        segno,
                    });
                    return walk;
                }
            }
        }
        walk
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
    stored_at(repo, &archive.key(segment)?)
}

/// When a streamed part of a segment was stored (ms since the epoch).
pub fn streamed_at(repo: &Repository, archive: &Archive, part: &WalName) -> Result<u64> {
    stored_at(repo, &wal::object_key(archive.system_id, part))
}

fn stored_at(repo: &Repository, key: &str) -> Result<u64> {
    repo.named_stored_at(key).map_err(|e| match e {
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
            streamed: BTreeMap::new(),
        }
    }

    #[test]
    fn recovery_follows_timelines_that_branched_after_the_backup() {
        // Timeline 2 branched off 1 in segment 5, timeline 3 off 2 in segment 8.
        let a = archive(
            &[(1, &[2, 3, 4]), (2, &[5, 6, 7]), (3, &[8, 9])],
            &[
                (2, "1\t0/5000100\tx"),
                (3, "1\t0/5000100\tx\n2\t0/8000200\ty"),
            ],
        );
        let from = Lsn(0x200_0028);
        assert_eq!(a.descendants(1, from), vec![1, 2, 3]);
        let legs = a.path(1, from, 3).expect("3 descends from 1");
        let begins: Vec<(u32, u64)> = legs.iter().map(|l| (l.timeline, l.begin)).collect();
        assert_eq!(begins, vec![(1, 2), (2, 5), (3, 8)]);
        assert_eq!(
            a.newest(&legs),
            Some(Segment {
                timeline: 3,
                segno: 9
            })
        );
        let walk = a.walk(&legs, 2, 9);
        assert_eq!(
            walk.last,
            Some(Segment {
                timeline: 3,
                segno: 9
            })
        );
        assert_eq!((walk.gap, walk.limit), (None, None));
        assert!(a.forks(&legs, from).is_empty());
        // A backup taken on timeline 1 after timeline 2 left it cannot follow timeline 2.
        assert_eq!(a.descendants(1, Lsn(0x600_0028)), vec![1]);
        assert!(a.path(1, Lsn(0x600_0028), 2).is_none());
    }

    #[test]
    fn an_unarchived_first_segment_of_a_new_timeline_limits_recovery_to_the_branch() {
        let a = archive(&[(1, &[2, 3, 4])], &[(2, "1\t0/3000100\tx")]);
        let legs = a.path(1, Lsn(0x200_0028), 2).expect("path");
        let walk = a.walk(&legs, 2, 4);
        assert_eq!(
            walk.last,
            Some(Segment {
                timeline: 1,
                segno: 3
            })
        );
        assert_eq!(
            walk.limit,
            Some((
                Lsn(0x300_0100),
                Segment {
                    timeline: 2,
                    segno: 3
                }
            ))
        );
        // Timeline 1 went on past the branch: two histories follow the backup.
        assert_eq!(a.forks(&legs, Lsn(0x200_0028)).len(), 1);
        let stay = a.path(1, Lsn(0x200_0028), 1).expect("own timeline");
        assert_eq!(
            a.forks(&stay, Lsn(0x200_0028)).len(),
            1,
            "timeline 2 left the path"
        );
    }

    #[test]
    fn the_largest_streamed_part_after_the_last_whole_segment_is_where_recovery_ends() {
        let mut a = archive(&[(1, &[3, 4])], &[]);
        let part = wal::streamed_name(&wal::segment_name(1, 5, SEG), 0x9000);
        a.streamed
            .entry(1)
            .or_default()
            .insert(5, WalName::parse(&part).expect("streamed"));
        let last = Segment {
            timeline: 1,
            segno: 4,
        };
        let (next, part) = a.streamed_after(last).expect("a part of segment 5");
        assert_eq!(next.segno, 5);
        assert_eq!(
            part.name,
            "000000010000000000000005.partial.0000000000009000"
        );
        assert!(
            a.streamed_after(Segment {
                timeline: 1,
                segno: 3
            })
            .is_none(),
            "segment 4 is archived whole"
        );
    }

    #[test]
    fn a_missing_segment_is_the_first_gap() {
        let a = archive(&[(1, &[3, 4, 6, 7])], &[]);
        let legs = a.path(1, Lsn(0x300_0028), 1).expect("path");
        let walk = a.walk(&legs, 3, 7);
        assert_eq!(
            walk.last,
            Some(Segment {
                timeline: 1,
                segno: 4
            })
        );
        assert_eq!(
            walk.gap,
            Some(Segment {
                timeline: 1,
                segno: 5
            })
        );
        assert_eq!(a.ranges(1), vec![(3, 4), (6, 7)]);
    }
}
