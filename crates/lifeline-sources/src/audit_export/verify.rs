//! `audit-table verify`: re-read every export of a chain and prove the chain whole — each export's
//! data hashes to what it recorded, its record to its chain hash, each links to the one before it,
//! sequence numbers have no holes and the watermark ranges meet end to end, in time order.
//!
//! The chain hash makes a change anywhere visible after it; what it cannot show alone is the newest
//! exports cut off together. An anchor — a chain hash written down earlier (a report, a SIEM) — must
//! still be in the chain, which shows that too.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use lifeline_repo::tree::NodeType;
use lifeline_repo::{BlobReader, Id, Repository};
use rayon::prelude::*;
use serde::Serialize;

use super::chain::{Chains, Export};
use super::count::{Counted, Tally};
use super::error::Result;

/// The ways a chain can be damaged, as `verify` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProblemKind {
    /// An export's data or record is not what it was when written (or cannot be read back).
    Altered,
    /// An export the chain names, or a sequence number below the newest, is not there.
    Missing,
    /// Exports whose order by sequence disagrees with their times or their ranges.
    Reordered,
    /// An export that is not the one its successor was chained to, or a second one claiming a
    /// sequence number.
    Inserted,
    /// Two neighbouring ranges leave rows between them that no export holds.
    Gap,
    /// Two neighbouring ranges both hold some rows.
    Overlap,
}

impl std::fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProblemKind::Altered => "altered",
            ProblemKind::Missing => "missing",
            ProblemKind::Reordered => "reordered",
            ProblemKind::Inserted => "inserted",
            ProblemKind::Gap => "gap",
            ProblemKind::Overlap => "overlap",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub kind: ProblemKind,
    /// The chain it is about; `None` for a snapshot that could not be read at all, or an anchor
    /// found in no chain.
    pub chain: Option<String>,
    /// The export's sequence number, when the problem is about one.
    pub seq: Option<u64>,
    /// Its snapshot ID.
    pub snapshot: Option<String>,
    /// What was found and what it means.
    pub message: String,
}

/// A chain's newest export: anchor its chain hash to detect later exports being cut off.
#[derive(Debug, Clone, Serialize)]
pub struct Head {
    pub seq: u64,
    pub snapshot: String,
    pub time: String,
    pub through: Option<String>,
    pub chain_sha256: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChainReport {
    pub chain: String,
    pub table: Option<String>,
    pub watermark: Option<String>,
    /// Exports found (including any that are damaged).
    pub exports: usize,
    /// Rows the exports recorded, and the bytes read back.
    pub rows: u64,
    pub bytes: u64,
    pub head: Option<Head>,
    /// Problems found in this chain.
    pub problems: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub chains: Vec<ChainReport>,
    pub problems: Vec<Problem>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Verify the chains named (every chain in the repository when none is). Each anchor — a chain hash
/// from an earlier run — must be found in one of them.
pub fn verify(repo: &Repository, chains: &[String], anchors: &[String]) -> Result<Report> {
    let mut all = Chains::load(repo)?;
    let selected: BTreeSet<String> = if chains.is_empty() {
        all.exports
            .keys()
            .cloned()
            .chain(all.unreadable.iter().filter_map(|(_, c, _)| c.clone()))
            .collect()
    } else {
        chains.iter().cloned().collect()
    };
    let mut report = Report::default();
    for (id, chain, why) in &all.unreadable {
        if chain.as_ref().is_none_or(|c| selected.contains(c)) {
            report.problems.push(Problem {
                kind: ProblemKind::Altered,
                chain: chain.clone(),
                seq: None,
                snapshot: Some(id.clone()),
                message: match chain {
                    Some(_) => format!("export snapshot {id} cannot be read: {why}"),
                    None => format!(
                        "snapshot {id} cannot be read ({why}); if it was an export, its chain is incomplete"
                    ),
                },
            });
        }
    }
    let reader = repo.reader()?;
    let exports: Vec<&Export> = selected
        .iter()
        .filter_map(|c| all.exports.get(c))
        .flatten()
        .collect();
    let data: HashMap<Id, std::result::Result<Counted, String>> = exports
        .par_iter()
        .map(|e| (e.id, recount(&reader, e)))
        .collect();
    let mut found_anchors = BTreeSet::new();
    for chain in &selected {
        let exports = all.exports.remove(chain).unwrap_or_default();
        let before = report.problems.len();
        let damaged = all
            .unreadable
            .iter()
            .filter(|(_, c, _)| c.as_ref() == Some(chain))
            .count();
        if exports.is_empty() && damaged == 0 {
            report.problems.push(Problem {
                kind: ProblemKind::Missing,
                chain: Some(chain.clone()),
                seq: None,
                snapshot: None,
                message: format!("the repository holds no export of chain {chain}"),
            });
        }
        report.problems.extend(analyse(chain, &exports, &data));
        for e in &exports {
            if anchors.contains(&e.chain_sha256) {
                found_anchors.insert(e.chain_sha256.clone());
            }
        }
        let problems = report.problems.len() - before
            + report.problems[..before]
                .iter()
                .filter(|p| p.chain.as_ref() == Some(chain))
                .count();
        report.chains.push(ChainReport {
            chain: chain.clone(),
            table: exports.last().map(|e| e.link.table.clone()),
            watermark: exports.last().map(|e| e.link.watermark.clone()),
            exports: exports.len() + damaged,
            rows: exports.iter().map(|e| e.link.rows).sum(),
            bytes: exports
                .iter()
                .filter_map(|e| data.get(&e.id)?.as_ref().ok().map(|c| c.bytes))
                .sum(),
            head: exports.last().map(|e| Head {
                seq: e.link.seq,
                snapshot: e.id.to_hex(),
                time: e.snapshot.time.clone(),
                through: e.link.through.clone(),
                chain_sha256: e.chain_sha256.clone(),
            }),
            problems,
        });
    }
    for anchor in anchors.iter().filter(|a| !found_anchors.contains(*a)) {
        report.problems.push(Problem {
            kind: ProblemKind::Missing,
            chain: None,
            seq: None,
            snapshot: None,
            message: format!(
                "anchor {anchor} is in none of the chains verified: the exports from it on were removed, or the chain was rewritten"
            ),
        });
    }
    Ok(report)
}

/// Read an export's file back from the repository: its hash, rows and size.
pub(crate) fn recount(
    reader: &BlobReader<'_>,
    export: &Export,
) -> std::result::Result<Counted, String> {
    let tree = reader
        .read_tree(&export.snapshot.tree)
        .map_err(|e| e.to_string())?;
    let node = tree
        .nodes
        .iter()
        .find(|n| n.name == export.file.as_bytes() && n.node_type == NodeType::File)
        .ok_or_else(|| format!("its tree has no file {}", export.file))?;
    let mut tally = Tally::new(export.link.format);
    for part in node.content.iter().flatten() {
        let blob = reader.read_blob(part.id()).map_err(|e| e.to_string())?;
        let start = usize::try_from(part.offset()).unwrap_or(usize::MAX);
        let end = start.saturating_add(usize::try_from(part.len()).unwrap_or(usize::MAX));
        let slice = blob
            .get(start..end)
            .ok_or_else(|| format!("a chunk of {} is shorter than the file needs", export.file))?;
        tally.feed(slice);
    }
    Ok(tally.finish())
}

/// The problems of one chain's exports (sorted by sequence number, then time), given what reading
/// each one's data back found.
pub fn analyse(
    chain: &str,
    exports: &[Export],
    data: &HashMap<Id, std::result::Result<Counted, String>>,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut add = |kind, e: Option<&Export>, message: String| {
        problems.push(Problem {
            kind,
            chain: Some(chain.to_string()),
            seq: e.map(|e| e.link.seq),
            snapshot: e.map(|e| e.id.to_hex()),
            message,
        });
    };
    for e in exports {
        own(e, data.get(&e.id), &mut |kind, m| add(kind, Some(e), m));
    }

    // One export per sequence number: the one its successor links to, else the earliest.
    let mut by_seq: BTreeMap<u64, Vec<&Export>> = BTreeMap::new();
    for e in exports {
        by_seq.entry(e.link.seq).or_default().push(e);
    }
    let mut main: BTreeMap<u64, &Export> = BTreeMap::new();
    for (seq, claimants) in &by_seq {
        let linked_to = |c: &&Export| {
            by_seq.get(&(seq + 1)).is_some_and(|next| {
                next.iter()
                    .any(|n| n.link.previous_chain.as_ref() == Some(&c.chain_sha256))
            })
        };
        let chosen = claimants
            .iter()
            .find(|c| linked_to(c))
            .or(claimants.first())
            .copied();
        if let Some(chosen) = chosen {
            main.insert(*seq, chosen);
            for other in claimants.iter().filter(|c| c.id != chosen.id) {
                add(
                    ProblemKind::Inserted,
                    Some(other),
                    format!(
                        "a second export claims #{seq} besides snapshot {} (two exports ran at once, or one was inserted)",
                        chosen.id.short()
                    ),
                );
            }
        }
    }

    // Holes in the sequence, as ranges.
    let newest = main.keys().next_back().copied().unwrap_or(0);
    let mut hole: Option<(u64, u64)> = None;
    let mut holes = Vec::new();
    for n in 1..=newest {
        if main.contains_key(&n) {
            holes.extend(hole.take());
        } else {
            hole = Some(hole.map_or((n, n), |(a, _)| (a, n)));
        }
    }
    holes.extend(hole);
    for (a, b) in holes {
        let (which, whose) = if a == b {
            (format!("export #{a} is"), "its")
        } else {
            (format!("exports #{a} to #{b} are"), "their")
        };
        add(
            ProblemKind::Missing,
            None,
            format!("{which} not in the repository (forgotten or deleted): {whose} rows are no longer backed up"),
        );
    }

    let mut prev: Option<&Export> = None;
    for (seq, e) in &main {
        let p = prev.filter(|p| p.link.seq + 1 == *seq);
        if *seq == 1 && e.link.previous_chain.is_some() {
            add(
                ProblemKind::Inserted,
                Some(e),
                "it claims to be the first export but names a previous one".into(),
            );
        }
        if let Some(p) = p {
            link(p, e, &mut |kind, m| add(kind, Some(e), m));
        }
        prev = Some(e);
    }
    problems
}

/// Checks of one export on its own: record, data, range.
fn own(
    e: &Export,
    data: Option<&std::result::Result<Counted, String>>,
    add: &mut dyn FnMut(ProblemKind, String),
) {
    let l = &e.link;
    match l.hash() {
        Ok(h) if h == e.chain_sha256 => {}
        Ok(h) => add(
            ProblemKind::Altered,
            format!(
                "its record was changed after it was written: its fields hash to {h}, it records {}",
                e.chain_sha256
            ),
        ),
        Err(err) => add(ProblemKind::Altered, format!("its record cannot be hashed: {err}")),
    }
    match data {
        None => {}
        Some(Err(why)) => add(
            ProblemKind::Altered,
            format!("its data cannot be read back: {why}"),
        ),
        Some(Ok(c)) => {
            if c.sha256 != l.content_sha256 {
                add(
                    ProblemKind::Altered,
                    format!(
                        "its data was changed: {} hashes to {}, the export recorded {}",
                        e.file, c.sha256, l.content_sha256
                    ),
                );
            } else if c.rows != l.rows || c.unterminated {
                add(
                    ProblemKind::Altered,
                    format!(
                        "{} holds {} row(s){}, the export recorded {}",
                        e.file,
                        c.rows,
                        if c.unterminated {
                            " and ends inside a quoted field"
                        } else {
                            ""
                        },
                        l.rows
                    ),
                );
            }
        }
    }
    let Some(kind) = e.kind else { return };
    let below = |a: &Option<String>, b: &Option<String>, strict: bool| match (a, b) {
        (Some(a), Some(b)) => match kind.compare(a, b) {
            Some(Ordering::Less) => true,
            Some(Ordering::Equal) => !strict,
            Some(Ordering::Greater) => false,
            None => true,
        },
        _ => true,
    };
    let inside = if l.rows == 0 {
        l.first.is_none() && l.last.is_none()
    } else {
        l.first.is_some()
            && l.last.is_some()
            && below(&l.after, &l.first, true)
            && below(&l.first, &l.last, false)
            && below(&l.last, &l.through, false)
    };
    if !inside || !below(&l.after, &l.through, false) {
        add(
            ProblemKind::Altered,
            format!(
                "its rows ({} from {} to {}) are not within its range ({}, {}]",
                l.rows,
                l.first.as_deref().unwrap_or("-"),
                l.last.as_deref().unwrap_or("-"),
                l.after.as_deref().unwrap_or("start"),
                l.through.as_deref().unwrap_or("-")
            ),
        );
    }
}

/// Checks of an export against the one before it.
fn link(p: &Export, e: &Export, add: &mut dyn FnMut(ProblemKind, String)) {
    let (pl, l) = (&p.link, &e.link);
    if l.previous_chain.as_ref() != Some(&p.chain_sha256) {
        add(
            ProblemKind::Inserted,
            format!(
                "#{} (snapshot {}) is not the export it was chained to: it names chain hash {}, #{} has {}; #{} was replaced",
                pl.seq,
                p.id.short(),
                l.previous_chain.as_deref().unwrap_or("none"),
                pl.seq,
                p.chain_sha256,
                pl.seq
            ),
        );
    } else if let Some(previous) = &e.previous {
        if !p.names().contains(previous) {
            add(
                ProblemKind::Inserted,
                format!(
                    "it follows snapshot {previous}, but #{} is snapshot {}: #{} was saved again",
                    pl.seq,
                    p.id.short(),
                    pl.seq
                ),
            );
        }
    }
    let kind = e.kind.or(p.kind);
    if l.after != pl.through {
        let order = match (&l.after, &pl.through, kind) {
            (Some(a), Some(t), Some(k)) => k.compare(a, t),
            (Some(_), None, _) => Some(Ordering::Greater),
            (None, Some(_), _) => Some(Ordering::Less),
            _ => None,
        };
        let (kind, what) = match order {
            Some(Ordering::Less) => (ProblemKind::Overlap, "overlaps"),
            _ => (ProblemKind::Gap, "does not meet"),
        };
        add(
            kind,
            format!(
                "its range starts after {} but #{} ended at {}: it {what} the range before it",
                l.after.as_deref().unwrap_or("the start"),
                pl.seq,
                pl.through.as_deref().unwrap_or("nothing")
            ),
        );
    }
    let earlier_time = e.snapshot.timestamp() < p.snapshot.timestamp();
    let earlier_bound = match (&l.through, &pl.through, kind) {
        (Some(a), Some(b), Some(k)) => k.compare(a, b) == Some(Ordering::Less),
        (None, Some(_), _) => true,
        _ => false,
    };
    if earlier_time || earlier_bound {
        add(
            ProblemKind::Reordered,
            format!(
                "#{} comes after #{} but was taken {} (at {}, #{} at {}; bounds {} and {})",
                l.seq,
                pl.seq,
                if earlier_time {
                    "earlier"
                } else {
                    "with an earlier bound"
                },
                e.snapshot.time,
                pl.seq,
                p.snapshot.time,
                l.through.as_deref().unwrap_or("-"),
                pl.through.as_deref().unwrap_or("-")
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::chain::Link;
    use super::super::{keys, Format, KIND};
    use super::*;
    use lifeline_repo::snapshot::Snapshot;

    /// A chain of `n` well-formed exports of 10 rows each, ids 1..=10n.
    fn chain(
        n: u64,
    ) -> (
        Vec<Export>,
        HashMap<Id, std::result::Result<Counted, String>>,
    ) {
        let mut exports: Vec<Export> = Vec::new();
        let mut data = HashMap::new();
        for seq in 1..=n {
            let prev = exports.last();
            let link = Link {
                chain: "audit".into(),
                seq,
                previous_chain: prev.map(|p| p.chain_sha256.clone()),
                time: format!("2026-12-01T{:02}:00:00Z", seq),
                table: "audit_log".into(),
                watermark: "id".into(),
                format: Format::Csv,
                after: prev.and_then(|p| p.link.through.clone()),
                through: Some((seq * 10).to_string()),
                rows: 10,
                first: Some((seq * 10 - 9).to_string()),
                last: Some((seq * 10).to_string()),
                content_sha256: format!("{seq:064}"),
            };
            let id = Id([seq as u8; 32]);
            let mut s = Snapshot::new(KIND, vec!["audit_log".into()], Id([0; 32]));
            s.time = link.time.clone();
            link.record(&mut s.source);
            let hash = link.hash().expect("hash");
            s.source.insert(keys::CHAIN_SHA256.into(), hash);
            s.source
                .insert(keys::WATERMARK_TYPE.into(), "bigint".into());
            if let Some(p) = prev {
                s.source.insert(keys::PREVIOUS.into(), p.id.to_hex());
            }
            data.insert(
                id,
                Ok(Counted {
                    sha256: link.content_sha256.clone(),
                    rows: 10,
                    bytes: 100,
                    unterminated: false,
                }),
            );
            exports.push(Export::from_snapshot(id, s).expect("export"));
        }
        (exports, data)
    }

    fn kinds(problems: &[Problem]) -> Vec<(ProblemKind, Option<u64>)> {
        let mut k: Vec<_> = problems.iter().map(|p| (p.kind, p.seq)).collect();
        k.sort();
        k
    }

    /// Re-record an export as a forger with the hash definition would: its fields changed, its chain
    /// hash recomputed so that it is consistent on its own.
    fn forge(e: &mut Export, change: impl FnOnce(&mut Link)) {
        change(&mut e.link);
        e.chain_sha256 = e.link.hash().expect("hash");
        e.snapshot.time = e.link.time.clone();
    }

    #[test]
    fn a_whole_chain_is_clean() {
        let (exports, data) = chain(4);
        assert_eq!(analyse("audit", &exports, &data), Vec::new());
    }

    #[test]
    fn altered_data_and_records_are_named() {
        let (mut exports, mut data) = chain(3);
        data.insert(
            exports[1].id,
            Ok(Counted {
                sha256: "f".repeat(64),
                rows: 10,
                bytes: 100,
                unterminated: false,
            }),
        );
        // A record edited without its hash: the hash no longer matches, nor does the data's count.
        exports[2].link.rows = 9;
        let p = analyse("audit", &exports, &data);
        assert_eq!(
            kinds(&p),
            [
                (ProblemKind::Altered, Some(2)),
                (ProblemKind::Altered, Some(3)),
                (ProblemKind::Altered, Some(3))
            ]
        );
        assert!(p[1].message.contains("record was changed"), "{p:?}");
        assert!(p[0].message.contains("its data was changed"), "{p:?}");
        data.insert(exports[0].id, Err("pack damaged".into()));
        let p = analyse("audit", &exports, &data);
        assert!(p
            .iter()
            .any(|p| p.seq == Some(1) && p.message.contains("pack damaged")));
    }

    #[test]
    fn a_removed_export_is_missing_and_its_neighbours_still_check() {
        let (mut exports, data) = chain(5);
        exports.remove(2);
        exports.remove(1);
        let p = analyse("audit", &exports, &data);
        assert_eq!(kinds(&p), [(ProblemKind::Missing, None)]);
        assert!(p[0].message.contains("exports #2 to #3"), "{p:?}");
    }

    #[test]
    fn a_replaced_export_is_inserted_even_when_consistent_on_its_own() {
        let (mut exports, data) = chain(3);
        forge(&mut exports[1], |l| l.content_sha256 = "9".repeat(64));
        let p = analyse("audit", &exports, &data);
        // Its data no longer matches the forged hash, and #3 was chained to the original.
        assert_eq!(
            kinds(&p),
            [
                (ProblemKind::Altered, Some(2)),
                (ProblemKind::Inserted, Some(3))
            ]
        );
        // A second #2 beside the original.
        let (mut exports, data) = chain(3);
        let mut twin = exports[1].clone();
        twin.id = Id([77; 32]);
        exports.insert(2, twin);
        let p = analyse("audit", &exports, &data);
        assert_eq!(kinds(&p), [(ProblemKind::Inserted, Some(2))]);
        assert_eq!(p[0].snapshot, Some(Id([77; 32]).to_hex()));
    }

    #[test]
    fn swapped_exports_relinked_by_a_forger_are_reordered() {
        let (mut exports, data) = chain(4);
        let (two, three) = (exports[1].link.clone(), exports[2].link.clone());
        let first_hash = exports[0].chain_sha256.clone();
        forge(&mut exports[2], |l| {
            *l = Link {
                seq: 2,
                previous_chain: Some(first_hash),
                ..three
            }
        });
        let new_two = exports[2].chain_sha256.clone();
        forge(&mut exports[1], |l| {
            *l = Link {
                seq: 3,
                previous_chain: Some(new_two),
                ..two
            }
        });
        let new_three = exports[1].chain_sha256.clone();
        forge(&mut exports[3], |l| l.previous_chain = Some(new_three));
        exports.sort_by_key(|e| e.link.seq);
        for i in 1..exports.len() {
            exports[i].previous = Some(exports[i - 1].id.to_hex());
        }
        let p = analyse("audit", &exports, &data);
        let k = kinds(&p);
        assert!(k.contains(&(ProblemKind::Reordered, Some(3))), "{p:#?}");
        assert!(k.contains(&(ProblemKind::Gap, Some(2))), "{p:#?}");
        assert!(k.contains(&(ProblemKind::Overlap, Some(3))), "{p:#?}");
        assert!(
            !k.iter()
                .any(|(kind, _)| matches!(kind, ProblemKind::Altered | ProblemKind::Inserted)),
            "{p:#?}"
        );
    }
}
