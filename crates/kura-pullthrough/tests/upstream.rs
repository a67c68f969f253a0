//! The upstream client and the rules' source against real upstreams the
//! tests start: docker-registry (Distribution 2.8) open, with htpasswd Basic,
//! with token authentication, over TLS with a private CA; and a fake upstream
//! that misbehaves (429, 5xx, stalls, lies about digests, oversized).

mod support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kura_pullthrough::{Auth, ClientConfig, Endpoint, PullThrough, RemoteRepo, StaticSecrets, UpstreamClient};
use kura_registry::upstream::{PullThroughSource, UpstreamError, UpstreamRepo};
use kura_store::ptc_rules::{PtcCreate, PtcRuleRow};
use kura_store::PullThroughRuleStore;
use support::*;

const ACCOUNT: &str = "123456789012";
const OTHER: &str = "210987654321";

fn client(config: ClientConfig) -> Arc<UpstreamClient> {
    Arc::new(UpstreamClient::new(config).unwrap())
}

fn repo(client: &Arc<UpstreamClient>, base: &str, auth: Auth, name: &str) -> RemoteRepo {
    RemoteRepo::new(
        client.clone(),
        Arc::new(Endpoint {
            base: base.to_string(),
            auth,
        }),
        name,
    )
    .unwrap()
}

fn basic(u: &str, p: &str) -> Auth {
    Auth::Basic {
        username: u.into(),
        password: p.into(),
    }
}

async fn blob_bytes(r: &RemoteRepo, digest: &str) -> Vec<u8> {
    let mut b = r.get_blob(digest).await.unwrap().expect("the blob exists");
    let mut out = Vec::new();
    while let Some(c) = b.body.next().await {
        out.extend_from_slice(&c.unwrap());
    }
    assert_eq!(b.size, Some(out.len() as u64));
    out
}

/// Storage seeded through an open registry with `team/app:v1` and `library/nginx:1.27`.
async fn seeded() -> (tempfile::TempDir, Image, Image) {
    let storage = tempfile::tempdir().unwrap();
    let open = registry(storage.path(), "", None).await;
    let app = image("app");
    let nginx = image("nginx");
    push(&open.base, "team/app", "v1", &app).await;
    push(&open.base, "library/nginx", "1.27", &nginx).await;
    (storage, app, nginx)
}

fn denied(r: Result<impl Sized, UpstreamError>) -> String {
    match r {
        Err(UpstreamError::Denied { message }) => message,
        Err(e) => panic!("expected Denied, got {e:?}"),
        Ok(_) => panic!("expected Denied, got a success"),
    }
}

#[tokio::test]
async fn open_registry_serves_manifests_heads_and_blobs() {
    if !have("docker-registry") {
        return;
    }
    let (storage, app, _) = seeded().await;
    let reg = registry(storage.path(), "", None).await;
    let c = client(ClientConfig::default());
    let r = repo(&c, &reg.base, Auth::Anonymous, "team/app");
    assert_eq!(r.describe(), format!("127.0.0.1:{}/team/app", reg.port));

    let m = r.get_manifest("v1").await.unwrap().expect("tag v1");
    assert_eq!(m.digest, app.digest);
    assert_eq!(m.media_type, "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(&m.body[..], &app.manifest[..]);
    let by_digest = r.get_manifest(&app.digest).await.unwrap().expect("by digest");
    assert_eq!(by_digest.digest, app.digest);

    let h = r.head_manifest("v1").await.unwrap().expect("head v1");
    assert_eq!(
        (h.digest.as_str(), h.size),
        (app.digest.as_str(), app.manifest.len() as u64)
    );
    assert_eq!(h.media_type, "application/vnd.oci.image.manifest.v1+json");

    assert_eq!(blob_bytes(&r, &app.layer_digest).await, app.layer);
    assert!(r.get_manifest("nope").await.unwrap().is_none());
    assert!(r.head_manifest("nope").await.unwrap().is_none());
    let missing = kura_oci::Digest::sha256(b"missing").to_string();
    assert!(r.get_blob(&missing).await.unwrap().is_none());
    // A repository the upstream does not have.
    let gone = repo(&c, &reg.base, Auth::Anonymous, "team/none");
    assert!(gone.get_manifest("v1").await.unwrap().is_none());
    // Malformed references never reach the upstream.
    assert!(matches!(
        r.get_manifest("../../v2").await,
        Err(UpstreamError::Invalid { .. })
    ));
    assert!(matches!(
        r.get_blob("sha256:zz").await,
        Err(UpstreamError::Invalid { .. })
    ));
    c.check(&Endpoint {
        base: reg.base.clone(),
        auth: Auth::Anonymous,
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn htpasswd_basic_needs_the_right_password() {
    if !have("docker-registry") || !have("htpasswd") {
        return;
    }
    let (storage, app, _) = seeded().await;
    let dir = tempfile::tempdir().unwrap();
    let file = htpasswd(dir.path(), "alice", "s3cret-pw");
    let auth = format!("  htpasswd:\n    realm: kura-test\n    path: {}\n", file.display());
    let reg = registry(storage.path(), &auth, None).await;
    let c = client(ClientConfig::default());

    let good = repo(&c, &reg.base, basic("alice", "s3cret-pw"), "team/app");
    assert_eq!(good.get_manifest("v1").await.unwrap().unwrap().digest, app.digest);
    assert_eq!(blob_bytes(&good, &app.layer_digest).await, app.layer);

    let wrong = repo(&c, &reg.base, basic("alice", "wrong"), "team/app");
    let msg = denied(wrong.get_manifest("v1").await);
    assert!(msg.contains(&format!("127.0.0.1:{}/team/app", reg.port)), "{msg}");
    assert!(!msg.contains("wrong"), "no password in messages: {msg}");
    denied(
        repo(&c, &reg.base, Auth::Anonymous, "team/app")
            .get_manifest("v1")
            .await,
    );
    // The check validation runs.
    let ep = |auth| Endpoint {
        base: reg.base.clone(),
        auth,
    };
    c.check(&ep(basic("alice", "s3cret-pw"))).await.unwrap();
    assert!(matches!(
        c.check(&ep(basic("alice", "wrong"))).await,
        Err(UpstreamError::Denied { .. })
    ));
}

#[tokio::test]
async fn token_auth_asks_for_the_repository_pull_scope_and_caches_the_token() {
    if !have("docker-registry") || !have("openssl") {
        return;
    }
    let (storage, app, nginx) = seeded().await;
    let tokens = token_server("alice", "tok-pw").await;
    let reg = registry(storage.path(), &tokens.auth_yaml(), None).await;
    let c = client(ClientConfig::default());

    let r = repo(&c, &reg.base, basic("alice", "tok-pw"), "team/app");
    assert_eq!(r.get_manifest("v1").await.unwrap().unwrap().digest, app.digest);
    assert_eq!(r.head_manifest("v1").await.unwrap().unwrap().digest, app.digest);
    assert_eq!(blob_bytes(&r, &app.layer_digest).await, app.layer);
    // One token for the repository's pull scope, reused by the later requests.
    assert_eq!(tokens.log.issued.load(Ordering::SeqCst), 1);
    assert_eq!(
        *tokens.log.scopes.lock().unwrap(),
        vec!["repository:team/app:pull".to_string()]
    );
    // Another repository: its own scope, its own token; a token for
    // team/app does not open library/nginx.
    let n = repo(&c, &reg.base, basic("alice", "tok-pw"), "library/nginx");
    assert_eq!(n.get_manifest("1.27").await.unwrap().unwrap().digest, nginx.digest);
    assert_eq!(tokens.log.issued.load(Ordering::SeqCst), 2);
    assert_eq!(tokens.log.scopes.lock().unwrap()[1], "repository:library/nginx:pull");

    // A burst of requests on a fresh client costs the token service one request.
    let fresh = client(ClientConfig::default());
    let before = tokens.log.issued.load(Ordering::SeqCst);
    let burst = (0..20).map(|_| {
        let r = repo(&fresh, &reg.base, basic("alice", "tok-pw"), "team/app");
        let digest = app.layer_digest.clone();
        async move { blob_bytes(&r, &digest).await }
    });
    for bytes in futures::future::join_all(burst).await {
        assert_eq!(bytes, app.layer);
    }
    assert_eq!(tokens.log.issued.load(Ordering::SeqCst), before + 1);

    // Wrong or no credentials: the token service refuses, the client says so.
    let msg = denied(
        repo(&c, &reg.base, basic("alice", "nope"), "team/app")
            .get_manifest("v1")
            .await,
    );
    assert!(msg.contains("token service"), "{msg}");
    denied(
        repo(&c, &reg.base, Auth::Anonymous, "team/app")
            .get_manifest("v1")
            .await,
    );
    assert!(tokens.log.refused.load(Ordering::SeqCst) >= 2);
    let ep = |auth| Endpoint {
        base: reg.base.clone(),
        auth,
    };
    c.check(&ep(basic("alice", "tok-pw"))).await.unwrap();
    assert!(c.check(&ep(basic("alice", "nope"))).await.is_err());
}

#[tokio::test]
async fn a_tls_upstream_needs_the_custom_ca_bundle() {
    if !have("docker-registry") || !have("openssl") {
        return;
    }
    let (storage, app, _) = seeded().await;
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = tls_files(dir.path());
    let reg = registry(storage.path(), "", Some((&cert, &key))).await;
    assert!(reg.base.starts_with("https://"));

    let system_only = client(ClientConfig::default());
    let r = repo(&system_only, &reg.base, Auth::Anonymous, "team/app");
    assert!(
        matches!(r.get_manifest("v1").await, Err(UpstreamError::Unavailable { .. })),
        "a certificate of an unknown CA is refused"
    );
    let with_ca = client(ClientConfig {
        ca_bundle: Some(ca),
        ..ClientConfig::default()
    });
    let r = repo(&with_ca, &reg.base, Auth::Anonymous, "team/app");
    assert_eq!(r.get_manifest("v1").await.unwrap().unwrap().digest, app.digest);
    assert_eq!(blob_bytes(&r, &app.layer_digest).await, app.layer);

    // A bundle that is not PEM is refused when the client is made.
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    assert!(UpstreamClient::new(ClientConfig {
        ca_bundle: Some(junk),
        ..ClientConfig::default()
    })
    .is_err());
}

async fn rule_store() -> (tempfile::TempDir, Arc<kura_store::SqlMetaStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = kura_store::testdb::from_env_or_sqlite(dir.path().join("meta.db")).await;
    (dir, Arc::new(store))
}

fn rule(account: &str, prefix: &str, url: &str, registry: Option<&str>, cred: Option<&str>) -> PtcRuleRow {
    PtcRuleRow {
        account: account.into(),
        prefix: prefix.into(),
        upstream_url: url.into(),
        upstream_registry: registry.map(str::to_string),
        credential_arn: cred.map(str::to_string),
        custom_role_arn: None,
        upstream_prefix: None,
        created_at: 1,
        updated_at: 1,
    }
}

fn secret_arn(account: &str, name: &str) -> String {
    format!("arn:aws:secretsmanager:us-east-1:{account}:secret:ecr-pullthroughcache/{name}-AbCdEf")
}

#[tokio::test]
async fn rules_map_names_to_upstream_repositories_of_their_own_account() {
    if !have("docker-registry") || !have("htpasswd") {
        return;
    }
    let (storage, app, nginx) = seeded().await;
    let dir = tempfile::tempdir().unwrap();
    let file = htpasswd(dir.path(), "alice", "pw-1");
    let auth = format!("  htpasswd:\n    realm: kura-test\n    path: {}\n", file.display());
    let locked = registry(storage.path(), &auth, None).await;
    let open = registry(storage.path(), "", None).await;
    let (_db, store) = rule_store().await;
    let url = |r: &Dist| format!("http://127.0.0.1:{}", r.port);
    let mine = secret_arn(ACCOUNT, "hub");
    let theirs = secret_arn(OTHER, "hub");
    // hub: Docker Hub's conventions on the locked registry; hub/team: the open one.
    for r in [
        rule(ACCOUNT, "hub", &url(&locked), Some("docker-hub"), Some(&mine)),
        rule(ACCOUNT, "hub/team", &url(&open), None, None),
        rule(OTHER, "cross", &url(&locked), Some("docker-hub"), Some(&mine)),
        rule(ACCOUNT, "theirs", &url(&locked), Some("docker-hub"), Some(&theirs)),
    ] {
        assert_eq!(store.ptc_rule_create(&r, 50).await.unwrap(), PtcCreate::Created);
    }
    let secrets = Arc::new(StaticSecrets::default());
    secrets.put(ACCOUNT, &mine, r#"{"username":"alice","accessToken":"pw-1"}"#);
    secrets.put(OTHER, &theirs, r#"{"username":"alice","accessToken":"pw-1"}"#);
    let ptc = PullThrough::new(store.clone());
    // No secrets connected yet: a rule with a secret is denied, clearly.
    let name = |n: &str| n.parse::<kura_oci::RepoName>().unwrap();
    let up = ptc.upstream_for(ACCOUNT, &name("hub/nginx")).await;
    let msg = denied(up.map(|_| ()));
    assert!(msg.contains("no secrets service"), "{msg}");
    ptc.set_credentials(secrets.clone());

    // One-segment names go under library/ on Docker Hub.
    let up = ptc.upstream_for(ACCOUNT, &name("hub/nginx")).await.unwrap().unwrap();
    assert_eq!(up.describe(), format!("127.0.0.1:{}/library/nginx", locked.port));
    assert_eq!(up.get_manifest("1.27").await.unwrap().unwrap().digest, nginx.digest);
    // The longest prefix wins: hub/team/app is the open registry's app.
    let up = ptc.upstream_for(ACCOUNT, &name("hub/team/app")).await.unwrap().unwrap();
    assert_eq!(up.describe(), format!("127.0.0.1:{}/app", open.port));
    let up = ptc.upstream_for(ACCOUNT, &name("hub/team/x")).await.unwrap().unwrap();
    assert!(up.get_manifest("v1").await.unwrap().is_none());
    // Prefix confusion: neither hubx/… nor the bare prefix is covered.
    assert!(ptc.upstream_for(ACCOUNT, &name("hubx/nginx")).await.unwrap().is_none());
    assert!(ptc.upstream_for(ACCOUNT, &name("hub")).await.unwrap().is_none());
    // Another account's rules do not apply to this one, and the other way round.
    assert!(ptc.upstream_for(ACCOUNT, &name("cross/nginx")).await.unwrap().is_none());
    assert!(ptc.upstream_for(OTHER, &name("hub/nginx")).await.unwrap().is_none());
    // A rule naming another account's secret (or this account's secret, from
    // another account's rule) gets no credentials.
    let msg = denied(ptc.upstream_for(ACCOUNT, &name("theirs/nginx")).await.map(|_| ()));
    assert!(msg.contains("another account"), "{msg}");
    denied(ptc.upstream_for(OTHER, &name("cross/nginx")).await.map(|_| ()));

    // A deleted secret: validation fails; a changed password is seen after
    // the rule changes (the node's copy is dropped).
    let hub = store.ptc_rule_get(ACCOUNT, "hub").await.unwrap().unwrap();
    ptc.validate(&hub).await.unwrap();
    secrets.put(ACCOUNT, &mine, r#"{"username":"alice","accessToken":"stale"}"#);
    let failure = ptc.validate(&hub).await.unwrap_err();
    assert!(failure.contains("denied"), "{failure}");
    secrets.delete(ACCOUNT, &mine);
    let failure = ptc.validate(&hub).await.unwrap_err();
    assert!(failure.contains("not found"), "{failure}");
    secrets.put(ACCOUNT, &mine, "not json at all");
    let failure = ptc.validate(&hub).await.unwrap_err();
    assert!(failure.contains("username"), "{failure}");
    assert!(
        !failure.contains("not json at all"),
        "the secret is never quoted: {failure}"
    );

    // A rule deleted on this node is gone at once.
    store.ptc_rule_delete(ACCOUNT, "hub/team").await.unwrap();
    ptc.invalidate(ACCOUNT);
    secrets.put(ACCOUNT, &mine, r#"{"username":"alice","accessToken":"pw-1"}"#);
    let up = ptc.upstream_for(ACCOUNT, &name("hub/team/app")).await.unwrap().unwrap();
    assert_eq!(up.describe(), format!("127.0.0.1:{}/team/app", locked.port));
    assert_eq!(up.get_manifest("v1").await.unwrap().unwrap().digest, app.digest);
}

/// A fake upstream: `/v2/<what>/manifests/<ref>` answers by `what`.
async fn fake_upstream() -> String {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let body = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"a","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":1},"layers":[]}"#;
    let good = kura_oci::Digest::sha256(body).to_string();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let good = good.clone();
        async move {
            let path = uri.path().to_string();
            let ct = ("content-type", "application/vnd.oci.image.manifest.v1+json");
            if path.starts_with("/v2/busy/") {
                return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "7")], "slow down").into_response();
            }
            if path.starts_with("/v2/broken/") {
                return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
            }
            if path.starts_with("/v2/stall/") {
                tokio::time::sleep(Duration::from_secs(30)).await;
                return StatusCode::OK.into_response();
            }
            if path.starts_with("/v2/trickle/") {
                // Headers at once, then the body stops.
                let s = futures::stream::once(async { Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"{")) })
                    .chain(futures::stream::pending());
                return (StatusCode::OK, [ct], axum::body::Body::from_stream(s)).into_response();
            }
            if path.starts_with("/v2/liar/") {
                let other = kura_oci::Digest::sha256(b"other").to_string();
                return (
                    StatusCode::OK,
                    [ct, ("docker-content-digest", other.as_str())],
                    &body[..],
                )
                    .into_response();
            }
            if path.starts_with("/v2/huge/") {
                return (StatusCode::OK, [ct], vec![b' '; 5 * 1024 * 1024]).into_response();
            }
            if path.starts_with("/v2/weird/") {
                return (StatusCode::OK, [("content-type", "text/html")], "<html>").into_response();
            }
            if path.starts_with("/v2/ok/") {
                return (
                    StatusCode::OK,
                    [ct, ("docker-content-digest", good.as_str())],
                    &body[..],
                )
                    .into_response();
            }
            StatusCode::NOT_FOUND.into_response()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://127.0.0.1:{port}")
}

#[tokio::test]
async fn misbehaving_upstreams_fail_clearly_and_in_bounded_time() {
    let base = fake_upstream().await;
    let c = client(ClientConfig {
        response_timeout: Duration::from_millis(500),
        idle_timeout: Duration::from_millis(500),
        ..ClientConfig::default()
    });
    let r = |n: &str| repo(&c, &base, Auth::Anonymous, n);
    assert!(r("ok").get_manifest("v1").await.unwrap().is_some());
    match r("busy").get_manifest("v1").await {
        Err(UpstreamError::TooManyRequests {
            retry_after_secs,
            message,
        }) => {
            assert_eq!(retry_after_secs, Some(7));
            assert!(message.contains("/busy"), "{message}");
        }
        other => panic!("{:?}", other.err()),
    }
    match r("broken").get_manifest("v1").await {
        Err(UpstreamError::Unavailable { message }) => assert!(message.contains("503"), "{message}"),
        other => panic!("{:?}", other.err()),
    }
    match r("stall").get_manifest("v1").await {
        Err(UpstreamError::Unavailable { message }) => assert!(message.contains("timed out"), "{message}"),
        other => panic!("{:?}", other.err()),
    }
    assert!(matches!(
        r("trickle").get_manifest("v1").await,
        Err(UpstreamError::Unavailable { .. })
    ));
    match r("liar").get_manifest("v1").await {
        Err(UpstreamError::Invalid { message }) => assert!(message.contains("does not match"), "{message}"),
        other => panic!("{:?}", other.err()),
    }
    let wrong = kura_oci::Digest::sha256(b"x").to_string();
    assert!(matches!(
        r("ok").get_manifest(&wrong).await,
        Err(UpstreamError::Invalid { .. })
    ));
    assert!(matches!(
        r("huge").get_manifest("v1").await,
        Err(UpstreamError::Invalid { .. })
    ));
    assert!(matches!(
        r("weird").get_manifest("v1").await,
        Err(UpstreamError::Invalid { .. })
    ));
    // Nobody listening.
    let port = free_port();
    let dead = repo(&c, &format!("http://127.0.0.1:{port}"), Auth::Anonymous, "x");
    match dead.get_manifest("v1").await {
        Err(UpstreamError::Unavailable { message }) => assert!(message.contains("cannot connect"), "{message}"),
        other => panic!("{:?}", other.err()),
    }
}

/// An upstream that redirects blobs to another host (as registries do to
/// object storage), which records the Authorization header it gets, and
/// challenges with hostile token realms.
#[tokio::test]
async fn credentials_never_follow_a_redirect_or_a_hostile_realm() {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let seen: Arc<std::sync::Mutex<Vec<Option<String>>>> = Arc::default();
    let log = seen.clone();
    let storage = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
        let log = log.clone();
        async move {
            log.lock().unwrap().push(
                headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string),
            );
            (StatusCode::OK, "blob-bytes").into_response()
        }
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    // Another host name for the same machine: a redirect across hosts.
    let storage_url = format!("http://localhost:{}", l.local_addr().unwrap().port());
    tokio::spawn(async move { axum::serve(l, storage).await.unwrap() });

    let huge_realm = Arc::new(std::sync::Mutex::new(String::new()));
    let realm_for_app = huge_realm.clone();
    let app = axum::Router::new()
        .route(
            "/huge-token",
            axum::routing::get(|| async { (StatusCode::OK, vec![b'x'; 2 * 1024 * 1024]) }),
        )
        .fallback(move |uri: axum::http::Uri, headers: axum::http::HeaderMap| {
            let storage_url = storage_url.clone();
            let realm = realm_for_app.lock().unwrap().clone();
            async move {
                let path = uri.path().to_string();
                let authed = headers.get("authorization").is_some();
                if path.starts_with("/v2/redir/blobs/") {
                    if !authed {
                        return (
                            StatusCode::UNAUTHORIZED,
                            [("www-authenticate", "Basic realm=\"x\"")],
                            "",
                        )
                            .into_response();
                    }
                    return (
                        StatusCode::TEMPORARY_REDIRECT,
                        [("location", format!("{storage_url}/data"))],
                        "",
                    )
                        .into_response();
                }
                if path.starts_with("/v2/file-realm/") {
                    let c = r#"Bearer realm="file:///etc/passwd",service="x""#;
                    return (StatusCode::UNAUTHORIZED, [("www-authenticate", c)], "").into_response();
                }
                if path.starts_with("/v2/huge-realm/") {
                    let c = format!(r#"Bearer realm="{realm}",service="x""#);
                    return (StatusCode::UNAUTHORIZED, [("www-authenticate", c)], "").into_response();
                }
                StatusCode::NOT_FOUND.into_response()
            }
        });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://127.0.0.1:{}", l.local_addr().unwrap().port());
    *huge_realm.lock().unwrap() = format!("{base}/huge-token");
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });

    let c = client(ClientConfig::default());
    let creds = basic("alice", "top-secret");
    let digest = kura_oci::Digest::sha256(b"blob-bytes").to_string();
    let r = repo(&c, &base, creds.clone(), "redir");
    let mut blob = r.get_blob(&digest).await.unwrap().expect("redirected blob");
    let mut got = Vec::new();
    while let Some(chunk) = blob.body.next().await {
        got.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(got, b"blob-bytes");
    assert_eq!(*seen.lock().unwrap(), vec![None], "the storage host got no credentials");

    let r = repo(&c, &base, creds.clone(), "file-realm");
    assert!(matches!(r.get_manifest("v1").await, Err(UpstreamError::Invalid { .. })));
    let r = repo(&c, &base, creds, "huge-realm");
    match r.get_manifest("v1").await {
        Err(UpstreamError::Invalid { message }) => assert!(message.contains("more than"), "{message}"),
        other => panic!("{:?}", other.err()),
    }
}
