//! Image events from the data plane: a recording listener sees exactly the
//! events each request causes, with the actor the guard in front handed in
//! (the `Actor` request extension), and none for requests that change nothing.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use kura_oci::Digest;
use kura_registry::{app, Actor, EventKind, EventListener, EventType, ImageEvent, Registry, RegistryConfig};
use kura_store::FsBlobStore;
use serde_json::json;
use tower::ServiceExt;

const ACCOUNT: &str = "000000000000";
const OCI: &str = "application/vnd.oci.image.manifest.v1+json";

/// Records every event it wants.
#[derive(Default)]
struct Recorder {
    pulls: bool,
    seen: Mutex<Vec<ImageEvent>>,
}

impl Recorder {
    fn with_pulls() -> Self {
        Recorder {
            pulls: true,
            ..Default::default()
        }
    }
    fn take(&self) -> Vec<ImageEvent> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

#[async_trait::async_trait]
impl EventListener for Recorder {
    async fn on_event(&self, event: &ImageEvent) {
        self.seen.lock().unwrap().push(event.clone());
    }
    fn wants(&self, ty: EventType) -> bool {
        self.pulls || ty != EventType::ImagePulled
    }
}

/// A listener that panics on every event.
struct Panicker;

#[async_trait::async_trait]
impl EventListener for Panicker {
    async fn on_event(&self, _: &ImageEvent) {
        panic!("listener failure");
    }
}

struct T {
    app: Router,
    _dir: tempfile::TempDir,
}

fn alice() -> Actor {
    Actor {
        account: "111122223333".into(),
        principal_arn: "arn:aws:iam::111122223333:user/alice".into(),
        principal_id: "AIDAALICE".into(),
        access_key_id: Some("AKIAALICE".into()),
        source_ip: Some("192.0.2.7".parse().unwrap()),
        user_agent: Some("skopeo/1.0".into()),
    }
}

async fn setup(listeners: Vec<Arc<dyn EventListener>>) -> T {
    let dir = tempfile::tempdir().unwrap();
    let meta = kura_store::testdb::from_env_or_sqlite(dir.path().join("meta.db")).await;
    let blobs = FsBlobStore::open(dir.path().join("blobs"))
        .await
        .unwrap()
        .without_fsync();
    let reg = Registry::new(Arc::new(meta), Arc::new(blobs), RegistryConfig::default());
    for l in listeners {
        reg.subscribe(l);
    }
    T {
        app: app(Arc::new(reg)),
        _dir: dir,
    }
}

impl T {
    async fn req(&self, method: Method, uri: &str, ct: Option<&str>, body: Vec<u8>) -> (StatusCode, String, Vec<u8>) {
        let mut b = Request::builder().method(method).uri(uri);
        if let Some(ct) = ct {
            b = b.header("content-type", ct);
        }
        let mut req = b.body(Body::from(body)).unwrap();
        req.extensions_mut().insert(alice());
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = resp.into_body().collect().await.unwrap().to_bytes().to_vec();
        (status, digest, body)
    }

    async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let d = Digest::sha256(data).to_string();
        let (status, _, body) = self
            .req(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
                None,
                data.to_vec(),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&body));
        d
    }

    /// Push an image (blobs, then the manifest under `reference`); returns its digest.
    async fn push_image(&self, repo: &str, reference: &str, seed: &str) -> String {
        let cfg = format!("{{\"seed\":\"{seed}\"}}");
        let c = self.push_blob(repo, cfg.as_bytes()).await;
        let m = json!({
            "schemaVersion": 2, "mediaType": OCI,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": c, "size": cfg.len()},
            "layers": [],
        });
        let (status, digest, body) = self
            .req(
                Method::PUT,
                &format!("/v2/{repo}/manifests/{reference}"),
                Some(OCI),
                serde_json::to_vec(&m).unwrap(),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&body));
        digest
    }
}

/// Every event names the repository, the account and the request's actor.
fn kinds(events: Vec<ImageEvent>, repo: &str) -> Vec<EventKind> {
    events
        .into_iter()
        .map(|e| {
            assert_eq!(e.actor, alice(), "the actor the guard handed in");
            assert_eq!(e.account, ACCOUNT);
            assert_eq!(e.repository, repo);
            assert_eq!(e.id.len(), 36, "a UUID");
            e.kind
        })
        .collect()
}

fn pushed(digest: &str, tags: &[&str]) -> EventKind {
    EventKind::ImagePushed {
        digest: digest.into(),
        media_type: OCI.into(),
        // An image manifest's artifact type is its config's media type.
        artifact_type: Some("application/vnd.oci.image.config.v1+json".into()),
        tags: tags.iter().map(|t| t.to_string()).collect(),
    }
}

fn tag(tag: &str, old: Option<&str>, new: Option<&str>) -> EventKind {
    EventKind::TagChanged {
        tag: tag.into(),
        old_digest: old.map(String::from),
        new_digest: new.map(String::from),
    }
}

/// Guards: a data-plane push emits ImagePushed (with its tag) and TagChanged
/// for the new tag, with the actor; blob uploads emit nothing.
#[tokio::test]
async fn push_emits_pushed_and_tag_added() {
    let rec = Arc::new(Recorder::default());
    let t = setup(vec![rec.clone()]).await;
    let d = t.push_image("app", "v1", "a").await;
    assert_eq!(
        kinds(rec.take(), "app"),
        vec![pushed(&d, &["v1"]), tag("v1", None, Some(&d))]
    );
}

/// Guards: moving a tag to another manifest says where it was and where it
/// is; re-pushing the same manifest under the same tag moves nothing.
#[tokio::test]
async fn tag_move_names_old_and_new_digest() {
    let rec = Arc::new(Recorder::default());
    let t = setup(vec![rec.clone()]).await;
    let d1 = t.push_image("app", "v1", "a").await;
    rec.take();
    let d2 = t.push_image("app", "v1", "b").await;
    assert_ne!(d1, d2);
    assert_eq!(
        kinds(rec.take(), "app"),
        vec![pushed(&d2, &["v1"]), tag("v1", Some(&d1), Some(&d2))]
    );
    t.push_image("app", "v1", "b").await;
    assert_eq!(kinds(rec.take(), "app"), vec![pushed(&d2, &["v1"])]);
}

/// Guards: DELETE by tag removes the tag only (TagChanged to nothing); DELETE
/// by digest deletes the image and ImageDeleted carries the tags it had.
#[tokio::test]
async fn delete_by_tag_and_by_digest() {
    let rec = Arc::new(Recorder::default());
    let t = setup(vec![rec.clone()]).await;
    let d = t.push_image("app", "v1", "a").await;
    t.push_image("app", "v2", "a").await;
    t.push_image("app", "v3", "a").await;
    rec.take();
    let (status, _, _) = t.req(Method::DELETE, "/v2/app/manifests/v3", None, vec![]).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(kinds(rec.take(), "app"), vec![tag("v3", Some(&d), None)]);
    let (status, _, _) = t
        .req(Method::DELETE, &format!("/v2/app/manifests/{d}"), None, vec![])
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(
        kinds(rec.take(), "app"),
        vec![EventKind::ImageDeleted {
            digest: d.clone(),
            tags: vec!["v1".into(), "v2".into()]
        }]
    );
    // A delete that finds nothing emits nothing.
    let (status, _, _) = t
        .req(Method::DELETE, &format!("/v2/app/manifests/{d}"), None, vec![])
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = t.req(Method::DELETE, "/v2/app/manifests/v1", None, vec![]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(rec.take().is_empty());
}

/// Guards: a cross-repository mount emits BlobMounted naming the source.
#[tokio::test]
async fn blob_mount_emits_blob_mounted() {
    let rec = Arc::new(Recorder::default());
    let t = setup(vec![rec.clone()]).await;
    let d = t.push_blob("base", b"shared layer").await;
    assert!(rec.take().is_empty(), "uploads are not image events");
    let (status, _, _) = t
        .req(
            Method::POST,
            &format!("/v2/app/blobs/uploads/?mount={d}&from=base"),
            None,
            vec![],
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        kinds(rec.take(), "app"),
        vec![EventKind::BlobMounted {
            digest: d,
            from_repository: "base".into()
        }]
    );
    // A mount that cannot happen (unknown source) is an upload: no event.
    let (status, _, _) = t
        .req(
            Method::POST,
            "/v2/app/blobs/uploads/?mount=sha256:0000000000000000000000000000000000000000000000000000000000000000&from=base",
            None,
            vec![],
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(rec.take().is_empty());
}

/// Guards: a GET of a manifest emits ImagePulled with the actor (and the tag
/// asked for) to a listener that wants pulls; HEAD is not a pull; a listener
/// that did not ask for pulls gets none.
#[tokio::test]
async fn pull_emits_image_pulled_to_listeners_that_want_it() {
    let pulls = Arc::new(Recorder::with_pulls());
    let quiet = Arc::new(Recorder::default());
    let t = setup(vec![pulls.clone(), quiet.clone()]).await;
    let d = t.push_image("app", "v1", "a").await;
    pulls.take();
    quiet.take();
    let (status, _, _) = t.req(Method::GET, "/v2/app/manifests/v1", None, vec![]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = t.req(Method::HEAD, "/v2/app/manifests/v1", None, vec![]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = t
        .req(Method::GET, &format!("/v2/app/manifests/{d}"), None, vec![])
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        kinds(pulls.take(), "app"),
        vec![
            EventKind::ImagePulled {
                digest: d.clone(),
                tag: Some("v1".into())
            },
            EventKind::ImagePulled { digest: d, tag: None },
        ]
    );
    assert!(quiet.take().is_empty(), "pulls are opt-in");
}

/// Guards: any number of listeners (the old push observer kept one and
/// dropped the rest): two listeners both receive every event, and a
/// listener that panics fails neither the request nor the others.
#[tokio::test]
async fn two_listeners_both_receive_every_event() {
    let a = Arc::new(Recorder::default());
    let b = Arc::new(Recorder::default());
    let t = setup(vec![a.clone(), Arc::new(Panicker), b.clone()]).await;
    let d = t.push_image("app", "v1", "a").await;
    let (status, _, _) = t
        .req(Method::DELETE, &format!("/v2/app/manifests/{d}"), None, vec![])
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (ea, eb) = (a.take(), b.take());
    assert_eq!(ea.len(), 3, "{ea:?}");
    assert_eq!(ea, eb, "the same events, ids included");
}

/// Guards: a push that fails (a missing blob) emits nothing.
#[tokio::test]
async fn failed_push_emits_nothing() {
    let rec = Arc::new(Recorder::default());
    let t = setup(vec![rec.clone()]).await;
    let m = json!({
        "schemaVersion": 2, "mediaType": OCI,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": Digest::sha256(b"nope").to_string(), "size": 4},
        "layers": [],
    });
    let (status, _, _) = t
        .req(
            Method::PUT,
            "/v2/app/manifests/v1",
            Some(OCI),
            serde_json::to_vec(&m).unwrap(),
        )
        .await;
    assert!(status.is_client_error(), "{status}");
    assert!(rec.take().is_empty());
}

/// Guards: a request without an actor (no guard in front) is anonymous.
#[tokio::test]
async fn no_guard_means_anonymous_actor() {
    let rec = Arc::new(Recorder::default());
    let t = setup(vec![rec.clone()]).await;
    let d = t.push_image("app", "v1", "a").await;
    rec.take();
    let req = Request::builder()
        .method(Method::DELETE)
        .uri(format!("/v2/app/manifests/{d}"))
        .header("user-agent", "curl/8")
        .body(Body::empty())
        .unwrap();
    let resp = t.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let events = rec.take();
    assert_eq!(events.len(), 1);
    assert!(events[0].actor.is_anonymous());
    assert_eq!(events[0].actor.user_agent.as_deref(), Some("curl/8"));
}
