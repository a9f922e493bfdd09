//! `objects.jsonl`: what a snapshot of a bucket knows of each object besides its bytes, one JSON
//! line per object in key order, and how it is read back together with the objects' file nodes.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};

use chrono::{DateTime, Utc};
use lifeline_repo::tree::{ContentRef, Node, NodeType};
use lifeline_repo::{BlobReader, Id};
use serde::{Deserialize, Serialize};

use super::{Error, Headers};

/// The directory of a snapshot's root that holds the objects.
pub const OBJECTS: &str = "objects";
/// The file of a snapshot's root that describes them.
pub const MANIFEST: &str = "objects.jsonl";

/// One object as a snapshot records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRecord {
    /// The key below the bucket URL's prefix.
    pub key: String,
    /// Where its bytes are, below `objects/` (the key mapped as `keys::path_of` says).
    pub path: String,
    pub size: u64,
    /// As the listing gave it: what the next capture compares.
    pub last_modified: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(flatten)]
    pub headers: Headers,
}

/// The manifest's bytes, produced line by line as they are read, so a bucket of millions of objects
/// does not need its whole manifest in memory twice.
pub(crate) struct Lines<'a> {
    records: std::slice::Iter<'a, ObjectRecord>,
    line: Vec<u8>,
    pos: usize,
}

impl<'a> Lines<'a> {
    pub(crate) fn new(records: &'a [ObjectRecord]) -> Self {
        Lines {
            records: records.iter(),
            line: Vec::new(),
            pos: 0,
        }
    }
}

impl Read for Lines<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.line.len() {
            let Some(record) = self.records.next() else {
                return Ok(0);
            };
            self.line.clear();
            serde_json::to_writer(&mut self.line, record).map_err(std::io::Error::other)?;
            self.line.push(b'\n');
            self.pos = 0;
        }
        let n = buf.len().min(self.line.len() - self.pos);
        buf[..n].copy_from_slice(&self.line[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// A stored file's bytes, read chunk by chunk.
pub(crate) struct Content<'a, 'r> {
    reader: &'a BlobReader<'r>,
    parts: std::slice::Iter<'a, ContentRef>,
    chunk: Vec<u8>,
    pos: usize,
}

impl<'a, 'r> Content<'a, 'r> {
    pub(crate) fn new(reader: &'a BlobReader<'r>, node: &'a Node) -> Self {
        Content {
            reader,
            parts: node.content.as_deref().unwrap_or_default().iter(),
            chunk: Vec::new(),
            pos: 0,
        }
    }
}

impl Read for Content<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.chunk.len() {
            let Some(part) = self.parts.next() else {
                return Ok(0);
            };
            self.chunk = slice(
                &self
                    .reader
                    .read_blob(part.id())
                    .map_err(std::io::Error::other)?,
                part,
            )
            .map_err(std::io::Error::other)?
            .to_vec();
            self.pos = 0;
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The bytes of `part` within its blob.
pub(crate) fn slice<'b>(blob: &'b [u8], part: &ContentRef) -> Result<&'b [u8], Error> {
    let start = usize::try_from(part.offset()).unwrap_or(usize::MAX);
    let end = start.saturating_add(usize::try_from(part.len()).unwrap_or(usize::MAX));
    blob.get(start..end).ok_or_else(|| {
        Error::Repo(lifeline_repo::Error::corrupt(
            format!("blob {}", part.id().short()),
            "shorter than a file's reference to it",
        ))
    })
}

/// Every object of the snapshot whose root tree is `root`, in key order, each with its file node.
/// Fails when `root` is not the root of an `s3` snapshot or the two halves disagree.
pub fn read(reader: &BlobReader<'_>, root: Id) -> Result<Vec<(ObjectRecord, Node)>, Error> {
    let tree = reader.read_tree(&root)?;
    let manifest = tree
        .find(MANIFEST.as_bytes())
        .filter(|n| n.node_type == NodeType::File)
        .ok_or_else(|| Error::Manifest(format!("the snapshot has no {MANIFEST}")))?;
    let objects = tree
        .find(OBJECTS.as_bytes())
        .and_then(|n| n.subtree)
        .ok_or_else(|| Error::Manifest(format!("the snapshot has no {OBJECTS}/ directory")))?;
    let mut nodes: HashMap<String, Node> = HashMap::new();
    lifeline_repo::walk::walk(reader, objects, b"", &mut |path, node| {
        if node.node_type == NodeType::File {
            let path = path.strip_prefix(b"/").unwrap_or(path);
            nodes.insert(String::from_utf8_lossy(path).into_owned(), node.clone());
        }
        Ok(())
    })?;
    let mut records = Vec::new();
    for (number, line) in BufReader::new(Content::new(reader, manifest))
        .lines()
        .enumerate()
    {
        let line = line.map_err(|e| Error::Manifest(e.to_string()))?;
        let record: ObjectRecord = serde_json::from_str(&line)
            .map_err(|e| Error::Manifest(format!("line {}: {e}", number + 1)))?;
        let node = nodes.remove(&record.path).ok_or_else(|| {
            Error::Manifest(format!(
                "line {}: object {:?} has no file {OBJECTS}/{}",
                number + 1,
                record.key,
                record.path
            ))
        })?;
        records.push((record, node));
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_one_json_object_per_record_with_flattened_headers() {
        let mut headers = Headers {
            content_type: Some("image/png".into()),
            ..Headers::default()
        };
        headers.metadata.insert("owner".into(), "ops".into());
        let records = vec![
            ObjectRecord {
                key: "a/b.png".into(),
                path: "a/b.png".into(),
                size: 3,
                last_modified: DateTime::parse_from_rfc3339("2024-05-01T10:00:00.123Z")
                    .expect("time")
                    .with_timezone(&Utc),
                etag: Some("\"abc\"".into()),
                headers,
            },
            ObjectRecord {
                key: "c".into(),
                path: "c".into(),
                size: 0,
                last_modified: DateTime::default(),
                etag: None,
                headers: Headers::default(),
            },
        ];
        let mut text = String::new();
        // A tiny buffer: records must come out whole however the reader is called.
        let mut lines = Lines::new(&records);
        let mut buf = [0u8; 7];
        loop {
            let n = lines.read(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            text.push_str(std::str::from_utf8(&buf[..n]).expect("utf-8"));
        }
        let parsed: Vec<ObjectRecord> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("a record"))
            .collect();
        assert_eq!(parsed, records);
        let first: serde_json::Value =
            serde_json::from_str(text.lines().next().expect("a line")).expect("json");
        assert_eq!(first["content_type"], "image/png");
        assert_eq!(first["metadata"]["owner"], "ops");
        assert_eq!(first["last_modified"], "2024-05-01T10:00:00.123Z");
        assert!(text.lines().nth(1).is_some_and(|l| !l.contains("etag")));
    }
}
