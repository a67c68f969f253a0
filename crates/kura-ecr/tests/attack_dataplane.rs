//! Attacks on the data plane's authorization, through `kura_ecr::app` with
//! `oneshot` over the real SQLite store.
//!
//! Each test reproduces one way a caller got more than its policies allow
//! when authorization and the handler read a request differently (the raw
//! query string against the decoded one), and checks the class around it:
//! one parse per request, seen by the guard and the handler alike.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use base64::Engine;
use http_body_util::BodyExt;
use kura_auth::seal::MasterKey;
use kura_auth::token::{self, TokenClaims};
use kura_ecr::auth::{bootstrap, BootstrapEnv, Caller};
use kura_ecr::authz::repository_arn;
use kura_ecr::templates::TemplateProvisioner;
use kura_ecr::{Ecr, EcrConfig};
use kura_registry::{Registry, RegistryConfig};
use kura_store::control::AccessKeyRow;
use kura_store::iam::{kind, IamEntity};
use kura_store::{ControlStore, FsBlobStore, IamStore, MetaStore, SqlMetaStore};
use serde_json::{json, Value};
use tower::ServiceExt;

const ACCOUNT: &str = "123456789012";
const OTHER: &str = "210987654321";
const REGION: &str = "us-east-1";

struct T {
    app: axum::Router,
    token_key: Vec<u8>,
    store: Arc<SqlMetaStore>,
    _dir: tempfile::TempDir,
}

struct Resp {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    fn code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn root() -> Caller {
    Caller {
        account: ACCOUNT.into(),
        principal_arn: format!("arn:aws:iam::{ACCOUNT}:root"),
        principal_id: ACCOUNT.into(),
        access_key_id: "AKIAKURATESTROOTKEY1".into(),
        token_issued_at: None,
    }
}

fn policy(statements: Value) -> String {
    json!({"Version": "2012-10-17", "Statement": statements}).to_string()
}

impl T {
    async fn new() -> T {
        T::with(RegistryConfig::default()).await
    }

    /// The application as `kura serve` builds it, with this registry configuration.
    async fn with(registry_config: RegistryConfig) -> T {
        let dir = tempfile::tempdir().unwrap();
        let meta = Arc::new(kura_store::testdb::from_env_or_sqlite(dir.path().join("meta.db")).await);
        let blobs = FsBlobStore::open(dir.path().join("blobs")).await.unwrap();
        let master = MasterKey::load_or_create(&dir.path().join("master.key")).unwrap();
        let env = BootstrapEnv {
            account_id: Some(ACCOUNT.into()),
            root_access_key_id: Some("AKIAKURATESTROOTKEY1".into()),
            root_secret_access_key: Some("kuraTestSecretKey/0123456789abcdefghijKLM".into()),
        };
        let boot = bootstrap(meta.as_ref(), &master, &env).await.unwrap();
        let provisioner = Arc::new(TemplateProvisioner {
            meta: meta.clone(),
            control: meta.clone(),
            region: REGION.into(),
        });
        let config = RegistryConfig {
            default_account: ACCOUNT.into(),
            create_on_push: false,
            ..registry_config
        };
        let registry = Arc::new(Registry::new(meta.clone(), Arc::new(blobs), config).with_provisioner(provisioner));
        let ecr = Arc::new(Ecr::new(
            kura_ecr::Stores::all(meta.clone()),
            registry.clone(),
            master,
            boot.token_key.clone(),
            EcrConfig::new(REGION, ACCOUNT),
            kura_ecr::scanning::ScanSettings::default(),
        ));
        meta.account_ensure(OTHER).await.unwrap();
        T {
            app: kura_ecr::app(ecr, registry),
            token_key: boot.token_key,
            store: meta,
            _dir: dir,
        }
    }

    async fn repo(&self, account: &str, name: &str) -> i64 {
        self.store
            .repo_create(account, name, &Default::default())
            .await
            .unwrap()
            .unwrap()
            .id
    }

    /// A user with an inline identity policy (if any) and an access key.
    async fn user(&self, account: &str, name: &str, statements: Option<Value>) -> Caller {
        let e = IamEntity {
            account: account.into(),
            kind: kind::USER.into(),
            name: name.into(),
            id: format!("AIDA{}", name.to_uppercase()),
            path: "/".into(),
            arn: format!("arn:aws:iam::{account}:user/{name}"),
            body: "{}".into(),
            created_at: 0,
        };
        assert!(self.store.iam_entity_create(&e).await.unwrap());
        if let Some(st) = statements {
            self.store
                .iam_inline_put(account, kind::USER, name, "inline", &policy(st))
                .await
                .unwrap();
        }
        let key = format!("AKIA{}", name.to_uppercase());
        self.store
            .access_key_put(&AccessKeyRow {
                access_key_id: key.clone(),
                account: account.into(),
                principal_arn: e.arn.clone(),
                principal_id: e.id.clone(),
                secret_sealed: vec![0],
                status: "Active".into(),
                session_token_hash: None,
                expires_at: None,
                created_at: kura_store::now_millis(),
            })
            .await
            .unwrap();
        Caller {
            account: account.into(),
            principal_arn: e.arn,
            principal_id: e.id,
            access_key_id: key,
            token_issued_at: None,
        }
    }

    async fn repo_policy(&self, account: &str, name: &str, statements: Value) {
        self.store
            .resource_policy_put(&repository_arn(REGION, account, name), &policy(statements))
            .await
            .unwrap();
    }

    fn auth(&self, c: &Caller) -> String {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let claims = TokenClaims {
            account: c.account.clone(),
            principal_arn: c.principal_arn.clone(),
            access_key_id: c.access_key_id.clone(),
            issued_at: now,
            expires_at: now + 3600,
        };
        let t = token::issue(&self.token_key, &claims);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("AWS:{t}"))
        )
    }

    async fn send(&self, c: Option<&Caller>, method: Method, host: &str, uri: &str, body: Vec<u8>) -> Resp {
        let mut b = Request::builder().method(method).uri(uri).header("host", host);
        if let Some(c) = c {
            b = b.header("authorization", self.auth(c));
        }
        let resp = self
            .app
            .clone()
            .oneshot(b.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes().to_vec();
        Resp { status, headers, body }
    }

    async fn req(&self, c: &Caller, method: Method, uri: &str) -> Resp {
        self.send(Some(c), method, "localhost", uri, Vec::new()).await
    }

    /// Push `data` into `repo` as the root (a monolithic POST); its digest.
    async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let d = kura_oci::Digest::sha256(data).to_string();
        let r = self
            .send(
                Some(&root()),
                Method::POST,
                "localhost",
                &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
                data.to_vec(),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        d
    }

    async fn catalog(&self, c: &Caller, query: &str) -> (Vec<String>, Option<String>) {
        let r = self.req(c, Method::GET, &format!("/v2/_catalog{query}")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let names = r.json()["repositories"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        let link = r.headers.get("link").map(|v| v.to_str().unwrap().to_string());
        (names, link)
    }
}

/// A user who may do anything in `mine` and nothing in `secret`.
async fn pusher(t: &T) -> Caller {
    t.user(
        ACCOUNT,
        "mallory",
        Some(json!([{
            "Effect": "Allow", "Action": "ecr:*",
            "Resource": format!("arn:aws:ecr:{REGION}:{ACCOUNT}:repository/mine")
        }])),
    )
    .await
}

/// The smuggled mounts of the review: the registry decodes the query while
/// authorization read the raw string, so each one linked a blob of a
/// repository the caller cannot read (201), which it then downloaded. Each
/// must start an ordinary upload (202) and leave the blob unreadable.
#[tokio::test]
async fn smuggled_mount_parameters_never_mount_an_unreadable_blob() {
    let t = T::new().await;
    t.repo(ACCOUNT, "mine").await;
    t.repo(ACCOUNT, "secret").await;
    let d = t.push_blob("secret", b"the secret layer").await;
    let mallory = pusher(&t).await;
    // She may not read `secret` directly.
    let r = t.req(&mallory, Method::GET, &format!("/v2/secret/blobs/{d}")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    for query in [
        format!("mount={d}&fr%6Fm=secret"),
        format!("m%6Funt={d}&from=secret"),
        format!("%66rom=secret&from=mine&mount={d}"),
        format!("mount={d}&%66rom=secret&from=mine"),
        format!("mount={d}&from=secret&from=mine"),
        format!("mount={d}&from=mine&from=secret"),
        format!("mount={d}&mount={d}&from=secret"),
        format!("mount={d}&from=sec%72et"),
        format!("mount={}&from=secret", d.replace(':', "%3A")),
        format!("mount={d}&from=secret&x=from%3Dmine"),
        format!("mount={d}&from=%73ecret"),
    ] {
        let r = t
            .req(&mallory, Method::POST, &format!("/v2/mine/blobs/uploads/?{query}"))
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "?{query} must not mount: {}", r.text());
        assert!(r.headers.get("location").is_some(), "?{query}: an upload session");
        let r = t.req(&mallory, Method::GET, &format!("/v2/mine/blobs/{d}")).await;
        assert_eq!(
            r.status,
            StatusCode::NOT_FOUND,
            "?{query} linked the blob: {}",
            r.text()
        );
        assert_eq!(r.code(), "BLOB_UNKNOWN");
    }
    // The root may read `secret`: the plain mount works for it.
    let r = t
        .req(
            &root(),
            Method::POST,
            &format!("/v2/mine/blobs/uploads/?mount={d}&from=secret"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
}

/// A repeated `mount` or `from` is never a mount, even for a caller who may
/// read the source: which of the values counts would be a parser's choice.
#[tokio::test]
async fn repeated_mount_parameters_make_an_ordinary_upload() {
    let t = T::new().await;
    t.repo(ACCOUNT, "mine").await;
    t.repo(ACCOUNT, "src").await;
    let d = t.push_blob("src", b"a readable layer").await;
    for query in [
        format!("mount={d}&mount={d}&from=src"),
        format!("mount={d}&from=src&from=src"),
        format!("mount={d}&fr%6Fm=src&from=src"),
    ] {
        let r = t
            .req(&root(), Method::POST, &format!("/v2/mine/blobs/uploads/?{query}"))
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "?{query}: {}", r.text());
    }
    let r = t.req(&root(), Method::HEAD, &format!("/v2/mine/blobs/{d}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Other single-valued parameters repeated are refused, not guessed.
    let r = t
        .req(
            &root(),
            Method::POST,
            &format!("/v2/mine/blobs/uploads/?digest={d}&digest=sha256:00"),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert_eq!(r.code(), "DIGEST_INVALID");
    let r = t.req(&root(), Method::GET, "/v2/_catalog?n=1&n=1000").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    // Unknown parameters are ignored.
    let r = t
        .req(&root(), Method::GET, "/v2/mine/tags/list?whatever=1&from=src")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}

/// Across accounts (the host names the registry): a caller of another
/// account granted push on one repository must not mount from another one.
#[tokio::test]
async fn cross_account_mount_smuggling_is_an_ordinary_upload() {
    let t = T::new().await;
    t.repo(ACCOUNT, "shared").await;
    t.repo(ACCOUNT, "secret").await;
    let d = t.push_blob("secret", b"account A's private layer").await;
    let bob = t
        .user(
            OTHER,
            "bob",
            Some(json!([{"Effect": "Allow", "Action": "ecr:*", "Resource": "*"}])),
        )
        .await;
    t.repo_policy(
        ACCOUNT,
        "shared",
        json!([{
            "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{OTHER}:root")},
            "Action": "ecr:*"
        }]),
    )
    .await;
    let host = format!("{ACCOUNT}.dkr.localhost:5000");
    for query in [
        format!("mount={d}&fr%6Fm=secret"),
        format!("m%6Funt={d}&from=secret"),
        format!("mount={d}&%66rom=secret&from=shared"),
    ] {
        let r = t
            .send(
                Some(&bob),
                Method::POST,
                &host,
                &format!("/v2/shared/blobs/uploads/?{query}"),
                Vec::new(),
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "?{query}: {}", r.text());
    }
    let r = t
        .send(
            Some(&bob),
            Method::GET,
            &host,
            &format!("/v2/shared/blobs/{d}"),
            Vec::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
    // And bob's own registry is not the one the host names.
    let r = t
        .send(
            Some(&bob),
            Method::GET,
            &host,
            &format!("/v2/secret/blobs/{d}"),
            Vec::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
}

/// A private blob published through a public repository: a smuggled mount
/// into a public repository made the blob anonymously downloadable.
#[tokio::test]
async fn a_private_blob_cannot_be_published_through_a_public_repository() {
    let t = T::new().await;
    let public = t.repo(ACCOUNT, "mine").await;
    t.store.public_repo_put(public, "{}").await.unwrap();
    t.repo(ACCOUNT, "secret").await;
    let data = b"private bytes".to_vec();
    let d = t.push_blob("secret", &data).await;
    let mallory = pusher(&t).await;
    let r = t
        .req(
            &mallory,
            Method::POST,
            &format!("/v2/mine/blobs/uploads/?mount={d}&fr%6Fm=secret"),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    let r = t
        .send(
            None,
            Method::GET,
            "localhost",
            &format!("/v2/mine/blobs/{d}"),
            Vec::new(),
        )
        .await;
    assert_ne!(r.body, data, "the private blob is public");
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
}

/// The path is decoded once too: `%2F` in a name is the same repository for
/// authorization and the handler; `..` and malformed names are refused.
#[tokio::test]
async fn encoded_paths_are_authorized_as_they_are_served() {
    let t = T::new().await;
    t.repo(ACCOUNT, "mine").await;
    t.repo(ACCOUNT, "secret/app").await;
    let mallory = pusher(&t).await;
    for path in [
        "/v2/secret%2Fapp/tags/list",
        "/v2/secret/app/tags%2Flist/../list",
        "/v2/mine/../secret/app/tags/list",
        "/v2/mine/%2E%2E/secret/app/tags/list",
        "/v2/secret%2fapp/manifests/latest",
    ] {
        let r = t.req(&mallory, Method::GET, path).await;
        assert!(
            r.status == StatusCode::FORBIDDEN || r.status.is_client_error() && r.code() != "",
            "{path}: {} {}",
            r.status,
            r.text()
        );
        assert_ne!(r.status, StatusCode::OK, "{path}");
    }
    let r = t.req(&mallory, Method::GET, "/v2/secret%2Fapp/tags/list").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert!(r.text().contains("repository/secret/app"), "{}", r.text());
    // A method the endpoint lacks is refused before anything runs.
    let r = t.req(&mallory, Method::PATCH, "/v2/secret/app/manifests/x").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{}", r.text());
}

/// A presigned download URL is bound to the one blob it was made for, as the
/// parsed endpoint: not another blob, not another method, not a repeated
/// token.
#[tokio::test]
async fn a_download_url_reads_only_its_blob() {
    let t = T::new().await;
    t.repo(ACCOUNT, "mine").await;
    let d = t.push_blob("mine", b"downloadable").await;
    let other = t.push_blob("mine", b"not this one").await;
    // Bound to the (bootstrapped, active) root key that asked for it.
    let claims = json!({"a": ACCOUNT, "r": "mine", "d": d, "e": u64::MAX / 2, "k": "AKIAKURATESTROOTKEY1"});
    let tok = token::issue_raw(&t.token_key, claims.to_string().as_bytes());
    let tr = &t;
    let get = |uri: String, m: Method| async move { tr.send(None, m, "localhost", &uri, Vec::new()).await };
    let ok = get(format!("/v2/mine/blobs/{d}?X-Kura-Download={tok}"), Method::GET).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    assert_eq!(ok.body, b"downloadable");
    let r = get(format!("/v2/mine/blobs/{other}?X-Kura-Download={tok}"), Method::GET).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = get(format!("/v2/mine/blobs/{d}?X-Kura-Download={tok}"), Method::DELETE).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = get(format!("/v2/mine/tags/list?X-Kura-Download={tok}"), Method::GET).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = get(
        format!("/v2/mine/blobs/{other}?X-Kura-Download={tok}&X-Kura-Download={tok}"),
        Method::GET,
    )
    .await;
    assert_ne!(r.status, StatusCode::OK);
}

/// The catalog lists only what the caller may `ecr:DescribeRepositories`,
/// per repository, by identity policy (an allow on some names, a deny on
/// one), with full pages and a correct `Link` after filtering.
#[tokio::test]
async fn the_catalog_is_filtered_by_identity_policy_with_correct_pages() {
    let t = T::new().await;
    for name in [
        "a/1",
        "b/1",
        "b/2",
        "c/1",
        "team/1",
        "team/2",
        "team/3",
        "team/secret",
        "z/1",
    ] {
        t.repo(ACCOUNT, name).await;
    }
    let team = t
        .user(
            ACCOUNT,
            "team",
            Some(json!([
                {"Effect": "Allow", "Action": "ecr:DescribeRepositories",
                 "Resource": format!("arn:aws:ecr:{REGION}:{ACCOUNT}:repository/team/*")},
                {"Effect": "Deny", "Action": "ecr:*",
                 "Resource": format!("arn:aws:ecr:{REGION}:{ACCOUNT}:repository/team/secret")}
            ])),
        )
        .await;
    let (all, link) = t.catalog(&team, "").await;
    assert_eq!(all, ["team/1", "team/2", "team/3"]);
    assert_eq!(link, None);
    // Pages of one: full pages, each Link resumes after the last name shown.
    let (p1, l1) = t.catalog(&team, "?n=1").await;
    assert_eq!(p1, ["team/1"]);
    assert_eq!(l1.as_deref(), Some("</v2/_catalog?n=1&last=team%2F1>; rel=\"next\""));
    let (p2, l2) = t.catalog(&team, "?n=2&last=team%2F1").await;
    assert_eq!(p2, ["team/2", "team/3"]);
    assert_eq!(l2, None, "nothing visible follows: no Link");
    let (p3, _) = t.catalog(&team, "?n=2&last=a").await;
    assert_eq!(p3, ["team/1", "team/2"]);
    // A user with no policy sees nothing (not a 403: the listing is filtered).
    let nobody = t.user(ACCOUNT, "nobody", None).await;
    assert_eq!(t.catalog(&nobody, "").await, (vec![], None));
    // The root sees everything.
    assert_eq!(t.catalog(&root(), "").await.0.len(), 9);
    assert_eq!(t.catalog(&root(), "?n=3").await.0, ["a/1", "b/1", "b/2"]);
}

/// The catalog honours repository policies: a grant on one repository
/// lists it for that principal, also across accounts; a deny there hides it.
#[tokio::test]
async fn the_catalog_is_filtered_by_repository_policy() {
    let t = T::new().await;
    for name in ["app", "granted", "hidden", "zz"] {
        t.repo(ACCOUNT, name).await;
    }
    let ann = t.user(ACCOUNT, "ann", None).await;
    t.repo_policy(
        ACCOUNT,
        "granted",
        json!([{"Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:user/ann")},
                "Action": "ecr:DescribeRepositories"}]),
    )
    .await;
    assert_eq!(t.catalog(&ann, "").await.0, ["granted"]);
    // Everyone in the account may describe, except through `hidden`'s deny.
    let all = t
        .user(
            ACCOUNT,
            "all",
            Some(json!([{"Effect": "Allow", "Action": "ecr:DescribeRepositories", "Resource": "*"}])),
        )
        .await;
    t.repo_policy(
        ACCOUNT,
        "hidden",
        json!([{"Effect": "Deny", "Principal": "*", "Action": "ecr:*"}]),
    )
    .await;
    assert_eq!(t.catalog(&all, "").await.0, ["app", "granted", "zz"]);
    // Another account: only what the repository policy grants it.
    let bob = t
        .user(
            OTHER,
            "bob",
            Some(json!([{"Effect": "Allow", "Action": "ecr:*", "Resource": "*"}])),
        )
        .await;
    t.repo_policy(
        ACCOUNT,
        "app",
        json!([{"Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{OTHER}:root")},
                "Action": "ecr:DescribeRepositories"}]),
    )
    .await;
    let r = t
        .send(
            Some(&bob),
            Method::GET,
            &format!("{ACCOUNT}.dkr.localhost"),
            "/v2/_catalog",
            Vec::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["repositories"], json!(["app"]));
}

/// Open upload sessions are capped per repository and per principal:
/// `TOOMANYREQUESTS` (429) with a message naming the cap; finishing or
/// cancelling a session makes room.
#[tokio::test]
async fn open_upload_sessions_are_capped_per_repository_and_principal() {
    let t = T::with(RegistryConfig {
        max_uploads_per_repo: 3,
        max_uploads_per_principal: 4,
        ..RegistryConfig::default()
    })
    .await;
    for name in ["a", "b", "c"] {
        t.repo(ACCOUNT, name).await;
    }
    let everything = Some(json!([{"Effect": "Allow", "Action": "ecr:*", "Resource": "*"}]));
    let u1 = t.user(ACCOUNT, "u1", everything.clone()).await;
    let u2 = t.user(ACCOUNT, "u2", everything).await;
    let start = |c: Caller, repo: &'static str| {
        let t = &t;
        async move { t.req(&c, Method::POST, &format!("/v2/{repo}/blobs/uploads/")).await }
    };
    // Per repository: three sessions in `a` (by two principals), then 429.
    let mut sessions = Vec::new();
    for c in [&u1, &u2, &u1] {
        let r = start(c.clone(), "a").await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
        sessions.push(r.headers["location"].to_str().unwrap().to_string());
    }
    let r = start(u2.clone(), "a").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text());
    assert_eq!(r.code(), "TOOMANYREQUESTS");
    assert!(r.text().contains("max-uploads-per-repo"), "{}", r.text());
    // A monolithic upload opens a session too.
    let r = t
        .send(
            Some(&u2),
            Method::POST,
            "localhost",
            &format!("/v2/a/blobs/uploads/?digest={}", kura_oci::Digest::sha256(b"x")),
            b"x".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text());
    // Cancelling one makes room.
    let r = t.req(&u1, Method::DELETE, &sessions[0]).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    assert_eq!(start(u2.clone(), "a").await.status, StatusCode::ACCEPTED);
    // Per principal: u1 has one open in `a`; three more elsewhere, then 429.
    for repo in ["b", "b", "c"] {
        assert_eq!(start(u1.clone(), repo).await.status, StatusCode::ACCEPTED);
    }
    let r = start(u1.clone(), "c").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text());
    // Counted per principal by its unique id (never its ARN).
    assert!(r.text().contains("AIDAU1"), "{}", r.text());
    assert!(r.text().contains("max-uploads-per-principal"), "{}", r.text());
    // Another principal is not affected by u1's sessions.
    assert_eq!(start(u2.clone(), "c").await.status, StatusCode::ACCEPTED);
}
