//! What prune sees of the repository: every index file, every pack with its blobs (from the index,
//! or from its trailer when no index names it), and which of them exist in storage.

use std::collections::HashMap;
use std::time::SystemTime;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::pack::{read_trailer, BlobEntry, PackBlobs};
use crate::repository::Repository;
use crate::Id;

pub struct IndexFile {
    pub id: Id,
    pub packs: Vec<Id>,
    pub entries: usize,
}

pub struct Pack {
    pub id: Id,
    pub entries: Vec<BlobEntry>,
    /// Stored size, or `None` when storage no longer has it (deleted by an interrupted prune).
    pub size: Option<u64>,
    pub modified: SystemTime,
    /// Some index file names it.
    pub indexed: bool,
}

pub struct State {
    pub files: Vec<IndexFile>,
    pub packs: Vec<Pack>,
    pub by_id: HashMap<Id, usize>,
    /// Index files that could not be read: left alone (their packs are read from trailers).
    pub damaged_files: Vec<String>,
    /// Packs no index names whose trailer could not be read: left alone.
    pub unreadable_packs: Vec<String>,
}

impl State {
    pub fn load(repo: &Repository) -> Result<State> {
        let mut state = State {
            files: Vec::new(),
            packs: Vec::new(),
            by_id: HashMap::new(),
            damaged_files: Vec::new(),
            unreadable_packs: Vec::new(),
        };
        state.refresh(repo)?;
        Ok(state)
    }

    /// Read the index files and unindexed packs that appeared since the state was loaded (backups
    /// that finished meanwhile).
    pub fn refresh(&mut self, repo: &Repository) -> Result<()> {
        let known: std::collections::HashSet<String> = self
            .files
            .iter()
            .map(|f| format!("index/{}", f.id))
            .chain(self.damaged_files.iter().cloned())
            .collect();
        let keys: Vec<String> = repo
            .index_keys()?
            .into_iter()
            .filter(|k| !known.contains(k))
            .collect();
        let loaded: Vec<(String, Result<Vec<PackBlobs>>)> = keys
            .into_par_iter()
            .map(|key| {
                let packs = repo.load_index_file(&key);
                (key, packs)
            })
            .collect();
        let stored: HashMap<Id, (u64, SystemTime)> = repo
            .storage()
            .list("data/")?
            .into_iter()
            .filter_map(|o| {
                Some((
                    Id::from_hex(o.key.rsplit('/').next()?)?,
                    (o.size, o.modified),
                ))
            })
            .collect();
        let state = self;
        for (key, packs) in loaded {
            let packs = match packs {
                Ok(p) => p,
                Err(Error::ObjectMissing { .. }) => continue,
                Err(e) => {
                    tracing::warn!("prune leaves {key} alone: {e}");
                    state.damaged_files.push(key);
                    continue;
                }
            };
            let Some(id) = Id::from_hex(key.trim_start_matches("index/")) else {
                continue;
            };
            let entries = packs.iter().map(|(_, e)| e.len()).sum();
            let ids = packs.iter().map(|(p, _)| *p).collect();
            for (pack, blobs) in packs {
                state.add_pack(pack, blobs, stored.get(&pack).copied(), true);
            }
            state.files.push(IndexFile {
                id,
                packs: ids,
                entries,
            });
        }
        for pack in &mut state.packs {
            if let Some(&(size, modified)) = stored.get(&pack.id) {
                pack.size = Some(size);
                pack.modified = modified;
            }
        }
        let unindexed: Vec<(Id, u64, SystemTime)> = stored
            .iter()
            .filter(|(id, _)| !state.by_id.contains_key(id))
            .map(|(id, (size, modified))| (*id, *size, *modified))
            .collect();
        let read: Vec<(Id, u64, SystemTime, Result<Vec<BlobEntry>>)> = unindexed
            .into_par_iter()
            .map(|(id, size, modified)| {
                let key = crate::pack::pack_key(&id);
                let trailer = read_trailer(repo.storage(), repo.keyring(), &key, size);
                (id, size, modified, trailer)
            })
            .collect();
        for (id, size, modified, trailer) in read {
            match trailer {
                Ok(entries) => state.add_pack(id, entries, Some((size, modified)), false),
                Err(Error::ObjectMissing { .. }) => {}
                Err(e) => {
                    tracing::warn!("prune leaves unindexed pack {id} alone: {e}");
                    state.unreadable_packs.push(crate::pack::pack_key(&id));
                }
            }
        }
        Ok(())
    }

    fn add_pack(
        &mut self,
        id: Id,
        mut entries: Vec<BlobEntry>,
        stored: Option<(u64, SystemTime)>,
        indexed: bool,
    ) {
        if let Some(&at) = self.by_id.get(&id) {
            self.packs[at].indexed |= indexed;
            return;
        }
        // Decoding grew these by pushing; a million entries must not carry a third more.
        entries.shrink_to_fit();
        self.by_id.insert(id, self.packs.len());
        self.packs.push(Pack {
            id,
            entries,
            size: stored.map(|s| s.0),
            modified: stored.map_or(SystemTime::UNIX_EPOCH, |s| s.1),
            indexed,
        });
    }

    /// Forget packs and index files that were deleted.
    pub fn remove(
        &mut self,
        packs: &std::collections::HashSet<Id>,
        files: &std::collections::HashSet<Id>,
    ) {
        self.files.retain(|f| !files.contains(&f.id));
        for f in &mut self.files {
            f.packs.retain(|p| !packs.contains(p));
        }
        self.packs.retain(|p| !packs.contains(&p.id));
        self.by_id = self
            .packs
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id, i))
            .collect();
    }

    /// Record an index file this run wrote.
    pub fn add_file(&mut self, id: Id, packs: Vec<Id>) {
        let mut entries = 0;
        for pack in &packs {
            if let Some(&at) = self.by_id.get(pack) {
                self.packs[at].indexed = true;
                entries += self.packs[at].entries.len();
            }
        }
        self.files.push(IndexFile { id, packs, entries });
    }

    /// The stored size of a pack storage still has.
    pub fn stored_size(&self, pack: &Id) -> Option<u64> {
        self.by_id.get(pack).and_then(|&i| self.packs[i].size)
    }

    /// A pack's blobs, borrowed for an index file.
    pub fn entries_of(&self, pack: &Id) -> Option<&[BlobEntry]> {
        self.by_id
            .get(pack)
            .map(|&at| self.packs[at].entries.as_slice())
    }
}
