//! Blob store latency: a [`BlobStore`] that times every call of the store it
//! wraps (`kura_blob_store_operation_duration_seconds{operation}`) and counts
//! the failed ones. A read is timed until its stream is open (the time to
//! first byte, as far as the store is concerned), an append over the whole
//! streamed body.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use kura_oci::Digest;
use kura_store::blob::{BodyStream, ByteStream, StoredKind, StoredObject, StoredStream};
use kura_store::BlobStore;

use crate::names;

/// The operations timed (the `operation` label's values).
pub const OPERATIONS: &[&str] = &[
    "begin",
    "append",
    "read_upload",
    "commit",
    "abort",
    "read",
    "stat",
    "delete",
    "presign",
];

/// `inner`, timed.
pub fn timed(inner: Arc<dyn BlobStore>) -> Arc<dyn BlobStore> {
    // Error counters exist from the start (at 0), so a rate over them is defined.
    for op in OPERATIONS {
        metrics::counter!(names::BLOB_ERRORS, "operation" => *op).absolute(0);
    }
    Arc::new(Timed { inner })
}

struct Timed {
    inner: Arc<dyn BlobStore>,
}

fn observe<T, E>(operation: &'static str, start: Instant, r: &Result<T, E>) {
    metrics::histogram!(names::BLOB_DURATION, "operation" => operation).record(start.elapsed().as_secs_f64());
    if r.is_err() {
        metrics::counter!(names::BLOB_ERRORS, "operation" => operation).increment(1);
    }
}

macro_rules! timed_call {
    ($op:literal, $call:expr) => {{
        let start = Instant::now();
        let r = $call.await;
        observe($op, start, &r);
        r
    }};
}

#[async_trait]
impl BlobStore for Timed {
    async fn begin(&self, upload_id: &str) -> kura_store::error::Result<String> {
        timed_call!("begin", self.inner.begin(upload_id))
    }

    async fn append(
        &self,
        handle: &str,
        offset: u64,
        data: BodyStream<'_>,
    ) -> kura_store::error::Result<(String, u64)> {
        timed_call!("append", self.inner.append(handle, offset, data))
    }

    async fn read_upload(&self, handle: &str, len: u64) -> kura_store::error::Result<ByteStream> {
        timed_call!("read_upload", self.inner.read_upload(handle, len))
    }

    async fn commit(&self, handle: &str, size: u64, digest: &Digest) -> kura_store::error::Result<String> {
        timed_call!("commit", self.inner.commit(handle, size, digest))
    }

    async fn abort(&self, handle: &str) -> kura_store::error::Result<()> {
        timed_call!("abort", self.inner.abort(handle))
    }

    async fn read(&self, key: &str, range: Option<(u64, u64)>) -> kura_store::error::Result<ByteStream> {
        timed_call!("read", self.inner.read(key, range))
    }

    async fn stat(&self, key: &str) -> kura_store::error::Result<Option<u64>> {
        timed_call!("stat", self.inner.stat(key))
    }

    async fn delete(&self, key: &str) -> kura_store::error::Result<()> {
        timed_call!("delete", self.inner.delete(key))
    }

    fn list_stored(&self, kind: StoredKind) -> StoredStream<'_> {
        self.inner.list_stored(kind)
    }

    async fn delete_stored(&self, object: &StoredObject) -> kura_store::error::Result<()> {
        timed_call!("delete", self.inner.delete_stored(object))
    }

    async fn presign_get(&self, key: &str, expires: Duration) -> kura_store::error::Result<Option<String>> {
        timed_call!("presign", self.inner.presign_get(key, expires))
    }
}
