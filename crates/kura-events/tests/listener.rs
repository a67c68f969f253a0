//! The registry listener: ECR's EventBridge events for the registry's typed events (which
//! produce one, which do not), and a data-plane push through the registry's router reaching a
//! local receiver through the job queue, exactly once. Acceptance points 2 and 4.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::Receiver;
use kura_auth::seal::MasterKey;
use kura_events::deliver::Sender;
use kura_events::job::{DeliveryHandler, DELIVERY_KIND};
use kura_events::listener::{ecr_event, EventBridgeListener};
use kura_events::Events;
use kura_jobs::{Queue, RetryPolicy, Runner, RunnerConfig};
use kura_registry::events::{Actor, EventKind, ImageEvent};
use kura_registry::{Registry, RegistryConfig};
use kura_store::jobs::JobState;
use kura_store::{FsBlobStore, JobStore};
use serde_json::{json, Value};
use sha2::Digest as _;
use tower::ServiceExt;

const REGION: &str = "eu-west-1";
const OCI: &str = "application/vnd.oci.image.manifest.v1+json";

fn ev(kind: EventKind, actor: Actor) -> ImageEvent {
    ImageEvent::new("111122223333", "prod/app", &actor, kind)
}

/// Which registry events become which EventBridge events, with ECR's fields.
#[test]
fn ecr_shapes_for_registry_events() {
    let user = Actor::anonymous("111122223333");
    let push = ev(
        EventKind::ImagePushed {
            digest: "sha256:aa".into(),
            media_type: OCI.into(),
            artifact_type: None,
            tags: vec!["v1".into()],
        },
        user.clone(),
    );
    let j = ecr_event(&push, REGION).unwrap().to_json();
    assert_eq!(j["version"], "0");
    assert_eq!(j["id"], push.id);
    assert_eq!(j["source"], "aws.ecr");
    assert_eq!(j["detail-type"], "ECR Image Action");
    assert_eq!(j["account"], "111122223333");
    assert_eq!(j["region"], REGION);
    assert_eq!(j["resources"], json!([]));
    assert_eq!(
        j["detail"],
        json!({"result": "SUCCESS", "repository-name": "prod/app", "image-digest": "sha256:aa",
               "action-type": "PUSH", "image-tag": "v1"})
    );
    let t = j["time"].as_str().unwrap();
    assert!(t.len() == 20 && t.ends_with('Z'), "{t}");

    let by_digest = ev(
        EventKind::ImagePushed {
            digest: "sha256:aa".into(),
            media_type: OCI.into(),
            artifact_type: None,
            tags: vec![],
        },
        user.clone(),
    );
    assert!(ecr_event(&by_digest, REGION).unwrap().to_json()["detail"]
        .get("image-tag")
        .is_none());

    let del = ev(
        EventKind::ImageDeleted {
            digest: "sha256:aa".into(),
            tags: vec!["v1".into()],
        },
        user.clone(),
    );
    assert_eq!(
        ecr_event(&del, REGION).unwrap().to_json()["detail"]["action-type"],
        "DELETE"
    );
    // Lifecycle expiry: reported once, as the lifecycle action.
    let lc_del = ev(
        EventKind::ImageDeleted {
            digest: "sha256:aa".into(),
            tags: vec!["v1".into()],
        },
        Actor::lifecycle("111122223333"),
    );
    assert!(ecr_event(&lc_del, REGION).is_none());
    let expired = ev(
        EventKind::LifecycleExpired {
            digest: "sha256:aa".into(),
            tags: vec!["v1".into()],
            rule_priority: 1,
        },
        Actor::lifecycle("111122223333"),
    );
    let j = ecr_event(&expired, REGION).unwrap().to_json();
    assert_eq!(j["detail-type"], "ECR Lifecycle Policy Action");
    assert_eq!(j["detail"]["action-type"], "EXPIRE");
    assert_eq!(j["detail"]["image-tags"], json!(["v1"]));
    assert_eq!(
        j["resources"],
        json!(["arn:aws:ecr:eu-west-1:111122223333:repository/prod/app"])
    );

    let replicated = ev(
        EventKind::ImageReplicated {
            digest: "sha256:aa".into(),
            tags: vec!["v1".into()],
            destination_region: "us-west-2".into(),
            destination_registry: "444455556666".into(),
            result: "FAILED".into(),
            failure_code: Some("REPLICATION_PERMISSION_DENIED".into()),
        },
        Actor::service("111122223333", "replication.ecr.amazonaws.com"),
    );
    let j = ecr_event(&replicated, REGION).unwrap().to_json();
    assert_eq!(j["detail-type"], "ECR Replication Action");
    // The listener subscribes to it (the registry only calls listeners for the types they want).
    assert!(kura_events::listener::routed(kura_registry::EventType::ImageReplicated));
    assert_eq!(
        j["detail"],
        json!({"result": "FAILURE", "repository-name": "prod/app", "image-digest": "sha256:aa",
               "image-tags": ["v1"], "action-type": "REPLICATE", "destination-region": "us-west-2",
               "destination-registry-id": "444455556666", "failure-code": "REPLICATION_PERMISSION_DENIED"})
    );

    let synced = ev(
        EventKind::PullThroughCacheAction {
            digest: Some("sha256:bb".into()),
            tag: Some("1.27".into()),
            ecr_repository_prefix: "hub".into(),
            upstream_registry_url: "registry-1.docker.io".into(),
            sync_status: "SUCCESS".into(),
            failure_code: None,
            failure_reason: None,
        },
        Actor::pull_through_cache("111122223333"),
    );
    let j = ecr_event(&synced, REGION).unwrap().to_json();
    assert_eq!(j["detail-type"], "ECR Pull Through Cache Action");
    assert!(kura_events::listener::routed(
        kura_registry::EventType::PullThroughCacheAction
    ));
    assert_eq!(
        j["detail"],
        json!({"rule-version": "1", "sync-status": "SUCCESS", "ecr-repository-prefix": "hub",
               "repository-name": "prod/app", "upstream-registry-url": "registry-1.docker.io",
               "image-tag": "1.27", "image-digest": "sha256:bb"})
    );
    assert_eq!(
        j["resources"],
        json!(["arn:aws:ecr:eu-west-1:111122223333:repository/prod/app"])
    );
    let failed = ev(
        EventKind::PullThroughCacheAction {
            digest: None,
            tag: Some("1.27".into()),
            ecr_repository_prefix: "hub".into(),
            upstream_registry_url: "registry-1.docker.io".into(),
            sync_status: "FAILED".into(),
            failure_code: Some("UPSTREAM_TOO_MANY_REQUESTS".into()),
            failure_reason: Some("rate limited".into()),
        },
        Actor::pull_through_cache("111122223333"),
    );
    let j = ecr_event(&failed, REGION).unwrap().to_json();
    assert_eq!(j["detail"]["sync-status"], "FAILED");
    assert_eq!(j["detail"]["failure-code"], "UPSTREAM_TOO_MANY_REQUESTS");
    assert_eq!(j["detail"]["failure-reason"], "rate limited");
    assert!(j["detail"].get("image-digest").is_none());

    let scan = ev(
        EventKind::ScanCompleted {
            digest: "sha256:aa".into(),
            tags: vec!["v1".into()],
            status: "COMPLETE".into(),
            finding_severity_counts: BTreeMap::from([("CRITICAL".to_string(), 2u64)]),
        },
        Actor::scanner("111122223333"),
    );
    let j = ecr_event(&scan, REGION).unwrap().to_json();
    assert_eq!(j["detail-type"], "ECR Image Scan");
    assert_eq!(
        j["detail"],
        json!({"scan-status": "COMPLETE", "repository-name": "prod/app", "finding-severity-counts": {"CRITICAL": 2},
               "image-digest": "sha256:aa", "image-tags": ["v1"]})
    );

    // No EventBridge event for pulls, tag-only changes and mounts.
    for kind in [
        EventKind::ImagePulled {
            digest: "sha256:aa".into(),
            tag: None,
        },
        EventKind::TagChanged {
            tag: "v1".into(),
            old_digest: None,
            new_digest: Some("sha256:aa".into()),
        },
        EventKind::BlobMounted {
            digest: "sha256:bb".into(),
            from_repository: "other".into(),
        },
    ] {
        assert!(ecr_event(&ev(kind, user.clone()), REGION).is_none());
    }
}

/// A push through the data plane → the listener → one job → exactly one request at the
/// receiver; a push to a repository the rule does not match → none; a delete → a DELETE event
/// (a second rule matches deletes).
#[tokio::test]
async fn data_plane_push_reaches_the_receiver_once() {
    let rx = Receiver::default();
    let base = rx.start().await;
    let dir = tempfile::tempdir().unwrap();
    let meta = Arc::new(kura_store::testdb::from_env_or_sqlite(dir.path().join("meta.db")).await);
    let blobs = FsBlobStore::open(dir.path().join("blobs")).await.unwrap();
    let config = RegistryConfig {
        create_on_push: true,
        ..RegistryConfig::default()
    };
    let account = config.default_account.clone();
    let registry = Arc::new(Registry::new(meta.clone(), Arc::new(blobs), config));
    let events = Events::new(meta.clone(), MasterKey::generate(), REGION);
    let queue = Queue::new(meta.clone());
    registry.subscribe(EventBridgeListener::new(events.clone(), queue.clone()));
    let c = events
        .call(
            "CreateConnection",
            &account,
            &json!({"Name": "c", "AuthorizationType": "BASIC",
                    "AuthParameters": {"BasicAuthParameters": {"Username": "u", "Password": "p"}}}),
        )
        .await
        .unwrap();
    events
        .call(
            "CreateApiDestination",
            &account,
            &json!({"Name": "d", "ConnectionArn": c["ConnectionArn"], "InvocationEndpoint": base, "HttpMethod": "POST"}),
        )
        .await
        .unwrap();
    let target = json!([{"Id": "t", "Arn": format!("arn:aws:events:{REGION}:{account}:api-destination/d")}]);
    for (name, pattern) in [
        (
            "push",
            json!({"source": ["aws.ecr"], "detail": {"action-type": ["PUSH"], "repository-name": [{"prefix": "prod/"}]}}),
        ),
        ("delete", json!({"detail": {"action-type": ["DELETE"]}})),
    ] {
        events
            .call(
                "PutRule",
                &account,
                &json!({"Name": name, "EventPattern": pattern.to_string()}),
            )
            .await
            .unwrap();
        events
            .call("PutTargets", &account, &json!({"Rule": name, "Targets": target}))
            .await
            .unwrap();
    }
    let mut runner = Runner::new(
        queue.clone(),
        RunnerConfig {
            poll: Duration::from_millis(50),
            shutdown_grace: Duration::from_millis(0),
            ..RunnerConfig::default()
        },
    );
    runner.register(Arc::new(DeliveryHandler::new(
        events.clone(),
        Sender::new(Duration::from_secs(2)),
        RetryPolicy::for_a_day(),
    )));
    let handle = runner.start();
    let app = kura_registry::app(registry.clone());

    let send = |method: Method, uri: String, ct: Option<&'static str>, body: Vec<u8>| {
        let app = app.clone();
        async move {
            let mut b = Request::builder().method(method).uri(uri);
            if let Some(ct) = ct {
                b = b.header("content-type", ct);
            }
            let resp = app.oneshot(b.body(Body::from(body)).unwrap()).await.unwrap();
            let status = resp.status();
            let digest = resp
                .headers()
                .get("docker-content-digest")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            (status, digest)
        }
    };
    let push = |repo: &'static str, tag: &'static str| {
        let send = &send;
        async move {
            let cfg = format!("{{\"repo\":\"{repo}\"}}").into_bytes();
            let d = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&cfg)));
            let (s, _) = send(
                Method::POST,
                format!("/v2/{repo}/blobs/uploads/?digest={d}"),
                None,
                cfg.clone(),
            )
            .await;
            assert_eq!(s, StatusCode::CREATED);
            let m = json!({"schemaVersion": 2, "mediaType": OCI,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d, "size": cfg.len()},
                "layers": []});
            let (s, digest) = send(
                Method::PUT,
                format!("/v2/{repo}/manifests/{tag}"),
                Some(OCI),
                serde_json::to_vec(&m).unwrap(),
            )
            .await;
            assert_eq!(s, StatusCode::CREATED);
            digest
        }
    };
    push("dev/x", "v1").await;
    let digest = push("prod/x", "v1").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while rx.count() < 1 {
        assert!(Instant::now() < deadline, "no delivery");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (s, _) = send(Method::DELETE, format!("/v2/prod/x/manifests/{digest}"), None, vec![]).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let done = async || {
        meta.job_list(Some(JobState::Done), Some(DELIVERY_KIND), 0, 100)
            .await
            .unwrap()
            .len()
    };
    while done().await < 2 {
        assert!(Instant::now() < deadline, "no second delivery");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got: Vec<Value> = rx
        .all()
        .iter()
        .map(|g| serde_json::from_slice(&g.body).unwrap())
        .collect();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0]["detail"]["action-type"], "PUSH");
    assert_eq!(got[0]["detail"]["repository-name"], "prod/x");
    assert_eq!(got[0]["detail"]["image-digest"], digest.as_str());
    assert_eq!(got[1]["detail"]["action-type"], "DELETE");
    assert_eq!(rx.all()[0].headers["authorization"], "Basic dTpw");
    handle.shutdown().await;
}
