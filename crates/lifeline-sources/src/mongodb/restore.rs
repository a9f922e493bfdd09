//! Restoring a MongoDB snapshot: the archive read back from the repository as a stream, each
//! collection created with its options, its documents inserted in batches, its indexes built last
//! (faster than maintaining them during the load), and then every recorded collection counted on
//! the server again and compared.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;

use lifeline_repo::snapshot::Snapshot;
use lifeline_repo::tree::ContentRef;
use lifeline_repo::BlobReader;
use mongodb::bson::{doc, Bson, Document, RawDocument, RawDocumentBuf};
use serde::Serialize;

use super::archive::{self, CollectionStats, Visit};
use super::client::Connection;
use super::error::{Error, Result};
use super::{record, ARCHIVE_FILE, KIND};
use crate::Progress;

/// Documents per insert: large enough to amortise round trips, small enough for the 48 MB message
/// limit with 1024-dimension embeddings (8 KiB each as doubles).
const BATCH_DOCS: usize = 1000;
const BATCH_BYTES: usize = 16 << 20;

/// Where and how to restore.
#[derive(Debug, Clone)]
pub struct RestoreRequest<'a> {
    pub uri: &'a str,
    /// A file holding the password of the URI's user, kept off the command line.
    pub password_file: Option<&'a std::path::Path>,
    /// Drop each collection before restoring it; without, a collection that exists is refused.
    pub drop: bool,
}

/// One recorded collection, compared.
#[derive(Debug, Clone, Serialize)]
pub struct CollectionCheck {
    pub collection: String,
    pub expected: CollectionStats,
    /// `None` when the target has no such collection.
    pub found: Option<CollectionStats>,
    /// What differs, for people; empty when the collection matches.
    pub differences: Vec<String>,
}

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct Restored {
    pub target: String,
    pub bytes: u64,
    pub documents: u64,
    pub indexes_built: u64,
    pub checks: Vec<CollectionCheck>,
}

impl Restored {
    pub fn matches(&self) -> bool {
        self.checks.iter().all(|c| c.differences.is_empty())
    }
}

/// The counts a snapshot recorded at capture, per collection.
pub fn recorded(snapshot: &Snapshot) -> Result<BTreeMap<String, CollectionStats>> {
    crate::source::recorded_json(snapshot, KIND, record::COLLECTIONS, "collection counts")
        .map_err(Error::Invalid)
}

/// Restore `snapshot` into the server at `request.uri` and compare it with the recorded counts.
pub fn restore(
    reader: &BlobReader<'_>,
    snapshot: &Snapshot,
    request: &RestoreRequest<'_>,
    progress: &dyn Progress,
) -> Result<Restored> {
    let expected = recorded(snapshot)?;
    let conn = Connection::open_with(request.uri, request.password_file)?;
    conn.ping()?;
    progress.total(snapshot.summary.bytes);
    let mut loader = Loader {
        conn: &conn,
        drop: request.drop,
        batches: HashMap::new(),
        indexes: Vec::new(),
        documents: 0,
        failed: None,
    };
    let mut input = archive_reader(reader, snapshot, progress)?;
    let read = archive::read_with(&mut input, &mut loader);
    // The loader's own error says what the server refused; the archive error is its echo.
    if let Some(e) = loader.failed.take() {
        return Err(e);
    }
    read?;
    loader.flush_all()?;
    let indexes_built = loader.build_indexes()?;
    let documents = loader.documents;
    let mut found = BTreeMap::new();
    for ns in expected.keys() {
        if let Some(stats) = count(&conn, ns)? {
            found.insert(ns.clone(), stats);
        }
    }
    Ok(Restored {
        target: conn.shown.clone(),
        bytes: input.read,
        documents,
        indexes_built,
        checks: compare(&expected, &found),
    })
}

/// Read the stored archive back from the repository: every collection's CRC-64 checked, and its
/// counts compared with the snapshot's records. Proves the backup without a server to restore into.
pub fn verify_stored(
    reader: &BlobReader<'_>,
    snapshot: &Snapshot,
    progress: &dyn Progress,
) -> Result<Vec<CollectionCheck>> {
    let expected = recorded(snapshot)?;
    let read = archive::read(archive_reader(reader, snapshot, progress)?)?;
    Ok(compare(&expected, &read.collections))
}

/// Loads collections as the archive streams past.
struct Loader<'a> {
    conn: &'a Connection,
    drop: bool,
    batches: HashMap<String, (Vec<RawDocumentBuf>, usize)>,
    /// `(db, collection, definitions)`, built once every document is in.
    indexes: Vec<(String, String, Vec<Document>)>,
    documents: u64,
    failed: Option<Error>,
}

impl Loader<'_> {
    fn create(&mut self, ns: &str, metadata: &serde_json::Value) -> Result<()> {
        let (db, name) = split(ns)?;
        let database = self.conn.database(db);
        let existing = database.list_collection_names().run().map_err(|e| {
            self.conn
                .error(&format!("listing the collections of {db}"), e)
        })?;
        if existing.iter().any(|c| c == name) {
            if !self.drop {
                return Err(Error::Invalid(format!(
                    "{ns} already exists on the target: restore into an empty database, or pass --drop to replace it"
                )));
            }
            database
                .collection::<Document>(name)
                .drop()
                .run()
                .map_err(|e| self.conn.error(&format!("dropping {ns}"), e))?;
        }
        let mut create = doc! { "create": name };
        if let Some(Bson::Document(options)) = to_bson(&metadata["options"]) {
            create.extend(options);
        }
        self.conn.command(db, create, &format!("creating {ns}"))?;
        let definitions: Vec<Document> = metadata["indexes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| match to_bson(i) {
                Some(Bson::Document(mut d)) => {
                    d.remove("v");
                    d.remove("ns");
                    // Every collection has its _id index already.
                    (d.get_str("name") != Ok("_id_")).then_some(d)
                }
                _ => None,
            })
            .collect();
        self.indexes
            .push((db.to_string(), name.to_string(), definitions));
        Ok(())
    }

    fn add(&mut self, ns: &str, doc: &RawDocument) -> Result<()> {
        let entry = self.batches.entry(ns.to_string()).or_default();
        entry.1 += doc.as_bytes().len();
        entry.0.push(doc.to_raw_document_buf());
        if entry.0.len() >= BATCH_DOCS || entry.1 >= BATCH_BYTES {
            self.flush(ns)?;
        }
        Ok(())
    }

    fn flush(&mut self, ns: &str) -> Result<()> {
        let Some((docs, _)) = self.batches.remove(ns) else {
            return Ok(());
        };
        if docs.is_empty() {
            return Ok(());
        }
        let (db, name) = split(ns)?;
        let n = docs.len() as u64;
        self.conn
            .database(db)
            .collection::<RawDocumentBuf>(name)
            .insert_many(docs)
            .run()
            .map_err(|e| self.conn.error(&format!("inserting into {ns}"), e))?;
        self.documents += n;
        Ok(())
    }

    fn flush_all(&mut self) -> Result<()> {
        let pending: Vec<String> = self.batches.keys().cloned().collect();
        for ns in pending {
            self.flush(&ns)?;
        }
        Ok(())
    }

    fn build_indexes(&self) -> Result<u64> {
        let mut built = 0;
        for (db, name, definitions) in &self.indexes {
            if definitions.is_empty() {
                continue;
            }
            self.conn.command(
                db,
                doc! { "createIndexes": name, "indexes": definitions.clone() },
                &format!("building the indexes of {db}.{name}"),
            )?;
            built += definitions.len() as u64;
        }
        Ok(built)
    }
}

impl Visit for Loader<'_> {
    fn collection(
        &mut self,
        ns: &str,
        metadata: &serde_json::Value,
    ) -> std::result::Result<(), String> {
        self.create(ns, metadata).map_err(|e| self.fail(e))
    }

    fn document(&mut self, ns: &str, doc: &RawDocument) -> std::result::Result<(), String> {
        self.add(ns, doc).map_err(|e| self.fail(e))
    }
}

impl Loader<'_> {
    /// Keeps the typed error for the caller; the archive reader only needs to stop.
    fn fail(&mut self, e: Error) -> String {
        let message = e.to_string();
        self.failed = Some(e);
        message
    }
}

fn split(ns: &str) -> Result<(&str, &str)> {
    ns.split_once('.')
        .ok_or_else(|| Error::Invalid(format!("{ns:?} is not a db.collection name")))
}

fn to_bson(v: &serde_json::Value) -> Option<Bson> {
    Bson::try_from(v.clone()).ok()
}

/// What `ns` holds on the server, counted as the capture counted: `None` when it does not exist.
pub fn count(conn: &Connection, ns: &str) -> Result<Option<CollectionStats>> {
    let (db, name) = split(ns)?;
    let exists = conn
        .database(db)
        .list_collection_names()
        .run()
        .map_err(|e| conn.error(&format!("listing the collections of {db}"), e))?
        .iter()
        .any(|c| c == name);
    if !exists {
        return Ok(None);
    }
    let number = |d: &Document| match d.get("n") {
        Some(Bson::Int32(n)) => *n as u64,
        Some(Bson::Int64(n)) => *n as u64,
        Some(Bson::Double(n)) => *n as u64,
        _ => 0,
    };
    let doing = format!("counting {ns}");
    let documents = number(&conn.command(db, doc! { "count": name }, &doing)?);
    let with_embedding = number(&conn.command(
        db,
        doc! { "count": name, "query": { archive::EMBEDDING_FIELD: { "$ne": null } } },
        &doing,
    )?);
    let distinct = conn.command(
        db,
        doc! { "distinct": name, "key": archive::CATEGORY_FIELD,
        "query": { archive::CATEGORY_FIELD: { "$ne": null } } },
        &doing,
    )?;
    let categories = distinct.get_array("values").map_or(0, |v| v.len() as u64);
    let listed = conn.cursor_command(
        db,
        doc! { "listIndexes": name },
        &format!("listing the indexes of {ns}"),
    )?;
    let metadata = serde_json::json!({
        "indexes": listed
            .into_iter()
            .map(|d| Bson::Document(d).into_canonical_extjson())
            .collect::<Vec<_>>()
    });
    Ok(Some(CollectionStats {
        documents,
        with_embedding,
        categories,
        indexes: archive::indexes(&metadata),
    }))
}

/// Every recorded collection against what was found.
pub fn compare(
    expected: &BTreeMap<String, CollectionStats>,
    found: &BTreeMap<String, CollectionStats>,
) -> Vec<CollectionCheck> {
    expected
        .iter()
        .map(|(ns, want)| {
            let got = found.get(ns);
            let mut differences = Vec::new();
            match got {
                None => differences.push("missing from the target".to_string()),
                Some(got) => {
                    let mut number = |what: &str, want: u64, got: u64| {
                        if want != got {
                            differences.push(format!("{what}: recorded {want}, found {got}"));
                        }
                    };
                    number("documents", want.documents, got.documents);
                    number("with an embedding", want.with_embedding, got.with_embedding);
                    number("distinct categories", want.categories, got.categories);
                    for index in &want.indexes {
                        if !got.indexes.contains(index) {
                            differences.push(format!(
                                "index {} is missing or defined differently",
                                index["name"]
                            ));
                        }
                    }
                }
            }
            CollectionCheck {
                collection: ns.clone(),
                expected: want.clone(),
                found: got.cloned(),
                differences,
            }
        })
        .collect()
}

/// The snapshot's archive as a stream, read chunk by chunk from the repository.
fn archive_reader<'r>(
    reader: &'r BlobReader<'r>,
    snapshot: &Snapshot,
    progress: &'r dyn Progress,
) -> Result<ArchiveReader<'r>> {
    let tree = reader.read_tree(&snapshot.tree)?;
    let node = tree
        .find(ARCHIVE_FILE.as_bytes())
        .ok_or_else(|| Error::Invalid(format!("the snapshot holds no {ARCHIVE_FILE}")))?;
    Ok(ArchiveReader {
        reader,
        parts: node.content.clone().unwrap_or_default().into_iter(),
        current: Vec::new(),
        pos: 0,
        read: 0,
        progress,
    })
}

struct ArchiveReader<'r> {
    reader: &'r BlobReader<'r>,
    parts: std::vec::IntoIter<ContentRef>,
    current: Vec<u8>,
    pos: usize,
    read: u64,
    progress: &'r dyn Progress,
}

impl Read for ArchiveReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.current.len() {
            let Some(part) = self.parts.next() else {
                return Ok(0);
            };
            self.current = self
                .reader
                .read_part(&part)
                .map_err(std::io::Error::other)?;
            self.pos = 0;
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        self.read += n as u64;
        self.progress.bytes(n as u64);
        Ok(n)
    }
}
