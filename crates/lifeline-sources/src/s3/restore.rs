//! Put a snapshot's objects back into a bucket, each with its headers and user metadata. Objects the
//! destination already holds with the same size and ETag are left alone (unless forced), so a restore
//! that was interrupted is resumed by running it again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use lifeline_repo::tree::Node;
use lifeline_repo::{BlobReader, Id};
use object_store::aws::AmazonS3;
use object_store::path::Path;
use object_store::{
    Attributes, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, WriteMultipart,
};
use serde::Serialize;
use tokio::task::JoinSet;

use super::bucket::{about_the_object, REQUESTS_IN_FLIGHT};
use super::manifest::{self, slice, ObjectRecord};
use super::{Bucket, Error};
use crate::Progress;

/// Objects up to this size are put in one request (their ETag is then the MD5 of their bytes, as
/// the source's was for anything it did not upload in parts); larger ones in parts.
const SINGLE_PUT_LIMIT: u64 = 64 << 20;
const PART_SIZE: usize = 16 << 20;
/// Bytes of object bodies held for puts in flight.
const BYTES_IN_FLIGHT: u64 = 64 << 20;
const ATTEMPTS: u32 = 3;
const FIRST_DELAY: Duration = Duration::from_millis(200);

/// What to restore where.
pub struct RestoreRequest<'a> {
    /// The root tree of an `s3` snapshot.
    pub tree: Id,
    pub to: &'a Bucket,
    /// Only keys matching one of these globs (all keys when empty); `*` stays within a segment,
    /// `**` crosses segments.
    pub include: &'a [String],
    /// Put every object, even one the destination already holds with the same size and ETag.
    pub force: bool,
}

/// What a restore did.
#[derive(Debug, Default, Serialize)]
pub struct Restored {
    /// Objects selected for the restore.
    pub objects: u64,
    /// Objects put.
    pub put: u64,
    /// Objects the destination already held with the same size and ETag, left alone.
    pub present: u64,
    /// Bytes put.
    pub bytes: u64,
    /// Objects the destination refused, with why (`key`, `message`); the rest were restored.
    pub errors: Vec<(String, String)>,
}

/// Put the objects of `request.tree` into `request.to`.
pub fn restore(
    reader: &BlobReader<'_>,
    request: &RestoreRequest<'_>,
    progress: &dyn Progress,
) -> Result<Restored, Error> {
    let include = globs(request.include)?;
    let bucket = request.to;
    let mut objects: Vec<(ObjectRecord, Node)> = manifest::read(reader, request.tree)?
        .into_iter()
        .filter(|(record, _)| include.as_ref().is_none_or(|g| g.is_match(&record.key)))
        .collect();
    let mut restored = Restored {
        objects: objects.len() as u64,
        ..Restored::default()
    };
    if !request.force {
        let there: HashMap<String, (u64, Option<String>)> = bucket
            .list()?
            .into_iter()
            .map(|l| (l.key, (l.size, l.etag)))
            .collect();
        objects.retain(|(record, _)| {
            let same = there.get(&record.key).is_some_and(|(size, etag)| {
                *size == record.size && etag.is_some() && *etag == record.etag
            });
            restored.present += u64::from(same);
            !same
        });
    }
    progress.total(objects.iter().map(|(r, _)| r.size).sum());
    let (whole, parts): (Vec<_>, Vec<_>) = objects
        .into_iter()
        .partition(|(record, _)| record.size <= SINGLE_PUT_LIMIT);
    Putter {
        reader,
        bucket,
        progress,
    }
    .put_whole(whole, &mut restored)?
    .put_in_parts(parts, &mut restored)?;
    Ok(restored)
}

fn globs(patterns: &[String]) -> Result<Option<GlobSet>, Error> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut set = GlobSetBuilder::new();
    for pattern in patterns {
        let glob = GlobBuilder::new(pattern)
            .literal_separator(true)
            .build()
            .map_err(|e| Error::Pattern {
                pattern: pattern.clone(),
                message: e.kind().to_string(),
            })?;
        set.add(glob);
    }
    set.build().map(Some).map_err(|e| Error::Pattern {
        pattern: patterns.join(" "),
        message: e.to_string(),
    })
}

struct Putter<'a, 'r> {
    reader: &'a BlobReader<'r>,
    bucket: &'a Bucket,
    progress: &'a dyn Progress,
}

impl Putter<'_, '_> {
    /// Objects small enough for one request: read in key order (objects bundled together are read
    /// with one blob read) and put many at once, within a bound on the bytes held.
    fn put_whole(
        &self,
        objects: Vec<(ObjectRecord, Node)>,
        restored: &mut Restored,
    ) -> Result<&Self, Error> {
        let runtime = self.bucket.runtime();
        let mut last: Option<(Id, Bytes)> = None;
        let mut in_flight: JoinSet<(ObjectRecord, object_store::Result<()>)> = JoinSet::new();
        let mut held = 0u64;
        for (record, node) in objects {
            while !in_flight.is_empty()
                && (in_flight.len() >= REQUESTS_IN_FLIGHT || held + record.size > BYTES_IN_FLIGHT)
            {
                if let Some(joined) = runtime.block_on(in_flight.join_next()) {
                    held = held.saturating_sub(self.done(joined, restored)?);
                }
            }
            let body = self.body(&node, &mut last)?;
            let path = self.bucket.path(&record.key)?;
            let store = Arc::clone(self.bucket.store());
            held += record.size;
            in_flight.spawn_on(
                async move {
                    let put = put_whole(&store, &path, body, record.headers.to_attributes()).await;
                    (record, put)
                },
                runtime.handle(),
            );
        }
        while let Some(joined) = runtime.block_on(in_flight.join_next()) {
            self.done(joined, restored)?;
        }
        Ok(self)
    }

    /// Account for one finished put; returns its size. A failure of the store itself ends the
    /// restore (running it again resumes it); a refusal of this one object is recorded.
    fn done(
        &self,
        joined: Result<(ObjectRecord, object_store::Result<()>), tokio::task::JoinError>,
        restored: &mut Restored,
    ) -> Result<u64, Error> {
        let (record, put) = joined.map_err(|e| Error::Runtime(std::io::Error::other(e)))?;
        match put {
            Ok(()) => {
                restored.put += 1;
                restored.bytes += record.size;
                self.progress.bytes(record.size);
                self.progress.file_done(record.size);
            }
            Err(e) if about_the_object(&e) => restored.errors.push((record.key, e.to_string())),
            Err(e) => return Err(self.bucket.put_error(&record.key, &e)),
        }
        Ok(record.size)
    }

    /// An object's bytes, reading each blob once for a run of objects cut from the same bundle.
    fn body(&self, node: &Node, last: &mut Option<(Id, Bytes)>) -> Result<Bytes, Error> {
        let parts = node.content.as_deref().unwrap_or_default();
        let mut body = Vec::with_capacity(node.size.unwrap_or(0) as usize);
        for part in parts {
            let blob = match last {
                Some((id, blob)) if id == part.id() => blob.clone(),
                _ => {
                    let blob = Bytes::from(self.reader.read_blob(part.id())?);
                    *last = Some((*part.id(), blob.clone()));
                    blob
                }
            };
            let bytes = slice(&blob, part)?;
            if parts.len() == 1 {
                // Usually a slice of a bundle: shared, not copied.
                let start = part.offset() as usize;
                return Ok(blob.slice(start..start + bytes.len()));
            }
            body.extend_from_slice(bytes);
        }
        Ok(Bytes::from(body))
    }

    /// Objects too large for one request, one at a time, each uploaded in parts read chunk by chunk.
    fn put_in_parts(
        &self,
        objects: Vec<(ObjectRecord, Node)>,
        restored: &mut Restored,
    ) -> Result<&Self, Error> {
        for (record, node) in objects {
            match self.put_parts(&record, &node) {
                Ok(()) => {
                    restored.put += 1;
                    restored.bytes += record.size;
                    self.progress.file_done(record.size);
                }
                Err(Failed::Store(e)) if about_the_object(&e) => {
                    restored.errors.push((record.key, e.to_string()))
                }
                Err(Failed::Store(e)) => return Err(self.bucket.put_error(&record.key, &e)),
                // The repository failed: nothing more can be restored from it.
                Err(Failed::Repo(e)) => return Err(e),
            }
        }
        Ok(self)
    }

    /// One multipart upload. Blobs are read between the runtime's turns: a repository on S3 blocks
    /// on its own runtime, which it may not do inside this one's.
    fn put_parts(&self, record: &ObjectRecord, node: &Node) -> Result<(), Failed> {
        let runtime = self.bucket.runtime();
        let path = self.bucket.path(&record.key).map_err(Failed::Repo)?;
        let opts = PutMultipartOptions {
            attributes: record.headers.to_attributes(),
            ..PutMultipartOptions::default()
        };
        let upload = runtime
            .block_on(self.bucket.store().put_multipart_opts(&path, opts))
            .map_err(Failed::Store)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        for part in node.content.as_deref().unwrap_or_default() {
            let blob = self
                .reader
                .read_blob(part.id())
                .map_err(Error::Repo)
                .and_then(|blob| slice(&blob, part).map(<[u8]>::to_vec));
            let bytes = match blob {
                Ok(bytes) => bytes,
                Err(e) => {
                    // Best effort: an upload left open costs storage until the bucket's lifecycle
                    // rules remove it, so it is aborted; the repository's error is what matters.
                    let _ = runtime.block_on(writer.abort());
                    return Err(Failed::Repo(e));
                }
            };
            runtime
                .block_on(writer.wait_for_capacity(2))
                .map_err(Failed::Store)?;
            {
                // A full part is handed to a task of the runtime.
                let _inside = runtime.enter();
                writer.write(&bytes);
            }
            self.progress.bytes(bytes.len() as u64);
        }
        runtime
            .block_on(writer.finish())
            .map(|_| ())
            .map_err(Failed::Store)
    }
}

/// Why one object could not be put.
enum Failed {
    Store(object_store::Error),
    Repo(Error),
}

/// One PUT with the object's headers and metadata, tried again when the store fails transiently.
async fn put_whole(
    store: &AmazonS3,
    path: &Path,
    body: Bytes,
    attributes: Attributes,
) -> object_store::Result<()> {
    let mut attempt = 1;
    loop {
        let opts = PutOptions {
            attributes: attributes.clone(),
            ..PutOptions::default()
        };
        match store
            .put_opts(path, PutPayload::from_bytes(body.clone()), opts)
            .await
        {
            Err(e) if attempt < ATTEMPTS && !about_the_object(&e) => {
                tokio::time::sleep(FIRST_DELAY * 2u32.pow(attempt - 1)).await;
                attempt += 1;
            }
            put => return put.map(|_| ()),
        }
    }
}
