//! Routing and sending without the job queue: an ECR event matched against stored rules, and
//! one HTTP request per target with the right body, authorization and signature.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::Receiver;
use kura_auth::seal::MasterKey;
use kura_events::deliver::{signature, Outcome, Sender};
use kura_events::ecr::{EcrDetail, EcrEvent};
use kura_events::Events;
use kura_store::SqlMetaStore;
use serde_json::{json, Value};

const A: &str = "111111111111";
const REGION: &str = "us-east-1";

async fn setup(endpoint: &str, basic: bool) -> (Events, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqlMetaStore::open(dir.path().join("meta.db")).await.unwrap());
    let ev = Events::new(store, MasterKey::generate(), REGION);
    let auth = if basic {
        json!({"AuthorizationType": "BASIC", "AuthParameters": {"BasicAuthParameters": {"Username": "u", "Password": "pw"}}})
    } else {
        json!({"AuthorizationType": "API_KEY", "AuthParameters": {"ApiKeyAuthParameters": {"ApiKeyName": "x-api-key", "ApiKeyValue": "k3y"}}})
    };
    let mut c = auth;
    c["Name"] = json!("c");
    let c = ev.call("CreateConnection", A, &c).await.unwrap();
    ev.call(
        "CreateApiDestination",
        A,
        &json!({"Name": "d", "ConnectionArn": c["ConnectionArn"], "InvocationEndpoint": format!("{endpoint}/hook/*"),
                "HttpMethod": "POST"}),
    )
    .await
    .unwrap();
    let pattern = r#"{"source":["aws.ecr"],"detail-type":["ECR Image Action"],"detail":{"action-type":["PUSH"],"repository-name":[{"prefix":"prod/"}]}}"#;
    ev.call("PutRule", A, &json!({"Name": "r", "EventPattern": pattern}))
        .await
        .unwrap();
    ev.call(
        "PutTargets",
        A,
        &json!({"Rule": "r", "Targets": [
            {"Id": "api", "Arn": format!("arn:aws:events:{REGION}:{A}:api-destination/d"),
             "HttpParameters": {"PathParameterValues": ["p1"], "HeaderParameters": {"x-extra": "1"}}},
            {"Id": "hook", "Arn": format!("arn:kura:events:{REGION}:{A}:webhook/d"),
             "HttpParameters": {"PathParameterValues": ["wh"]}}
        ]}),
    )
    .await
    .unwrap();
    (ev, dir)
}

fn push(repo: &str) -> Value {
    EcrEvent {
        id: "0d5f0d5f-0000-4000-8000-000000000001".into(),
        time_ms: 1_700_000_000_000,
        account: A.into(),
        region: REGION.into(),
        repository: repo.into(),
        detail: EcrDetail::Push {
            digest: "sha256:abc".into(),
            tag: Some("v1".into()),
        },
    }
    .to_json()
}

/// A matching push goes to every target of the rule once: the API destination gets the
/// EventBridge event with the API key header; the webhook a signed CloudEvent. A push that
/// does not match goes nowhere. (Acceptance: delivery to API destinations and webhooks.)
#[tokio::test]
async fn route_and_send_to_api_destination_and_webhook() {
    let rx = Receiver::default();
    let base = rx.start().await;
    let (ev, _d) = setup(&base, false).await;
    assert!(ev.route(A, &push("dev/x")).await.unwrap().is_empty());
    assert!(ev.route("999999999999", &push("prod/x")).await.unwrap().is_empty());
    let routed = ev.route(A, &push("prod/x")).await.unwrap();
    assert_eq!(routed.len(), 2);
    assert_ne!(routed[0].unique_key(), routed[1].unique_key());
    assert!(routed[0].lane().ends_with(":prod/x"));
    let sender = Sender::new(Duration::from_secs(5));
    for r in &routed {
        assert_eq!(sender.deliver(&ev, &r.job).await, Outcome::Delivered);
    }
    let got = rx.all();
    assert_eq!(got.len(), 2);
    let api = got
        .iter()
        .find(|g| g.path == "/hook/p1")
        .expect("API destination request");
    assert_eq!(api.headers["x-api-key"], "k3y");
    assert_eq!(api.headers["x-extra"], "1");
    assert_eq!(api.headers["content-type"], "application/json");
    let body: Value = serde_json::from_slice(&api.body).unwrap();
    assert_eq!(body["detail-type"], "ECR Image Action");
    assert_eq!(body["detail"]["repository-name"], "prod/x");
    assert_eq!(body["time"], "2023-11-14T22:13:20Z");

    let hook = got.iter().find(|g| g.path == "/hook/wh").expect("webhook request");
    assert!(
        hook.headers.get("x-api-key").is_none(),
        "a webhook carries a signature, not the key"
    );
    assert_eq!(hook.headers["x-kura-signature"], signature("k3y", &hook.body).as_str());
    let ce: Value = serde_json::from_slice(&hook.body).unwrap();
    assert_eq!(ce["specversion"], "1.0");
    assert_eq!(ce["type"], "ECR Image Action");
    assert_eq!(ce["data"]["detail"]["image-digest"], "sha256:abc");
}

/// Basic authorization; 5xx and 429 are retried, other 4xx are fatal; an unreachable target
/// is retried. (Acceptance: JobError::Retry on 5xx/429/connection errors, Fatal on 4xx.)
#[tokio::test]
async fn basic_auth_and_outcomes() {
    let rx = Receiver::default();
    let base = rx.start().await;
    let (ev, _d) = setup(&base, true).await;
    let routed = ev.route(A, &push("prod/y")).await.unwrap();
    let job = &routed.iter().find(|r| r.job.target_id == "api").unwrap().job;
    let sender = Sender::new(Duration::from_secs(5));
    rx.statuses.lock().unwrap().extend([500, 429, 404]);
    assert!(matches!(sender.deliver(&ev, job).await, Outcome::Retry(_)));
    assert!(matches!(sender.deliver(&ev, job).await, Outcome::Retry(_)));
    assert!(matches!(sender.deliver(&ev, job).await, Outcome::Fatal(_)));
    assert_eq!(sender.deliver(&ev, job).await, Outcome::Delivered);
    let auth = rx.all()[0].headers["authorization"].to_str().unwrap().to_string();
    assert_eq!(auth, "Basic dTpwdw==");

    // Nothing listens here: retried.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let (ev2, _d2) = setup(&format!("http://127.0.0.1:{port}"), false).await;
    let routed = ev2.route(A, &push("prod/z")).await.unwrap();
    assert!(matches!(sender.deliver(&ev2, &routed[0].job).await, Outcome::Retry(_)));

    // The API destination removed after enqueueing: fatal (dead letter), not retried forever.
    ev.call("DeleteApiDestination", A, &json!({"Name": "d"})).await.unwrap();
    assert!(matches!(sender.deliver(&ev, job).await, Outcome::Fatal(_)));
}

/// A rule change through the API applies to the next event at once (cache dropped), and a
/// disabled rule routes nothing.
#[tokio::test]
async fn rule_changes_apply_to_the_next_event() {
    let rx = Receiver::default();
    let base = rx.start().await;
    let (ev, _d) = setup(&base, false).await;
    assert_eq!(ev.route(A, &push("prod/x")).await.unwrap().len(), 2);
    ev.call("DisableRule", A, &json!({"Name": "r"})).await.unwrap();
    assert!(ev.route(A, &push("prod/x")).await.unwrap().is_empty());
    ev.call("EnableRule", A, &json!({"Name": "r"})).await.unwrap();
    ev.call("RemoveTargets", A, &json!({"Rule": "r", "Ids": ["hook"]}))
        .await
        .unwrap();
    assert_eq!(ev.route(A, &push("prod/x")).await.unwrap().len(), 1);
}

/// Not a check: prints what routing costs per event on the push path with no rules and with
/// a non-matching rule (`cargo test --release -p kura-events --test send -- --ignored --nocapture`).
#[tokio::test]
#[ignore]
async fn route_cost() {
    let rx = Receiver::default();
    let base = rx.start().await;
    let (ev, _d) = setup(&base, false).await;
    let event = push("dev/x");
    for (label, account) in [("no rules", "999999999999"), ("one non-matching rule", A)] {
        ev.route(account, &event).await.unwrap();
        let n = 200_000;
        let t0 = std::time::Instant::now();
        for _ in 0..n {
            assert!(ev.route(account, &event).await.unwrap().is_empty());
        }
        println!(
            "route, {label}: {:.0} ns/event",
            t0.elapsed().as_nanos() as f64 / n as f64
        );
    }
}
