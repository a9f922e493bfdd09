//! `repair index`: make the index describe the packs storage holds, from the packs' own trailers
//! (format.md §6: a trailer alone rebuilds a pack's index entries).
//!
//! Runs in a session, like prune: new index files are written first, then the files they replace
//! and the unreadable ones are deleted, so a reader that loads the index meanwhile finds every pack
//! in a file or, for a file deleted under it, adopts the pack from its trailer (§7).

use std::collections::{HashMap, HashSet};

use rayon::prelude::*;
use serde::Serialize;

use crate::error::{Error, ErrorKind, Result};
use crate::garbage;
use crate::pack::{pack_key, read_trailer, BlobEntry, PackBlobs};
use crate::prune::MERGED_ENTRIES;
use crate::repository::Repository;
use crate::session::Session;
use crate::Id;

use super::{refuse_beside_prune, REPAIR};

/// What `repair index` found and did.
#[derive(Debug, Default, Serialize)]
pub struct IndexReport {
    /// Index files that could be read.
    pub index_files: usize,
    /// Index files that could not be read (damaged): removed, their packs indexed from trailers.
    pub damaged_index_files: Vec<String>,
    /// Packs in storage, and how many of their trailers were read.
    pub packs: usize,
    pub trailers_read: usize,
    /// Packs no readable index file named, now indexed from their trailers, and their blobs.
    pub packs_added: usize,
    pub blobs_added: usize,
    /// Packs whose index entries disagreed with their trailer (or did not fit the stored pack):
    /// indexed again from the trailer.
    pub packs_corrected: Vec<String>,
    /// Packs the index named that storage does not have: their entries are dropped.
    pub missing_packs: Vec<String>,
    pub blobs_dropped: usize,
    /// Packs whose trailer could not be read: left as they are (`check --read-data` names them).
    pub unreadable_packs: Vec<String>,
    /// Index files written, and index files removed (replaced or unreadable).
    pub index_files_written: usize,
    pub index_files_removed: usize,
}

/// Rebuild what the index lacks or gets wrong. Packs no readable index file names are indexed from
/// their trailers; index files that name packs storage no longer has, or describe a pack otherwise
/// than its trailer, are replaced by files without those entries; unreadable index files are
/// removed. With `read_all_packs`, the trailer of every pack is read and compared, not only of
/// packs whose entries do not fit the stored pack.
///
/// Packs a prune mark names are left to prune (format.md §13): they are never adopted, and files
/// naming them keep naming them.
pub fn repair_index(repo: &Repository, read_all_packs: bool) -> Result<IndexReport> {
    // Packs are indexed from their trailers, which are sealed like their blobs.
    repo.require_read("repair index")?;
    // The marker first, then the marks and the index, as every writer (format.md §13).
    // Its marker names the epoch the new index files are sealed under (`key destroy-epoch`).
    let epoch = repo.keyring().current().ok().map(|e| e.tag);
    let session = Session::start_sealing(repo.shared_storage(), REPAIR, epoch)?;
    refuse_beside_prune(repo, &session)?;
    let marks = garbage::load(repo)?;
    let doomed = garbage::doomed_packs(&marks.items);
    let mut report = IndexReport::default();

    let loaded: Vec<(String, Result<Vec<PackBlobs>>)> = repo
        .index_keys()?
        .into_par_iter()
        .map(|key| {
            let packs = repo.load_index_file(&key);
            (key, packs)
        })
        .collect();
    let mut files: Vec<(Id, Vec<PackBlobs>)> = Vec::new();
    for (key, packs) in loaded {
        match packs {
            Ok(packs) => {
                if let Some(id) = Id::from_hex(key.trim_start_matches("index/")) {
                    files.push((id, packs));
                }
            }
            // Superseded by a prune since the listing.
            Err(Error::ObjectMissing { .. }) => {}
            Err(e) if e.kind() == ErrorKind::Damaged => {
                tracing::warn!("{key} cannot be read: {e}");
                report.damaged_index_files.push(key);
            }
            // Unreachable is not damaged: nothing is removed on a guess.
            Err(e) => return Err(e),
        }
    }
    report.index_files = files.len();

    let stored = crate::check::stored_packs(repo)?;
    report.packs = stored.len();

    // Which packs' trailers to read: those no file names, and those some file describes in a way
    // that does not fit the stored pack (or every pack, when asked).
    let named: HashSet<Id> = files
        .iter()
        .flat_map(|(_, packs)| packs.iter().map(|(p, _)| *p))
        .collect();
    let mut to_read: HashSet<Id> = stored
        .keys()
        .filter(|p| !named.contains(p) && !doomed.contains(p))
        .copied()
        .collect();
    for (pack, entries) in files.iter().flat_map(|(_, packs)| packs) {
        if doomed.contains(pack) {
            continue;
        }
        if let Some(&size) = stored.get(pack) {
            if read_all_packs || !fits(entries, size) {
                to_read.insert(*pack);
            }
        }
    }
    let mut to_read: Vec<Id> = to_read.into_iter().collect();
    to_read.sort();
    let trailers: Vec<(Id, Result<Vec<BlobEntry>>)> = to_read
        .par_iter()
        .map(|pack| {
            let trailer = read_trailer(
                repo.storage(),
                repo.keyring(),
                &pack_key(pack),
                stored[pack],
            );
            (*pack, trailer)
        })
        .collect();
    report.trailers_read = trailers.len();
    let mut trailer_of: HashMap<Id, Vec<BlobEntry>> = HashMap::new();
    for (pack, trailer) in trailers {
        match trailer {
            Ok(mut entries) => {
                entries.sort_by_key(|e| e.offset);
                trailer_of.insert(pack, entries);
            }
            // Deleted since the listing (a prune finishing a mark).
            Err(Error::ObjectMissing { .. }) => {}
            Err(e) if e.kind() == ErrorKind::Damaged => {
                tracing::warn!("{} cannot be indexed: {e}", pack_key(&pack));
                report.unreadable_packs.push(pack_key(&pack));
            }
            Err(e) => return Err(e),
        }
    }

    // Packs whose entries are replaced: gone from storage, or described otherwise than their
    // trailer says by some file.
    let mut missing: HashSet<Id> = HashSet::new();
    let mut corrected: HashSet<Id> = HashSet::new();
    for (pack, entries) in files.iter().flat_map(|(_, packs)| packs) {
        if doomed.contains(pack) {
            // Garbage in progress: prune deletes it or indexes it again (format.md §13).
            continue;
        }
        if !stored.contains_key(pack) {
            if missing.insert(*pack) {
                report.blobs_dropped += entries.len();
            }
        } else if let Some(trailer) = trailer_of.get(pack) {
            let mut indexed = entries.clone();
            indexed.sort_by_key(|e| e.offset);
            if indexed != *trailer {
                corrected.insert(*pack);
            }
        }
    }
    let replaced: Vec<usize> = (0..files.len())
        .filter(|&f| {
            files[f]
                .1
                .iter()
                .any(|(p, _)| missing.contains(p) || corrected.contains(p))
        })
        .collect();

    // The new files: what the replaced files name that stays, then every pack indexed from its
    // trailer (unnamed or corrected).
    let mut new_packs: Vec<(Id, &[BlobEntry])> = Vec::new();
    let mut seen: HashSet<Id> = HashSet::new();
    for &f in &replaced {
        for (pack, entries) in &files[f].1 {
            if !missing.contains(pack) && !corrected.contains(pack) && seen.insert(*pack) {
                new_packs.push((*pack, entries));
            }
        }
    }
    let mut from_trailers: Vec<(&Id, &Vec<BlobEntry>)> = trailer_of
        .iter()
        .filter(|(p, _)| !named.contains(p) || corrected.contains(p))
        .collect();
    from_trailers.sort_by_key(|(p, _)| **p);
    for (pack, entries) in from_trailers {
        if seen.insert(*pack) {
            new_packs.push((*pack, entries));
        }
        if !named.contains(pack) {
            report.packs_added += 1;
            report.blobs_added += entries.len();
        }
    }
    report.packs_corrected = sorted_keys(&corrected);
    report.missing_packs = sorted_keys(&missing);

    let mut gone: Vec<String> = replaced
        .iter()
        .map(|&f| format!("index/{}", files[f].0))
        .collect();
    gone.extend(report.damaged_index_files.iter().cloned());
    if new_packs.is_empty() && gone.is_empty() {
        return Ok(report);
    }
    session.ensure_trusted()?;
    // Write before deleting: every pack is named by some file at every moment.
    for group in groups(&new_packs) {
        let bytes = crate::index::seal(repo.keyring(), group)?;
        repo.storage()
            .put(&format!("index/{}", Id::of_stored(&bytes)), &bytes)?;
        report.index_files_written += 1;
    }
    gone.par_iter()
        .try_for_each(|key| repo.storage().delete(key))?;
    report.index_files_removed = gone.len();
    session.end();
    Ok(report)
}

/// Whether every blob the entries place in a pack lies inside its stored size.
fn fits(entries: &[BlobEntry], size: u64) -> bool {
    entries
        .iter()
        .all(|e| u64::from(e.offset) + u64::from(e.sealed_len) + 4 <= size)
}

fn sorted_keys(packs: &HashSet<Id>) -> Vec<String> {
    let mut keys: Vec<String> = packs.iter().map(pack_key).collect();
    keys.sort();
    keys
}

/// Consecutive runs of packs holding at most [`MERGED_ENTRIES`] blobs each (a larger pack alone).
fn groups<'a>(packs: &'a [(Id, &'a [BlobEntry])]) -> Vec<&'a [(Id, &'a [BlobEntry])]> {
    let mut out = Vec::new();
    let (mut start, mut count) = (0, 0);
    for (i, (_, entries)) in packs.iter().enumerate() {
        if i > start && count + entries.len() > MERGED_ENTRIES {
            out.push(&packs[start..i]);
            (start, count) = (i, 0);
        }
        count += entries.len();
    }
    if start < packs.len() {
        out.push(&packs[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack::BlobKind;

    fn entries(n: usize) -> Vec<BlobEntry> {
        (0..n)
            .map(|i| BlobEntry {
                id: Id([i as u8; 32]),
                kind: BlobKind::Data,
                compression: 0,
                offset: 48 + i as u32 * 100,
                raw_len: 80,
                sealed_len: 100,
            })
            .collect()
    }

    #[test]
    fn groups_stay_under_the_merged_size_and_keep_every_pack() {
        let big = entries(1);
        let packs: Vec<(Id, &[BlobEntry])> = (0..5u8).map(|i| (Id([i; 32]), &big[..])).collect();
        assert_eq!(groups(&packs).len(), 1);
        let half = vec![big[0]; MERGED_ENTRIES / 2 + 1];
        let packs: Vec<(Id, &[BlobEntry])> = (0..3u8).map(|i| (Id([i; 32]), &half[..])).collect();
        let split = groups(&packs);
        assert_eq!(split.len(), 3);
        assert_eq!(split.iter().map(|g| g.len()).sum::<usize>(), 3);
        assert!(groups(&[]).is_empty());
    }

    #[test]
    fn entries_that_reach_past_the_stored_pack_do_not_fit() {
        let e = entries(3);
        let end = 48 + 300 + 4;
        assert!(fits(&e, end));
        assert!(!fits(&e, end - 1));
    }
}
