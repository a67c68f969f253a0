//! The archive storage class through the whole application (`POST /` with
//! SigV4, the model's validation, authorization; the data plane behind the
//! guard): `UpdateImageStorageClass`, `imageStatus` in `DescribeImages` and
//! `ListImages` and their filters, archived images refused on the data plane
//! and by `BatchGetImage`/`StartImageScan`, the durable restore job
//! (ACTIVATING until it runs), lifecycle `transition` actions and previews,
//! and attacks: another account, tag/digest confusion, malformed input.

use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use kura_auth::seal::MasterKey;
use kura_ecr::auth::seal_secret;
use kura_oci::Digest;
use kura_store::control::AccessKeyRow;
use kura_store::meta::{ImageStatus, NewManifest, TagWrite};
use kura_store::{ControlStore, MetaStore};
use serde_json::{json, Value};
use tower::ServiceExt;

mod common;

use common::{ACCOUNT, KEY_ID, REGION, SECRET};

const TARGET: &str = "AmazonEC2ContainerRegistry_V20150921";
const HOST: &str = "localhost:5000";
const OCI: &str = "application/vnd.oci.image.manifest.v1+json";
const OTHER: &str = "210987654321";
const OTHER_KEY_ID: &str = "AKIAKURATESTROOTKEY2";
const OTHER_SECRET: &str = "kuraOtherSecretKey/0123456789abcdefghijK";
const REPO: &str = "team/app";

type Creds = (&'static str, &'static str);
const ROOT: Creds = (KEY_ID, SECRET);
const OTHER_ROOT: Creds = (OTHER_KEY_ID, OTHER_SECRET);

struct Resp {
    status: StatusCode,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON ({}): {}", self.status, String::from_utf8_lossy(&self.body)))
    }

    fn ok(&self) -> Value {
        assert_eq!(self.status, StatusCode::OK, "{}", String::from_utf8_lossy(&self.body));
        self.json()
    }

    /// An AWS JSON error of this status and `__type`; its message.
    fn err(&self, status: StatusCode, kind: &str) -> String {
        assert_eq!(self.status, status, "{}", String::from_utf8_lossy(&self.body));
        assert_eq!(self.json()["__type"], kind, "{}", String::from_utf8_lossy(&self.body));
        self.json()["message"].as_str().unwrap_or_default().to_string()
    }
}

struct T {
    s: common::Server,
}

impl T {
    /// The server, a second account (`OTHER`) with its root key, and a
    /// repository `team/app` in each.
    async fn new() -> T {
        let s = common::server().await;
        let master = MasterKey::load_or_create(&s.dir.path().join("master.key")).unwrap();
        s.store.account_ensure(OTHER).await.unwrap();
        s.store
            .access_key_put(&AccessKeyRow {
                access_key_id: OTHER_KEY_ID.into(),
                account: OTHER.into(),
                principal_arn: format!("arn:aws:iam::{OTHER}:root"),
                principal_id: OTHER.into(),
                secret_sealed: seal_secret(&master, OTHER_KEY_ID, OTHER_SECRET),
                status: "Active".into(),
                session_token_hash: None,
                expires_at: None,
                created_at: kura_store::now_millis(),
            })
            .await
            .unwrap();
        let t = T { s };
        for creds in [ROOT, OTHER_ROOT] {
            t.ecr(creds, "CreateRepository", json!({"repositoryName": REPO}))
                .await
                .ok();
        }
        t
    }

    async fn send(&self, req: Request<Body>) -> Resp {
        let resp = self.s.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes().to_vec();
        Resp { status, body }
    }

    async fn ecr_raw(&self, creds: Creds, op: &str, body: Vec<u8>) -> Resp {
        let mut headers = HeaderMap::new();
        headers.insert("host", HOST.parse().unwrap());
        headers.insert("content-type", "application/x-amz-json-1.1".parse().unwrap());
        headers.insert("x-amz-target", format!("{TARGET}.{op}").parse().unwrap());
        common::sign_post(&mut headers, &body, creds, REGION, "ecr", SystemTime::now());
        let mut b = Request::builder().method(Method::POST).uri("/");
        *b.headers_mut().unwrap() = headers;
        self.send(b.body(Body::from(body)).unwrap()).await
    }

    async fn ecr(&self, creds: Creds, op: &str, input: Value) -> Resp {
        self.ecr_raw(creds, op, serde_json::to_vec(&input).unwrap()).await
    }

    async fn call(&self, op: &str, input: Value) -> Value {
        self.ecr(ROOT, op, input).await.ok()
    }

    async fn token(&self, creds: Creds) -> String {
        let v = self.ecr(creds, "GetAuthorizationToken", json!({})).await.ok();
        format!(
            "Basic {}",
            v["authorizationData"][0]["authorizationToken"].as_str().unwrap()
        )
    }

    /// A data-plane request with a registry token, to `host`.
    async fn dp(&self, method: Method, host: &str, uri: &str, auth: &str, body: Vec<u8>) -> Resp {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", host)
            .header("authorization", auth)
            .header("accept", OCI)
            .body(Body::from(body))
            .unwrap();
        self.send(req).await
    }

    /// Push an image (config and one layer over the data plane, the manifest
    /// with `PutImage`) under `tag`; its digest and its layer's.
    async fn push(&self, tag: &str, seed: &str) -> (String, String) {
        let auth = self.token(ROOT).await;
        let cfg = format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"seed\":\"{seed}\"}}");
        let layer = format!("layer of {seed} ").repeat(50).into_bytes();
        let mut digests = Vec::new();
        for data in [cfg.as_bytes().to_vec(), layer.clone()] {
            let d = Digest::sha256(&data).to_string();
            let r = self
                .dp(
                    Method::POST,
                    HOST,
                    &format!("/v2/{REPO}/blobs/uploads/?digest={d}"),
                    &auth,
                    data,
                )
                .await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&r.body));
            digests.push(d);
        }
        let m = json!({
            "schemaVersion": 2, "mediaType": OCI,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digests[0], "size": cfg.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digests[1], "size": layer.len()}],
        });
        let v = self
            .call(
                "PutImage",
                json!({"repositoryName": REPO, "imageTag": tag, "imageManifest": m.to_string()}),
            )
            .await;
        (
            v["image"]["imageId"]["imageDigest"].as_str().unwrap().to_string(),
            digests[1].clone(),
        )
    }

    async fn set_class(&self, id: Value, class: &str) -> Value {
        self.call(
            "UpdateImageStorageClass",
            json!({"repositoryName": REPO, "imageId": id, "targetStorageClass": class}),
        )
        .await
    }

    /// The image's status as the store has it.
    async fn status(&self, account: &str, digest: &str) -> ImageStatus {
        let repo = self.s.store.repo_get(account, REPO).await.unwrap().unwrap().id;
        self.s.store.image_get(repo, digest).await.unwrap().unwrap().status
    }

    /// The digests `DescribeImages` lists with this filter (none: no filter).
    async fn described(&self, image_status: Option<&str>) -> Vec<(String, String)> {
        let mut input = json!({"repositoryName": REPO});
        if let Some(s) = image_status {
            input["filter"] = json!({"imageStatus": s});
        }
        let v = self.call("DescribeImages", input).await;
        let mut out: Vec<(String, String)> = v["imageDetails"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["imageDigest"].as_str().unwrap().to_string(),
                    d["imageStatus"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        out.sort();
        out
    }

    /// The digests `ListImages` lists with this filter.
    async fn listed(&self, image_status: Option<&str>) -> Vec<String> {
        let mut input = json!({"repositoryName": REPO});
        if let Some(s) = image_status {
            input["filter"] = json!({"imageStatus": s});
        }
        let v = self.call("ListImages", input).await;
        let mut out: Vec<String> = v["imageIds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["imageDigest"].as_str().unwrap().to_string())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Run this node's job runner until the image is ACTIVE (bounded).
    async fn run_jobs_until_active(&self, digest: &str) {
        let mut runner = kura_jobs::Runner::new(self.s.ecr.jobs().clone(), kura_jobs::RunnerConfig::default());
        for h in self.s.ecr.job_handlers() {
            runner.register(h);
        }
        let runner = runner.start();
        for _ in 0..400 {
            if self.status(ACCOUNT, digest).await == ImageStatus::Active {
                runner.shutdown().await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the restore job did not finish within 10 s");
    }
}

fn sorted(mut v: Vec<(String, String)>) -> Vec<(String, String)> {
    v.sort();
    v
}

fn pair(d: &str, s: &str) -> (String, String) {
    (d.to_string(), s.to_string())
}

/// Guards: archive by tag → ARCHIVED (echoing the id), listed only under the
/// ARCHIVED/ANY filters with `lastArchivedAt`, described by id whatever its
/// status; restore → ACTIVATING with a durable job that has not run yet (no
/// runner), then ACTIVE with `lastActivatedAt` once this node's runner runs it.
#[tokio::test]
async fn archive_and_restore_through_the_api() {
    let t = T::new().await;
    let (cold, _) = t.push("cold", "one").await;
    let (hot, _) = t.push("hot", "two").await;
    assert_eq!(
        t.described(None).await,
        sorted(vec![pair(&cold, "ACTIVE"), pair(&hot, "ACTIVE")])
    );

    let v = t.set_class(json!({"imageTag": "cold"}), "ARCHIVE").await;
    assert_eq!(v["imageStatus"], "ARCHIVED");
    assert_eq!(v["imageId"], json!({"imageDigest": cold, "imageTag": "cold"}));
    assert_eq!(v["registryId"], ACCOUNT);
    assert_eq!(v["repositoryName"], REPO);
    assert_eq!(t.status(ACCOUNT, &cold).await, ImageStatus::Archived);

    // Listings: ACTIVE only unless asked (ECR's default), per filter otherwise.
    assert_eq!(t.described(None).await, vec![pair(&hot, "ACTIVE")]);
    assert_eq!(t.described(Some("ACTIVE")).await, vec![pair(&hot, "ACTIVE")]);
    assert_eq!(t.described(Some("ARCHIVED")).await, vec![pair(&cold, "ARCHIVED")]);
    assert_eq!(
        t.described(Some("ANY")).await,
        sorted(vec![pair(&cold, "ARCHIVED"), pair(&hot, "ACTIVE")])
    );
    assert_eq!(t.listed(None).await, vec![hot.clone()]);
    assert_eq!(t.listed(Some("ARCHIVED")).await, vec![cold.clone()]);
    assert_eq!(t.listed(Some("ACTIVATING")).await, Vec::<String>::new());
    // By id: answered whatever its status, with when it was archived.
    let d = t
        .call(
            "DescribeImages",
            json!({"repositoryName": REPO, "imageIds": [{"imageTag": "cold"}]}),
        )
        .await;
    let detail = &d["imageDetails"][0];
    assert_eq!(detail["imageStatus"], "ARCHIVED");
    assert!(detail["lastArchivedAt"].as_f64().unwrap() > 1.7e9, "{detail}");
    assert!(detail.get("lastActivatedAt").is_none(), "{detail}");
    assert_eq!(detail["imageTags"], json!(["cold"]));

    // Restore: ACTIVATING until the job runs; no runner yet, so it waits.
    let v = t.set_class(json!({"imageDigest": cold}), "STANDARD").await;
    assert_eq!(v["imageStatus"], "ACTIVATING");
    assert_eq!(v["imageId"], json!({"imageDigest": cold}));
    assert_eq!(t.described(Some("ACTIVATING")).await, vec![pair(&cold, "ACTIVATING")]);
    assert_eq!(t.listed(Some("ACTIVATING")).await, vec![cold.clone()]);
    assert_eq!(t.described(None).await, vec![pair(&hot, "ACTIVE")]);
    // Asking again changes nothing (one job: the unique key).
    let again = t.set_class(json!({"imageTag": "cold"}), "STANDARD").await;
    assert_eq!(again["imageStatus"], "ACTIVATING");
    let jobs = t.s.store.as_ref() as &dyn kura_store::JobStore;
    let queued = jobs
        .job_list(None, Some(kura_ecr::archive::RESTORE_JOB), 0, 100)
        .await
        .unwrap();
    assert_eq!(queued.len(), 1, "one durable restore job: {queued:?}");

    t.run_jobs_until_active(&cold).await;
    let d = t
        .call(
            "DescribeImages",
            json!({"repositoryName": REPO, "imageIds": [{"imageDigest": cold}]}),
        )
        .await;
    let detail = &d["imageDetails"][0];
    assert_eq!(detail["imageStatus"], "ACTIVE");
    assert!(detail["lastActivatedAt"].as_f64().unwrap() >= detail["lastArchivedAt"].as_f64().unwrap());
    assert_eq!(
        t.described(None).await,
        sorted(vec![pair(&cold, "ACTIVE"), pair(&hot, "ACTIVE")])
    );
}

/// Guards: an archived image is refused on the data plane (GET and HEAD, by
/// tag and by digest: 404 with the OCI error JSON naming the status), by
/// `BatchGetImage` (`ImageInaccessible`) and `StartImageScan`
/// (`ImageArchivedException`); its layers stay (GC keeps them); after the
/// restore everything is served again.
#[tokio::test]
async fn archived_images_are_not_pullable_until_restored() {
    let t = T::new().await;
    let (d, layer) = t.push("v1", "pull").await;
    t.set_class(json!({"imageTag": "v1"}), "ARCHIVE").await;
    let auth = t.token(ROOT).await;
    for reference in ["v1", d.as_str()] {
        let uri = format!("/v2/{REPO}/manifests/{reference}");
        let r = t.dp(Method::GET, HOST, &uri, &auth, vec![]).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{reference}");
        let e = &r.json()["errors"][0];
        assert_eq!(e["code"], "MANIFEST_UNKNOWN", "{e}");
        assert!(e["message"].as_str().unwrap().contains("archived"), "{e}");
        assert_eq!(e["detail"]["imageStatus"], "ARCHIVED", "{e}");
        assert_eq!(e["detail"]["digest"], d.as_str(), "{e}");
        let r = t.dp(Method::HEAD, HOST, &uri, &auth, vec![]).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "HEAD {reference}");
    }
    let v = t
        .call(
            "BatchGetImage",
            json!({"repositoryName": REPO, "imageIds": [{"imageTag": "v1"}, {"imageDigest": d}]}),
        )
        .await;
    assert_eq!(v["images"], json!([]));
    let failures = v["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 2, "{v}");
    for f in failures {
        assert_eq!(f["failureCode"], "ImageInaccessible", "{f}");
    }
    assert_eq!(failures[0]["imageId"], json!({"imageTag": "v1"}));
    let msg = t
        .ecr(
            ROOT,
            "StartImageScan",
            json!({"repositoryName": REPO, "imageId": {"imageDigest": d}}),
        )
        .await
        .err(StatusCode::BAD_REQUEST, "ImageArchivedException");
    assert!(msg.contains("ARCHIVED"), "{msg}");
    // The layer's bytes are kept (a blob GET is not refused: layers are shared).
    let r = t
        .dp(Method::GET, HOST, &format!("/v2/{REPO}/blobs/{layer}"), &auth, vec![])
        .await;
    assert_eq!(r.status, StatusCode::OK);

    // Restoring: still refused while ACTIVATING, with that status.
    t.set_class(json!({"imageTag": "v1"}), "STANDARD").await;
    let r = t
        .dp(Method::GET, HOST, &format!("/v2/{REPO}/manifests/v1"), &auth, vec![])
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["errors"][0]["detail"]["imageStatus"], "ACTIVATING");
    t.run_jobs_until_active(&d).await;
    let r = t
        .dp(Method::GET, HOST, &format!("/v2/{REPO}/manifests/v1"), &auth, vec![])
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(Digest::sha256(&r.body).to_string(), d);
    let v = t
        .call(
            "BatchGetImage",
            json!({"repositoryName": REPO, "imageIds": [{"imageTag": "v1"}]}),
        )
        .await;
    assert_eq!(v["images"].as_array().unwrap().len(), 1, "{v}");
}

/// Guards: the same class again answers the status and changes nothing;
/// archiving an image being restored, or a manifest an index lists, is
/// `ImageStorageClassUpdateNotSupportedException`; archiving the index takes
/// the manifests it lists with it.
#[tokio::test]
async fn storage_class_rules() {
    let t = T::new().await;
    let (d, _) = t.push("v1", "rules").await;
    assert_eq!(
        t.set_class(json!({"imageTag": "v1"}), "STANDARD").await["imageStatus"],
        "ACTIVE"
    );
    assert_eq!(
        t.set_class(json!({"imageTag": "v1"}), "ARCHIVE").await["imageStatus"],
        "ARCHIVED"
    );
    assert_eq!(
        t.set_class(json!({"imageTag": "v1"}), "ARCHIVE").await["imageStatus"],
        "ARCHIVED"
    );
    t.set_class(json!({"imageTag": "v1"}), "STANDARD").await;
    let msg = t
        .ecr(
            ROOT,
            "UpdateImageStorageClass",
            json!({"repositoryName": REPO, "imageId": {"imageDigest": d}, "targetStorageClass": "ARCHIVE"}),
        )
        .await
        .err(StatusCode::BAD_REQUEST, "ImageStorageClassUpdateNotSupportedException");
    assert!(msg.contains("being restored"), "{msg}");
    assert_eq!(t.status(ACCOUNT, &d).await, ImageStatus::Activating);

    // An index and the manifest it lists (written to the store directly).
    let repo = t.s.store.repo_get(ACCOUNT, REPO).await.unwrap().unwrap().id;
    let child_body = json!({"schemaVersion": 2, "mediaType": OCI, "n": "child"})
        .to_string()
        .into_bytes();
    let child = Digest::sha256(&child_body).to_string();
    let index_body = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": OCI, "digest": child, "size": child_body.len()}]})
    .to_string()
    .into_bytes();
    let index = Digest::sha256(&index_body).to_string();
    for (digest, media, body, children, tag) in [
        (&child, OCI, child_body, vec![], None),
        (
            &index,
            "application/vnd.oci.image.index.v1+json",
            index_body,
            vec![child.clone()],
            Some("multi"),
        ),
    ] {
        let tags: Vec<TagWrite> = tag
            .map(|t: &str| TagWrite {
                name: t.into(),
                immutable: false,
            })
            .into_iter()
            .collect();
        t.s.store
            .manifest_put(
                repo,
                &NewManifest {
                    digest: digest.clone(),
                    media_type: media.into(),
                    artifact_type: None,
                    subject: None,
                    annotations: None,
                    body,
                    blobs: vec![],
                    children,
                },
                &tags,
            )
            .await
            .unwrap();
    }
    let msg = t
        .ecr(
            ROOT,
            "UpdateImageStorageClass",
            json!({"repositoryName": REPO, "imageId": {"imageDigest": child}, "targetStorageClass": "ARCHIVE"}),
        )
        .await
        .err(StatusCode::BAD_REQUEST, "ImageStorageClassUpdateNotSupportedException");
    assert!(msg.contains("manifest list"), "{msg}");
    assert_eq!(t.status(ACCOUNT, &child).await, ImageStatus::Active);
    t.set_class(json!({"imageTag": "multi"}), "ARCHIVE").await;
    assert_eq!(t.status(ACCOUNT, &index).await, ImageStatus::Archived);
    assert_eq!(
        t.status(ACCOUNT, &child).await,
        ImageStatus::Archived,
        "the listed manifest goes with its index"
    );
    let auth = t.token(ROOT).await;
    let r = t
        .dp(
            Method::GET,
            HOST,
            &format!("/v2/{REPO}/manifests/{child}"),
            &auth,
            vec![],
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::NOT_FOUND,
        "a platform image of an archived index is not pullable"
    );
}

/// Guards: archived bytes are metered apart (the store's usage by class), and
/// `imageSizeInBytes` stays the image's size whatever its class.
#[tokio::test]
async fn archived_bytes_are_metered_apart() {
    let t = T::new().await;
    let (d, _) = t.push("v1", "meter").await;
    let before = t.s.store.storage_usage(Some(ACCOUNT)).await.unwrap();
    assert_eq!(
        (before.standard_images, before.archive_images, before.archive_bytes),
        (1, 0, 0)
    );
    let size = t
        .call(
            "DescribeImages",
            json!({"repositoryName": REPO, "imageIds": [{"imageDigest": d}]}),
        )
        .await["imageDetails"][0]["imageSizeInBytes"]
        .as_i64()
        .unwrap();
    assert_eq!(size, before.standard_bytes);
    t.set_class(json!({"imageDigest": d}), "ARCHIVE").await;
    let after = t.s.store.storage_usage(Some(ACCOUNT)).await.unwrap();
    assert_eq!(
        (
            after.standard_images,
            after.standard_bytes,
            after.archive_images,
            after.archive_bytes
        ),
        (0, 0, 1, size)
    );
    let described = t
        .call(
            "DescribeImages",
            json!({"repositoryName": REPO, "imageIds": [{"imageDigest": d}]}),
        )
        .await;
    assert_eq!(described["imageDetails"][0]["imageSizeInBytes"], size);
    // The other account's meter is its own.
    assert_eq!(t.s.store.storage_usage(Some(OTHER)).await.unwrap().archive_bytes, 0);
}

/// Guards: a `transition` rule archives through the lifecycle runner (and
/// the preview shows it as TRANSITION with the summary's counts); an
/// `archive` rule then expires archived images only.
#[tokio::test]
async fn lifecycle_transitions_to_the_archive_and_expires_from_it() {
    let t = T::new().await;
    let (old, _) = t.push("old", "lc-1").await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let (new, _) = t.push("new", "lc-2").await;
    let policy = json!({"rules": [
        {"rulePriority": 1, "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1},
         "action": {"type": "transition", "targetStorageClass": "archive"}},
        {"rulePriority": 2, "selection": {"tagStatus": "any", "storageClass": "archive", "countType": "imageCountMoreThan", "countNumber": 5},
         "action": {"type": "expire"}}
    ]})
    .to_string();
    t.call(
        "PutLifecyclePolicy",
        json!({"repositoryName": REPO, "lifecyclePolicyText": policy}),
    )
    .await;

    // Preview (computed by the job, run here directly).
    t.call("StartLifecyclePolicyPreview", json!({"repositoryName": REPO}))
        .await;
    let mut runner = kura_jobs::Runner::new(t.s.ecr.jobs().clone(), kura_jobs::RunnerConfig::default());
    for h in t.s.ecr.job_handlers() {
        runner.register(h);
    }
    let runner = runner.start();
    let mut preview = Value::Null;
    for _ in 0..400 {
        preview = t
            .call("GetLifecyclePolicyPreview", json!({"repositoryName": REPO}))
            .await;
        if preview["status"] == "COMPLETE" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    runner.shutdown().await;
    assert_eq!(preview["status"], "COMPLETE", "{preview}");
    let results = preview["previewResults"].as_array().unwrap();
    assert_eq!(results.len(), 1, "{preview}");
    assert_eq!(results[0]["imageDigest"], old.as_str());
    assert_eq!(
        results[0]["action"],
        json!({"type": "TRANSITION", "targetStorageClass": "ARCHIVE"})
    );
    assert_eq!(results[0]["storageClass"], "STANDARD");
    assert_eq!(
        preview["summary"],
        json!({"expiringImageTotalCount": 0, "transitioningImageTotalCounts": [{"targetStorageClass": "ARCHIVE", "imageTotalCount": 1}]})
    );

    let report = kura_ecr::lifecycle::run_all(t.s.registry.clone(), t.s.store.clone())
        .await
        .unwrap();
    assert_eq!((report.transitioned, report.expired), (1, 0), "{report:?}");
    assert_eq!(t.status(ACCOUNT, &old).await, ImageStatus::Archived);
    assert_eq!(t.status(ACCOUNT, &new).await, ImageStatus::Active);
    // Again: nothing more to do (the archived image no longer counts as standard).
    let report = kura_ecr::lifecycle::run_all(t.s.registry.clone(), t.s.store.clone())
        .await
        .unwrap();
    assert_eq!((report.transitioned, report.expired), (0, 0), "{report:?}");

    // An archive rule keeping none expires the archived image only.
    let policy = json!({"rules": [
        {"rulePriority": 1, "selection": {"tagStatus": "any", "storageClass": "archive", "countType": "sinceImageTransitioned", "countUnit": "days", "countNumber": 1},
         "action": {"type": "expire"}},
        {"rulePriority": 2, "selection": {"tagStatus": "any", "storageClass": "archive", "countType": "imageCountMoreThan", "countNumber": 1},
         "action": {"type": "expire"}}
    ]})
    .to_string();
    // Rule 1 has the `any` of the archive class before rule 2: refused, as ECR.
    t.ecr(
        ROOT,
        "PutLifecyclePolicy",
        json!({"repositoryName": REPO, "lifecyclePolicyText": policy}),
    )
    .await
    .err(StatusCode::BAD_REQUEST, "InvalidParameterException");
    // Two archived images (one more archived by hand), one standard image;
    // an archive rule keeping 1 expires the older archived image only.
    let (third, _) = t.push("third", "lc-3").await;
    t.set_class(json!({"imageDigest": new}), "ARCHIVE").await;
    let keep_one = json!({"rules": [
        {"rulePriority": 1, "selection": {"tagStatus": "any", "storageClass": "archive", "countType": "imageCountMoreThan", "countNumber": 1},
         "action": {"type": "expire"}},
    ]})
    .to_string();
    t.call(
        "PutLifecyclePolicy",
        json!({"repositoryName": REPO, "lifecyclePolicyText": keep_one}),
    )
    .await;
    let report = kura_ecr::lifecycle::run_all(t.s.registry.clone(), t.s.store.clone())
        .await
        .unwrap();
    assert_eq!((report.transitioned, report.expired), (0, 1), "{report:?}");
    let repo = t.s.store.repo_get(ACCOUNT, REPO).await.unwrap().unwrap().id;
    assert!(
        t.s.store.image_get(repo, &old).await.unwrap().is_none(),
        "the older archived image expired"
    );
    assert_eq!(t.status(ACCOUNT, &new).await, ImageStatus::Archived);
    assert_eq!(
        t.status(ACCOUNT, &third).await,
        ImageStatus::Active,
        "standard images are not an archive rule's"
    );
}

/// Attacks: another account's image (by its registryId: denied; by the same
/// repository name in its own registry: not found), tag/digest confusion,
/// malformed input. Nothing changes in either account.
#[tokio::test]
async fn attacks_on_update_image_storage_class() {
    let t = T::new().await;
    let (a, _) = t.push("a", "attack-a").await;
    let (b, _) = t.push("b", "attack-b").await;

    // OTHER names ACCOUNT's registry: denied (no policy grants it).
    let r = t
        .ecr(
            OTHER_ROOT,
            "UpdateImageStorageClass",
            json!({"registryId": ACCOUNT, "repositoryName": REPO, "imageId": {"imageDigest": a}, "targetStorageClass": "ARCHIVE"}),
        )
        .await;
    r.err(StatusCode::FORBIDDEN, "AccessDeniedException");
    // OTHER's own `team/app` does not hold ACCOUNT's image.
    let msg = t
        .ecr(
            OTHER_ROOT,
            "UpdateImageStorageClass",
            json!({"repositoryName": REPO, "imageId": {"imageDigest": a}, "targetStorageClass": "ARCHIVE"}),
        )
        .await
        .err(StatusCode::BAD_REQUEST, "ImageNotFoundException");
    assert!(msg.contains(&format!("registry with id '{OTHER}'")), "{msg}");
    // Nor may OTHER list ACCOUNT's archived images.
    t.set_class(json!({"imageDigest": b}), "ARCHIVE").await;
    t.ecr(
        OTHER_ROOT,
        "DescribeImages",
        json!({"registryId": ACCOUNT, "repositoryName": REPO, "filter": {"imageStatus": "ARCHIVED"}}),
    )
    .await
    .err(StatusCode::FORBIDDEN, "AccessDeniedException");
    // …nor restore them.
    t.ecr(
        OTHER_ROOT,
        "UpdateImageStorageClass",
        json!({"registryId": ACCOUNT, "repositoryName": REPO, "imageId": {"imageDigest": b}, "targetStorageClass": "STANDARD"}),
    )
    .await
    .err(StatusCode::FORBIDDEN, "AccessDeniedException");
    assert_eq!(t.status(ACCOUNT, &b).await, ImageStatus::Archived);
    // OTHER's token on ACCOUNT's registry host: denied before anything about
    // the image (its status) is told.
    let other_auth = t.token(OTHER_ROOT).await;
    let r = t
        .dp(
            Method::GET,
            &format!("{ACCOUNT}.dkr.ecr.{REGION}.localhost"),
            &format!("/v2/{REPO}/manifests/{b}"),
            &other_auth,
            vec![],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", String::from_utf8_lossy(&r.body));
    assert!(!String::from_utf8_lossy(&r.body).contains("ARCHIVED"));

    // Tag/digest confusion: a's tag with b's digest archives neither.
    let msg = t
        .ecr(
            ROOT,
            "UpdateImageStorageClass",
            json!({"repositoryName": REPO, "imageId": {"imageTag": "a", "imageDigest": b}, "targetStorageClass": "STANDARD"}),
        )
        .await
        .err(StatusCode::BAD_REQUEST, "InvalidParameterException");
    assert!(msg.contains("does not match the given digest"), "{msg}");
    assert_eq!(t.status(ACCOUNT, &b).await, ImageStatus::Archived);
    t.ecr(
        ROOT,
        "UpdateImageStorageClass",
        json!({"repositoryName": REPO, "imageId": {"imageTag": "b", "imageDigest": a}, "targetStorageClass": "ARCHIVE"}),
    )
    .await
    .err(StatusCode::BAD_REQUEST, "InvalidParameterException");
    assert_eq!(t.status(ACCOUNT, &a).await, ImageStatus::Active);
    // A tag spelled like a digest is a tag that does not exist.
    let msg = t
        .ecr(
            ROOT,
            "UpdateImageStorageClass",
            json!({"repositoryName": REPO, "imageId": {"imageTag": "missing"}, "targetStorageClass": "ARCHIVE"}),
        )
        .await
        .err(StatusCode::BAD_REQUEST, "ImageNotFoundException");
    assert!(msg.contains("{imageDigest:'null', imageTag:'missing'}"), "{msg}");
    // Malformed: no id members, a bad digest, an unknown class, a missing
    // member, an unknown member, a non-JSON body, an oversized tag.
    let bad: Vec<(Value, &str)> = vec![
        (
            json!({"repositoryName": REPO, "imageId": {}, "targetStorageClass": "ARCHIVE"}),
            "InvalidParameterException",
        ),
        (
            json!({"repositoryName": REPO, "imageId": {"imageDigest": "sha256:zz"}, "targetStorageClass": "ARCHIVE"}),
            "InvalidParameterException",
        ),
        (
            json!({"repositoryName": REPO, "imageId": {"imageDigest": a}, "targetStorageClass": "GLACIER"}),
            "",
        ),
        (
            json!({"repositoryName": REPO, "imageId": {"imageDigest": a}, "targetStorageClass": "archive"}),
            "",
        ),
        (json!({"repositoryName": REPO, "imageId": {"imageDigest": a}}), ""),
        (
            json!({"repositoryName": REPO, "imageId": {"imageDigest": a}, "targetStorageClass": "ARCHIVE", "force": true}),
            "SerializationException",
        ),
        (
            json!({"repositoryName": REPO, "imageId": {"imageTag": "t".repeat(400)}, "targetStorageClass": "ARCHIVE"}),
            "",
        ),
        (
            json!({"repositoryName": "../etc", "imageId": {"imageDigest": a}, "targetStorageClass": "ARCHIVE"}),
            "",
        ),
        (
            json!({"repositoryName": REPO, "imageId": "a", "targetStorageClass": "ARCHIVE"}),
            "",
        ),
    ];
    for (input, kind) in bad {
        let r = t.ecr(ROOT, "UpdateImageStorageClass", input.clone()).await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "{input}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let ty = r.json()["__type"].as_str().unwrap_or_default().to_string();
        assert!(!ty.is_empty(), "{input}: an AWS error");
        if !kind.is_empty() {
            assert_eq!(ty, kind, "{input}");
        }
    }
    let r = t.ecr_raw(ROOT, "UpdateImageStorageClass", b"{not json".to_vec()).await;
    r.err(StatusCode::BAD_REQUEST, "SerializationException");
    // A filter value outside the model's enum.
    let r = t
        .ecr(
            ROOT,
            "DescribeImages",
            json!({"repositoryName": REPO, "filter": {"imageStatus": "GONE"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(t.status(ACCOUNT, &a).await, ImageStatus::Active);
    assert_eq!(t.status(ACCOUNT, &b).await, ImageStatus::Archived);
    // A repository that does not exist.
    t.ecr(
        ROOT,
        "UpdateImageStorageClass",
        json!({"repositoryName": "no/such", "imageId": {"imageDigest": a}, "targetStorageClass": "ARCHIVE"}),
    )
    .await
    .err(StatusCode::BAD_REQUEST, "RepositoryNotFoundException");
}
