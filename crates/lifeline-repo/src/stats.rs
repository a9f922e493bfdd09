//! Sizes: what snapshots hold (logical), what their distinct blobs take in the repository (stored),
//! the ratio between them, per kind of source, and the repository's objects as a whole.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

use crate::error::Result;
use crate::reader::BlobReader;
use crate::repository::Repository;
use crate::snapshot::Snapshot;
use crate::Id;

#[derive(Debug, Default, Clone, Serialize)]
pub struct Usage {
    pub snapshots: usize,
    pub files: u64,
    /// The bytes of the files the snapshots hold, counted in every snapshot (what restoring each of
    /// them would write).
    pub logical_bytes: u64,
    /// Distinct blobs (chunks and trees) they reference, and what those take in the repository
    /// (compressed and encrypted).
    pub blobs: usize,
    pub stored_bytes: u64,
    /// logical ÷ stored: what deduplication and compression save.
    pub dedup_ratio: f64,
}

#[derive(Debug, Default, Serialize)]
pub struct Stats {
    #[serde(flatten)]
    pub total: Usage,
    pub by_kind: BTreeMap<String, Usage>,
    /// Every object in the repository, referenced or not (only for the whole repository).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<Objects>,
}

#[derive(Debug, Default, Serialize)]
pub struct Objects {
    pub packs: usize,
    pub pack_bytes: u64,
    pub index_files: usize,
    pub index_bytes: u64,
    pub snapshot_objects: usize,
    /// Named objects (PostgreSQL WAL) and their bytes.
    pub named_objects: usize,
    pub named_bytes: u64,
    /// Holds, verification and drill records, audit records, prune marks, session markers, key
    /// slots and config.
    pub other_objects: usize,
    pub total_bytes: u64,
}

/// Sizes of `snapshots`; with `whole` also every object of the repository.
pub fn stats(repo: &Repository, snapshots: &[(Id, Snapshot)], whole: bool) -> Result<Stats> {
    let reader = repo.reader()?;
    let mut stats = Stats::default();
    let mut all: HashSet<Id> = HashSet::new();
    let mut kinds: BTreeMap<&str, Vec<&(Id, Snapshot)>> = BTreeMap::new();
    for entry in snapshots {
        kinds.entry(entry.1.kind.as_str()).or_default().push(entry);
    }
    for (kind, members) in kinds {
        let ids: Vec<Id> = members.iter().map(|(id, _)| *id).collect();
        let mut blobs = HashSet::new();
        crate::references::collect(repo, &reader, &ids, &mut blobs)?;
        let mut usage = usage_of(&reader, members.iter().map(|(_, s)| s), &blobs);
        usage.snapshots = members.len();
        all.extend(blobs);
        stats.by_kind.insert(kind.to_string(), usage);
    }
    stats.total = usage_of(&reader, snapshots.iter().map(|(_, s)| s), &all);
    stats.total.snapshots = snapshots.len();
    if whole {
        stats.repository = Some(objects(repo)?);
    }
    Ok(stats)
}

fn usage_of<'a>(
    reader: &BlobReader<'_>,
    snapshots: impl Iterator<Item = &'a Snapshot>,
    blobs: &HashSet<Id>,
) -> Usage {
    let mut usage = Usage {
        blobs: blobs.len(),
        stored_bytes: blobs
            .iter()
            .filter_map(|b| reader.index().get(b))
            .map(|(_, e)| u64::from(e.sealed_len))
            .sum(),
        ..Usage::default()
    };
    for s in snapshots {
        usage.files += s.summary.files;
        usage.logical_bytes += s.summary.bytes;
    }
    usage.dedup_ratio = if usage.stored_bytes == 0 {
        0.0
    } else {
        usage.logical_bytes as f64 / usage.stored_bytes as f64
    };
    usage
}

pub fn objects(repo: &Repository) -> Result<Objects> {
    let mut o = Objects::default();
    for info in repo.storage().list("")? {
        o.total_bytes += info.size;
        let prefix = info.key.split('/').next().unwrap_or_default();
        match prefix {
            "data" => {
                o.packs += 1;
                o.pack_bytes += info.size;
            }
            "index" => {
                o.index_files += 1;
                o.index_bytes += info.size;
            }
            "snapshots" => o.snapshot_objects += 1,
            "config" | "keys" | "holds" | "verifications" | "garbage" | "sessions" | "drills"
            | "audit" => o.other_objects += 1,
            _ => {
                o.named_objects += 1;
                o.named_bytes += info.size;
            }
        }
    }
    Ok(o)
}
