//! Verification (format.md §10): structure always, data on request, and for every damaged object the
//! snapshots and files that depend on it.

use std::collections::{BTreeSet, HashMap, HashSet};

use rayon::prelude::*;
use serde::Serialize;

use crate::error::Result;
use crate::index::Index;
use crate::pack::{pack_key, PackContents};
use crate::reader::BlobReader;
use crate::repository::Repository;
use crate::tree::NodeType;
use crate::Id;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReadData {
    None,
    All,
    /// A percentage of packs, chosen at random each run, so repeated runs cover everything.
    Subset(f64),
}

#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// The damaged object: a storage key, or `blob <id>`.
    pub object: String,
    pub detail: String,
    /// `snapshot <id> <path>` for every file or directory that depends on the object.
    pub affected: Vec<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub snapshots: usize,
    pub packs: usize,
    pub packs_read: usize,
    pub blobs: usize,
    /// Packs no index names: left by an interrupted backup; harmless, and reused by the next backup.
    pub unindexed_packs: usize,
    pub problems: Vec<Problem>,
}

struct Damage {
    problems: Vec<Problem>,
    /// Blob → index into `problems`.
    blobs: HashMap<Id, usize>,
}

impl Damage {
    fn add(&mut self, object: String, detail: String, blobs: impl IntoIterator<Item = Id>) {
        let at = self.problems.len();
        self.problems.push(Problem {
            object,
            detail,
            affected: Vec::new(),
        });
        for b in blobs {
            self.blobs.entry(b).or_insert(at);
        }
    }
}

pub fn check(repo: &Repository, read_data: ReadData) -> Result<Report> {
    let mut damage = Damage {
        problems: Vec::new(),
        blobs: HashMap::new(),
    };
    let mut report = Report::default();

    let mut index = Index::default();
    for key in repo.index_keys()? {
        match repo.load_index_file(&key) {
            Ok(packs) => packs.iter().for_each(|(p, e)| index.add_pack(*p, e)),
            Err(e) => damage.add(key, e.to_string(), []),
        }
    }
    report.blobs = index.blob_count();

    let stored: HashMap<Id, u64> = repo
        .storage()
        .list("data/")?
        .into_iter()
        .filter_map(|o| Some((Id::from_hex(o.key.rsplit('/').next()?)?, o.size)))
        .collect();
    report.unindexed_packs = stored.keys().filter(|p| !index.has_pack(p)).count();
    let by_pack = index.blobs_by_pack();
    report.packs = by_pack.len();
    for (pack, entries) in &by_pack {
        let key = pack_key(pack);
        let needed = entries
            .iter()
            .map(|e| u64::from(e.offset) + u64::from(e.sealed_len))
            .max()
            .unwrap_or(0)
            + 4;
        let ids = entries.iter().map(|e| e.id);
        match stored.get(pack) {
            None => damage.add(
                key,
                "missing: the index names it but storage has no such object".into(),
                ids,
            ),
            Some(&size) if size < needed => damage.add(
                key,
                format!("truncated: {size} bytes, its blobs need at least {needed}"),
                ids,
            ),
            Some(_) => {}
        }
    }

    let selected: Vec<&Id> = match read_data {
        ReadData::None => Vec::new(),
        ReadData::All => by_pack.keys().collect(),
        ReadData::Subset(pct) => {
            use rand::seq::SliceRandom;
            let mut all: Vec<&Id> = by_pack.keys().collect();
            all.shuffle(&mut rand::thread_rng());
            let n = ((all.len() as f64) * pct / 100.0).ceil() as usize;
            all.truncate(n.min(all.len()));
            all
        }
    };
    report.packs_read = selected.len();
    let read_results: Vec<(String, String, Vec<Id>)> = selected
        .par_iter()
        .filter(|p| stored.contains_key(p))
        .flat_map_iter(|pack| verify_pack(repo, pack, &by_pack[*pack]))
        .collect();
    for (object, detail, blobs) in read_results {
        damage.add(object, detail, blobs);
    }

    let reader = BlobReader::new(repo, index);
    let snapshot_ids = repo.snapshot_ids()?;
    report.snapshots = snapshot_ids.len();
    let mut seen_trees = HashSet::new();
    let mut affected: HashMap<usize, BTreeSet<String>> = HashMap::new();
    for id in snapshot_ids {
        let snap = match repo.load_snapshot(&id) {
            Ok(s) => s,
            Err(e) => {
                damage.add(format!("snapshots/{id}"), e.to_string(), []);
                continue;
            }
        };
        // With no known damage, a tree seen in one snapshot need not be walked again.
        let walk_all = !damage.blobs.is_empty();
        let mut stack = vec![(snap.tree, String::new())];
        while let Some((tree_id, path)) = stack.pop() {
            if !walk_all && !seen_trees.insert(tree_id) {
                continue;
            }
            let shown = if path.is_empty() {
                "/".to_string()
            } else {
                path.clone()
            };
            let where_ = format!("snapshot {} {shown}", id.short());
            if let Some(&p) = damage.blobs.get(&tree_id) {
                affected.entry(p).or_default().insert(where_);
                continue;
            }
            let tree = match reader.read_tree(&tree_id) {
                Ok(t) => t,
                Err(e) => {
                    damage.add(format!("tree {tree_id}"), e.to_string(), [tree_id]);
                    let p = damage.problems.len() - 1;
                    affected.entry(p).or_default().insert(where_);
                    continue;
                }
            };
            for node in tree.nodes {
                let child = format!("{path}/{}", String::from_utf8_lossy(&node.name));
                match node.node_type {
                    NodeType::Dir => match node.subtree {
                        Some(sub) => stack.push((sub, child)),
                        None => damage.add(
                            format!("tree {tree_id}"),
                            format!("{child}: directory without subtree"),
                            [],
                        ),
                    },
                    NodeType::File => {
                        for c in node.content.iter().flatten() {
                            if let Some(&p) = damage.blobs.get(c.id()) {
                                affected
                                    .entry(p)
                                    .or_default()
                                    .insert(format!("snapshot {} {child}", id.short()));
                            } else if !reader.index().contains(c.id()) {
                                damage.add(
                                    format!("blob {}", c.id()),
                                    "missing: no index names it".into(),
                                    [*c.id()],
                                );
                                let p = damage.problems.len() - 1;
                                affected
                                    .entry(p)
                                    .or_default()
                                    .insert(format!("snapshot {} {child}", id.short()));
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    for (p, paths) in affected {
        damage.problems[p].affected = paths.into_iter().collect();
    }
    report.problems = damage.problems;
    Ok(report)
}

/// Read back packs just written and verify them whole; one problem per damaged blob or pack.
pub fn verify_packs(repo: &Repository, packs: &[crate::pack::PackBlobs]) -> Vec<Problem> {
    packs
        .par_iter()
        .flat_map_iter(|(pack, entries)| verify_pack(repo, pack, entries))
        .map(|(object, detail, _)| Problem {
            object,
            detail,
            affected: Vec::new(),
        })
        .collect()
}

/// Read one pack whole and verify its name, trailer and every blob the index places in it.
fn verify_pack(
    repo: &Repository,
    pack: &Id,
    indexed: &[crate::pack::BlobEntry],
) -> Vec<(String, String, Vec<Id>)> {
    let key = pack_key(pack);
    let all_ids = || indexed.iter().map(|e| e.id).collect::<Vec<_>>();
    let contents = match repo
        .storage()
        .get(&key)
        .and_then(|bytes| PackContents::parse(bytes, repo.keyring(), pack, &key))
    {
        Ok(c) => c,
        Err(e) => return vec![(key, e.to_string(), all_ids())],
    };
    let in_trailer: HashMap<(Id, u32), &crate::pack::BlobEntry> = contents
        .entries
        .iter()
        .map(|e| ((e.id, e.offset), e))
        .collect();
    let mut out = Vec::new();
    for entry in indexed {
        match in_trailer.get(&(entry.id, entry.offset)) {
            Some(t) if *t == entry => {
                if let Err(e) = contents.blob(entry, repo.keyring(), &key) {
                    out.push((key.clone(), e.to_string(), vec![entry.id]));
                }
            }
            _ => out.push((
                key.clone(),
                format!(
                    "the index places blob {} here but the pack's trailer disagrees",
                    entry.id.short()
                ),
                vec![entry.id],
            )),
        }
    }
    out
}
