//! Image events from every path that changes images: the data plane behind
//! the ECR guard, the ECR API (`PutImage`, `BatchDeleteImage`), lifecycle
//! expiry and the scanner. A recording listener subscribed to the registry
//! sees exactly the events each call causes, with its actor.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use kura_oci::Digest;
use kura_registry::{Actor, EventKind, EventListener, EventType, ImageEvent};
use serde_json::{json, Value};
use tower::ServiceExt;

mod common;

use common::{ACCOUNT, KEY_ID, REGION, SECRET};

const TARGET: &str = "AmazonEC2ContainerRegistry_V20150921";
const HOST: &str = "localhost:5000";
const OCI: &str = "application/vnd.oci.image.manifest.v1+json";
const ROOT_ARN: &str = "arn:aws:iam::123456789012:root";

#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<ImageEvent>>,
}

impl Recorder {
    fn take(&self) -> Vec<ImageEvent> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

#[async_trait::async_trait]
impl EventListener for Recorder {
    async fn on_event(&self, event: &ImageEvent) {
        self.seen.lock().unwrap().push(event.clone());
    }
    fn wants(&self, _: EventType) -> bool {
        true
    }
}

struct T {
    s: common::Server,
    rec: Arc<Recorder>,
}

async fn setup() -> T {
    let s = common::server().await;
    let rec = Arc::new(Recorder::default());
    s.ecr.registry().subscribe(rec.clone());
    T { s, rec }
}

impl T {
    async fn send(&self, req: Request<Body>) -> (StatusCode, Vec<u8>) {
        let resp = self.s.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes().to_vec();
        (status, body)
    }

    /// A signed ECR API call with the root key that must succeed.
    async fn call(&self, operation: &str, input: Value) -> Value {
        let body = serde_json::to_vec(&input).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("host", HOST.parse().unwrap());
        headers.insert("content-type", "application/x-amz-json-1.1".parse().unwrap());
        headers.insert("x-amz-target", format!("{TARGET}.{operation}").parse().unwrap());
        headers.insert("user-agent", API_UA.parse().unwrap());
        common::sign_post(&mut headers, &body, (KEY_ID, SECRET), REGION, "ecr", SystemTime::now());
        let mut b = Request::builder().method(Method::POST).uri("/");
        *b.headers_mut().unwrap() = headers;
        let (status, out) = self.send(b.body(Body::from(body)).unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{operation}: {}", String::from_utf8_lossy(&out));
        serde_json::from_slice(&out).unwrap()
    }

    async fn auth(&self) -> String {
        let v = self.call("GetAuthorizationToken", json!({})).await;
        let token = v["authorizationData"][0]["authorizationToken"]
            .as_str()
            .unwrap()
            .to_string();
        format!("Basic {token}")
    }

    /// A data-plane request with the registry token and a User-Agent.
    async fn dp(&self, method: Method, uri: &str, auth: &str, ct: Option<&str>, body: Vec<u8>) -> StatusCode {
        let mut b = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", HOST)
            .header("authorization", auth)
            .header("user-agent", "containerd/2.0");
        if let Some(ct) = ct {
            b = b.header("content-type", ct);
        }
        let (status, out) = self.send(b.body(Body::from(body)).unwrap()).await;
        assert!(status.is_success(), "{uri}: {status} {}", String::from_utf8_lossy(&out));
        status
    }

    async fn push_blob(&self, auth: &str, repo: &str, data: &[u8]) -> String {
        let d = Digest::sha256(data).to_string();
        self.dp(
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
            auth,
            None,
            data.to_vec(),
        )
        .await;
        d
    }

    /// The blobs of an image over the data plane; returns the manifest to push.
    async fn image_blobs(&self, auth: &str, repo: &str, seed: &str) -> Vec<u8> {
        let cfg = format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"seed\":\"{seed}\"}}");
        let layer = b"not really a tar ".repeat(40);
        let c = self.push_blob(auth, repo, cfg.as_bytes()).await;
        let l = self.push_blob(auth, repo, &layer).await;
        serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": OCI,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": c, "size": cfg.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": l, "size": layer.len()}],
        }))
        .unwrap()
    }

    /// Push an image through `PutImage` under `tag`; returns its digest.
    async fn put_image(&self, auth: &str, repo: &str, tag: &str, seed: &str) -> String {
        let m = self.image_blobs(auth, repo, seed).await;
        let v = self
            .call(
                "PutImage",
                json!({"repositoryName": repo, "imageTag": tag, "imageManifest": String::from_utf8(m).unwrap()}),
            )
            .await;
        v["image"]["imageId"]["imageDigest"].as_str().unwrap().to_string()
    }

    /// Wait (bounded) for an event of `ty`, dropping the others.
    async fn wait_for(&self, ty: EventType) -> ImageEvent {
        for _ in 0..400 {
            if let Some(e) = self.rec.take().into_iter().find(|e| e.kind.event_type() == ty) {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no {ty:?} event within 10 s");
    }
}

/// The root key's actor on the ECR API (no client address in `oneshot`).
/// The User-Agent the API calls of these tests send.
const API_UA: &str = "aws-cli/2.15.0 events-test";

/// The root key's identity (either plane).
fn root_actor(a: &Actor) {
    assert_eq!(a.account, ACCOUNT);
    assert_eq!(a.principal_arn, ROOT_ARN);
    assert_eq!(a.principal_id, ACCOUNT, "the root's unique id is its account");
    assert_eq!(a.access_key_id.as_deref(), Some(KEY_ID));
}

/// The root key's actor on the ECR API, with the API client's User-Agent.
fn api_actor(a: &Actor) {
    root_actor(a);
    assert_eq!(a.user_agent.as_deref(), Some(API_UA), "the API client's User-Agent");
}

fn kinds(events: Vec<ImageEvent>, repo: &str) -> Vec<EventKind> {
    events
        .into_iter()
        .map(|e| {
            api_actor(&e.actor);
            assert_eq!(e.repository, repo);
            assert_eq!(e.account, ACCOUNT);
            e.kind
        })
        .collect()
}

fn deleted(digest: &str, tags: &[&str]) -> EventKind {
    EventKind::ImageDeleted {
        digest: digest.into(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
    }
}

/// Guards: a push through the data-plane guard carries the token's
/// principal, its access key and the client's User-Agent.
#[tokio::test]
async fn data_plane_push_names_the_token_principal() {
    let t = setup().await;
    t.call("CreateRepository", json!({"repositoryName": "dp"})).await;
    let auth = t.auth().await;
    let m = t.image_blobs(&auth, "dp", "a").await;
    t.dp(Method::PUT, "/v2/dp/manifests/v1", &auth, Some(OCI), m.clone())
        .await;
    let events = t.rec.take();
    assert_eq!(events.len(), 2, "{events:?}");
    for e in &events {
        root_actor(&e.actor);
        assert_eq!(e.actor.user_agent.as_deref(), Some("containerd/2.0"));
    }
    let d = Digest::sha256(&m).to_string();
    assert!(matches!(&events[0].kind, EventKind::ImagePushed { digest, tags, .. } if *digest == d && tags == &["v1"]));
    assert_eq!(
        events[1].kind,
        EventKind::TagChanged {
            tag: "v1".into(),
            old_digest: None,
            new_digest: Some(d)
        }
    );
}

/// Guards: `PutImage` goes through the registry's push: ImagePushed and
/// TagChanged with the API caller as actor.
#[tokio::test]
async fn put_image_emits_pushed_with_the_api_caller() {
    let t = setup().await;
    t.call("CreateRepository", json!({"repositoryName": "api"})).await;
    let auth = t.auth().await;
    t.rec.take();
    let d = t.put_image(&auth, "api", "v1", "a").await;
    // Blob uploads are no image events: only PutImage's.
    let kinds = kinds(t.rec.take(), "api");
    assert_eq!(kinds.len(), 2, "{kinds:?}");
    assert!(matches!(&kinds[0], EventKind::ImagePushed { digest, tags, .. } if *digest == d && tags == &["v1"]));
    assert_eq!(
        kinds[1],
        EventKind::TagChanged {
            tag: "v1".into(),
            old_digest: None,
            new_digest: Some(d)
        }
    );
}

/// Guards: `BatchDeleteImage` by tag removes the tag (TagChanged) while
/// other tags remain, and deletes the image with its last tag
/// (ImageDeleted naming it); by digest it deletes the image with all its
/// tags (ImageDeleted listing them). Actor: the API caller.
#[tokio::test]
async fn batch_delete_image_by_tag_and_by_digest() {
    let t = setup().await;
    t.call("CreateRepository", json!({"repositoryName": "del"})).await;
    let auth = t.auth().await;
    let d1 = t.put_image(&auth, "del", "a1", "one").await;
    t.put_image(&auth, "del", "a2", "one").await;
    let d2 = t.put_image(&auth, "del", "b1", "two").await;
    t.put_image(&auth, "del", "b2", "two").await;
    t.rec.take();

    let del = |ids: Value| json!({"repositoryName": "del", "imageIds": ids});
    let v = t.call("BatchDeleteImage", del(json!([{"imageTag": "a1"}]))).await;
    assert_eq!(v["failures"], json!([]));
    assert_eq!(
        kinds(t.rec.take(), "del"),
        vec![EventKind::TagChanged {
            tag: "a1".into(),
            old_digest: Some(d1.clone()),
            new_digest: None
        }]
    );
    t.call("BatchDeleteImage", del(json!([{"imageTag": "a2"}]))).await;
    assert_eq!(kinds(t.rec.take(), "del"), vec![deleted(&d1, &["a2"])]);

    t.call("BatchDeleteImage", del(json!([{"imageDigest": d2}]))).await;
    assert_eq!(kinds(t.rec.take(), "del"), vec![deleted(&d2, &["b1", "b2"])]);

    // Nothing left to delete: a failure, no event.
    let v = t.call("BatchDeleteImage", del(json!([{"imageDigest": d2}]))).await;
    assert_eq!(v["failures"][0]["failureCode"], "ImageNotFound");
    assert!(t.rec.take().is_empty());
}

/// Guards: lifecycle expiry deletes through the registry: ImageDeleted then
/// LifecycleExpired carrying the rule's priority, and the actor is the
/// lifecycle service, not a user.
#[tokio::test]
async fn lifecycle_expiry_emits_lifecycle_expired() {
    let t = setup().await;
    t.call("CreateRepository", json!({"repositoryName": "lc"})).await;
    let auth = t.auth().await;
    let old = t.put_image(&auth, "lc", "old", "one").await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    t.put_image(&auth, "lc", "new", "two").await;
    let policy = json!({"rules": [{
        "rulePriority": 7, "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1},
        "action": {"type": "expire"}}]});
    t.call(
        "PutLifecyclePolicy",
        json!({"repositoryName": "lc", "lifecyclePolicyText": policy.to_string()}),
    )
    .await;
    t.rec.take();
    let maint: Arc<dyn kura_store::MaintenanceStore> = t.s.store.clone();
    let report = kura_ecr::lifecycle::run_all(t.s.ecr.registry().clone(), maint)
        .await
        .unwrap();
    assert_eq!(report.expired, 1);
    let events = t.rec.take();
    assert_eq!(events.len(), 2, "{events:?}");
    for e in &events {
        assert_eq!(e.actor, Actor::lifecycle(ACCOUNT));
        assert_eq!(e.actor.service_principal(), Some(Actor::LIFECYCLE));
        assert_eq!(e.repository, "lc");
    }
    assert_eq!(events[0].kind, deleted(&old, &["old"]));
    assert_eq!(
        events[1].kind,
        EventKind::LifecycleExpired {
            digest: old,
            tags: vec!["old".into()],
            rule_priority: 7
        }
    );
}

/// Guards: the scanner is a listener of ImagePushed (scan on push through
/// `subscribe`, beside other listeners), and a finished scan reaches the
/// listeners as ScanCompleted, from the scanning service; so does a scan
/// started by `StartImageScan`.
#[tokio::test]
async fn scan_completion_emits_scan_completed() {
    let t = setup().await;
    // Scans are durable jobs: this node's runner runs them.
    let mut runner = kura_jobs::Runner::new(t.s.ecr.jobs().clone(), kura_jobs::RunnerConfig::default());
    for h in t.s.ecr.job_handlers() {
        runner.register(h);
    }
    let runner = runner.start();
    t.call(
        "CreateRepository",
        json!({"repositoryName": "scan", "imageScanningConfiguration": {"scanOnPush": true}}),
    )
    .await;
    let auth = t.auth().await;
    let d = t.put_image(&auth, "scan", "v1", "one").await;
    let e = t.wait_for(EventType::ScanCompleted).await;
    assert_eq!(e.actor, Actor::scanner(ACCOUNT));
    assert_eq!(e.repository, "scan");
    match &e.kind {
        EventKind::ScanCompleted {
            digest, tags, status, ..
        } => {
            assert_eq!(digest, &d);
            assert_eq!(tags, &["v1"]);
            assert!(!status.is_empty() && status != "IN_PROGRESS", "{status}");
        }
        other => panic!("{other:?}"),
    }
    // A manual scan of another image.
    t.call(
        "PutImageScanningConfiguration",
        json!({"repositoryName": "scan", "imageScanningConfiguration": {"scanOnPush": false}}),
    )
    .await;
    let d2 = t.put_image(&auth, "scan", "v2", "two").await;
    t.call(
        "StartImageScan",
        json!({"repositoryName": "scan", "imageId": {"imageDigest": d2}}),
    )
    .await;
    let e = t.wait_for(EventType::ScanCompleted).await;
    assert_eq!(e.actor, Actor::scanner(ACCOUNT));
    assert_eq!(e.kind.digest(), Some(d2.as_str()));
    runner.shutdown().await;
}

/// Guards: `BatchGetImage` is a pull by the API caller (ImagePulled).
#[tokio::test]
async fn batch_get_image_is_a_pull() {
    let t = setup().await;
    t.call("CreateRepository", json!({"repositoryName": "pull"})).await;
    let auth = t.auth().await;
    let d = t.put_image(&auth, "pull", "v1", "one").await;
    t.rec.take();
    t.call(
        "BatchGetImage",
        json!({"repositoryName": "pull", "imageIds": [{"imageTag": "v1"}]}),
    )
    .await;
    assert_eq!(
        kinds(t.rec.take(), "pull"),
        vec![EventKind::ImagePulled { digest: d, tag: None }]
    );
}
