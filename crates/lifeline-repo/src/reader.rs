//! Reading blobs back by ID: find them in the index, fetch only their byte range, open and verify.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::crypto::{Header, Sealer, HEADER_LEN};
use crate::error::{Error, Result};
use crate::index::Index;
use crate::pack::{open_blob, pack_key};
use crate::repository::Repository;
use crate::tree::{ContentRef, Tree};
use crate::Id;

pub struct BlobReader<'r> {
    repo: &'r Repository,
    index: Index,
    // One header read per pack, not per blob.
    sealers: Mutex<HashMap<Id, Arc<Sealer>>>,
    // Whole packs from remote storage, where a round trip per blob would dominate.
    packs: Option<PackCache>,
}

/// Packs held at most by [`PackCache`] (16 MiB each by default): enough for the workers of a restore
/// to share what they read, small enough to keep a restore well under 250 MB.
const CACHED_PACKS: usize = 6;

/// Recently fetched whole packs. Each pack has its own slot, so threads wanting the same pack wait
/// for one download instead of starting their own.
#[derive(Default)]
struct PackCache {
    /// Slots by pack, and their order of use (least recently used first, evicted first).
    slots: Mutex<(HashMap<Id, PackSlot>, VecDeque<Id>)>,
}

/// One pack's bytes once fetched; locked while the fetch runs.
type PackSlot = Arc<Mutex<Option<Arc<Vec<u8>>>>>;

impl PackCache {
    fn get(&self, pack: &Id, fetch: impl FnOnce() -> Result<Vec<u8>>) -> Result<Arc<Vec<u8>>> {
        let slot = {
            let mut guard = self.slots.lock().map_err(poisoned)?;
            let (map, order) = &mut *guard;
            // Least recently used goes first: restore workers in different directories share packs,
            // and evicting by age alone made them fetch the same packs again and again.
            if let Some(at) = order.iter().position(|p| p == pack) {
                order.remove(at);
            }
            order.push_back(*pack);
            if order.len() > CACHED_PACKS {
                if let Some(old) = order.pop_front() {
                    map.remove(&old);
                }
            }
            Arc::clone(map.entry(*pack).or_default())
        };
        let mut cell = slot.lock().map_err(poisoned)?;
        if let Some(bytes) = cell.as_ref() {
            return Ok(Arc::clone(bytes));
        }
        let bytes = Arc::new(fetch()?);
        *cell = Some(Arc::clone(&bytes));
        Ok(bytes)
    }
}

impl<'r> BlobReader<'r> {
    pub fn new(repo: &'r Repository, index: Index) -> Self {
        BlobReader {
            repo,
            index,
            sealers: Mutex::new(HashMap::new()),
            packs: repo.storage().is_remote().then(PackCache::default),
        }
    }

    pub fn repo(&self) -> &'r Repository {
        self.repo
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    fn sealer(&self, pack: &Id, whole: Option<&[u8]>) -> Result<Arc<Sealer>> {
        if let Some(s) = self.sealers.lock().map_err(poisoned)?.get(pack) {
            return Ok(Arc::clone(s));
        }
        let key = pack_key(pack);
        let header_bytes = match whole {
            Some(bytes) => bytes.get(..HEADER_LEN).unwrap_or(bytes).to_vec(),
            None => self.repo.storage().get_range(&key, 0, HEADER_LEN as u64)?,
        };
        let header = Header::parse(&header_bytes, &key)?;
        let sealer = Arc::new(Sealer::for_object(self.repo.keyring(), &header, &key)?);
        self.sealers
            .lock()
            .map_err(poisoned)?
            .insert(*pack, Arc::clone(&sealer));
        Ok(sealer)
    }

    /// The plaintext of a blob, verified against its ID.
    pub fn read_blob(&self, id: &Id) -> Result<Vec<u8>> {
        let (pack, entry) = self.index.get(id).ok_or_else(|| Error::ObjectMissing {
            key: format!("blob {id} (not in any index)"),
        })?;
        let key = pack_key(&pack);
        let (start, len) = (u64::from(entry.offset), u64::from(entry.sealed_len));
        match &self.packs {
            Some(cache) => {
                let bytes = cache.get(&pack, || self.repo.storage().get(&key))?;
                let sealed = bytes
                    .get(start as usize..(start + len) as usize)
                    .ok_or_else(|| Error::corrupt(&key, "shorter than its index says"))?;
                open_blob(
                    &*self.sealer(&pack, Some(&bytes))?,
                    self.repo.keyring(),
                    &entry,
                    sealed,
                    &key,
                )
            }
            None => {
                let sealed = self.repo.storage().get_range(&key, start, len)?;
                open_blob(
                    &*self.sealer(&pack, None)?,
                    self.repo.keyring(),
                    &entry,
                    &sealed,
                    &key,
                )
            }
        }
    }

    /// The bytes of one piece of a file: a whole chunk, or the file's slice of a shared blob.
    pub fn read_part(&self, part: &ContentRef) -> Result<Vec<u8>> {
        let mut blob = self.read_blob(part.id())?;
        let start = usize::try_from(part.offset()).unwrap_or(usize::MAX);
        let end = start.saturating_add(usize::try_from(part.len()).unwrap_or(usize::MAX));
        if end > blob.len() {
            return Err(Error::corrupt(
                format!("blob {}", part.id()),
                "shorter than a file's reference to it",
            ));
        }
        blob.truncate(end);
        blob.drain(..start);
        Ok(blob)
    }

    /// A tree blob. Its kind is not checked: IDs name content, so a data blob with the same ID holds
    /// the very same bytes.
    pub fn read_tree(&self, id: &Id) -> Result<Tree> {
        Tree::decode(&self.read_blob(id)?, id)
    }
}

pub(crate) fn poisoned<T>(_: T) -> Error {
    Error::Invalid("a worker thread panicked while holding shared state".into())
}
