//! `repair snapshots`: for each snapshot whose trees reference data that is lost, write a new
//! snapshot without it. A file with a lost chunk is left out (a file with a hole restores as
//! something it never was); a directory whose listing is lost stays, empty; every path left out is
//! recorded in the new snapshot's `errors`, and its `repaired` tag names the original. The original
//! stays until it is forgotten, so its data is not freed behind the user's back.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::error::{ErrorKind, Result};
use crate::hold::Holds;
use crate::pack::{pack_key, BlobKind};
use crate::reader::BlobReader;
use crate::repository::Repository;
use crate::snapshot::{ItemError, Snapshot};
use crate::tree::{NodeType, Tree};
use crate::writer::{Writer, DEFAULT_COMPRESSION};
use crate::Id;

use super::{refuse_beside_prune, REPAIR};

/// The tag a repaired snapshot carries; its value is the original's short ID.
pub const REPAIRED_TAG: &str = "repaired";

#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Find and report; write and forget nothing.
    pub dry_run: bool,
    /// Forget each damaged original once its repaired snapshot is stored, and those that cannot be
    /// repaired; held snapshots are kept.
    pub forget: bool,
}

#[derive(Debug, Default, Serialize)]
pub struct SnapshotsReport {
    pub dry_run: bool,
    /// Snapshots examined.
    pub snapshots: usize,
    /// Those that reference lost data, oldest first.
    pub damaged: Vec<Repaired>,
    /// Snapshot objects that cannot be read at all (`lifeline forget` removes them).
    pub unreadable: Vec<ItemError>,
}

/// One snapshot that references lost data, and what became of it.
#[derive(Debug, Serialize)]
pub struct Repaired {
    pub snapshot: String,
    pub time: String,
    pub kind: String,
    pub paths: Vec<String>,
    /// What is lost: each file left out and each directory emptied, with why.
    pub lost: Vec<ItemError>,
    /// The new snapshot (none in a dry run, or when it cannot be repaired).
    pub repaired: Option<String>,
    /// An earlier run stored the repaired snapshot already (`repaired` names it).
    pub already_repaired: bool,
    /// Why no new snapshot is written.
    pub unrepairable: Option<String>,
    /// The original was forgotten (`--forget`).
    pub forgotten: bool,
    /// `--forget` kept the original: it is under legal hold.
    pub held: bool,
}

/// Find the snapshots that reference lost data and write repaired ones (see the module docs).
/// Lost means: in no index, in a pack storage does not have or that is too short for it, or (for a
/// tree) not decryptable. Run `repair index` first, so the index names every pack storage holds.
pub fn repair_snapshots(repo: &Repository, options: Options) -> Result<SnapshotsReport> {
    repo.require_read("repair snapshots")?;
    let writer = if options.dry_run {
        None
    } else {
        let writer = Writer::start(repo, REPAIR, None, DEFAULT_COMPRESSION)?;
        refuse_beside_prune(repo, writer.session())?;
        Some(writer)
    };
    let own_reader;
    let reader = match &writer {
        Some(w) => w.reader(),
        None => {
            own_reader = repo.reader()?;
            &own_reader
        }
    };
    let sizes: HashMap<Id, u64> = repo
        .storage()
        .list("data/")?
        .into_iter()
        .filter_map(|o| Some((Id::from_hex(o.key.rsplit('/').next()?)?, o.size)))
        .collect();
    let list = repo.load_snapshots()?;
    let holds = if options.forget {
        Some(Holds::load(repo)?)
    } else {
        None
    };
    let mut report = SnapshotsReport {
        dry_run: options.dry_run,
        snapshots: list.items.len(),
        unreadable: list
            .damaged
            .iter()
            .map(|(key, e)| ItemError::unreadable(key.clone(), e.to_string()))
            .collect(),
        ..SnapshotsReport::default()
    };

    // Repaired snapshots already stored, by original and root: a second run does not write them again.
    let earlier: HashMap<(&str, Id), Id> = list
        .items
        .iter()
        .filter_map(|(id, s)| Some(((s.tags.get(REPAIRED_TAG)?.as_str(), s.tree), *id)))
        .collect();
    let mut rewriter = Rewriter {
        reader,
        sizes: &sizes,
        done: HashMap::new(),
        new_trees: HashMap::new(),
    };
    // (index into report.damaged, the repaired snapshot)
    let mut rewritten: Vec<(usize, Snapshot)> = Vec::new();
    for (id, snap) in &list.items {
        let short = id.short();
        let (lost, new_root) = match rewriter.rewrite(snap.tree)? {
            Outcome::Read(r) if r.lost.is_empty() => continue,
            Outcome::Read(r) => (r.lost, r.new),
            Outcome::Lost(detail) => (
                vec![(
                    "/".to_string(),
                    format!("the root directory is lost ({detail})"),
                )],
                None,
            ),
        };
        let lost: Vec<ItemError> = lost
            .into_iter()
            .map(|(path, message)| ItemError::unreadable(path, message))
            .collect();
        let unrepairable = match new_root {
            _ if snap.kind != "files" => Some(format!(
                "a {} snapshot is restored as one whole, which would be wrong without what is lost; it is not rewritten",
                snap.kind
            )),
            None => Some("nothing of it is left to keep".to_string()),
            Some(root) if earlier.contains_key(&(short.as_str(), root)) => None,
            Some(root) => {
                let mut new = snap.clone();
                new.tree = root;
                new.tags.insert(REPAIRED_TAG.into(), short.clone());
                new.errors.extend(lost.iter().map(|l| {
                    ItemError::unreadable(
                        l.path.clone(),
                        format!("lost, left out by repair: {}", l.message),
                    )
                }));
                rewritten.push((report.damaged.len(), new));
                None
            }
        };
        let repaired = new_root
            .and_then(|root| earlier.get(&(short.as_str(), root)).copied())
            .map(|id| id.to_hex());
        report.damaged.push(Repaired {
            snapshot: id.to_hex(),
            time: snap.time.clone(),
            kind: snap.kind.clone(),
            paths: snap.paths.clone(),
            lost,
            already_repaired: repaired.is_some(),
            repaired,
            unrepairable,
            forgotten: false,
            held: holds.as_ref().is_some_and(|h| h.is_held(id)),
        });
    }

    let Rewriter { new_trees, .. } = rewriter;
    let Some(writer) = writer else {
        return Ok(report);
    };
    // Store the new trees the repaired snapshots reach, in any order: nothing names them until the
    // snapshots are stored, last.
    let mut stack: Vec<Id> = rewritten.iter().map(|(_, s)| s.tree).collect();
    let mut stored: HashSet<Id> = HashSet::new();
    while let Some(tree) = stack.pop() {
        if let Some((bytes, children)) = new_trees.get(&tree) {
            if stored.insert(tree) {
                writer.add_blob(BlobKind::Tree, bytes)?;
                stack.extend(children.iter().copied());
            }
        }
    }
    let snapshots: Vec<Snapshot> = rewritten.iter().map(|(_, s)| s.clone()).collect();
    if snapshots.is_empty() {
        writer.close();
    } else {
        let ids = writer.finish_snapshots(&snapshots)?;
        for ((at, _), new_id) in rewritten.iter().zip(ids) {
            report.damaged[*at].repaired = Some(new_id.to_hex());
        }
    }
    if options.forget {
        for d in report.damaged.iter_mut().filter(|d| !d.held) {
            if let Some(id) = Id::from_hex(&d.snapshot) {
                repo.delete_snapshot(&id)?;
                d.forgotten = true;
            }
        }
    }
    Ok(report)
}

/// A tree after repair: its new ID when something below it was left out, and what (paths relative
/// to the tree, starting with `/`).
#[derive(Clone)]
struct Rewritten {
    new: Option<Id>,
    lost: Vec<(String, String)>,
}

#[derive(Clone)]
enum Outcome {
    Read(Rewritten),
    /// The tree itself cannot be read: why.
    Lost(String),
}

struct Rewriter<'a, 'r> {
    reader: &'a BlobReader<'r>,
    sizes: &'a HashMap<Id, u64>,
    /// Trees already judged (snapshots share most of their trees).
    done: HashMap<Id, Outcome>,
    /// New trees: their encoding and the new trees they name, stored only if a repaired snapshot
    /// reaches them.
    new_trees: HashMap<Id, (Vec<u8>, Vec<Id>)>,
}

impl Rewriter<'_, '_> {
    /// Why a blob cannot be read, judged from the index and the storage listing.
    fn lost_blob(&self, id: &Id) -> Option<String> {
        let Some((pack, entry)) = self.reader.index().get(id) else {
            return Some(format!("blob {} is in no index", id.short()));
        };
        match self.sizes.get(&pack) {
            None => Some(format!(
                "blob {} was in {}, which storage no longer has",
                id.short(),
                pack_key(&pack)
            )),
            Some(&size) if size < u64::from(entry.offset) + u64::from(entry.sealed_len) + 4 => {
                Some(format!(
                    "blob {} lies past the end of {}, which is truncated",
                    id.short(),
                    pack_key(&pack)
                ))
            }
            Some(_) => None,
        }
    }

    fn rewrite(&mut self, id: Id) -> Result<Outcome> {
        if let Some(done) = self.done.get(&id) {
            return Ok(done.clone());
        }
        let tree = match self.lost_blob(&id) {
            Some(why) => Err(why),
            None => match self.reader.read_tree(&id) {
                Ok(tree) => Ok(tree),
                Err(e) if e.kind() == ErrorKind::Damaged => Err(e.to_string()),
                // Unreachable storage is not lost data: nothing is left out on a guess.
                Err(e) => return Err(e),
            },
        };
        let outcome = match tree {
            Err(why) => Outcome::Lost(why),
            Ok(tree) => self.rewrite_nodes(tree)?,
        };
        self.done.insert(id, outcome.clone());
        Ok(outcome)
    }

    fn rewrite_nodes(&mut self, tree: Tree) -> Result<Outcome> {
        let mut lost = Vec::new();
        let mut children = Vec::new();
        let mut nodes = Vec::with_capacity(tree.nodes.len());
        for mut node in tree.nodes {
            let path = format!("/{}", String::from_utf8_lossy(&node.name));
            match node.node_type {
                NodeType::File => {
                    let chunks = node.content.as_deref().unwrap_or_default();
                    let missing: Vec<String> = chunks
                        .iter()
                        .filter_map(|c| self.lost_blob(c.id()))
                        .collect();
                    if let Some(first) = missing.first() {
                        lost.push((
                            path,
                            format!(
                                "file left out: {} of its {} chunk(s) are lost ({first})",
                                missing.len(),
                                chunks.len()
                            ),
                        ));
                        continue;
                    }
                }
                NodeType::Dir => {
                    let outcome = match node.subtree {
                        Some(sub) => self.rewrite(sub)?,
                        None => Outcome::Lost("it has no subtree".into()),
                    };
                    match outcome {
                        Outcome::Read(r) => {
                            lost.extend(
                                r.lost
                                    .into_iter()
                                    .map(|(p, why)| (format!("{path}{p}"), why)),
                            );
                            if let Some(new) = r.new {
                                node.subtree = Some(new);
                                children.push(new);
                            }
                        }
                        Outcome::Lost(why) => {
                            let empty = self.store(Tree::default(), Vec::new());
                            node.subtree = Some(empty);
                            children.push(empty);
                            lost.push((
                                format!("{path}/"),
                                format!("directory emptied: its listing is lost ({why})"),
                            ));
                        }
                    }
                }
                _ => {}
            }
            nodes.push(node);
        }
        let new = (!lost.is_empty()).then(|| self.store(Tree { nodes }, children));
        Ok(Outcome::Read(Rewritten { new, lost }))
    }

    /// Name a new tree and keep it until the snapshots to write are known.
    fn store(&mut self, tree: Tree, children: Vec<Id>) -> Id {
        let bytes = tree.encode();
        let id = self.reader.repo().keyring().chunk_id(&bytes);
        self.new_trees.entry(id).or_insert((bytes, children));
        id
    }
}
