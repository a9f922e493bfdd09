//! The mongodump archive format (mongo-tools' archive spec): magic number, a header document, one
//! metadata document per collection, a terminator, then segments of documents per namespace, each
//! collection ending with an EOF header that carries the CRC-64 of all its documents. lifeline
//! writes it (so `mongorestore --archive` reads what lifeline stored) and reads it back, as a
//! stream, to restore and to check a stored dump against what the capture counted.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{ErrorKind, Read};

use std::io::Write;

use crc::{Crc, Digest, CRC_64_XZ};
use mongodb::bson::raw::{RawBsonRef, RawDocument};
use mongodb::bson::{doc, Document};
use serde::{Deserialize, Serialize};

/// The first four bytes of every archive (0x8199e26d, little-endian).
const MAGIC: [u8; 4] = [0x6d, 0xe2, 0x99, 0x81];
const TERMINATOR: [u8; 4] = [0xff; 4];
/// Go's crc64 with the ECMA table, which mongodump uses, is CRC-64/XZ.
static CRC64: Crc<u64> = Crc::<u64>::new(&CRC_64_XZ);
/// The field a document's vector lives in, and the field the knowledge base is grouped by
/// (`therapeutic_content`'s schema): counted per collection, as the runbooks check them.
pub const EMBEDDING_FIELD: &str = "embedding";
pub const CATEGORY_FIELD: &str = "therapeutic_category";
/// mongodump's namespace for the oplog it adds with `--oplog`.
const OPLOG: (&str, &str) = ("", "oplog");

/// What one collection of a dump holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionStats {
    pub documents: u64,
    /// Documents whose `embedding` is present and not null.
    pub with_embedding: u64,
    /// Distinct values of `therapeutic_category` (absent and null not counted).
    pub categories: u64,
    /// The index definitions from the collection's metadata (extended JSON, without the
    /// server-assigned `v` and `ns`), sorted by name.
    pub indexes: Vec<serde_json::Value>,
}

/// What a whole archive holds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub server_version: String,
    pub tool_version: String,
    /// `db.collection` → its counts.
    pub collections: BTreeMap<String, CollectionStats>,
    /// Oplog entries mongodump added with `--oplog` (replayed by `mongorestore --oplogReplay`).
    pub oplog_entries: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not a mongodump archive: {0}")]
    Format(String),
    #[error("the archive's collection {ns} fails its CRC-64 check (stored {stored:016x}, computed {computed:016x}): it is damaged")]
    Crc {
        ns: String,
        stored: u64,
        computed: u64,
    },
    #[error("reading the archive: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Visit(String),
}

/// What a reader of an archive is told, in the archive's order. Errors are messages: they end the
/// reading as [`Error::Visit`].
pub trait Visit {
    /// A collection's metadata (extended JSON: options, indexes, uuid), before its documents.
    fn collection(&mut self, _ns: &str, _metadata: &serde_json::Value) -> Result<(), String> {
        Ok(())
    }
    /// One document of `ns` (not called for the oplog).
    fn document(&mut self, _ns: &str, _doc: &RawDocument) -> Result<(), String> {
        Ok(())
    }
}

/// Counts only.
struct Count;
impl Visit for Count {}

/// Read a whole archive from `input` and count what it holds.
pub fn read(input: impl Read) -> Result<Summary, Error> {
    read_with(input, &mut Count)
}

/// Read a whole archive, telling `visit` what it holds, and count it.
pub fn read_with(input: impl Read, visit: &mut dyn Visit) -> Result<Summary, Error> {
    let mut r = std::io::BufReader::with_capacity(1 << 20, input);
    let mut magic = [0u8; 4];
    r.read_exact(&mut magic)
        .map_err(|e| truncated_or(e, "it is empty"))?;
    if magic != MAGIC {
        return Err(Error::Format(
            "it does not start with mongodump's magic number (was it made with --archive, without --gzip?)".into(),
        ));
    }
    let header =
        next_document(&mut r)?.ok_or_else(|| Error::Format("the header is missing".into()))?;
    let header = raw(&header, "the header")?;
    let mut summary = Summary {
        server_version: string_field(header, "server_version"),
        tool_version: string_field(header, "tool_version"),
        ..Summary::default()
    };
    while let Some(meta) = next_document(&mut r)? {
        let meta = raw(&meta, "a collection's metadata")?;
        let ns = namespace(meta)?;
        let metadata = metadata(meta, &ns)?;
        visit.collection(&ns, &metadata).map_err(Error::Visit)?;
        let stats = CollectionStats {
            indexes: indexes(&metadata),
            ..CollectionStats::default()
        };
        summary.collections.insert(ns, stats);
    }
    let oplog = format!("{}.{}", OPLOG.0, OPLOG.1);
    let mut counting: HashMap<String, Counting> = HashMap::new();
    while let Some(head) = next_document_or_end(&mut r)? {
        let head = raw(&head, "a namespace header")?;
        let ns = namespace(head)?;
        let eof = matches!(head.get("EOF"), Ok(Some(RawBsonRef::Boolean(true))));
        let state = counting.entry(ns.clone()).or_default();
        if eof {
            let stored = match head.get("CRC") {
                Ok(Some(RawBsonRef::Int64(v))) => v as u64,
                _ => return Err(Error::Format(format!("{ns}'s EOF header has no CRC"))),
            };
            let computed = std::mem::replace(&mut state.crc, CRC64.digest()).finalize();
            if stored != computed {
                return Err(Error::Crc {
                    ns,
                    stored,
                    computed,
                });
            }
            let mut end = [0u8; 4];
            r.read_exact(&mut end)
                .map_err(|e| truncated_or(e, "an EOF header lacks its terminator"))?;
            if end != TERMINATOR {
                return Err(Error::Format(format!(
                    "{ns}'s EOF header is not followed by a terminator"
                )));
            }
            continue;
        }
        while let Some(bytes) = next_document(&mut r)? {
            state.crc.update(&bytes);
            let doc = raw(&bytes, "a document")?;
            state.add(doc);
            if ns != oplog {
                visit.document(&ns, doc).map_err(Error::Visit)?;
            }
        }
    }
    for (ns, state) in counting {
        if ns == oplog {
            summary.oplog_entries = state.stats.documents;
            continue;
        }
        state.record(summary.collections.entry(ns).or_default());
    }
    Ok(summary)
}

/// Writes an archive as mongodump would: the header and every collection's metadata first, then
/// segments of documents, each collection closed by its EOF header and CRC. Counts as it writes.
pub struct Writer<W: Write> {
    out: W,
    counting: HashMap<String, Counting>,
    summary: Summary,
}

/// One collection to write: its database, name and metadata (extended JSON).
pub struct Collection {
    pub db: String,
    pub name: String,
    pub metadata: serde_json::Value,
}

impl<W: Write> Writer<W> {
    pub fn new(
        mut out: W,
        server_version: &str,
        tool_version: &str,
        collections: &[Collection],
    ) -> std::io::Result<Self> {
        out.write_all(&MAGIC)?;
        write_doc(
            &mut out,
            &doc! { "concurrent_collections": 1, "version": "0.1",
            "server_version": server_version, "tool_version": tool_version },
        )?;
        let mut summary = Summary {
            server_version: server_version.to_string(),
            tool_version: tool_version.to_string(),
            ..Summary::default()
        };
        for c in collections {
            write_doc(
                &mut out,
                &doc! { "db": &c.db, "collection": &c.name,
                "metadata": c.metadata.to_string(), "size": 0 },
            )?;
            summary.collections.insert(
                format!("{}.{}", c.db, c.name),
                CollectionStats {
                    indexes: indexes(&c.metadata),
                    ..CollectionStats::default()
                },
            );
        }
        out.write_all(&TERMINATOR)?;
        Ok(Writer {
            out,
            counting: HashMap::new(),
            summary,
        })
    }

    /// One segment of `db.name`'s documents (raw BSON, as read from the server).
    pub fn segment(&mut self, db: &str, name: &str, docs: &[Vec<u8>]) -> std::io::Result<()> {
        if docs.is_empty() {
            return Ok(());
        }
        write_doc(
            &mut self.out,
            &doc! { "db": db, "collection": name, "EOF": false, "CRC": 0i64 },
        )?;
        let state = self.counting.entry(format!("{db}.{name}")).or_default();
        for bytes in docs {
            state.crc.update(bytes);
            if let Ok(doc) = RawDocument::from_bytes(bytes) {
                state.add(doc);
            }
            self.out.write_all(bytes)?;
        }
        self.out.write_all(&TERMINATOR)
    }

    /// Close `db.name`: its EOF header with the CRC of every document written for it.
    pub fn end_collection(&mut self, db: &str, name: &str) -> std::io::Result<()> {
        let ns = format!("{db}.{name}");
        let state = self.counting.remove(&ns).unwrap_or_default();
        state.record(self.summary.collections.entry(ns).or_default());
        let crc = state.crc.finalize() as i64;
        write_doc(
            &mut self.out,
            &doc! { "db": db, "collection": name, "EOF": true, "CRC": crc },
        )?;
        self.out.write_all(&TERMINATOR)?;
        Ok(())
    }

    /// The counts of what was written; flushes the output.
    pub fn finish(mut self) -> std::io::Result<Summary> {
        self.out.flush()?;
        Ok(self.summary)
    }
}

fn write_doc(out: &mut impl Write, doc: &Document) -> std::io::Result<()> {
    doc.to_writer(out).map_err(std::io::Error::other)
}

/// Counts of one namespace while its segments stream past.
struct Counting {
    stats: CollectionStats,
    categories: HashSet<String>,
    crc: Digest<'static, u64>,
}

impl Default for Counting {
    fn default() -> Self {
        Counting {
            stats: CollectionStats::default(),
            categories: HashSet::new(),
            crc: CRC64.digest(),
        }
    }
}

impl Counting {
    /// Its counts into `entry` (which keeps the index definitions from the metadata).
    fn record(&self, entry: &mut CollectionStats) {
        entry.documents = self.stats.documents;
        entry.with_embedding = self.stats.with_embedding;
        entry.categories = self.categories.len() as u64;
    }

    fn add(&mut self, doc: &RawDocument) {
        self.stats.documents += 1;
        if !matches!(
            doc.get(EMBEDDING_FIELD),
            Ok(None | Some(RawBsonRef::Null | RawBsonRef::Undefined)) | Err(_)
        ) {
            self.stats.with_embedding += 1;
        }
        match doc.get(CATEGORY_FIELD) {
            Ok(Some(RawBsonRef::String(s))) => {
                self.categories.insert(format!("s:{s}"));
            }
            Ok(None | Some(RawBsonRef::Null | RawBsonRef::Undefined)) | Err(_) => {}
            // Other types count as distinct values of their own, as `distinct` would.
            Ok(Some(other)) => {
                self.categories.insert(format!("{other:?}"));
            }
        }
    }
}

/// The next length-prefixed document, or `None` at a terminator.
fn next_document(r: &mut impl Read) -> Result<Option<Vec<u8>>, Error> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)
        .map_err(|e| truncated_or(e, "it ends inside a section"))?;
    document_after(r, len)
}

/// Like [`next_document`], but `None` also at the clean end of the stream.
fn next_document_or_end(r: &mut impl Read) -> Result<Option<Vec<u8>>, Error> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => {
                return Err(Error::Format(
                    "it ends inside a length (the archive is truncated)".into(),
                ))
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    if len == TERMINATOR {
        return Err(Error::Format(
            "a terminator stands where a namespace header belongs".into(),
        ));
    }
    document_after(r, len)
}

fn document_after(r: &mut impl Read, len: [u8; 4]) -> Result<Option<Vec<u8>>, Error> {
    if len == TERMINATOR {
        return Ok(None);
    }
    let n = i32::from_le_bytes(len);
    // BSON caps documents at 16 MiB; anything far larger is a damaged length, not a document.
    if !(5..=64 << 20).contains(&n) {
        return Err(Error::Format(format!("a document claims {n} bytes")));
    }
    let mut doc = vec![0u8; n as usize];
    doc[..4].copy_from_slice(&len);
    r.read_exact(&mut doc[4..])
        .map_err(|e| truncated_or(e, "it ends inside a document"))?;
    Ok(Some(doc))
}

fn truncated_or(e: std::io::Error, what: &str) -> Error {
    if e.kind() == ErrorKind::UnexpectedEof {
        Error::Format(format!("{what} (the archive is truncated)"))
    } else {
        Error::Io(e)
    }
}

fn raw<'a>(bytes: &'a [u8], what: &str) -> Result<&'a RawDocument, Error> {
    RawDocument::from_bytes(bytes).map_err(|e| Error::Format(format!("{what} is not BSON: {e}")))
}

fn string_field(doc: &RawDocument, key: &str) -> String {
    doc.get_str(key).unwrap_or_default().to_string()
}

fn namespace(doc: &RawDocument) -> Result<String, Error> {
    let (Ok(db), Ok(collection)) = (doc.get_str("db"), doc.get_str("collection")) else {
        return Err(Error::Format("a header names no db and collection".into()));
    };
    Ok(format!("{db}.{collection}"))
}

/// A collection's metadata: a string of canonical extended JSON.
fn metadata(meta: &RawDocument, ns: &str) -> Result<serde_json::Value, Error> {
    let text = meta.get_str("metadata").unwrap_or_default();
    if text.is_empty() {
        return Ok(serde_json::json!({}));
    }
    serde_json::from_str(text)
        .map_err(|e| Error::Format(format!("{ns}'s metadata is not JSON: {e}")))
}

/// The index definitions of `metadata`, without the server's index version and namespace, sorted
/// by name: what a restore must recreate.
pub fn indexes(metadata: &serde_json::Value) -> Vec<serde_json::Value> {
    let mut out: Vec<serde_json::Value> = metadata["indexes"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|i| i.as_object().cloned())
                .map(|mut i| {
                    i.remove("v");
                    i.remove("ns");
                    serde_json::Value::Object(i)
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort_by(|a, b| a["name"].to_string().cmp(&b["name"].to_string()));
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use mongodb::bson::{self, doc};

    fn bytes(d: &Document) -> Vec<u8> {
        let mut v = Vec::new();
        d.to_writer(&mut v).unwrap();
        v
    }

    /// Five documents of `kb.c` in two segments, as lifeline writes them.
    fn archive() -> (Vec<u8>, Summary) {
        let docs: Vec<Vec<u8>> = [
            doc! { "_id": 1, "embedding": [0.1, 0.2], "therapeutic_category": "anxiety" },
            doc! { "_id": 2, "embedding": bson::Bson::Null, "therapeutic_category": "anxiety" },
            doc! { "_id": 3, "therapeutic_category": "sleep" },
            doc! { "_id": 4, "embedding": [0.3], "therapeutic_category": bson::Bson::Null },
            doc! { "_id": 5 },
        ]
        .iter()
        .map(bytes)
        .collect();
        let metadata = serde_json::json!({ "indexes": [
            { "v": { "$numberInt": "2" }, "key": { "_id": { "$numberInt": "1" } }, "name": "_id_" },
            { "v": { "$numberInt": "2" }, "key": { "therapeutic_category": { "$numberInt": "1" } }, "name": "category" },
        ] });
        let collections = [Collection {
            db: "kb".into(),
            name: "c".into(),
            metadata,
        }];
        let mut w = Writer::new(Vec::new(), "7.0.42", "lifeline test", &collections).unwrap();
        w.segment("kb", "c", &docs[..2]).unwrap();
        w.segment("kb", "c", &docs[2..]).unwrap();
        w.end_collection("kb", "c").unwrap();
        let written = w.summary.clone();
        let out = w.out;
        (out, written)
    }

    #[test]
    fn what_is_written_reads_back_with_the_same_counts() {
        let (bytes, written) = archive();
        let read = read(bytes.as_slice()).unwrap();
        assert_eq!(read.server_version, "7.0.42");
        let c = &read.collections["kb.c"];
        assert_eq!((c.documents, c.with_embedding, c.categories), (5, 2, 2));
        assert_eq!(c.indexes.len(), 2);
        assert_eq!(c.indexes[0]["name"], "_id_");
        assert!(c.indexes[0].get("v").is_none());
        assert_eq!(read.collections, written.collections);
    }

    #[test]
    fn a_changed_byte_fails_the_crc_check() {
        let (mut bytes, _) = archive();
        let at = bytes.windows(5).position(|w| w == b"sleep").unwrap();
        bytes[at] = b'S';
        assert!(matches!(read(bytes.as_slice()), Err(Error::Crc { .. })));
    }

    #[test]
    fn truncated_and_foreign_input_is_named() {
        let (whole, _) = archive();
        for cut in [3, 30, whole.len() / 2] {
            let err = read(&whole[..whole.len() - cut]).unwrap_err().to_string();
            assert!(err.contains("truncated"), "cut {cut}: {err}");
        }
        let err = read(&b"\x1f\x8b\x08\x00gzip"[..]).unwrap_err().to_string();
        assert!(err.contains("magic number"), "{err}");
    }
}
