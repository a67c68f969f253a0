//! Single flights of the pull-through cache: one upstream fetch per blob or
//! manifest at a time, on this node (a [`Flight`] that every request for the
//! same content joins) and across the cluster (a fetch lease in the metadata
//! store, see [`kura_store::meta::LeaseTake`]).
//!
//! A blob flight is a tee: the bytes from the upstream are written to the
//! blob store and, as they arrive, appended to a spool file (an unlinked
//! temporary file in `$TMPDIR`, gone when the flight and its last reader
//! are) that every joined client streams from at its own offset, so memory
//! stays constant whatever the blob's size. A client is always one chunk
//! behind the download until the digest is verified: a corrupt blob never
//! reaches a client whole (its stream ends with an error instead of the last
//! chunk), and nothing is stored. The last chunk is released as soon as the
//! upstream's stream ends with the right digest and size, before the blob
//! store's flush and the metadata commit: those make the blob cached for the
//! next pull, but the bytes the client has are already proven right, so they
//! are off the client's critical path (a commit that fails afterwards leaves
//! the blob uncached, to be fetched again; it never takes back what was sent).

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::StreamExt;
use kura_oci::{Digest, Hasher};
use kura_store::blob::ByteStream;
use kura_store::meta::{BlobRow, LeaseTake, PendingDelete, RepoId};
use kura_store::{BlobStore, MetaStore};
use tokio::sync::watch;

use super::ptc_stats::PullThroughStats;
use crate::upstream::{UpstreamError, UpstreamRepo};

/// How long a fetch lease lasts unless its holder renews it (every third of it).
pub(crate) const FETCH_LEASE_MS: i64 = 30_000;
/// How often a node waiting for another node's fetch looks at the store.
const POLL: Duration = Duration::from_millis(100);

/// Why a flight failed, as every request that joined it sees it.
#[derive(Clone, Debug)]
pub(crate) enum Failure {
    /// The upstream has no such content (404): the message says where.
    NotFound(String),
    /// The upstream failed (`upstream` names it).
    Upstream { upstream: String, error: UpstreamError },
    /// Kura itself failed (the detail is logged, not sent).
    Internal(String),
    /// The request leading the flight went away before it finished: a
    /// joiner tries again.
    Abandoned,
    /// The registry's storage is full (503 with Retry-After, as for uploads).
    StorageFull,
}

impl Failure {
    fn message(&self) -> String {
        self.to_string()
    }
}

/// How much a reader takes from the spool at a time.
const READ_CHUNK: u64 = 1 << 20;

#[derive(Default)]
struct State {
    /// The spool the bytes so far are appended to (blob flights that tee).
    spool: Option<Arc<File>>,
    /// Bytes appended so far, and the length of the last append (a reader
    /// stays that far behind until the digest is verified).
    len: u64,
    last: u64,
    /// Appending to the spool failed: readers fail (the download goes on
    /// into the store).
    spool_error: Option<String>,
    /// The upstream answered; `size` is its Content-Length.
    started: bool,
    size: Option<u64>,
    /// The bytes come through this flight (false: another node fetches, or
    /// it is a manifest flight; read the store when done).
    teed: bool,
    /// The download ended with the right digest and size: every byte in the
    /// spool may be read, whatever the store does next.
    verified: bool,
    done: Option<Result<(), Failure>>,
}

enum Step {
    /// Bytes `[from, to)` of the spool may be read.
    Read(Arc<File>, u64, u64),
    End,
    Fail(String),
    Wait,
}

/// One fetch that any number of requests wait on or stream from.
pub(crate) struct Flight {
    state: Mutex<State>,
    changed: watch::Sender<u64>,
}

impl Flight {
    fn new() -> Arc<Flight> {
        Arc::new(Flight {
            state: Mutex::new(State::default()),
            changed: watch::channel(0).0,
        })
    }

    fn update(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()));
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub(crate) fn start(&self, size: Option<u64>, teed: bool) {
        // A tee needs its spool; without one, clients wait for the end and read the store.
        let spool = match teed.then(tempfile::tempfile) {
            Some(Ok(f)) => Some(Arc::new(f)),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "pull-through cache: no spool file for a download; its clients wait for the end");
                None
            }
            None => None,
        };
        self.update(|s| {
            s.started = true;
            s.size = size;
            s.teed = spool.is_some();
            s.spool = spool;
        });
    }

    /// Append a chunk to the spool. A plain positional write: it lands in the
    /// page cache, and only the download's own task waits for it.
    fn push(&self, b: &Bytes) {
        let Some((spool, at)) = self.read(|s| {
            if s.spool_error.is_some() {
                return None;
            }
            s.spool.clone().map(|f| (f, s.len))
        }) else {
            return;
        };
        let written = spool.write_all_at(b, at);
        self.update(|s| match written {
            Ok(()) => {
                s.len += b.len() as u64;
                s.last = b.len() as u64;
            }
            Err(e) => s.spool_error = Some(format!("the download's spool file failed: {e}")),
        });
    }

    /// The bytes are all here and proven right (see the module's note).
    fn verified(&self) {
        self.update(|s| s.verified = true);
    }

    pub(crate) fn finish(&self, result: Result<(), Failure>) {
        self.update(|s| {
            if s.done.is_none() {
                s.done = Some(result);
            }
        });
    }

    /// Wait for the outcome.
    pub(crate) async fn done(&self) -> Result<(), Failure> {
        let mut rx = self.changed.subscribe();
        loop {
            if let Some(d) = self.read(|s| s.done.clone()) {
                return d;
            }
            if rx.changed().await.is_err() {
                return Err(Failure::Abandoned);
            }
        }
    }

    /// Wait until the upstream answered: the blob's size when a client can
    /// stream it from this flight, `None` when it must wait for the end and
    /// read the store (or get the failure).
    pub(crate) async fn stream_size(&self) -> Option<u64> {
        let mut rx = self.changed.subscribe();
        loop {
            let (started, teed, size, done) = self.read(|s| (s.started, s.teed, s.size, s.done.is_some()));
            if done || (started && (!teed || size.is_none())) {
                return None;
            }
            if started {
                return size;
            }
            if rx.changed().await.is_err() {
                return None;
            }
        }
    }

    /// What a reader at byte `at` may do now.
    fn step(&self, at: u64) -> Step {
        self.read(|s| {
            if let Some(e) = &s.spool_error {
                return Step::Fail(e.clone());
            }
            // One chunk behind until verified; once verified, a later
            // failure to store the blob does not concern its readers.
            let readable = match &s.done {
                _ if s.verified => s.len,
                Some(Err(f)) => return Step::Fail(f.message()),
                Some(Ok(())) => s.len,
                None => s.len - s.last,
            };
            match &s.spool {
                Some(f) if at < readable => Step::Read(f.clone(), at, readable),
                _ if s.done.is_some() || s.verified => Step::End,
                _ => Step::Wait,
            }
        })
    }

    /// The blob's bytes from the start, as they arrive.
    pub(crate) fn reader(self: Arc<Self>) -> ByteStream {
        let rx = self.changed.subscribe();
        futures::stream::unfold((self, 0u64, rx, false), |(f, at, mut rx, ended)| async move {
            if ended {
                return None;
            }
            loop {
                match f.step(at) {
                    Step::Read(spool, from, to) => {
                        let n = (to - from).min(READ_CHUNK) as usize;
                        let read = tokio::task::spawn_blocking(move || {
                            let mut buf = vec![0u8; n];
                            spool.read_exact_at(&mut buf, from).map(|()| Bytes::from(buf))
                        })
                        .await
                        .unwrap_or_else(|e| Err(io::Error::other(e)));
                        return match read {
                            Ok(b) => {
                                let next = at + b.len() as u64;
                                Some((Ok(b), (f, next, rx, false)))
                            }
                            Err(e) => Some((Err(e), (f, at, rx, true))),
                        };
                    }
                    Step::End => return None,
                    Step::Fail(m) => return Some((Err(io::Error::other(m)), (f, at, rx, true))),
                    Step::Wait => {
                        if rx.changed().await.is_err() {
                            let e = io::Error::other("the fetch from the upstream was abandoned");
                            return Some((Err(e), (f, at, rx, true)));
                        }
                    }
                }
            }
        })
        .boxed()
    }
}

/// The flights in progress on this node, by key.
#[derive(Default, Clone)]
pub(crate) struct Flights(Arc<Mutex<HashMap<String, Arc<Flight>>>>);

impl Flights {
    /// The flight for `key`, and whether the caller leads it (started it).
    pub(crate) fn join_or_lead(&self, key: &str) -> (Arc<Flight>, bool) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = map.get(key) {
            return (f.clone(), false);
        }
        let f = Flight::new();
        map.insert(key.to_string(), f.clone());
        (f, true)
    }

    /// End the flight `key`: new requests read the store from now on.
    pub(crate) fn land(&self, key: &str, flight: &Flight, result: Result<(), Failure>) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
        flight.finish(result);
    }
}

/// Lands a flight as abandoned if its leader is dropped before it finished.
pub(crate) struct LeadGuard {
    pub(crate) flights: Flights,
    pub(crate) key: String,
    pub(crate) flight: Arc<Flight>,
    pub(crate) landed: bool,
}

impl LeadGuard {
    pub(crate) fn land(mut self, result: Result<(), Failure>) {
        self.landed = true;
        self.flights.land(&self.key, &self.flight, result);
    }
}

impl Drop for LeadGuard {
    fn drop(&mut self) {
        if !self.landed {
            self.flights.land(&self.key, &self.flight, Err(Failure::Abandoned));
        }
    }
}

/// A fresh lease holder id (one per fetch, so a lease is never "ours" by accident).
pub(crate) fn holder_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Run `work` while renewing the fetch lease `key` every third of its length.
pub(crate) async fn renewing<T>(
    meta: &dyn MetaStore,
    key: &str,
    holder: &str,
    work: impl std::future::Future<Output = T>,
) -> T {
    let every = Duration::from_millis((FETCH_LEASE_MS / 3) as u64);
    tokio::pin!(work);
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = tokio::time::sleep(every) => {
                match meta.fetch_lease_renew(key, holder, FETCH_LEASE_MS).await {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!(lease = key, "fetch lease lost while fetching"),
                    Err(e) => tracing::warn!(lease = key, error = %e, "renewing a fetch lease failed"),
                }
            }
        }
    }
}

/// The cluster-wide part of a flight: take the lease `key` and run `fetch`,
/// or, while another node holds it, wait until `present` says the content is
/// stored (or the lease lapses, then take it over). `on_wait` runs once when
/// this node starts waiting. Waits at most `max_wait` in all.
pub(crate) async fn under_lease<F, P>(
    meta: &Arc<dyn MetaStore>,
    key: &str,
    max_wait: Duration,
    mut on_wait: impl FnMut(),
    mut present: impl FnMut() -> P,
    fetch: impl FnOnce(String) -> F,
) -> Result<(), Failure>
where
    F: std::future::Future<Output = Result<(), Failure>>,
    P: std::future::Future<Output = Result<bool, Failure>>,
{
    let holder = holder_id();
    let deadline = tokio::time::Instant::now() + max_wait;
    let mut waited = false;
    loop {
        let taken = meta
            .fetch_lease_take(key, &holder, FETCH_LEASE_MS)
            .await
            .map_err(|e| Failure::Internal(format!("taking a fetch lease: {e}")))?;
        match taken {
            LeaseTake::Taken => {
                // Released however this ends (also when the request leading
                // the fetch goes away), so other nodes need not wait for it
                // to lapse.
                let mut release = Release {
                    meta: meta.clone(),
                    key: key.to_string(),
                    holder: holder.clone(),
                    armed: true,
                };
                // Another node may have finished just before.
                let r = match present().await {
                    Ok(true) => Ok(()),
                    Ok(false) => renewing(&**meta, key, &holder, fetch(holder.clone())).await,
                    Err(e) => Err(e),
                };
                release.armed = false;
                if let Err(e) = meta.fetch_lease_release(key, &holder).await {
                    tracing::warn!(lease = key, error = %e, "could not release a fetch lease; it lapses");
                }
                return r;
            }
            LeaseTake::Held { .. } => {
                if !waited {
                    waited = true;
                    on_wait();
                }
                loop {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(Failure::Upstream {
                            upstream: "another Kura node".into(),
                            error: UpstreamError::Unavailable {
                                message: format!("its fetch did not finish within {}s", max_wait.as_secs()),
                            },
                        });
                    }
                    tokio::time::sleep(POLL).await;
                    if present().await? {
                        return Ok(());
                    }
                    let held = meta
                        .fetch_lease_get(key)
                        .await
                        .map_err(|e| Failure::Internal(format!("reading a fetch lease: {e}")))?;
                    if held.is_none() {
                        break; // released (failed) or lapsed: try to take it
                    }
                }
            }
        }
    }
}

/// Releases a fetch lease when dropped while armed (in a task of its own):
/// the request leading the fetch went away.
struct Release {
    meta: Arc<dyn MetaStore>,
    key: String,
    holder: String,
    armed: bool,
}

impl Drop for Release {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (meta, key, holder) = (
            self.meta.clone(),
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.holder),
        );
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return; // no runtime: the lease lapses
        };
        rt.spawn(async move {
            if let Err(e) = meta.fetch_lease_release(&key, &holder).await {
                tracing::warn!(lease = key, error = %e, "could not release a fetch lease; it lapses");
            }
        });
    }
}

/// Fetch one blob from the upstream into the store of repository `repo`,
/// teeing its bytes through `flight`.
pub(crate) struct BlobFetch {
    pub(crate) meta: Arc<dyn MetaStore>,
    pub(crate) blobs: Arc<dyn BlobStore>,
    pub(crate) stats: Arc<PullThroughStats>,
    pub(crate) upstream: Arc<dyn UpstreamRepo>,
    pub(crate) repo: RepoId,
    pub(crate) digest: Digest,
}

impl BlobFetch {
    fn upstream_failure(&self, error: UpstreamError) -> Failure {
        Failure::Upstream {
            upstream: self.upstream.describe(),
            error,
        }
    }

    /// Download, verify and store; the bytes go through `flight` as they come.
    pub(crate) async fn run(&self, flight: &Arc<Flight>) -> Result<(), Failure> {
        self.stats.upstream_fetches.fetch_add(1, Ordering::Relaxed);
        let blob = match self.upstream.get_blob(self.digest.as_str()).await {
            Ok(Some(b)) => b,
            Ok(None) => {
                return Err(Failure::NotFound(format!(
                    "blob {} is not in the upstream {}",
                    self.digest,
                    self.upstream.describe()
                )))
            }
            Err(e) => return Err(self.upstream_failure(e)),
        };
        flight.start(blob.size, true);
        let id = uuid::Uuid::new_v4().hyphenated().to_string();
        let handle = self
            .blobs
            .begin(&id)
            .await
            .map_err(|e| Failure::Internal(format!("starting a blob write: {e}")))?;
        let hasher = Arc::new(Mutex::new(Hasher::new(self.digest.algorithm())));
        let received = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (h, f, stats, n) = (hasher.clone(), flight.clone(), self.stats.clone(), received.clone());
        // When the upstream's stream ends: check the digest and size at once
        // and release the readers' last chunk if they are right (the store's
        // flush and commit follow; `run` checks the same again for itself).
        let (h2, f2, n2, want, declared) = (
            hasher.clone(),
            flight.clone(),
            received.clone(),
            self.digest.clone(),
            blob.size,
        );
        let at_end = futures::stream::once(async move {
            let actual = h2.lock().unwrap_or_else(|e| e.into_inner()).finish();
            let size = n2.load(Ordering::Relaxed);
            if actual == want && declared.is_none_or(|d| d == size) {
                f2.verified();
            }
            None::<io::Result<Bytes>>
        })
        .filter_map(futures::future::ready);
        let body = blob
            .body
            .map(move |chunk| {
                if let Ok(b) = &chunk {
                    h.lock().unwrap_or_else(|e| e.into_inner()).update(b);
                    n.fetch_add(b.len() as u64, Ordering::Relaxed);
                    stats.upstream_bytes.fetch_add(b.len() as u64, Ordering::Relaxed);
                    f.push(b);
                }
                chunk
            })
            .chain(at_end)
            .boxed();
        let (handle, size) = match self.blobs.append(&handle, 0, body).await {
            Ok(v) => v,
            Err(e) if e.is_disk_full() => {
                kura_store::space::note_disk_full("a pull-through fetch", &e);
                self.abort(&handle).await;
                return Err(Failure::StorageFull);
            }
            Err(e) => {
                self.abort(&handle).await;
                return Err(self.upstream_failure(UpstreamError::Unavailable {
                    message: format!("reading blob {} failed: {e}", self.digest),
                }));
            }
        };
        let actual = hasher.lock().unwrap_or_else(|e| e.into_inner()).finish();
        let wrong_size = blob.size.is_some_and(|s| s != size);
        if actual != self.digest || wrong_size {
            self.abort(&handle).await;
            let declared = blob.size.map(|s| format!(" (declared {s})")).unwrap_or_default();
            return Err(self.upstream_failure(UpstreamError::Invalid {
                message: format!(
                    "it sent {size} bytes{declared} with digest {actual} for blob {}; nothing was stored",
                    self.digest
                ),
            }));
        }
        let key = match self.blobs.commit(&handle, size, &self.digest).await {
            Ok(k) => k,
            Err(e) => {
                self.abort(&handle).await;
                return Err(Failure::Internal(format!("storing a fetched blob: {e}")));
            }
        };
        let row = BlobRow {
            digest: self.digest.to_string(),
            size: size as i64,
            storage_key: key,
        };
        let committed = self.meta.blob_commit(self.repo, &row, None).await;
        self.abort(&handle).await;
        let committed = committed.map_err(|e| Failure::Internal(format!("recording a fetched blob: {e}")))?;
        cleanup(&*self.meta, &*self.blobs, &committed.cleanup).await;
        // The cached manifests that name it reference it now (GC keeps it).
        self.meta
            .manifest_settle_cached(self.repo, self.digest.as_str())
            .await
            .map_err(|e| Failure::Internal(format!("recording a fetched blob's references: {e}")))?;
        Ok(())
    }

    async fn abort(&self, handle: &str) {
        if let Err(e) = self.blobs.abort(handle).await {
            tracing::warn!(error = %e, "could not drop a fetched blob's upload data; GC will");
        }
    }
}

/// Perform queued blob-store deletes (as [`crate::Registry::run_cleanup`]).
pub(crate) async fn cleanup(meta: &dyn MetaStore, blobs: &dyn BlobStore, pending: &[PendingDelete]) {
    for p in pending {
        let res = match p.kind.as_str() {
            "upload" => blobs.abort(&p.key).await,
            _ => blobs.delete(&p.key).await,
        };
        match res {
            Ok(()) => {
                if let Err(e) = meta.pending_done(p.id).await {
                    tracing::warn!(error = %e, "could not mark a blob-store delete done");
                }
            }
            Err(e) => tracing::warn!(key = %p.key, error = %e, "blob-store delete failed; GC will retry"),
        }
    }
}
