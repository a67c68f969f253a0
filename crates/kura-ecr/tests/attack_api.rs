//! Attacks on the API listener (`POST /`), reproduced through
//! `kura_ecr::app` and `oneshot` over real SQLite and filesystem stores:
//!
//! * `registryId` smuggling: a member the operation's model does not define
//!   once chose the account authorization looked at while the operation
//!   acted on the caller's own (a Deny in the caller's registry policy was
//!   bypassed and the policy deleted). The account acted on and the account
//!   authorized against are now one value, and undefined members are refused.
//! * Pre-authentication memory: bodies were read (up to 30 MiB each) before
//!   the signature was looked at. Now the headers authenticate first, and the
//!   bytes of all bodies in memory are bounded by a budget.
//! * SigV4 on `POST /`: `X-Amz-Target` and `Content-Type` must be signed, and
//!   presigned (query-string) API calls are refused.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, Method, Request, StatusCode};
use bytes::Bytes;
use futures::StreamExt as _;
use http_body_util::BodyExt;
use kura_auth::seal::MasterKey;
use kura_ecr::auth::seal_secret;
use kura_store::control::AccessKeyRow;
use kura_store::{ControlStore, MetaStore};
use serde_json::{json, Value};
use tower::ServiceExt;

mod common;

use common::{ACCOUNT, KEY_ID, REGION, SECRET};

const TARGET: &str = "AmazonEC2ContainerRegistry_V20150921";
const PUBLIC: &str = "SpencerFrontendService";
const HOST: &str = "localhost:5000";
const OTHER: &str = "210987654321";
const OTHER_KEY_ID: &str = "AKIAKURATESTROOTKEY2";
const OTHER_SECRET: &str = "kuraOtherSecretKey/0123456789abcdefghijK";
/// 25 MiB: what an attacker declares (and would send) per request.
const BIG: usize = 25 << 20;

type Creds = (String, String);

fn root() -> Creds {
    (KEY_ID.into(), SECRET.into())
}

fn other_root() -> Creds {
    (OTHER_KEY_ID.into(), OTHER_SECRET.into())
}

struct T {
    s: common::Server,
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
        serde_json::from_slice(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.text()))
    }

    /// An AWS JSON error of this status and `__type`; its message.
    fn ecr_error(&self, status: StatusCode, kind: &str) -> String {
        assert_eq!(self.status, status, "{}", self.text());
        assert_eq!(self.json()["__type"], kind, "{}", self.text());
        self.json()["message"].as_str().unwrap_or_default().to_string()
    }

    /// A Query (XML) error of this status and code.
    fn query_error(&self, status: StatusCode, code: &str) {
        assert_eq!(self.status, status, "{}", self.text());
        assert!(self.text().contains(&format!("<Code>{code}</Code>")), "{}", self.text());
    }

    fn closes(&self) -> bool {
        self.headers.get("connection").is_some_and(|v| v == "close")
    }
}

/// A `POST /` with the given headers (`host` added), signed with `creds`
/// (all headers present at signing time are signed), then `after` headers
/// added unsigned.
fn post(
    headers: &[(&str, &str)],
    body: &[u8],
    creds: Option<&Creds>,
    service: &str,
    after: &[(&str, &str)],
) -> Request<Body> {
    let mut h = HeaderMap::new();
    h.insert("host", HOST.parse().unwrap());
    for (k, v) in headers {
        h.insert(HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
    }
    if let Some((id, secret)) = creds {
        common::sign_post(&mut h, body, (id, secret), REGION, service, SystemTime::now());
    }
    for (k, v) in after {
        h.insert(HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
    }
    let mut b = Request::builder().method(Method::POST).uri("/");
    *b.headers_mut().unwrap() = h;
    b.body(Body::from(body.to_vec())).unwrap()
}

fn ecr_request(op: &str, input: &Value, creds: Option<&Creds>) -> Request<Body> {
    let target = format!("{TARGET}.{op}");
    post(
        &[
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", &target),
        ],
        &serde_json::to_vec(input).unwrap(),
        creds,
        "ecr",
        &[],
    )
}

fn form(params: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
}

fn iam_request(params: &[(&str, &str)], creds: Option<&Creds>) -> Request<Body> {
    post(
        &[("content-type", "application/x-www-form-urlencoded; charset=utf-8")],
        form(params).as_bytes(),
        creds,
        "iam",
        &[],
    )
}

/// The text of the first `<tag>` of an XML answer.
fn xml(text: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let start = text.find(&open).unwrap_or_else(|| panic!("no {tag} in {text}")) + open.len();
    let end = start + text[start..].find('<').unwrap();
    text[start..end].to_string()
}

fn policy(effect: &str, principal: &str) -> String {
    json!({"Version": "2012-10-17", "Statement": [{
        "Sid": "S", "Effect": effect, "Principal": {"AWS": principal}, "Action": "ecr:*", "Resource": "*"
    }]})
    .to_string()
}

fn mallory_arn() -> String {
    format!("arn:aws:iam::{ACCOUNT}:user/mallory")
}

impl T {
    async fn new() -> T {
        Self::with(|_| {}).await
    }

    /// The server, a second account (`OTHER`) with its root key, and a
    /// repository in each.
    async fn with(configure: impl FnOnce(&mut kura_ecr::EcrConfig)) -> T {
        let s = common::server_with(configure).await;
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
        for account in [ACCOUNT, OTHER] {
            s.store
                .repo_create(account, "team/app", &Default::default())
                .await
                .unwrap()
                .unwrap();
        }
        T { s }
    }

    async fn send(&self, req: Request<Body>) -> Resp {
        let resp = tokio::time::timeout(Duration::from_secs(20), self.s.app.clone().oneshot(req))
            .await
            .expect("the server answers")
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes().to_vec();
        Resp { status, headers, body }
    }

    async fn ecr(&self, creds: &Creds, op: &str, input: Value) -> Resp {
        self.send(ecr_request(op, &input, Some(creds))).await
    }

    async fn ecr_ok(&self, creds: &Creds, op: &str, input: Value) -> Value {
        let r = self.ecr(creds, op, input).await;
        assert_eq!(r.status, StatusCode::OK, "{op}: {}", r.text());
        r.json()
    }

    async fn iam(&self, action: &str, params: &[(&str, &str)]) -> String {
        let mut all = vec![("Action", action), ("Version", "2010-05-08")];
        all.extend_from_slice(params);
        let r = self.send(iam_request(&all, Some(&root()))).await;
        assert_eq!(r.status, StatusCode::OK, "{action}: {}", r.text());
        r.text()
    }

    /// User `mallory` of ACCOUNT, allowed `ecr:*` by its identity policy
    /// and denied `ecr:*` by ACCOUNT's registry policy; OTHER (an account
    /// mallory controls) allows mallory everything in its registry policy.
    async fn mallory(&self) -> Creds {
        self.iam("CreateUser", &[("UserName", "mallory")]).await;
        let allow =
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ecr:*", "Resource": "*"}]});
        self.iam(
            "PutUserPolicy",
            &[
                ("UserName", "mallory"),
                ("PolicyName", "ecr"),
                ("PolicyDocument", &allow.to_string()),
            ],
        )
        .await;
        let k = self.iam("CreateAccessKey", &[("UserName", "mallory")]).await;
        self.ecr_ok(
            &root(),
            "PutRegistryPolicy",
            json!({"policyText": policy("Deny", &mallory_arn())}),
        )
        .await;
        self.ecr_ok(
            &other_root(),
            "PutRegistryPolicy",
            json!({"policyText": policy("Allow", &mallory_arn())}),
        )
        .await;
        (xml(&k, "AccessKeyId"), xml(&k, "SecretAccessKey"))
    }

    async fn registry_policy(&self, creds: &Creds) -> Value {
        self.ecr_ok(creds, "GetRegistryPolicy", json!({})).await["policyText"].clone()
    }
}

// ---------------------------------------------------------------------------
// Vulnerability 4: registryId smuggling

/// The attack as reported: mallory, denied everything by its own registry's
/// policy, calls DeleteRegistryPolicy with the registryId of an account it
/// controls. The old code authorized against that account (allowed there)
/// and deleted ACCOUNT's policy. Now the call is refused (the operation has
/// no registryId) and both policies survive.
#[tokio::test]
async fn delete_registry_policy_with_another_registry_id_is_refused() {
    let t = T::new().await;
    let mallory = t.mallory().await;
    let own = t.registry_policy(&root()).await;
    let theirs = t.registry_policy(&other_root()).await;

    // The Deny holds on the plain call.
    t.ecr(&mallory, "DeleteRegistryPolicy", json!({}))
        .await
        .ecr_error(StatusCode::FORBIDDEN, "AccessDeniedException");
    // The smuggled registryId is refused before anything is decided.
    let msg = t
        .ecr(&mallory, "DeleteRegistryPolicy", json!({"registryId": OTHER}))
        .await
        .ecr_error(StatusCode::BAD_REQUEST, "SerializationException");
    assert!(msg.contains("registryId"), "{msg}");

    assert_eq!(t.registry_policy(&root()).await, own, "ACCOUNT's policy survives");
    assert_eq!(t.registry_policy(&other_root()).await, theirs);
    // And mallory still cannot read it.
    t.ecr(&mallory, "GetRegistryPolicy", json!({}))
        .await
        .ecr_error(StatusCode::FORBIDDEN, "AccessDeniedException");
}

/// A minimal valid input (without `registryId`) of every registry-level
/// operation.
fn registry_op_inputs() -> Vec<(&'static str, Value)> {
    let backfill = "01234567-89ab-cdef-0123-456789abcdef";
    vec![
        ("GetAuthorizationToken", json!({})),
        ("DescribeRegistry", json!({})),
        (
            "PutRegistryScanningConfiguration",
            json!({"scanType": "BASIC", "rules": [{"scanFrequency": "SCAN_ON_PUSH",
                "repositoryFilters": [{"filter": "*", "filterType": "WILDCARD"}]}]}),
        ),
        ("GetRegistryScanningConfiguration", json!({})),
        (
            "PutRegistryPolicy",
            json!({"policyText": policy("Allow", &mallory_arn())}),
        ),
        ("GetRegistryPolicy", json!({})),
        ("DeleteRegistryPolicy", json!({})),
        (
            "CreateRepositoryCreationTemplate",
            json!({"prefix": "smuggled", "appliedFor": ["CREATE_ON_PUSH"]}),
        ),
        ("UpdateRepositoryCreationTemplate", json!({"prefix": "smuggled"})),
        ("DescribeRepositoryCreationTemplates", json!({})),
        ("DeleteRepositoryCreationTemplate", json!({"prefix": "smuggled"})),
        ("GetAccountSetting", json!({"name": "BLOB_MOUNTING"})),
        (
            "PutAccountSetting",
            json!({"name": "BLOB_MOUNTING", "value": "DISABLED"}),
        ),
        (
            "PutReplicationConfiguration",
            json!({"replicationConfiguration": {"rules": [{"destinations": [{"region": "us-west-2", "registryId": OTHER}]}]}}),
        ),
        (
            "StartReplicationBackfill",
            json!({"destination": {"region": "us-west-2", "registryId": OTHER}}),
        ),
        ("StopReplicationBackfill", json!({"replicationBackfillId": backfill})),
        (
            "DescribeReplicationBackfillResults",
            json!({"replicationBackfillId": backfill}),
        ),
        ("ListReplicationBackfills", json!({})),
        (
            "CreatePullThroughCacheRule",
            json!({"ecrRepositoryPrefix": "cache", "upstreamRegistryUrl": "public.ecr.aws"}),
        ),
        ("DescribePullThroughCacheRules", json!({})),
        ("UpdatePullThroughCacheRule", json!({"ecrRepositoryPrefix": "cache"})),
        ("DeletePullThroughCacheRule", json!({"ecrRepositoryPrefix": "cache"})),
        ("ValidatePullThroughCacheRule", json!({"ecrRepositoryPrefix": "cache"})),
        (
            "PutSigningConfiguration",
            json!({"signingConfiguration": {"rules": [{"signingProfileArn":
                "arn:aws:signer:us-east-1:123456789012:/signing-profiles/prof"}]}}),
        ),
        ("GetSigningConfiguration", json!({})),
        ("DeleteSigningConfiguration", json!({})),
        (
            "RegisterPullTimeUpdateExclusion",
            json!({"principalArn": format!("arn:aws:iam::{ACCOUNT}:role/ci")}),
        ),
        (
            "DeregisterPullTimeUpdateExclusion",
            json!({"principalArn": format!("arn:aws:iam::{ACCOUNT}:role/ci")}),
        ),
        ("ListPullTimeUpdateExclusions", json!({})),
        (
            "BatchGetRepositoryScanningConfiguration",
            json!({"repositoryNames": ["team/app"]}),
        ),
    ]
}

/// Every registry-level operation, called by mallory (denied `ecr:*` by its
/// own registry's policy) with and without OTHER's registryId: without, the
/// Deny holds; with it, an operation whose model has no registryId is
/// refused as a serialization error, and one whose model has it acts on
/// OTHER (where mallory is allowed): nothing of ACCOUNT is read or changed.
#[tokio::test]
async fn every_registry_level_operation_acts_where_it_is_authorized() {
    let t = T::new().await;
    let mallory = t.mallory().await;
    let model = kura_ecr::model::model();
    let inputs = registry_op_inputs();
    for op in kura_ecr::ops::policy::REGISTRY_OPS {
        assert!(inputs.iter().any(|(o, _)| o == op), "{op} needs a row in the table");
    }
    let before_policy = t.registry_policy(&root()).await;
    let before_scanning = t.ecr_ok(&root(), "GetRegistryScanningConfiguration", json!({})).await;
    let before_setting = t
        .ecr_ok(&root(), "GetAccountSetting", json!({"name": "BLOB_MOUNTING"}))
        .await;

    for (op, input) in &inputs {
        model.validate(op, input).unwrap_or_else(|e| panic!("{op}: {e}"));
        // The Deny of mallory's own registry holds.
        t.ecr(&mallory, op, input.clone())
            .await
            .ecr_error(StatusCode::FORBIDDEN, "AccessDeniedException");

        let mut smuggled = input.clone();
        smuggled["registryId"] = json!(OTHER);
        let r = t.ecr(&mallory, op, smuggled).await;
        if model.input_has(op, "registryId") {
            // Authorized against OTHER (allowed there), acting on OTHER.
            assert_ne!(r.status, StatusCode::FORBIDDEN, "{op}: {}", r.text());
            assert!(
                !r.text().contains(ACCOUNT),
                "{op} acted on the caller's registry: {}",
                r.text()
            );
        } else {
            let msg = r.ecr_error(StatusCode::BAD_REQUEST, "SerializationException");
            assert!(msg.contains("registryId"), "{op}: {msg}");
        }
    }

    assert_eq!(t.registry_policy(&root()).await, before_policy);
    assert_eq!(
        t.ecr_ok(&root(), "GetRegistryScanningConfiguration", json!({})).await,
        before_scanning
    );
    assert_eq!(
        t.ecr_ok(&root(), "GetAccountSetting", json!({"name": "BLOB_MOUNTING"}))
            .await,
        before_setting
    );
    let templates = t
        .ecr_ok(&root(), "DescribeRepositoryCreationTemplates", json!({}))
        .await;
    assert_eq!(templates["repositoryCreationTemplates"], json!([]), "{templates}");
}

/// Repository operations whose model has a registryId act on the registry
/// they are authorized against, and members no operation defines are refused
/// at any depth (they never reach a handler or a decision).
#[tokio::test]
async fn repository_operations_use_the_one_registry_and_unknown_members_are_refused() {
    let t = T::new().await;
    let mallory = t.mallory().await;
    // Allowed in OTHER: the repository is created there, not in ACCOUNT.
    let v = t
        .ecr_ok(
            &mallory,
            "CreateRepository",
            json!({"registryId": OTHER, "repositoryName": "made/there"}),
        )
        .await;
    assert_eq!(v["repository"]["registryId"], OTHER);
    assert!(t.s.store.repo_get(OTHER, "made/there").await.unwrap().is_some());
    assert!(t.s.store.repo_get(ACCOUNT, "made/there").await.unwrap().is_none());
    // Denied in ACCOUNT.
    t.ecr(&mallory, "CreateRepository", json!({"repositoryName": "made/here"}))
        .await
        .ecr_error(StatusCode::FORBIDDEN, "AccessDeniedException");

    for (op, input) in [
        ("DescribeRepositories", json!({"accountId": OTHER})),
        (
            "CreateRepository",
            json!({"repositoryName": "x/y", "registryID": OTHER}),
        ),
        (
            "CreateRepository",
            json!({"repositoryName": "x/y", "encryptionConfiguration": {"encryptionType": "AES256", "registryId": OTHER}}),
        ),
        ("GetAuthorizationToken", json!({"registryId": OTHER})),
    ] {
        t.ecr(&root(), op, input)
            .await
            .ecr_error(StatusCode::BAD_REQUEST, "SerializationException");
    }
    assert!(t.s.store.repo_get(ACCOUNT, "x/y").await.unwrap().is_none());
}

/// ECR Public: an operation with a registryId acts on the caller's own
/// registry only, and one without refuses the member.
#[tokio::test]
async fn ecr_public_registry_ids_are_the_callers_own() {
    let t = T::new().await;
    let call = |op: &str, input: Value| {
        let target = format!("{PUBLIC}.{op}");
        post(
            &[
                ("content-type", "application/x-amz-json-1.1"),
                ("x-amz-target", &target),
            ],
            &serde_json::to_vec(&input).unwrap(),
            Some(&root()),
            "ecr-public",
            &[],
        )
    };
    t.send(call("DescribeRepositories", json!({"registryId": OTHER})))
        .await
        .ecr_error(StatusCode::FORBIDDEN, "AccessDeniedException");
    t.send(call(
        "PutRegistryCatalogData",
        json!({"registryId": OTHER, "displayName": "x"}),
    ))
    .await
    .ecr_error(StatusCode::BAD_REQUEST, "SerializationException");
    let r = t
        .send(call("DescribeRepositories", json!({"registryId": ACCOUNT})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}

// ---------------------------------------------------------------------------
// Vulnerability 5: pre-authentication memory

/// A body of `len` spaces that counts what is pulled from it.
fn counted_body(len: usize, pulled: Arc<AtomicUsize>) -> Body {
    counted(Bytes::from(vec![b' '; len]), pulled)
}

/// A body of `content`, sent in 1 MiB chunks, counting what is pulled.
fn counted(content: Bytes, pulled: Arc<AtomicUsize>) -> Body {
    const CHUNK: usize = 1 << 20;
    let stream = futures::stream::unfold(0usize, move |sent| {
        let (pulled, content) = (pulled.clone(), content.clone());
        async move {
            (sent < content.len()).then(|| {
                let n = CHUNK.min(content.len() - sent);
                pulled.fetch_add(n, Ordering::SeqCst);
                (Ok::<_, std::io::Error>(content.slice(sent..sent + n)), sent + n)
            })
        }
    });
    Body::from_stream(stream)
}

/// The ways an attacker without a valid key can start a `POST /`, each
/// declaring a 25 MiB body.
fn unauthenticated_requests() -> Vec<(&'static str, Request<Body>)> {
    let len = BIG.to_string();
    let json_headers = |target: &str| {
        vec![
            ("content-type".to_string(), "application/x-amz-json-1.1".to_string()),
            ("x-amz-target".to_string(), target.to_string()),
            ("content-length".to_string(), len.clone()),
        ]
    };
    let ecr = json_headers(&format!("{TARGET}.DescribeRepositories"));
    let public = json_headers(&format!("{PUBLIC}.DescribeRepositories"));
    let query = vec![
        (
            "content-type".to_string(),
            "application/x-www-form-urlencoded".to_string(),
        ),
        ("content-length".to_string(), len.clone()),
    ];
    let unknown: Creds = ("AKIANOSUCHKEY0000000".into(), SECRET.into());
    let build = |h: &Vec<(String, String)>, creds: Option<&Creds>, service: &str| {
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        // Signed over an empty body: the key is what is refused.
        post(&h, b"", creds, service, &[])
    };
    vec![
        ("ecr unsigned", build(&ecr, None, "ecr")),
        ("ecr unknown key", build(&ecr, Some(&unknown), "ecr")),
        ("public unsigned", build(&public, None, "ecr-public")),
        ("public unknown key", build(&public, Some(&unknown), "ecr-public")),
        ("query unsigned", build(&query, None, "iam")),
        ("query unknown key", build(&query, Some(&unknown), "iam")),
        ("sts unknown key", build(&query, Some(&unknown), "sts")),
        (
            "garbage authorization",
            build(
                &[
                    ecr.clone(),
                    vec![("authorization".to_string(), "AWS4-HMAC-SHA256 Credential=x".to_string())],
                ]
                .concat(),
                None,
                "ecr",
            ),
        ),
    ]
}

/// 24 unsigned or unknown-key requests declaring 25 MiB bodies (ECR, ECR
/// Public, IAM and STS forms) are refused without pulling one byte of their
/// bodies, and the connection is closed rather than drained. The old code
/// read each body whole (up to 30 MiB) before looking at the signature.
#[tokio::test]
async fn unauthenticated_bodies_are_never_read() {
    let t = T::new().await;
    let pulled = Arc::new(AtomicUsize::new(0));
    let mut calls = Vec::new();
    for round in 0..3 {
        for (name, mut req) in unauthenticated_requests() {
            *req.body_mut() = counted_body(BIG, pulled.clone());
            let t = &t;
            calls.push(async move { (round, name, t.send(req).await) });
        }
    }
    assert!(calls.len() >= 20);
    for (_, name, r) in futures::future::join_all(calls).await {
        assert!(r.status.is_client_error(), "{name}: {} {}", r.status, r.text());
        assert!(r.closes(), "{name}: the unread body's connection is closed");
    }
    assert_eq!(pulled.load(Ordering::SeqCst), 0, "no body byte was read");
    let budget = t.s.ecr.body_budget();
    assert_eq!(budget.available(), budget.total());
}

/// The same with bodies that never come: the answer does not wait for them.
#[tokio::test]
async fn unauthenticated_requests_are_answered_before_their_body_arrives() {
    let t = T::new().await;
    for (name, mut req) in unauthenticated_requests() {
        *req.body_mut() = Body::from_stream(futures::stream::pending::<Result<Bytes, std::io::Error>>());
        let r = t.send(req).await;
        assert!(r.status.is_client_error(), "{name}: {}", r.text());
    }
}

/// Inactive keys are refused from the headers too.
#[tokio::test]
async fn an_inactive_key_is_refused_before_the_body() {
    let t = T::new().await;
    let mallory = t.mallory().await;
    t.iam(
        "UpdateAccessKey",
        &[
            ("UserName", "mallory"),
            ("AccessKeyId", &mallory.0),
            ("Status", "Inactive"),
        ],
    )
    .await;
    let pulled = Arc::new(AtomicUsize::new(0));
    let mut req = post(
        &[
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", &format!("{TARGET}.DescribeRepositories")),
            ("content-length", &BIG.to_string()),
        ],
        b"",
        Some(&mallory),
        "ecr",
        &[],
    );
    *req.body_mut() = counted_body(BIG, pulled.clone());
    t.send(req)
        .await
        .ecr_error(StatusCode::BAD_REQUEST, "UnrecognizedClientException");
    assert_eq!(pulled.load(Ordering::SeqCst), 0);
}

/// A signed request streamed without a Content-Length is hashed as it is
/// read and verified; a chunk that changes after signing is caught.
#[tokio::test]
async fn streamed_bodies_are_hashed_while_read() {
    let t = T::new().await;
    let body = format!("{{\"repositoryName\":\"streamed/repo\"}}{}", " ".repeat(3 << 20));
    let mut req = ecr_request("CreateRepository", &json!({}), None);
    let mut h = req.headers().clone();
    common::sign_post(
        &mut h,
        body.as_bytes(),
        (KEY_ID, SECRET),
        REGION,
        "ecr",
        SystemTime::now(),
    );
    *req.headers_mut() = h.clone();
    let chunks: Vec<Result<Bytes, std::io::Error>> = body
        .as_bytes()
        .chunks(256 << 10)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    *req.body_mut() = Body::from_stream(futures::stream::iter(chunks));
    let r = t.send(req).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(t.s.store.repo_get(ACCOUNT, "streamed/repo").await.unwrap().is_some());

    let mut tampered = ecr_request("CreateRepository", &json!({}), None);
    *tampered.headers_mut() = h;
    let evil = body.replace("streamed/repo", "streamed/evil");
    *tampered.body_mut() = Body::from_stream(futures::stream::iter(
        evil.into_bytes()
            .chunks(256 << 10)
            .map(|c| Ok::<_, std::io::Error>(Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    ));
    t.send(tampered)
        .await
        .ecr_error(StatusCode::BAD_REQUEST, "InvalidSignatureException");
    assert!(t.s.store.repo_get(ACCOUNT, "streamed/evil").await.unwrap().is_none());
    let budget = t.s.ecr.body_budget();
    assert_eq!(budget.available(), budget.total());
}

/// The byte budget bounds what authenticated requests hold at once: a body
/// larger than the whole budget is refused (503, Retry-After) without being
/// read, and one that does not fit while another holds the budget waits for
/// it to be released.
#[tokio::test]
async fn the_body_budget_bounds_bytes_in_flight() {
    let t = T::with(|c| c.api_body_budget = 1 << 20).await;
    let budget = t.s.ecr.body_budget();
    assert_eq!(budget.total(), 1 << 20);

    // Larger than the whole budget: never fits.
    let pulled = Arc::new(AtomicUsize::new(0));
    let body = vec![b' '; 2 << 20];
    let mut req = post(
        &[
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", &format!("{TARGET}.DescribeRepositories")),
        ],
        &body,
        Some(&root()),
        "ecr",
        &[],
    );
    *req.body_mut() = counted_body(body.len(), pulled.clone());
    req.headers_mut()
        .insert("content-length", body.len().to_string().parse().unwrap());
    let r = t.send(req).await;
    r.ecr_error(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailableException");
    assert_eq!(r.headers.get("retry-after").unwrap(), "1");
    assert_eq!(pulled.load(Ordering::SeqCst), 0);

    // Two signed 600 KiB bodies: the second waits while the first holds
    // its share, then goes through.
    let size = 600 << 10;
    let first_body = format!("{{}}{}", " ".repeat(size - 2));
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let mut first = post(
        &[
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", &format!("{TARGET}.DescribeRepositories")),
            ("content-length", &size.to_string()),
        ],
        first_body.as_bytes(),
        Some(&root()),
        "ecr",
        &[],
    );
    let head = Bytes::copy_from_slice(&first_body.as_bytes()[..1024]);
    let tail = Bytes::copy_from_slice(&first_body.as_bytes()[1024..]);
    let stream =
        futures::stream::once(async move { Ok::<_, std::io::Error>(head) }).chain(futures::stream::once(async move {
            let _ = released.await;
            Ok::<_, std::io::Error>(tail)
        }));
    *first.body_mut() = Body::from_stream(stream);
    let first = tokio::spawn(t.s.app.clone().oneshot(first));
    // Wait until the first request holds its share.
    for _ in 0..2000 {
        if budget.available() == (1 << 20) - size {
            break;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(
        budget.available(),
        (1 << 20) - size,
        "the first body holds its declared length"
    );
    let second_body = format!("{{}}{}", " ".repeat(size - 2));
    let mut second_req = post(
        &[
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", &format!("{TARGET}.DescribeRepositories")),
            ("content-length", &size.to_string()),
        ],
        second_body.as_bytes(),
        Some(&root()),
        "ecr",
        &[],
    );
    let second_pulled = Arc::new(AtomicUsize::new(0));
    *second_req.body_mut() = counted(Bytes::from(second_body), second_pulled.clone());
    let second = tokio::spawn(t.s.app.clone().oneshot(second_req));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(second_pulled.load(Ordering::SeqCst), 0, "the second waits for room");
    release.send(()).unwrap();
    let first = first.await.unwrap().unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let second = second.await.unwrap().unwrap();
    assert_eq!(second.status(), StatusCode::OK);
    assert_eq!(second_pulled.load(Ordering::SeqCst), size);
    assert_eq!(budget.available(), budget.total(), "every share was given back");
}

// ---------------------------------------------------------------------------
// SigV4 on POST /

/// A request whose signature does not cover `X-Amz-Target` (or
/// `Content-Type`) could be replayed as another operation (or protocol):
/// refused, whatever the signature says.
#[tokio::test]
async fn target_and_content_type_must_be_signed() {
    let t = T::new().await;
    let target = format!("{TARGET}.CreateRepository");
    let body = br#"{"repositoryName":"unsigned/target"}"#;
    for (signed, after) in [
        (
            vec![("content-type", "application/x-amz-json-1.1")],
            vec![("x-amz-target", target.as_str())],
        ),
        (
            vec![("x-amz-target", target.as_str())],
            vec![("content-type", "application/x-amz-json-1.1")],
        ),
        (vec![("x-amz-target", target.as_str())], vec![]),
    ] {
        let r = t.send(post(&signed, body, Some(&root()), "ecr", &after)).await;
        let msg = r.ecr_error(StatusCode::BAD_REQUEST, "IncompleteSignatureException");
        assert!(msg.contains("SignedHeaders"), "{msg}");
    }
    assert!(t.s.store.repo_get(ACCOUNT, "unsigned/target").await.unwrap().is_none());

    // The IAM/STS Query protocol has no target: Content-Type must be signed.
    let params = form(&[("Action", "CreateUser"), ("Version", "2010-05-08"), ("UserName", "eve")]);
    let r = t
        .send(post(
            &[],
            params.as_bytes(),
            Some(&root()),
            "iam",
            &[("content-type", "application/x-www-form-urlencoded")],
        ))
        .await;
    r.query_error(StatusCode::BAD_REQUEST, "IncompleteSignature");
    assert!(!t.iam("ListUsers", &[]).await.contains("eve"));

    // Signed as they should be, both work.
    t.ecr_ok(&root(), "CreateRepository", json!({"repositoryName": "signed/target"}))
        .await;
    t.iam("CreateUser", &[("UserName", "eve")]).await;
}

/// A presigned `POST /` (signature in the query string, whose payload may
/// be UNSIGNED-PAYLOAD) is refused before its key is even looked up.
#[tokio::test]
async fn presigned_api_calls_are_refused() {
    let t = T::new().await;
    let date = common::amz_date(SystemTime::now());
    let query = format!(
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={KEY_ID}%2F{}%2F{REGION}%2Fecr%2Faws4_request\
         &X-Amz-Date={date}&X-Amz-Expires=300&X-Amz-SignedHeaders=content-type%3Bhost%3Bx-amz-target\
         &X-Amz-Signature={}",
        &date[..8],
        "0".repeat(64)
    );
    for (ct, target, service) in [
        (
            "application/x-amz-json-1.1",
            Some(format!("{TARGET}.DeleteRegistryPolicy")),
            "ecr",
        ),
        (
            "application/x-amz-json-1.1",
            Some(format!("{PUBLIC}.DescribeRegistries")),
            "ecr-public",
        ),
        ("application/x-www-form-urlencoded", None, "iam"),
    ] {
        let mut b = Request::builder()
            .method(Method::POST)
            .uri(format!("/?{}", query.replace("%2Fecr%2F", &format!("%2F{service}%2F"))))
            .header("host", HOST)
            .header("content-type", ct);
        if let Some(target) = &target {
            b = b.header("x-amz-target", target);
        }
        let r = t
            .send(b.body(Body::from("Action=ListUsers&Version=2010-05-08")).unwrap())
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
        assert!(r.text().contains("IncompleteSignature"), "{}", r.text());
        assert!(r.text().contains("Presigned"), "{}", r.text());
    }
}
