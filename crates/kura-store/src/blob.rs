//! The blob store interface: bytes only, addressed by a storage key that the
//! metadata store records. Implementations: [`crate::fs::FsBlobStore`] and
//! [`crate::s3::S3BlobStore`]. Every implementation runs the shared
//! conformance suite in `tests/blobstore.rs`.
//!
//! An upload is an opaque, serialisable *handle* string that lives in the
//! metadata store's upload row, so any node can continue the upload. Hashing is
//! the caller's job (it wraps the byte stream), which keeps backends simple.

use std::io;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use kura_oci::Digest;

use crate::error::Result;

/// A stream of bytes read from or written to a blob store.
pub type ByteStream = BoxStream<'static, io::Result<Bytes>>;

/// A borrowed stream of request body bytes.
pub type BodyStream<'a> = BoxStream<'a, io::Result<Bytes>>;

/// What a [`BlobStore::list_stored`] lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoredKind {
    /// Finished blobs (each named by its storage key).
    Blob,
    /// The data of unfinished uploads.
    Upload,
}

/// An object found in a blob store, for GC's sweep of files no row names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredObject {
    /// Which listing it came from.
    pub kind: StoredKind,
    /// The upload that wrote it (every key carries its upload id).
    pub upload_id: String,
    /// A blob's storage key; for upload data, the backend's object name.
    pub key: String,
    /// Last modification, ms since the epoch.
    pub modified_ms: i64,
    /// Bytes.
    pub size: u64,
}

/// A stream of listed objects.
pub type StoredStream<'a> = BoxStream<'a, Result<StoredObject>>;

/// Where a blob store can be asked for content.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Start an upload. Returns its handle.
    async fn begin(&self, upload_id: &str) -> Result<String>;

    /// Write `data` at `offset`, which is the number of bytes already
    /// accepted (anything past it from an earlier failed write is discarded).
    /// On success the bytes are durable; returns the new handle and offset.
    async fn append(&self, handle: &str, offset: u64, data: BodyStream<'_>) -> Result<(String, u64)>;

    /// Read back the first `len` bytes of an unfinished upload (used only to
    /// re-hash with another algorithm than the one streamed).
    async fn read_upload(&self, handle: &str, len: u64) -> Result<ByteStream>;

    /// Turn a finished upload of `size` bytes into the blob `digest`, durably.
    /// Returns the storage key. The caller has verified digest and size. The
    /// upload remains until [`BlobStore::abort`], which the caller calls after
    /// recording the blob, so a crash in between loses nothing.
    async fn commit(&self, handle: &str, size: u64, digest: &Digest) -> Result<String>;

    /// Drop an unfinished upload and its bytes. Missing uploads are not an error.
    async fn abort(&self, handle: &str) -> Result<()>;

    /// Read a blob, or the inclusive byte range `(start, end)` of it.
    async fn read(&self, key: &str, range: Option<(u64, u64)>) -> Result<ByteStream>;

    /// The size of a stored blob, or `None` if it is absent.
    async fn stat(&self, key: &str) -> Result<Option<u64>>;

    /// Delete a blob. Missing blobs are not an error.
    async fn delete(&self, key: &str) -> Result<()>;

    /// Every stored object of `kind`, in no particular order (GC's orphan
    /// sweep: objects no `blobs` or `uploads` row names). The listing may
    /// miss objects written while it runs.
    fn list_stored(&self, kind: StoredKind) -> StoredStream<'_>;

    /// Delete one listed object. Missing objects are not an error.
    async fn delete_stored(&self, object: &StoredObject) -> Result<()>;

    /// A URL anyone may GET the blob from for `expires`, served by the backend
    /// itself (an S3 presigned URL), or `None` if the backend cannot hand out
    /// such URLs (then Kura serves the bytes, with its own signed URLs).
    async fn presign_get(&self, _key: &str, _expires: Duration) -> Result<Option<String>> {
        Ok(None)
    }
}
