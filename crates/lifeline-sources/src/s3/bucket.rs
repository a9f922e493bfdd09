//! One bucket prefix, opened as the repository opens its own buckets, with the few operations the
//! source needs: list, read and write objects with their headers and user metadata.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use lifeline_repo::storage::{S3Settings, S3Storage};
use object_store::aws::AmazonS3;
use object_store::path::Path;
use object_store::{
    Attribute, AttributeValue, Attributes, ObjectStore, ObjectStoreExt, PutOptions, PutPayload,
};
use serde::{Deserialize, Serialize};

use super::{hint, Error};

/// HTTP requests in flight at once. Objects are small and requests mostly wait on the network, so
/// this many keeps two cores busy without a burst a small store would answer with 503 SlowDown.
pub(crate) const REQUESTS_IN_FLIGHT: usize = 32;

/// `s3://BUCKET/PREFIX` with a client for it.
pub struct Bucket {
    store: Arc<AmazonS3>,
    /// Without surrounding slashes; empty for the whole bucket.
    prefix: String,
    /// `s3://BUCKET/PREFIX`, normalised (no trailing slash).
    url: String,
    // The callers are synchronous; this runtime drives the HTTP client.
    runtime: tokio::runtime::Runtime,
}

/// An object as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The key below the prefix (`photos/a.jpg` of `s3://b/site/photos/a.jpg` listed at `s3://b/site`).
    pub key: String,
    pub size: u64,
    pub last_modified: DateTime<Utc>,
    pub etag: Option<String>,
}

/// What an object carries besides its bytes and that a PUT can set again: the standard headers and
/// the user metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Headers {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_disposition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_language: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
    /// User metadata: `x-amz-meta-NAME` by NAME (lower case, as stores return header names).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

impl Headers {
    pub(crate) fn from_attributes(attributes: &Attributes) -> Self {
        let mut headers = Headers::default();
        for (attribute, value) in attributes {
            let value = value.as_ref().to_string();
            match attribute {
                Attribute::ContentType => headers.content_type = Some(value),
                Attribute::ContentEncoding => headers.content_encoding = Some(value),
                Attribute::ContentDisposition => headers.content_disposition = Some(value),
                Attribute::ContentLanguage => headers.content_language = Some(value),
                Attribute::CacheControl => headers.cache_control = Some(value),
                Attribute::Metadata(name) => {
                    headers.metadata.insert(name.to_string(), value);
                }
                // The storage class is the destination's choice (docs/sources/s3.md, limits).
                _ => {}
            }
        }
        headers
    }

    pub(crate) fn to_attributes(&self) -> Attributes {
        let mut attributes = Attributes::new();
        let standard = [
            (Attribute::ContentType, &self.content_type),
            (Attribute::ContentEncoding, &self.content_encoding),
            (Attribute::ContentDisposition, &self.content_disposition),
            (Attribute::ContentLanguage, &self.content_language),
            (Attribute::CacheControl, &self.cache_control),
        ];
        for (attribute, value) in standard {
            if let Some(value) = value {
                attributes.insert(attribute, AttributeValue::from(value.clone()));
            }
        }
        for (name, value) in &self.metadata {
            attributes.insert(
                Attribute::Metadata(name.clone().into()),
                AttributeValue::from(value.clone()),
            );
        }
        attributes
    }
}

impl Bucket {
    /// Open `s3://BUCKET/PREFIX` with `settings`, else the `AWS_*` environment, exactly as an
    /// `s3://` repository is opened.
    pub fn open(url: &str, settings: &S3Settings) -> Result<Bucket, Error> {
        let (store, prefix) = S3Storage::client(url, settings)?;
        if !prefix.is_empty() {
            Path::parse(&prefix).map_err(|e| Error::List {
                location: url.into(),
                message: e.to_string(),
                hint: "; write the prefix without empty, `.` or `..` segments".into(),
            })?;
        }
        let bucket = url
            .trim_start_matches("s3://")
            .split('/')
            .next()
            .unwrap_or_default();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(Error::Runtime)?;
        Ok(Bucket {
            store: Arc::new(store),
            url: if prefix.is_empty() {
                format!("s3://{bucket}")
            } else {
                format!("s3://{bucket}/{prefix}")
            },
            prefix,
            runtime,
        })
    }

    /// `s3://BUCKET/PREFIX` without a trailing slash: what snapshots record as their path.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Every object below the prefix, in key order, each key once.
    pub fn list(&self) -> Result<Vec<Listed>, Error> {
        // `parse`, not `from`: the prefix is written as the store names it, `/` separating segments.
        let base = if self.prefix.is_empty() {
            None
        } else {
            Some(Path::parse(&self.prefix).map_err(|e| self.list_error(e.into()))?)
        };
        let metas: Vec<object_store::ObjectMeta> = self
            .runtime
            .block_on(self.store.list(base.as_ref()).try_collect())
            .map_err(|e| self.list_error(e))?;
        let mut listed: Vec<Listed> = metas
            .into_iter()
            .map(|m| Listed {
                key: self.key_of(&m.location),
                size: m.size,
                last_modified: m.last_modified,
                etag: m.e_tag,
            })
            .collect();
        // A folder marker `a/` lists as `a` (the client drops the trailing slash): one entry per key.
        listed.sort_by(|a, b| a.key.cmp(&b.key));
        listed.dedup_by(|a, b| a.key == b.key);
        Ok(listed)
    }

    fn list_error(&self, e: object_store::Error) -> Error {
        let message = e.to_string();
        if matches!(e, object_store::Error::InvalidPath { .. }) {
            return Error::UnnamableKey {
                location: self.url.clone(),
                message,
            };
        }
        Error::List {
            location: self.url.clone(),
            hint: hint(&message),
            message,
        }
    }

    /// Put one object with its headers and metadata, replacing what the key held.
    pub fn put(&self, key: &str, data: Vec<u8>, headers: &Headers) -> Result<(), Error> {
        let path = self.path(key)?;
        let opts = PutOptions {
            attributes: headers.to_attributes(),
            ..PutOptions::default()
        };
        self.runtime
            .block_on(self.store.put_opts(&path, PutPayload::from(data), opts))
            .map(|_| ())
            .map_err(|e| self.put_error(key, &e))
    }

    /// One object's bytes, headers and metadata.
    pub fn get(&self, key: &str) -> Result<(Vec<u8>, Headers), Error> {
        let path = self.path(key)?;
        self.runtime
            .block_on(async {
                let result = self.store.get(&path).await?;
                let headers = Headers::from_attributes(&result.attributes);
                Ok((Vec::from(result.bytes().await?), headers))
            })
            .map_err(|e| self.get_error(key, &e))
    }

    /// Remove one object; an absent one is not an error.
    pub fn delete(&self, key: &str) -> Result<(), Error> {
        let path = self.path(key)?;
        match self.runtime.block_on(self.store.delete(&path)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.put_error(key, &e)),
        }
    }

    /// The full path of `key` (below the prefix). Keys come from listings, which only hold keys the
    /// client can name, so this fails only for a key made up elsewhere.
    pub(crate) fn path(&self, key: &str) -> Result<Path, Error> {
        let full = if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        };
        Path::parse(&full).map_err(|e| Error::Put {
            location: self.location(key),
            message: e.to_string(),
            hint: String::new(),
        })
    }

    fn key_of(&self, path: &Path) -> String {
        let full = path.as_ref();
        if self.prefix.is_empty() {
            return full.to_string();
        }
        full.strip_prefix(self.prefix.as_str())
            .and_then(|k| k.strip_prefix('/'))
            .unwrap_or(full)
            .to_string()
    }

    /// `s3://BUCKET/PREFIX/KEY`, for messages.
    pub(crate) fn location(&self, key: &str) -> String {
        format!("{}/{key}", self.url)
    }

    pub(crate) fn get_error(&self, key: &str, e: &object_store::Error) -> Error {
        let message = e.to_string();
        Error::Get {
            location: self.location(key),
            hint: hint(&message),
            message,
        }
    }

    pub(crate) fn put_error(&self, key: &str, e: &object_store::Error) -> Error {
        let message = e.to_string();
        Error::Put {
            location: self.location(key),
            hint: hint(&message),
            message,
        }
    }

    pub(crate) fn store(&self) -> &Arc<AmazonS3> {
        &self.store
    }

    pub(crate) fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.runtime
    }
}

/// Whether an error is the store's definite answer about this one object (it is not there, this key
/// may not read it), as opposed to the store or the network failing.
pub(crate) fn about_the_object(e: &object_store::Error) -> bool {
    use object_store::Error as E;
    let m = e.to_string();
    let whole_key = [
        "NoSuchBucket",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
    ]
    .iter()
    .any(|p| m.contains(p));
    // Headers the client cannot read (user metadata that is not visible ASCII) belong to the object.
    if m.contains("contained non UTF-8 characters") {
        return true;
    }
    match e {
        E::NotFound { .. } | E::Precondition { .. } | E::InvalidPath { .. } => true,
        E::PermissionDenied { .. } => !whole_key,
        E::Unauthenticated { .. } => false,
        _ => {
            m.contains("status code: 4")
                && !m.contains("status code: 408")
                && !m.contains("status code: 429")
                && !whole_key
        }
    }
}
