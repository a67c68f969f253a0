//! EventBridge through the whole application (`kura_ecr::app_with`, `oneshot`), as `kura serve`
//! assembles it: SigV4 for service `events`, the model's validation, IAM authorization, and
//! EventBridge's error shapes. Attack tests: malformed and oversized input, another account's
//! names, a principal without `events:PutRule`, a signature for the wrong service.

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use axum::http::{HeaderMap, Request};
use http_body_util::BodyExt;
use kura_auth::seal::MasterKey;
use kura_ecr::auth::{bootstrap, BootstrapEnv};
use kura_ecr::{Ecr, EcrConfig};
use kura_events::service::EventsService;
use kura_events::Events;
use kura_registry::{Registry, RegistryConfig};
use kura_store::FsBlobStore;
use serde_json::{json, Value};
use tower::ServiceExt;

const ACCOUNT: &str = "123456789012";
const KEY_ID: &str = "AKIAKURATESTROOTKEY1";
const SECRET: &str = "kuraTestSecretKey/0123456789abcdefghijKLM";
const REGION: &str = "us-east-1";
const PATTERN: &str = r#"{"source":["aws.ecr"],"detail-type":["ECR Image Action"],"detail":{"action-type":["PUSH"],"repository-name":[{"prefix":"prod/"}]}}"#;

struct App {
    app: axum::Router,
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
    let events = Events::new(meta.clone(), master.clone(), REGION);
    let ecr = Arc::new(Ecr::new(
        kura_ecr::Stores::all(meta.clone()),
        registry.clone(),
        master,
        boot.token_key,
        EcrConfig::new(REGION, &boot.default_account),
        kura_ecr::scanning::ScanSettings::default(),
    ));
    let service = Arc::new(EventsService::new(events, ecr.authz().clone()));
    let options = kura_ecr::AppOptions {
        services: vec![service],
        ..Default::default()
    };
    App {
        app: kura_ecr::app_with(ecr, registry, options),
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

async fn events(app: &App, op: &str, input: Value, key: (&str, &str)) -> (u16, Value) {
    let req = signed(
        Some(&format!("AWSEvents.{op}")),
        "application/x-amz-json-1.1",
        serde_json::to_vec(&input).unwrap(),
        key,
        "events",
    );
    send(&app.app, req).await
}

const ROOT: (&str, &str) = (KEY_ID, SECRET);

/// A call through the pipeline works and answers EventBridge's shapes; errors carry `__type`.
#[tokio::test]
async fn rules_through_the_pipeline() {
    let a = app().await;
    let (s, out) = events(
        &a,
        "PutRule",
        json!({"Name": "prod-push", "EventPattern": PATTERN}),
        ROOT,
    )
    .await;
    assert_eq!(s, 200, "{out}");
    assert_eq!(
        out["RuleArn"],
        format!("arn:aws:events:{REGION}:{ACCOUNT}:rule/prod-push")
    );
    let (s, out) = events(&a, "DescribeRule", json!({"Name": "prod-push"}), ROOT).await;
    assert_eq!((s, out["State"].as_str()), (200, Some("ENABLED")));
    let (s, out) = events(&a, "DescribeRule", json!({"Name": "nope"}), ROOT).await;
    assert_eq!((s, out["__type"].as_str()), (400, Some("ResourceNotFoundException")));
    let (s, out) = events(&a, "PutEvents", json!({"Entries": []}), ROOT).await;
    assert_eq!(s, 400, "{out}");
}

/// Malformed, invalid and oversized input: EventBridge's errors, never a 500.
#[tokio::test]
async fn malformed_and_oversized_input() {
    let a = app().await;
    let (s, out) = events(
        &a,
        "PutRule",
        json!({"Name": "r", "EventPattern": "{\"a\": \"b\"}"}),
        ROOT,
    )
    .await;
    assert_eq!(
        (s, out["__type"].as_str()),
        (400, Some("InvalidEventPatternException")),
        "{out}"
    );
    // A pattern over the model's 4096 characters.
    let big = format!("{{\"source\":[\"{}\"]}}", "a".repeat(5000));
    let (s, out) = events(&a, "PutRule", json!({"Name": "r", "EventPattern": big}), ROOT).await;
    assert_eq!(s, 400, "{out}");
    assert_ne!(
        out["__type"], "InvalidEventPatternException",
        "the model refuses it first: {out}"
    );
    // A name outside the model's pattern, an unknown member, a body that is not JSON.
    let (s, out) = events(
        &a,
        "PutRule",
        json!({"Name": "bad name!", "EventPattern": PATTERN}),
        ROOT,
    )
    .await;
    assert_eq!(s, 400, "{out}");
    let (s, out) = events(
        &a,
        "PutRule",
        json!({"Name": "r", "EventPattern": PATTERN, "Bogus": 1}),
        ROOT,
    )
    .await;
    assert_eq!(s, 400, "{out}");
    let req = signed(
        Some("AWSEvents.PutRule"),
        "application/x-amz-json-1.1",
        b"{not json".to_vec(),
        ROOT,
        "events",
    );
    let (s, _) = send(&a.app, req).await;
    assert_eq!(s, 400);
    // Deeply nested pattern within the size limit.
    let deep = format!("{}[1]{}", "{\"a\":".repeat(60), "}".repeat(60));
    let (s, out) = events(
        &a,
        "TestEventPattern",
        json!({"EventPattern": deep, "Event": "{}"}),
        ROOT,
    )
    .await;
    assert_eq!(
        (s, out["__type"].as_str()),
        (400, Some("InvalidEventPatternException")),
        "{out}"
    );
}

/// A request signed for another service is refused (SigV4 scope), as is an unsigned one.
#[tokio::test]
async fn signature_for_another_service_is_refused() {
    let a = app().await;
    let body = serde_json::to_vec(&json!({"Name": "r", "EventPattern": PATTERN})).unwrap();
    let req = signed(
        Some("AWSEvents.PutRule"),
        "application/x-amz-json-1.1",
        body,
        ROOT,
        "ecr",
    );
    let (s, out) = send(&a.app, req).await;
    assert!(s == 403 || s == 400, "{s} {out}");
    let (s, out) = events(
        &a,
        "ListRules",
        json!({}),
        (KEY_ID, "wrong-secret-wrong-secret-wrong-secret00"),
    )
    .await;
    assert!((s == 400 || s == 403) && out["__type"].is_string(), "{s} {out}");
    let (s, out) = events(&a, "ListRules", json!({}), ("AKIANOSUCHKEY0000000", SECRET)).await;
    assert!((s == 400 || s == 403) && out["__type"].is_string(), "{s} {out}");
}

/// A user without policies may not call EventBridge; with an identity policy allowing
/// `events:PutRule` on `rule/prod-*` only, it may put that rule and no other.
#[tokio::test]
async fn iam_authorizes_each_call() {
    let a = app().await;
    let iam = |form: String| {
        signed(
            None,
            "application/x-www-form-urlencoded",
            form.into_bytes(),
            ROOT,
            "iam",
        )
    };
    let (s, out) = send(
        &a.app,
        iam("Action=CreateUser&UserName=alice&Version=2010-05-08".into()),
    )
    .await;
    assert_eq!(s, 200, "{out}");
    let resp = a
        .app
        .clone()
        .oneshot(iam("Action=CreateAccessKey&UserName=alice&Version=2010-05-08".into()))
        .await
        .unwrap();
    let xml = String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    let between = |tag: &str| {
        let start = xml.find(&format!("<{tag}>")).unwrap() + tag.len() + 2;
        let end = xml[start..].find(&format!("</{tag}>")).unwrap() + start;
        xml[start..end].to_string()
    };
    let (kid, secret) = (between("AccessKeyId"), between("SecretAccessKey"));
    let alice = (kid.as_str(), secret.as_str());
    let (s, out) = events(&a, "PutRule", json!({"Name": "prod-x", "EventPattern": PATTERN}), alice).await;
    assert_eq!(
        (s, out["__type"].as_str()),
        (403, Some("AccessDeniedException")),
        "{out}"
    );
    let (s, _) = events(&a, "ListRules", json!({}), alice).await;
    assert_eq!(s, 403);

    let policy = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "events:PutRule",
        "Resource": format!("arn:aws:events:{REGION}:{ACCOUNT}:rule/prod-*")}]});
    let form = format!(
        "Action=PutUserPolicy&UserName=alice&PolicyName=p&Version=2010-05-08&PolicyDocument={}",
        percent_encoding::utf8_percent_encode(&policy.to_string(), percent_encoding::NON_ALPHANUMERIC)
    );
    let (s, out) = send(&a.app, iam(form)).await;
    assert_eq!(s, 200, "{out}");
    let (s, out) = events(&a, "PutRule", json!({"Name": "prod-x", "EventPattern": PATTERN}), alice).await;
    assert_eq!(s, 200, "{out}");
    let (s, _) = events(&a, "PutRule", json!({"Name": "dev-x", "EventPattern": PATTERN}), alice).await;
    assert_eq!(s, 403);
    let (s, _) = events(&a, "DeleteRule", json!({"Name": "prod-x"}), alice).await;
    assert_eq!(s, 403);
}
