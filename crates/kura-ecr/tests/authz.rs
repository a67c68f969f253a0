//! Authorization end to end inside the service: principals, identity
//! policies (inline, attached, through groups, of assumed roles), repository
//! policies, resource tags, and the data plane's 403 `DENIED`, over the real
//! SQLite store (principals are written straight to the store here; the IAM
//! API that writes them has its own tests).

use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use base64::Engine;
use http_body_util::BodyExt;
use kura_auth::token::{self, TokenClaims};
use kura_ecr::auth::Caller;
use kura_ecr::authz::{repository_arn, Access};
use kura_store::control::AccessKeyRow;
use kura_store::iam::{kind, rel, IamEntity};
use kura_store::{ControlStore, IamStore, MetaStore};
use tower::ServiceExt;

mod common;

use common::{ACCOUNT, REGION};

const OTHER: &str = "210987654321";
const READ_ONLY: &str = "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly";
const POWER_USER: &str = "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryPowerUser";

struct T {
    s: common::Server,
}

impl T {
    async fn new() -> T {
        let s = common::server().await;
        s.store.account_ensure(OTHER).await.unwrap();
        for name in ["team/app", "other/svc", "prod/api"] {
            s.store
                .repo_create(ACCOUNT, name, &Default::default())
                .await
                .unwrap()
                .unwrap();
        }
        s.store
            .resource_tags_put(
                &repository_arn(REGION, ACCOUNT, "prod/api"),
                &[("env".into(), "prod".into())],
            )
            .await
            .unwrap();
        T { s }
    }

    async fn entity(&self, account: &str, k: &str, name: &str) {
        let e = IamEntity {
            account: account.into(),
            kind: k.into(),
            name: name.into(),
            id: format!("AID{}{}", k.len(), name.to_uppercase()),
            path: "/".into(),
            arn: format!("arn:aws:iam::{account}:{k}/{name}"),
            body: "{}".into(),
            created_at: 0,
        };
        assert!(self.s.store.iam_entity_create(&e).await.unwrap());
    }

    async fn user(&self, account: &str, name: &str) -> Caller {
        self.entity(account, kind::USER, name).await;
        let arn = format!("arn:aws:iam::{account}:user/{name}");
        let owner = format!("AID4{}", name.to_uppercase());
        self.key(account, &arn, &owner, &format!("AKIA{}", name.to_uppercase()), None)
            .await
    }

    /// A session `session` of role `role` (created with [`T::entity`]).
    async fn session(&self, role: &str, session: &str, id: &str, expires_at: i64) -> Caller {
        let arn = format!("arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{session}");
        let owner = format!("AID4{}:{session}", role.to_uppercase());
        self.key(ACCOUNT, &arn, &owner, id, Some(expires_at)).await
    }

    async fn key(&self, account: &str, arn: &str, owner: &str, id: &str, expires_at: Option<i64>) -> Caller {
        let row = AccessKeyRow {
            access_key_id: id.into(),
            account: account.into(),
            principal_arn: arn.into(),
            principal_id: owner.into(),
            secret_sealed: vec![0],
            status: "Active".into(),
            session_token_hash: expires_at.map(|_| "x".to_string()),
            expires_at,
            created_at: kura_store::now_millis(),
        };
        self.s.store.access_key_put(&row).await.unwrap();
        Caller::from_key(row).unwrap()
    }

    async fn inline(&self, account: &str, k: &str, owner: &str, doc: serde_json::Value) {
        self.s
            .store
            .iam_inline_put(account, k, owner, "inline", &doc.to_string())
            .await
            .unwrap();
    }

    async fn attach(&self, account: &str, k: &str, owner: &str, arn: &str) {
        self.s
            .store
            .iam_link_add(account, rel::ATTACHED, k, owner, arn)
            .await
            .unwrap();
    }

    async fn allowed(&self, c: &Caller, action: &str, account: &str, repo: &str) -> bool {
        let access = Access::repository(action, REGION, account, repo);
        match self.s.ecr.authorize(c, &access, None).await {
            Ok(()) => true,
            Err(e) => {
                assert_eq!(e.kind, "AccessDeniedException");
                assert_eq!(e.status, StatusCode::FORBIDDEN);
                assert!(e.message.contains(action), "{}", e.message);
                assert!(e.message.contains(&c.principal_arn), "{}", e.message);
                false
            }
        }
    }

    /// A data-plane request with a registry token of `c`.
    async fn dp(&self, c: &Caller, method: Method, host: &str, path: &str) -> (StatusCode, serde_json::Value) {
        self.dp_body(c, method, host, path, Vec::new()).await
    }

    /// The same, with a body.
    async fn dp_body(
        &self,
        c: &Caller,
        method: Method,
        host: &str,
        path: &str,
        body: Vec<u8>,
    ) -> (StatusCode, serde_json::Value) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let claims = TokenClaims {
            account: c.account.clone(),
            principal_arn: c.principal_arn.clone(),
            access_key_id: c.access_key_id.clone(),
            issued_at: now,
            expires_at: now + 3600,
        };
        let t = token::issue(&self.s.token_key, &claims);
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("AWS:{t}"));
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", host)
            .header("authorization", format!("Basic {auth}"))
            .body(Body::from(body))
            .unwrap();
        let resp = self.s.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null))
    }
}

fn policy(statements: serde_json::Value) -> serde_json::Value {
    serde_json::json!({"Version": "2012-10-17", "Statement": statements})
}

#[tokio::test]
async fn identity_policies_decide_within_the_account() {
    let t = T::new().await;
    // Read-only through an AWS managed policy.
    let reader = t.user(ACCOUNT, "reader").await;
    t.attach(ACCOUNT, kind::USER, "reader", READ_ONLY).await;
    assert!(t.allowed(&reader, "ecr:BatchGetImage", ACCOUNT, "team/app").await);
    assert!(
        t.allowed(&reader, "ecr:GetDownloadUrlForLayer", ACCOUNT, "other/svc")
            .await
    );
    assert!(!t.allowed(&reader, "ecr:PutImage", ACCOUNT, "team/app").await);
    assert!(!t.allowed(&reader, "ecr:DeleteRepository", ACCOUNT, "team/app").await);

    // A user without policies may do nothing; the root may do everything.
    let nobody = t.user(ACCOUNT, "nobody").await;
    assert!(!t.allowed(&nobody, "ecr:BatchGetImage", ACCOUNT, "team/app").await);
    let root = Caller {
        account: ACCOUNT.into(),
        principal_arn: format!("arn:aws:iam::{ACCOUNT}:root"),
        principal_id: ACCOUNT.into(),
        access_key_id: common::KEY_ID.into(),
        token_issued_at: None,
    };
    assert!(t.allowed(&root, "ecr:DeleteRepository", ACCOUNT, "team/app").await);

    // A repository-scoped inline policy with a policy variable.
    let scoped = t.user(ACCOUNT, "team").await;
    t.inline(
        ACCOUNT,
        kind::USER,
        "team",
        policy(serde_json::json!([{
            "Effect": "Allow", "Action": "ecr:*",
            "Resource": "arn:aws:ecr:*:*:repository/${aws:username}/*"
        }])),
    )
    .await;
    assert!(t.allowed(&scoped, "ecr:PutImage", ACCOUNT, "team/app").await);
    assert!(!t.allowed(&scoped, "ecr:PutImage", ACCOUNT, "other/svc").await);

    // A deny on a resource tag condition beats the managed allow.
    let careful = t.user(ACCOUNT, "careful").await;
    t.attach(ACCOUNT, kind::USER, "careful", POWER_USER).await;
    t.inline(
        ACCOUNT,
        kind::USER,
        "careful",
        policy(serde_json::json!([{
            "Effect": "Deny", "Action": ["ecr:PutImage", "ecr:InitiateLayerUpload"], "Resource": "*",
            "Condition": {"StringEquals": {"ecr:ResourceTag/env": "prod"}}
        }])),
    )
    .await;
    assert!(t.allowed(&careful, "ecr:PutImage", ACCOUNT, "team/app").await);
    assert!(!t.allowed(&careful, "ecr:PutImage", ACCOUNT, "prod/api").await);
    assert!(t.allowed(&careful, "ecr:BatchGetImage", ACCOUNT, "prod/api").await);

    // Through a group, until the user leaves it.
    let member = t.user(ACCOUNT, "member").await;
    t.entity(ACCOUNT, kind::GROUP, "pushers").await;
    t.attach(ACCOUNT, kind::GROUP, "pushers", POWER_USER).await;
    t.s.store
        .iam_link_add(ACCOUNT, rel::MEMBER, kind::USER, "member", "pushers")
        .await
        .unwrap();
    assert!(t.allowed(&member, "ecr:PutImage", ACCOUNT, "team/app").await);
    t.s.store
        .iam_link_remove(ACCOUNT, rel::MEMBER, kind::USER, "member", "pushers")
        .await
        .unwrap();
    assert!(!t.allowed(&member, "ecr:PutImage", ACCOUNT, "team/app").await);

    // A role session acts with the role's policies.
    t.entity(ACCOUNT, kind::ROLE, "ci").await;
    t.attach(ACCOUNT, kind::ROLE, "ci", POWER_USER).await;
    let session = t
        .session("ci", "build-1", "ASIASESSION", kura_store::now_millis() + 60_000)
        .await;
    assert!(t.allowed(&session, "ecr:PutImage", ACCOUNT, "team/app").await);
    assert!(!t.allowed(&session, "ecr:DeleteRepository", ACCOUNT, "team/app").await);

    // A repository policy naming a user grants it alone, in its account.
    assert!(!t.allowed(&nobody, "ecr:BatchGetImage", ACCOUNT, "other/svc").await);
    t.s.store
        .resource_policy_put(
            &repository_arn(REGION, ACCOUNT, "other/svc"),
            &policy(serde_json::json!([{
                "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:user/nobody")},
                "Action": "ecr:BatchGetImage"
            }]))
            .to_string(),
        )
        .await
        .unwrap();
    assert!(t.allowed(&nobody, "ecr:BatchGetImage", ACCOUNT, "other/svc").await);
    assert!(!t.allowed(&nobody, "ecr:BatchGetImage", ACCOUNT, "team/app").await);
}

#[tokio::test]
async fn cross_account_needs_both_sides() {
    let t = T::new().await;
    let bob = t.user(OTHER, "bob").await;
    t.inline(
        OTHER,
        kind::USER,
        "bob",
        policy(serde_json::json!([{
            "Effect": "Allow",
            "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
            "Resource": format!("arn:aws:ecr:*:{ACCOUNT}:repository/*")
        }])),
    )
    .await;
    // Identity side only: denied.
    assert!(!t.allowed(&bob, "ecr:BatchGetImage", ACCOUNT, "team/app").await);
    let (status, body) = t
        .dp(
            &bob,
            Method::GET,
            &format!("{ACCOUNT}.dkr.localhost"),
            "/v2/team/app/manifests/v1",
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["errors"][0]["code"], "DENIED");

    // The repository policy grants the other account pull.
    t.s.store
        .resource_policy_put(
            &repository_arn(REGION, ACCOUNT, "team/app"),
            &policy(serde_json::json!([{
                "Sid": "OtherAccountPull", "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{OTHER}:root")},
                "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]
            }]))
            .to_string(),
        )
        .await
        .unwrap();
    assert!(t.allowed(&bob, "ecr:BatchGetImage", ACCOUNT, "team/app").await);
    assert!(!t.allowed(&bob, "ecr:PutImage", ACCOUNT, "team/app").await);
    assert!(!t.allowed(&bob, "ecr:BatchGetImage", ACCOUNT, "other/svc").await);
    // On the data plane: the manifest is looked up (and missing), not refused.
    let (status, body) = t
        .dp(
            &bob,
            Method::GET,
            &format!("{ACCOUNT}.dkr.localhost"),
            "/v2/team/app/manifests/v1",
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["errors"][0]["code"], "MANIFEST_UNKNOWN");
    let (status, body) = t
        .dp(
            &bob,
            Method::POST,
            &format!("{ACCOUNT}.dkr.localhost"),
            "/v2/team/app/blobs/uploads/",
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let msg = body["errors"][0]["message"].as_str().unwrap();
    assert!(msg.contains("ecr:InitiateLayerUpload"), "{msg}");

    // A user of the other account without an identity allow stays out.
    let eve = t.user(OTHER, "eve").await;
    assert!(!t.allowed(&eve, "ecr:BatchGetImage", ACCOUNT, "team/app").await);
}

#[tokio::test]
async fn data_plane_maps_requests_to_actions() {
    let t = T::new().await;
    let reader = t.user(ACCOUNT, "reader").await;
    t.attach(ACCOUNT, kind::USER, "reader", READ_ONLY).await;
    let host = "localhost:5000";
    let cases = [
        (Method::GET, "/v2/team/app/manifests/latest", StatusCode::NOT_FOUND, ""),
        (
            Method::HEAD,
            "/v2/team/app/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000",
            StatusCode::NOT_FOUND,
            "",
        ),
        (Method::GET, "/v2/team/app/tags/list", StatusCode::OK, ""),
        (
            Method::POST,
            "/v2/team/app/blobs/uploads/",
            StatusCode::FORBIDDEN,
            "ecr:InitiateLayerUpload",
        ),
        (
            Method::PUT,
            "/v2/team/app/manifests/latest",
            StatusCode::FORBIDDEN,
            "ecr:PutImage",
        ),
        (
            Method::DELETE,
            "/v2/team/app/manifests/latest",
            StatusCode::FORBIDDEN,
            "ecr:BatchDeleteImage",
        ),
        (
            Method::PATCH,
            "/v2/team/app/blobs/uploads/abc",
            StatusCode::FORBIDDEN,
            "ecr:UploadLayerPart",
        ),
        (
            Method::PUT,
            "/v2/team/app/blobs/uploads/abc?digest=sha256:00",
            StatusCode::FORBIDDEN,
            "ecr:CompleteLayerUpload",
        ),
    ];
    for (method, path, want, action) in cases {
        let (status, body) = t.dp(&reader, method.clone(), host, path).await;
        assert_eq!(status, want, "{method} {path}: {body}");
        if want == StatusCode::FORBIDDEN {
            assert_eq!(body["errors"][0]["code"], "DENIED");
            let msg = body["errors"][0]["message"].as_str().unwrap();
            assert!(msg.contains(action) && msg.contains("user/reader"), "{msg}");
        }
    }
    // The API version check needs no permission.
    let nobody = t.user(ACCOUNT, "nobody").await;
    assert_eq!(t.dp(&nobody, Method::GET, host, "/v2/").await.0, StatusCode::OK);
    assert_eq!(
        t.dp(&nobody, Method::GET, host, "/v2/team/app/tags/list").await.0,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn expired_temporary_credentials_lose_their_tokens() {
    let t = T::new().await;
    t.entity(ACCOUNT, kind::ROLE, "ci").await;
    t.attach(ACCOUNT, kind::ROLE, "ci", POWER_USER).await;
    let live = t
        .session("ci", "s", "ASIALIVE", kura_store::now_millis() + 60_000)
        .await;
    let dead = t.session("ci", "s", "ASIADEAD", kura_store::now_millis() - 1).await;
    assert_eq!(
        t.dp(&live, Method::GET, "localhost", "/v2/team/app/tags/list").await.0,
        StatusCode::OK
    );
    let (status, body) = t.dp(&dead, Method::GET, "localhost", "/v2/team/app/tags/list").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("expired"));
}

#[tokio::test]
async fn a_mount_from_a_repository_the_caller_cannot_read_is_an_ordinary_upload() {
    let t = T::new().await;
    let root = Caller {
        account: ACCOUNT.into(),
        principal_arn: format!("arn:aws:iam::{ACCOUNT}:root"),
        principal_id: ACCOUNT.into(),
        access_key_id: common::KEY_ID.into(),
        token_issued_at: None,
    };
    let data = b"a layer only other/svc has".to_vec();
    let digest = kura_oci::Digest::sha256(&data).to_string();
    let (status, body) = t
        .dp_body(
            &root,
            Method::POST,
            "localhost",
            &format!("/v2/other/svc/blobs/uploads/?digest={digest}"),
            data,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // A user who may push to team/* but not read other/svc.
    let pusher = t.user(ACCOUNT, "pusher").await;
    t.inline(
        ACCOUNT,
        kind::USER,
        "pusher",
        policy(serde_json::json!([{
            "Effect": "Allow", "Action": "ecr:*", "Resource": "arn:aws:ecr:*:*:repository/team/*"
        }])),
    )
    .await;
    let mount = format!("/v2/team/app/blobs/uploads/?mount={digest}&from=other/svc");
    let (status, body) = t.dp(&pusher, Method::POST, "localhost", &mount).await;
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "not mounted, an upload starts instead: {body}"
    );
    // The root may read other/svc: its mount succeeds.
    let (status, body) = t.dp(&root, Method::POST, "localhost", &mount).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}
