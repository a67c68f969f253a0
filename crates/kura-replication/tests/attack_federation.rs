//! The federation routes under attack: missing, forged, expired, replayed
//! and misdirected tokens; confusion between accounts and repositories;
//! malformed and oversized input. Every refusal is JSON `{code, message}`
//! and leaves the destination unchanged.

mod common;

use common::*;
use kura_replication::federation::{now_secs, SCHEME};
use serde_json::{json, Value};

const US: &str = "us-east-1";
const EU: &str = "eu-west-1";

struct Call {
    client: reqwest::Client,
    base: String,
}

impl Call {
    fn new(eu: &Deployment) -> Call {
        Call {
            client: reqwest::Client::new(),
            base: format!("{}/kura/federation/v1", eu.url),
        }
    }

    fn token(&self, key: u8, src: (&str, &str), dst: (&str, &str, &str), at: u64) -> String {
        format!("{SCHEME} {}", common::key(key).issue(src, dst, at))
    }

    async fn prepare(&self, auth: Option<String>, account: &str, repo: &str) -> (u16, Value) {
        let mut req = self
            .client
            .post(format!("{}/prepare", self.base))
            .json(&json!({"account": account, "repository": repo}));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn tokens_must_be_ours_fresh_and_for_this_exact_target() {
    let eu = Deployment::start(EU, Some(key(1)), peers(&[])).await;
    let c = Call::new(&eu);
    let now = now_secs();
    // Without a token.
    let (s, v) = c.prepare(None, A, "prod/api").await;
    assert_eq!((s, v["code"].as_str()), (401, Some("FEDERATION_AUTHENTICATION_FAILED")));
    // Another scheme (a registry password) is not a federation token.
    let (s, _) = c.prepare(Some("Basic QVdTOnBhc3M=".into()), A, "prod/api").await;
    assert_eq!(s, 401);
    // Signed with another federation's key.
    let (s, v) = c
        .prepare(Some(c.token(2, (US, A), (EU, A, "prod/api"), now)), A, "prod/api")
        .await;
    assert_eq!(s, 401, "{v}");
    // Expired, and issued too far in the future.
    let (s, _) = c
        .prepare(
            Some(c.token(1, (US, A), (EU, A, "prod/api"), now - 3600)),
            A,
            "prod/api",
        )
        .await;
    assert_eq!(s, 401);
    let (s, _) = c
        .prepare(
            Some(c.token(1, (US, A), (EU, A, "prod/api"), now + 3600)),
            A,
            "prod/api",
        )
        .await;
    assert_eq!(s, 401);
    // Issued for another region.
    let (s, _) = c
        .prepare(
            Some(c.token(1, (US, A), ("ap-south-1", A, "prod/api"), now)),
            A,
            "prod/api",
        )
        .await;
    assert_eq!(s, 401);
    // Issued for another repository, or another account, than the request names.
    let (s, v) = c
        .prepare(Some(c.token(1, (US, A), (EU, A, "prod/other"), now)), A, "prod/api")
        .await;
    assert_eq!(s, 401);
    assert!(v["message"].as_str().unwrap().contains("prod/other"), "{v}");
    let (s, _) = c
        .prepare(Some(c.token(1, (US, A), (EU, A, "prod/api"), now)), B, "prod/api")
        .await;
    assert_eq!(s, 401);
    assert!(eu.repo_id(A, "prod/api").await.is_none() && eu.repo_id(B, "prod/api").await.is_none());
    // The right token works (same account: no policy needed).
    let (s, v) = c
        .prepare(Some(c.token(1, (US, A), (EU, A, "prod/api"), now)), A, "prod/api")
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(eu.repo_id(A, "prod/api").await.is_some());
    // An edited token (its account swapped) fails its signature.
    let t = common::key(1).issue((US, A), (EU, A, "prod/api"), now);
    let (body, sig) = t.split_once('.').unwrap();
    use base64::Engine as _;
    let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: Value = serde_json::from_slice(&e.decode(body).unwrap()).unwrap();
    claims["da"] = json!(B);
    let forged = format!("{SCHEME} {}.{sig}", e.encode(claims.to_string()));
    let (s, _) = c.prepare(Some(forged), B, "prod/api").await;
    assert_eq!(s, 401);
    assert!(eu.repo_id(B, "prod/api").await.is_none());
    eu.stop().await;
}

#[tokio::test]
async fn a_deployment_without_a_federation_key_refuses_everything() {
    let eu = Deployment::start(EU, None, peers(&[])).await;
    let c = Call::new(&eu);
    let (s, v) = c
        .prepare(Some(c.token(1, (US, A), (EU, A, "x/y"), now_secs())), A, "x/y")
        .await;
    assert_eq!(s, 401);
    assert!(v["message"].as_str().unwrap().contains("federation key"), "{v}");
    eu.stop().await;
}

#[tokio::test]
async fn the_destination_accounts_policy_governs_every_route() {
    let eu = Deployment::start(EU, Some(key(1)), peers(&[])).await;
    // B allows A only; C holds a valid federation token but no grant.
    eu.allow_replication_from(B, A).await;
    let c = Call::new(&eu);
    let now = now_secs();
    let third = "333333333333";
    let (s, v) = c
        .prepare(Some(c.token(1, (US, third), (EU, B, "team/app"), now)), B, "team/app")
        .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (403, Some("REPLICATION_PERMISSION_DENIED")),
        "{v}"
    );
    assert!(eu.repo_id(B, "team/app").await.is_none());
    // A may: the repository appears.
    let (s, _) = c
        .prepare(Some(c.token(1, (US, A), (EU, B, "team/app"), now)), B, "team/app")
        .await;
    assert_eq!(s, 200);
    // Now that it exists, C still may not upload or push into it.
    let resp = c
        .client
        .post(format!("{}/uploads", c.base))
        .header("authorization", c.token(1, (US, third), (EU, B, "team/app"), now))
        .json(&json!({"account": B, "repository": "team/app"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let resp = c
        .client
        .put(format!(
            "{}/manifests?account={B}&repository=team/app&digest=sha256:{}&tag=v1",
            c.base,
            "0".repeat(64)
        ))
        .header("authorization", c.token(1, (US, third), (EU, B, "team/app"), now))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let resp = c
        .client
        .post(format!("{}/blobs/missing", c.base))
        .header("authorization", c.token(1, (US, third), (EU, B, "team/app"), now))
        .json(&json!({"account": B, "repository": "team/app", "digests": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    eu.stop().await;
}

#[tokio::test]
async fn malformed_and_oversized_input_is_a_clear_400() {
    let eu = Deployment::start(EU, Some(key(1)), peers(&[])).await;
    let c = Call::new(&eu);
    let now = now_secs();
    let auth = || c.token(1, (US, A), (EU, A, "app"), now);
    // Not JSON; JSON over the 1 MiB limit.
    for body in [b"not json".to_vec(), vec![b' '; 2 << 20]] {
        let resp = c
            .client
            .post(format!("{}/prepare", c.base))
            .header("authorization", auth())
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 400);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["code"], "INVALID_REQUEST");
    }
    // A parameter given twice (which account would it be?).
    let resp = c
        .client
        .get(format!("{}/uploads/x?account={A}&account={B}&repository=app", c.base))
        .header("authorization", auth())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    // An invalid repository name, signed as such.
    let (s, v) = c
        .prepare(Some(c.token(1, (US, A), (EU, A, "../etc"), now)), A, "../etc")
        .await;
    assert_eq!(s, 400, "{v}");
    // Too many digests in one request.
    let many: Vec<String> = (0..1001).map(|i| format!("sha256:{i:064}")).collect();
    let resp = c
        .client
        .post(format!("{}/blobs/missing", c.base))
        .header("authorization", auth())
        .json(&json!({"account": A, "repository": "app", "digests": many}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    // A manifest over the size limit, and one that is not a manifest.
    let (s, _) = c.prepare(Some(auth()), A, "app").await;
    assert_eq!(s, 200);
    for body in [vec![b' '; 5 << 20], b"[1,2]".to_vec()] {
        let resp = c
            .client
            .put(format!(
                "{}/manifests?account={A}&repository=app&digest=sha256:{}",
                c.base,
                "1".repeat(64)
            ))
            .header("authorization", auth())
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 400);
    }
    // An upload session that does not exist.
    let resp = c
        .client
        .get(format!("{}/uploads/nope?account={A}&repository=app", c.base))
        .header("authorization", auth())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["code"], "UPLOAD_UNKNOWN");
    // A blob whose bytes do not match the digest it is finished as.
    let resp = c
        .client
        .post(format!("{}/uploads", c.base))
        .header("authorization", auth())
        .json(&json!({"account": A, "repository": "app"}))
        .send()
        .await
        .unwrap();
    let id = resp.json::<Value>().await.unwrap()["uploadId"]
        .as_str()
        .unwrap()
        .to_string();
    let resp = c
        .client
        .patch(format!("{}/uploads/{id}?account={A}&repository=app&offset=0", c.base))
        .header("authorization", auth())
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let resp = c
        .client
        .put(format!(
            "{}/uploads/{id}?account={A}&repository=app&digest=sha256:{}",
            c.base,
            "2".repeat(64)
        ))
        .header("authorization", auth())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let repo = eu.repo_id(A, "app").await.unwrap();
    use kura_store::MetaStore;
    assert!(eu
        .store
        .blob_get(repo, &format!("sha256:{}", "2".repeat(64)))
        .await
        .unwrap()
        .is_none());
    eu.stop().await;
}
