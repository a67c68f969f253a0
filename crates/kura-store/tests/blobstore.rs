//! The shared blob-store conformance suite. Every `BlobStore` implementation
//! runs [`suite`]: the filesystem store always, the S3 store against a real
//! S3-compatible server named by `KURA_TEST_S3_ENDPOINT`, `KURA_TEST_S3_BUCKET`,
//! `KURA_TEST_S3_ACCESS_KEY_ID` and `KURA_TEST_S3_SECRET_ACCESS_KEY` (skipped
//! when unset, unless `KURA_REQUIRE_S3=1`). Each S3 test uses a fresh prefix.

use std::time::Duration;

use bytes::Bytes;
use futures::{stream, StreamExt};
use kura_oci::Digest;
use kura_store::{BlobStore, FsBlobStore, S3BlobStore, S3Config, StoreError};

fn body(chunks: &[&[u8]]) -> kura_store::blob::BodyStream<'static> {
    let v: Vec<std::io::Result<Bytes>> = chunks.iter().map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    stream::iter(v).boxed()
}

async fn collect(s: kura_store::ByteStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut s = s;
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c.unwrap());
    }
    out
}

/// The behaviour every blob store must have.
async fn suite(store: &dyn BlobStore) {
    // Chunked upload, with a failed write in the middle whose bytes are discarded.
    let h = store.begin("u1").await.unwrap();
    let (h, off) = store.append(&h, 0, body(&[b"hello ", b"wor"])).await.unwrap();
    assert_eq!(off, 9);
    let failing = stream::iter(vec![
        Ok(Bytes::from_static(b"GARBAGE")),
        Err(std::io::Error::other("client went away")),
    ])
    .boxed();
    assert!(store.append(&h, 9, failing).await.is_err());
    let (h, off) = store.append(&h, 9, body(&[b"ld"])).await.unwrap();
    assert_eq!(off, 11);
    assert_eq!(collect(store.read_upload(&h, 11).await.unwrap()).await, b"hello world");
    let d = Digest::sha256(b"hello world");
    let key = store.commit(&h, 11, &d).await.unwrap();
    // The upload survives commit until aborted (crash between the two is safe).
    assert_eq!(collect(store.read_upload(&h, 11).await.unwrap()).await, b"hello world");
    store.abort(&h).await.unwrap();
    assert!(store.read_upload(&h, 11).await.is_err());
    assert_eq!(store.stat(&key).await.unwrap(), Some(11));
    assert_eq!(collect(store.read(&key, None).await.unwrap()).await, b"hello world");
    assert_eq!(collect(store.read(&key, Some((6, 10))).await.unwrap()).await, b"world");
    assert_eq!(collect(store.read(&key, Some((0, 0))).await.unwrap()).await, b"h");

    // Another upload of the same content gets its own key: deleting one copy
    // never touches the other.
    let h2 = store.begin("u2").await.unwrap();
    let (h2, _) = store.append(&h2, 0, body(&[b"hello world"])).await.unwrap();
    let key2 = store.commit(&h2, 11, &d).await.unwrap();
    assert_ne!(key, key2);
    assert_eq!(collect(store.read(&key2, None).await.unwrap()).await, b"hello world");
    // Committing the same upload again (a retried PUT after a crash) is harmless.
    assert_eq!(store.commit(&h2, 11, &d).await.unwrap(), key2);

    // Empty blob.
    let h3 = store.begin("u3").await.unwrap();
    let e = Digest::sha256(b"");
    let k3 = store.commit(&h3, 0, &e).await.unwrap();
    assert_eq!(store.stat(&k3).await.unwrap(), Some(0));

    // Abort and delete are idempotent.
    let h4 = store.begin("u4").await.unwrap();
    store.abort(&h4).await.unwrap();
    store.abort(&h4).await.unwrap();
    assert!(
        store.read_upload(&h4, 1).await.is_err(),
        "nothing left of an aborted upload"
    );
    store.delete(&key).await.unwrap();
    store.delete(&key).await.unwrap();
    assert_eq!(store.stat(&key).await.unwrap(), None);
    assert!(store.read(&key, None).await.is_err());

    // Hostile handles and keys are refused.
    for bad in ["../x", "a/b", "", "..", "x y"] {
        assert!(store.append(bad, 0, body(&[b"x"])).await.is_err(), "{bad}");
        assert!(store.read(bad, None).await.is_err(), "{bad}");
    }
    assert!(store.read("sha256/ab/../../../etc/passwd", None).await.is_err());

    listing(store, &key, &key2).await;
}

/// `list_stored` names every blob and every upload's data, with the upload
/// that wrote it, a modification time and a size; `delete_stored` removes
/// exactly what was listed and refuses names outside the store (GC's orphan
/// sweep relies on all of it).
async fn listing(store: &dyn BlobStore, deleted: &str, key2: &str) {
    use futures::TryStreamExt;
    use kura_store::{StoredKind, StoredObject};
    let now = kura_store::now_millis();
    let h = store.begin("l1").await.unwrap();
    store.append(&h, 0, body(&[b"abc"])).await.unwrap();

    let uploads: Vec<StoredObject> = store.list_stored(StoredKind::Upload).try_collect().await.unwrap();
    let mine: Vec<&StoredObject> = uploads.iter().filter(|o| o.upload_id == "l1").collect();
    assert!(!mine.is_empty(), "the upload's data is listed: {uploads:?}");
    for o in &mine {
        assert_eq!(o.kind, StoredKind::Upload);
        assert!((o.modified_ms - now).abs() < 600_000, "{o:?}");
    }
    let blobs: Vec<StoredObject> = store.list_stored(StoredKind::Blob).try_collect().await.unwrap();
    let b2 = blobs
        .iter()
        .find(|o| o.key == key2)
        .unwrap_or_else(|| panic!("{key2} in {blobs:?}"));
    assert_eq!((b2.kind, b2.upload_id.as_str(), b2.size), (StoredKind::Blob, "u2", 11));
    assert!((b2.modified_ms - now).abs() < 600_000, "{b2:?}");
    assert!(blobs.iter().all(|o| o.key != deleted), "a deleted blob is not listed");

    for o in mine {
        store.delete_stored(o).await.unwrap();
    }
    let uploads: Vec<StoredObject> = store.list_stored(StoredKind::Upload).try_collect().await.unwrap();
    assert!(uploads.iter().all(|o| o.upload_id != "l1"), "{uploads:?}");
    store.delete_stored(b2).await.unwrap();
    store.delete_stored(b2).await.unwrap();
    assert_eq!(store.stat(key2).await.unwrap(), None);
    store.abort(&h).await.unwrap();

    for (kind, key) in [
        (StoredKind::Upload, "../../etc/passwd"),
        (StoredKind::Upload, "uploads/x/../../blobs/u2"),
        (StoredKind::Blob, "sha256/ab/../../x"),
        (StoredKind::Blob, "../x"),
    ] {
        let o = StoredObject {
            kind,
            upload_id: "x".into(),
            key: key.into(),
            modified_ms: 0,
            size: 0,
        };
        assert!(store.delete_stored(&o).await.is_err(), "{key}");
    }
}

#[tokio::test]
async fn filesystem_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsBlobStore::open(dir.path()).await.unwrap();
    suite(&store).await;
}

#[tokio::test]
async fn filesystem_store_streams_large_blobs_in_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsBlobStore::open(dir.path()).await.unwrap().without_fsync();
    let chunk = vec![7u8; 1 << 20];
    let chunks: Vec<std::io::Result<Bytes>> = (0..64).map(|_| Ok(Bytes::from(chunk.clone()))).collect();
    let h = store.begin("big").await.unwrap();
    let (h, off) = store.append(&h, 0, stream::iter(chunks).boxed()).await.unwrap();
    assert_eq!(off, 64 << 20);
    let mut hasher = kura_oci::Hasher::new(kura_oci::Algorithm::Sha256);
    for _ in 0..64 {
        hasher.update(&chunk);
    }
    let key = store.commit(&h, off, &hasher.finish()).await.unwrap();
    let mut s = store.read(&key, None).await.unwrap();
    let mut max_chunk = 0;
    let mut total = 0;
    while let Some(c) = s.next().await {
        let c = c.unwrap();
        max_chunk = max_chunk.max(c.len());
        total += c.len();
    }
    assert_eq!(total, 64 << 20);
    assert!(
        max_chunk <= 1 << 20,
        "reads are streamed in bounded chunks, got {max_chunk}"
    );
}

// ----- S3 -------------------------------------------------------------------

const MIB: usize = 1 << 20;

/// The S3 test settings, or `None` (with a message) when the server is not configured.
fn s3_config(budget: usize) -> Option<S3Config> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let Some(endpoint) = var("KURA_TEST_S3_ENDPOINT") else {
        let msg = "skipped: set KURA_TEST_S3_ENDPOINT, KURA_TEST_S3_BUCKET, KURA_TEST_S3_ACCESS_KEY_ID and \
                   KURA_TEST_S3_SECRET_ACCESS_KEY to run the S3 blob store tests";
        if var("KURA_REQUIRE_S3").as_deref() == Some("1") {
            panic!("KURA_REQUIRE_S3=1 but {msg}");
        }
        eprintln!("{msg}");
        return None;
    };
    let prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
    Some(S3Config {
        bucket: var("KURA_TEST_S3_BUCKET").expect("KURA_TEST_S3_BUCKET"),
        prefix,
        endpoint: Some(endpoint),
        region: "us-east-1".into(),
        access_key_id: var("KURA_TEST_S3_ACCESS_KEY_ID"),
        secret_access_key: var("KURA_TEST_S3_SECRET_ACCESS_KEY"),
        virtual_hosted: None,
        buffer_budget: budget,
    })
}

fn s3_store(budget: usize) -> Option<(S3BlobStore, S3Config)> {
    let config = s3_config(budget)?;
    Some((S3BlobStore::new(&config).unwrap(), config))
}

/// Deterministic, non-repeating test bytes.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[i % 4] ^ seed)
        .collect()
}

/// Object names under `<prefix>/<sub>`, listed with a client of its own.
async fn list_under(config: &S3Config, sub: &str) -> Vec<String> {
    use futures::TryStreamExt;
    use object_store::ObjectStore;
    let s3 = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name(&config.bucket)
        .with_region(&config.region)
        .with_endpoint(config.endpoint.as_ref().unwrap())
        .with_allow_http(true)
        .with_access_key_id(config.access_key_id.as_ref().unwrap())
        .with_secret_access_key(config.secret_access_key.as_ref().unwrap())
        .build()
        .unwrap();
    let prefix = object_store::path::Path::from(format!("{}/{sub}", config.prefix));
    s3.list(Some(&prefix))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap()
}

#[tokio::test]
async fn s3_store_conforms() {
    let Some((store, _)) = s3_store(64 * MIB) else { return };
    suite(&store).await;
}

#[tokio::test]
async fn s3_multipart_across_requests_in_odd_chunks() {
    let Some((store, config)) = s3_store(64 * MIB) else {
        return;
    };
    let data = pattern(3 * MIB + 7 * MIB + 1 + 12 * MIB, 1);
    let cuts = [0, 3 * MIB, 10 * MIB, 10 * MIB + 1, data.len()];
    let mut h = store.begin("odd").await.unwrap();
    let mut off = 0u64;
    for w in cuts.windows(2) {
        // Each append is its own "request", with the body in uneven pieces.
        let piece = &data[w[0]..w[1]];
        let pieces: Vec<&[u8]> = piece.chunks(999_983).collect();
        let (h2, o) = store.append(&h, off, body(&pieces)).await.unwrap();
        assert_eq!(o, w[1] as u64);
        // The handle is all a node needs: reparse from the string as another node would.
        h = h2;
        off = o;
    }
    let v: serde_json::Value = serde_json::from_str(&h).unwrap();
    assert_eq!(v["parts"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(v["parted"], 16 * MIB as u64);
    // Re-hashing needs the parts back, which S3 cannot give.
    assert!(matches!(
        store.read_upload(&h, off).await,
        Err(StoreError::Unsupported(_))
    ));
    let d = Digest::sha256(&data);
    let key = store.commit(&h, off, &d).await.unwrap();
    store.abort(&h).await.unwrap();
    assert_eq!(store.stat(&key).await.unwrap(), Some(data.len() as u64));
    let back = collect(store.read(&key, None).await.unwrap()).await;
    assert!(back == data, "read back differs");
    assert_eq!(Digest::sha256(&back), d);
    // Ranges, across a part boundary and at the very end.
    let (a, b) = (8 * MIB - 10, 8 * MIB + 10);
    assert_eq!(
        collect(store.read(&key, Some((a as u64, b as u64))).await.unwrap()).await,
        data[a..=b]
    );
    let last = data.len() as u64 - 1;
    assert_eq!(
        collect(store.read(&key, Some((last, last))).await.unwrap()).await,
        data[data.len() - 1..]
    );
    assert!(list_under(&config, "uploads/odd").await.is_empty());
}

#[tokio::test]
async fn s3_abort_leaves_nothing() {
    let Some((store, config)) = s3_store(64 * MIB) else {
        return;
    };
    let data = pattern(9 * MIB + 123, 2);
    let h = store.begin("gone").await.unwrap();
    let (h, off) = store.append(&h, 0, body(&[&data[..5 * MIB]])).await.unwrap();
    let (h, _) = store.append(&h, off, body(&[&data[5 * MIB..]])).await.unwrap();
    let (h, _) = store.append(&h, data.len() as u64, body(&[b"x"])).await.unwrap();
    assert!(!list_under(&config, "uploads/gone").await.is_empty());
    store.abort(&h).await.unwrap();
    assert_eq!(list_under(&config, "uploads/gone").await, Vec::<String>::new());
    assert!(list_under(&config, "blobs").await.is_empty());
    // Idempotent, and the upload cannot continue.
    store.abort(&h).await.unwrap();
    let more = vec![b'y'; 9 * MIB];
    assert!(store.append(&h, data.len() as u64 + 1, body(&[&more])).await.is_err());
}

#[tokio::test]
async fn s3_stale_and_failed_appends() {
    let Some((store, _)) = s3_store(64 * MIB) else { return };
    let data = pattern(10 * MIB, 3);
    let h0 = store.begin("stale").await.unwrap();
    let (h1, off1) = store.append(&h0, 0, body(&[&data[..9 * MIB]])).await.unwrap();
    // A write that dies after filling a new part and a tail: nothing is acknowledged.
    let failing = stream::iter(vec![
        Ok(Bytes::from(pattern(9 * MIB, 99))),
        Err(std::io::Error::other("client went away")),
    ])
    .boxed();
    assert!(store.append(&h1, off1, failing).await.is_err());
    // Beyond the acknowledged bytes, or back into uploaded parts: refused.
    assert!(store.append(&h1, off1 + 1, body(&[b"z"])).await.is_err());
    assert!(store.append(&h1, 100, body(&[b"z"])).await.is_err());
    // Back into the tail: the bytes past the offset are discarded.
    let (h2, off2) = store
        .append(&h1, off1 - 10, body(&[&data[9 * MIB - 10..]]))
        .await
        .unwrap();
    assert_eq!(off2, data.len() as u64);
    // An empty append changes nothing.
    let (h3, off3) = store.append(&h2, off2, body(&[])).await.unwrap();
    assert_eq!(off3, off2);
    let d = Digest::sha256(&data);
    let key = store.commit(&h3, off3, &d).await.unwrap();
    // A retried commit (after a crash before the metadata commit) is harmless.
    assert_eq!(store.commit(&h3, off3, &d).await.unwrap(), key);
    store.abort(&h3).await.unwrap();
    assert!(collect(store.read(&key, None).await.unwrap()).await == data);
}

#[tokio::test]
async fn s3_large_streamed_upload_in_bounded_memory() {
    // A budget of two parts, shared by three concurrent uploads of 40 MiB and
    // one of 104 MiB: all finish, and never more than the budget is buffered.
    let Some((store, _)) = s3_store(16 * MIB) else { return };
    let store = std::sync::Arc::new(store);
    let mut tasks = Vec::new();
    for (i, mib) in [104usize, 40, 40, 40].into_iter().enumerate() {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("big{i}");
            let chunk = Bytes::from(pattern(MIB, i as u8));
            let chunks: Vec<std::io::Result<Bytes>> = (0..mib).map(|_| Ok(chunk.clone())).collect();
            let h = store.begin(&id).await.unwrap();
            let (h, off) = store.append(&h, 0, stream::iter(chunks).boxed()).await.unwrap();
            assert_eq!(off, (mib * MIB) as u64);
            let mut hasher = kura_oci::Hasher::new(kura_oci::Algorithm::Sha256);
            for _ in 0..mib {
                hasher.update(&chunk);
            }
            let d = hasher.finish();
            let key = store.commit(&h, off, &d).await.unwrap();
            store.abort(&h).await.unwrap();
            let mut h2 = kura_oci::Hasher::new(kura_oci::Algorithm::Sha256);
            let mut s = store.read(&key, None).await.unwrap();
            while let Some(c) = s.next().await {
                h2.update(&c.unwrap());
            }
            assert_eq!(h2.finish(), d);
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(600), t)
            .await
            .expect("uploads finish")
            .unwrap();
    }
    assert_eq!(store.buffer_budget(), 16 * MIB);
    let peak = store.buffer_peak();
    assert!(peak > 0 && peak <= 16 * MIB, "peak buffered {peak} bytes");
}

#[tokio::test]
async fn s3_presigned_get() {
    let Some((store, _)) = s3_store(64 * MIB) else { return };
    let data = pattern(1000, 4);
    let h = store.begin("signed").await.unwrap();
    let (h, off) = store.append(&h, 0, body(&[&data])).await.unwrap();
    let key = store.commit(&h, off, &Digest::sha256(&data)).await.unwrap();
    let url = store
        .presign_get(&key, Duration::from_secs(300))
        .await
        .unwrap()
        .expect("S3 presigns");
    let client = reqwest::Client::new();
    let r = client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[..]);
    let r = client.get(&url).header("range", "bytes=10-19").send().await.unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[10..20]);
    // A tampered signature is refused.
    let bad = url.replacen("X-Amz-Signature=", "X-Amz-Signature=0", 1);
    assert!(client.get(&bad).send().await.unwrap().status().is_client_error());
    // The filesystem store cannot presign (Kura serves its own signed URLs).
    let dir = tempfile::tempdir().unwrap();
    let fs = FsBlobStore::open(dir.path()).await.unwrap();
    assert_eq!(fs.presign_get(&key, Duration::from_secs(1)).await.unwrap(), None);
}
