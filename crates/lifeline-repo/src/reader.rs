//! Reading blobs back by ID: find them in the index, fetch only their byte range, open and verify.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::crypto::{Header, Sealer, HEADER_LEN};
use crate::error::{Error, Result};
use crate::index::Index;
use crate::pack::{open_blob, pack_key};
use crate::repository::Repository;
use crate::tree::Tree;
use crate::Id;

pub struct BlobReader<'r> {
    repo: &'r Repository,
    index: Index,
    // One header read per pack, not per blob.
    sealers: Mutex<HashMap<Id, Arc<Sealer>>>,
}

impl<'r> BlobReader<'r> {
    pub fn new(repo: &'r Repository, index: Index) -> Self {
        BlobReader {
            repo,
            index,
            sealers: Mutex::new(HashMap::new()),
        }
    }

    pub fn repo(&self) -> &'r Repository {
        self.repo
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    fn sealer(&self, pack: &Id) -> Result<Arc<Sealer>> {
        if let Some(s) = self.sealers.lock().map_err(poisoned)?.get(pack) {
            return Ok(Arc::clone(s));
        }
        let key = pack_key(pack);
        let header_bytes = self.repo.storage().get_range(&key, 0, HEADER_LEN as u64)?;
        let header = Header::parse(&header_bytes, &key)?;
        let sealer = Arc::new(Sealer::new(self.repo.keyring(), &header)?);
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
        let sealed = self.repo.storage().get_range(
            &key,
            u64::from(entry.offset),
            u64::from(entry.sealed_len),
        )?;
        open_blob(
            &*self.sealer(&pack)?,
            self.repo.keyring(),
            &entry,
            &sealed,
            &key,
        )
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
