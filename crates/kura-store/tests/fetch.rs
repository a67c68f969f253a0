//! The pull-through cache's store (schema 17) on both engines: fetch leases
//! (one holder at a time, renewal, release, takeover after expiry) and cached
//! manifests whose references are settled when the content arrives.

use kura_store::meta::*;
use kura_store::{MetaStore, SqliteMetaStore};

fn d(s: &str) -> String {
    kura_oci::Digest::sha256(s.as_bytes()).to_string()
}

async fn lease_suite(m: &dyn MetaStore) {
    assert_eq!(
        m.fetch_lease_take("blob:1:a", "n1", 30_000).await.unwrap(),
        LeaseTake::Taken
    );
    // Another holder waits; the same holder extends.
    match m.fetch_lease_take("blob:1:a", "n2", 30_000).await.unwrap() {
        LeaseTake::Held { holder, expires_at } => {
            assert_eq!(holder, "n1");
            assert!(expires_at > kura_store::now_millis());
        }
        LeaseTake::Taken => panic!("two holders of one lease"),
    }
    assert_eq!(
        m.fetch_lease_take("blob:1:a", "n1", 30_000).await.unwrap(),
        LeaseTake::Taken
    );
    assert!(m.fetch_lease_renew("blob:1:a", "n1", 30_000).await.unwrap());
    assert!(
        !m.fetch_lease_renew("blob:1:a", "n2", 30_000).await.unwrap(),
        "not n2's"
    );
    assert_eq!(m.fetch_lease_get("blob:1:a").await.unwrap().unwrap().0, "n1");
    // Releasing someone else's lease does nothing; the holder's own frees it.
    m.fetch_lease_release("blob:1:a", "n2").await.unwrap();
    assert!(m.fetch_lease_get("blob:1:a").await.unwrap().is_some());
    m.fetch_lease_release("blob:1:a", "n1").await.unwrap();
    assert!(m.fetch_lease_get("blob:1:a").await.unwrap().is_none());
    assert_eq!(
        m.fetch_lease_take("blob:1:a", "n2", 30_000).await.unwrap(),
        LeaseTake::Taken
    );
    // An expired lease (its holder died) is taken over, and reads as free.
    assert_eq!(
        m.fetch_lease_take("blob:1:b", "dead", 1).await.unwrap(),
        LeaseTake::Taken
    );
    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    assert!(m.fetch_lease_get("blob:1:b").await.unwrap().is_none());
    assert_eq!(
        m.fetch_lease_take("blob:1:b", "n3", 30_000).await.unwrap(),
        LeaseTake::Taken
    );
    assert!(
        !m.fetch_lease_renew("blob:1:b", "dead", 30_000).await.unwrap(),
        "the dead holder lost it"
    );
}

async fn cached_suite(m: &dyn MetaStore) {
    let repo = m.repo_get_or_create("1", "hub/app").await.unwrap();
    let child = NewManifest {
        digest: d("child"),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        artifact_type: None,
        subject: None,
        annotations: None,
        body: b"child".to_vec(),
        blobs: vec![d("layer")],
        children: vec![],
    };
    let index = NewManifest {
        digest: d("index"),
        media_type: "application/vnd.oci.image.index.v1+json".into(),
        body: b"index".to_vec(),
        blobs: vec![],
        children: vec![d("child")],
        ..child.clone()
    };
    // The checked put refuses; the cached put stores without the references.
    let tags = [TagWrite {
        name: "v1".into(),
        immutable: false,
    }];
    assert!(matches!(
        m.manifest_put(repo, &index, &tags).await,
        Err(PutManifestError::MissingReferences { .. })
    ));
    m.manifest_put_cached(repo, &index, &tags).await.unwrap();
    assert_eq!(
        m.tag_get(repo, "v1").await.unwrap().as_deref(),
        Some(d("index").as_str())
    );
    m.manifest_put_cached(repo, &child, &[]).await.unwrap();
    // Until settled, the index does not hold its child.
    assert!(matches!(
        m.manifest_delete(repo, &d("child")).await.unwrap(),
        DeleteManifest::Deleted(_)
    ));
    m.manifest_put_cached(repo, &child, &[]).await.unwrap();
    m.manifest_settle_cached(repo, &d("child")).await.unwrap();
    assert!(matches!(
        m.manifest_delete(repo, &d("child")).await.unwrap(),
        DeleteManifest::ReferencedBy(p) if p == vec![d("index")]
    ));
    // The layer arrives: the child references it (its size counts it).
    assert_eq!(m.image_get(repo, &d("child")).await.unwrap().unwrap().size, 0);
    let layer = BlobRow {
        digest: d("layer"),
        size: 1234,
        storage_key: "key-layer".into(),
    };
    m.blob_commit(repo, &layer, None).await.unwrap();
    m.manifest_settle_cached(repo, &d("layer")).await.unwrap();
    assert_eq!(m.image_get(repo, &d("child")).await.unwrap().unwrap().size, 1234);
    // Settling twice, or content nobody waits for, changes nothing.
    m.manifest_settle_cached(repo, &d("layer")).await.unwrap();
    m.manifest_settle_cached(repo, &d("other")).await.unwrap();
    assert_eq!(m.image_get(repo, &d("child")).await.unwrap().unwrap().size, 1234);
}

#[tokio::test]
async fn sqlite_fetch_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let m = SqliteMetaStore::open(dir.path().join("meta.db")).await.unwrap();
    lease_suite(&m).await;
    cached_suite(&m).await;
}

#[tokio::test]
async fn postgres_fetch_store_conforms() {
    if let Some(m) = kura_store::testdb::postgres("postgres_fetch_store_conforms").await {
        lease_suite(&m).await;
        cached_suite(&m).await;
    }
}
