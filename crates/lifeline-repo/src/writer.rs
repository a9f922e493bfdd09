//! A write session: deduplicate, compress and seal blobs into packs, then record them in an index and
//! finish with a snapshot. Many sessions may write one repository at once; none takes a lock.

use std::collections::HashSet;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use rayon::prelude::*;

use crate::chunker::{ChunkProfile, Chunker};
use crate::crypto::ObjectType;
use crate::error::{Error, Result};
use crate::index::Index;
use crate::pack::{pack_key, BlobEntry, BlobKind, PackBlobs, PackWriter};
use crate::reader::{poisoned, BlobReader};
use crate::repository::Repository;
use crate::session::Session;
use crate::snapshot::Snapshot;
use crate::tree::{ContentRef, Tree};
use crate::Id;

/// zstd level 3: zstd's own default, the best size per CPU second on source trees and database pages.
pub const DEFAULT_COMPRESSION: i32 = 3;

/// Bytes of chunks read ahead per core, across every stream the session is chunking at once: each
/// stream hashes and compresses one batch while it reads the next, so the session holds about twice
/// the budget. One stream (a `pg_basebackup` tar, a large file) gets it all; parallel readers share
/// it, so a base backup's memory does not grow with `--jobs` (docs/benchmarks-pg.md, peak RSS).
/// Two MiB per core is two average file chunks for each core to hash and compress.
const BATCH_PER_CORE: usize = 2 << 20;
/// The budget's bounds: enough for a batch to spread over two cores, and not more than a large
/// machine needs to stay busy.
const BATCH_BUDGET: (usize, usize) = (4 << 20, 64 << 20);
/// A batch still spreads over the cores: a few of the largest (4 MiB) file chunks.
const MIN_BATCH: usize = 2 << 20;

pub struct Writer<'r> {
    /// Announces this session to prune (format.md §13) until the snapshot is stored.
    session: Session,
    reader: BlobReader<'r>,
    new_ids: Mutex<HashSet<Id>>,
    data_pack: Mutex<Option<PackWriter>>,
    tree_pack: Mutex<Option<PackWriter>>,
    written: Mutex<Vec<PackBlobs>>,
    recovered: Vec<PackBlobs>,
    data_added: AtomicU64,
    /// Streams being chunked now ([`Writer::add_stream`]), which share `batch_budget`.
    streams: AtomicUsize,
    batch_budget: usize,
    pack_size: usize,
    level: i32,
    files_chunker: Chunker,
    stream_chunker: Chunker,
}

/// The session's marker names the epoch it seals under, so `key destroy-epoch` waits for it; a
/// handle whose keys were read long ago first makes sure no rotation happened since, since a destroy
/// that listed the sessions before this marker was stored would not see it (format.md §3.2).
fn start_session(repo: &Repository, command: &str) -> Result<Session> {
    let epoch = repo.keyring().current().ok().map(|e| e.tag);
    let session = Session::start_sealing(repo.shared_storage(), command, epoch)?;
    repo.ensure_keys_fresh()?;
    Ok(session)
}

/// Counts a stream in [`Writer::streams`] while it is chunked, however `add_stream` returns.
struct StreamCount<'a>(&'a AtomicUsize);

impl<'a> StreamCount<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        StreamCount(count)
    }
}

impl Drop for StreamCount<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<'r> Writer<'r> {
    /// Start a session. Packs in storage that no index names (left by a writer that was killed, or one
    /// still running) are adopted from their trailers, so their blobs are not uploaded again, and this
    /// session's index names them.
    pub fn new(repo: &'r Repository, pack_size: Option<u64>, level: i32) -> Result<Self> {
        Self::start(repo, "write", pack_size, level)
    }

    /// [`Writer::new`] for a session that is not a backup (`repair`): its marker names `command`.
    pub fn start(
        repo: &'r Repository,
        command: &str,
        pack_size: Option<u64>,
        level: i32,
    ) -> Result<Self> {
        // The marker first, then the marks and the index: a prune that marks after this session
        // announced itself waits for it (format.md §13).
        let session = start_session(repo, command)?;
        // Staging files of writes that died (a full disk, a kill) would otherwise fill the disk
        // for good; a failure to remove them must not stop this backup.
        match repo.storage().clean_staging() {
            Ok(removed) if !removed.is_empty() => tracing::info!(
                "removed {} staging file(s) of interrupted writes ({} bytes)",
                removed.len(),
                removed.iter().map(|s| s.info.size).sum::<u64>()
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!("could not remove staging files of interrupted writes: {e}"),
        }
        let (index, recovered) = repo.load_index()?;
        Ok(Self::with_index(
            repo, session, index, recovered, pack_size, level,
        ))
    }

    /// A session that deduplicates against nothing: prune copying live blobs out of packs it will
    /// delete, which must not spend memory and time on the whole index.
    pub fn unindexed(repo: &'r Repository, command: &str, level: i32) -> Result<Self> {
        let session = start_session(repo, command)?;
        Ok(Self::with_index(
            repo,
            session,
            Index::default(),
            Vec::new(),
            None,
            level,
        ))
    }

    fn with_index(
        repo: &'r Repository,
        session: Session,
        index: Index,
        recovered: Vec<PackBlobs>,
        pack_size: Option<u64>,
        level: i32,
    ) -> Self {
        let gear_key = repo.keyring().gear_key;
        Writer {
            session,
            reader: BlobReader::new(repo, index),
            new_ids: Mutex::new(HashSet::new()),
            data_pack: Mutex::new(None),
            tree_pack: Mutex::new(None),
            written: Mutex::new(Vec::new()),
            recovered,
            data_added: AtomicU64::new(0),
            streams: AtomicUsize::new(0),
            batch_budget: (rayon::current_num_threads() * BATCH_PER_CORE)
                .clamp(BATCH_BUDGET.0, BATCH_BUDGET.1),
            pack_size: pack_size.unwrap_or(repo.config().pack_size) as usize,
            level,
            files_chunker: Chunker::new(&gear_key, ChunkProfile::Files),
            stream_chunker: Chunker::new(&gear_key, ChunkProfile::Stream),
        }
    }

    /// End a session that stores no snapshot (its packs were indexed by the caller).
    pub fn close(self) {
        self.session.end();
    }

    /// Read access to what the repository held when the session began (for parent trees).
    pub fn reader(&self) -> &BlobReader<'r> {
        &self.reader
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Whether a parent's chunk list may be reused as it is: every chunk is in a pack no prune mark
    /// names. Otherwise the file is read again (format.md §13).
    pub fn reusable(&self, content: &[ContentRef]) -> bool {
        content
            .iter()
            .all(|c| self.reader.index().contains_live(c.id()))
    }

    /// Store one blob unless the repository already has it in a live pack; returns its ID.
    pub fn add_blob(&self, kind: BlobKind, data: &[u8]) -> Result<Id> {
        let id = self.reader.repo().keyring().chunk_id(data);
        if self.reader.index().contains_live(&id) {
            return Ok(id);
        }
        self.store_blob(kind, id, data)
    }

    /// Store a blob even though the index has it: prune copying the live blobs of a pack it will
    /// delete. The caller copies each blob once, so this session does not remember them (a million
    /// IDs would cost prune tens of megabytes).
    pub fn copy_blob(&self, kind: BlobKind, data: &[u8]) -> Result<Id> {
        let id = self.reader.repo().keyring().chunk_id(data);
        self.seal_blob(kind, id, data)?;
        Ok(id)
    }

    fn store_blob(&self, kind: BlobKind, id: Id, data: &[u8]) -> Result<Id> {
        if self.new_ids.lock().map_err(poisoned)?.insert(id) {
            self.seal_blob(kind, id, data)?;
        }
        Ok(id)
    }

    /// Compress and seal a blob into the open pack of its kind; upload the pack when it is full.
    fn seal_blob(&self, kind: BlobKind, id: Id, data: &[u8]) -> Result<()> {
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
        Ok(())
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
        let _active = StreamCount::enter(&self.streams);
        let mut next_batch = || -> Result<Vec<Vec<u8>>> {
            let share = self.batch_budget / self.streams.load(Ordering::Relaxed).max(1);
            let limit = share.max(MIN_BATCH);
            let mut batch = Vec::new();
            let mut bytes = 0;
            while bytes < limit {
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
        let packs = self.write_index()?;
        snapshot.summary.data_added = self.data_added.load(Ordering::Relaxed);
        let id = self.reader.repo().save_snapshot(&snapshot)?;
        self.session.end();
        Ok((id, snapshot, packs))
    }

    /// Seal the open packs, write this session's index, then store `snapshots` as they are (repair
    /// rewrites several snapshots in one session, each keeping its own summary).
    pub fn finish_snapshots(self, snapshots: &[Snapshot]) -> Result<Vec<Id>> {
        self.write_index()?;
        let repo = self.reader.repo();
        let ids = snapshots
            .iter()
            .map(|s| repo.save_snapshot(s))
            .collect::<Result<Vec<Id>>>()?;
        self.session.end();
        Ok(ids)
    }

    /// Upload the open packs and write one index naming them and the adopted ones; returns the
    /// packs this session uploaded.
    fn write_index(&self) -> Result<Vec<PackBlobs>> {
        self.flush()?;
        self.session.ensure_trusted()?;
        let written = std::mem::take(&mut *self.written.lock().map_err(poisoned)?);
        let packs: Vec<(Id, &[BlobEntry])> = written
            .iter()
            .chain(&self.recovered)
            .map(|(id, entries)| (*id, entries.as_slice()))
            .collect();
        if !packs.is_empty() {
            let repo = self.reader.repo();
            let bytes = crate::index::seal(repo.keyring(), &packs)?;
            repo.storage()
                .put(&format!("index/{}", Id::of_stored(&bytes)), &bytes)?;
        }
        Ok(written)
    }

    /// Upload the open packs and return every pack this session wrote, writing no index and no
    /// snapshot (prune indexes them in its merged index files). The session stays open.
    pub fn finish_packs(&self) -> Result<Vec<PackBlobs>> {
        self.flush()?;
        Ok(std::mem::take(&mut *self.written.lock().map_err(poisoned)?))
    }

    fn flush(&self) -> Result<()> {
        for slot in [&self.data_pack, &self.tree_pack] {
            let pack = slot.lock().map_err(poisoned)?.take();
            if let Some(pack) = pack {
                self.upload(pack)?;
            }
        }
        Ok(())
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
