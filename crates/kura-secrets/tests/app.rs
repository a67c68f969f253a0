//! Secrets Manager through the whole application (`kura_ecr::app_with`, `oneshot`), as
//! `kura serve` assembles it: SigV4 for service `secretsmanager`, the model's validation,
//! IAM authorization on the secret's ARN, the audit trail. Attack tests: malformed and
//! oversized input, another account's secret by ARN and by name, a principal without
//! permission or with a policy for other secrets, a deleted access key, a signature for
//! another service; the secret value never reaches an audit record.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{HeaderMap, Request};
use http_body_util::BodyExt;
use kura_auth::seal::MasterKey;
use kura_aws::{CallRecord, CallRecorder};
use kura_ecr::auth::{bootstrap, create_account, BootstrapEnv};
use kura_ecr::{Ecr, EcrConfig};
use kura_registry::{Registry, RegistryConfig};
use kura_secrets::service::SecretsService;
use kura_secrets::Secrets;
use kura_store::FsBlobStore;
use serde_json::{json, Value};
use tower::ServiceExt;

const ACCOUNT: &str = "123456789012";
const KEY_ID: &str = "AKIAKURATESTROOTKEY1";
const SECRET: &str = "kuraTestSecretKey/0123456789abcdefghijKLM";
const REGION: &str = "us-east-1";
const ROOT: (&str, &str) = (KEY_ID, SECRET);
const VALUE: &str = r#"{"username":"kura","accessToken":"VALUE-MUST-NOT-LEAK-7f3a9c"}"#;
const MARK: &str = "VALUE-MUST-NOT-LEAK-7f3a9c";

/// The CloudTrail records of every call, as kura-audit renders them.
#[derive(Default)]
struct Trail(Mutex<Vec<String>>);

#[async_trait]
impl CallRecorder for Trail {
    async fn record(&self, call: CallRecord) {
        let row = kura_audit::record::build(&call, false, ACCOUNT);
        self.0.lock().unwrap().push(row.record);
    }
}

struct App {
    app: axum::Router,
    trail: Arc<Trail>,
    meta: Arc<kura_store::SqlMetaStore>,
    master: MasterKey,
    _dir: tempfile::TempDir,
}

async fn app() -> App {
    let dir = tempfile::tempdir().unwrap();
    let meta = Arc::new(kura_store::testdb::from_env_or_sqlite(dir.path().join("meta.db")).await);
    let blobs = FsBlobStore::open(dir.path().join("blobs")).await.unwrap();
    let master = MasterKey::load_or_create(&dir.path().join("master.key")).unwrap();
    let env = BootstrapEnv {
        account_id: Some(ACCOUNT.into()),
        root_access_key_id: Some(KEY_ID.into()),
        root_secret_access_key: Some(SECRET.into()),
    };
    let boot = bootstrap(meta.as_ref(), &master, &env).await.unwrap();
    let config = RegistryConfig {
        default_account: boot.default_account.clone(),
        ..RegistryConfig::default()
    };
    let registry = Arc::new(Registry::new(meta.clone(), Arc::new(blobs), config));
    let secrets = Secrets::new(meta.clone(), master.clone(), REGION);
    let ecr = Arc::new(Ecr::new(
        kura_ecr::Stores::all(meta.clone()),
        registry.clone(),
        master.clone(),
        boot.token_key,
        EcrConfig::new(REGION, &boot.default_account),
        kura_ecr::scanning::ScanSettings::default(),
    ));
    let trail = Arc::new(Trail::default());
    let options = kura_ecr::AppOptions {
        services: vec![Arc::new(SecretsService::new(secrets, ecr.authz().clone()))],
        recorder: Some(trail.clone()),
        ..Default::default()
    };
    App {
        app: kura_ecr::app_with(ecr, registry, options),
        trail,
        meta,
        master,
        _dir: dir,
    }
}

fn amz_date(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string().replace(['-', ':'], "")
}

fn signed(target: Option<&str>, content_type: &str, body: Vec<u8>, key: (&str, &str), service: &str) -> Request<Body> {
    use sha2::Digest as _;
    let mut headers = HeaderMap::new();
    headers.insert("host", "kura.test".parse().unwrap());
    headers.insert("content-type", content_type.parse().unwrap());
    if let Some(t) = target {
        headers.insert("x-amz-target", t.parse().unwrap());
    }
    headers.insert("x-amz-date", amz_date(SystemTime::now()).parse().unwrap());
    let payload = hex::encode(sha2::Sha256::digest(&body));
    let auth = kura_auth::sigv4::sign(
        &kura_auth::sigv4::RequestParts {
            method: "POST",
            path: "/",
            query: None,
            headers: &headers,
            payload_sha256: &payload,
        },
        key.0,
        key.1,
        REGION,
        service,
    )
    .unwrap();
    headers.insert("authorization", auth.parse().unwrap());
    let mut req = Request::builder().method("POST").uri("/");
    for (k, v) in &headers {
        req = req.header(k, v);
    }
    req.body(Body::from(body)).unwrap()
}

async fn send(app: &axum::Router, req: Request<Body>) -> (u16, Value) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or_else(|_| json!({"raw": String::from_utf8_lossy(&bytes)})),
    )
}

fn sm_req(op: &str, body: Vec<u8>, key: (&str, &str)) -> Request<Body> {
    signed(
        Some(&format!("secretsmanager.{op}")),
        "application/x-amz-json-1.1",
        body,
        key,
        "secretsmanager",
    )
}

async fn sm(app: &App, op: &str, input: Value, key: (&str, &str)) -> (u16, Value) {
    send(&app.app, sm_req(op, serde_json::to_vec(&input).unwrap(), key)).await
}

async fn iam(app: &App, form: &str) -> String {
    let req = signed(
        None,
        "application/x-www-form-urlencoded",
        format!("{form}&Version=2010-05-08").into_bytes(),
        ROOT,
        "iam",
    );
    let resp = app.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200, "{form}");
    String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

fn between(xml: &str, tag: &str) -> String {
    let start = xml.find(&format!("<{tag}>")).unwrap() + tag.len() + 2;
    let end = xml[start..].find(&format!("</{tag}>")).unwrap() + start;
    xml[start..end].to_string()
}

/// A user with an access key; returns (key id, secret).
async fn user(app: &App, name: &str) -> (String, String) {
    iam(app, &format!("Action=CreateUser&UserName={name}")).await;
    let xml = iam(app, &format!("Action=CreateAccessKey&UserName={name}")).await;
    (between(&xml, "AccessKeyId"), between(&xml, "SecretAccessKey"))
}

async fn put_policy(app: &App, user: &str, policy: Value) {
    let form = format!(
        "Action=PutUserPolicy&UserName={user}&PolicyName=p&PolicyDocument={}",
        percent_encoding::utf8_percent_encode(&policy.to_string(), percent_encoding::NON_ALPHANUMERIC)
    );
    iam(app, &form).await;
}

/// The operations through the pipeline, in Secrets Manager's shapes; errors carry `__type`
/// and `X-Amzn-ErrorType`; an operation of the model Kura does not serve is refused.
#[tokio::test]
async fn operations_through_the_pipeline() {
    let a = app().await;
    let (s, out) = sm(
        &a,
        "CreateSecret",
        json!({"Name": "ecr-pullthroughcache/hub", "SecretString": VALUE}),
        ROOT,
    )
    .await;
    assert_eq!(s, 200, "{out}");
    let arn = out["ARN"].as_str().unwrap().to_string();
    assert!(arn.starts_with(&format!(
        "arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:ecr-pullthroughcache/hub-"
    )));
    let (s, out) = sm(&a, "GetSecretValue", json!({"SecretId": arn}), ROOT).await;
    assert_eq!((s, out["SecretString"].as_str()), (200, Some(VALUE)), "{out}");
    let (s, out) = sm(&a, "DescribeSecret", json!({"SecretId": "nope"}), ROOT).await;
    assert_eq!(
        (s, out["__type"].as_str()),
        (400, Some("ResourceNotFoundException")),
        "{out}"
    );
    let (s, out) = sm(&a, "RotateSecret", json!({"SecretId": arn}), ROOT).await;
    assert_eq!(
        (s, out["__type"].as_str()),
        (400, Some("UnsupportedOperationException")),
        "{out}"
    );
    let (s, out) = sm(&a, "NoSuchOperation", json!({}), ROOT).await;
    assert_eq!(s, 400, "{out}");
    let (s, out) = sm(&a, "ListSecrets", json!({}), ROOT).await;
    assert_eq!((s, out["SecretList"].as_array().map(Vec::len)), (200, Some(1)), "{out}");
    let (s, out) = sm(
        &a,
        "DeleteSecret",
        json!({"SecretId": arn, "ForceDeleteWithoutRecovery": true}),
        ROOT,
    )
    .await;
    assert_eq!(s, 200, "{out}");
}

/// Malformed, invalid and oversized input: Secrets Manager's errors, never a 500.
#[tokio::test]
async fn malformed_and_oversized_input() {
    let a = app().await;
    let cases = [
        // Over the model's 65536 characters.
        json!({"Name": "big", "SecretString": "x".repeat(65537)}),
        // Over 65536 bytes once decoded.
        json!({"Name": "big", "SecretBinary": base64_of(&vec![7u8; 65537])}),
        json!({"Name": "big", "SecretBinary": "not base64!"}),
        json!({"Name": "n".repeat(513)}),
        json!({"Name": ""}),
        json!({"Name": "x", "Bogus": 1}),
        json!({"Name": 5}),
        json!({"Name": "x", "ClientRequestToken": "short"}),
        json!({"Name": "x", "Tags": [{"Key": "", "Value": "v"}]}),
        json!({}),
    ];
    for input in cases {
        let (s, out) = sm(&a, "CreateSecret", input.clone(), ROOT).await;
        assert_eq!(s, 400, "{out}");
        let kind = out["__type"].as_str().unwrap_or_default();
        assert!(
            ["InvalidParameterException", "SerializationException"].contains(&kind),
            "{kind} for {}",
            &input.to_string()[..input.to_string().len().min(80)]
        );
    }
    for body in [b"{not json".to_vec(), b"[]".to_vec(), Vec::new(), vec![0xff, 0xfe]] {
        let (s, out) = send(&a.app, sm_req("CreateSecret", body, ROOT)).await;
        assert_eq!(s, 400, "{out}");
    }
    let (s, out) = sm(&a, "ListSecrets", json!({"MaxResults": 0}), ROOT).await;
    assert_eq!(s, 400, "{out}");
    let (s, out) = sm(
        &a,
        "ListSecrets",
        json!({"Filters": [{"Key": "bogus", "Values": ["a"]}]}),
        ROOT,
    )
    .await;
    assert_eq!(s, 400, "{out}");
    let (s, out) = sm(&a, "GetSecretValue", json!({"SecretId": "x".repeat(2049)}), ROOT).await;
    assert_eq!(s, 400, "{out}");
    // Nothing was created.
    let (_, out) = sm(&a, "ListSecrets", json!({}), ROOT).await;
    assert_eq!(out["SecretList"], json!([]));
}

fn base64_of(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// IAM decides every call on the secret's ARN: no policy, no access; a policy on
/// `secret:ecr-pullthroughcache/*` reads those secrets only; a Deny wins.
#[tokio::test]
async fn iam_authorizes_each_call_on_the_secret_arn() {
    let a = app().await;
    for name in ["ecr-pullthroughcache/hub", "prod/db"] {
        let (s, out) = sm(&a, "CreateSecret", json!({"Name": name, "SecretString": VALUE}), ROOT).await;
        assert_eq!(s, 200, "{out}");
    }
    let (kid, ksecret) = user(&a, "alice").await;
    let alice = (kid.as_str(), ksecret.as_str());
    let (s, out) = sm(
        &a,
        "GetSecretValue",
        json!({"SecretId": "ecr-pullthroughcache/hub"}),
        alice,
    )
    .await;
    assert_eq!(
        (s, out["__type"].as_str()),
        (403, Some("AccessDeniedException")),
        "{out}"
    );
    let (s, _) = sm(&a, "ListSecrets", json!({}), alice).await;
    assert_eq!(s, 403);
    // Not found is not told apart from denied for a principal without access.
    let (s, _) = sm(&a, "GetSecretValue", json!({"SecretId": "missing"}), alice).await;
    assert_eq!(s, 403);

    put_policy(
        &a,
        "alice",
        json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
             "Resource": format!("arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:ecr-pullthroughcache/*")},
            {"Effect": "Allow", "Action": "secretsmanager:CreateSecret",
             "Resource": format!("arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:team/*-??????")},
            {"Effect": "Deny", "Action": "secretsmanager:GetSecretValue",
             "Resource": format!("arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:ecr-pullthroughcache/denied-*")}]}),
    )
    .await;
    let (s, out) = sm(
        &a,
        "GetSecretValue",
        json!({"SecretId": "ecr-pullthroughcache/hub"}),
        alice,
    )
    .await;
    assert_eq!((s, out["SecretString"].as_str()), (200, Some(VALUE)), "{out}");
    let (s, _) = sm(&a, "GetSecretValue", json!({"SecretId": "prod/db"}), alice).await;
    assert_eq!(s, 403);
    let (s, _) = sm(
        &a,
        "PutSecretValue",
        json!({"SecretId": "ecr-pullthroughcache/hub", "SecretString": "x"}),
        alice,
    )
    .await;
    assert_eq!(s, 403);
    let (s, _) = sm(
        &a,
        "DeleteSecret",
        json!({"SecretId": "ecr-pullthroughcache/hub"}),
        alice,
    )
    .await;
    assert_eq!(s, 403);
    // CreateSecret is authorized on the new secret's ARN, suffix included.
    let (s, out) = sm(
        &a,
        "CreateSecret",
        json!({"Name": "team/one", "SecretString": "v"}),
        alice,
    )
    .await;
    assert_eq!(s, 200, "{out}");
    let (s, _) = sm(
        &a,
        "CreateSecret",
        json!({"Name": "other/one", "SecretString": "v"}),
        alice,
    )
    .await;
    assert_eq!(s, 403);
    // Tags need secretsmanager:TagResource too.
    let (s, _) = sm(
        &a,
        "CreateSecret",
        json!({"Name": "team/two", "SecretString": "v", "Tags": [{"Key": "k", "Value": "v"}]}),
        alice,
    )
    .await;
    assert_eq!(s, 403);
    // An explicit Deny wins over the Allow.
    let (s, _) = sm(
        &a,
        "CreateSecret",
        json!({"Name": "ecr-pullthroughcache/denied-x", "SecretString": "v"}),
        ROOT,
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = sm(
        &a,
        "GetSecretValue",
        json!({"SecretId": "ecr-pullthroughcache/denied-x"}),
        alice,
    )
    .await;
    assert_eq!(s, 403);
}

/// Account B's root: A's secret by full ARN is denied (no cross-account access), by partial
/// ARN too, by name it does not exist; B's list is empty. A deleted access key is refused,
/// and so is a signature for another service.
#[tokio::test]
async fn cross_account_and_stale_credentials() {
    let a = app().await;
    let (_, out) = sm(
        &a,
        "CreateSecret",
        json!({"Name": "ecr-pullthroughcache/hub", "SecretString": VALUE}),
        ROOT,
    )
    .await;
    let arn = out["ARN"].as_str().unwrap().to_string();
    let (b_account, b_key, b_secret) = create_account(a.meta.as_ref(), &a.master, Some("210987654321"))
        .await
        .unwrap();
    assert_eq!(b_account, "210987654321");
    let b = (b_key.as_str(), b_secret.as_str());
    let partial = format!("arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:ecr-pullthroughcache/hub");
    for id in [arn.as_str(), partial.as_str()] {
        for op in ["GetSecretValue", "DescribeSecret", "DeleteSecret", "UpdateSecret"] {
            let (s, out) = sm(&a, op, json!({"SecretId": id}), b).await;
            assert_eq!(
                (s, out["__type"].as_str()),
                (403, Some("AccessDeniedException")),
                "{op} {out}"
            );
            assert!(!out.to_string().contains(MARK));
        }
    }
    let (s, out) = sm(&a, "GetSecretValue", json!({"SecretId": "ecr-pullthroughcache/hub"}), b).await;
    assert_eq!(
        (s, out["__type"].as_str()),
        (400, Some("ResourceNotFoundException")),
        "{out}"
    );
    let (s, out) = sm(&a, "ListSecrets", json!({}), b).await;
    assert_eq!((s, out["SecretList"].clone()), (200, json!([])), "{out}");
    // A's secret is untouched.
    let (s, out) = sm(&a, "GetSecretValue", json!({"SecretId": arn}), ROOT).await;
    assert_eq!((s, out["SecretString"].as_str()), (200, Some(VALUE)));

    // A user's deleted key no longer works, even with a policy that allowed it.
    let (kid, ksecret) = user(&a, "bob").await;
    put_policy(
        &a,
        "bob",
        json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "secretsmanager:*", "Resource": "*"}]}),
    )
    .await;
    let bob = (kid.as_str(), ksecret.as_str());
    let (s, _) = sm(&a, "GetSecretValue", json!({"SecretId": arn}), bob).await;
    assert_eq!(s, 200);
    iam(&a, &format!("Action=DeleteAccessKey&UserName=bob&AccessKeyId={kid}")).await;
    let (s, out) = sm(&a, "GetSecretValue", json!({"SecretId": arn}), bob).await;
    assert!(s == 400 || s == 403, "{s} {out}");
    assert!(!out.to_string().contains(MARK));
    let (s, out) = sm(
        &a,
        "GetSecretValue",
        json!({"SecretId": arn}),
        (KEY_ID, "wrong-secret-wrong-secret-wrong-secret00"),
    )
    .await;
    assert!((s == 400 || s == 403) && out["__type"].is_string(), "{s} {out}");
    let req = signed(
        Some("secretsmanager.GetSecretValue"),
        "application/x-amz-json-1.1",
        serde_json::to_vec(&json!({"SecretId": arn})).unwrap(),
        ROOT,
        "ecr",
    );
    let (s, out) = send(&a.app, req).await;
    assert!(s == 400 || s == 403, "{s} {out}");
    assert!(!out.to_string().contains(MARK));
}

/// Every call is recorded, and no record holds a secret's value: not the request's
/// SecretString or SecretBinary (hidden), not a read's answer, not a failed call's.
#[tokio::test]
async fn audit_records_never_hold_the_value() {
    let a = app().await;
    let bin = base64_of(MARK.as_bytes());
    let calls = [
        ("CreateSecret", json!({"Name": "s", "SecretString": VALUE})),
        ("CreateSecret", json!({"Name": "b", "SecretBinary": bin})),
        ("GetSecretValue", json!({"SecretId": "s"})),
        ("GetSecretValue", json!({"SecretId": "b"})),
        ("PutSecretValue", json!({"SecretId": "s", "SecretString": VALUE})),
        (
            "UpdateSecret",
            json!({"SecretId": "s", "SecretString": format!("{VALUE}!")}),
        ),
        ("PutSecretValue", json!({"SecretId": "missing", "SecretString": VALUE})),
        ("CreateSecret", json!({"Name": "bad name", "SecretString": VALUE})),
        ("ListSecrets", json!({})),
        ("DescribeSecret", json!({"SecretId": "s"})),
    ];
    for (op, input) in calls {
        sm(&a, op, input, ROOT).await;
    }
    let records = a.trail.0.lock().unwrap().clone();
    assert_eq!(records.len(), 10);
    let mut hidden = 0;
    for r in &records {
        assert!(!r.contains(MARK), "a record holds the value: {r}");
        assert!(!r.contains(&bin), "a record holds the binary value: {r}");
        let v: Value = serde_json::from_str(r).unwrap();
        assert_eq!(v["eventSource"], "secretsmanager.amazonaws.com");
        for key in ["SecretString", "SecretBinary"] {
            if let Some(x) = v["requestParameters"].get(key) {
                assert_eq!(x, "HIDDEN_DUE_TO_SECURITY_REASONS");
                hidden += 1;
            }
        }
    }
    assert_eq!(hidden, 6);
    let create: Value = serde_json::from_str(&records[0]).unwrap();
    assert_eq!(create["requestParameters"]["Name"], "s");
    assert_eq!(create["readOnly"], false);
    assert!(
        create["resources"][0]["ARN"].as_str().unwrap().contains(":secret:s"),
        "{create}"
    );
    let get: Value = serde_json::from_str(&records[2]).unwrap();
    assert_eq!(
        (get["eventName"].as_str(), get["readOnly"].as_bool()),
        (Some("GetSecretValue"), Some(true))
    );
}
