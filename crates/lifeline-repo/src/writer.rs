//! A write session: deduplicate, compress and seal blobs into packs, then record them in an index and
//! finish with a snapshot. Many sessions may write one repository at once; none takes a lock.

use std::collections::HashSet;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use rayon::prelude::*;

use crate::chunker::{ChunkProfile, Chunker};
use crate::crypto::ObjectType;
use crate::error::{Error, Result};
use crate::pack::{pack_key, BlobKind, PackBlobs, PackWriter};
use crate::reader::{poisoned, BlobReader};
use crate::repository::Repository;
use crate::snapshot::Snapshot;
use crate::tree::{ContentRef, Tree};
use crate::Id;

/// zstd level 3: zstd's own default, the best size per CPU second on source trees and database pages.
pub const DEFAULT_COMPRESSION: i32 = 3;

/// Chunks hashed and compressed in parallel while the next batch is read.
const BATCH_BYTES: usize = 16 << 20;

pub struct Writer<'r> {
    reader: BlobReader<'r>,
    new_ids: Mutex<HashSet<Id>>,
    data_pack: Mutex<Option<PackWriter>>,
    tree_pack: Mutex<Option<PackWriter>>,
    written: Mutex<Vec<PackBlobs>>,
    recovered: Vec<PackBlobs>,
    data_added: AtomicU64,
    pack_size: usize,
    level: i32,
    files_chunker: Chunker,
    stream_chunker: Chunker,
}

impl<'r> Writer<'r> {
    /// Start a session. Packs in storage that no index names (left by a writer that was killed, or one
    /// still running) are adopted from their trailers, so their blobs are not uploaded again, and this
    /// session's index names them.
    pub fn new(repo: &'r Repository, pack_size: Option<u64>, level: i32) -> Result<Self> {
        let (index, recovered) = repo.load_index()?;
        let reader = BlobReader::new(repo, index);
        let gear_key = repo.keyring().gear_key;
        Ok(Writer {
            reader,
            new_ids: Mutex::new(HashSet::new()),
            data_pack: Mutex::new(None),
            tree_pack: Mutex::new(None),
            written: Mutex::new(Vec::new()),
            recovered,
            data_added: AtomicU64::new(0),
            pack_size: pack_size.unwrap_or(repo.config().pack_size) as usize,
            level,
            files_chunker: Chunker::new(&gear_key, ChunkProfile::Files),
            stream_chunker: Chunker::new(&gear_key, ChunkProfile::Stream),
        })
    }

    /// Read access to what the repository held when the session began (for parent trees).
    pub fn reader(&self) -> &BlobReader<'r> {
        &self.reader
    }

    /// Store one blob unless the repository already has it; returns its ID.
    pub fn add_blob(&self, kind: BlobKind, data: &[u8]) -> Result<Id> {
        let id = self.reader.repo().keyring().chunk_id(data);
        if self.reader.index().contains(&id) || !self.new_ids.lock().map_err(poisoned)?.insert(id) {
            return Ok(id);
        }
        let payload = crate::payload::encode(data, self.level);
        let (slot, object_type) = match kind {
            BlobKind::Data => (&self.data_pack, ObjectType::DataPack),
            BlobKind::Tree => (&self.tree_pack, ObjectType::TreePack),
        };
        let full = {
            let mut guard = slot.lock().map_err(poisoned)?;
            if guard.is_none() {
                *guard = Some(PackWriter::new(
                    self.reader.repo().keyring(),
                    object_type,
                    self.pack_size,
                )?);
            }
            let pack = guard
                .as_mut()
                .ok_or_else(|| Error::Invalid("pack slot".into()))?;
            let entry = pack.add(kind, id, &payload, data.len() as u32);
            self.data_added
                .fetch_add(u64::from(entry.sealed_len), Ordering::Relaxed);
            if pack.len() >= self.pack_size {
                guard.take()
            } else {
                None
            }
        };
        // Upload outside the lock so other threads keep packing meanwhile.
        if let Some(pack) = full {
            self.upload(pack)?;
        }
        Ok(id)
    }

    fn upload(&self, pack: PackWriter) -> Result<()> {
        let (bytes, id, entries) = pack.finish();
        self.reader.repo().storage().put(&pack_key(&id), &bytes)?;
        self.written.lock().map_err(poisoned)?.push((id, entries));
        Ok(())
    }

    pub fn add_tree(&self, tree: Tree) -> Result<Id> {
        self.add_blob(BlobKind::Tree, &tree.encode())
    }

    /// Chunk a stream and store its chunks. Returns the content references and the byte count.
    /// `on_bytes` is told of progress. `label` names the stream in errors.
    pub fn add_stream(
        &self,
        reader: impl Read + Send,
        profile: ChunkProfile,
        label: &Path,
        on_bytes: &(dyn Fn(u64) + Sync),
    ) -> Result<(Vec<ContentRef>, u64)> {
        let chunker = match profile {
            ChunkProfile::Files => &self.files_chunker,
            ChunkProfile::Stream => &self.stream_chunker,
        };
        let mut stream = chunker.stream(reader);
        let mut next_batch = || -> Result<Vec<Vec<u8>>> {
            let mut batch = Vec::new();
            let mut bytes = 0;
            while bytes < BATCH_BYTES {
                match stream.next_chunk().map_err(|e| Error::io(label, e))? {
                    Some(chunk) => {
                        bytes += chunk.len();
                        batch.push(chunk);
                    }
                    None => break,
                }
            }
            Ok(batch)
        };
        let mut refs = Vec::new();
        let mut total = 0u64;
        let mut batch = next_batch()?;
        while !batch.is_empty() {
            // Hash, compress and seal this batch while the next one is read.
            let (ids, next) = rayon::join(
                || {
                    batch
                        .par_iter()
                        .map(|c| {
                            let id = self.add_blob(BlobKind::Data, c);
                            on_bytes(c.len() as u64);
                            id
                        })
                        .collect::<Result<Vec<Id>>>()
                },
                &mut next_batch,
            );
            for (id, chunk) in ids?.into_iter().zip(&batch) {
                refs.push(ContentRef(id, 0, chunk.len() as u64));
                total += chunk.len() as u64;
            }
            batch = next?;
        }
        Ok((refs, total))
    }

    /// Seal the open packs, write this session's index, then the snapshot. Until the snapshot lands the
    /// repository shows nothing new; what landed before is reused by the next session.
    pub fn finish(self, snapshot: Snapshot) -> Result<(Id, Snapshot)> {
        self.finish_with_packs(snapshot)
            .map(|(id, snap, _)| (id, snap))
    }

    /// [`Writer::finish`], also returning the packs this session uploaded (for read-back checks).
    pub fn finish_with_packs(
        self,
        mut snapshot: Snapshot,
    ) -> Result<(Id, Snapshot, Vec<PackBlobs>)> {
        for slot in [&self.data_pack, &self.tree_pack] {
            if let Some(pack) = slot.lock().map_err(poisoned)?.take() {
                self.upload(pack)?;
            }
        }
        let mut packs = self.written.into_inner().map_err(poisoned)?;
        let written = packs.len();
        packs.extend(self.recovered);
        if !packs.is_empty() {
            let repo = self.reader.repo();
            let bytes = crate::index::seal(repo.keyring(), &packs)?;
            repo.storage()
                .put(&format!("index/{}", Id::of_stored(&bytes)), &bytes)?;
        }
        snapshot.summary.data_added = self.data_added.load(Ordering::Relaxed);
        let id = self.reader.repo().save_snapshot(&snapshot)?;
        packs.truncate(written);
        Ok((id, snapshot, packs))
    }
}

/// Small files of one directory concatenated into one chunk (format.md §4, bundles).
#[derive(Default)]
pub struct Bundle {
    buf: Vec<u8>,
}

/// Files smaller than this go into bundles.
pub const BUNDLE_FILE_LIMIT: u64 = 256 << 10;
/// A bundle is sealed once it holds this much.
pub const BUNDLE_TARGET: usize = 1 << 20;

impl Bundle {
    /// Append a file's bytes; returns their offset in the bundle.
    pub fn push(&mut self, data: &[u8]) -> u64 {
        let offset = self.buf.len() as u64;
        self.buf.extend_from_slice(data);
        offset
    }

    pub fn is_full(&self) -> bool {
        self.buf.len() >= BUNDLE_TARGET
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Store the bundle as one chunk and start a new one.
    pub fn seal(&mut self, writer: &Writer<'_>) -> Result<Id> {
        let id = writer.add_blob(BlobKind::Data, &self.buf)?;
        self.buf.clear();
        Ok(id)
    }
}
