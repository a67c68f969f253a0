//! Attacks on identity (issue 16, vulnerabilities 1 and 3, and the stale
//! credential class around them), replayed through `kura_ecr::app` with
//! `oneshot`: SigV4-signed IAM/STS Query calls and ECR JSON calls, and
//! registry tokens and download URLs on the data plane.
//!
//! Each test guards one way a credential could act as a principal it was
//! not issued to:
//! - a user whose path holds `:` is resolved as another user (`/boss:/`);
//! - a key outliving its user acts as a re-created user of the same name;
//! - a deactivated key's registry tokens and download URLs keep working;
//! - a role session outlives its role, or acts as a re-created role of the
//!   same name;
//! - the root cannot revoke sessions (`aws:TokenIssueTime`).

use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, Method, Request, StatusCode};
use base64::Engine;
use http_body_util::BodyExt;
use kura_auth::token::{self, TokenClaims};
use kura_store::{ControlStore, IamStore};
use serde_json::{json, Value};
use tower::ServiceExt;

mod common;

use common::{ACCOUNT, KEY_ID, REGION, SECRET};

const TARGET: &str = "AmazonEC2ContainerRegistry_V20150921";
const HOST: &str = "localhost:5000";
const POWER_USER: &str = "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryPowerUser";

/// Credentials to sign with (a session token for temporary ones).
#[derive(Clone, Debug)]
struct Creds {
    id: String,
    secret: String,
    token: Option<String>,
}

fn root() -> Creds {
    Creds {
        id: KEY_ID.into(),
        secret: SECRET.into(),
        token: None,
    }
}

struct Resp {
    status: StatusCode,
    body: String,
}

impl Resp {
    /// The text of the first `<tag>` element of an XML answer.
    fn xml(&self, tag: &str) -> Option<String> {
        let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
        let start = self.body.find(&open)? + open.len();
        let len = self.body[start..].find(&close)?;
        Some(self.body[start..start + len].replace("&amp;", "&"))
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// A Query error with this status and code.
    fn query_error(&self, status: StatusCode, code: &str) -> &Self {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(self.xml("Code").as_deref(), Some(code), "{}", self.body);
        self
    }

    /// An ECR JSON error of this type.
    fn ecr_error(&self, kind: &str) -> &Self {
        assert!(self.status.is_client_error(), "{}", self.body);
        assert_eq!(self.json()["__type"], kind, "{}", self.body);
        self
    }

    fn ok(&self) -> &Self {
        assert_eq!(self.status, StatusCode::OK, "{}", self.body);
        self
    }
}

struct T {
    s: common::Server,
}

fn policy(statements: Value) -> String {
    json!({"Version": "2012-10-17", "Statement": statements}).to_string()
}

fn form_encode(params: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    params
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// ISO 8601 with milliseconds, e.g. `2024-05-01T12:00:00.250Z`.
fn iso_millis(ms: i64) -> String {
    let secs = kura_iam::format_rfc3339(ms.div_euclid(1000));
    format!("{}.{:03}Z", secs.trim_end_matches('Z'), ms.rem_euclid(1000))
}

fn now_millis() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

impl T {
    async fn new() -> T {
        let t = T {
            s: common::server().await,
        };
        t.ecr(&root(), "CreateRepository", json!({"repositoryName": "team/app"}))
            .await
            .ok();
        t
    }

    async fn send(&self, req: Request<Body>) -> Resp {
        let resp = self.s.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Resp {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    /// A signed `POST /`.
    async fn post(&self, c: &Creds, service: &str, extra: &[(&str, &str)], body: String) -> Resp {
        let mut headers = HeaderMap::new();
        headers.insert("host", HOST.parse().unwrap());
        for (k, v) in extra {
            headers.insert(HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        if let Some(t) = &c.token {
            headers.insert("x-amz-security-token", t.parse().unwrap());
        }
        common::sign_post(
            &mut headers,
            body.as_bytes(),
            (&c.id, &c.secret),
            REGION,
            service,
            SystemTime::now(),
        );
        let mut b = Request::builder().method(Method::POST).uri("/");
        *b.headers_mut().unwrap() = headers;
        self.send(b.body(Body::from(body)).unwrap()).await
    }

    async fn iam(&self, c: &Creds, action: &str, params: &[(&str, &str)]) -> Resp {
        let mut all = vec![("Action", action), ("Version", "2010-05-08")];
        all.extend_from_slice(params);
        let ct = [("content-type", "application/x-www-form-urlencoded; charset=utf-8")];
        self.post(c, "iam", &ct, form_encode(&all)).await
    }

    async fn sts(&self, c: &Creds, action: &str, params: &[(&str, &str)]) -> Resp {
        let mut all = vec![("Action", action), ("Version", "2011-06-15")];
        all.extend_from_slice(params);
        let ct = [("content-type", "application/x-www-form-urlencoded; charset=utf-8")];
        self.post(c, "sts", &ct, form_encode(&all)).await
    }

    async fn ecr(&self, c: &Creds, op: &str, body: Value) -> Resp {
        let target = format!("{TARGET}.{op}");
        let headers = [
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", target.as_str()),
        ];
        self.post(c, "ecr", &headers, body.to_string()).await
    }

    /// A data-plane request with an `Authorization` header (if any).
    async fn dp(&self, method: Method, path: &str, auth: Option<&str>, body: Vec<u8>) -> Resp {
        let mut b = Request::builder().method(method).uri(path).header("host", HOST);
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        self.send(b.body(Body::from(body)).unwrap()).await
    }

    /// `GetAuthorizationToken` for `c`: the Basic header docker would send.
    async fn registry_login(&self, c: &Creds) -> String {
        let r = self.ecr(c, "GetAuthorizationToken", json!({})).await;
        r.ok();
        format!(
            "Basic {}",
            r.json()["authorizationData"][0]["authorizationToken"].as_str().unwrap()
        )
    }

    /// A user with an access key (made by the root).
    async fn user_with_key(&self, name: &str, path: &str) -> Creds {
        self.iam(&root(), "CreateUser", &[("UserName", name), ("Path", path)])
            .await
            .ok();
        self.key_for(&root(), name).await
    }

    /// `CreateAccessKey` for `name`, as `c`.
    async fn key_for(&self, c: &Creds, name: &str) -> Creds {
        let k = self.iam(c, "CreateAccessKey", &[("UserName", name)]).await;
        k.ok();
        Creds {
            id: k.xml("AccessKeyId").unwrap(),
            secret: k.xml("SecretAccessKey").unwrap(),
            token: None,
        }
    }

    /// A role the account's root may assume, with the power-user policy.
    async fn role(&self, name: &str) -> String {
        let trust = policy(json!([{
            "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")},
            "Action": "sts:AssumeRole"
        }]));
        let r = self
            .iam(
                &root(),
                "CreateRole",
                &[("RoleName", name), ("AssumeRolePolicyDocument", &trust)],
            )
            .await;
        r.ok();
        self.iam(
            &root(),
            "AttachRolePolicy",
            &[("RoleName", name), ("PolicyArn", POWER_USER)],
        )
        .await
        .ok();
        r.xml("Arn").unwrap()
    }

    async fn delete_role(&self, name: &str) {
        self.iam(
            &root(),
            "DetachRolePolicy",
            &[("RoleName", name), ("PolicyArn", POWER_USER)],
        )
        .await
        .ok();
        self.iam(&root(), "DeleteRole", &[("RoleName", name)]).await.ok();
    }

    /// The root assumes `role_arn` as session `session`.
    async fn assume(&self, role_arn: &str, session: &str) -> Creds {
        let r = self
            .sts(
                &root(),
                "AssumeRole",
                &[("RoleArn", role_arn), ("RoleSessionName", session)],
            )
            .await;
        r.ok();
        Creds {
            id: r.xml("AccessKeyId").unwrap(),
            secret: r.xml("SecretAccessKey").unwrap(),
            token: Some(r.xml("SessionToken").unwrap()),
        }
    }

    /// Whether `c` may describe `team/app` through the ECR API.
    async fn can_describe(&self, c: &Creds) -> Resp {
        self.ecr(c, "DescribeRepositories", json!({"repositoryNames": ["team/app"]}))
            .await
    }
}

/// Vulnerability 1, exactly as reported: a principal allowed only
/// `iam:CreateUser` and `iam:CreateAccessKey` creates `mallory` with path
/// `/boss:/` (ARN `arn:aws:iam::A:user/boss:/mallory`) and a key for her.
/// Resolving principals by splitting ARNs on every `:` made her `boss` on
/// every plane. Now the key's recorded owner (mallory's unique id) decides.
#[tokio::test]
async fn mallory_with_a_colon_in_her_path_is_not_boss() {
    let t = T::new().await;
    let r = root();
    // boss may push and pull, and manage his own keys.
    t.iam(&r, "CreateUser", &[("UserName", "boss")]).await.ok();
    t.iam(
        &r,
        "AttachUserPolicy",
        &[("UserName", "boss"), ("PolicyArn", POWER_USER)],
    )
    .await
    .ok();
    let self_service = policy(json!([{
        "Effect": "Allow",
        "Action": ["iam:CreateAccessKey", "iam:ListAccessKeys", "iam:GetUser"],
        "Resource": format!("arn:aws:iam::{ACCOUNT}:user/${{aws:username}}")
    }]));
    t.iam(
        &r,
        "PutUserPolicy",
        &[
            ("UserName", "boss"),
            ("PolicyName", "self"),
            ("PolicyDocument", &self_service),
        ],
    )
    .await
    .ok();
    let boss = t.key_for(&r, "boss").await;
    t.can_describe(&boss).await.ok();

    // The attacker may create users and keys, nothing else.
    let creator = t.user_with_key("creator", "/").await;
    let create_only = policy(json!([{
        "Effect": "Allow", "Action": ["iam:CreateUser", "iam:CreateAccessKey"], "Resource": "*"
    }]));
    t.iam(
        &r,
        "PutUserPolicy",
        &[
            ("UserName", "creator"),
            ("PolicyName", "create"),
            ("PolicyDocument", &create_only),
        ],
    )
    .await
    .ok();
    let made = t
        .iam(&creator, "CreateUser", &[("UserName", "mallory"), ("Path", "/boss:/")])
        .await;
    made.ok();
    let mallory_arn = format!("arn:aws:iam::{ACCOUNT}:user/boss:/mallory");
    assert_eq!(made.xml("Arn").unwrap(), mallory_arn);
    let mallory_id = made.xml("UserId").unwrap();
    let mallory = t.key_for(&creator, "mallory").await;

    // Who is she? Herself.
    let who = t.sts(&mallory, "GetCallerIdentity", &[]).await;
    who.ok();
    assert_eq!(who.xml("Arn").unwrap(), mallory_arn);
    assert_eq!(who.xml("UserId").unwrap(), mallory_id);

    // None of boss's policies on the ECR API...
    let msg = t.can_describe(&mallory).await.ecr_error("AccessDeniedException").json()["message"].clone();
    assert!(msg.as_str().unwrap().contains(&mallory_arn), "{msg}");
    t.ecr(&mallory, "GetAuthorizationToken", json!({}))
        .await
        .ecr_error("AccessDeniedException");
    t.ecr(&mallory, "ListImages", json!({"repositoryName": "team/app"}))
        .await
        .ecr_error("AccessDeniedException");

    // ...nor on the data plane: a registry token of her key (whatever ARN
    // its claims carry) is her, not boss.
    let now = now_millis() as u64 / 1000;
    for claimed in [mallory_arn.clone(), format!("arn:aws:iam::{ACCOUNT}:user/boss")] {
        let claims = TokenClaims {
            account: ACCOUNT.into(),
            principal_arn: claimed,
            access_key_id: mallory.id.clone(),
            issued_at: now,
            expires_at: now + 3600,
        };
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("AWS:{}", token::issue(&t.s.token_key, &claims)))
        );
        let pull = t.dp(Method::GET, "/v2/team/app/tags/list", Some(&auth), vec![]).await;
        assert_eq!(pull.status, StatusCode::FORBIDDEN, "{}", pull.body);
        assert!(pull.body.contains("boss:/mallory"), "{}", pull.body);
        let push = t
            .dp(Method::POST, "/v2/team/app/blobs/uploads/", Some(&auth), vec![])
            .await;
        assert_eq!(push.status, StatusCode::FORBIDDEN, "{}", push.body);
    }

    // No keys for boss, and no key-management as boss.
    t.iam(&mallory, "CreateAccessKey", &[("UserName", "boss")])
        .await
        .query_error(StatusCode::FORBIDDEN, "AccessDenied");
    let own = t.iam(&mallory, "CreateAccessKey", &[]).await;
    own.query_error(StatusCode::FORBIDDEN, "AccessDenied");
    assert!(own.body.contains(&mallory_arn), "{}", own.body);
    t.iam(&mallory, "ListAccessKeys", &[])
        .await
        .query_error(StatusCode::FORBIDDEN, "AccessDenied");
    let keys = t.iam(&boss, "ListAccessKeys", &[]).await;
    keys.ok();
    assert_eq!(keys.body.matches("<AccessKeyId>").count(), 1, "{}", keys.body);

    // GetUser without a name is mallory (once she may read herself).
    t.iam(&mallory, "GetUser", &[])
        .await
        .query_error(StatusCode::FORBIDDEN, "AccessDenied");
    let read_self = policy(json!([{"Effect": "Allow", "Action": "iam:GetUser", "Resource": mallory_arn}]));
    t.iam(
        &r,
        "PutUserPolicy",
        &[
            ("UserName", "mallory"),
            ("PolicyName", "self"),
            ("PolicyDocument", &read_self),
        ],
    )
    .await
    .ok();
    let me = t.iam(&mallory, "GetUser", &[]).await;
    me.ok();
    assert_eq!(me.xml("UserName").as_deref(), Some("mallory"), "{}", me.body);
    assert_eq!(me.xml("Path").as_deref(), Some("/boss:/"));
    assert_eq!(me.xml("UserId").unwrap(), mallory_id);
    // Her own policy applies to her, and still nothing of boss's.
    t.can_describe(&mallory).await.ecr_error("AccessDeniedException");
    // boss is unaffected.
    t.can_describe(&boss).await.ok();
    let b = t.iam(&boss, "GetUser", &[]).await;
    b.ok();
    assert_eq!(b.xml("UserName").as_deref(), Some("boss"));
}

/// Other `:`/`/` shapes: a path that spells another account's ARN, and a
/// user whose path ends like a root ARN, resolve to themselves only.
#[tokio::test]
async fn arn_shaped_paths_name_nobody_else() {
    let t = T::new().await;
    for (name, path) in [
        ("eve", "/arn:aws:iam::210987654321:user/"),
        ("trudy", "/x:root/"),
        ("oscar", "/:/:/"),
    ] {
        let c = t.user_with_key(name, path).await;
        let who = t.sts(&c, "GetCallerIdentity", &[]).await;
        who.ok();
        assert_eq!(
            who.xml("Arn").unwrap(),
            format!("arn:aws:iam::{ACCOUNT}:user{path}{name}")
        );
        assert_eq!(who.xml("Account").unwrap(), ACCOUNT);
        assert!(who.xml("UserId").unwrap().starts_with("AIDA"), "{}", who.body);
        // No root powers.
        t.can_describe(&c).await.ecr_error("AccessDeniedException");
        t.iam(&c, "ListUsers", &[])
            .await
            .query_error(StatusCode::FORBIDDEN, "AccessDenied");
    }
}

/// A key that outlives its user (DeleteUser checks for keys first, but a
/// CreateAccessKey racing it could leave one behind) must not act as a new
/// user created later under the same name: the key names the old user's id.
#[tokio::test]
async fn a_recreated_user_does_not_inherit_old_keys() {
    let t = T::new().await;
    let r = root();
    let old = t.user_with_key("alice", "/").await;
    let login = t.registry_login(&r).await;
    assert_eq!(
        t.dp(Method::GET, "/v2/team/app/tags/list", Some(&login), vec![])
            .await
            .status,
        StatusCode::OK
    );
    // alice disappears with her key still stored (what the race leaves).
    assert!(t.s.store.iam_entity_delete(ACCOUNT, "user", "alice").await.unwrap());
    // A new alice, with pull and push rights.
    t.iam(&r, "CreateUser", &[("UserName", "alice")]).await.ok();
    t.iam(
        &r,
        "AttachUserPolicy",
        &[("UserName", "alice"), ("PolicyArn", POWER_USER)],
    )
    .await
    .ok();
    let fresh = t.key_for(&r, "alice").await;
    t.can_describe(&fresh).await.ok();

    // The old key is nobody now.
    t.can_describe(&old).await.ecr_error("UnrecognizedClientException");
    t.ecr(&old, "GetAuthorizationToken", json!({}))
        .await
        .ecr_error("UnrecognizedClientException");
    t.sts(&old, "GetCallerIdentity", &[])
        .await
        .query_error(StatusCode::FORBIDDEN, "InvalidClientTokenId");
    // Nor is it the new alice's key.
    let keys = t.iam(&r, "ListAccessKeys", &[("UserName", "alice")]).await;
    keys.ok();
    assert!(!keys.body.contains(&old.id), "{}", keys.body);
    assert!(keys.body.contains(&fresh.id), "{}", keys.body);
    t.iam(
        &r,
        "DeleteAccessKey",
        &[("UserName", "alice"), ("AccessKeyId", &old.id)],
    )
    .await
    .query_error(StatusCode::NOT_FOUND, "NoSuchEntity");
    // A registry token of the old key: refused (401 with a challenge).
    let now = now_millis() as u64 / 1000;
    let claims = TokenClaims {
        account: ACCOUNT.into(),
        principal_arn: format!("arn:aws:iam::{ACCOUNT}:user/alice"),
        access_key_id: old.id.clone(),
        issued_at: now,
        expires_at: now + 3600,
    };
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("AWS:{}", token::issue(&t.s.token_key, &claims)))
    );
    let pull = t.dp(Method::GET, "/v2/team/app/tags/list", Some(&auth), vec![]).await;
    assert_eq!(pull.status, StatusCode::UNAUTHORIZED, "{}", pull.body);
}

/// Deactivating a key stops the key, the registry tokens it obtained and
/// the download URLs it obtained; reactivating brings them back; deleting
/// ends them.
#[tokio::test]
async fn a_deactivated_key_stops_with_its_tokens_and_download_urls() {
    let t = T::new().await;
    let r = root();
    // A layer in team/app.
    let root_login = t.registry_login(&r).await;
    let data = b"a layer of team/app".to_vec();
    let digest = kura_oci::Digest::sha256(&data).to_string();
    let put = t
        .dp(
            Method::POST,
            &format!("/v2/team/app/blobs/uploads/?digest={digest}"),
            Some(&root_login),
            data,
        )
        .await;
    assert_eq!(put.status, StatusCode::CREATED, "{}", put.body);

    let dev = t.user_with_key("dev", "/").await;
    t.iam(
        &r,
        "AttachUserPolicy",
        &[("UserName", "dev"), ("PolicyArn", POWER_USER)],
    )
    .await
    .ok();
    let login = t.registry_login(&dev).await;
    let url = t
        .ecr(
            &dev,
            "GetDownloadUrlForLayer",
            json!({"repositoryName": "team/app", "layerDigest": digest}),
        )
        .await;
    url.ok();
    let url = url.json()["downloadUrl"].as_str().unwrap().to_string();
    let path = &url[url.find("/v2/").unwrap()..];
    let tags = "/v2/team/app/tags/list";
    let works = |expect_ok: bool| {
        let (t, login, path, dev) = (&t, &login, path.to_string(), dev.clone());
        async move {
            let api = t.can_describe(&dev).await;
            let pull = t.dp(Method::GET, tags, Some(login), vec![]).await;
            let download = t.dp(Method::GET, &path, None, vec![]).await;
            if expect_ok {
                api.ok();
                assert_eq!(pull.status, StatusCode::OK, "{}", pull.body);
                assert_eq!(download.status, StatusCode::OK, "{}", download.body);
            } else {
                api.ecr_error("UnrecognizedClientException");
                assert_eq!(pull.status, StatusCode::UNAUTHORIZED, "{}", pull.body);
                assert_eq!(download.status, StatusCode::FORBIDDEN, "{}", download.body);
            }
        }
    };
    works(true).await;
    let set = |status: &'static str| {
        let (t, id) = (&t, dev.id.clone());
        async move {
            t.iam(
                &root(),
                "UpdateAccessKey",
                &[("UserName", "dev"), ("AccessKeyId", &id), ("Status", status)],
            )
            .await
            .ok();
        }
    };
    set("Inactive").await;
    works(false).await;
    set("Active").await;
    works(true).await;
    t.iam(&r, "DeleteAccessKey", &[("UserName", "dev"), ("AccessKeyId", &dev.id)])
        .await
        .ok();
    works(false).await;
}

/// Vulnerability 3: after `delete-role`, the role's sessions, their
/// registry tokens and their download URLs stop at once.
#[tokio::test]
async fn deleting_a_role_ends_its_sessions_and_their_tokens() {
    let t = T::new().await;
    let role_arn = t.role("ci").await;
    let s1 = t.assume(&role_arn, "build-1").await;
    t.can_describe(&s1).await.ok();
    let who = t.sts(&s1, "GetCallerIdentity", &[]).await;
    who.ok();
    assert_eq!(
        who.xml("Arn").unwrap(),
        format!("arn:aws:sts::{ACCOUNT}:assumed-role/ci/build-1")
    );
    assert!(who.xml("UserId").unwrap().starts_with("AROA"), "{}", who.body);
    let login = t.registry_login(&s1).await;
    for path in ["/v2/", "/v2/team/app/tags/list"] {
        let r = t.dp(Method::GET, path, Some(&login), vec![]).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
    }

    t.delete_role("ci").await;
    t.can_describe(&s1).await.ecr_error("UnrecognizedClientException");
    t.sts(&s1, "GetCallerIdentity", &[])
        .await
        .query_error(StatusCode::FORBIDDEN, "InvalidClientTokenId");
    for path in ["/v2/", "/v2/team/app/tags/list"] {
        let r = t.dp(Method::GET, path, Some(&login), vec![]).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}: {}", r.body);
        assert!(r.body.contains("UNAUTHORIZED"), "{}", r.body);
    }
    // The token service will not trade it for a bearer token either.
    let r = t.dp(Method::GET, "/token?service=x", Some(&login), vec![]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
}

/// A role re-created under the same name is another role: a session of the
/// old one gets nothing from it, even if its key survived the deletion
/// (e.g. an AssumeRole racing the DeleteRole).
#[tokio::test]
async fn a_recreated_role_does_not_grant_old_sessions() {
    let t = T::new().await;
    let role_arn = t.role("ci").await;
    let s1 = t.assume(&role_arn, "build-1").await;
    let login = t.registry_login(&s1).await;
    t.can_describe(&s1).await.ok();
    let kept = t.s.store.access_key_get(&s1.id).await.unwrap().unwrap();

    t.delete_role("ci").await;
    assert_eq!(t.role("ci").await, role_arn, "same name, same ARN");
    // The session's key went with the old role...
    assert!(t.s.store.access_key_get(&s1.id).await.unwrap().is_none());
    t.can_describe(&s1).await.ecr_error("UnrecognizedClientException");
    // ...and had it survived, it would still name the old role's id.
    t.s.store.access_key_put(&kept).await.unwrap();
    t.can_describe(&s1).await.ecr_error("UnrecognizedClientException");
    t.ecr(&s1, "GetAuthorizationToken", json!({}))
        .await
        .ecr_error("UnrecognizedClientException");
    t.sts(&s1, "GetCallerIdentity", &[])
        .await
        .query_error(StatusCode::FORBIDDEN, "InvalidClientTokenId");
    t.sts(
        &s1,
        "AssumeRole",
        &[("RoleArn", &role_arn), ("RoleSessionName", "chain")],
    )
    .await
    .query_error(StatusCode::FORBIDDEN, "InvalidClientTokenId");
    let r = t.dp(Method::GET, "/v2/team/app/tags/list", Some(&login), vec![]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    // A new session of the new role works.
    let s2 = t.assume(&role_arn, "build-2").await;
    t.can_describe(&s2).await.ok();
}

/// AWS's "revoke older sessions": the root puts a Deny on everything for
/// credentials issued before now (`DateLessThan` on `aws:TokenIssueTime`);
/// sessions issued before are refused on both planes, later ones work.
#[tokio::test]
async fn token_issue_time_revokes_older_sessions() {
    let t = T::new().await;
    let role_arn = t.role("ci").await;
    let old = t.assume(&role_arn, "old").await;
    let old_login = t.registry_login(&old).await;
    t.can_describe(&old).await.ok();

    let cut = now_millis() + 5;
    let revoke = policy(json!([{
        "Effect": "Deny", "Action": ["*"], "Resource": ["*"],
        "Condition": {"DateLessThan": {"aws:TokenIssueTime": iso_millis(cut)}}
    }]));
    t.iam(
        &root(),
        "PutRolePolicy",
        &[
            ("RoleName", "ci"),
            ("PolicyName", "AWSRevokeOlderSessions"),
            ("PolicyDocument", &revoke),
        ],
    )
    .await
    .ok();
    // Sessions issued from the cut on are not revoked.
    while now_millis() <= cut {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let new = t.assume(&role_arn, "new").await;

    let denied = t.can_describe(&old).await;
    denied.ecr_error("AccessDeniedException");
    assert!(denied.body.contains("explicit deny"), "{}", denied.body);
    t.ecr(&old, "GetAuthorizationToken", json!({}))
        .await
        .ecr_error("AccessDeniedException");
    let pull = t
        .dp(Method::GET, "/v2/team/app/tags/list", Some(&old_login), vec![])
        .await;
    assert_eq!(pull.status, StatusCode::FORBIDDEN, "{}", pull.body);

    t.can_describe(&new).await.ok();
    let login = t.registry_login(&new).await;
    let pull = t.dp(Method::GET, "/v2/team/app/tags/list", Some(&login), vec![]).await;
    assert_eq!(pull.status, StatusCode::OK, "{}", pull.body);
    // Long-term keys carry no issue time: the root is unaffected.
    t.can_describe(&root()).await.ok();
}
