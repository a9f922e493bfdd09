//! Garbage collection in two phases, without locks (format.md §13): a run carries out the marks
//! earlier runs wrote once nothing can need their packs any more, then marks what is garbage now.
//! Backups from other hosts may write while it runs.

mod state;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use rayon::prelude::*;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::garbage::{self, MarkRecord};
use crate::pack::{pack_key, PackContents};
use crate::reader::BlobReader;
use crate::record::Stored;
use crate::references;
use crate::repair::REPAIR;
use crate::repository::Repository;
use crate::session::{self, SessionInfo, CLOCK_SKEW};
use crate::writer::{Writer, DEFAULT_COMPRESSION};
use crate::Id;
use state::State;

/// Merged index files hold up to this many blobs (12 MB); files under half of it are merged.
pub(crate) const MERGED_ENTRIES: usize = 250_000;

#[derive(Debug, Clone)]
pub struct Options {
    /// How long a mark waits, by storage time, before its packs are deleted.
    pub grace: Duration,
    /// A pack whose unreferenced share of bytes exceeds this percentage is repacked.
    pub max_unused: f64,
    pub dry_run: bool,
    /// Tags of key epochs whose packs are repacked whenever they hold a referenced blob, so that
    /// what kept snapshots need is sealed under the current epoch and the epoch can be destroyed
    /// (`key destroy-epoch`, format.md §3.2).
    pub repack_epochs: Vec<u32>,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub dry_run: bool,
    pub snapshots: usize,
    pub referenced_blobs: usize,
    /// Referenced blobs found in no pack (`check` names them).
    pub missing_blobs: usize,
    /// What this run deleted (marks whose time had come).
    pub deleted: Freed,
    /// Packs a mark named that a snapshot still needs: kept and indexed again.
    pub kept_in_use: usize,
    /// What this run marked, to be deleted after the grace period.
    pub marked: Marked,
    /// Marks whose time has not come, and why.
    pub pending: Vec<Pending>,
    pub index_files_before: usize,
    pub index_files_after: usize,
    pub stored_bytes_before: u64,
    pub stored_bytes_after: u64,
    /// Objects prune left alone because they could not be read (`check` names them).
    pub unreadable: Vec<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct Freed {
    pub marks: usize,
    pub packs: usize,
    pub index_files: usize,
    pub bytes: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct Marked {
    /// The mark's ID, when one was written.
    pub mark: Option<String>,
    pub unused_packs: usize,
    pub repacked_packs: usize,
    pub repacked_blobs: usize,
    /// Of the packs repacked or marked unused, those sealed under an epoch `--repack-epoch` named.
    pub epoch_packs: usize,
    /// Bytes of the packs marked (unused and repacked).
    pub bytes: u64,
    /// Bytes written by repacking.
    pub bytes_written: u64,
    pub index_files_superseded: usize,
    pub index_files_written: usize,
}

#[derive(Debug, Serialize)]
pub struct Pending {
    pub mark: String,
    pub packs: usize,
    pub bytes: u64,
    pub age_seconds: u64,
    pub waiting_for: String,
}

/// Run one prune: carry out due marks, then mark.
pub fn prune(repo: &Repository, options: &Options) -> Result<Report> {
    // Prune walks every snapshot's trees to learn what is referenced.
    repo.require_read("prune")?;
    let writer = Writer::unindexed(repo, "prune", DEFAULT_COMPRESSION)?;
    let now = writer.session().started();
    let ours = writer.session().id().to_string();
    let sessions = other_sessions(repo, now, &ours)?;
    if let Some(other) = sessions
        .iter()
        .find(|s| s.live && matches!(s.command.as_str(), "prune" | REPAIR))
    {
        return Err(Error::Invalid(format!(
            "another {} is running (host {}, process {}, since {}); prune and repair run one at a time",
            other.command, other.hostname, other.pid, other.started_at
        )));
    }
    let marks = garbage::load(repo)?;
    let mut report = Report {
        dry_run: options.dry_run,
        unreadable: marks.damaged.iter().map(|(k, _)| k.clone()).collect(),
        ..Report::default()
    };
    let (due, mut pending) = split_due(marks.items, now, options.grace, &sessions);

    // The snapshots are listed after the sessions were judged, so every snapshot a session that
    // started before a due mark could store is among them; the index after the snapshots, so every
    // listed snapshot's blobs are in it (a backup stores its index before its snapshot).
    let snapshot_ids = repo.snapshot_ids()?;
    report.snapshots = snapshot_ids.len();
    let mut state = State::load(repo)?;
    report
        .unreadable
        .extend(state.damaged_files.iter().cloned());
    report
        .unreadable
        .extend(state.unreadable_packs.iter().cloned());
    report.index_files_before = state.files.len();
    report.stored_bytes_before = stored_bytes(&state);
    // Every referenced blob, and whether it is counted in a pack yet (phase one).
    let mut referenced: HashMap<Id, bool> = HashMap::new();
    {
        let reader = BlobReader::new(repo, tree_index(&state));
        references::collect(repo, &reader, &snapshot_ids, &mut referenced)
            .map_err(|e| Error::Invalid(format!("prune deletes nothing: {e}")))?;
    }
    report.referenced_blobs = referenced.len();

    if !due.is_empty() {
        carry_out(
            repo,
            &mut state,
            &due,
            &referenced,
            options.dry_run,
            &mut report,
        )?;
    }

    // A dry run deleted nothing: what due marks name must not be counted again.
    let mut excluded = garbage::doomed_packs(&pending);
    let mut superseded: HashSet<Id> = superseded_files(&pending);
    if options.dry_run {
        excluded.extend(garbage::doomed_packs(&due));
        superseded.extend(superseded_files(&due));
    }
    let new_mark = mark(
        repo,
        &writer,
        &mut state,
        &mut referenced,
        (&excluded, &superseded),
        now,
        options,
        &mut report,
    )?;

    // With no grace period the new mark may be carried out at once, if no other session started
    // before it; snapshots stored meanwhile are walked first.
    let mut now = now;
    if let Some(mark) = new_mark {
        pending.push(mark);
        if options.grace.is_zero() && !options.dry_run {
            now = pending.last().map_or(now, |m| m.stored);
            let sessions = other_sessions(repo, now, &ours)?;
            let (due, still) = split_due(pending, now, options.grace, &sessions);
            pending = still;
            if !due.is_empty() {
                let seen: HashSet<Id> = snapshot_ids.into_iter().collect();
                let newer: Vec<Id> = repo
                    .snapshot_ids()?
                    .into_iter()
                    .filter(|id| !seen.contains(id))
                    .collect();
                if !newer.is_empty() {
                    state.refresh(repo)?;
                    let reader = BlobReader::new(repo, tree_index(&state));
                    references::collect(repo, &reader, &newer, &mut referenced)?;
                }
                carry_out(repo, &mut state, &due, &referenced, false, &mut report)?;
            }
        }
    }
    let sessions = if pending.is_empty() {
        Vec::new()
    } else {
        other_sessions(repo, now, &ours)?
    };
    for m in &pending {
        report.pending.push(Pending {
            mark: m.id.to_hex(),
            packs: m.record.packs.len(),
            bytes: m.record.bytes,
            age_seconds: age(now, m.stored).as_secs(),
            waiting_for: waiting_for(m, now, options.grace, &sessions)
                .unwrap_or_else(|| "an older mark".into()),
        });
    }
    report.index_files_after = state.files.len();
    report.stored_bytes_after = stored_bytes(&state);
    writer.close();
    Ok(report)
}

/// The tree blobs of the packs storage still has.
fn tree_index(state: &State) -> crate::index::Index {
    references::tree_index(
        state
            .packs
            .iter()
            .filter(|p| p.size.is_some())
            .map(|p| (p.id, p.entries.as_slice())),
    )
}

/// Every session but prune's own, judged at storage time `now`.
fn other_sessions(repo: &Repository, now: SystemTime, ours: &str) -> Result<Vec<SessionInfo>> {
    Ok(session::list(repo.storage(), now)?
        .into_iter()
        .filter(|s| s.session != ours)
        .collect())
}

fn age(now: SystemTime, then: SystemTime) -> Duration {
    now.duration_since(then).unwrap_or_default()
}

fn stored_bytes(state: &State) -> u64 {
    state.packs.iter().filter_map(|p| p.size).sum()
}

/// Split marks (oldest first) into those to carry out now and those that wait. Marks are carried out
/// oldest first and never past one that waits: a newer mark's merged index leaves out the packs of
/// older marks, and supersedes files that may be the only ones naming a pack an older mark will
/// revoke.
fn split_due(
    marks: Vec<Stored<MarkRecord>>,
    now: SystemTime,
    grace: Duration,
    sessions: &[SessionInfo],
) -> (Vec<Stored<MarkRecord>>, Vec<Stored<MarkRecord>>) {
    let first_waiting = marks
        .iter()
        .position(|m| waiting_for(m, now, grace, sessions).is_some())
        .unwrap_or(marks.len());
    let mut due = marks;
    let pending = due.split_off(first_waiting);
    (due, pending)
}

/// Why mark `m` cannot be carried out at storage time `now`, or `None` when it can.
fn waiting_for(
    m: &Stored<MarkRecord>,
    now: SystemTime,
    grace: Duration,
    sessions: &[SessionInfo],
) -> Option<String> {
    let waited = age(now, m.stored);
    if waited < grace {
        return Some(format!(
            "the grace period: {} more",
            crate::retention::human_duration(Duration::from_secs(
                (grace - waited).as_secs().max(1)
            ))
        ));
    }
    let blocking: Vec<String> = sessions
        .iter()
        .filter(|s| s.live && s.started <= m.stored + CLOCK_SKEW)
        .map(|s| {
            format!(
                "{} on {} (process {}, since {})",
                s.command, s.hostname, s.pid, s.started_at
            )
        })
        .collect();
    (!blocking.is_empty()).then(|| {
        format!(
            "{} session(s) that started before it: {}",
            blocking.len(),
            blocking.join("; ")
        )
    })
}

/// Phase two: delete what `marks` name, except packs that hold a referenced blob with no copy in a
/// pack that stays. Writes before it deletes, so an interruption leaves a repository that passes
/// `check --read-data` and a mark the next run finishes.
fn carry_out(
    repo: &Repository,
    state: &mut State,
    marks: &[Stored<MarkRecord>],
    referenced: &HashMap<Id, bool>,
    dry_run: bool,
    report: &mut Report,
) -> Result<()> {
    let doomed: HashSet<Id> = garbage::doomed_packs(marks);
    // Referenced blobs in doomed packs, and which doomed packs hold them.
    let mut needed: HashMap<Id, Vec<Id>> = HashMap::new();
    for pack in state.packs.iter().filter(|p| doomed.contains(&p.id)) {
        for e in pack
            .entries
            .iter()
            .filter(|e| referenced.contains_key(&e.id))
        {
            needed.entry(e.id).or_default().push(pack.id);
        }
    }
    for pack in state
        .packs
        .iter()
        .filter(|p| !doomed.contains(&p.id) && p.size.is_some())
    {
        for e in &pack.entries {
            needed.remove(&e.id);
        }
    }
    let revoked: HashSet<Id> = needed
        .into_values()
        .flatten()
        .filter(|p| state.stored_size(p).is_some())
        .collect();
    let deletable: HashSet<Id> = doomed.difference(&revoked).copied().collect();
    let superseded = superseded_files(marks);
    let replaced: Vec<Id> = state
        .files
        .iter()
        .filter(|f| !superseded.contains(&f.id) && f.packs.iter().any(|p| deletable.contains(p)))
        .map(|f| f.id)
        .collect();
    // Packs an interrupted run deleted already are gone from storage: nothing to delete or count.
    let present: Vec<Id> = deletable
        .iter()
        .filter(|p| state.stored_size(p).is_some())
        .copied()
        .collect();
    report.kept_in_use += revoked.len();
    report.deleted.marks += marks.len();
    report.deleted.packs += present.len();
    report.deleted.bytes += present
        .iter()
        .filter_map(|p| state.stored_size(p))
        .sum::<u64>();
    let existing: HashSet<Id> = state.files.iter().map(|f| f.id).collect();
    report.deleted.index_files += superseded.intersection(&existing).count() + replaced.len();
    if dry_run {
        return Ok(());
    }

    // 1. Index what stays: revoked packs, and the files that named packs being deleted, without them.
    let mut revoked: Vec<Id> = revoked.into_iter().collect();
    revoked.sort();
    let mut lists = vec![revoked];
    lists.extend(
        state
            .files
            .iter()
            .filter(|f| replaced.contains(&f.id))
            .map(|f| {
                f.packs
                    .iter()
                    .filter(|p| !deletable.contains(p))
                    .copied()
                    .collect()
            }),
    );
    let mut new_files = Vec::new();
    for packs in lists.into_iter().filter(|l| !l.is_empty()) {
        new_files.push((write_index(repo, state, &packs)?, packs));
    }
    // 2. Delete the packs, then the index files that named them, then the marks.
    present
        .par_iter()
        .try_for_each(|p| repo.storage().delete(&pack_key(p)))?;
    let gone_files: HashSet<Id> = superseded.iter().chain(&replaced).copied().collect();
    gone_files
        .par_iter()
        .try_for_each(|f| repo.storage().delete(&format!("index/{f}")))?;
    for m in marks {
        garbage::delete(repo, &m.id)?;
    }
    state.remove(&deletable, &gone_files);
    for (id, packs) in new_files {
        state.add_file(id, packs);
    }
    Ok(())
}

/// The index files `marks` supersede.
fn superseded_files(marks: &[Stored<MarkRecord>]) -> HashSet<Id> {
    marks
        .iter()
        .flat_map(|m| m.record.indexes.iter().copied())
        .collect()
}

/// Write an index file naming `packs` (their entries borrowed from the state); returns its ID.
fn write_index(repo: &Repository, state: &State, packs: &[Id]) -> Result<Id> {
    let blobs: Vec<(Id, &[crate::pack::BlobEntry])> = packs
        .iter()
        .filter_map(|p| state.entries_of(p).map(|e| (*p, e)))
        .collect();
    let bytes = crate::index::seal(repo.keyring(), &blobs)?;
    let id = Id::of_stored(&bytes);
    repo.storage().put(&format!("index/{id}"), &bytes)?;
    Ok(id)
}

/// Phase one: find unreferenced and mostly unreferenced packs, copy the live blobs of the latter,
/// merge the small index files, and write a mark naming what may go. Returns the stored mark.
#[allow(clippy::too_many_arguments)]
fn mark(
    repo: &Repository,
    writer: &Writer<'_>,
    state: &mut State,
    referenced: &mut HashMap<Id, bool>,
    (pending_doomed, superseded_by_pending): (&HashSet<Id>, &HashSet<Id>),
    now: SystemTime,
    options: &Options,
    report: &mut Report,
) -> Result<Option<Stored<MarkRecord>>> {
    // Each referenced blob counts in one pack only (live packs first, then packs of epochs that
    // stay, then larger ones), so that duplicates left by interrupted writers or prunes are garbage
    // too, and a blob also stored under a newer epoch is not copied out of an old one.
    let mut order: Vec<usize> = (0..state.packs.len())
        .filter(|&i| state.packs[i].size.is_some())
        .collect();
    let resealing = sealed_under(repo, state, &order, &options.repack_epochs)?;
    order.sort_by_key(|&i| {
        let p = &state.packs[i];
        (
            pending_doomed.contains(&p.id),
            resealing.contains(&i),
            std::cmp::Reverse(p.size),
            p.id,
        )
    });
    // Per pack: which of its blobs it keeps, and the bytes of those and of all its blobs (headers and
    // trailers aside).
    let mut usage: HashMap<usize, (Vec<bool>, u64, u64)> = HashMap::new();
    for &i in &order {
        let pack = &state.packs[i];
        let use_of = usage.entry(i).or_default();
        for e in &pack.entries {
            // Counted here unless an earlier pack counted it.
            let keeps = referenced
                .get_mut(&e.id)
                .is_some_and(|counted| !std::mem::replace(counted, true));
            use_of.0.push(keeps);
            use_of.2 += u64::from(e.sealed_len);
            if keeps {
                use_of.1 += u64::from(e.sealed_len);
            }
        }
    }
    report.missing_blobs = referenced.values().filter(|counted| !**counted).count();

    let mut unused = Vec::new();
    let mut repack = Vec::new();
    for &i in &order {
        let p = &state.packs[i];
        // An unindexed pack this young may belong to a backup still running.
        if pending_doomed.contains(&p.id) || (!p.indexed && age(now, p.modified) < options.grace) {
            continue;
        }
        let (live, total) = usage.get(&i).map_or((0, 0), |u| (u.1, u.2));
        if live == 0 {
            unused.push(i);
        } else if resealing.contains(&i)
            || (total - live) as f64 * 100.0 > options.max_unused * total as f64
        {
            repack.push(i);
        } else {
            continue;
        }
        if resealing.contains(&i) {
            report.marked.epoch_packs += 1;
        }
    }
    report.marked.unused_packs = unused.len();

    // Small files are merged, but not those an earlier mark already supersedes (they are going).
    let small: Vec<usize> = (0..state.files.len())
        .filter(|&f| {
            state.files[f].entries < MERGED_ENTRIES / 2
                && !superseded_by_pending.contains(&state.files[f].id)
        })
        .collect();
    let names_any = |f: usize, packs: &[usize]| {
        packs
            .iter()
            .any(|&i| state.files[f].packs.contains(&state.packs[i].id))
    };
    if options.dry_run {
        report.marked.repacked_packs = repack.len();
        report.marked.repacked_blobs = repack
            .iter()
            .map(|&i| {
                usage
                    .get(&i)
                    .map_or(0, |u| u.0.iter().filter(|k| **k).count())
            })
            .sum();
        report.marked.bytes = unused
            .iter()
            .chain(&repack)
            .filter_map(|&i| state.packs[i].size)
            .sum();
        report.marked.index_files_superseded = (0..state.files.len())
            .filter(|&f| {
                names_any(f, &unused)
                    || names_any(f, &repack)
                    || (small.len() > 1 && small.contains(&f))
            })
            .count();
        return Ok(None);
    }

    // Copy the live blobs of the packs to repack. A pack that cannot be read is left alone (it is
    // not marked; `check` names it).
    // Copying is CPU work (open, verify, seal): one worker per core, not the I/O-sized global pool,
    // so no more whole packs are held at once than cores can use.
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    let copy_all = || -> Vec<(usize, Result<usize>)> {
        repack
            .par_iter()
            .map(|&i| {
                let keeps = usage.get(&i).map_or(&[][..], |u| u.0.as_slice());
                (i, copy_live(repo, writer, &state.packs[i], keeps))
            })
            .collect()
    };
    let copied = match rayon::ThreadPoolBuilder::new().num_threads(cores).build() {
        Ok(pool) => pool.install(copy_all),
        Err(_) => copy_all(),
    };
    let mut repacked = Vec::new();
    for (i, result) in copied {
        match result {
            Ok(blobs) => {
                repacked.push(i);
                report.marked.repacked_blobs += blobs;
            }
            Err(e) => {
                tracing::warn!("prune leaves {} alone: {e}", pack_key(&state.packs[i].id));
                report.unreadable.push(pack_key(&state.packs[i].id));
            }
        }
    }
    let new_packs = writer.finish_packs()?;
    report.marked.repacked_packs = repacked.len();
    report.marked.bytes_written = new_packs
        .iter()
        .map(|(_, e)| e.iter().map(|b| u64::from(b.sealed_len)).sum::<u64>())
        .sum();
    let doomed_new: HashSet<Id> = unused
        .iter()
        .chain(&repacked)
        .map(|&i| state.packs[i].id)
        .collect();
    report.marked.bytes = unused
        .iter()
        .chain(&repacked)
        .filter_map(|&i| state.packs[i].size)
        .sum();
    let superseded: Vec<usize> = (0..state.files.len())
        .filter(|&f| {
            state.files[f].packs.iter().any(|p| doomed_new.contains(p))
                || (small.len() > 1 && small.contains(&f))
        })
        .collect();
    report.marked.index_files_superseded = superseded.len();
    if doomed_new.is_empty() && superseded.is_empty() && new_packs.is_empty() {
        return Ok(None);
    }

    // Merged index files: every pack the superseded files name, plus unindexed packs that stay and
    // the new ones, minus doomed packs and packs other files already name.
    let superseded_ids: HashSet<Id> = superseded.iter().map(|&f| state.files[f].id).collect();
    let covered: HashSet<Id> = state
        .files
        .iter()
        .filter(|f| !superseded_ids.contains(&f.id))
        .flat_map(|f| f.packs.iter().copied())
        .collect();
    let mut merged: Vec<Id> = superseded
        .iter()
        .flat_map(|&f| state.files[f].packs.iter().copied())
        .chain(
            state
                .packs
                .iter()
                .filter(|p| !p.indexed && p.size.is_some())
                .map(|p| p.id),
        )
        .filter(|p| !doomed_new.contains(p) && !pending_doomed.contains(p) && !covered.contains(p))
        .collect();
    merged.sort();
    merged.dedup();
    // The new packs join the state (their entries moved, not copied), then the merged files are
    // written one at a time from borrowed entries.
    merged.extend(new_packs.iter().map(|(p, _)| *p));
    for (pack, entries) in new_packs {
        let size = crate::pack::stored_size(&entries);
        state.by_id.insert(pack, state.packs.len());
        state.packs.push(state::Pack {
            id: pack,
            entries,
            size: Some(size),
            modified: now,
            indexed: false,
        });
    }
    let mut groups: Vec<Vec<Id>> = Vec::new();
    let mut count = 0;
    for pack in merged {
        let n = state.entries_of(&pack).map_or(0, <[_]>::len);
        match groups.last_mut() {
            Some(group) if count + n <= MERGED_ENTRIES => group.push(pack),
            _ => {
                groups.push(vec![pack]);
                count = 0;
            }
        }
        count += n;
    }
    report.marked.index_files_written = groups.len();
    for packs in groups {
        let id = write_index(repo, state, &packs)?;
        state.add_file(id, packs);
    }

    let mut packs: Vec<Id> = doomed_new.into_iter().collect();
    packs.sort();
    let mut indexes: Vec<Id> = superseded_ids.into_iter().collect();
    indexes.sort();
    let stored = garbage::save(repo, packs, indexes, report.marked.bytes)?;
    report.marked.mark = Some(stored.id.to_hex());
    Ok(Some(stored))
}

/// The packs (indexes into `state.packs`, among `candidates`) sealed under one of `tags`, from
/// their 48-byte headers. A pack whose header cannot be read is left alone (`check` names it).
fn sealed_under(
    repo: &Repository,
    state: &State,
    candidates: &[usize],
    tags: &[u32],
) -> Result<HashSet<usize>> {
    if tags.is_empty() {
        return Ok(HashSet::new());
    }
    let found: Vec<Option<usize>> = candidates
        .par_iter()
        .map(|&i| {
            let key = pack_key(&state.packs[i].id);
            let bytes = match repo
                .storage()
                .get_range(&key, 0, crate::crypto::HEADER_LEN as u64)
            {
                Ok(b) => b,
                Err(Error::ObjectMissing { .. }) => return Ok(None),
                Err(e) if e.kind() == crate::ErrorKind::Damaged => return Ok(None),
                Err(e) => return Err(e),
            };
            Ok(crate::crypto::Header::parse(&bytes, &key)
                .ok()
                .filter(|h| tags.contains(&h.epoch))
                .map(|_| i))
        })
        .collect::<Result<_>>()?;
    Ok(found.into_iter().flatten().collect())
}

/// Copy the blobs one pack keeps (`keeps[i]` for its i-th entry) into the prune session's new
/// packs; returns how many.
fn copy_live(
    repo: &Repository,
    writer: &Writer<'_>,
    pack: &state::Pack,
    keeps: &[bool],
) -> Result<usize> {
    let key = pack_key(&pack.id);
    let contents = PackContents::parse(repo.storage().get(&key)?, repo.keyring(), &pack.id, &key)?;
    let mut blobs = 0;
    for (entry, _) in pack.entries.iter().zip(keeps).filter(|(_, k)| **k) {
        let data = contents.blob(entry, repo.keyring(), &key)?;
        writer.copy_blob(entry.kind, &data)?;
        blobs += 1;
    }
    Ok(blobs)
}
