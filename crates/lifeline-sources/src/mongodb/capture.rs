//! A MongoDB capture: every collection of every user database read with the driver and written as
//! a mongodump archive, streamed into the repository as one file and counted as it is written. The
//! archive is mongodump's format, so `lifeline dump SNAPSHOT dump.archive | mongorestore --archive`
//! restores it too.

use std::io::{BufWriter, Write};

use lifeline_repo::snapshot::Snapshot;
use lifeline_repo::Writer;
use mongodb::bson::{doc, Bson, Document, RawDocumentBuf};

use super::archive::{self, Collection};
use super::client::Connection;
use super::error::{Error, Result};
use super::{record, ARCHIVE_FILE, KIND};
use crate::{stdin, Progress};

/// Databases that are the server's own.
const SYSTEM_DATABASES: [&str; 3] = ["admin", "local", "config"];
/// Documents per archive segment: segments interleave nothing here, they only bound memory.
const SEGMENT_DOCS: usize = 1000;

/// What to capture.
#[derive(Debug, Clone)]
pub struct CaptureRequest<'a> {
    pub uri: &'a str,
    /// A file holding the password of the URI's user, so the plan holds no secret.
    pub password_file: Option<&'a std::path::Path>,
}

/// Dump the deployment and store the archive through `writer`; the snapshot is returned unsaved.
pub fn capture(
    writer: &Writer<'_>,
    request: &CaptureRequest<'_>,
    progress: &dyn Progress,
) -> Result<Snapshot> {
    let conn = Connection::open_with(request.uri, request.password_file)?;
    let build = conn.command("admin", doc! { "buildInfo": 1 }, "reading buildInfo")?;
    let hello = conn.command("admin", doc! { "hello": 1 }, "asking hello")?;
    let collections = list(&conn)?;
    let server_version = build.get_str("version").unwrap_or_default().to_string();
    let tool_version = format!("lifeline {}", env!("CARGO_PKG_VERSION"));

    let (pipe_out, pipe_in) = nix::unistd::pipe()
        .map(|(r, w)| (std::fs::File::from(r), std::fs::File::from(w)))
        .map_err(|e| Error::Io("creating a pipe".into(), e.into()))?;
    let (stored, written) = std::thread::scope(|scope| {
        let dumper = scope.spawn(|| {
            let out = BufWriter::with_capacity(1 << 20, pipe_in);
            dump(&conn, out, &server_version, &tool_version, &collections)
        });
        let stored = stdin::backup(writer, ARCHIVE_FILE, pipe_out, progress);
        (stored, dumper.join())
    });
    // A storing error first (the dump then only saw its pipe close); a dump that failed closed the
    // pipe early, and what was stored is a truncated archive that no snapshot will reference.
    let (tree, summary) = stored?;
    let counted = written.map_err(|_| Error::Invalid("the dump thread panicked".into()))??;

    let mut snapshot = Snapshot::new(KIND, vec![conn.shown.clone()], tree);
    snapshot.summary = summary;
    let src = &mut snapshot.source;
    src.insert(record::URI.into(), conn.shown.clone());
    src.insert(record::SERVER_VERSION.into(), server_version.clone());
    src.insert(record::TOOL_VERSION.into(), tool_version);
    let topology = match hello.get_str("setName") {
        Ok(set) => format!("replica set {set}"),
        Err(_) => "a standalone server".to_string(),
    };
    src.insert(record::TOPOLOGY.into(), topology.clone());
    src.insert(record::CONSISTENCY.into(), "none".into());
    src.insert(
        record::CONSISTENCY_NOTE.into(),
        format!("{topology}: collections were read one after another, without an oplog, so a write during the dump may be in some collections and not others"),
    );
    src.insert(
        record::COLLECTIONS.into(),
        serde_json::to_string(&counted.collections)
            .map_err(|e| Error::Invalid(format!("recording the counts: {e}")))?,
    );
    Ok(snapshot)
}

/// Every collection (not views, not `system.*`) of every user database, with its metadata as
/// mongodump writes it: options and index definitions in canonical extended JSON.
fn list(conn: &Connection) -> Result<Vec<Collection>> {
    let listed = conn.command(
        "admin",
        doc! { "listDatabases": 1, "nameOnly": true },
        "listing databases",
    )?;
    let mut names: Vec<String> = listed
        .get_array("databases")
        .map(|dbs| {
            dbs.iter()
                .filter_map(|d| d.as_document()?.get_str("name").ok().map(str::to_string))
                .filter(|n| !SYSTEM_DATABASES.contains(&n.as_str()))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let mut out = Vec::new();
    for db in names {
        let mut specs = conn.cursor_command(
            &db,
            doc! { "listCollections": 1 },
            &format!("listing the collections of {db}"),
        )?;
        specs.sort_by(|a, b| a.get_str("name").ok().cmp(&b.get_str("name").ok()));
        for spec in specs {
            let Ok(name) = spec.get_str("name") else {
                continue;
            };
            if spec.get_str("type").unwrap_or("collection") != "collection"
                || name.starts_with("system.")
            {
                continue;
            }
            let indexes = conn.cursor_command(
                &db,
                doc! { "listIndexes": name },
                &format!("listing the indexes of {db}.{name}"),
            )?;
            let options = spec.get_document("options").cloned().unwrap_or_default();
            let metadata = serde_json::json!({
                "indexes": indexes.into_iter().map(extjson).collect::<Vec<_>>(),
                "collectionName": name,
                "type": "collection",
                "options": extjson(options),
            });
            out.push(Collection {
                db: db.clone(),
                name: name.to_string(),
                metadata,
            });
        }
    }
    Ok(out)
}

fn extjson(d: Document) -> serde_json::Value {
    Bson::Document(d).into_canonical_extjson()
}

/// Write the archive of `collections` to `out`, reading each collection in natural order.
fn dump(
    conn: &Connection,
    out: impl Write,
    server_version: &str,
    tool_version: &str,
    collections: &[Collection],
) -> Result<archive::Summary> {
    let io = |e: std::io::Error| Error::Io("writing the archive into the repository".into(), e);
    let mut w = archive::Writer::new(out, server_version, tool_version, collections).map_err(io)?;
    for c in collections {
        let doing = format!("reading {}.{}", c.db, c.name);
        let cursor = conn
            .database(&c.db)
            .collection::<RawDocumentBuf>(&c.name)
            .find(doc! {})
            .run()
            .map_err(|source| conn.error(&doing, source))?;
        let mut batch = Vec::with_capacity(SEGMENT_DOCS);
        for doc in cursor {
            let doc = doc.map_err(|source| conn.error(&doing, source))?;
            batch.push(doc.into_bytes());
            if batch.len() == SEGMENT_DOCS {
                w.segment(&c.db, &c.name, &batch).map_err(io)?;
                batch.clear();
            }
        }
        w.segment(&c.db, &c.name, &batch).map_err(io)?;
        w.end_collection(&c.db, &c.name).map_err(io)?;
    }
    w.finish().map_err(io)
}
