//! The in-test upstream and registry nodes of the pull-through cache tests.
#![allow(dead_code)]

pub use std::collections::HashMap;
pub use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
pub use std::sync::{Arc, Mutex};
pub use std::time::Duration;

pub use axum::body::Body;
pub use axum::http::{Method, Request, StatusCode};
pub use bytes::Bytes;
pub use futures::stream::StreamExt;
pub use http_body_util::BodyExt;
pub use kura_oci::{Digest, RepoName};
pub use kura_registry::upstream::{
    PullThroughSource, UpstreamBlob, UpstreamError, UpstreamManifest, UpstreamManifestHead, UpstreamRepo,
};
pub use kura_registry::{app, Actor, EventKind, EventListener, EventType, ImageEvent, Registry, RegistryConfig};
pub use kura_store::blob::{BodyStream, StoredStream};
pub use kura_store::{BlobStore, ByteStream, FsBlobStore, MetaStore, StoredKind, StoredObject};
pub use serde_json::json;
pub use tokio::sync::Semaphore;
pub use tower::ServiceExt;

pub const ACCOUNT: &str = "000000000000";
pub const OCI: &str = "application/vnd.oci.image.manifest.v1+json";
pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const REPO: &str = "hub/library/app";
/// Bound on every wait, so a broken single flight fails instead of hanging.
pub const BOUND: Duration = Duration::from_secs(60);

/// An upstream repository held in memory.
#[derive(Default)]
pub struct Fake {
    pub tags: Mutex<HashMap<String, String>>,
    pub manifests: Mutex<HashMap<String, (String, Bytes)>>,
    pub blobs: Mutex<HashMap<String, Bytes>>,
    pub heads: AtomicUsize,
    pub manifest_gets: AtomicUsize,
    pub blob_gets: AtomicUsize,
    /// Blob streams that sent their last byte.
    pub finished: AtomicUsize,
    pub fail: Mutex<Option<UpstreamError>>,
    pub corrupt: AtomicBool,
    /// When set, a blob stream pauses before its last chunk until a permit is added.
    pub gate: Mutex<Option<Arc<Semaphore>>>,
    /// The Content-Length a blob is announced with: 0 none, 1 the true one, 2 one byte more.
    pub size_mode: AtomicUsize,
    /// When set, a manifest GET waits for a permit before answering.
    pub manifest_gate: Mutex<Option<Arc<Semaphore>>>,
}

impl Fake {
    pub fn failing(&self) -> Result<(), UpstreamError> {
        match self.fail.lock().unwrap().clone() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    pub fn blob(&self, data: &[u8]) -> String {
        let d = Digest::sha256(data).to_string();
        self.blobs
            .lock()
            .unwrap()
            .insert(d.clone(), Bytes::copy_from_slice(data));
        d
    }

    pub fn manifest(&self, tag: Option<&str>, media_type: &str, body: Vec<u8>) -> String {
        let d = Digest::sha256(&body).to_string();
        self.manifests
            .lock()
            .unwrap()
            .insert(d.clone(), (media_type.to_string(), Bytes::from(body)));
        if let Some(t) = tag {
            self.tags.lock().unwrap().insert(t.to_string(), d.clone());
        }
        d
    }

    /// An image (a config and one layer of `layer_len` bytes) under `tag`:
    /// its manifest digest and its blob digests.
    pub fn image(&self, tag: &str, seed: &str, layer_len: usize) -> (String, Vec<String>) {
        let cfg = format!("{{\"seed\":\"{seed}\"}}");
        let layer: Vec<u8> = (0..layer_len).map(|i| (i % 251) as u8 ^ seed.len() as u8).collect();
        let c = self.blob(cfg.as_bytes());
        let l = self.blob(&layer);
        let m = json!({
            "schemaVersion": 2, "mediaType": OCI,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": c, "size": cfg.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": l, "size": layer.len()}],
        });
        let d = self.manifest(Some(tag), OCI, serde_json::to_vec(&m).unwrap());
        (d, vec![c, l])
    }

    pub fn resolve(&self, reference: &str) -> Option<String> {
        if reference.contains(':') {
            Some(reference.to_string())
        } else {
            self.tags.lock().unwrap().get(reference).cloned()
        }
    }
}

pub struct Repo(pub Arc<Fake>);

#[async_trait::async_trait]
impl UpstreamRepo for Repo {
    fn describe(&self) -> String {
        "upstream.test/library/app".into()
    }

    async fn head_manifest(&self, reference: &str) -> Result<Option<UpstreamManifestHead>, UpstreamError> {
        self.0.heads.fetch_add(1, Ordering::SeqCst);
        self.0.failing()?;
        let Some(d) = self.0.resolve(reference) else {
            return Ok(None);
        };
        Ok(self
            .0
            .manifests
            .lock()
            .unwrap()
            .get(&d)
            .map(|(mt, b)| UpstreamManifestHead {
                digest: d.clone(),
                media_type: mt.clone(),
                size: b.len() as u64,
            }))
    }

    async fn get_manifest(&self, reference: &str) -> Result<Option<UpstreamManifest>, UpstreamError> {
        self.0.manifest_gets.fetch_add(1, Ordering::SeqCst);
        let gate = self.0.manifest_gate.lock().unwrap().clone();
        if let Some(g) = gate {
            g.acquire().await.unwrap().forget();
        }
        self.0.failing()?;
        let Some(d) = self.0.resolve(reference) else {
            return Ok(None);
        };
        let corrupt = self.0.corrupt.load(Ordering::SeqCst);
        Ok(self.0.manifests.lock().unwrap().get(&d).map(|(mt, b)| {
            let body = if corrupt {
                // Same JSON, one more space: another digest than the one claimed.
                let mut v = b.to_vec();
                v.push(b' ');
                Bytes::from(v)
            } else {
                b.clone()
            };
            UpstreamManifest {
                digest: d.clone(),
                media_type: mt.clone(),
                body,
            }
        }))
    }

    async fn get_blob(&self, digest: &str) -> Result<Option<UpstreamBlob>, UpstreamError> {
        self.0.blob_gets.fetch_add(1, Ordering::SeqCst);
        self.0.failing()?;
        let Some(data) = self.0.blobs.lock().unwrap().get(digest).cloned() else {
            return Ok(None);
        };
        let mut data = data.to_vec();
        if self.0.corrupt.load(Ordering::SeqCst) {
            if let Some(b) = data.last_mut() {
                *b ^= 0xff;
            }
        }
        let size = match self.0.size_mode.load(Ordering::SeqCst) {
            0 => None,
            1 => Some(data.len() as u64),
            _ => Some(data.len() as u64 + 1),
        };
        let chunks: Vec<Bytes> = data.chunks(1024).map(Bytes::copy_from_slice).collect();
        let gate = self.0.gate.lock().unwrap().clone();
        let fake = self.0.clone();
        let body = futures::stream::unfold((chunks, 0usize), move |(chunks, i)| {
            let (gate, fake) = (gate.clone(), fake.clone());
            async move {
                if i == chunks.len() {
                    fake.finished.fetch_add(1, Ordering::SeqCst);
                    return None;
                }
                if i + 1 == chunks.len() {
                    if let Some(g) = gate {
                        g.acquire().await.unwrap().forget();
                    }
                }
                let c = chunks[i].clone();
                Some((Ok(c), (chunks, i + 1)))
            }
        })
        .boxed();
        Ok(Some(UpstreamBlob { size, body }))
    }
}

/// A rule for `hub/` in [`ACCOUNT`] only.
pub struct Source(pub Arc<Fake>);

#[async_trait::async_trait]
impl PullThroughSource for Source {
    async fn upstream_for(
        &self,
        account: &str,
        name: &RepoName,
    ) -> Result<Option<Arc<dyn UpstreamRepo>>, UpstreamError> {
        if account == ACCOUNT && name.as_str().starts_with("hub/") {
            Ok(Some(Arc::new(Repo(self.0.clone()))))
        } else {
            Ok(None)
        }
    }
}

#[derive(Default)]
pub struct Recorder(pub Mutex<Vec<ImageEvent>>);

#[async_trait::async_trait]
impl EventListener for Recorder {
    async fn on_event(&self, event: &ImageEvent) {
        self.0.lock().unwrap().push(event.clone());
    }
    fn wants(&self, _: EventType) -> bool {
        true
    }
}

pub struct Env {
    pub reg: Arc<Registry>,
    pub fake: Arc<Fake>,
    pub events: Arc<Recorder>,
    pub meta: Arc<dyn MetaStore>,
    pub dir: Arc<tempfile::TempDir>,
}

pub async fn env(refresh: Duration) -> Env {
    env_with(refresh, false).await
}

pub async fn env_with(refresh: Duration, prefetch: bool) -> Env {
    let fake = Fake::default();
    fake.size_mode.store(1, Ordering::SeqCst);
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let meta: Arc<dyn MetaStore> = Arc::new(kura_store::testdb::from_env_or_sqlite(dir.path().join("meta.db")).await);
    node(meta, dir, Arc::new(fake), refresh, prefetch).await
}

/// A registry over `meta` and the blob directory in `dir` (another node of the same deployment).
pub async fn node(
    meta: Arc<dyn MetaStore>,
    dir: Arc<tempfile::TempDir>,
    fake: Arc<Fake>,
    refresh: Duration,
    prefetch: bool,
) -> Env {
    let blobs = FsBlobStore::open(dir.path().join("blobs"))
        .await
        .unwrap()
        .without_fsync();
    node_on(meta, dir, fake, refresh, prefetch, Arc::new(blobs)).await
}

pub async fn node_on(
    meta: Arc<dyn MetaStore>,
    dir: Arc<tempfile::TempDir>,
    fake: Arc<Fake>,
    refresh: Duration,
    prefetch: bool,
    blobs: Arc<dyn BlobStore>,
) -> Env {
    let config = RegistryConfig {
        pull_through_refresh: refresh,
        pull_through_prefetch: prefetch,
        ..RegistryConfig::default()
    };
    let reg = Registry::new(meta.clone(), blobs, config);
    reg.set_pull_through(Arc::new(Source(fake.clone())));
    let events = Arc::new(Recorder::default());
    reg.subscribe(events.clone());
    Env {
        reg: Arc::new(reg),
        fake,
        events,
        meta,
        dir,
    }
}

pub fn name(s: &str) -> RepoName {
    s.parse().unwrap()
}

pub fn pull() -> Actor {
    Actor::anonymous(ACCOUNT)
}

impl Env {
    pub async fn manifest(&self, reference: &str) -> Result<String, kura_registry::error::RegistryError> {
        let row = self
            .reg
            .get_manifest(ACCOUNT, &name(REPO), reference, Some(&pull()))
            .await?;
        Ok(row.digest)
    }

    pub async fn blob(&self, digest: &str) -> Result<Vec<u8>, String> {
        let read = self
            .reg
            .get_blob(ACCOUNT, &name(REPO), digest, None, false)
            .await
            .map_err(|e| e.to_string())?;
        let mut body = read.body.expect("a body");
        let mut out = Vec::new();
        while let Some(chunk) = body.next().await {
            out.extend_from_slice(&chunk.map_err(|e| e.to_string())?);
        }
        Ok(out)
    }

    pub async fn stored(&self, digest: &str) -> bool {
        let Some(repo) = self.meta.repo_get(ACCOUNT, REPO).await.unwrap() else {
            return false;
        };
        self.meta.blob_get(repo.id, digest).await.unwrap().is_some()
    }

    pub async fn http(&self, method: Method, uri: &str) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
        let req = Request::builder().method(method).uri(uri).body(Body::empty()).unwrap();
        let resp = app(self.reg.clone()).oneshot(req).await.unwrap();
        let (status, headers) = (resp.status(), resp.headers().clone());
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, headers, serde_json::from_slice(&body).unwrap_or(json!(null)))
    }

    pub fn stat(&self, f: impl Fn(&kura_registry::PullThroughStats) -> &std::sync::atomic::AtomicU64) -> u64 {
        f(self.reg.pull_through_stats()).load(Ordering::SeqCst)
    }
}

/// Wait (bounded) until `cond` holds.
pub async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    tokio::time::timeout(BOUND, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

/// A blob store whose `commit` waits for a permit: the durable part of a
/// fetch held back while a client reads.
pub struct GatedCommit {
    pub inner: FsBlobStore,
    pub gate: Arc<Semaphore>,
    pub commits: AtomicUsize,
}

#[async_trait::async_trait]
impl BlobStore for GatedCommit {
    async fn begin(&self, upload_id: &str) -> kura_store::error::Result<String> {
        self.inner.begin(upload_id).await
    }
    async fn append(
        &self,
        handle: &str,
        offset: u64,
        data: BodyStream<'_>,
    ) -> kura_store::error::Result<(String, u64)> {
        self.inner.append(handle, offset, data).await
    }
    async fn read_upload(&self, handle: &str, len: u64) -> kura_store::error::Result<ByteStream> {
        self.inner.read_upload(handle, len).await
    }
    async fn commit(&self, handle: &str, size: u64, digest: &Digest) -> kura_store::error::Result<String> {
        self.commits.fetch_add(1, Ordering::SeqCst);
        self.gate.acquire().await.unwrap().forget();
        self.inner.commit(handle, size, digest).await
    }
    async fn abort(&self, handle: &str) -> kura_store::error::Result<()> {
        self.inner.abort(handle).await
    }
    async fn read(&self, key: &str, range: Option<(u64, u64)>) -> kura_store::error::Result<ByteStream> {
        self.inner.read(key, range).await
    }
    async fn stat(&self, key: &str) -> kura_store::error::Result<Option<u64>> {
        self.inner.stat(key).await
    }
    async fn delete(&self, key: &str) -> kura_store::error::Result<()> {
        self.inner.delete(key).await
    }
    fn list_stored(&self, kind: StoredKind) -> StoredStream<'_> {
        self.inner.list_stored(kind)
    }
    async fn delete_stored(&self, object: &StoredObject) -> kura_store::error::Result<()> {
        self.inner.delete_stored(object).await
    }
}

pub async fn until_stored(e: &Env, digest: &str) {
    tokio::time::timeout(BOUND, async {
        while !e.stored(digest).await {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the blob is stored");
}
