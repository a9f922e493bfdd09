//! A bucket (or a prefix of one) of an S3-compatible store as a source of data (docs/sources/s3.md).
//!
//! A snapshot of kind `s3` holds two entries at its root:
//! - `objects/`: one file per object, in directories that mirror the keys split on `/` (the
//!   prefix itself removed), each with the object's bytes and its Last-Modified time as mtime;
//! - `objects.jsonl`: one JSON line per object, in key order, with what a directory cannot hold:
//!   the original key, size, Last-Modified, ETag, content type and the other standard headers, and
//!   the user metadata (`x-amz-meta-*`).
//!
//! Captures are incremental against the newest `s3` snapshot of the same bucket URL: an object
//! whose ETag, size and Last-Modified are unchanged keeps its stored content without a GET.
//! `restore` puts a snapshot's objects back into a bucket with their headers and metadata; a
//! directory restore (`lifeline restore`) needs nothing from this module.

mod bucket;
mod capture;
mod keys;
mod manifest;
mod restore;
mod source;

pub use bucket::{Bucket, Headers, Listed};
pub use capture::{capture, CaptureRequest};
pub use keys::{key_of, path_of, OWN_OBJECT};
pub use manifest::{read as read_manifest, ObjectRecord, MANIFEST, OBJECTS};
pub use restore::{restore, RestoreRequest, Restored};
pub use source::S3Source;

/// The snapshot kind of a bucket's objects.
pub const KIND: &str = "s3";

/// Keys of `Snapshot::source` a capture fills in.
pub mod recorded {
    /// The bucket URL, `s3://BUCKET/PREFIX` (also the snapshot's one path).
    pub const BUCKET: &str = "bucket";
    /// Objects in the snapshot.
    pub const OBJECTS: &str = "objects";
    /// Objects read from the bucket (new or changed since the parent snapshot).
    pub const FETCHED: &str = "fetched";
    /// Objects whose ETag, size and Last-Modified matched the parent's: kept without a GET.
    pub const UNCHANGED: &str = "unchanged";
    /// Objects listed but gone when they were read (deleted meanwhile, or folder markers).
    pub const VANISHED: &str = "vanished";
    /// Bytes read from the bucket.
    pub const BYTES_FETCHED: &str = "bytes_fetched";
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Repo(#[from] lifeline_repo::Error),
    #[error("cannot list {location}: {message}{hint}")]
    List {
        location: String,
        message: String,
        /// What to do about it, starting with "; " when there is something to say.
        hint: String,
    },
    #[error("cannot list {location}: a key there is one the S3 client cannot name ({message}); keys with an empty segment (`a//b`), a `.` or `..` segment or a control character cannot be captured (docs/sources/s3.md, limits)")]
    UnnamableKey { location: String, message: String },
    #[error("cannot read {location}: {message}{hint}")]
    Get {
        location: String,
        message: String,
        hint: String,
    },
    #[error("cannot write {location}: {message}{hint}")]
    Put {
        location: String,
        message: String,
        hint: String,
    },
    #[error("snapshot {snapshot} is a {kind} snapshot, not an s3 one: `lifeline snapshots` shows each snapshot's kind")]
    NotS3 { snapshot: String, kind: String },
    #[error("the snapshot's {MANIFEST} is damaged: {0}")]
    Manifest(String),
    #[error("--include {pattern:?}: {message}")]
    Pattern { pattern: String, message: String },
    #[error("cannot start the S3 client's runtime: {0}")]
    Runtime(std::io::Error),
}

/// What to do about an S3 error, from its message; empty when there is nothing to add.
fn hint(message: &str) -> String {
    let refused = [
        "403",
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "Forbidden",
    ];
    if refused.iter().any(|m| message.contains(m)) {
        "; the credentials were refused: check the source's `s3` settings (or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) and that this key may use the bucket".into()
    } else if message.contains("NoSuchBucket") {
        "; the bucket does not exist: check the bucket URL".into()
    } else if message.contains("error sending request") || message.contains("connect") {
        "; the server did not answer: check the endpoint (`s3.endpoint` or AWS_ENDPOINT_URL) and that the store is running".into()
    } else {
        String::new()
    }
}
