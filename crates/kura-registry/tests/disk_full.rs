//! A full disk is a server condition, not the client's fault: uploads that
//! meet ENOSPC (or a released space reserve that cannot be allocated again)
//! get 503 `UNAVAILABLE` with `Retry-After`, which clients retry; the failed
//! upload's partial file is removed at once and its session ends. (Before,
//! the client got 400 `BLOB_UPLOAD_INVALID` "No space left on device" and the
//! partial file stayed.) The real disk is exercised by
//! `tests/e2e/test_disk_full.py` on a small tmpfs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use kura_oci::Digest;
use kura_registry::{app, Registry, RegistryConfig};
use kura_store::{DiskReserve, FsBlobStore};
use serde_json::Value;
use tower::ServiceExt;

/// A filesystem store whose disk fills up: once `full` is set, an append
/// writes what it can and then fails with ENOSPC, like a real full disk.
struct FillingUp {
    fs: FsBlobStore,
    full: AtomicBool,
}

#[async_trait::async_trait]
impl kura_store::BlobStore for FillingUp {
    async fn begin(&self, id: &str) -> kura_store::error::Result<String> {
        self.fs.begin(id).await
    }
    async fn append(
        &self,
        h: &str,
        offset: u64,
        data: kura_store::blob::BodyStream<'_>,
    ) -> kura_store::error::Result<(String, u64)> {
        let out = self.fs.append(h, offset, data).await?;
        if self.full.load(Ordering::SeqCst) {
            return Err(std::io::Error::from_raw_os_error(28).into());
        }
        Ok(out)
    }
    async fn read_upload(&self, h: &str, len: u64) -> kura_store::error::Result<kura_store::ByteStream> {
        self.fs.read_upload(h, len).await
    }
    async fn commit(&self, h: &str, size: u64, d: &Digest) -> kura_store::error::Result<String> {
        self.fs.commit(h, size, d).await
    }
    async fn abort(&self, h: &str) -> kura_store::error::Result<()> {
        self.fs.abort(h).await
    }
    async fn read(&self, key: &str, range: Option<(u64, u64)>) -> kura_store::error::Result<kura_store::ByteStream> {
        self.fs.read(key, range).await
    }
    async fn stat(&self, key: &str) -> kura_store::error::Result<Option<u64>> {
        self.fs.stat(key).await
    }
    async fn delete(&self, key: &str) -> kura_store::error::Result<()> {
        self.fs.delete(key).await
    }
    fn list_stored(&self, kind: kura_store::StoredKind) -> kura_store::blob::StoredStream<'_> {
        self.fs.list_stored(kind)
    }
    async fn delete_stored(&self, o: &kura_store::StoredObject) -> kura_store::error::Result<()> {
        self.fs.delete_stored(o).await
    }
}

struct Resp {
    status: StatusCode,
    retry_after: Option<String>,
    body: Value,
}

async fn req(app: &Router, method: Method, uri: &str, body: Vec<u8>) -> Resp {
    let r = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::from(body))
        .unwrap();
    let resp = app.clone().oneshot(r).await.unwrap();
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    Resp {
        status,
        retry_after,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

fn files_in(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|it| {
            it.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

async fn start(app: &Router) -> String {
    let r = Request::builder()
        .method(Method::POST)
        .uri("/v2/full/app/blobs/uploads/")
        .body(Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(r).await.unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    resp.headers()["location"].to_str().unwrap().to_string()
}

fn assert_unavailable(r: &Resp) {
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert_eq!(r.body["errors"][0]["code"], "UNAVAILABLE", "{}", r.body);
    assert!(r.retry_after.as_deref().is_some_and(|s| s.parse::<u64>().is_ok()));
}

/// ENOSPC mid-upload: 503 with `Retry-After` (not 400), the partial file
/// gone at once, the session ended; with space back, the push succeeds.
#[tokio::test]
async fn enospc_during_an_upload_is_a_retryable_503_and_frees_the_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let meta = kura_store::testdb::from_env_or_sqlite(dir.path().join("meta.db")).await;
    let fs = FsBlobStore::open(dir.path().join("blobs"))
        .await
        .unwrap()
        .without_fsync();
    let store = Arc::new(FillingUp {
        fs,
        full: AtomicBool::new(true),
    });
    let reg = Registry::new(Arc::new(meta), store.clone(), RegistryConfig::default());
    let app = kura_registry::app(Arc::new(reg));
    let uploads = dir.path().join("blobs/uploads");
    let before = kura_store::space::disk_full_events();

    // A chunked upload (PATCH) and a monolithic one (PUT with the body).
    let loc = start(&app).await;
    let r = req(&app, Method::PATCH, &loc, vec![7u8; 100_000]).await;
    assert_unavailable(&r);
    assert!(
        files_in(&uploads).is_empty(),
        "partial file left: {:?}",
        files_in(&uploads)
    );
    let r = req(&app, Method::GET, &loc, Vec::new()).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "the session ended: {}", r.body);

    let data = vec![9u8; 50_000];
    let d = Digest::sha256(&data);
    let loc = start(&app).await;
    let r = req(&app, Method::PUT, &format!("{loc}?digest={d}"), data.clone()).await;
    assert_unavailable(&r);
    assert!(files_in(&uploads).is_empty());
    assert!(kura_store::space::disk_full_events() >= before + 2, "counted");

    // Space is back: the client's retry succeeds.
    store.full.store(false, Ordering::SeqCst);
    let loc = start(&app).await;
    let r = req(&app, Method::PUT, &format!("{loc}?digest={d}"), data).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}

/// While the space reserve is released and cannot be allocated again (the
/// disk has no room for it), new upload bytes are refused with 503 so pushes
/// cannot eat the room deletes and GC need; reads and deletes go on.
#[tokio::test]
async fn uploads_wait_while_the_space_reserve_cannot_be_held() {
    let dir = tempfile::tempdir().unwrap();
    let meta = kura_store::testdb::from_env_or_sqlite(dir.path().join("meta.db")).await;
    // A reserve no disk has room for twice: never allocated.
    let reserve = Arc::new(DiskReserve::open(dir.path(), 1 << 60));
    assert!(!reserve.held());
    let fs = FsBlobStore::open(dir.path().join("blobs"))
        .await
        .unwrap()
        .without_fsync()
        .with_reserve(reserve);
    let reg = Registry::new(Arc::new(meta), Arc::new(fs), RegistryConfig::default());
    let router = app(Arc::new(reg));
    let loc = start(&router).await;
    let r = req(&router, Method::PATCH, &loc, vec![1u8; 1000]).await;
    assert_unavailable(&r);
    assert!(files_in(&dir.path().join("blobs/uploads")).is_empty());

    // With a reserve the disk can hold, uploads go through.
    let dir2 = tempfile::tempdir().unwrap();
    let reserve = Arc::new(DiskReserve::open(dir2.path(), 1 << 20));
    assert!(reserve.held());
    assert!(reserve.release());
    let meta = kura_store::testdb::from_env_or_sqlite(dir2.path().join("meta.db")).await;
    let fs = FsBlobStore::open(dir2.path().join("blobs"))
        .await
        .unwrap()
        .without_fsync()
        .with_reserve(reserve.clone());
    let reg = Registry::new(Arc::new(meta), Arc::new(fs), RegistryConfig::default());
    let router = app(Arc::new(reg));
    let data = b"fits".to_vec();
    let d = Digest::sha256(&data);
    let loc = start(&router).await;
    let r = req(&router, Method::PUT, &format!("{loc}?digest={d}"), data).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert!(reserve.held(), "the released reserve was allocated again first");
}
