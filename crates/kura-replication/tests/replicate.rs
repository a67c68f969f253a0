//! Replication end to end inside one process: two regions (two
//! deployments talking the federation protocol over loopback) and two
//! accounts in one deployment.

mod common;

use std::sync::atomic::Ordering;

use common::*;
use kura_replication::ReplicateRequest;
use kura_store::ReplicationStore;

const US: &str = "us-east-1";
const EU: &str = "eu-west-1";

fn to(region: &str, account: &str, filter: Option<&str>) -> String {
    let filters = filter.map_or(String::new(), |f| {
        format!(r#","repositoryFilters":[{{"filter":"{f}","filterType":"PREFIX_MATCH"}}]"#)
    });
    format!(r#"{{"rules":[{{"destinations":[{{"region":"{region}","registryId":"{account}"}}]{filters}}}]}}"#)
}

async fn two_regions(src_key: u8, dst_key: u8) -> (Deployment, Deployment) {
    let eu = Deployment::start(EU, Some(key(dst_key)), peers(&[])).await;
    let us = Deployment::start(US, Some(key(src_key)), peers(&[(EU, &eu.url)])).await;
    (us, eu)
}

#[tokio::test]
async fn cross_region_image_is_byte_exact_with_tags_and_filters() {
    let (us, eu) = two_regions(1, 1).await;
    us.configure(A, &to(EU, A, Some("prod/"))).await;
    let (digest, body) = us
        .push_image(A, "prod/api", "v1", &[&random(300_000, 1), b"small layer"])
        .await;
    let row = us.wait_status(A, "prod/api", &digest, EU, A, "COMPLETE").await;
    assert_eq!(row.failure_code, None);
    // The source's event and audit record; the destination's push event by the replication service.
    let replicated = us.seen.0.lock().unwrap().iter().any(|e| {
        matches!(&e.kind,
        kura_registry::EventKind::ImageReplicated { digest: d, result, destination_region, .. }
            if *d == digest && result == "COMPLETE" && destination_region == EU)
    });
    assert!(replicated, "no ImageReplicated event");
    let records = us.replication_records(A).await;
    assert!(
        records
            .iter()
            .any(|r| r["serviceEventDetails"]["imageDigest"] == digest.as_str()
                && r["serviceEventDetails"]["status"] == "COMPLETE"
                && r["eventType"] == "AwsServiceEvent"),
        "{records:?}"
    );
    let pushed_by_replication = eu.seen.0.lock().unwrap().iter().any(|e| {
        matches!(&e.kind,
        kura_registry::EventKind::ImagePushed { digest: d, .. } if *d == digest)
            && e.actor.principal_arn == kura_replication::REPLICATION_SERVICE
    });
    assert!(pushed_by_replication);
    // The destination's trail names where the image came from.
    let arrived = eu.replication_records(A).await;
    assert!(
        arrived
            .iter()
            .any(|r| r["serviceEventDetails"]["imageDigest"] == digest.as_str()
                && r["serviceEventDetails"]["sourceRegion"] == US
                && r["awsRegion"] == EU),
        "{arrived:?}"
    );
    // Byte-exact, by digest and by tag; every blob readable in the destination.
    assert_eq!(eu.manifest(A, "prod/api", &digest).await.unwrap(), body);
    assert_eq!(eu.manifest(A, "prod/api", "v1").await.unwrap(), body);
    let repo = eu.repo_id(A, "prod/api").await.unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    for d in std::iter::once(&v["config"]).chain(v["layers"].as_array().unwrap()) {
        let d = d["digest"].as_str().unwrap();
        use kura_store::MetaStore;
        assert!(
            eu.store.blob_get(repo, d).await.unwrap().is_some(),
            "{d} missing in the destination"
        );
    }
    // The repository was created with ECR's defaults.
    use kura_store::MetaStore;
    let r = eu.store.repo_get(A, "prod/api").await.unwrap().unwrap();
    assert_eq!(r.settings.image_tag_mutability, "MUTABLE");
    // A repository the filter does not cover is not replicated.
    let (other, _) = us.push_image(A, "dev/api", "v1", &[b"dev"]).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(eu.repo_id(A, "dev/api").await.is_none());
    let dev = us.repo_id(A, "dev/api").await.unwrap();
    assert!(us.store.repl_status_list(dev, &other).await.unwrap().is_empty());
    // A second image shares a layer: only what the destination lacks is sent.
    let before = eu.patched.load(Ordering::SeqCst);
    let shared = random(300_000, 1);
    let (d2, _) = us.push_image(A, "prod/api", "v2", &[&shared, b"new small"]).await;
    us.wait_status(A, "prod/api", &d2, EU, A, "COMPLETE").await;
    let sent = eu.patched.load(Ordering::SeqCst) - before;
    assert!(sent < 1000, "the shared 300 kB layer was sent again ({sent} bytes)");
    us.stop().await;
    eu.stop().await;
}

#[tokio::test]
async fn index_children_and_referrers_replicate_and_tag_moves_follow() {
    let (us, eu) = two_regions(2, 2).await;
    us.configure(A, &to(EU, A, None)).await;
    let (c1, b1) = us.push_image(A, "app", "amd64", &[b"amd64 layer"]).await;
    let (c2, b2) = us.push_image(A, "app", "arm64", &[b"arm64 layer"]).await;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": c1, "size": b1.len(), "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": c2, "size": b2.len(), "platform": {"architecture": "arm64", "os": "linux"}},
        ]
    });
    let ib = serde_json::to_vec(&index).unwrap();
    let id = us
        .put_manifest(A, "app", "multi", &ib, "application/vnd.oci.image.index.v1+json")
        .await;
    // A signature-like referrer pushed after the index.
    let empty = us.push_blob(A, "app", b"{}").await;
    let sig = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2}],
        "subject": {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": id, "size": ib.len()},
    });
    let sb = serde_json::to_vec(&sig).unwrap();
    let sd = us
        .put_manifest(
            A,
            "app",
            &format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&sb))),
            &sb,
            "application/vnd.oci.image.manifest.v1+json",
        )
        .await;
    us.wait_status(A, "app", &id, EU, A, "COMPLETE").await;
    us.wait_status(A, "app", &sd, EU, A, "COMPLETE").await;
    assert_eq!(eu.manifest(A, "app", "multi").await.unwrap(), ib);
    assert_eq!(eu.manifest(A, "app", &c2).await.unwrap(), b2);
    let repo = eu.repo_id(A, "app").await.unwrap();
    use kura_store::MetaStore;
    let refs = eu.store.referrers(repo, &id, None).await.unwrap();
    assert_eq!(
        refs.iter().map(|r| r.digest.clone()).collect::<Vec<_>>(),
        vec![sd.clone()]
    );
    // The tag moves to another image in the source (MUTABLE): it follows.
    let (moved, mb) = us.push_image(A, "app", "multi", &[b"moved"]).await;
    us.wait_status(A, "app", &moved, EU, A, "COMPLETE").await;
    assert_eq!(eu.manifest(A, "app", "multi").await.unwrap(), mb);
    us.stop().await;
    eu.stop().await;
}

#[tokio::test]
async fn cross_account_needs_the_destination_registry_policy() {
    let us = Deployment::start(US, None, peers(&[])).await;
    us.configure(A, &to(US, B, None)).await;
    let (d, body) = us.push_image(A, "team/app", "v1", &[b"layer"]).await;
    let row = us.wait_status(A, "team/app", &d, US, B, "FAILED").await;
    assert_eq!(row.failure_code.as_deref(), Some("REPLICATION_PERMISSION_DENIED"));
    assert!(row.reason.unwrap().contains("ecr:ReplicateImage"));
    let records = us.replication_records(A).await;
    assert!(records
        .iter()
        .any(|r| r["serviceEventDetails"]["failureCode"] == "REPLICATION_PERMISSION_DENIED"));
    assert!(us.repo_id(B, "team/app").await.is_none(), "nothing may appear in B");
    // B grants A; pushing again replicates (blobs are shared: no copy).
    us.allow_replication_from(B, A).await;
    us.put_manifest(A, "team/app", "v1", &body, "application/vnd.oci.image.manifest.v1+json")
        .await;
    us.wait_status(A, "team/app", &d, US, B, "COMPLETE").await;
    assert_eq!(us.manifest(B, "team/app", "v1").await.unwrap(), body);
    // A grant for another source account does not help a third one.
    let c = "333333333333";
    kura_store::ControlStore::account_ensure(us.store.as_ref(), c)
        .await
        .unwrap();
    us.configure(c, &to(US, B, None)).await;
    let (d3, _) = us.push_image(c, "team/app", "v9", &[b"c layer"]).await;
    let row = us.wait_status(c, "team/app", &d3, US, B, "FAILED").await;
    assert_eq!(row.failure_code.as_deref(), Some("REPLICATION_PERMISSION_DENIED"));
    assert!(us.manifest(B, "team/app", &d3).await.is_none());
    us.stop().await;
}

#[tokio::test]
async fn an_immutable_destination_tag_is_a_failure_not_an_overwrite() {
    let (us, eu) = two_regions(3, 3).await;
    // The destination already has the tag on another image, immutable.
    let (theirs, tb) = eu.push_image(A, "prod/db", "v1", &[b"theirs"]).await;
    let mut r = kura_store::MetaStore::repo_get(eu.store.as_ref(), A, "prod/db")
        .await
        .unwrap()
        .unwrap();
    r.settings.image_tag_mutability = "IMMUTABLE".into();
    kura_store::MetaStore::repo_update_settings(eu.store.as_ref(), r.id, &r.settings)
        .await
        .unwrap();
    us.configure(A, &to(EU, A, Some("prod/"))).await;
    let (ours, _) = us.push_image(A, "prod/db", "v1", &[b"ours"]).await;
    let row = us.wait_status(A, "prod/db", &ours, EU, A, "FAILED").await;
    assert_eq!(row.failure_code.as_deref(), Some("IMAGE_TAG_IMMUTABLE"));
    assert_eq!(eu.manifest(A, "prod/db", "v1").await.unwrap(), tb);
    assert_ne!(theirs, ours);
    us.stop().await;
    eu.stop().await;
}

#[tokio::test]
async fn another_federations_key_is_refused_and_nothing_arrives() {
    let (us, eu) = two_regions(4, 5).await;
    us.configure(A, &to(EU, A, None)).await;
    let (d, _) = us.push_image(A, "x/y", "v1", &[b"z"]).await;
    let row = us.wait_status(A, "x/y", &d, EU, A, "FAILED").await;
    assert_eq!(row.failure_code.as_deref(), Some("FEDERATION_AUTHENTICATION_FAILED"));
    assert!(eu.repo_id(A, "x/y").await.is_none());
    // A region nobody configured.
    us.configure(A, &to("ap-south-1", A, None)).await;
    let (d2, _) = us.push_image(A, "x/y", "v2", &[b"w"]).await;
    let row = us.wait_status(A, "x/y", &d2, "ap-south-1", A, "FAILED").await;
    assert_eq!(row.failure_code.as_deref(), Some("DESTINATION_REGION_UNKNOWN"));
    us.stop().await;
    eu.stop().await;
}

#[tokio::test]
async fn a_destination_that_is_down_is_retried_until_it_answers() {
    // Reserve the destination's port, but serve nothing on it yet.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let us = Deployment::start(US, Some(key(6)), peers(&[(EU, &format!("http://{addr}"))])).await;
    us.configure(A, &to(EU, A, None)).await;
    let (d, body) = us.push_image(A, "svc", "v1", &[&random(50_000, 9)]).await;
    // Retrying: still IN_PROGRESS, with the reason shown.
    let mut row = None;
    for _ in 0..100 {
        let id = us.repo_id(A, "svc").await.unwrap();
        let r = us.store.repl_status_list(id, &d).await.unwrap().pop().unwrap();
        if r.failure_code.is_some() {
            row = Some(r);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let row = row.expect("a failed attempt is recorded");
    assert_eq!(row.status, "IN_PROGRESS");
    assert_eq!(row.failure_code.as_deref(), Some("DESTINATION_UNAVAILABLE"));
    // The destination comes up on that address: the retry completes.
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let eu = Deployment::start_on(EU, Some(key(6)), peers(&[]), listener).await;
    us.wait_status(A, "svc", &d, EU, A, "COMPLETE").await;
    assert_eq!(eu.manifest(A, "svc", "v1").await.unwrap(), body);
    us.stop().await;
    eu.stop().await;
}

#[tokio::test]
async fn an_interrupted_layer_resumes_where_it_stopped() {
    let (us, eu) = two_regions(7, 7).await;
    // No configuration: the job is driven by hand.
    let layer = random(1 << 20, 3);
    let (d, body) = us.push_image(A, "big", "v1", &[&layer]).await;
    let ld = format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&layer)));
    let req = ReplicateRequest {
        account: A.into(),
        repository: "big".into(),
        repo_id: us.repo_id(A, "big").await.unwrap(),
        digest: d.clone(),
        tags: vec!["v1".into()],
        destination: kura_replication::Destination {
            region: EU.into(),
            registry_id: A.into(),
        },
        backfill: None,
    };
    // A previous attempt opened an upload in the destination and sent the
    // first 400,000 bytes before it died, having recorded its session.
    us.store
        .repl_status_set(req.key(), "IN_PROGRESS", None, false)
        .await
        .unwrap();
    let peers = kura_replication::peer::Peers::new(
        US,
        peers(&[(EU, &eu.url)]),
        Some(key(7)),
        std::time::Duration::from_secs(5),
    );
    let sink = peers.sink(EU, A, A).unwrap();
    use kura_replication::sink::Sink;
    sink.prepare("big").await.unwrap();
    let id = sink.upload_start("big").await.unwrap();
    let first = bytes::Bytes::copy_from_slice(&layer[..400_000]);
    use futures::StreamExt;
    let body1 = futures::stream::once(async move { Ok::<_, std::io::Error>(first) }).boxed();
    assert_eq!(
        sink.upload_append("big", &id, 0, 400_000, body1).await.unwrap(),
        400_000
    );
    let progress = serde_json::json!({"uploads": {ld.clone(): id}}).to_string();
    us.store.repl_progress_set(req.key(), &progress).await.unwrap();
    let before = eu.patched.load(Ordering::SeqCst);
    us.replicator.replicate(&req).await.unwrap();
    let sent = eu.patched.load(Ordering::SeqCst) - before;
    // The rest of the layer, and the (small) config blob it had not sent.
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let config = v["config"]["size"].as_u64().unwrap();
    assert_eq!(sent, (1 << 20) - 400_000 + config, "only the rest of the layer is sent");
    assert_eq!(eu.manifest(A, "big", "v1").await.unwrap(), body);
    us.stop().await;
    eu.stop().await;
}

#[tokio::test]
async fn a_large_layer_goes_in_committed_chunks() {
    let (us, eu) = two_regions(8, 8).await;
    us.configure(A, &to(EU, A, None)).await;
    let size = 2 * kura_replication::job::CHUNK as usize + 12_345;
    let layer = random(size, 4);
    let (d, body) = us.push_image(A, "large", "v1", &[&layer]).await;
    us.wait_status(A, "large", &d, EU, A, "COMPLETE").await;
    assert_eq!(eu.manifest(A, "large", "v1").await.unwrap(), body);
    // Three chunks for the layer, one for the config blob.
    assert_eq!(eu.patches.load(Ordering::SeqCst), 4);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let config = v["config"]["size"].as_u64().unwrap();
    assert_eq!(eu.patched.load(Ordering::SeqCst), size as u64 + config);
    us.stop().await;
    eu.stop().await;
}
