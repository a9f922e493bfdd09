//! Capture a bucket prefix into an unsaved snapshot: list it, keep what the parent snapshot already
//! holds unchanged, read the rest (small objects many at a time into bundles, large ones streamed
//! through the chunker), and write the tree of objects and the manifest.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use lifeline_repo::chunker::ChunkProfile;
use lifeline_repo::snapshot::{ItemError, Snapshot, Summary};
use lifeline_repo::tree::{ContentRef, Node, NodeType, Tree};
use lifeline_repo::{Bundle, Id, Writer, BUNDLE_FILE_LIMIT};
use object_store::aws::AmazonS3;
use object_store::path::Path;
use object_store::{Attributes, ObjectMeta, ObjectStoreExt};

use super::bucket::{about_the_object, REQUESTS_IN_FLIGHT};
use super::manifest::{self, Lines, ObjectRecord, MANIFEST, OBJECTS};
use super::{keys, recorded, Bucket, Error, Headers, Listed, KIND};
use crate::Progress;

/// Large objects streamed at once: each holds up to two chunking batches (32 MiB) in memory.
const STREAMS_IN_FLIGHT: usize = 2;
/// Tries of one object whose body broke off (requests themselves are retried by the client).
const ATTEMPTS: u32 = 3;
const FIRST_DELAY: Duration = Duration::from_millis(200);

/// What to capture.
pub struct CaptureRequest<'a> {
    pub bucket: &'a Bucket,
    /// The root tree of the newest snapshot of the same bucket URL: objects whose ETag, size and
    /// Last-Modified it records unchanged keep its content and are not read again.
    pub parent: Option<Id>,
}

/// What a capture did, recorded in the snapshot's `source` (see [`recorded`]).
#[derive(Default)]
struct Counts {
    objects: u64,
    fetched: u64,
    unchanged: u64,
    vanished: u64,
    bytes_fetched: u64,
}

/// One object on its way into the snapshot.
struct Entry {
    listed: Listed,
    /// Its names below `objects/`.
    path: Vec<String>,
    /// The parent snapshot had this key.
    existed: bool,
    outcome: Option<Outcome>,
}

enum Outcome {
    Kept(Stored),
    Fetched(Stored),
    /// Listed, but gone when read: deleted meanwhile, or a folder marker (`a/`, listed as `a`).
    Vanished,
    /// The store refused this object (access denied to it alone): recorded as an item error.
    Unreadable(String),
}

struct Stored {
    size: u64,
    last_modified: DateTime<Utc>,
    etag: Option<String>,
    headers: Headers,
    content: Vec<ContentRef>,
}

/// Capture `request.bucket` through `writer`. The snapshot is returned unsaved, its time not set
/// (the caller knows when listing began).
pub fn capture(
    writer: &Writer<'_>,
    request: &CaptureRequest<'_>,
    progress: &dyn Progress,
) -> Result<Snapshot, Error> {
    let bucket = request.bucket;
    let listed = bucket.list()?;
    if listed.is_empty() {
        tracing::warn!(
            "{} holds no objects: the snapshot is empty (check the prefix if that is a surprise)",
            bucket.url()
        );
    }
    progress.total(listed.iter().map(|l| l.size).sum());
    let parent = request
        .parent
        .map(|root| parent_objects(writer, root))
        .unwrap_or_default();

    let is_prefix: Vec<bool> = {
        let prefixes = keys::prefixes(listed.iter().map(|l| l.key.as_str()));
        listed
            .iter()
            .map(|l| prefixes.contains(l.key.as_str()))
            .collect()
    };
    let mut entries: Vec<Entry> = Vec::with_capacity(listed.len());
    for (l, is_prefix) in listed.into_iter().zip(is_prefix) {
        let path = keys::path_of(&l.key, is_prefix);
        let old = parent.get(&l.key);
        let kept = old
            .filter(|(record, node)| unchanged(record, &l) && reusable(writer, node))
            .map(|(record, node)| Stored {
                size: l.size,
                last_modified: l.last_modified,
                etag: l.etag.clone(),
                headers: record.headers.clone(),
                content: node.content.clone().unwrap_or_default(),
            });
        if let Some(stored) = &kept {
            progress.bytes(stored.size);
            progress.file_done(stored.size);
        }
        entries.push(Entry {
            existed: old.is_some(),
            listed: l,
            path,
            outcome: kept.map(Outcome::Kept),
        });
    }
    drop(parent);

    let fetcher = Fetcher {
        writer,
        bucket,
        progress,
    };
    let (small, large): (Vec<usize>, Vec<usize>) = (0..entries.len())
        .filter(|&i| entries[i].outcome.is_none())
        .partition(|&i| entries[i].listed.size < BUNDLE_FILE_LIMIT);
    let grown = fetcher.fetch_small(&small, &mut entries)?;
    fetcher.fetch_large(
        &large.into_iter().chain(grown).collect::<Vec<_>>(),
        &mut entries,
    )?;

    let mut snapshot = finish(writer, bucket, entries)?;
    snapshot.paths = vec![bucket.url().to_string()];
    Ok(snapshot)
}

/// Whether the listing shows the object as the parent recorded it.
fn unchanged(record: &ObjectRecord, listed: &Listed) -> bool {
    record.etag == listed.etag
        && record.size == listed.size
        && record.last_modified == listed.last_modified
}

/// Whether a parent's chunk list may stand for the object: every chunk is in a pack no prune mark
/// names (format.md §13), as for files.
fn reusable(writer: &Writer<'_>, node: &Node) -> bool {
    node.node_type == NodeType::File
        && node
            .content
            .as_deref()
            .is_some_and(|content| writer.reusable(content))
}

/// The parent's objects by key. A damaged parent never blocks a capture: everything is read again.
fn parent_objects(writer: &Writer<'_>, root: Id) -> HashMap<String, (ObjectRecord, Node)> {
    match manifest::read(writer.reader(), root) {
        Ok(objects) => objects
            .into_iter()
            .map(|(record, node)| (record.key.clone(), (record, node)))
            .collect(),
        Err(e) => {
            tracing::warn!("the parent snapshot cannot be read, reading every object again: {e}");
            HashMap::new()
        }
    }
}

struct Fetcher<'a, 'r> {
    writer: &'a Writer<'r>,
    bucket: &'a Bucket,
    progress: &'a dyn Progress,
}

/// An object read whole, or found larger than a bundle takes (it grew since it was listed).
struct Whole {
    meta: ObjectMeta,
    attributes: Attributes,
    bytes: Option<Bytes>,
}

impl Fetcher<'_, '_> {
    /// Read the small objects `jobs` (indices into `entries`), many requests in flight, and store
    /// them in key order in bundles, as small files are. Returns the objects that turned out too large
    /// for a bundle, to be streamed instead.
    fn fetch_small(&self, jobs: &[usize], entries: &mut [Entry]) -> Result<Vec<usize>, Error> {
        let mut paths = Vec::with_capacity(jobs.len());
        for &i in jobs {
            paths.push((i, self.bucket.path(&entries[i].listed.key)?));
        }
        let store = Arc::clone(self.bucket.store());
        let handle = self.bucket.runtime().handle().clone();
        // Spawned, so every request in flight progresses while the bundle is sealed; `buffered`
        // hands the results back in key order, so equal buckets give equal bundles.
        let mut fetches = futures::stream::iter(paths.into_iter().map(move |(i, path)| {
            let store = Arc::clone(&store);
            handle.spawn(async move { (i, read_whole(&store, &path).await) })
        }))
        .buffered(REQUESTS_IN_FLIGHT);
        let mut bundle = Bundle::default();
        // Entries read into the open bundle: index, offset and length in it, and what the GET said.
        let mut pending: Vec<(usize, u64, Whole)> = Vec::new();
        let mut grown = Vec::new();
        // One result at a time out of the runtime: sealing a bundle may write to a repository on S3,
        // whose client blocks on its own runtime, which it may not do inside this one's.
        while let Some(joined) = self.bucket.runtime().block_on(fetches.next()) {
            let (i, read) = joined.map_err(|e| Error::Runtime(std::io::Error::other(e)))?;
            match read {
                Ok(whole) => match &whole.bytes {
                    Some(bytes) => {
                        let offset = bundle.push(bytes);
                        self.progress.bytes(bytes.len() as u64);
                        pending.push((i, offset, whole));
                        if bundle.is_full() {
                            self.seal(&mut bundle, &mut pending, entries)?;
                        }
                    }
                    None => grown.push(i),
                },
                Err(e) => entries[i].outcome = Some(self.failed(&entries[i], e)?),
            }
        }
        self.seal(&mut bundle, &mut pending, entries)?;
        Ok(grown)
    }

    /// Store the open bundle and give each object read into it its slice.
    fn seal(
        &self,
        bundle: &mut Bundle,
        pending: &mut Vec<(usize, u64, Whole)>,
        entries: &mut [Entry],
    ) -> Result<(), Error> {
        // Only empty objects are pending when the bundle is empty: they need no chunk.
        let id = if bundle.is_empty() {
            None
        } else {
            Some(bundle.seal(self.writer)?)
        };
        for (i, offset, whole) in pending.drain(..) {
            let len = whole.bytes.as_ref().map_or(0, |b| b.len() as u64);
            let content = match id {
                Some(id) if len > 0 => vec![ContentRef(id, offset, len)],
                _ => Vec::new(),
            };
            self.progress.file_done(len);
            entries[i].outcome = Some(Outcome::Fetched(stored(
                &entries[i].listed,
                &whole.meta,
                &whole.attributes,
                len,
                content,
            )));
        }
        Ok(())
    }

    /// Stream the objects `jobs` through the chunker, a few at a time.
    fn fetch_large(&self, jobs: &[usize], entries: &mut [Entry]) -> Result<(), Error> {
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let done: Mutex<Vec<(usize, Result<Outcome, Error>)>> = Mutex::new(Vec::new());
        let shared: &[Entry] = entries;
        std::thread::scope(|s| {
            for _ in 0..STREAMS_IN_FLIGHT.min(jobs.len()) {
                s.spawn(|| {
                    while !stop.load(Ordering::Relaxed) {
                        let Some(&i) = jobs.get(next.fetch_add(1, Ordering::Relaxed)) else {
                            break;
                        };
                        let outcome = self.stream(&shared[i]);
                        if outcome.is_err() {
                            stop.store(true, Ordering::Relaxed);
                        }
                        if let Ok(mut done) = done.lock() {
                            done.push((i, outcome));
                        }
                    }
                });
            }
        });
        let done = done
            .into_inner()
            .map_err(|_| Error::Runtime(std::io::Error::other("a stream worker panicked")))?;
        for (i, outcome) in done {
            entries[i].outcome = Some(outcome?);
        }
        Ok(())
    }

    /// One large object, streamed into the repository; retried whole when its body breaks off.
    fn stream(&self, entry: &Entry) -> Result<Outcome, Error> {
        let key = &entry.listed.key;
        let path = self.bucket.path(key)?;
        let location = self.bucket.location(key);
        let mut attempt = 1;
        loop {
            let (tx, rx) = tokio::sync::mpsc::channel(8);
            let store = Arc::clone(self.bucket.store());
            let get = path.clone();
            let task = self
                .bucket
                .runtime()
                .spawn(async move { send_body(&store, &get, tx).await });
            let mut body = Body {
                rx,
                chunk: Bytes::new(),
                broke: None,
            };
            let added = self.writer.add_stream(
                &mut body,
                ChunkProfile::Files,
                std::path::Path::new(&location),
                &|n| self.progress.bytes(n),
            );
            let head = self
                .bucket
                .runtime()
                .block_on(task)
                .map_err(|e| Error::Runtime(std::io::Error::other(e)))?;
            let error = match (head, added, body.broke) {
                (Ok((meta, attributes)), Ok((content, size)), None) if size == meta.size => {
                    self.progress.file_done(size);
                    return Ok(Outcome::Fetched(stored(
                        &entry.listed,
                        &meta,
                        &attributes,
                        size,
                        content,
                    )));
                }
                (Ok((meta, _)), Ok((_, size)), None) => object_store::Error::Generic {
                    store: "S3",
                    source: format!("read {size} bytes of {}", meta.size).into(),
                },
                (Err(e), _, _) | (_, _, Some(e)) => e,
                // The repository failed, not the bucket: the capture cannot go on.
                (Ok(_), Err(e), None) => return Err(e.into()),
            };
            if about_the_object(&error) || attempt >= ATTEMPTS {
                return self.failed(entry, error);
            }
            tracing::info!("{location}: attempt {attempt} failed, reading it again: {error}");
            std::thread::sleep(FIRST_DELAY * 2u32.pow(attempt - 1));
            attempt += 1;
        }
    }

    /// What a failed read means: the object is gone (not in the snapshot), refused alone (an item
    /// error), or the store is failing (the capture fails).
    fn failed(&self, entry: &Entry, e: object_store::Error) -> Result<Outcome, Error> {
        let key = &entry.listed.key;
        if matches!(e, object_store::Error::NotFound { .. }) {
            tracing::info!(
                "{}: listed but gone when read (deleted meanwhile, or a folder marker)",
                self.bucket.location(key)
            );
            return Ok(Outcome::Vanished);
        }
        if about_the_object(&e) {
            return Ok(Outcome::Unreadable(e.to_string()));
        }
        Err(self.bucket.get_error(key, &e))
    }
}

/// GET an object whole, trying again when its body breaks off. An object larger than a bundle takes
/// (it grew since it was listed) is not read: its body is dropped unread.
async fn read_whole(store: &AmazonS3, path: &Path) -> object_store::Result<Whole> {
    let mut attempt = 1;
    loop {
        let read = async {
            let result = store.get(path).await?;
            let (meta, attributes) = (result.meta.clone(), result.attributes.clone());
            let bytes = if meta.size < BUNDLE_FILE_LIMIT {
                Some(result.bytes().await?)
            } else {
                None
            };
            Ok(Whole {
                meta,
                attributes,
                bytes,
            })
        }
        .await;
        match read {
            Err(e) if attempt < ATTEMPTS && !about_the_object(&e) => {
                tokio::time::sleep(FIRST_DELAY * 2u32.pow(attempt - 1)).await;
                attempt += 1;
            }
            read => return read,
        }
    }
}

/// GET an object and send its body, piece by piece, to the chunker; returns what the GET said of
/// the object. A body that breaks off sends its error and ends.
async fn send_body(
    store: &AmazonS3,
    path: &Path,
    tx: tokio::sync::mpsc::Sender<object_store::Result<Bytes>>,
) -> object_store::Result<(ObjectMeta, Attributes)> {
    let result = store.get(path).await?;
    let head = (result.meta.clone(), result.attributes.clone());
    let mut body = result.into_stream();
    while let Some(piece) = body.next().await {
        let broke = piece.is_err();
        // A closed channel: the chunker stopped reading (the repository failed).
        if tx.send(piece).await.is_err() || broke {
            break;
        }
    }
    Ok(head)
}

/// An object's body as the chunker reads it: pieces from [`send_body`], on a thread that is not the
/// runtime's.
struct Body {
    rx: tokio::sync::mpsc::Receiver<object_store::Result<Bytes>>,
    chunk: Bytes,
    /// The error the body broke off with, for the retry decision.
    broke: Option<object_store::Error>,
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Ok(piece)) => self.chunk = piece,
                Some(Err(e)) => {
                    let message = e.to_string();
                    self.broke = Some(e);
                    return Err(std::io::Error::other(message));
                }
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        let _ = self.chunk.split_to(n);
        Ok(n)
    }
}

/// An object as stored: the listing's ETag and time when the GET read the listed version (what the
/// next capture compares), the GET's when the object changed in between.
fn stored(
    listed: &Listed,
    meta: &ObjectMeta,
    attributes: &Attributes,
    size: u64,
    content: Vec<ContentRef>,
) -> Stored {
    let same = meta.e_tag == listed.etag && meta.size == listed.size;
    Stored {
        size,
        last_modified: if same {
            listed.last_modified
        } else {
            meta.last_modified
        },
        etag: if same {
            listed.etag.clone()
        } else {
            meta.e_tag.clone()
        },
        headers: Headers::from_attributes(attributes),
        content,
    }
}

/// Directories of the object tree as they are assembled.
#[derive(Default)]
struct Dir {
    files: Vec<Node>,
    dirs: BTreeMap<String, Dir>,
}

impl Dir {
    fn insert(&mut self, names: &[String], mut node: Node) {
        match names {
            [] => {}
            [name] => {
                node.name = name.as_bytes().to_vec();
                self.files.push(node);
            }
            [first, rest @ ..] => self
                .dirs
                .entry(first.clone())
                .or_default()
                .insert(rest, node),
        }
    }

    /// Store the tree bottom-up; returns its ID and the newest mtime in it. A directory's mtime is
    /// the newest of its contents, so an unchanged directory gives the same tree blob every time.
    fn store(self, writer: &Writer<'_>, dirs: &mut u64) -> Result<(Id, i64), Error> {
        let mut newest = self.files.iter().map(|n| n.mtime).max().unwrap_or(0);
        let mut nodes = self.files;
        for (name, dir) in self.dirs {
            let (id, mtime) = dir.store(writer, dirs)?;
            *dirs += 1;
            newest = newest.max(mtime);
            nodes.push(dir_node(name.into_bytes(), id, mtime));
        }
        Ok((writer.add_tree(Tree { nodes })?, newest))
    }
}

fn dir_node(name: Vec<u8>, subtree: Id, mtime: i64) -> Node {
    let mut node = Node::file(name, 0, Vec::new(), mtime);
    node.node_type = NodeType::Dir;
    node.mode = 0o700;
    node.size = None;
    node.content = None;
    node.subtree = Some(subtree);
    node
}

fn nanos(time: &DateTime<Utc>) -> i64 {
    time.timestamp_nanos_opt()
        .unwrap_or_else(|| time.timestamp().saturating_mul(1_000_000_000))
}

/// The snapshot of what the entries came to: the object tree, the manifest, the counts.
fn finish(writer: &Writer<'_>, bucket: &Bucket, entries: Vec<Entry>) -> Result<Snapshot, Error> {
    let mut counts = Counts::default();
    let mut summary = Summary::default();
    let mut errors = Vec::new();
    let mut root = Dir::default();
    let mut records = Vec::with_capacity(entries.len());
    for entry in entries {
        let stored = match entry.outcome {
            Some(Outcome::Kept(stored)) => {
                counts.unchanged += 1;
                summary.files_unmodified += 1;
                stored
            }
            Some(Outcome::Fetched(stored)) => {
                counts.fetched += 1;
                counts.bytes_fetched += stored.size;
                if entry.existed {
                    summary.files_changed += 1;
                } else {
                    summary.files_new += 1;
                }
                stored
            }
            Some(Outcome::Vanished) => {
                counts.vanished += 1;
                continue;
            }
            Some(Outcome::Unreadable(message)) => {
                errors.push(ItemError::unreadable(
                    bucket.location(&entry.listed.key),
                    message,
                ));
                continue;
            }
            None => {
                return Err(Error::Runtime(std::io::Error::other(format!(
                    "{} was neither kept nor read",
                    entry.listed.key
                ))))
            }
        };
        counts.objects += 1;
        summary.files += 1;
        summary.bytes += stored.size;
        let node = Node::file(
            Vec::new(),
            stored.size,
            stored.content,
            nanos(&stored.last_modified),
        );
        root.insert(&entry.path, node);
        records.push(ObjectRecord {
            key: entry.listed.key,
            path: entry.path.join("/"),
            size: stored.size,
            last_modified: stored.last_modified,
            etag: stored.etag,
            headers: stored.headers,
        });
    }
    let (objects, newest) = root.store(writer, &mut summary.dirs)?;
    summary.dirs += 1;
    let (content, size) = writer.add_stream(
        Lines::new(&records),
        ChunkProfile::Files,
        std::path::Path::new(MANIFEST),
        &|_| {},
    )?;
    let tree = writer.add_tree(Tree {
        nodes: vec![
            dir_node(OBJECTS.as_bytes().to_vec(), objects, newest),
            Node::file(MANIFEST.as_bytes().to_vec(), size, content, newest),
        ],
    })?;
    let mut snapshot = Snapshot::new(KIND, Vec::new(), tree);
    snapshot.summary = summary;
    snapshot.errors = errors;
    let source = [
        (recorded::BUCKET, bucket.url().to_string()),
        (recorded::OBJECTS, counts.objects.to_string()),
        (recorded::FETCHED, counts.fetched.to_string()),
        (recorded::UNCHANGED, counts.unchanged.to_string()),
        (recorded::VANISHED, counts.vanished.to_string()),
        (recorded::BYTES_FETCHED, counts.bytes_fetched.to_string()),
    ];
    for (key, value) in source {
        snapshot.source.insert(key.into(), value);
    }
    Ok(snapshot)
}
