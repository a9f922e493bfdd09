//! S3-compatible object storage (AWS S3, Garage, MinIO, R2) through `object_store`, which signs
//! requests, retries transient failures (5xx, 429/SlowDown, timeouts, resets) with exponential backoff
//! and jitter, and fails fast on permanent ones (403, missing bucket).

use std::time::Duration;

use futures::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder, S3ConditionalPut};
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    RetryConfig, WriteMultipart,
};
use serde::Deserialize;

use super::{ObjectInfo, Storage};
use crate::error::{Error, Result};

/// Attempts of one operation by [`S3Storage::run`], on top of `object_store`'s own retries, which skip
/// resets and timeouts of requests it does not know to be idempotent. Every operation here is.
const ATTEMPTS: u32 = 6;
const FIRST_DELAY: Duration = Duration::from_millis(200);
const MAX_DELAY: Duration = Duration::from_secs(5);

/// Objects above this size are uploaded in parts, in parallel.
const MULTIPART_THRESHOLD: usize = 64 << 20;
const PART_SIZE: usize = 16 << 20;

/// Settings that override the standard `AWS_*` environment variables (from the config file).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Settings {
    /// `http(s)://host:port` of a self-hosted store (Garage, MinIO); AWS when absent.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    /// A file holding the secret key, so the config file itself holds no secret.
    pub secret_access_key_file: Option<std::path::PathBuf>,
}

pub struct S3Storage {
    store: AmazonS3,
    prefix: String,
    location: String,
    // The trait is synchronous; this runtime drives the HTTP client for every calling thread.
    runtime: tokio::runtime::Runtime,
}

impl S3Storage {
    /// Open `s3://BUCKET/PREFIX`. Endpoint, region and credentials come from `settings`, else from
    /// `AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`.
    pub fn open(url: &str, settings: &S3Settings) -> Result<Self> {
        let (store, prefix) = Self::client(url, settings)?;
        let (bucket, _) = split_url(url)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Error::io("tokio runtime", e))?;
        Ok(S3Storage {
            store,
            location: format!("s3://{bucket}/{prefix}"),
            prefix,
            runtime,
        })
    }

    /// A client for the bucket of `s3://BUCKET/PREFIX`, configured as repositories open theirs
    /// (endpoint, region and credentials from `settings`, else the `AWS_*` environment; path-style
    /// requests; retries and timeouts), and the URL's prefix without surrounding slashes. Sources
    /// that read a bucket open it with this, so a bucket that works as a repository works as a source.
    pub fn client(url: &str, settings: &S3Settings) -> Result<(AmazonS3, String)> {
        let (bucket, prefix) = split_url(url)?;
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            // Self-hosted stores rarely have wildcard DNS for bucket subdomains.
            .with_virtual_hosted_style_request(false)
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_secs(8),
                    base: 2.0,
                },
                max_retries: 4,
                retry_timeout: Duration::from_secs(60),
            })
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(10))
                    .with_timeout(Duration::from_secs(120)),
            );
        let endpoint = settings
            .endpoint
            .clone()
            .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
        if let Some(endpoint) = &endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        if let Some(region) = &settings.region {
            builder = builder.with_region(region);
        }
        if let Some(id) = &settings.access_key_id {
            builder = builder.with_access_key_id(id);
        }
        if let Some(path) = &settings.secret_access_key_file {
            let secret = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
            builder = builder.with_secret_access_key(secret.trim());
        }
        let store = builder.build().map_err(|e| Error::Backend {
            location: url.to_string(),
            message: e.to_string(),
            hint: "; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (and AWS_ENDPOINT_URL for a self-hosted store)".into(),
        })?;
        Ok((store, prefix.trim_matches('/').to_string()))
    }

    fn path(&self, key: &str) -> Path {
        if self.prefix.is_empty() {
            Path::from(key)
        } else {
            Path::from(format!("{}/{key}", self.prefix))
        }
    }

    fn key_of(&self, path: &Path) -> String {
        let full = path.as_ref();
        if self.prefix.is_empty() {
            full.to_string()
        } else {
            full.strip_prefix(&self.prefix)
                .map(|k| k.trim_start_matches('/'))
                .unwrap_or(full)
                .to_string()
        }
    }

    fn error(&self, key: &str, e: object_store::Error) -> Error {
        let message = e.to_string();
        if matches!(e, object_store::Error::NotFound { .. }) && !message.contains("NoSuchBucket") {
            return Error::ObjectMissing { key: key.into() };
        }
        let hint = if [
            "403",
            "AccessDenied",
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "Forbidden",
        ]
        .iter()
        .any(|m| message.contains(m))
        {
            "; the credentials were refused: check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY and that this key may use the bucket"
        } else if message.contains("NoSuchBucket") {
            "; the bucket does not exist: create it or fix the repository URL"
        } else if message.contains("error sending request") || message.contains("connect") {
            "; the server did not answer: check AWS_ENDPOINT_URL and that the store is running"
        } else {
            ""
        };
        Error::Backend {
            location: format!("{}/{key}", self.location),
            message,
            hint: hint.into(),
        }
    }

    /// Run one storage operation with bounded exponential backoff and full jitter for transient
    /// errors; permanent ones (and the outcome `op` maps itself) return at once.
    fn run<T, F, Fut>(&self, key: &str, op: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = object_store::Result<T>>,
    {
        self.runtime
            .block_on(async {
                let mut delay = FIRST_DELAY;
                let mut attempt = 1;
                loop {
                    match op().await {
                        Err(e) if attempt < ATTEMPTS && transient(&e) => {
                            tracing::info!("{key}: attempt {attempt} failed, retrying: {e}");
                            let jittered = delay.mul_f64(0.5 + rand::random::<f64>() / 2.0);
                            tokio::time::sleep(jittered).await;
                            delay = (delay * 2).min(MAX_DELAY);
                            attempt += 1;
                        }
                        result => return result,
                    }
                }
            })
            .map_err(|e| self.error(key, e))
    }

    async fn put_multipart(&self, path: &Path, data: &[u8]) -> object_store::Result<()> {
        let upload = self.store.put_multipart(path).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        for part in data.chunks(PART_SIZE) {
            writer.wait_for_capacity(4).await?;
            writer.put(bytes::Bytes::copy_from_slice(part));
        }
        writer.finish().await.map(|_| ())
    }
}

/// `s3://BUCKET/PREFIX` as its bucket and its prefix (as written).
fn split_url(url: &str) -> Result<(&str, &str)> {
    let rest = url.strip_prefix("s3://").ok_or_else(|| {
        Error::Invalid(format!("{url:?} is not an S3 URL: use s3://BUCKET/PREFIX"))
    })?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(Error::Invalid(format!(
            "{url:?} names no bucket: use s3://BUCKET/PREFIX"
        )));
    }
    Ok((bucket, prefix))
}

/// Whether an error may go away by itself: anything but a definite answer from the store.
fn transient(e: &object_store::Error) -> bool {
    use object_store::Error as E;
    if matches!(
        e,
        E::NotFound { .. }
            | E::AlreadyExists { .. }
            | E::Precondition { .. }
            | E::NotModified { .. }
            | E::NotSupported { .. }
            | E::NotImplemented { .. }
            | E::InvalidPath { .. }
    ) {
        return false;
    }
    let m = e.to_string();
    let client_error = m.contains("status code: 4")
        && !m.contains("status code: 408")
        && !m.contains("status code: 429");
    let refused = [
        "NoSuchBucket",
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
    ]
    .iter()
    .any(|p| m.contains(p));
    !(client_error || refused)
}

impl Storage for S3Storage {
    fn put(&self, key: &str, data: &[u8]) -> Result<bool> {
        let path = self.path(key);
        self.run(key, || async {
            // Stores that ignore If-None-Match would overwrite; a HEAD first keeps objects
            // create-only there too. It also makes a retry after a lost response see the object.
            match self.store.head(&path).await {
                Ok(_) => return Ok(false),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
            let result = if data.len() > MULTIPART_THRESHOLD {
                self.put_multipart(&path, data).await
            } else {
                let opts = PutOptions {
                    mode: PutMode::Create,
                    ..PutOptions::default()
                };
                self.store
                    .put_opts(&path, PutPayload::from(data.to_vec()), opts)
                    .await
                    .map(|_| ())
            };
            match result {
                Ok(()) => Ok(true),
                Err(
                    object_store::Error::AlreadyExists { .. }
                    | object_store::Error::Precondition { .. },
                ) => Ok(false),
                Err(e) => Err(e),
            }
        })
    }

    fn get(&self, key: &str) -> Result<Vec<u8>> {
        let path = self.path(key);
        self.run(key, || async {
            let bytes = self.store.get(&path).await?.bytes().await?;
            // Takes the buffer over without a copy when this is its only owner.
            Ok(Vec::from(bytes))
        })
    }

    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let path = self.path(key);
        let short = || {
            Error::corrupt(
                key,
                format!(
                    "shorter than expected (wanted bytes {offset}..{})",
                    offset + len
                ),
            )
        };
        let bytes = self
            .run(key, || self.store.get_range(&path, offset..offset + len))
            .map_err(|e| match e {
                Error::Backend { message, .. }
                    if message.contains("Range") || message.contains("416") =>
                {
                    short()
                }
                other => other,
            })?;
        if bytes.len() as u64 != len {
            return Err(short());
        }
        Ok(bytes.to_vec())
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        // object_store lists by path segments: list the directory part, then filter exactly.
        let dir = prefix.rsplit_once('/').map_or("", |(d, _)| d);
        let base = match (self.prefix.is_empty(), dir.is_empty()) {
            (true, true) => None,
            (true, false) => Some(Path::from(dir)),
            (false, true) => Some(Path::from(self.prefix.as_str())),
            (false, false) => Some(Path::from(format!("{}/{dir}", self.prefix))),
        };
        let metas: Vec<object_store::ObjectMeta> =
            self.run(prefix, || self.store.list(base.as_ref()).try_collect())?;
        Ok(metas
            .into_iter()
            .map(|m| ObjectInfo {
                key: self.key_of(&m.location),
                size: m.size,
                modified: m.last_modified.into(),
            })
            .filter(|o| o.key.starts_with(prefix) && !o.key.starts_with("tmp/"))
            .collect())
    }

    fn stat(&self, key: &str) -> Result<Option<ObjectInfo>> {
        let path = self.path(key);
        self.run(key, || async {
            match self.store.head(&path).await {
                Ok(meta) => Ok(Some(ObjectInfo {
                    key: key.into(),
                    size: meta.size,
                    modified: meta.last_modified.into(),
                })),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        })
    }

    fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key);
        self.run(key, || async {
            match self.store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(e),
            }
        })
    }

    fn replace(&self, key: &str, data: &[u8]) -> Result<()> {
        let path = self.path(key);
        // One PUT without If-None-Match: S3 makes an object visible whole, old or new.
        self.run(key, || async {
            if data.len() > MULTIPART_THRESHOLD {
                self.put_multipart(&path, data).await
            } else {
                self.store
                    .put(&path, PutPayload::from(data.to_vec()))
                    .await
                    .map(|_| ())
            }
        })
    }

    fn location(&self) -> String {
        self.location.clone()
    }

    fn is_remote(&self) -> bool {
        true
    }
}
