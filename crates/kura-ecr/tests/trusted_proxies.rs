//! Who the client is, through `kura_ecr::app` and `oneshot` with the peer
//! address set as `kura serve` sets it (`ConnectInfo`): `X-Forwarded-Proto`
//! and `X-Forwarded-For` are believed only from the networks in
//! `trusted_proxies` (`KURA_TRUSTED_PROXIES`).
//!
//! Guards: the token challenge's realm follows the client's scheme (an https
//! realm behind a TLS proxy, never a cleartext one), a forged
//! `X-Forwarded-Proto` from anyone else is ignored, and `X-Forwarded-For`
//! from an untrusted peer cannot change an `aws:SourceIp` decision (before,
//! every realm was `http://` and nobody's headers were read at all).

use std::net::SocketAddr;
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use base64::Engine;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

mod common;

use common::{KEY_ID, REGION, SECRET};

const HOST: &str = "registry.example:5000";
const PROXY: &str = "10.0.0.2:41000";
const STRANGER: &str = "198.51.100.7:41000";

async fn server() -> common::Server {
    common::server_with(|c| c.trusted_proxies = "10.0.0.0/8".parse().unwrap()).await
}

async fn send(app: &axum::Router, req: Request<Body>) -> (StatusCode, HeaderMap, Vec<u8>) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    let body = resp.into_body().collect().await.unwrap().to_bytes().to_vec();
    (status, headers, body)
}

/// A data-plane request from `peer` (None: no socket) with extra headers.
fn dp(path: &str, peer: Option<&str>, auth: Option<&str>, extra: &[(&str, &str)]) -> Request<Body> {
    let mut b = Request::builder().method(Method::GET).uri(path).header("host", HOST);
    if let Some(a) = auth {
        b = b.header("authorization", a);
    }
    for (k, v) in extra {
        b = b.header(*k, *v);
    }
    let mut req = b.body(Body::empty()).unwrap();
    if let Some(p) = peer {
        req.extensions_mut()
            .insert(ConnectInfo(p.parse::<SocketAddr>().unwrap()));
    }
    req
}

/// A root-signed ECR API call (no socket: no source address).
async fn api(app: &axum::Router, op: &str, input: Value) -> Value {
    let body = serde_json::to_vec(&input).unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("host", HOST.parse().unwrap());
    headers.insert("content-type", "application/x-amz-json-1.1".parse().unwrap());
    headers.insert(
        "x-amz-target",
        format!("AmazonEC2ContainerRegistry_V20150921.{op}").parse().unwrap(),
    );
    common::sign_post(&mut headers, &body, (KEY_ID, SECRET), REGION, "ecr", SystemTime::now());
    let mut b = Request::builder().method(Method::POST).uri("/");
    *b.headers_mut().unwrap() = headers;
    let (status, _, body) = send(app, b.body(Body::from(body)).unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{op}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

fn realm(headers: &HeaderMap) -> String {
    headers.get("www-authenticate").unwrap().to_str().unwrap().to_string()
}

#[tokio::test]
async fn the_realm_follows_the_scheme_only_a_trusted_proxy_reports() {
    let s = server().await;
    let https = [("x-forwarded-proto", "https")];
    // Behind a trusted TLS proxy: an https realm.
    let (status, h, _) = send(&s.app, dp("/v2/", Some(PROXY), None, &https)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        realm(&h).starts_with(&format!("Bearer realm=\"https://{HOST}/token\"")),
        "{}",
        realm(&h)
    );
    // A forged header from anyone else is ignored.
    let (_, h, _) = send(&s.app, dp("/v2/", Some(STRANGER), None, &https)).await;
    assert!(
        realm(&h).starts_with(&format!("Bearer realm=\"http://{HOST}/token\"")),
        "{}",
        realm(&h)
    );
    // A trusted proxy that says http gets http; a bad token's challenge too.
    let (_, h, _) = send(
        &s.app,
        dp(
            "/v2/",
            Some(PROXY),
            Some("Bearer forged"),
            &[("x-forwarded-proto", "http")],
        ),
    )
    .await;
    assert!(realm(&h).contains("realm=\"http://"), "{}", realm(&h));
    let (_, h, _) = send(&s.app, dp("/v2/", Some(PROXY), Some("Bearer forged"), &https)).await;
    assert!(realm(&h).contains("realm=\"https://"), "{}", realm(&h));
    // Without any trusted proxy configured, loopback is not trusted either.
    let plain = common::server().await;
    let (_, h, _) = send(&plain.app, dp("/v2/", Some("127.0.0.1:5"), None, &https)).await;
    assert!(realm(&h).contains("realm=\"http://"), "{}", realm(&h));
}

#[tokio::test]
async fn forwarded_for_counts_for_source_ip_only_from_trusted_proxies() {
    let s = server().await;
    api(&s.app, "CreateRepository", json!({"repositoryName": "ipguard"})).await;
    // Everything on the repository is denied unless it comes from 203.0.113.0/24.
    let policy = json!({"Version": "2012-10-17", "Statement": [{
        "Sid": "office-only", "Effect": "Deny", "Principal": "*", "Action": "ecr:*",
        "Condition": {"NotIpAddress": {"aws:SourceIp": "203.0.113.0/24"}}
    }]});
    api(
        &s.app,
        "SetRepositoryPolicy",
        json!({"repositoryName": "ipguard", "policyText": policy.to_string()}),
    )
    .await;
    let v = api(&s.app, "GetAuthorizationToken", json!({})).await;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(v["authorizationData"][0]["authorizationToken"].as_str().unwrap())
        .unwrap();
    let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw));
    let tags = "/v2/ipguard/tags/list";
    let status = |peer: &'static str, xff: &'static str| {
        let (app, basic) = (s.app.clone(), basic.clone());
        async move {
            let extra: Vec<(&str, &str)> = if xff.is_empty() {
                vec![]
            } else {
                vec![("x-forwarded-for", xff)]
            };
            send(&app, dp(tags, Some(peer), Some(&basic), &extra)).await.0
        }
    };
    // A stranger claiming to be in the office: still the stranger.
    assert_eq!(status(STRANGER, "203.0.113.9").await, StatusCode::FORBIDDEN);
    assert_eq!(status("203.0.113.9:1", "").await, StatusCode::OK);
    // Through the trusted proxy, the address it reports counts.
    assert_eq!(status(PROXY, "203.0.113.9").await, StatusCode::OK);
    assert_eq!(status(PROXY, "").await, StatusCode::FORBIDDEN);
    // A client that prepends an office address to what the proxy appends is
    // judged by the proxy's entry.
    assert_eq!(status(PROXY, "203.0.113.9, 198.51.100.7").await, StatusCode::FORBIDDEN);
    // Chains of trusted proxies are walked from the right.
    assert_eq!(status(PROXY, "203.0.113.9, 10.1.1.1").await, StatusCode::OK);
}
