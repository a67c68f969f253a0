//! The shared blob-store conformance suite. Every `BlobStore` implementation
//! runs [`suite`]; today that is the filesystem store (S3 joins later).

use bytes::Bytes;
use futures::{stream, StreamExt};
use kura_oci::Digest;
use kura_store::{BlobStore, FsBlobStore};

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
