//! GC and the archive storage class: an archived image keeps its blobs (its
//! manifest and `manifest_blobs` rows stay), while the same blobs go once
//! the image is deleted; archived bytes are metered apart.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use kura_gc::{collect, GcOptions};
use kura_oci::{Digest, RepoName};
use kura_registry::error::RegistryError;
use kura_registry::service::{Body, StartOutcome};
use kura_registry::{Actor, Registry, RegistryConfig};
use kura_store::meta::{ImageStatus, StorageUsage};
use kura_store::sql::TOUCH_SLACK_MS;
use kura_store::{FsBlobStore, MetaStore};

const ACCOUNT: &str = "000000000000";

fn body(data: Vec<u8>) -> Body {
    futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from(data))]).boxed()
}

fn name(s: &str) -> RepoName {
    s.parse().unwrap()
}

async fn push_blob(reg: &Registry, data: &[u8]) -> String {
    let d = Digest::sha256(data);
    let out = reg
        .start_upload(
            ACCOUNT,
            &name("app"),
            None,
            Some(d.as_str()),
            &Actor::anonymous(ACCOUNT),
            body(data.to_vec()),
        )
        .await
        .unwrap();
    assert_eq!(out, StartOutcome::Created(d.clone()));
    d.to_string()
}

fn opts() -> GcOptions {
    GcOptions {
        grace: Duration::ZERO,
        upload_max_age: Duration::from_secs(3600),
        dry_run: false,
        batch: 7,
        now_ms: None,
        progress: Default::default(),
    }
}

async fn blob_len(reg: &Registry, digest: &str) -> Result<usize, RegistryError> {
    let r = reg.get_blob(ACCOUNT, &name("app"), digest, None, false).await?;
    let mut n = 0;
    let mut s = r.body.unwrap();
    while let Some(c) = s.next().await {
        n += c.unwrap().len();
    }
    Ok(n)
}

#[tokio::test]
async fn gc_keeps_an_archived_images_blobs_and_usage_meters_them_apart() {
    let dir = tempfile::tempdir().unwrap();
    let store = kura_store::testdb::from_env_or_sqlite(dir.path().join("meta.db")).await;
    let blobs = FsBlobStore::open(dir.path().join("blobs"))
        .await
        .unwrap()
        .without_fsync();
    let reg = Registry::new(
        std::sync::Arc::new(store.clone()),
        std::sync::Arc::new(blobs.clone()),
        RegistryConfig::default(),
    );
    let actor = Actor::anonymous(ACCOUNT);

    let cfg = push_blob(&reg, b"{}").await;
    let layer = push_blob(&reg, &[7u8; 3000]).await;
    let m = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cfg}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer}","size":3000}}]}}"#
    );
    let out = reg
        .put_manifest(ACCOUNT, &name("app"), "v1", &[], None, m.into_bytes(), &actor)
        .await
        .unwrap();
    let digest = out.digest.to_string();
    let repo = store.repo_get(ACCOUNT, "app").await.unwrap().unwrap().id;
    assert_eq!(
        store.storage_usage(Some(ACCOUNT)).await.unwrap(),
        StorageUsage {
            standard_images: 1,
            standard_bytes: 3002,
            archive_images: 0,
            archive_bytes: 0
        }
    );

    // Archive it: its bytes move to the archive's meter, not out of the store.
    let moved = store
        .image_set_status(
            repo,
            &digest,
            &[ImageStatus::Active],
            ImageStatus::Archived,
            kura_store::now_millis(),
        )
        .await
        .unwrap();
    assert_eq!(moved, vec![digest.clone()]);
    let usage = store.storage_usage(Some(ACCOUNT)).await.unwrap();
    assert_eq!(
        (usage.standard_bytes, usage.archive_images, usage.archive_bytes),
        (0, 1, 3002)
    );
    assert_eq!(
        store.storage_usage(Some("999999999999")).await.unwrap(),
        StorageUsage::default()
    );
    assert_eq!(store.storage_usage(None).await.unwrap().archive_bytes, 3002);

    tokio::time::sleep(Duration::from_millis(5 + TOUCH_SLACK_MS as u64)).await;
    let r = collect(&store, &store, &blobs, &opts()).await.unwrap();
    assert_eq!(
        (r.links_removed, r.blobs_deleted),
        (0, 0),
        "archived blobs are kept: {r:?}"
    );
    assert_eq!(blob_len(&reg, &layer).await.unwrap(), 3000);
    // Its manifest is kept too, but not served.
    let err = reg.get_manifest(ACCOUNT, &name("app"), "v1", None).await.unwrap_err();
    assert!(
        matches!(
            err,
            RegistryError::ImageArchived {
                status: ImageStatus::Archived,
                ..
            }
        ),
        "{err:?}"
    );

    // Deleted while archived, the same blobs are garbage: GC takes them.
    reg.delete_image(
        ACCOUNT,
        &name("app"),
        &digest,
        kura_registry::service::DeleteCause::Request,
        &actor,
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(5 + TOUCH_SLACK_MS as u64)).await;
    let r = collect(&store, &store, &blobs, &opts()).await.unwrap();
    assert_eq!((r.blobs_deleted, r.bytes_freed), (2, 3002), "{r:?}");
    assert!(matches!(
        blob_len(&reg, &layer).await,
        Err(RegistryError::BlobUnknown { .. })
    ));
    assert_eq!(
        store.storage_usage(Some(ACCOUNT)).await.unwrap(),
        StorageUsage::default()
    );
}
