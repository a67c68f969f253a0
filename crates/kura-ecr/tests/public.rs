//! ECR Public through the whole application without a socket: the
//! `SpencerFrontendService` JSON API (SigV4 for `ecr-public`, model
//! validation, each operation's results and errors, authorization), and
//! anonymous reads of public repositories on the data plane next to private
//! repositories that stay closed.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
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
const BOB_KEY: &str = "AKIAKURATESTBOBKEY01";
const BOB_SECRET: &str = "bobSecretKey/0123456789abcdefghijKLMNOPQ";

struct T {
    app: Router,
    store: Arc<SqlMetaStore>,
    _dir: tempfile::TempDir,
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| panic!("not JSON: {:?}", self.text()))
    }

    /// A JSON 1.1 error with its type in the body and the header.
    fn assert_error(&self, status: StatusCode, kind: &str) {
        assert_eq!(self.status, status, "body: {}", self.text());
        assert_eq!(self.json()["__type"], kind, "{}", self.text());
        assert_eq!(
            self.headers.get("x-amzn-errortype").and_then(|v| v.to_str().ok()),
            Some(kind)
        );
    }
}

/// A signed `POST /` for `target` with the given key, region and service.
fn signed(target: &str, input: &Value, key: (&str, &str), region: &str, service: &str) -> Request<Body> {
    let body = serde_json::to_vec(input).unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("host", HOST.parse().unwrap());
    headers.insert("content-type", "application/x-amz-json-1.1".parse().unwrap());
    headers.insert("x-amz-target", target.parse().unwrap());
    common::sign_post(&mut headers, &body, key, region, service, SystemTime::now());
    let mut b = Request::builder().method(Method::POST).uri("/");
    *b.headers_mut().unwrap() = headers;
    b.body(Body::from(body)).unwrap()
}

fn basic(user_pass: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(user_pass))
}

async fn setup() -> T {
    let s = common::server().await;
    // The store itself, for what no API offers here (an IAM user with a key
    // and inline policies).
    let store = s.store.clone();
    T {
        app: s.app,
        store,
        _dir: s.dir,
    }
}

impl T {
    async fn send(&self, req: Request<Body>) -> Resp {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes().to_vec();
        Resp { status, headers, body }
    }

    /// An ECR Public call as the root (signed for `ecr-public` in us-east-1).
    async fn public(&self, op: &str, input: Value) -> Resp {
        self.send(signed(
            &format!("{PUBLIC}.{op}"),
            &input,
            (KEY_ID, SECRET),
            "us-east-1",
            "ecr-public",
        ))
        .await
    }

    /// An ECR Public call that must succeed.
    async fn ok(&self, op: &str, input: Value) -> Value {
        let r = self.public(op, input).await;
        assert_eq!(r.status, StatusCode::OK, "{op}: {}", r.text());
        r.json()
    }

    /// A private ECR call as the root that must succeed.
    async fn private(&self, op: &str, input: Value) -> Value {
        let r = self
            .send(signed(
                &format!("{PRIVATE}.{op}"),
                &input,
                (KEY_ID, SECRET),
                common::REGION,
                "ecr",
            ))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{op}: {}", r.text());
        r.json()
    }

    /// The registry password from ECR Public's GetAuthorizationToken.
    async fn public_token(&self) -> String {
        let v = self.ok("GetAuthorizationToken", json!({})).await;
        let data = &v["authorizationData"];
        assert!(data["expiresAt"].as_f64().unwrap() > 0.0, "{v}");
        let raw = base64::engine::general_purpose::STANDARD
            .decode(data["authorizationToken"].as_str().unwrap())
            .unwrap();
        String::from_utf8(raw).unwrap()
    }

    async fn dp(&self, method: Method, uri: &str, auth: Option<&str>, ct: Option<&str>, body: Vec<u8>) -> Resp {
        let mut b = Request::builder().method(method).uri(uri).header("host", HOST);
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        if let Some(c) = ct {
            b = b.header("content-type", c);
        }
        self.send(b.body(Body::from(body)).unwrap()).await
    }

    async fn push_blob(&self, auth: &str, repo: &str, data: &[u8]) -> String {
        let d = Digest::sha256(data).to_string();
        let r = self
            .dp(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/"),
                Some(auth),
                None,
                vec![],
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
        let loc = r.headers["location"].to_str().unwrap().to_string();
        let sep = if loc.contains('?') { '&' } else { '?' };
        let r = self
            .dp(
                Method::PUT,
                &format!("{loc}{sep}digest={d}"),
                Some(auth),
                None,
                data.to_vec(),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        d
    }

    /// Push a one-layer image under `tag`; its manifest digest and a layer digest.
    async fn push_image(&self, auth: &str, repo: &str, tag: &str) -> (String, String) {
        let cfg = br#"{"architecture":"amd64","os":"linux"}"#;
        let layer = format!("layer of {repo}").into_bytes();
        let c = self.push_blob(auth, repo, cfg).await;
        let l = self.push_blob(auth, repo, &layer).await;
        let m = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": c, "size": cfg.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": l, "size": layer.len()}],
        }))
        .unwrap();
        let r = self
            .dp(
                Method::PUT,
                &format!("/v2/{repo}/manifests/{tag}"),
                Some(auth),
                Some("application/vnd.oci.image.manifest.v1+json"),
                m.clone(),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        (Digest::sha256(&m).to_string(), l)
    }

    /// An IAM user `bob` with an access key and the given inline policy (if any).
    async fn bob(&self, policy: Option<Value>) {
        let dir = self._dir.path();
        let master = MasterKey::load_or_create(&dir.join("master.key")).unwrap();
        self.store
            .access_key_put(&AccessKeyRow {
                access_key_id: BOB_KEY.into(),
                account: ACCOUNT.into(),
                principal_arn: format!("arn:aws:iam::{ACCOUNT}:user/bob"),
                principal_id: "AIDAKURATESTBOB00001".into(),
                secret_sealed: kura_ecr::auth::seal_secret(&master, BOB_KEY, BOB_SECRET),
                status: "Active".into(),
                session_token_hash: None,
                expires_at: None,
                created_at: kura_store::now_millis(),
            })
            .await
            .unwrap();
        self.store
            .iam_entity_create(&kura_store::iam::IamEntity {
                account: ACCOUNT.into(),
                kind: "user".into(),
                name: "bob".into(),
                id: "AIDAKURATESTBOB00001".into(),
                path: "/".into(),
                arn: format!("arn:aws:iam::{ACCOUNT}:user/bob"),
                body: "{}".into(),
                created_at: 1,
            })
            .await
            .unwrap();
        if let Some(p) = policy {
            self.store
                .iam_inline_put(ACCOUNT, "user", "bob", "public", &p.to_string())
                .await
                .unwrap();
        }
    }

    async fn as_bob(&self, op: &str, input: Value) -> Resp {
        self.send(signed(
            &format!("{PUBLIC}.{op}"),
            &input,
            (BOB_KEY, BOB_SECRET),
            "us-east-1",
            "ecr-public",
        ))
        .await
    }
}

fn names(v: &Value) -> Vec<String> {
    v["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["repositoryName"].as_str().unwrap().to_string())
        .collect()
}

// ---------------------------------------------------------------------------
// Operations

#[tokio::test]
async fn create_with_catalog_data_and_tags_then_describe() {
    let t = setup().await;
    let catalog = json!({
        "description": "A small image",
        "architectures": ["x86-64", "ARM 64"],
        "operatingSystems": ["Linux"],
        "aboutText": "# About",
        "usageText": "docker pull it",
        "logoImageBlob": base64::engine::general_purpose::STANDARD.encode(b"\x89PNG..."),
    });
    let v = t
        .ok(
            "CreateRepository",
            json!({"repositoryName": "team/app", "catalogData": catalog, "tags": [{"Key": "env", "Value": "dev"}]}),
        )
        .await;
    let repo = &v["repository"];
    assert_eq!(repo["repositoryName"], "team/app");
    assert_eq!(repo["registryId"], ACCOUNT);
    assert_eq!(
        repo["repositoryArn"],
        format!("arn:aws:ecr-public::{ACCOUNT}:repository/team/app")
    );
    assert_eq!(repo["repositoryUri"], format!("{HOST}/team/app"));
    let created = repo["createdAt"].as_f64().expect("createdAt is epoch seconds");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as f64;
    assert!((now - created).abs() < 60.0, "{created} vs {now}");
    let cd = &v["catalogData"];
    assert_eq!(cd["description"], "A small image");
    assert_eq!(cd["architectures"], json!(["x86-64", "ARM 64"]));
    assert_eq!(cd["operatingSystems"], json!(["Linux"]));
    assert_eq!(cd["aboutText"], "# About");
    assert_eq!(cd["usageText"], "docker pull it");
    assert_eq!(cd["marketplaceCertified"], false);
    assert!(cd.get("logoImageBlob").is_none() && cd.get("logoUrl").is_none(), "{cd}");

    // The tags are kept under the public ARN.
    let arn = format!("arn:aws:ecr-public::{ACCOUNT}:repository/team/app");
    assert_eq!(
        t.store.resource_tags(&arn).await.unwrap(),
        vec![("env".to_string(), "dev".to_string())]
    );

    // Describe by name and in full; catalog data reads back.
    let d = t
        .ok("DescribeRepositories", json!({"repositoryNames": ["team/app"]}))
        .await;
    assert_eq!(d["repositories"][0], *repo);
    assert_eq!(names(&t.ok("DescribeRepositories", json!({})).await), vec!["team/app"]);
    let g = t
        .ok("GetRepositoryCatalogData", json!({"repositoryName": "team/app"}))
        .await;
    assert_eq!(g["catalogData"], *cd);

    // It is an ordinary repository of the registry: private ECR lists it too.
    let p = t.private("DescribeRepositories", json!({})).await;
    assert_eq!(names(&p), vec!["team/app"]);
}

#[tokio::test]
async fn describe_paginates_and_only_sees_public_repositories() {
    let t = setup().await;
    for n in ["c/one", "a/one", "b/one"] {
        t.ok("CreateRepository", json!({"repositoryName": n})).await;
    }
    t.private("CreateRepository", json!({"repositoryName": "private/one"}))
        .await;
    let first = t.ok("DescribeRepositories", json!({"maxResults": 2})).await;
    assert_eq!(names(&first), vec!["a/one", "b/one"]);
    let token = first["nextToken"].as_str().expect("a next page").to_string();
    let second = t
        .ok("DescribeRepositories", json!({"maxResults": 2, "nextToken": token}))
        .await;
    assert_eq!(names(&second), vec!["c/one"]);
    assert!(second.get("nextToken").is_none(), "{second}");
    assert_eq!(
        names(&t.ok("DescribeRepositories", json!({"registryId": ACCOUNT})).await),
        vec!["a/one", "b/one", "c/one"]
    );

    // A private repository is not an ECR Public repository.
    t.public("DescribeRepositories", json!({"repositoryNames": ["private/one"]}))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "RepositoryNotFoundException");
    t.public("GetRepositoryCatalogData", json!({"repositoryName": "private/one"}))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "RepositoryNotFoundException");
    t.public("DeleteRepository", json!({"repositoryName": "private/one"}))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "RepositoryNotFoundException");
    t.public("DescribeRepositories", json!({"repositoryNames": ["a/one", "nope"]}))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "RepositoryNotFoundException");
    t.public(
        "DescribeRepositories",
        json!({"repositoryNames": ["a/one"], "maxResults": 5}),
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "InvalidParameterException");
    t.public("DescribeRepositories", json!({"nextToken": "!!not a token!!"}))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "InvalidParameterException");
    t.public("DescribeRepositories", json!({"registryId": "210987654321"}))
        .await
        .assert_error(StatusCode::FORBIDDEN, "AccessDeniedException");
}

#[tokio::test]
async fn create_errors() {
    let t = setup().await;
    t.ok("CreateRepository", json!({"repositoryName": "dup"})).await;
    t.public("CreateRepository", json!({"repositoryName": "dup"}))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "RepositoryAlreadyExistsException");
    // A private repository holds the name too.
    t.private("CreateRepository", json!({"repositoryName": "taken"})).await;
    t.public("CreateRepository", json!({"repositoryName": "taken"}))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "RepositoryAlreadyExistsException");
    t.public(
        "CreateRepository",
        json!({"repositoryName": "tagged", "tags": [{"Key": "aws:x", "Value": "1"}]}),
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "InvalidTagParameterException");
    let many: Vec<Value> = (0..51).map(|i| json!({"Key": format!("k{i}"), "Value": "v"})).collect();
    t.public("CreateRepository", json!({"repositoryName": "tagged", "tags": many}))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "TooManyTagsException");
    assert_eq!(names(&t.ok("DescribeRepositories", json!({})).await), vec!["dup"]);
}

#[tokio::test]
async fn model_validation() {
    let t = setup().await;
    for (op, input, kind) in [
        ("CreateRepository", json!({}), "InvalidParameterException"),
        (
            "CreateRepository",
            json!({"repositoryName": "A"}),
            "InvalidParameterException",
        ),
        (
            "CreateRepository",
            json!({"repositoryName": "x"}),
            "InvalidParameterException",
        ),
        (
            "CreateRepository",
            json!({"repositoryName": "ok", "catalogData": {"description": "d".repeat(1025)}}),
            "InvalidParameterException",
        ),
        (
            "CreateRepository",
            json!({"repositoryName": "ok", "catalogData": {"operatingSystems": vec!["x"; 51]}}),
            "InvalidParameterException",
        ),
        (
            "CreateRepository",
            json!({"repositoryName": "ok", "catalogData": {"logoImageBlob": "***"}}),
            "SerializationException",
        ),
        (
            "CreateRepository",
            json!({"repositoryName": 7}),
            "SerializationException",
        ),
        (
            "DescribeRepositories",
            json!({"maxResults": 0}),
            "InvalidParameterException",
        ),
        (
            "DescribeRepositories",
            json!({"registryId": "12"}),
            "InvalidParameterException",
        ),
        (
            "PutRepositoryCatalogData",
            json!({"repositoryName": "ok"}),
            "InvalidParameterException",
        ),
        (
            "DeleteRepository",
            json!({"repositoryName": "ok", "force": "yes"}),
            "SerializationException",
        ),
        (
            "PutRegistryCatalogData",
            json!({"displayName": "n".repeat(101)}),
            "InvalidParameterException",
        ),
    ] {
        let r = t.public(op, input.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{op} {input}: {}", r.text());
        assert_eq!(r.json()["__type"], kind, "{op} {input}: {}", r.text());
    }
    // Nothing was created by the refused calls.
    assert!(names(&t.ok("DescribeRepositories", json!({})).await).is_empty());

    // Operations: unknown to the model; every one of the model is served.
    t.public("NoSuchThing", json!({}))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "UnknownOperationException");
    t.public(
        "BatchDeleteImage",
        json!({"repositoryName": "ok", "imageIds": [{"imageTag": "x"}]}),
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "RepositoryNotFoundException");
}

#[tokio::test]
async fn signing_is_for_ecr_public_in_any_region() {
    let t = setup().await;
    let ok = t
        .send(signed(
            &format!("{PUBLIC}.DescribeRepositories"),
            &json!({}),
            (KEY_ID, SECRET),
            "eu-west-1",
            "ecr-public",
        ))
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    t.send(signed(
        &format!("{PUBLIC}.DescribeRepositories"),
        &json!({}),
        (KEY_ID, SECRET),
        "us-east-1",
        "ecr",
    ))
    .await
    .assert_error(StatusCode::BAD_REQUEST, "InvalidSignatureException");
    t.send(signed(
        &format!("{PUBLIC}.DescribeRepositories"),
        &json!({}),
        (KEY_ID, "wrong-secret"),
        "us-east-1",
        "ecr-public",
    ))
    .await
    .assert_error(StatusCode::BAD_REQUEST, "InvalidSignatureException");
    let unsigned = Request::builder()
        .method(Method::POST)
        .uri("/")
        .header("host", HOST)
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-target", format!("{PUBLIC}.DescribeRepositories"))
        .body(Body::from("{}"))
        .unwrap();
    t.send(unsigned)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "MissingAuthenticationTokenException");
}

#[tokio::test]
async fn catalog_data_put_replaces_and_delete_needs_force() {
    let t = setup().await;
    t.ok(
        "CreateRepository",
        json!({"repositoryName": "lib/x", "catalogData": {"description": "one", "usageText": "u"}}),
    )
    .await;
    let put = t
        .ok(
            "PutRepositoryCatalogData",
            json!({"repositoryName": "lib/x", "catalogData": {"description": "two", "architectures": ["ARM"]}}),
        )
        .await;
    let want = json!({"description": "two", "architectures": ["ARM"], "marketplaceCertified": false});
    assert_eq!(put["catalogData"], want);
    assert_eq!(
        t.ok("GetRepositoryCatalogData", json!({"repositoryName": "lib/x"}))
            .await["catalogData"],
        want
    );
    t.public(
        "PutRepositoryCatalogData",
        json!({"repositoryName": "lib/none", "catalogData": {}}),
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "RepositoryNotFoundException");

    // With an image it is not empty: force deletes it, and its mark and tags.
    let auth = basic(&t.public_token().await);
    t.push_image(&auth, "lib/x", "v1").await;
    t.public("DeleteRepository", json!({"repositoryName": "lib/x"}))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "RepositoryNotEmptyException");
    let del = t
        .ok("DeleteRepository", json!({"repositoryName": "lib/x", "force": true}))
        .await;
    assert_eq!(del["repository"]["repositoryName"], "lib/x");
    t.public("GetRepositoryCatalogData", json!({"repositoryName": "lib/x"}))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "RepositoryNotFoundException");
    t.public("DeleteRepository", json!({"repositoryName": "lib/x"}))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "RepositoryNotFoundException");
    assert!(names(&t.private("DescribeRepositories", json!({})).await).is_empty());
    // An empty one goes without force.
    t.ok("CreateRepository", json!({"repositoryName": "lib/empty"})).await;
    t.ok("DeleteRepository", json!({"repositoryName": "lib/empty"})).await;
}

#[tokio::test]
async fn registries_and_registry_catalog_data() {
    let t = setup().await;
    let v = t.ok("DescribeRegistries", json!({})).await;
    let reg = &v["registries"][0];
    assert_eq!(reg["registryId"], ACCOUNT);
    assert_eq!(
        reg["registryArn"],
        format!("arn:aws:ecr-public::{ACCOUNT}:registry/{ACCOUNT}")
    );
    assert_eq!(reg["registryUri"], HOST);
    assert_eq!(reg["verified"], false);
    assert_eq!(reg["aliases"], json!([]));
    assert_eq!(
        t.ok("GetRegistryCatalogData", json!({})).await,
        json!({"registryCatalogData": {"displayName": ""}})
    );
    assert_eq!(
        t.ok("PutRegistryCatalogData", json!({"displayName": "Kura"})).await,
        json!({"registryCatalogData": {"displayName": "Kura"}})
    );
    assert_eq!(
        t.ok("GetRegistryCatalogData", json!({})).await,
        json!({"registryCatalogData": {"displayName": "Kura"}})
    );
}

// ---------------------------------------------------------------------------
// Authorization

#[tokio::test]
async fn operations_are_authorized_as_ecr_public_actions() {
    let t = setup().await;
    t.ok("CreateRepository", json!({"repositoryName": "team/seen"})).await;
    // A user without policies may do nothing.
    t.bob(None).await;
    for (op, input) in [
        ("CreateRepository", json!({"repositoryName": "team/x"})),
        ("DescribeRepositories", json!({})),
        ("GetRepositoryCatalogData", json!({"repositoryName": "team/seen"})),
        ("DeleteRepository", json!({"repositoryName": "team/seen"})),
        ("GetAuthorizationToken", json!({})),
    ] {
        let r = t.as_bob(op, input).await;
        r.assert_error(StatusCode::FORBIDDEN, "AccessDeniedException");
        let msg = r.json()["message"].as_str().unwrap().to_string();
        assert!(msg.contains(&format!("ecr-public:{op}")), "{msg}");
    }
    // A policy on team/* with an explicit deny on DeleteRepository.
    t.bob(Some(json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["ecr-public:CreateRepository", "ecr-public:DeleteRepository",
                "ecr-public:GetRepositoryCatalogData"],
             "Resource": format!("arn:aws:ecr-public::{ACCOUNT}:repository/team/*")},
            {"Effect": "Allow", "Action": "ecr-public:GetAuthorizationToken", "Resource": "*"},
            {"Effect": "Deny", "Action": "ecr-public:DeleteRepository",
             "Resource": format!("arn:aws:ecr-public::{ACCOUNT}:repository/team/seen")},
        ]
    })))
    .await;
    let r = t.as_bob("CreateRepository", json!({"repositoryName": "team/x"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    t.as_bob("CreateRepository", json!({"repositoryName": "other/x"}))
        .await
        .assert_error(StatusCode::FORBIDDEN, "AccessDeniedException");
    let r = t
        .as_bob("GetRepositoryCatalogData", json!({"repositoryName": "team/seen"}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    t.as_bob("DeleteRepository", json!({"repositoryName": "team/seen"}))
        .await
        .assert_error(StatusCode::FORBIDDEN, "AccessDeniedException");
    let r = t.as_bob("DeleteRepository", json!({"repositoryName": "team/x"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    // The token also needs sts:GetServiceBearerToken, as on AWS.
    let r = t.as_bob("GetAuthorizationToken", json!({})).await;
    r.assert_error(StatusCode::FORBIDDEN, "AccessDeniedException");
    assert!(r.text().contains("sts:GetServiceBearerToken"), "{}", r.text());
}

// ---------------------------------------------------------------------------
// The data plane: anonymous reads of public repositories only

#[tokio::test]
async fn anonymous_pulls_of_public_repositories_only() {
    let t = setup().await;
    t.ok("CreateRepository", json!({"repositoryName": "pub/app"})).await;
    t.private("CreateRepository", json!({"repositoryName": "priv/app"}))
        .await;
    // The ECR Public token pushes (to both kinds of repository).
    let auth = basic(&t.public_token().await);
    let (pub_digest, pub_layer) = t.push_image(&auth, "pub/app", "v1").await;
    let (priv_digest, priv_layer) = t.push_image(&auth, "priv/app", "v1").await;

    // No credentials, or empty Basic credentials (podman, skopeo): public reads work.
    let empty = basic(":");
    for cred in [None, Some(empty.as_str())] {
        for uri in [
            "/v2/pub/app/manifests/v1".to_string(),
            format!("/v2/pub/app/manifests/{pub_digest}"),
            format!("/v2/pub/app/blobs/{pub_layer}"),
            "/v2/pub/app/tags/list".to_string(),
            format!("/v2/pub/app/referrers/{pub_digest}"),
        ] {
            let r = t.dp(Method::GET, &uri, cred, None, vec![]).await;
            assert_eq!(r.status, StatusCode::OK, "GET {uri} ({cred:?}): {}", r.text());
            // The data plane answers HEAD of manifests and blobs (the
            // others are GET-only there: 405, but past the guard).
            let r = t.dp(Method::HEAD, &uri, cred, None, vec![]).await;
            if uri.contains("/manifests/") || uri.contains("/blobs/") {
                assert_eq!(r.status, StatusCode::OK, "HEAD {uri} ({cred:?})");
            } else {
                assert_ne!(r.status, StatusCode::UNAUTHORIZED, "HEAD {uri} ({cred:?})");
            }
        }
    }
    let r = t.dp(Method::GET, "/v2/pub/app/manifests/v1", None, None, vec![]).await;
    assert_eq!(Digest::sha256(&r.body).to_string(), pub_digest);
    let r = t.dp(Method::GET, "/v2/pub/app/tags/list", None, None, vec![]).await;
    assert_eq!(r.json()["tags"], json!(["v1"]));
    let r = t.dp(Method::GET, "/v2/pub/app/manifests/v9", None, None, vec![]).await;
    assert_eq!(
        r.status,
        StatusCode::NOT_FOUND,
        "a missing tag of a public repository: {}",
        r.text()
    );

    // A private repository keeps answering 401 with the Basic challenge.
    for cred in [None, Some(empty.as_str())] {
        for uri in [
            "/v2/priv/app/manifests/v1".to_string(),
            format!("/v2/priv/app/manifests/{priv_digest}"),
            format!("/v2/priv/app/blobs/{priv_layer}"),
            "/v2/priv/app/tags/list".to_string(),
            "/v2/nope/app/manifests/v1".to_string(),
            "/v2/".to_string(),
            "/v2/_catalog".to_string(),
        ] {
            let r = t.dp(Method::GET, &uri, cred, None, vec![]).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "GET {uri} ({cred:?}): {}", r.text());
            assert!(r.headers.get("www-authenticate").is_some(), "GET {uri}");
        }
    }
    // A public blob is not readable anonymously through a private repository's name.
    let r = t
        .dp(
            Method::GET,
            &format!("/v2/priv/app/blobs/{pub_layer}"),
            None,
            None,
            vec![],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // A wrong password is still refused, even for a public repository.
    let r = t
        .dp(
            Method::GET,
            "/v2/pub/app/manifests/v1",
            Some(&basic("AWS:forged")),
            None,
            vec![],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // Writes to a public repository need credentials.
    for (method, uri) in [
        (Method::PUT, "/v2/pub/app/manifests/v2".to_string()),
        (Method::POST, "/v2/pub/app/blobs/uploads/".to_string()),
        (Method::DELETE, format!("/v2/pub/app/manifests/{pub_digest}")),
        (Method::PATCH, "/v2/pub/app/blobs/uploads/x".to_string()),
    ] {
        for cred in [None, Some(empty.as_str())] {
            let r = t
                .dp(
                    method.clone(),
                    &uri,
                    cred,
                    Some("application/vnd.oci.image.manifest.v1+json"),
                    b"{}".to_vec(),
                )
                .await;
            assert_eq!(
                r.status,
                StatusCode::UNAUTHORIZED,
                "{method} {uri} ({cred:?}): {}",
                r.text()
            );
        }
    }
    // Nothing changed: v2 does not exist.
    let r = t.dp(Method::GET, "/v2/pub/app/manifests/v2", None, None, vec![]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Authenticated reads of public repositories work as before.
    let r = t
        .dp(Method::GET, "/v2/pub/app/manifests/v1", Some(&auth), None, vec![])
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn private_delete_removes_the_public_mark() {
    let t = setup().await;
    t.ok("CreateRepository", json!({"repositoryName": "gone/app"})).await;
    let auth = basic(&t.public_token().await);
    t.push_image(&auth, "gone/app", "v1").await;
    let r = t.dp(Method::GET, "/v2/gone/app/manifests/v1", None, None, vec![]).await;
    assert_eq!(r.status, StatusCode::OK);
    t.private("DeleteRepository", json!({"repositoryName": "gone/app", "force": true}))
        .await;
    t.public("GetRepositoryCatalogData", json!({"repositoryName": "gone/app"}))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "RepositoryNotFoundException");
    // A new private repository of that name is private.
    t.private("CreateRepository", json!({"repositoryName": "gone/app"}))
        .await;
    t.push_image(&auth, "gone/app", "v1").await;
    let r = t.dp(Method::GET, "/v2/gone/app/manifests/v1", None, None, vec![]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(names(&t.ok("DescribeRepositories", json!({})).await).is_empty());
}
