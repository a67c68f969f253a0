//! ECR Public's image and layer operations, repository policies and tags
//! through the whole application: a push through the API alone (layer
//! uploads in parts, PutImage), the images read back (DescribeImages,
//! DescribeImageTags, anonymously on the data plane), deletes; the errors of
//! each; and the attacks: a private repository named through the public
//! API, another account's repositories and uploads, oversized and
//! misplaced parts.

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use base64::Engine;
use http_body_util::BodyExt;
use kura_auth::seal::MasterKey;
use kura_oci::Digest;
use kura_store::control::AccessKeyRow;
use kura_store::{ControlStore, IamStore, SqlMetaStore};
use serde_json::{json, Value};
use tower::ServiceExt;

mod common;

use common::{ACCOUNT, KEY_ID, SECRET};

const PUBLIC: &str = "SpencerFrontendService";
const PRIVATE: &str = "AmazonEC2ContainerRegistry_V20150921";
const HOST: &str = "localhost:5000";
const OTHER: &str = "210987654321";
const OTHER_KEY: &str = "AKIAKURATESTOTHERKEY";
const OTHER_SECRET: &str = "otherSecretKey/0123456789abcdefghijKLMNO";
const BOB_KEY: &str = "AKIAKURATESTBOBKEY01";
const BOB_SECRET: &str = "bobSecretKey/0123456789abcdefghijKLMNOPQ";
const ROOT: (&str, &str) = (KEY_ID, SECRET);
const OTHER_ROOT: (&str, &str) = (OTHER_KEY, OTHER_SECRET);
const BOB: (&str, &str) = (BOB_KEY, BOB_SECRET);

struct T {
    app: axum::Router,
    store: Arc<SqlMetaStore>,
    _dir: tempfile::TempDir,
}

struct Resp {
    status: StatusCode,
    body: Vec<u8>,
}

impl Resp {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| panic!("not JSON: {:?}", self.text()))
    }

    /// A JSON 1.1 error of this type (400, or 403 for AccessDeniedException).
    #[track_caller]
    fn assert_error(&self, kind: &str) {
        let status = if kind == "AccessDeniedException" {
            StatusCode::FORBIDDEN
        } else {
            StatusCode::BAD_REQUEST
        };
        assert_eq!(self.status, status, "{kind}: {}", self.text());
        assert_eq!(self.json()["__type"], kind, "{}", self.text());
    }
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn public_arn(account: &str, name: &str) -> String {
    format!("arn:aws:ecr-public::{account}:repository/{name}")
}

/// A key of `account` for `principal` (id `principal_id`).
async fn key(
    store: &SqlMetaStore,
    master: &MasterKey,
    (id, secret): (&str, &str),
    account: &str,
    principal: &str,
    principal_id: &str,
) {
    store
        .access_key_put(&AccessKeyRow {
            access_key_id: id.into(),
            account: account.into(),
            principal_arn: principal.into(),
            principal_id: principal_id.into(),
            secret_sealed: kura_ecr::auth::seal_secret(master, id, secret),
            status: "Active".into(),
            session_token_hash: None,
            expires_at: None,
            created_at: kura_store::now_millis(),
        })
        .await
        .unwrap();
}

/// The server; a second account (OTHER) with its root key; user `bob` of
/// ACCOUNT with `policy` inline (if any).
async fn setup(bob_policy: Option<Value>) -> T {
    let s = common::server().await;
    let master = MasterKey::load_or_create(&s.dir.path().join("master.key")).unwrap();
    s.store.account_ensure(OTHER).await.unwrap();
    key(
        &s.store,
        &master,
        OTHER_ROOT,
        OTHER,
        &format!("arn:aws:iam::{OTHER}:root"),
        OTHER,
    )
    .await;
    let bob = format!("arn:aws:iam::{ACCOUNT}:user/bob");
    key(&s.store, &master, BOB, ACCOUNT, &bob, &format!("AIDA{BOB_KEY}")).await;
    s.store
        .iam_entity_create(&kura_store::iam::IamEntity {
            account: ACCOUNT.into(),
            kind: "user".into(),
            name: "bob".into(),
            id: format!("AIDA{BOB_KEY}"),
            path: "/".into(),
            arn: bob,
            body: "{}".into(),
            created_at: 1,
        })
        .await
        .unwrap();
    if let Some(p) = bob_policy {
        s.store
            .iam_inline_put(ACCOUNT, "user", "bob", "p", &p.to_string())
            .await
            .unwrap();
    }
    T {
        app: s.app,
        store: s.store,
        _dir: s.dir,
    }
}

impl T {
    async fn send(&self, req: Request<Body>) -> Resp {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes().to_vec();
        Resp { status, body }
    }

    async fn call(&self, target: &str, service: &str, key: (&str, &str), input: &Value) -> Resp {
        let body = serde_json::to_vec(input).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("host", HOST.parse().unwrap());
        headers.insert("content-type", "application/x-amz-json-1.1".parse().unwrap());
        headers.insert("x-amz-target", target.parse().unwrap());
        common::sign_post(&mut headers, &body, key, common::REGION, service, SystemTime::now());
        let mut b = Request::builder().method(Method::POST).uri("/");
        *b.headers_mut().unwrap() = headers;
        self.send(b.body(Body::from(body)).unwrap()).await
    }

    /// An ECR Public call with `key`.
    async fn public_as(&self, key: (&str, &str), op: &str, input: Value) -> Resp {
        self.call(&format!("{PUBLIC}.{op}"), "ecr-public", key, &input).await
    }

    async fn public(&self, op: &str, input: Value) -> Resp {
        self.public_as(ROOT, op, input).await
    }

    async fn ok_as(&self, key: (&str, &str), op: &str, input: Value) -> Value {
        let r = self.public_as(key, op, input).await;
        assert_eq!(r.status, StatusCode::OK, "{op}: {}", r.text());
        r.json()
    }

    async fn ok(&self, op: &str, input: Value) -> Value {
        self.ok_as(ROOT, op, input).await
    }

    /// A private ECR call as the root that must succeed.
    async fn private(&self, op: &str, input: Value) -> Value {
        let r = self.call(&format!("{PRIVATE}.{op}"), "ecr", ROOT, &input).await;
        assert_eq!(r.status, StatusCode::OK, "{op}: {}", r.text());
        r.json()
    }

    /// Upload a layer through ECR Public's API in parts of `part` bytes, as
    /// `key` into `account`'s `repo`; its digest.
    async fn upload_as(&self, key: (&str, &str), account: &str, repo: &str, data: &[u8], part: usize) -> String {
        let r = json!({"registryId": account, "repositoryName": repo});
        let up = self.ok_as(key, "InitiateLayerUpload", r.clone()).await;
        assert_eq!(up["partSize"], 10 * 1024 * 1024);
        let id = up["uploadId"].as_str().unwrap().to_string();
        for (i, chunk) in data.chunks(part).enumerate() {
            let first = i * part;
            let mut input = r.clone();
            input["uploadId"] = json!(id);
            input["partFirstByte"] = json!(first);
            input["partLastByte"] = json!(first + chunk.len() - 1);
            input["layerPartBlob"] = json!(b64(chunk));
            let v = self.ok_as(key, "UploadLayerPart", input).await;
            assert_eq!(v["lastByteReceived"], first + chunk.len() - 1);
            assert_eq!(v["uploadId"], id.as_str());
        }
        let digest = Digest::sha256(data).to_string();
        let mut input = r;
        input["uploadId"] = json!(id);
        input["layerDigests"] = json!([digest]);
        let v = self.ok_as(key, "CompleteLayerUpload", input).await;
        assert_eq!(v["layerDigest"], digest.as_str());
        digest
    }

    /// Push a one-layer image with `tag` through the API alone, as `key`
    /// into `account`'s `repo`; the manifest and its digest.
    async fn push_as(&self, key: (&str, &str), account: &str, repo: &str, tag: &str) -> (String, String) {
        let cfg = format!(r#"{{"architecture":"amd64","os":"linux","tag":"{tag}"}}"#).into_bytes();
        let layer = format!("the layer of {repo}:{tag}").repeat(50).into_bytes();
        let c = self.upload_as(key, account, repo, &cfg, 1 << 20).await;
        let l = self.upload_as(key, account, repo, &layer, 333).await;
        let m = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": c, "size": cfg.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": l, "size": layer.len()}],
        })
        .to_string();
        let v = self
            .ok_as(
                key,
                "PutImage",
                json!({"registryId": account, "repositoryName": repo, "imageManifest": m, "imageTag": tag}),
            )
            .await;
        let digest = Digest::sha256(m.as_bytes()).to_string();
        assert_eq!(v["image"]["imageId"], json!({"imageDigest": digest, "imageTag": tag}));
        assert_eq!(v["image"]["imageManifest"], m.as_str());
        assert_eq!(
            v["image"]["imageManifestMediaType"],
            "application/vnd.oci.image.manifest.v1+json"
        );
        (m, digest)
    }

    async fn push(&self, repo: &str, tag: &str) -> (String, String) {
        self.push_as(ROOT, ACCOUNT, repo, tag).await
    }

    async fn anonymous_get(&self, path: &str) -> Resp {
        let req = Request::builder()
            .method(Method::GET)
            .uri(path)
            .header("host", HOST)
            .header("accept", "application/vnd.oci.image.manifest.v1+json")
            .body(Body::empty())
            .unwrap();
        self.send(req).await
    }
}

// ---------------------------------------------------------------------------
// The operations

#[tokio::test]
async fn push_describe_and_delete_through_the_public_api() {
    let t = setup(None).await;
    t.ok("CreateRepository", json!({"repositoryName": "team/app"})).await;
    let missing = Digest::sha256(b"nothing").to_string();
    let v = t
        .ok(
            "BatchCheckLayerAvailability",
            json!({"repositoryName": "team/app", "layerDigests": [missing, "not-a-digest"]}),
        )
        .await;
    assert_eq!(v["layers"], json!([]));
    assert_eq!(v["failures"][0]["failureCode"], "MissingLayerDigest");
    assert_eq!(v["failures"][1]["failureCode"], "InvalidLayerDigest");

    let (m1, d1) = t.push("team/app", "v1").await;
    let (_, d2) = t.push("team/app", "v2").await;
    let layer = "the layer of team/app:v1".repeat(50);
    let ld = Digest::sha256(layer.as_bytes()).to_string();
    let v = t
        .ok(
            "BatchCheckLayerAvailability",
            json!({"repositoryName": "team/app", "layerDigests": [ld]}),
        )
        .await;
    assert_eq!(
        v["layers"],
        json!([{"layerDigest": ld, "layerAvailability": "AVAILABLE", "layerSize": layer.len()}])
    );
    assert_eq!(v["failures"], json!([]));

    // The same image under the same tag again: ECR's error.
    t.public(
        "PutImage",
        json!({"repositoryName": "team/app", "imageManifest": m1, "imageTag": "v1"}),
    )
    .await
    .assert_error("ImageAlreadyExistsException");
    // Under another tag: a second tag of the same image.
    t.ok(
        "PutImage",
        json!({"repositoryName": "team/app", "imageManifest": m1, "imageTag": "latest"}),
    )
    .await;

    // DescribeImages: ECR Public's members only.
    let v = t.ok("DescribeImages", json!({"repositoryName": "team/app"})).await;
    let details = v["imageDetails"].as_array().unwrap();
    assert_eq!(details.len(), 2, "{v}");
    let one = details.iter().find(|d| d["imageDigest"] == d1.as_str()).unwrap();
    assert_eq!(one["imageTags"], json!(["latest", "v1"]));
    assert_eq!(one["registryId"], ACCOUNT);
    assert_eq!(one["repositoryName"], "team/app");
    assert_eq!(
        one["imageManifestMediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(one["artifactMediaType"], "application/vnd.oci.image.config.v1+json");
    assert!(one["imageSizeInBytes"].as_i64().unwrap() > layer.len() as i64);
    assert!(one["imagePushedAt"].as_f64().unwrap() > 1.7e9);
    for k in ["imageStatus", "lastRecordedPullTime", "imageScanStatus"] {
        assert!(one.get(k).is_none(), "{k} is not ECR Public's: {one}");
    }
    // Paged, by id, and an id that is not there.
    let p1 = t
        .ok("DescribeImages", json!({"repositoryName": "team/app", "maxResults": 1}))
        .await;
    assert_eq!(p1["imageDetails"].as_array().unwrap().len(), 1);
    let token = p1["nextToken"].as_str().unwrap();
    let p2 = t
        .ok(
            "DescribeImages",
            json!({"repositoryName": "team/app", "maxResults": 1, "nextToken": token}),
        )
        .await;
    assert_eq!(p2["imageDetails"].as_array().unwrap().len(), 1);
    assert_ne!(
        p1["imageDetails"][0]["imageDigest"],
        p2["imageDetails"][0]["imageDigest"]
    );
    assert!(p2.get("nextToken").is_none(), "{p2}");
    let v = t
        .ok(
            "DescribeImages",
            json!({"repositoryName": "team/app", "imageIds": [{"imageTag": "v2"}, {"imageDigest": d2}]}),
        )
        .await;
    assert_eq!(v["imageDetails"].as_array().unwrap().len(), 1, "one image, named twice");
    assert_eq!(v["imageDetails"][0]["imageDigest"], d2.as_str());
    let r = t
        .public(
            "DescribeImages",
            json!({"repositoryName": "team/app", "imageIds": [{"imageTag": "v9"}]}),
        )
        .await;
    r.assert_error("ImageNotFoundException");
    assert!(r.text().contains("team/app"), "{}", r.text());

    // DescribeImageTags, in tag order, paged.
    let v = t
        .ok(
            "DescribeImageTags",
            json!({"repositoryName": "team/app", "maxResults": 2}),
        )
        .await;
    let tags: Vec<&str> = v["imageTagDetails"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["imageTag"].as_str().unwrap())
        .collect();
    assert_eq!(tags, ["latest", "v1"]);
    assert_eq!(v["imageTagDetails"][0]["imageDetail"]["imageDigest"], d1.as_str());
    assert!(v["imageTagDetails"][0]["createdAt"].as_f64().unwrap() > 1.7e9);
    let v = t
        .ok(
            "DescribeImageTags",
            json!({"repositoryName": "team/app", "nextToken": v["nextToken"]}),
        )
        .await;
    assert_eq!(v["imageTagDetails"][0]["imageTag"], "v2");
    assert_eq!(v["imageTagDetails"][0]["imageDetail"]["imageDigest"], d2.as_str());
    assert!(v.get("nextToken").is_none());

    // What the API pushed, anyone pulls; private ECR sees the same images.
    let r = t.anonymous_get("/v2/team/app/manifests/v1").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.text(), m1);
    let p = t.private("ListImages", json!({"repositoryName": "team/app"})).await;
    assert_eq!(p["imageIds"].as_array().unwrap().len(), 3, "{p}");

    // BatchDeleteImage: a tag untags; a digest deletes the image with its
    // tags; what is not there is a failure.
    let v = t
        .ok(
            "BatchDeleteImage",
            json!({"repositoryName": "team/app", "imageIds": [{"imageTag": "latest"}, {"imageDigest": d2}, {"imageTag": "nope"}]}),
        )
        .await;
    assert_eq!(
        v["imageIds"],
        json!([{"imageDigest": d1, "imageTag": "latest"}, {"imageDigest": d2, "imageTag": "v2"}])
    );
    assert_eq!(v["failures"][0]["failureCode"], "ImageNotFound");
    assert_eq!(v["failures"][0]["imageId"], json!({"imageTag": "nope"}));
    let v = t.ok("DescribeImages", json!({"repositoryName": "team/app"})).await;
    assert_eq!(v["imageDetails"].as_array().unwrap().len(), 1);
    assert_eq!(v["imageDetails"][0]["imageTags"], json!(["v1"]));
    let r = t.anonymous_get("/v2/team/app/manifests/v2").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    t.public("DeleteRepository", json!({"repositoryName": "team/app"}))
        .await
        .assert_error("RepositoryNotEmptyException");
    t.ok(
        "BatchDeleteImage",
        json!({"repositoryName": "team/app", "imageIds": [{"imageTag": "v1"}]}),
    )
    .await;
    t.ok("DeleteRepository", json!({"repositoryName": "team/app"})).await;
}

#[tokio::test]
async fn layer_upload_and_put_image_errors() {
    let t = setup(None).await;
    t.ok("CreateRepository", json!({"repositoryName": "up"})).await;
    let repo = json!({"repositoryName": "up"});
    let id = t.ok("InitiateLayerUpload", repo.clone()).await["uploadId"]
        .as_str()
        .unwrap()
        .to_string();
    let part = |first: usize, last: usize, data: &[u8]| json!({"repositoryName": "up", "uploadId": id, "partFirstByte": first, "partLastByte": last, "layerPartBlob": b64(data)});
    let complete = |digest: &str| json!({"repositoryName": "up", "uploadId": id, "layerDigests": [digest]});
    let data = b"0123456789abcdef".repeat(64);
    let digest = Digest::sha256(&data).to_string();

    // Nothing uploaded yet.
    t.public("CompleteLayerUpload", complete(&digest))
        .await
        .assert_error("EmptyUploadException");
    // A part whose range does not say its length.
    t.public("UploadLayerPart", part(0, 99, &data[..50]))
        .await
        .assert_error("InvalidLayerPartException");
    // A part not where the upload stands (a gap, then a rewrite).
    t.ok("UploadLayerPart", part(0, 511, &data[..512])).await;
    t.public("UploadLayerPart", part(600, 699, &data[600..700]))
        .await
        .assert_error("InvalidLayerPartException");
    t.public("UploadLayerPart", part(0, 99, &data[..100]))
        .await
        .assert_error("InvalidLayerPartException");
    // An oversized part: past ECR Public's 20 MiB part limit, refused by
    // the model before a byte is written.
    let big = vec![7u8; 20 * 1024 * 1024 + 1];
    t.public("UploadLayerPart", part(512, 512 + big.len() - 1, &big))
        .await
        .assert_error("InvalidParameterException");
    // The upload is intact: it goes on where it stood and completes.
    t.ok("UploadLayerPart", part(512, data.len() - 1, &data[512..])).await;
    let v = t.ok("CompleteLayerUpload", complete(&digest)).await;
    assert_eq!(v["layerDigest"], digest.as_str());
    // Finished: the id is gone.
    t.public("UploadLayerPart", part(0, 9, &data[..10]))
        .await
        .assert_error("UploadNotFoundException");
    // The same layer again.
    let again = t.ok("InitiateLayerUpload", repo.clone()).await["uploadId"].clone();
    t.ok(
        "UploadLayerPart",
        json!({"repositoryName": "up", "uploadId": again, "partFirstByte": 0, "partLastByte": data.len() - 1, "layerPartBlob": b64(&data)}),
    )
    .await;
    t.public(
        "CompleteLayerUpload",
        json!({"repositoryName": "up", "uploadId": again, "layerDigests": [digest]}),
    )
    .await
    .assert_error("LayerAlreadyExistsException");
    // A digest that is not the upload's: refused, and the upload is dropped.
    let bad = t.ok("InitiateLayerUpload", repo.clone()).await["uploadId"].clone();
    t.ok(
        "UploadLayerPart",
        json!({"repositoryName": "up", "uploadId": bad, "partFirstByte": 0, "partLastByte": 2, "layerPartBlob": b64(b"abc")}),
    )
    .await;
    t.public(
        "CompleteLayerUpload",
        json!({"repositoryName": "up", "uploadId": bad, "layerDigests": [Digest::sha256(b"abd").to_string()]}),
    )
    .await
    .assert_error("InvalidLayerException");
    let v = t
        .ok(
            "BatchCheckLayerAvailability",
            json!({"repositoryName": "up", "layerDigests": [Digest::sha256(b"abc").to_string()]}),
        )
        .await;
    assert_eq!(v["failures"][0]["failureCode"], "MissingLayerDigest", "{v}");
    // An upload id nobody started.
    t.public(
        "UploadLayerPart",
        json!({"repositoryName": "up", "uploadId": "00000000-0000-4000-8000-000000000000", "partFirstByte": 0, "partLastByte": 0, "layerPartBlob": "AA=="}),
    )
    .await
    .assert_error("UploadNotFoundException");

    // PutImage: layers that are not there; a digest that is not the manifest's; garbage.
    let cfg = Digest::sha256(b"{}").to_string();
    let m = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": data.len()}],
    })
    .to_string();
    t.public(
        "PutImage",
        json!({"repositoryName": "up", "imageManifest": m, "imageTag": "x"}),
    )
    .await
    .assert_error("LayersNotFoundException");
    t.public(
        "PutImage",
        json!({"repositoryName": "up", "imageManifest": m, "imageDigest": Digest::sha256(b"x").to_string()}),
    )
    .await
    .assert_error("ImageDigestDoesNotMatchException");
    t.public(
        "PutImage",
        json!({"repositoryName": "up", "imageManifest": "{not json"}),
    )
    .await
    .assert_error("InvalidParameterException");
    let v = t.ok("DescribeImages", json!({"repositoryName": "up"})).await;
    assert_eq!(v["imageDetails"], json!([]), "nothing was pushed");
}

#[tokio::test]
async fn repository_policies_and_tags() {
    let t = setup(None).await;
    t.ok("CreateRepository", json!({"repositoryName": "pol"})).await;
    let repo = json!({"repositoryName": "pol"});
    t.public("GetRepositoryPolicy", repo.clone())
        .await
        .assert_error("RepositoryPolicyNotFoundException");
    let text = json!({"Version": "2012-10-17", "Statement": [{"Sid": "Deny", "Effect": "Deny",
        "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:user/bob")}, "Action": "ecr-public:*"}]})
    .to_string();
    let v = t
        .ok(
            "SetRepositoryPolicy",
            json!({"repositoryName": "pol", "policyText": text}),
        )
        .await;
    assert_eq!(
        v,
        json!({"registryId": ACCOUNT, "repositoryName": "pol", "policyText": text})
    );
    assert_eq!(
        t.ok("GetRepositoryPolicy", repo.clone()).await["policyText"],
        text.as_str()
    );
    // Kept under the public ARN: private ECR's policy of the repository is another.
    assert!(t
        .store
        .resource_policy_get(&public_arn(ACCOUNT, "pol"))
        .await
        .unwrap()
        .is_some());
    t.call(
        &format!("{PRIVATE}.GetRepositoryPolicy"),
        "ecr",
        ROOT,
        &json!({"repositoryName": "pol"}),
    )
    .await
    .assert_error("RepositoryPolicyNotFoundException");
    t.public(
        "SetRepositoryPolicy",
        json!({"repositoryName": "pol", "policyText": "{\"Statement\": 1}"}),
    )
    .await
    .assert_error("InvalidParameterException");
    assert_eq!(
        t.ok("DeleteRepositoryPolicy", repo.clone()).await["policyText"],
        text.as_str()
    );
    t.public("DeleteRepositoryPolicy", repo.clone())
        .await
        .assert_error("RepositoryPolicyNotFoundException");

    // Tags.
    let arn = public_arn(ACCOUNT, "pol");
    t.ok(
        "TagResource",
        json!({"resourceArn": arn, "tags": [{"Key": "team", "Value": "a"}, {"Key": "env", "Value": "dev"}]}),
    )
    .await;
    t.ok("UntagResource", json!({"resourceArn": arn, "tagKeys": ["env"]}))
        .await;
    assert_eq!(
        t.ok("ListTagsForResource", json!({"resourceArn": arn})).await["tags"],
        json!([{"Key": "team", "Value": "a"}])
    );
    t.public(
        "TagResource",
        json!({"resourceArn": arn, "tags": [{"Key": "aws:x", "Value": "a"}]}),
    )
    .await
    .assert_error("InvalidTagParameterException");
    let many: Vec<Value> = (0..50).map(|i| json!({"Key": format!("k{i}"), "Value": ""})).collect();
    t.public("TagResource", json!({"resourceArn": arn, "tags": many}))
        .await
        .assert_error("TooManyTagsException");
    assert_eq!(
        t.ok("ListTagsForResource", json!({"resourceArn": arn})).await["tags"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "a refused call sets nothing"
    );
    let r = t
        .public("ListTagsForResource", json!({"resourceArn": "arn:aws:ecr-public::bad"}))
        .await;
    r.assert_error("InvalidParameterException");
    assert!(r.text().contains("Invalid ARN"), "{}", r.text());

    // Deleting the repository drops both; a new one of the name starts clean.
    t.ok(
        "SetRepositoryPolicy",
        json!({"repositoryName": "pol", "policyText": text}),
    )
    .await;
    t.ok("DeleteRepository", repo.clone()).await;
    t.public("ListTagsForResource", json!({"resourceArn": arn}))
        .await
        .assert_error("RepositoryNotFoundException");
    t.ok("CreateRepository", repo.clone()).await;
    assert_eq!(
        t.ok("ListTagsForResource", json!({"resourceArn": arn})).await["tags"],
        json!([])
    );
    t.public("GetRepositoryPolicy", repo)
        .await
        .assert_error("RepositoryPolicyNotFoundException");
}

#[tokio::test]
async fn authorized_as_ecr_public_actions_with_the_repository_policy() {
    // bob may do anything in ECR Public by his identity policy.
    let t = setup(Some(json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "ecr-public:*", "Resource": "*"}]})))
    .await;
    t.ok("CreateRepository", json!({"repositoryName": "guarded"})).await;
    let (_, digest) = t.push_as(BOB, ACCOUNT, "guarded", "v1").await;
    // The repository's policy denies him deletes and uploads.
    let deny = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Deny",
        "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:user/bob")},
        "Action": ["ecr-public:BatchDeleteImage", "ecr-public:InitiateLayerUpload", "ecr-public:TagResource"]}]});
    t.ok(
        "SetRepositoryPolicy",
        json!({"repositoryName": "guarded", "policyText": deny.to_string()}),
    )
    .await;
    for (op, input) in [
        (
            "BatchDeleteImage",
            json!({"repositoryName": "guarded", "imageIds": [{"imageDigest": digest}]}),
        ),
        ("InitiateLayerUpload", json!({"repositoryName": "guarded"})),
        (
            "TagResource",
            json!({"resourceArn": public_arn(ACCOUNT, "guarded"), "tags": [{"Key": "a", "Value": "b"}]}),
        ),
    ] {
        let r = t.public_as(BOB, op, input).await;
        r.assert_error("AccessDeniedException");
        assert!(r.text().contains(&format!("ecr-public:{op}")), "{}", r.text());
    }
    // What the policy does not name, he still may; the root is not bob.
    t.ok_as(BOB, "DescribeImages", json!({"repositoryName": "guarded"}))
        .await;
    t.ok(
        "BatchDeleteImage",
        json!({"repositoryName": "guarded", "imageIds": [{"imageDigest": digest}]}),
    )
    .await;
}

// ---------------------------------------------------------------------------
// Attacks

#[tokio::test]
async fn a_private_repository_is_not_found_through_the_public_api() {
    let t = setup(None).await;
    t.private("CreateRepository", json!({"repositoryName": "secret/app"}))
        .await;
    // An image in it, pushed through private ECR's API with the same helpers' calls.
    let layer = b"private bytes".to_vec();
    let up = t
        .private("InitiateLayerUpload", json!({"repositoryName": "secret/app"}))
        .await;
    t.private(
        "UploadLayerPart",
        json!({"repositoryName": "secret/app", "uploadId": up["uploadId"], "partFirstByte": 0,
            "partLastByte": layer.len() - 1, "layerPartBlob": b64(&layer)}),
    )
    .await;
    let ld = Digest::sha256(&layer).to_string();
    t.private(
        "CompleteLayerUpload",
        json!({"repositoryName": "secret/app", "uploadId": up["uploadId"], "layerDigests": [ld]}),
    )
    .await;
    let arn = public_arn(ACCOUNT, "secret/app");
    let name = json!("secret/app");
    for (op, input) in [
        (
            "BatchCheckLayerAvailability",
            json!({"repositoryName": name, "layerDigests": [ld]}),
        ),
        ("InitiateLayerUpload", json!({"repositoryName": name})),
        (
            "UploadLayerPart",
            json!({"repositoryName": name, "uploadId": up["uploadId"], "partFirstByte": 0, "partLastByte": 0, "layerPartBlob": "AA=="}),
        ),
        (
            "CompleteLayerUpload",
            json!({"repositoryName": name, "uploadId": up["uploadId"], "layerDigests": [ld]}),
        ),
        (
            "PutImage",
            json!({"repositoryName": name, "imageManifest": "{}", "imageTag": "x"}),
        ),
        ("DescribeImages", json!({"repositoryName": name})),
        ("DescribeImageTags", json!({"repositoryName": name})),
        (
            "BatchDeleteImage",
            json!({"repositoryName": name, "imageIds": [{"imageTag": "x"}]}),
        ),
        (
            "SetRepositoryPolicy",
            json!({"repositoryName": name, "policyText": "{}"}),
        ),
        ("GetRepositoryPolicy", json!({"repositoryName": name})),
        ("DeleteRepositoryPolicy", json!({"repositoryName": name})),
        (
            "TagResource",
            json!({"resourceArn": arn, "tags": [{"Key": "a", "Value": "b"}]}),
        ),
        ("UntagResource", json!({"resourceArn": arn, "tagKeys": ["a"]})),
        ("ListTagsForResource", json!({"resourceArn": arn})),
    ] {
        let r = t.public(op, input).await;
        r.assert_error("RepositoryNotFoundException");
        assert!(!r.text().contains("private bytes"), "{op}");
    }
    // A private repository's ARN is no ECR Public ARN.
    let private_arn = format!("arn:aws:ecr:{}:{ACCOUNT}:repository/secret/app", common::REGION);
    t.public("ListTagsForResource", json!({"resourceArn": private_arn}))
        .await
        .assert_error("InvalidParameterException");
    // Nothing changed: the layer is there, no tag, no policy, still private.
    let v = t
        .private(
            "BatchCheckLayerAvailability",
            json!({"repositoryName": "secret/app", "layerDigests": [ld]}),
        )
        .await;
    assert_eq!(v["layers"][0]["layerAvailability"], "AVAILABLE");
    assert!(t.store.resource_tags(&arn).await.unwrap().is_empty());
    assert!(t.store.resource_policy_get(&arn).await.unwrap().is_none());
    let r = t.anonymous_get(&format!("/v2/secret/app/blobs/{ld}")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn another_accounts_repositories_and_uploads_are_out_of_reach() {
    let t = setup(None).await;
    // Both accounts have a public repository of the same name.
    t.ok("CreateRepository", json!({"repositoryName": "team/app"})).await;
    t.ok_as(OTHER_ROOT, "CreateRepository", json!({"repositoryName": "team/app"}))
        .await;
    let (_, theirs) = t.push_as(OTHER_ROOT, OTHER, "team/app", "v1").await;
    let other_arn = public_arn(OTHER, "team/app");
    let named = |op: &str| {
        let mut v = json!({"registryId": OTHER, "repositoryName": "team/app"});
        match op {
            "BatchDeleteImage" => v["imageIds"] = json!([{"imageDigest": theirs}]),
            "PutImage" => v["imageManifest"] = json!("{}"),
            "SetRepositoryPolicy" => v["policyText"] = json!("{}"),
            "BatchCheckLayerAvailability" => v["layerDigests"] = json!([theirs]),
            _ => {}
        }
        v
    };
    // Naming the other registry: refused before anything runs.
    for op in [
        "BatchCheckLayerAvailability",
        "InitiateLayerUpload",
        "PutImage",
        "DescribeImages",
        "DescribeImageTags",
        "BatchDeleteImage",
        "SetRepositoryPolicy",
        "GetRepositoryPolicy",
        "DeleteRepositoryPolicy",
    ] {
        t.public(op, named(op)).await.assert_error("AccessDeniedException");
    }
    // Its repository's ARN, for the tag operations.
    for (op, input) in [
        (
            "TagResource",
            json!({"resourceArn": other_arn, "tags": [{"Key": "a", "Value": "b"}]}),
        ),
        ("UntagResource", json!({"resourceArn": other_arn, "tagKeys": ["a"]})),
        ("ListTagsForResource", json!({"resourceArn": other_arn})),
    ] {
        t.public(op, input).await.assert_error("AccessDeniedException");
    }
    // Its upload, continued or completed through our repository of the same name.
    let up = t
        .ok_as(OTHER_ROOT, "InitiateLayerUpload", json!({"repositoryName": "team/app"}))
        .await["uploadId"]
        .clone();
    let data = b"mine now".to_vec();
    t.public(
        "UploadLayerPart",
        json!({"repositoryName": "team/app", "uploadId": up, "partFirstByte": 0, "partLastByte": data.len() - 1, "layerPartBlob": b64(&data)}),
    )
    .await
    .assert_error("UploadNotFoundException");
    t.public(
        "CompleteLayerUpload",
        json!({"repositoryName": "team/app", "uploadId": up, "layerDigests": [Digest::sha256(&data).to_string()]}),
    )
    .await
    .assert_error("UploadNotFoundException");
    // Its image, named by digest in our repository of the same name.
    let v = t
        .ok(
            "BatchDeleteImage",
            json!({"repositoryName": "team/app", "imageIds": [{"imageDigest": theirs}]}),
        )
        .await;
    assert_eq!(v["failures"][0]["failureCode"], "ImageNotFound");
    t.public(
        "DescribeImages",
        json!({"repositoryName": "team/app", "imageIds": [{"imageDigest": theirs}]}),
    )
    .await
    .assert_error("ImageNotFoundException");
    // Theirs is untouched; the upload is still theirs to finish.
    let v = t
        .ok_as(OTHER_ROOT, "DescribeImages", json!({"repositoryName": "team/app"}))
        .await;
    assert_eq!(v["imageDetails"][0]["imageDigest"], theirs.as_str());
    let v = t
        .ok_as(
            OTHER_ROOT,
            "UploadLayerPart",
            json!({"repositoryName": "team/app", "uploadId": up, "partFirstByte": 0, "partLastByte": data.len() - 1, "layerPartBlob": b64(&data)}),
        )
        .await;
    assert_eq!(v["registryId"], OTHER);
    assert!(t.store.resource_tags(&other_arn).await.unwrap().is_empty());
}
