//! Router tests of the whole application without a socket: the ECR API on
//! `POST /` (SigV4, AWS JSON 1.1 errors, limits, validation) and the ECR
//! authentication of the data plane (registry tokens, host-based addressing,
//! creation templates, download URLs), through `kura_ecr::app` and
//! `oneshot`, assembled as `kura serve` assembles it, over real SQLite and
//! filesystem stores in a temp dir.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, Method, Request, StatusCode};
use axum::Router;
use base64::Engine;
use http_body_util::BodyExt;
use kura_auth::token::{self, TokenClaims};
use kura_oci::Digest;
use serde_json::{json, Value};
use tower::ServiceExt;

mod common;

use common::{ACCOUNT, KEY_ID, REGION, SECRET};

const TARGET: &str = "AmazonEC2ContainerRegistry_V20150921";
const HOST: &str = "localhost:5000";

struct T {
    app: Router,
    token_key: Vec<u8>,
    _dir: tempfile::TempDir,
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn h(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| panic!("not JSON: {:?}", self.text()))
    }

    /// An ECR API error: status, `__type` in the body and `X-Amzn-ErrorType`.
    fn assert_ecr_error(&self, status: StatusCode, kind: &str) {
        assert_eq!(self.status, status, "body: {}", self.text());
        let v = self.json();
        assert_eq!(v["__type"], kind, "{v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        assert_eq!(self.h("x-amzn-errortype"), Some(kind));
        assert_eq!(self.h("content-type"), Some("application/x-amz-json-1.1"));
        assert!(self.h("x-amzn-requestid").is_some_and(|r| !r.is_empty()));
    }

    /// A data-plane error in the distribution spec's format.
    fn assert_oci_error(&self, status: StatusCode, code: &str) -> String {
        assert_eq!(self.status, status, "body: {}", self.text());
        let v = self.json();
        assert_eq!(v["errors"][0]["code"], code, "{v}");
        v["errors"][0]["message"].as_str().unwrap_or_default().to_string()
    }
}

/// How to sign an API request.
#[derive(Clone)]
struct Sig<'a> {
    key_id: &'a str,
    secret: &'a str,
    region: &'a str,
    service: &'a str,
    /// Seconds added to the real time for `X-Amz-Date`.
    skew: i64,
}

const ROOT: Sig<'static> = Sig {
    key_id: KEY_ID,
    secret: SECRET,
    region: REGION,
    service: "ecr",
    skew: 0,
};

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

async fn setup() -> T {
    let s = common::server().await;
    T {
        app: s.app,
        token_key: s.token_key,
        _dir: s.dir,
    }
}

/// A `POST /` request: `target` is the whole `X-Amz-Target` (None: no
/// header), `sig` None sends no `Authorization`.
fn api_request(target: Option<&str>, body: &[u8], sig: Option<&Sig>, extra: &[(&str, &str)]) -> Request<Body> {
    let mut headers = HeaderMap::new();
    headers.insert("host", HOST.parse().unwrap());
    headers.insert("content-type", "application/x-amz-json-1.1".parse().unwrap());
    if let Some(t) = target {
        headers.insert("x-amz-target", t.parse().unwrap());
    }
    for (k, v) in extra {
        headers.insert(HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
    }
    if let Some(sig) = sig {
        let now = SystemTime::now();
        let t = if sig.skew >= 0 {
            now + Duration::from_secs(sig.skew as u64)
        } else {
            now - Duration::from_secs(sig.skew.unsigned_abs())
        };
        common::sign_post(&mut headers, body, (sig.key_id, sig.secret), sig.region, sig.service, t);
    }
    let mut b = Request::builder().method(Method::POST).uri("/");
    *b.headers_mut().unwrap() = headers;
    b.body(Body::from(body.to_vec())).unwrap()
}

fn op(name: &str) -> String {
    format!("{TARGET}.{name}")
}

fn basic(token: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("AWS:{token}"))
    )
}

fn manifest(config: &str, config_size: usize, layer: &str, layer_size: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": layer_size}],
    }))
    .unwrap()
}

impl T {
    async fn send(&self, req: Request<Body>) -> Resp {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes().to_vec();
        Resp { status, headers, body }
    }

    /// A signed API call with the root key.
    async fn api(&self, operation: &str, input: Value) -> Resp {
        let body = serde_json::to_vec(&input).unwrap();
        self.send(api_request(Some(&op(operation)), &body, Some(&ROOT), &[]))
            .await
    }

    /// A signed API call that must succeed.
    async fn call(&self, operation: &str, input: Value) -> Value {
        let r = self.api(operation, input).await;
        assert_eq!(r.status, StatusCode::OK, "{operation}: {}", r.text());
        assert_eq!(r.h("content-type"), Some("application/x-amz-json-1.1"));
        assert!(r.h("x-amzn-requestid").is_some_and(|v| !v.is_empty()));
        r.json()
    }

    /// The names of the repositories in the account.
    async fn repo_names(&self) -> Vec<String> {
        let v = self.call("DescribeRepositories", json!({})).await;
        v["repositories"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["repositoryName"].as_str().unwrap().to_string())
            .collect()
    }

    /// A registry token from GetAuthorizationToken (the password of `AWS`).
    async fn token(&self) -> String {
        let v = self.call("GetAuthorizationToken", json!({})).await;
        let data = &v["authorizationData"][0];
        let raw = base64::engine::general_purpose::STANDARD
            .decode(data["authorizationToken"].as_str().unwrap())
            .unwrap();
        let raw = String::from_utf8(raw).unwrap();
        raw.strip_prefix("AWS:").expect("user AWS").to_string()
    }

    /// A data-plane request.
    async fn dp(
        &self,
        method: Method,
        uri: &str,
        host: &str,
        auth: Option<&str>,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Resp {
        let mut b = Request::builder().method(method).uri(uri).header("host", host);
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        self.send(b.body(body.into()).unwrap()).await
    }

    /// Push a blob over the data plane (POST + PUT); returns its digest.
    async fn push_blob(&self, auth: &str, repo: &str, data: &[u8]) -> String {
        let d = Digest::sha256(data).to_string();
        let r = self
            .dp(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/"),
                HOST,
                Some(auth),
                &[],
                Body::empty(),
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
        let loc = r.h("location").unwrap().to_string();
        let sep = if loc.contains('?') { '&' } else { '?' };
        let r = self
            .dp(
                Method::PUT,
                &format!("{loc}{sep}digest={d}"),
                HOST,
                Some(auth),
                &[],
                data.to_vec(),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        d
    }

    /// Push a config, a layer and a manifest under `tag`.
    async fn push_image(&self, auth: &str, repo: &str, tag: &str) -> String {
        let cfg = br#"{"architecture":"amd64","os":"linux"}"#;
        let layer = b"layer bytes ".repeat(50);
        let c = self.push_blob(auth, repo, cfg).await;
        let l = self.push_blob(auth, repo, &layer).await;
        let m = manifest(&c, cfg.len(), &l, layer.len());
        let r = self
            .dp(
                Method::PUT,
                &format!("/v2/{repo}/manifests/{tag}"),
                HOST,
                Some(auth),
                &[("content-type", "application/vnd.oci.image.manifest.v1+json")],
                m.clone(),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        Digest::sha256(&m).to_string()
    }
}

// ---------------------------------------------------------------------------
// The API: success

#[tokio::test]
async fn create_and_describe_repository() {
    let t = setup().await;
    let v = t.call("CreateRepository", json!({"repositoryName": "team/app"})).await;
    let repo = &v["repository"];
    assert_eq!(repo["repositoryName"], "team/app");
    assert_eq!(repo["registryId"], ACCOUNT);
    assert_eq!(
        repo["repositoryArn"],
        format!("arn:aws:ecr:{REGION}:{ACCOUNT}:repository/team/app")
    );
    assert_eq!(repo["repositoryUri"], format!("{HOST}/team/app"));
    assert_eq!(repo["imageTagMutability"], "MUTABLE");
    let created = repo["createdAt"]
        .as_f64()
        .unwrap_or_else(|| panic!("createdAt is a JSON number: {repo}"));
    let now = now_secs() as f64;
    assert!(
        (now - created).abs() < 60.0,
        "createdAt {created} is epoch seconds, now {now}"
    );

    let v = t
        .call("DescribeRepositories", json!({"repositoryNames": ["team/app"]}))
        .await;
    let repos = v["repositories"].as_array().unwrap();
    assert_eq!(repos.len(), 1);
    assert_eq!(repos[0]["repositoryName"], "team/app");
    assert!(repos[0]["createdAt"].is_number(), "{v}");
    assert_eq!(repos[0]["createdAt"], repo["createdAt"]);
    assert_eq!(t.repo_names().await, ["team/app"]);

    // The same name again, and a name that does not exist.
    t.api("CreateRepository", json!({"repositoryName": "team/app"}))
        .await
        .assert_ecr_error(StatusCode::BAD_REQUEST, "RepositoryAlreadyExistsException");
    t.api("DescribeRepositories", json!({"repositoryNames": ["nope"]}))
        .await
        .assert_ecr_error(StatusCode::BAD_REQUEST, "RepositoryNotFoundException");

    // Every answer has its own request id.
    let a = t.api("DescribeRepositories", json!({})).await;
    let b = t.api("DescribeRepositories", json!({})).await;
    assert_ne!(a.h("x-amzn-requestid"), b.h("x-amzn-requestid"));
}

#[tokio::test]
async fn an_empty_body_is_an_empty_input() {
    let t = setup().await;
    let r = t
        .send(api_request(Some(&op("DescribeRepositories")), b"", Some(&ROOT), &[]))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json(), json!({"repositories": []}));
    // CreateRepository without input lacks its required member.
    t.send(api_request(Some(&op("CreateRepository")), b"", Some(&ROOT), &[]))
        .await
        .assert_ecr_error(StatusCode::BAD_REQUEST, "InvalidParameterException");
}

// ---------------------------------------------------------------------------
// The API: authentication

#[tokio::test]
async fn wrong_secret_is_an_invalid_signature() {
    let t = setup().await;
    let body = serde_json::to_vec(&json!({"repositoryName": "sneaky"})).unwrap();
    let sig = Sig {
        secret: "not the secret",
        ..ROOT
    };
    let r = t
        .send(api_request(Some(&op("CreateRepository")), &body, Some(&sig), &[]))
        .await;
    r.assert_ecr_error(StatusCode::BAD_REQUEST, "InvalidSignatureException");
    assert!(r.json()["message"].as_str().unwrap().contains("signature"));

    // A body changed after signing is refused too: the payload hash is signed.
    let mut req = api_request(Some(&op("CreateRepository")), &body, Some(&ROOT), &[]);
    *req.body_mut() = Body::from(serde_json::to_vec(&json!({"repositoryName": "swapped"})).unwrap());
    t.send(req)
        .await
        .assert_ecr_error(StatusCode::BAD_REQUEST, "InvalidSignatureException");
    assert!(t.repo_names().await.is_empty());
}

#[tokio::test]
async fn unknown_access_key_is_unrecognized() {
    let t = setup().await;
    let sig = Sig {
        key_id: "AKIANOSUCHKEY0000000",
        ..ROOT
    };
    let r = t
        .send(api_request(Some(&op("DescribeRepositories")), b"{}", Some(&sig), &[]))
        .await;
    // ECR answers 400 here (see the report: the server sends 403).
    assert!(r.status.is_client_error(), "{}", r.status);
    r.assert_ecr_error(r.status, "UnrecognizedClientException");
}

#[tokio::test]
async fn no_authorization_is_a_missing_token() {
    let t = setup().await;
    t.send(api_request(
        Some(&op("CreateRepository")),
        br#"{"repositoryName":"anon"}"#,
        None,
        &[],
    ))
    .await
    .assert_ecr_error(StatusCode::BAD_REQUEST, "MissingAuthenticationTokenException");
    // A malformed header is an incomplete signature.
    t.send(api_request(
        Some(&op("DescribeRepositories")),
        b"{}",
        None,
        &[("authorization", "AWS4-HMAC-SHA256 Credential=x")],
    ))
    .await
    .assert_ecr_error(StatusCode::BAD_REQUEST, "IncompleteSignatureException");
    assert!(t.repo_names().await.is_empty());
}

#[tokio::test]
async fn clock_skew_of_sixteen_minutes_is_refused() {
    let t = setup().await;
    for skew in [-16 * 60, 16 * 60] {
        let sig = Sig { skew, ..ROOT };
        let r = t
            .send(api_request(
                Some(&op("CreateRepository")),
                br#"{"repositoryName":"skewed"}"#,
                Some(&sig),
                &[],
            ))
            .await;
        r.assert_ecr_error(StatusCode::BAD_REQUEST, "InvalidSignatureException");
    }
    assert!(t.repo_names().await.is_empty(), "nothing was created");
    // Within the 15 minutes it is accepted.
    let sig = Sig { skew: -14 * 60, ..ROOT };
    let r = t
        .send(api_request(
            Some(&op("CreateRepository")),
            br#"{"repositoryName":"skewed"}"#,
            Some(&sig),
            &[],
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}

#[tokio::test]
async fn wrong_region_or_service_in_the_scope() {
    let t = setup().await;
    let cases = [
        (
            Sig {
                region: "eu-west-1",
                ..ROOT
            },
            "region",
        ),
        (Sig { service: "s3", ..ROOT }, "service"),
    ];
    for (sig, word) in cases {
        let r = t
            .send(api_request(
                Some(&op("CreateRepository")),
                br#"{"repositoryName":"scoped"}"#,
                Some(&sig),
                &[],
            ))
            .await;
        r.assert_ecr_error(StatusCode::BAD_REQUEST, "InvalidSignatureException");
        assert!(r.json()["message"].as_str().unwrap().contains(word), "{}", r.text());
    }
    assert!(t.repo_names().await.is_empty());
}

// ---------------------------------------------------------------------------
// The API: protocol errors

#[tokio::test]
async fn malformed_json_is_a_serialization_error() {
    let t = setup().await;
    for body in [
        &br#"{"repositoryName":"half""#[..],
        br#"{"repositoryName":"x",}"#,
        b"\xff\xfe",
    ] {
        t.send(api_request(Some(&op("CreateRepository")), body, Some(&ROOT), &[]))
            .await
            .assert_ecr_error(StatusCode::BAD_REQUEST, "SerializationException");
    }
    assert!(t.repo_names().await.is_empty(), "nothing was created");
}

#[tokio::test]
async fn a_non_object_body_is_a_serialization_error() {
    let t = setup().await;
    for body in [&br#"["repositoryName","x"]"#[..], br#""x""#, b"42", b"null", b"true"] {
        t.send(api_request(Some(&op("CreateRepository")), body, Some(&ROOT), &[]))
            .await
            .assert_ecr_error(StatusCode::BAD_REQUEST, "SerializationException");
    }
    // A member of the wrong JSON type, too.
    t.api("CreateRepository", json!({"repositoryName": 5}))
        .await
        .assert_ecr_error(StatusCode::BAD_REQUEST, "SerializationException");
    assert!(t.repo_names().await.is_empty());
}

#[tokio::test]
async fn unknown_or_missing_target() {
    let t = setup().await;
    for target in [
        Some(op("NoSuchOperation")),
        Some("SomeOtherService_20200101.CreateRepository".to_string()),
        Some(TARGET.to_string()),
        None,
    ] {
        // Signed or not, the operation is checked first.
        for sig in [Some(&ROOT), None] {
            t.send(api_request(target.as_deref(), b"{}", sig, &[]))
                .await
                .assert_ecr_error(StatusCode::BAD_REQUEST, "UnknownOperationException");
        }
    }
}

#[tokio::test]
async fn an_oversized_declared_body_is_refused() {
    let t = setup().await;
    let too_big = (kura_ecr::MAX_API_BODY + 1).to_string();
    let r = t
        .send(api_request(
            Some(&op("CreateRepository")),
            br#"{"repositoryName":"big"}"#,
            Some(&ROOT),
            &[("content-length", &too_big)],
        ))
        .await;
    r.assert_ecr_error(StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLargeException");
    assert!(t.repo_names().await.is_empty());
}

#[tokio::test]
async fn an_oversized_streamed_body_is_refused() {
    let t = setup().await;
    let chunk = bytes::Bytes::from(vec![b' '; 1024 * 1024]);
    let n = kura_ecr::MAX_API_BODY / chunk.len() + 2;
    let stream = futures::stream::iter((0..n).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let mut req = api_request(Some(&op("DescribeRepositories")), b"", Some(&ROOT), &[]);
    assert!(req.headers().get("content-length").is_none());
    *req.body_mut() = Body::from_stream(stream);
    t.send(req)
        .await
        .assert_ecr_error(StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLargeException");
}

#[tokio::test]
async fn validation_failures_are_invalid_parameters() {
    let t = setup().await;
    let r = t.api("CreateRepository", json!({"repositoryName": "A"})).await;
    r.assert_ecr_error(StatusCode::BAD_REQUEST, "InvalidParameterException");
    assert!(r.json()["message"].as_str().unwrap().contains("repositoryName"));
    let r = t.api("DescribeRepositories", json!({"maxResults": 0})).await;
    r.assert_ecr_error(StatusCode::BAD_REQUEST, "InvalidParameterException");
    assert!(r.json()["message"].as_str().unwrap().contains("maxResults"));
    t.api(
        "CreateRepository",
        json!({"repositoryName": "ok", "imageTagMutability": "SOMETIMES"}),
    )
    .await
    .assert_ecr_error(StatusCode::BAD_REQUEST, "InvalidParameterException");
    t.api("DescribeRepositories", json!({"registryId": "999999999999"}))
        .await
        .assert_ecr_error(StatusCode::FORBIDDEN, "AccessDeniedException");
    assert!(t.repo_names().await.is_empty());
}

// ---------------------------------------------------------------------------
// The data plane

#[tokio::test]
async fn token_service_hands_out_bearer_tokens() {
    let t = setup().await;
    let token = t.token().await;
    let get = |auth: Option<String>| {
        let mut b = Request::builder()
            .method(Method::GET)
            .uri("/token?service=x&scope=repository:a:pull")
            .header("host", HOST);
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        b.body(Body::empty()).unwrap()
    };
    let call = |req: Request<Body>| {
        let app = t.app.clone();
        async move {
            let r = app.oneshot(req).await.unwrap();
            let status = r.status();
            let body = r.into_body().collect().await.unwrap().to_bytes();
            (status, serde_json::from_slice::<Value>(&body).unwrap())
        }
    };
    // No credentials: the anonymous token, which reads nothing private.
    let (status, v) = call(get(None)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["token"], "anonymous");
    let r = t
        .dp(Method::GET, "/v2/", HOST, Some("Bearer anonymous"), &[], Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // The registry password: the same token back, usable as Bearer.
    let (status, v) = call(get(Some(basic(&token)))).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["token"], token.as_str());
    assert_eq!(v["access_token"], token.as_str());
    assert!(v["expires_in"].as_u64().unwrap() > 11 * 3600);
    let bearer = format!("Bearer {token}");
    let r = t.dp(Method::GET, "/v2/", HOST, Some(&bearer), &[], Body::empty()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    // The OAuth2 password grant, as containerd sends it.
    let form = format!("grant_type=password&username=AWS&password={token}&service=x&client_id=c");
    let req = Request::builder()
        .method(Method::POST)
        .uri("/token")
        .header("host", HOST)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(form))
        .unwrap();
    let (status, v) = call(req).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["access_token"], token.as_str());
    // Wrong credentials are refused.
    let (status, v) = call(get(Some(basic("not-a-token")))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{v}");
    let wrong_user = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("bob:{token}"))
    );
    assert_eq!(call(get(Some(wrong_user))).await.0, StatusCode::UNAUTHORIZED);
    let forged = format!("Bearer {}x", token);
    let r = t.dp(Method::GET, "/v2/", HOST, Some(&forged), &[], Body::empty()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn base_endpoint_needs_a_registry_token() {
    let t = setup().await;
    let r = t.dp(Method::GET, "/v2/", HOST, None, &[], Body::empty()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    let challenge = r.h("www-authenticate").unwrap();
    assert!(challenge.starts_with("Bearer realm="), "{challenge}");
    assert_eq!(r.json()["errors"][0]["code"], "UNAUTHORIZED");
    assert_eq!(r.h("docker-distribution-api-version"), Some("registry/2.0"));

    let token = t.token().await;
    let r = t
        .dp(Method::GET, "/v2/", HOST, Some(&basic(&token)), &[], Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.h("docker-distribution-api-version"), Some("registry/2.0"));

    // Another user name, a bad password, a forged bearer token, and a scheme
    // that is neither Basic nor Bearer.
    let other_user = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("admin:{token}"))
    );
    for auth in [
        other_user,
        basic("not-a-token"),
        format!("Bearer x{token}"),
        format!("Digest {token}"),
    ] {
        let r = t.dp(Method::GET, "/v2/", HOST, Some(&auth), &[], Body::empty()).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{auth}: {}", r.text());
        assert!(r.h("www-authenticate").is_some());
    }
}

fn claims(account: &str, issued_at: u64, expires_at: u64) -> TokenClaims {
    TokenClaims {
        account: account.into(),
        principal_arn: format!("arn:aws:iam::{ACCOUNT}:root"),
        access_key_id: KEY_ID.into(),
        issued_at,
        expires_at,
    }
}

#[tokio::test]
async fn forged_expired_and_foreign_tokens() {
    let t = setup().await;
    let now = now_secs();
    // Signed with another key.
    let forged = token::issue(&[7u8; 32], &claims(ACCOUNT, now, now + 3600));
    let r = t
        .dp(Method::GET, "/v2/", HOST, Some(&basic(&forged)), &[], Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    assert!(r.h("www-authenticate").is_some());

    // The right key, expired.
    let expired = token::issue(&t.token_key, &claims(ACCOUNT, now - 7200, now - 60));
    let r = t
        .dp(Method::GET, "/v2/", HOST, Some(&basic(&expired)), &[], Body::empty())
        .await;
    let msg = r.assert_oci_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    assert!(msg.contains("expired"), "{msg}");

    // A valid token used on another account's registry: authenticated, but
    // no policy of that registry lets this account's root pull.
    let valid = token::issue(&t.token_key, &claims(ACCOUNT, now, now + 3600));
    let r = t
        .dp(
            Method::GET,
            "/v2/app/manifests/latest",
            "999999999999.dkr.localhost",
            Some(&basic(&valid)),
            &[],
            Body::empty(),
        )
        .await;
    let msg = r.assert_oci_error(StatusCode::FORBIDDEN, "DENIED");
    assert!(
        msg.contains("ecr:BatchGetImage") && msg.contains("arn:aws:ecr:us-east-1:999999999999:repository/app"),
        "{msg}"
    );

    // A token of a key the server does not know is no longer valid.
    let mut c = claims(ACCOUNT, now, now + 3600);
    c.access_key_id = "AKIANOSUCHKEY0000000".into();
    let unknown_key = token::issue(&t.token_key, &c);
    let r = t
        .dp(
            Method::GET,
            "/v2/",
            HOST,
            Some(&basic(&unknown_key)),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());

    // And the control: a self-issued valid token for this account works.
    let good = token::issue(&t.token_key, &claims(ACCOUNT, now, now + 3600));
    let r = t
        .dp(Method::GET, "/v2/", HOST, Some(&basic(&good)), &[], Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}

#[tokio::test]
async fn host_based_addressing() {
    let t = setup().await;
    let auth = basic(&t.token().await);
    let r = t
        .dp(
            Method::GET,
            "/v2/app/tags/list",
            "999999999999.dkr.localhost",
            Some(&auth),
            &[],
            Body::empty(),
        )
        .await;
    r.assert_oci_error(StatusCode::FORBIDDEN, "DENIED");
    let r = t
        .dp(
            Method::GET,
            "/v2/",
            "123456789012.dkr.localhost",
            Some(&auth),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    // With a port too.
    let r = t
        .dp(
            Method::GET,
            "/v2/",
            "123456789012.dkr.localhost:5000",
            Some(&auth),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    // The challenge names the host asked for.
    let r = t
        .dp(
            Method::GET,
            "/v2/",
            "123456789012.dkr.localhost",
            None,
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.h("www-authenticate").unwrap().contains("123456789012.dkr.localhost"));
}

#[tokio::test]
async fn push_to_a_missing_repository_and_create_on_push() {
    let t = setup().await;
    let auth = basic(&t.token().await);
    let r = t
        .dp(
            Method::POST,
            "/v2/auto/app/blobs/uploads/",
            HOST,
            Some(&auth),
            &[],
            Body::empty(),
        )
        .await;
    let msg = r.assert_oci_error(StatusCode::NOT_FOUND, "NAME_UNKNOWN");
    assert_eq!(
        msg,
        format!("The repository with name 'auto/app' does not exist in the registry with id '{ACCOUNT}'")
    );

    // A template for another purpose does not create repositories.
    t.call(
        "CreateRepositoryCreationTemplate",
        json!({"prefix": "auto", "appliedFor": ["REPLICATION"]}),
    )
    .await;
    let r = t
        .dp(
            Method::POST,
            "/v2/auto/app/blobs/uploads/",
            HOST,
            Some(&auth),
            &[],
            Body::empty(),
        )
        .await;
    r.assert_oci_error(StatusCode::NOT_FOUND, "NAME_UNKNOWN");

    t.call(
        "UpdateRepositoryCreationTemplate",
        json!({"prefix": "auto", "appliedFor": ["CREATE_ON_PUSH"], "imageTagMutability": "IMMUTABLE"}),
    )
    .await;
    let digest = t.push_image(&auth, "auto/app", "v1").await;
    let v = t
        .call("DescribeRepositories", json!({"repositoryNames": ["auto/app"]}))
        .await;
    assert_eq!(v["repositories"][0]["imageTagMutability"], "IMMUTABLE", "{v}");
    let v = t
        .call(
            "DescribeImages",
            json!({"repositoryName": "auto/app", "imageIds": [{"imageTag": "v1"}]}),
        )
        .await;
    assert_eq!(v["imageDetails"][0]["imageDigest"], digest);
    assert!(v["imageDetails"][0]["imagePushedAt"].is_number());

    // The template covers only its prefix.
    let r = t
        .dp(
            Method::POST,
            "/v2/automatic/app/blobs/uploads/",
            HOST,
            Some(&auth),
            &[],
            Body::empty(),
        )
        .await;
    r.assert_oci_error(StatusCode::NOT_FOUND, "NAME_UNKNOWN");
    assert_eq!(t.repo_names().await, ["auto/app"]);
}

#[tokio::test]
async fn download_urls() {
    let t = setup().await;
    t.call("CreateRepository", json!({"repositoryName": "dl/app"})).await;
    t.call("CreateRepository", json!({"repositoryName": "dl/other"})).await;
    let auth = basic(&t.token().await);
    let data = b"some layer content".repeat(10);
    let digest = t.push_blob(&auth, "dl/app", &data).await;
    let other = t.push_blob(&auth, "dl/app", b"another blob").await;

    let v = t
        .call(
            "GetDownloadUrlForLayer",
            json!({"repositoryName": "dl/app", "layerDigest": digest}),
        )
        .await;
    assert_eq!(v["layerDigest"], digest);
    let url = v["downloadUrl"].as_str().unwrap();
    let path_and_query = url
        .strip_prefix(&format!("http://{HOST}"))
        .unwrap_or_else(|| panic!("URL on the host asked: {url}"));
    assert!(path_and_query.starts_with(&format!("/v2/dl/app/blobs/{digest}?")));

    // No Authorization needed.
    let r = t.dp(Method::GET, path_and_query, HOST, None, &[], Body::empty()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.body, data);
    let r = t.dp(Method::HEAD, path_and_query, HOST, None, &[], Body::empty()).await;
    assert_eq!(r.status, StatusCode::OK);

    // Tampered: one character of the signature changed.
    let (path, query) = path_and_query.split_once('?').unwrap();
    let last = query.chars().last().unwrap();
    let swapped = if last == 'A' { 'B' } else { 'A' };
    let tampered = format!("{path}?{}{swapped}", &query[..query.len() - 1]);
    let r = t.dp(Method::GET, &tampered, HOST, None, &[], Body::empty()).await;
    r.assert_oci_error(StatusCode::FORBIDDEN, "DENIED");
    // The claims changed: the token's payload names the blob.
    let (payload, sig) = query.strip_prefix("X-Kura-Download=").unwrap().split_once('.').unwrap();
    let mut claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    claims["d"] = json!(other);
    let forged_payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
    let r = t
        .dp(
            Method::GET,
            &format!("/v2/dl/app/blobs/{other}?X-Kura-Download={forged_payload}.{sig}"),
            HOST,
            None,
            &[],
            Body::empty(),
        )
        .await;
    r.assert_oci_error(StatusCode::FORBIDDEN, "DENIED");
    // A valid URL for one blob does not open another blob or repository.
    for p in [
        format!("/v2/dl/app/blobs/{other}?{query}"),
        format!("/v2/dl/other/blobs/{digest}?{query}"),
    ] {
        let r = t.dp(Method::GET, &p, HOST, None, &[], Body::empty()).await;
        r.assert_oci_error(StatusCode::FORBIDDEN, "DENIED");
    }
    // Nor another method.
    let r = t
        .dp(Method::DELETE, path_and_query, HOST, None, &[], Body::empty())
        .await;
    r.assert_oci_error(StatusCode::FORBIDDEN, "DENIED");
    // Nor another account's host.
    let r = t
        .dp(
            Method::GET,
            path_and_query,
            "999999999999.dkr.localhost",
            None,
            &[],
            Body::empty(),
        )
        .await;
    r.assert_oci_error(StatusCode::FORBIDDEN, "DENIED");

    // A layer that is not there has no URL.
    t.api(
        "GetDownloadUrlForLayer",
        json!({"repositoryName": "dl/app", "layerDigest": Digest::sha256(b"absent").to_string()}),
    )
    .await
    .assert_ecr_error(StatusCode::BAD_REQUEST, "LayersNotFoundException");
}

#[tokio::test]
async fn healthz_needs_no_auth() {
    let t = setup().await;
    let r = t.dp(Method::GET, "/healthz", HOST, None, &[], Body::empty()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text(), "ok");
}

#[tokio::test]
async fn repository_and_registry_policies() {
    let t = setup().await;
    t.call("CreateRepository", json!({"repositoryName": "pol/app"})).await;
    let get = json!({"repositoryName": "pol/app"});
    let msg = t.api("GetRepositoryPolicy", get.clone()).await;
    msg.assert_ecr_error(StatusCode::BAD_REQUEST, "RepositoryPolicyNotFoundException");
    assert!(msg.json()["message"].as_str().unwrap().contains("pol/app"));
    t.api("DeleteRepositoryPolicy", get.clone())
        .await
        .assert_ecr_error(StatusCode::BAD_REQUEST, "RepositoryPolicyNotFoundException");

    // Invalid policies are refused with the reason.
    for (text, reason) in [
        ("{not json", "Invalid repository policy provided"),
        (
            // An identity-style statement: no Principal.
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:*","Resource":"*"}]}"#,
            "Principal",
        ),
        (
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Maybe","Principal":"*","Action":"ecr:*"}]}"#,
            "Effect",
        ),
    ] {
        let r = t
            .api(
                "SetRepositoryPolicy",
                json!({"repositoryName": "pol/app", "policyText": text}),
            )
            .await;
        r.assert_ecr_error(StatusCode::BAD_REQUEST, "InvalidParameterException");
        let m = r.json()["message"].as_str().unwrap().to_string();
        assert!(
            m.contains("Invalid repository policy provided") && m.contains(reason),
            "{m}"
        );
    }
    // Longer than ECR's 10,240-character limit.
    let long = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"{}","Effect":"Allow","Principal":"*","Action":"ecr:BatchGetImage"}}]}}"#,
        "s".repeat(10_300)
    );
    t.api(
        "SetRepositoryPolicy",
        json!({"repositoryName": "pol/app", "policyText": long}),
    )
    .await
    .assert_ecr_error(StatusCode::BAD_REQUEST, "InvalidParameterException");
    // A missing repository.
    let text = r#"{"Version":"2012-10-17","Statement":[{"Sid":"Pull","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::210987654321:root"},"Action":"ecr:BatchGetImage"}]}"#;
    t.api(
        "SetRepositoryPolicy",
        json!({"repositoryName": "pol/none", "policyText": text}),
    )
    .await
    .assert_ecr_error(StatusCode::BAD_REQUEST, "RepositoryNotFoundException");

    // Put, get, delete, gone.
    let v = t
        .call(
            "SetRepositoryPolicy",
            json!({"repositoryName": "pol/app", "policyText": text}),
        )
        .await;
    assert_eq!(v["policyText"], text);
    assert_eq!(v["registryId"], ACCOUNT);
    assert_eq!(t.call("GetRepositoryPolicy", get.clone()).await["policyText"], text);
    assert_eq!(t.call("DeleteRepositoryPolicy", get.clone()).await["policyText"], text);
    t.api("GetRepositoryPolicy", get.clone())
        .await
        .assert_ecr_error(StatusCode::BAD_REQUEST, "RepositoryPolicyNotFoundException");
    // Deleting the repository deletes its policy.
    t.call(
        "SetRepositoryPolicy",
        json!({"repositoryName": "pol/app", "policyText": text}),
    )
    .await;
    t.call("DeleteRepository", get.clone()).await;
    t.call("CreateRepository", get.clone()).await;
    t.api("GetRepositoryPolicy", get.clone())
        .await
        .assert_ecr_error(StatusCode::BAD_REQUEST, "RepositoryPolicyNotFoundException");

    // The registry policy.
    t.api("GetRegistryPolicy", json!({}))
        .await
        .assert_ecr_error(StatusCode::BAD_REQUEST, "RegistryPolicyNotFoundException");
    let r = t.api("PutRegistryPolicy", json!({"policyText": "[]"})).await;
    r.assert_ecr_error(StatusCode::BAD_REQUEST, "InvalidParameterException");
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("Invalid registry policy provided"));
    let reg = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::210987654321:root"},"Action":["ecr:CreateRepository","ecr:ReplicateImage"],"Resource":"*"}]}"#;
    assert_eq!(
        t.call("PutRegistryPolicy", json!({"policyText": reg})).await["policyText"],
        reg
    );
    assert_eq!(t.call("GetRegistryPolicy", json!({})).await["policyText"], reg);
    assert_eq!(t.call("DeleteRegistryPolicy", json!({})).await["policyText"], reg);
    t.api("DeleteRegistryPolicy", json!({}))
        .await
        .assert_ecr_error(StatusCode::BAD_REQUEST, "RegistryPolicyNotFoundException");
}
