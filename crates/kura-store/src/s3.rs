//! The S3 blob store: blobs in a bucket of any S3-compatible service.
//!
//! Layout under the prefix: `blobs/<upload id>` holds finished blobs;
//! `uploads/<upload id>/tail-<n>-<nonce>` holds the unfinished end of an
//! upload. The storage key of a blob is its object name without the prefix.
//!
//! An upload is an S3 multipart upload created by [`BlobStore::begin`] at the
//! blob's final object name (the digest is not known then, so the name carries
//! the upload id, which is unique; the metadata store maps digest to key).
//! Request bodies are cut into parts of [`PART_SIZE`] bytes; the rest of a body
//! (less than a part) is written as a small *tail* object, and the next append
//! reads it back to start the next part. So once an append returns, every
//! acknowledged byte is in S3, and any node can continue the upload from the
//! handle alone. The handle is JSON:
//!
//! ```json
//! {"id":"<upload id>","mpu":"<multipart upload id>","parts":["<etag>",...],
//!  "parted":<bytes in parts>,"tail":"tail-3-1a2b3c4d","tail_len":<bytes>,
//!  "prev":"tail-2-5e6f7a8b","seq":3}
//! ```
//!
//! A failed append leaves the recorded handle valid: parts it may have written
//! carry numbers past the recorded ones (a retry overwrites them, and
//! completion names only recorded parts), and its tail has a fresh name. The
//! tail a handle replaced (`prev`) is deleted by the next append, when the
//! caller has provably recorded the newer handle; `abort` deletes whatever is
//! left under `uploads/<id>/`.
//!
//! Part buffers are bounded across all uploads by a byte budget (a semaphore
//! counting bytes): an append holds one part's worth while it buffers.
//!
//! Gap: S3 cannot read back the parts of an unfinished multipart upload, so
//! [`BlobStore::read_upload`] works only while the upload is shorter than one
//! part; past that it answers [`StoreError::Unsupported`].

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use kura_oci::Digest;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::blob::{BlobStore, BodyStream, ByteStream, StoredKind, StoredObject, StoredStream};
use crate::error::{Result, StoreError};

/// Bytes per multipart part (all parts but the last have exactly this size,
/// which also suits stores that want equal parts). S3's minimum is 5 MiB.
pub const PART_SIZE: usize = 8 << 20;

/// S3 allows at most this many parts per upload (so a blob is at most
/// `PART_SIZE * MAX_PARTS`, about 78 GiB).
pub const MAX_PARTS: usize = 10_000;

/// The default budget for buffered part bytes across all uploads.
pub const DEFAULT_BUFFER_BUDGET: usize = 256 << 20;

/// Where the bucket is and how to reach it.
#[derive(Clone, Debug)]
pub struct S3Config {
    /// The bucket name.
    pub bucket: String,
    /// A path prefix for every object Kura writes (may be empty).
    pub prefix: String,
    /// A custom endpoint URL (MinIO, Ceph, R2, ...); `None` for AWS.
    pub endpoint: Option<String>,
    /// The region to sign for.
    pub region: String,
    /// The access key id; `None` uses the instance's credentials.
    pub access_key_id: Option<String>,
    /// The secret access key.
    pub secret_access_key: Option<String>,
    /// Virtual-hosted-style requests (`<bucket>.<host>`); `None` means path
    /// style for a custom endpoint and virtual-hosted for AWS. With a custom
    /// endpoint in virtual-hosted style, the endpoint must name the bucket.
    pub virtual_hosted: Option<bool>,
    /// Bytes of part buffers all uploads may hold at once (at least one part).
    pub buffer_budget: usize,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            bucket: String::new(),
            prefix: String::new(),
            endpoint: None,
            region: "us-east-1".into(),
            access_key_id: None,
            secret_access_key: None,
            virtual_hosted: None,
            buffer_budget: DEFAULT_BUFFER_BUDGET,
        }
    }
}

/// Blobs in an S3 bucket.
#[derive(Debug)]
pub struct S3BlobStore {
    s3: AmazonS3,
    /// Prefix segments, joined with `/`, without slashes at either end.
    prefix: String,
    budget: Arc<Semaphore>,
    budget_bytes: usize,
    peak: AtomicUsize,
}

/// The multipart state of an upload, serialised as its handle.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Handle {
    id: String,
    mpu: String,
    #[serde(default)]
    parts: Vec<String>,
    #[serde(default)]
    parted: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tail: Option<String>,
    #[serde(default)]
    tail_len: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prev: Option<String>,
    #[serde(default)]
    seq: u64,
}

impl Handle {
    fn parse(s: &str) -> Result<Handle> {
        let h: Handle = serde_json::from_str(s).map_err(|_| StoreError::Invalid(format!("bad upload handle {s:?}")))?;
        let names_ok = [&h.tail, &h.prev].into_iter().flatten().all(|n| valid_name(n));
        if !valid_name(&h.id)
            || !names_ok
            || h.mpu.is_empty()
            || h.parts.len() > MAX_PARTS
            || (h.tail.is_none() && h.tail_len > 0)
        {
            return Err(StoreError::Invalid(format!("bad upload handle {s:?}")));
        }
        Ok(h)
    }

    fn encode(&self) -> String {
        serde_json::to_string(self).expect("a handle serialises")
    }

    fn len(&self) -> u64 {
        self.parted + self.tail_len
    }
}

/// Ids and object names Kura made: nothing that could name another path.
fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Map an S3 failure: a missing object or upload is `NotFound` I/O (what
/// callers test for); anything else is a backend failure.
fn s3_error(e: object_store::Error) -> StoreError {
    match e {
        object_store::Error::NotFound { .. } => StoreError::Io(io::Error::new(io::ErrorKind::NotFound, e)),
        other => StoreError::Backend(other.to_string()),
    }
}

/// Map a failure of a call on an existing multipart upload. An unknown upload
/// id is `NotFound` (S3 answers 404; some compatible servers answer 403, and
/// IAM grants parts with the same `s3:PutObject` that created the upload).
fn mpu_error(e: object_store::Error) -> StoreError {
    match e {
        object_store::Error::PermissionDenied { .. } => StoreError::Io(io::Error::new(io::ErrorKind::NotFound, e)),
        other => s3_error(other),
    }
}

fn is_not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

impl S3BlobStore {
    /// Connect to a bucket (no request is made until first use).
    pub fn new(config: &S3Config) -> Result<Self> {
        if config.bucket.is_empty() {
            return Err(StoreError::Invalid("S3 bucket name is empty".into()));
        }
        let prefix = config.prefix.trim_matches('/').to_string();
        if !prefix.is_empty() {
            Path::parse(&prefix).map_err(|e| StoreError::Invalid(format!("bad S3 prefix {prefix:?}: {e}")))?;
        }
        // Streamed reads of large blobs outlive any fixed request timeout:
        // bound the silence between reads instead.
        let client = ClientOptions::new()
            .with_timeout_disabled()
            .with_read_timeout(Duration::from_secs(120))
            .with_connect_timeout(Duration::from_secs(10));
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_client_options(client);
        if let Some(ep) = &config.endpoint {
            b = b
                .with_endpoint(ep)
                .with_allow_http(ep.starts_with("http://"))
                .with_virtual_hosted_style_request(config.virtual_hosted.unwrap_or(false));
        } else {
            b = b.with_virtual_hosted_style_request(config.virtual_hosted.unwrap_or(true));
        }
        if let Some(k) = &config.access_key_id {
            b = b.with_access_key_id(k);
        }
        if let Some(s) = &config.secret_access_key {
            b = b.with_secret_access_key(s);
        }
        let s3 = b
            .build()
            .map_err(|e| StoreError::Invalid(format!("S3 configuration: {e}")))?;
        let budget_bytes = config
            .buffer_budget
            .clamp(PART_SIZE, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        Ok(S3BlobStore {
            s3,
            prefix,
            budget: Arc::new(Semaphore::new(budget_bytes)),
            budget_bytes,
            peak: AtomicUsize::new(0),
        })
    }

    /// The budget for buffered part bytes across all uploads.
    pub fn buffer_budget(&self) -> usize {
        self.budget_bytes
    }

    /// The most part-buffer bytes ever reserved at once (never above the budget).
    pub fn buffer_peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// The object name of a storage key or upload object.
    fn path(&self, rel: &str) -> Path {
        if self.prefix.is_empty() {
            Path::from(rel)
        } else {
            Path::from(format!("{}/{rel}", self.prefix))
        }
    }

    /// The storage key of an upload's blob: its object name without the prefix.
    fn key_of(id: &str) -> String {
        format!("blobs/{id}")
    }

    fn blob_path(&self, key: &str) -> Result<Path> {
        match key.strip_prefix("blobs/") {
            Some(id) if valid_name(id) => Ok(self.path(key)),
            _ => Err(StoreError::Invalid(format!("bad storage key {key:?}"))),
        }
    }

    fn upload_dir(&self, id: &str) -> Path {
        self.path(&format!("uploads/{id}"))
    }

    fn tail_path(&self, id: &str, name: &str) -> Path {
        self.path(&format!("uploads/{id}/{name}"))
    }

    /// Reserve `n` bytes of the buffer budget.
    async fn reserve(&self, n: usize) -> Result<OwnedSemaphorePermit> {
        let permit = self
            .budget
            .clone()
            .acquire_many_owned(n as u32)
            .await
            .map_err(|_| StoreError::Backend("the S3 buffer budget is closed".into()))?;
        let in_use = self.budget_bytes - self.budget.available_permits();
        self.peak.fetch_max(in_use, Ordering::Relaxed);
        Ok(permit)
    }

    /// The first `len` bytes of an upload's tail object.
    async fn read_tail(&self, h: &Handle, len: u64) -> Result<Bytes> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        let name = h
            .tail
            .as_deref()
            .ok_or_else(|| StoreError::Corrupt(format!("upload {} has no tail", h.id)))?;
        let bytes = self
            .s3
            .get_range(&self.tail_path(&h.id, name), 0..len)
            .await
            .map_err(s3_error)?;
        if bytes.len() as u64 != len {
            return Err(StoreError::Corrupt(format!(
                "tail of upload {} has {} bytes, expected {len}",
                h.id,
                bytes.len()
            )));
        }
        Ok(bytes)
    }

    async fn put_part(&self, h: &mut Handle, data: Bytes) -> Result<()> {
        if h.parts.len() >= MAX_PARTS {
            return Err(StoreError::Invalid(format!(
                "upload {} exceeds {MAX_PARTS} parts of {PART_SIZE} bytes",
                h.id
            )));
        }
        let len = data.len() as u64;
        let part = self
            .s3
            .put_part(
                &self.path(&Self::key_of(&h.id)),
                &h.mpu,
                h.parts.len(),
                PutPayload::from(data),
            )
            .await
            .map_err(mpu_error)?;
        h.parts.push(part.content_id);
        h.parted += len;
        Ok(())
    }
}

/// A part being filled, holding its share of the budget while non-empty.
struct PartBuf {
    buf: BytesMut,
    _permit: Option<OwnedSemaphorePermit>,
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn begin(&self, upload_id: &str) -> Result<String> {
        if !valid_name(upload_id) {
            return Err(StoreError::Invalid(format!("bad upload id {upload_id:?}")));
        }
        let mpu = self
            .s3
            .create_multipart(&self.path(&Self::key_of(upload_id)))
            .await
            .map_err(s3_error)?;
        let h = Handle {
            id: upload_id.to_string(),
            mpu,
            parts: Vec::new(),
            parted: 0,
            tail: None,
            tail_len: 0,
            prev: None,
            seq: 0,
        };
        Ok(h.encode())
    }

    async fn append(&self, handle: &str, offset: u64, mut data: BodyStream<'_>) -> Result<(String, u64)> {
        let mut h = Handle::parse(handle)?;
        if offset > h.len() {
            return Err(StoreError::Invalid(format!(
                "upload {} has {} bytes; cannot write at {offset}",
                h.id,
                h.len()
            )));
        }
        if offset < h.parted {
            return Err(StoreError::Invalid(format!(
                "upload {} cannot rewind to {offset} into its uploaded parts ({} bytes)",
                h.id, h.parted
            )));
        }
        // The caller recorded this handle, so the tail it replaced is garbage.
        if let Some(prev) = h.prev.take() {
            if let Err(e) = self.s3.delete(&self.tail_path(&h.id, &prev)).await {
                tracing::debug!(upload = %h.id, error = %e, "could not delete an old tail; abort will");
            }
        }
        // Bytes past `offset` (from a failed write) are dropped with the old tail.
        let keep = offset - h.parted;
        let mut part = PartBuf {
            buf: BytesMut::new(),
            _permit: None,
        };
        if keep > 0 {
            part._permit = Some(self.reserve(PART_SIZE).await?);
            part.buf.reserve(PART_SIZE);
            part.buf.extend_from_slice(&self.read_tail(&h, keep).await?);
        }
        let mut received = 0u64;
        while let Some(chunk) = data.next().await {
            let mut chunk = chunk?;
            received += chunk.len() as u64;
            while !chunk.is_empty() {
                if part._permit.is_none() {
                    part._permit = Some(self.reserve(PART_SIZE).await?);
                    part.buf.reserve(PART_SIZE);
                }
                let take = chunk.len().min(PART_SIZE - part.buf.len());
                part.buf.extend_from_slice(&chunk.split_to(take));
                if part.buf.len() == PART_SIZE {
                    let full = std::mem::take(&mut part.buf).freeze();
                    self.put_part(&mut h, full).await?;
                    // Let other uploads use the budget while this body trickles.
                    part._permit = None;
                }
            }
        }
        if received == 0 && keep == h.tail_len {
            return Ok((h.encode(), offset));
        }
        h.seq += 1;
        h.prev = h.tail.take();
        h.tail_len = part.buf.len() as u64;
        if !part.buf.is_empty() {
            let nonce = uuid::Uuid::new_v4().simple().to_string();
            let name = format!("tail-{}-{}", h.seq, &nonce[..8]);
            let tail = std::mem::take(&mut part.buf).freeze();
            self.s3
                .put(&self.tail_path(&h.id, &name), PutPayload::from(tail))
                .await
                .map_err(s3_error)?;
            h.tail = Some(name);
        }
        let len = h.len();
        Ok((h.encode(), len))
    }

    async fn read_upload(&self, handle: &str, len: u64) -> Result<ByteStream> {
        let h = Handle::parse(handle)?;
        if len > h.len() {
            return Err(StoreError::Invalid(format!(
                "upload {} has {} bytes, not {len}",
                h.id,
                h.len()
            )));
        }
        if len == 0 {
            return Ok(futures::stream::empty().boxed());
        }
        if h.parted > 0 {
            return Err(StoreError::Unsupported(format!(
                "the S3 blob store cannot read back an unfinished upload of more than {PART_SIZE} bytes"
            )));
        }
        let name = h.tail.as_deref().unwrap_or_default();
        let got = self
            .s3
            .get_opts(
                &self.tail_path(&h.id, name),
                GetOptions {
                    range: Some(GetRange::Bounded(0..len)),
                    ..Default::default()
                },
            )
            .await
            .map_err(s3_error)?;
        Ok(got.into_stream().map_err(io::Error::from).boxed())
    }

    async fn commit(&self, handle: &str, size: u64, _digest: &Digest) -> Result<String> {
        let h = Handle::parse(handle)?;
        if size > h.len() || size < h.parted {
            return Err(StoreError::Corrupt(format!(
                "upload {} has {} bytes ({} in parts), cannot commit {size}",
                h.id,
                h.len(),
                h.parted
            )));
        }
        let key = Self::key_of(&h.id);
        let path = self.path(&key);
        let rest = size - h.parted;
        let done = async {
            let _permit = if rest > 0 {
                Some(self.reserve(rest as usize).await?)
            } else {
                None
            };
            let last = self.read_tail(&h, rest).await?;
            if h.parts.is_empty() {
                // Shorter than a part: one plain PUT, and the multipart upload
                // is not needed (a retry re-PUTs from the tail).
                self.s3.put(&path, PutPayload::from(last)).await.map_err(s3_error)?;
                if let Err(e) = self.s3.abort_multipart(&path, &h.mpu).await {
                    tracing::debug!(upload = %h.id, error = %e, "could not abort an unused multipart upload");
                }
                return Ok(());
            }
            let mut parts: Vec<PartId> = h.parts.iter().map(|e| PartId { content_id: e.clone() }).collect();
            if !last.is_empty() {
                let p = self
                    .s3
                    .put_part(&path, &h.mpu, parts.len(), PutPayload::from(last))
                    .await
                    .map_err(mpu_error)?;
                parts.push(p);
            }
            self.s3
                .complete_multipart(&path, &h.mpu, parts)
                .await
                .map_err(mpu_error)?;
            Ok::<(), StoreError>(())
        }
        .await;
        if let Err(e) = done {
            // A retried commit finds the multipart upload already completed.
            // Otherwise a `NotFound` means the upload is lost for good (a
            // server that dropped it when a completion was cut off).
            match self.s3.head(&path).await {
                Ok(meta) if meta.size == size => return Ok(key),
                _ => return Err(e),
            }
        }
        Ok(key)
    }

    async fn abort(&self, handle: &str) -> Result<()> {
        let h = Handle::parse(handle)?;
        let path = self.path(&Self::key_of(&h.id));
        // After a commit the multipart upload is completed (or, for a plain
        // PUT, was aborted then): only an uncommitted one needs aborting.
        let committed = self.s3.head(&path).await.is_ok();
        if !committed {
            match self.s3.abort_multipart(&path, &h.mpu).await {
                Ok(()) => {}
                Err(e) if is_not_found(&e) => {}
                // S3 answers 404 for an unknown upload id; some compatible
                // servers answer 403 (e.g. for one already aborted).
                Err(e @ object_store::Error::PermissionDenied { .. }) => {
                    tracing::warn!(upload = %h.id, error = %e, "multipart upload not aborted (already gone?)");
                }
                Err(e) => return Err(s3_error(e)),
            }
        }
        let dir = self.upload_dir(&h.id);
        let names: Vec<Path> = self
            .s3
            .list(Some(&dir))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .map_err(s3_error)?;
        for p in names {
            match self.s3.delete(&p).await {
                Ok(()) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(s3_error(e)),
            }
        }
        Ok(())
    }

    async fn read(&self, key: &str, range: Option<(u64, u64)>) -> Result<ByteStream> {
        let path = self.blob_path(key)?;
        let opts = GetOptions {
            range: range.map(|(start, end)| GetRange::Bounded(start..end.saturating_add(1))),
            ..Default::default()
        };
        let got = self.s3.get_opts(&path, opts).await.map_err(s3_error)?;
        Ok(got.into_stream().map_err(io::Error::from).boxed())
    }

    async fn stat(&self, key: &str) -> Result<Option<u64>> {
        match self.s3.head(&self.blob_path(key)?).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(s3_error(e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<()> {
        match self.s3.delete(&self.blob_path(key)?).await {
            Err(e) if !is_not_found(&e) => Err(s3_error(e)),
            _ => Ok(()),
        }
    }

    fn list_stored(&self, kind: StoredKind) -> StoredStream<'_> {
        let (dir, base) = match kind {
            StoredKind::Blob => ("blobs", self.path("blobs")),
            StoredKind::Upload => ("uploads", self.path("uploads")),
        };
        let strip = format!("{base}/");
        self.s3
            .list(Some(&base))
            .map_err(s3_error)
            .try_filter_map(move |m| {
                // `blobs/<upload id>` or `uploads/<upload id>/<tail name>`.
                let name = m.location.to_string();
                let rest = name.strip_prefix(&strip).unwrap_or_default().to_string();
                let upload_id = rest.split('/').next().unwrap_or_default().to_string();
                let ok = valid_name(&upload_id) && (kind == StoredKind::Upload || rest == upload_id);
                let object = ok.then(|| StoredObject {
                    kind,
                    key: match kind {
                        StoredKind::Blob => format!("{dir}/{upload_id}"),
                        StoredKind::Upload => name,
                    },
                    upload_id,
                    modified_ms: m.last_modified.timestamp_millis(),
                    size: m.size,
                });
                futures::future::ready(Ok(object))
            })
            .boxed()
    }

    async fn delete_stored(&self, object: &StoredObject) -> Result<()> {
        let path = match object.kind {
            StoredKind::Blob => self.blob_path(&object.key)?,
            StoredKind::Upload => {
                // Only objects under this store's upload prefix.
                let dir = format!("{}/", self.upload_dir(&object.upload_id));
                if !valid_name(&object.upload_id) || !object.key.starts_with(&dir) {
                    return Err(StoreError::Invalid(format!("bad upload object {:?}", object.key)));
                }
                Path::parse(&object.key).map_err(|e| StoreError::Invalid(e.to_string()))?
            }
        };
        match self.s3.delete(&path).await {
            Err(e) if !is_not_found(&e) => Err(s3_error(e)),
            _ => Ok(()),
        }
    }

    async fn presign_get(&self, key: &str, expires: Duration) -> Result<Option<String>> {
        let url = self
            .s3
            .signed_url(http::Method::GET, &self.blob_path(key)?, expires)
            .await
            .map_err(s3_error)?;
        Ok(Some(url.to_string()))
    }
}
