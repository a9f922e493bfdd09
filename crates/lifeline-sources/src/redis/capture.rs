//! A capture: INFO, the RDB over the replication protocol (streamed into the repository while its
//! checksum is verified and its keys counted), the AOF directory when asked, one snapshot.

use std::collections::BTreeMap;
use std::io::{BufRead, Read};
use std::path::Path;
use std::time::Duration;

use lifeline_repo::chunker::ChunkProfile;
use lifeline_repo::snapshot::{Snapshot, Summary};
use lifeline_repo::tree::{Node, Tree};
use lifeline_repo::Writer;

use super::aof;
use super::client::{Client, ConnectOptions, Reply};
use super::compare::{self, KeyCounts};
use super::error::{Error, Result};
use super::payload::{Copies, Framing, Observed, Payload};
use super::rdb::{self, ScanError, Scanned};
use super::{record, KIND, RDB_FILE};
use crate::Progress;

/// What to capture.
#[derive(Debug, Clone)]
pub struct CaptureRequest<'a> {
    pub connect: &'a ConnectOptions,
    /// The server's AOF directory on this host, captured beside the RDB.
    pub aof_dir: Option<&'a Path>,
    /// How long to wait for an AOF rewrite that is running.
    pub rewrite_wait: Duration,
}

/// Messages in flight to the key counter; each is at most 1 MiB.
const COPIES_IN_FLIGHT: usize = 8;

/// Capture the server; the snapshot is returned unsaved, its time the moment the RDB was asked for.
pub fn capture(
    writer: &Writer<'_>,
    request: &CaptureRequest<'_>,
    progress: &dyn Progress,
) -> Result<Snapshot> {
    let clock = std::time::Instant::now();
    let mut client = Client::connect(request.connect)?;
    let info = client.info(&[])?;
    if let Some(dir) = request.aof_dir {
        aof::check(&mut client, dir)?;
    }
    let info_keyspace = info.keyspace();
    let requested = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let rdb = fetch_rdb(request.connect, writer, progress)?;
    let aof = request
        .aof_dir
        .map(|dir| aof::capture(&mut client, dir, writer, progress, request.rewrite_wait))
        .transpose()?;

    let mut source = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        source.insert(k.to_string(), v);
    };
    for (key, field) in [
        (record::REDIS_VERSION, "redis_version"),
        (record::ROLE, "role"),
        (record::USED_MEMORY, "used_memory"),
    ] {
        if let Some(v) = info.get(field) {
            put(key, v.to_string());
        }
    }
    put(record::RDB_BYTES, rdb.size.to_string());
    put(record::RDB_CHECKSUM, rdb.checksum.into());
    put(record::INFO_KEYSPACE, compare::encode(&info_keyspace));
    match &rdb.scanned {
        Ok(scanned) => {
            put(record::RDB_VERSION, scanned.version.to_string());
            put(record::KEY_COUNTS, compare::encode(&scanned.counts));
            put(record::KEY_COUNTS_FROM, "rdb".into());
        }
        Err(why) => {
            tracing::warn!(
                "the RDB's keys were not counted ({why}); recording INFO keyspace instead"
            );
            put(record::KEY_COUNTS, compare::encode(&info_keyspace));
            put(record::KEY_COUNTS_FROM, "info".into());
            put(record::KEY_COUNTS_NOTE, why.clone());
        }
    }
    let mut nodes = vec![rdb.node];
    let mut summary = Summary {
        files: 1,
        bytes: rdb.size,
        files_new: 1,
        ..Summary::default()
    };
    if let Some(a) = aof {
        put(record::AOF_DIR, a.name.clone());
        put(record::AOF_MANIFEST, a.manifest.clone());
        put(record::AOF_KEY_COUNTS, compare::encode(&a.counts));
        put(record::AOF_KEY_COUNTS_EXACT, a.exact.to_string());
        summary.files += a.files;
        summary.files_new += a.files;
        summary.bytes += a.bytes;
        summary.dirs += 1;
        nodes.push(a.node);
    }
    let tree = writer.add_tree(Tree { nodes })?;
    let mut snapshot = Snapshot::new(KIND, vec![request.connect.target.display_url()], tree);
    snapshot.time = requested;
    snapshot.source = source;
    summary.duration_ms = u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX);
    snapshot.summary = summary;
    Ok(snapshot)
}

/// The stored RDB.
struct Fetched {
    node: Node,
    size: u64,
    checksum: &'static str,
    /// The keys counted in the RDB, or why they could not be.
    scanned: Result<Scanned, String>,
}

/// SYNC on a connection of its own (it becomes a replica link), then stream the RDB.
fn fetch_rdb(
    options: &ConnectOptions,
    writer: &Writer<'_>,
    progress: &dyn Progress,
) -> Result<Fetched> {
    let mut sync = Client::connect(options)?;
    // Let a server with repl-diskless-sync stream the RDB from its fork instead of writing it to its
    // disk first; older servers answer with an error, which changes nothing.
    sync.call(&[b"REPLCONF", b"capa", b"eof"])?;
    // Redis 7: the server sends the RDB and closes, instead of keeping us as a replica.
    let rdb_only = matches!(
        sync.call(&[b"REPLCONF", b"rdb-only", b"1"])?,
        Reply::Simple(_)
    );
    if !rdb_only {
        tracing::debug!("the server does not know REPLCONF rdb-only (Redis < 7)");
    }
    sync.send(b"SYNC\r\n")?;
    let framing = framing(&mut sync)?;
    if let Framing::Length(n) = framing {
        progress.total(n);
    }
    // The data flows continuously now; a minute of silence is a dead server.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(COPIES_IN_FLIGHT);
    let address = sync.address().to_string();
    let (stored, seen, counted) = std::thread::scope(|scope| {
        let counter = scope.spawn(move || {
            let mut copies = Copies::new(rx);
            let scanned = rdb::scan(&mut copies);
            let after = copies.drain();
            (scanned, after)
        });
        let mut observed = Observed::new(Payload::new(&mut sync.conn, framing), Some(tx));
        let stored = writer.add_stream(
            &mut observed,
            ChunkProfile::Stream,
            Path::new(RDB_FILE),
            &|n| progress.bytes(n),
        );
        observed.close();
        let seen = observed.seen();
        (stored, seen, counter.join())
    });
    let (content, size) = stored?;
    progress.file_done(size);
    let damaged = |detail: String| Error::Rdb {
        address: address.clone(),
        detail,
    };
    let tail: [u8; 8] = seen
        .tail
        .as_slice()
        .try_into()
        .map_err(|_| damaged(format!("it is only {} bytes long", seen.total)))?;
    let written = u64::from_le_bytes(tail);
    let checksum = if written == 0 {
        "disabled"
    } else if written == seen.crc {
        "verified"
    } else {
        return Err(damaged(format!(
            "its CRC-64 is {:016x} but it says {written:016x}",
            seen.crc
        )));
    };
    let scanned = match counted {
        // Only the 8-byte checksum follows the end opcode.
        Ok((Ok(scanned), 8)) if scanned.length + 8 == seen.total => Ok(scanned),
        Ok((Ok(scanned), after)) => Err(format!(
            "the RDB's end opcode is at byte {} of {} ({after} bytes follow it, not 8)",
            scanned.length, seen.total
        )),
        Ok((Err(ScanError::Unsupported { offset, detail }), _)) => Err(format!(
            "the RDB holds {detail} at byte {offset}, which lifeline cannot step over"
        )),
        Ok((Err(e), _)) if checksum == "verified" => Err(format!(
            "the RDB's checksum is right, but lifeline could not read it ({e})"
        )),
        Ok((Err(e), _)) => return Err(damaged(e.to_string())),
        Err(_) => Err("the key counter stopped unexpectedly".to_string()),
    };
    let node = Node::file(RDB_FILE.as_bytes().to_vec(), size, content, now_nanos());
    Ok(Fetched {
        node,
        size,
        checksum,
        scanned,
    })
}

/// The line that answers SYNC, after the newlines the server sends while it prepares the RDB.
fn framing(sync: &mut Client) -> Result<Framing> {
    loop {
        let mut line = Vec::new();
        let n = (&mut sync.conn)
            .take(1024)
            .read_until(b'\n', &mut line)
            .map_err(|e| sync.io("waiting for the RDB", e))?;
        if n == 0 {
            return Err(
                sync.protocol("the server closed the connection instead of sending the RDB")
            );
        }
        let text = line.trim_ascii_end();
        if text.is_empty() {
            continue;
        }
        if let Some(message) = text.strip_prefix(b"-") {
            return Err(sync.refused(&["SYNC"], String::from_utf8_lossy(message).into_owned()));
        }
        return Framing::parse(text).ok_or_else(|| {
            sync.protocol(format!(
                "SYNC was answered with {:?}, not an RDB",
                String::from_utf8_lossy(&text[..text.len().min(80)])
            ))
        });
    }
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The key counts a snapshot recorded for its RDB.
pub fn recorded_counts(snapshot: &Snapshot) -> Result<KeyCounts> {
    let text = snapshot.source.get(record::KEY_COUNTS).ok_or_else(|| {
        Error::Invalid("the snapshot records no key counts: is it a redis snapshot?".into())
    })?;
    compare::decode(text).map_err(Error::Invalid)
}
