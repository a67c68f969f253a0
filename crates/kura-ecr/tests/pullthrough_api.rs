//! The pull-through cache rule operations as ECR answers them, through the
//! whole application (`POST /`, SigV4, the model, authorization): ECR's
//! validation and errors, the secret read at create/update, the quota,
//! paging; `ValidatePullThroughCacheRule` against a real upstream: a second
//! Kura as the `ecr` upstream (ECR's token exchange with the access key from
//! the secret), valid with the right secret, `isValid: false` with a wrong
//! or deleted one. Attack cases: another account's rules and secrets, prefix
//! confusion, malformed input. Runs on PostgreSQL too when
//! `KURA_TEST_DATABASE_URL` is set.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use kura_pullthrough::StaticSecrets;
use kura_registry::upstream::PullThroughSource;
use kura_store::meta::{NewManifest, TagWrite};
use kura_store::{ControlStore, MetaStore};
use serde_json::{json, Value};
use tower::ServiceExt;

mod common;

use common::{ACCOUNT, KEY_ID, REGION, SECRET};

const TARGET: &str = "AmazonEC2ContainerRegistry_V20150921";
const OTHER: &str = "210987654321";

struct Resp {
    status: StatusCode,
    body: Value,
}

impl Resp {
    fn ok(self) -> Value {
        assert_eq!(self.status, StatusCode::OK, "{}", self.body);
        self.body
    }

    fn err(&self, status: StatusCode, kind: &str) -> String {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(self.body["__type"], kind, "{}", self.body);
        self.body["message"].as_str().unwrap_or_default().to_string()
    }
}

struct T {
    s: common::Server,
    secrets: Arc<StaticSecrets>,
}

fn arn(account: &str, name: &str) -> String {
    format!("arn:aws:secretsmanager:{REGION}:{account}:secret:ecr-pullthroughcache/{name}-AbCdEf")
}

impl T {
    async fn new() -> T {
        let s = common::server().await;
        s.store.account_ensure(OTHER).await.unwrap();
        let secrets = Arc::new(StaticSecrets::default());
        s.ecr.pull_through().set_credentials(secrets.clone());
        T { s, secrets }
    }

    async fn call(&self, op: &str, input: Value) -> Resp {
        let body = serde_json::to_vec(&input).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("host", "localhost:5000".parse().unwrap());
        headers.insert("content-type", "application/x-amz-json-1.1".parse().unwrap());
        headers.insert("x-amz-target", format!("{TARGET}.{op}").parse().unwrap());
        common::sign_post(
            &mut headers,
            &body,
            (KEY_ID, SECRET),
            REGION,
            "ecr",
            std::time::SystemTime::now(),
        );
        let mut b = Request::builder().method(Method::POST).uri("/");
        *b.headers_mut().unwrap() = headers;
        let resp = self
            .s
            .app
            .clone()
            .oneshot(b.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        Resp {
            status,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }
}

#[tokio::test]
async fn rules_are_created_described_updated_and_deleted_as_ecr_does() {
    let t = T::new().await;
    let hub = arn(ACCOUNT, "hub");
    t.secrets.put(ACCOUNT, &hub, r#"{"username":"u","accessToken":"t"}"#);

    let out = t
        .call(
            "CreatePullThroughCacheRule",
            json!({"ecrRepositoryPrefix": "ecr-public/", "upstreamRegistryUrl": "public.ecr.aws"}),
        )
        .await
        .ok();
    assert_eq!(out["ecrRepositoryPrefix"], "ecr-public");
    assert_eq!(out["upstreamRegistryUrl"], "public.ecr.aws");
    assert_eq!(out["upstreamRegistry"], "ecr-public");
    assert_eq!(out["registryId"], ACCOUNT);
    assert!(out["createdAt"].as_f64().unwrap() > 1.6e9);
    assert!(out.get("credentialArn").is_none());

    let out = t
        .call(
            "CreatePullThroughCacheRule",
            json!({"ecrRepositoryPrefix": "hub", "upstreamRegistryUrl": "registry-1.docker.io",
                   "credentialArn": hub}),
        )
        .await
        .ok();
    assert_eq!(out["upstreamRegistry"], "docker-hub");
    assert_eq!(out["credentialArn"], hub);
    // ROOT covers every name, and takes no upstream prefix (ECR's rule).
    t.call(
        "CreatePullThroughCacheRule",
        json!({"ecrRepositoryPrefix": "ROOT", "upstreamRegistryUrl": "http://10.0.0.7:5000",
               "upstreamRepositoryPrefix": "mirror/"}),
    )
    .await
    .err(StatusCode::BAD_REQUEST, "InvalidParameterException");
    t.call(
        "CreatePullThroughCacheRule",
        json!({"ecrRepositoryPrefix": "ROOT", "upstreamRegistryUrl": "http://10.0.0.7:5000",
               "upstreamRepositoryPrefix": "ROOT"}),
    )
    .await
    .ok();
    // A private registry of any kind, with an upstream prefix.
    t.call(
        "CreatePullThroughCacheRule",
        json!({"ecrRepositoryPrefix": "mir", "upstreamRegistryUrl": "http://10.0.0.7:5000",
               "upstreamRepositoryPrefix": "mirror/"}),
    )
    .await
    .ok();

    // The same prefix twice (a trailing slash is the same prefix).
    let msg = t
        .call(
            "CreatePullThroughCacheRule",
            json!({"ecrRepositoryPrefix": "ecr-public", "upstreamRegistryUrl": "public.ecr.aws"}),
        )
        .await
        .err(StatusCode::BAD_REQUEST, "PullThroughCacheRuleAlreadyExistsException");
    assert!(msg.contains("ecr-public") && msg.contains(ACCOUNT), "{msg}");

    // Describe: all, in prefix order, paged; by prefix; unknown prefix.
    let all = t.call("DescribePullThroughCacheRules", json!({})).await.ok();
    let prefixes: Vec<&str> = all["pullThroughCacheRules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["ecrRepositoryPrefix"].as_str().unwrap())
        .collect();
    assert_eq!(prefixes, ["ROOT", "ecr-public", "hub", "mir"]);
    assert!(all["pullThroughCacheRules"][0]
        .get("upstreamRepositoryPrefix")
        .is_none());
    let mir = &all["pullThroughCacheRules"][3];
    assert_eq!(mir["upstreamRepositoryPrefix"], "mirror");
    assert!(
        mir.get("upstreamRegistry").is_none(),
        "a generic registry has no enum value"
    );
    assert!(mir["updatedAt"].is_number());
    let p1 = t
        .call("DescribePullThroughCacheRules", json!({"maxResults": 2}))
        .await
        .ok();
    assert_eq!(p1["pullThroughCacheRules"].as_array().unwrap().len(), 2);
    let token = p1["nextToken"].as_str().unwrap().to_string();
    let p2 = t
        .call(
            "DescribePullThroughCacheRules",
            json!({"maxResults": 2, "nextToken": token}),
        )
        .await
        .ok();
    assert_eq!(p2["pullThroughCacheRules"][0]["ecrRepositoryPrefix"], "hub");
    assert_eq!(p2["pullThroughCacheRules"][1]["ecrRepositoryPrefix"], "mir");
    assert!(p2.get("nextToken").is_none());
    let one = t
        .call(
            "DescribePullThroughCacheRules",
            json!({"ecrRepositoryPrefixes": ["hub/"]}),
        )
        .await
        .ok();
    assert_eq!(one["pullThroughCacheRules"].as_array().unwrap().len(), 1);
    assert_eq!(one["pullThroughCacheRules"][0]["credentialArn"], hub);
    t.call(
        "DescribePullThroughCacheRules",
        json!({"ecrRepositoryPrefixes": ["hub", "nope"]}),
    )
    .await
    .err(StatusCode::BAD_REQUEST, "PullThroughCacheRuleNotFoundException");
    t.call("DescribePullThroughCacheRules", json!({"nextToken": "!!not-a-token"}))
        .await
        .err(StatusCode::BAD_REQUEST, "InvalidParameterException");

    // Update the secret; the new one is read first.
    let hub2 = arn(ACCOUNT, "hub2");
    t.call(
        "UpdatePullThroughCacheRule",
        json!({"ecrRepositoryPrefix": "hub", "credentialArn": hub2}),
    )
    .await
    .err(StatusCode::BAD_REQUEST, "SecretNotFoundException");
    t.secrets.put(ACCOUNT, &hub2, r#"{"username":"u","accessToken":"t2"}"#);
    let out = t
        .call(
            "UpdatePullThroughCacheRule",
            json!({"ecrRepositoryPrefix": "hub", "credentialArn": hub2}),
        )
        .await
        .ok();
    assert_eq!(out["credentialArn"], hub2);
    assert!(out["updatedAt"].is_number());
    assert!(out.get("upstreamRegistryUrl").is_none(), "Update's output has no URL");
    t.call(
        "UpdatePullThroughCacheRule",
        json!({"ecrRepositoryPrefix": "nope", "credentialArn": hub2}),
    )
    .await
    .err(StatusCode::BAD_REQUEST, "PullThroughCacheRuleNotFoundException");
    // A registry that takes no credentials cannot be given one.
    t.call(
        "UpdatePullThroughCacheRule",
        json!({"ecrRepositoryPrefix": "ecr-public", "credentialArn": hub2}),
    )
    .await
    .err(StatusCode::BAD_REQUEST, "InvalidParameterException");

    // Delete answers the rule; then it is gone.
    let out = t
        .call("DeletePullThroughCacheRule", json!({"ecrRepositoryPrefix": "hub"}))
        .await
        .ok();
    assert_eq!(out["upstreamRegistryUrl"], "registry-1.docker.io");
    assert_eq!(out["credentialArn"], hub2);
    t.call("DeletePullThroughCacheRule", json!({"ecrRepositoryPrefix": "hub"}))
        .await
        .err(StatusCode::BAD_REQUEST, "PullThroughCacheRuleNotFoundException");
    t.call("ValidatePullThroughCacheRule", json!({"ecrRepositoryPrefix": "hub"}))
        .await
        .err(StatusCode::BAD_REQUEST, "PullThroughCacheRuleNotFoundException");
}

#[tokio::test]
async fn ecr_validation_errors() {
    let t = T::new().await;
    let create = |prefix: &str, url: &str, extra: Value| {
        let mut v = json!({"ecrRepositoryPrefix": prefix, "upstreamRegistryUrl": url});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    };
    let bad = |r: Resp, kind: &str| {
        let msg = r.err(StatusCode::BAD_REQUEST, kind);
        // ECR's semantic checks, not the model's grammar, refused these.
        assert!(!msg.contains("ecrRepositoryPrefix"), "{msg}");
    };
    // Registries that need credentials, and ones that take none.
    bad(
        t.call(
            "CreatePullThroughCacheRule",
            create("hub", "registry-1.docker.io", json!({})),
        )
        .await,
        "InvalidParameterException",
    );
    bad(
        t.call("CreatePullThroughCacheRule", create("gh", "ghcr.io", json!({})))
            .await,
        "InvalidParameterException",
    );
    bad(
        t.call(
            "CreatePullThroughCacheRule",
            create("qq", "quay.io", json!({"credentialArn": arn(ACCOUNT, "q")})),
        )
        .await,
        "InvalidParameterException",
    );
    // The URL names another registry than upstreamRegistry says.
    bad(
        t.call(
            "CreatePullThroughCacheRule",
            create("qq", "quay.io", json!({"upstreamRegistry": "k8s"})),
        )
        .await,
        "InvalidParameterException",
    );
    // URLs with paths, users, other schemes, bad ports.
    for url in [
        "quay.io/some/path",
        "user@quay.io",
        "ftp://quay.io",
        "quay.io:http",
        "",
        "http://",
    ] {
        bad(
            t.call("CreatePullThroughCacheRule", create("qq", url, json!({}))).await,
            "InvalidParameterException",
        );
    }
    // Roles: another account's, or the premium-only upstream role.
    bad(
        t.call(
            "CreatePullThroughCacheRule",
            create(
                "qq",
                "quay.io",
                json!({"customRoleArn": format!("arn:aws:iam::{OTHER}:role/puller")}),
            ),
        )
        .await,
        "InvalidParameterException",
    );
    bad(
        t.call(
            "CreatePullThroughCacheRule",
            create(
                "qq",
                "quay.io",
                json!({"upstreamRoleArn": format!("arn:aws:iam::{ACCOUNT}:role/puller")}),
            ),
        )
        .await,
        "InvalidParameterException",
    );
    bad(
        t.call(
            "CreatePullThroughCacheRule",
            create("pp", "ecr-premium.aws.com", json!({})),
        )
        .await,
        "UnsupportedUpstreamRegistryException",
    );
    // The model's grammar: prefixes, secret names, sizes.
    for prefix in ["Hub", "a", "hub//x", "-hub", &"x".repeat(31), "root"] {
        let r = t
            .call("CreatePullThroughCacheRule", create(prefix, "quay.io", json!({})))
            .await;
        if prefix == "root" {
            // Lower-case "root" is an ordinary prefix, not ROOT.
            assert_eq!(r.ok()["ecrRepositoryPrefix"], "root");
            continue;
        }
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{prefix}: {}", r.body);
    }
    let not_cache = format!("arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:prod/db-AbCdEf");
    let r = t
        .call(
            "CreatePullThroughCacheRule",
            create("hub", "registry-1.docker.io", json!({"credentialArn": not_cache})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let r = t
        .call(
            "CreatePullThroughCacheRule",
            json!({"ecrRepositoryPrefix": "hub", "upstreamRegistryUrl": "quay.io", "extra": 1}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    // Secrets: missing, another account's (even one that exists there).
    bad(
        t.call(
            "CreatePullThroughCacheRule",
            create(
                "hub",
                "registry-1.docker.io",
                json!({"credentialArn": arn(ACCOUNT, "none")}),
            ),
        )
        .await,
        "SecretNotFoundException",
    );
    t.secrets
        .put(OTHER, &arn(OTHER, "hub"), r#"{"username":"u","accessToken":"t"}"#);
    let msg = t
        .call(
            "CreatePullThroughCacheRule",
            create(
                "hub",
                "registry-1.docker.io",
                json!({"credentialArn": arn(OTHER, "hub")}),
            ),
        )
        .await
        .err(StatusCode::BAD_REQUEST, "UnableToAccessSecretException");
    assert!(msg.contains("another account"), "{msg}");
    assert!(!msg.contains("\"t\""));
    // Nothing of the refused calls was stored.
    let all = t.call("DescribePullThroughCacheRules", json!({})).await.ok();
    assert_eq!(all["pullThroughCacheRules"].as_array().unwrap().len(), 1, "{all}");
}

#[tokio::test]
async fn the_rule_quota_is_fifty_per_registry() {
    let t = T::new().await;
    for i in 0..50 {
        t.call(
            "CreatePullThroughCacheRule",
            json!({"ecrRepositoryPrefix": format!("q{i:02}"), "upstreamRegistryUrl": "quay.io"}),
        )
        .await
        .ok();
    }
    let msg = t
        .call(
            "CreatePullThroughCacheRule",
            json!({"ecrRepositoryPrefix": "q50", "upstreamRegistryUrl": "quay.io"}),
        )
        .await
        .err(StatusCode::BAD_REQUEST, "LimitExceededException");
    assert!(msg.contains("50"), "{msg}");
    // Paging walks all fifty.
    let mut seen = 0;
    let mut token: Option<String> = None;
    loop {
        let mut input = json!({"maxResults": 7});
        if let Some(t) = &token {
            input["nextToken"] = json!(t);
        }
        let page = t.call("DescribePullThroughCacheRules", input).await.ok();
        seen += page["pullThroughCacheRules"].as_array().unwrap().len();
        match page["nextToken"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, 50);
    // Another registry has its own quota.
    t.s.ecr
        .pull_through()
        .store()
        .ptc_rule_create(
            &kura_store::ptc_rules::PtcRuleRow {
                account: OTHER.into(),
                prefix: "q".into(),
                upstream_url: "quay.io".into(),
                upstream_registry: Some("quay".into()),
                credential_arn: None,
                custom_role_arn: None,
                upstream_prefix: None,
                created_at: 1,
                updated_at: 1,
            },
            50,
        )
        .await
        .unwrap();
}

/// Serve a Kura (the upstream) on 127.0.0.1 with one image `team/app:v1`;
/// its address and the image's digest.
async fn upstream_kura() -> (common::Server, std::net::SocketAddr, String) {
    let up = common::server().await;
    let id = up.store.repo_get_or_create(ACCOUNT, "team/app").await.unwrap();
    let body = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": kura_oci::Digest::sha256(b"{}").to_string(), "size": 2},
        "layers": []})
    .to_string()
    .into_bytes();
    let digest = kura_oci::Digest::sha256(&body).to_string();
    up.store
        .manifest_put(
            id,
            &NewManifest {
                digest: digest.clone(),
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                artifact_type: None,
                subject: None,
                annotations: None,
                body,
                blobs: vec![],
                children: vec![],
            },
            &[TagWrite {
                name: "v1".into(),
                immutable: false,
            }],
        )
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = up.app.clone();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (up, addr, digest)
}

#[tokio::test]
async fn another_kura_is_an_ecr_upstream_and_validation_really_contacts_it() {
    let t = T::new().await;
    let (_up, addr, digest) = upstream_kura().await;
    let secret = arn(ACCOUNT, "kura");
    t.secrets.put(
        ACCOUNT,
        &secret,
        &json!({"username": KEY_ID, "accessToken": SECRET}).to_string(),
    );
    let out = t
        .call(
            "CreatePullThroughCacheRule",
            json!({"ecrRepositoryPrefix": "kura", "upstreamRegistryUrl": format!("http://{addr}"),
                   "upstreamRegistry": "ecr", "credentialArn": secret}),
        )
        .await
        .ok();
    assert_eq!(out["upstreamRegistry"], "ecr");
    let v = t
        .call("ValidatePullThroughCacheRule", json!({"ecrRepositoryPrefix": "kura"}))
        .await
        .ok();
    assert_eq!(v["isValid"], true, "{v}");
    assert!(v.get("failure").is_none());
    assert_eq!(v["upstreamRegistryUrl"], format!("http://{addr}"));
    assert_eq!(v["credentialArn"], secret);

    // The registry's source hands out the upstream repository, which pulls
    // through ECR's token exchange.
    let name: kura_oci::RepoName = "kura/team/app".parse().unwrap();
    let up =
        t.s.ecr
            .pull_through()
            .upstream_for(ACCOUNT, &name)
            .await
            .unwrap()
            .unwrap();
    assert_eq!(up.describe(), format!("{addr}/team/app"));
    let m = up.get_manifest("v1").await.unwrap().unwrap();
    assert_eq!(m.digest, digest);
    assert_eq!(up.head_manifest(&digest).await.unwrap().unwrap().digest, digest);
    assert!(up.get_manifest("v2").await.unwrap().is_none());

    // A wrong secret key: not valid, and the failure says why (never the key).
    t.secrets.put(
        ACCOUNT,
        &secret,
        &json!({"username": KEY_ID, "accessToken": "wrong-secret-key"}).to_string(),
    );
    let v = t
        .call("ValidatePullThroughCacheRule", json!({"ecrRepositoryPrefix": "kura"}))
        .await
        .ok();
    assert_eq!(v["isValid"], false, "{v}");
    let failure = v["failure"].as_str().unwrap();
    assert!(failure.contains("GetAuthorizationToken"), "{failure}");
    assert!(!failure.contains("wrong-secret-key"), "{failure}");
    // A secret that is not {"username","accessToken"}.
    t.secrets.put(ACCOUNT, &secret, r#"{"user":"x"}"#);
    let v = t
        .call("ValidatePullThroughCacheRule", json!({"ecrRepositoryPrefix": "kura"}))
        .await
        .ok();
    assert_eq!(v["isValid"], false, "{v}");
    // A deleted secret.
    t.secrets.delete(ACCOUNT, &secret);
    let v = t
        .call("ValidatePullThroughCacheRule", json!({"ecrRepositoryPrefix": "kura"}))
        .await
        .ok();
    assert_eq!(v["isValid"], false, "{v}");
    assert!(v["failure"].as_str().unwrap().contains("not found"), "{v}");
    // An upstream nobody answers.
    t.call(
        "CreatePullThroughCacheRule",
        json!({"ecrRepositoryPrefix": "dead", "upstreamRegistryUrl": "http://127.0.0.1:9"}),
    )
    .await
    .ok();
    let v = t
        .call("ValidatePullThroughCacheRule", json!({"ecrRepositoryPrefix": "dead"}))
        .await
        .ok();
    assert_eq!(v["isValid"], false, "{v}");
    assert!(v["failure"].as_str().unwrap().contains("127.0.0.1:9"), "{v}");
}

#[tokio::test]
async fn another_accounts_rules_are_neither_seen_nor_changed() {
    let t = T::new().await;
    t.call(
        "CreatePullThroughCacheRule",
        json!({"ecrRepositoryPrefix": "hub", "upstreamRegistryUrl": "quay.io"}),
    )
    .await
    .ok();
    // The root key of ACCOUNT addressing OTHER's registry is refused (no
    // registry policy there), for every operation.
    for (op, input) in [
        ("DescribePullThroughCacheRules", json!({"registryId": OTHER})),
        (
            "CreatePullThroughCacheRule",
            json!({"registryId": OTHER, "ecrRepositoryPrefix": "xx", "upstreamRegistryUrl": "quay.io"}),
        ),
        (
            "DeletePullThroughCacheRule",
            json!({"registryId": OTHER, "ecrRepositoryPrefix": "hub"}),
        ),
        (
            "ValidatePullThroughCacheRule",
            json!({"registryId": OTHER, "ecrRepositoryPrefix": "hub"}),
        ),
    ] {
        let r = t.call(op, input).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{op}: {}", r.body);
    }
    // OTHER's own view (through the store the operations use) is empty, and
    // the source finds no rule for OTHER's names.
    let ptc = t.s.ecr.pull_through();
    assert!(ptc.store().ptc_rule_list(OTHER, None, 100).await.unwrap().is_empty());
    let name: kura_oci::RepoName = "hub/nginx".parse().unwrap();
    assert!(ptc.upstream_for(OTHER, &name).await.unwrap().is_none());
    assert!(ptc.upstream_for(ACCOUNT, &name).await.unwrap().is_some());
    // Prefix confusion.
    let name: kura_oci::RepoName = "hubx/nginx".parse().unwrap();
    assert!(ptc.upstream_for(ACCOUNT, &name).await.unwrap().is_none());
    // The rule is still there and unchanged.
    let all = t.call("DescribePullThroughCacheRules", json!({})).await.ok();
    assert_eq!(all["pullThroughCacheRules"][0]["ecrRepositoryPrefix"], "hub");
    // A rule deleted through the API stops covering names on this node at once.
    t.call("DeletePullThroughCacheRule", json!({"ecrRepositoryPrefix": "hub"}))
        .await
        .ok();
    let name: kura_oci::RepoName = "hub/nginx".parse().unwrap();
    assert!(ptc.upstream_for(ACCOUNT, &name).await.unwrap().is_none());
}
