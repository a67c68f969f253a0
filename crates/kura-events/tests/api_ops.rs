//! The EventBridge operations over a real store (SQLite), called the way the AWS pipeline
//! calls them after authentication and model validation. Each test names the acceptance
//! point it guards.

use std::sync::Arc;

use kura_auth::seal::MasterKey;
use kura_events::Events;
use kura_store::{EventsStore, SqlMetaStore};
use serde_json::{json, Value};

const A: &str = "111111111111";
const B: &str = "222222222222";
const REGION: &str = "us-east-1";

async fn events() -> (Events, Arc<SqlMetaStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqlMetaStore::open(dir.path().join("meta.db")).await.unwrap());
    let ev = Events::new(store.clone(), MasterKey::generate(), REGION);
    (ev, store, dir)
}

async fn ok(ev: &Events, op: &str, account: &str, input: Value) -> Value {
    ev.call(op, account, &input)
        .await
        .unwrap_or_else(|e| panic!("{op}: {e}"))
}

async fn err(ev: &Events, op: &str, account: &str, input: Value) -> (String, String) {
    match ev.call(op, account, &input).await {
        Ok(v) => panic!("{op} succeeded: {v}"),
        Err(e) => (e.kind.to_string(), e.message),
    }
}

const PATTERN: &str = r#"{"source":["aws.ecr"],"detail-type":["ECR Image Action"],"detail":{"action-type":["PUSH"],"repository-name":[{"prefix":"prod/"}]}}"#;

async fn destination(ev: &Events, account: &str) -> String {
    let c = ok(
        ev,
        "CreateConnection",
        account,
        json!({"Name": "c", "AuthorizationType": "API_KEY",
               "AuthParameters": {"ApiKeyAuthParameters": {"ApiKeyName": "x-api-key", "ApiKeyValue": "s3cret-value"}}}),
    )
    .await;
    let d = ok(
        ev,
        "CreateApiDestination",
        account,
        json!({"Name": "d", "ConnectionArn": c["ConnectionArn"], "InvocationEndpoint": "http://127.0.0.1:9/hook",
               "HttpMethod": "POST"}),
    )
    .await;
    d["ApiDestinationArn"].as_str().unwrap().to_string()
}

/// Rules: put (create and update), describe, list with a prefix and paging, enable/disable,
/// delete refused while targets remain, delete idempotent. (Acceptance: the rule operations.)
#[tokio::test]
async fn rule_lifecycle() {
    let (ev, _s, _d) = events().await;
    let out = ok(&ev, "PutRule", A, json!({"Name": "prod-push", "EventPattern": PATTERN})).await;
    assert_eq!(out["RuleArn"], format!("arn:aws:events:{REGION}:{A}:rule/prod-push"));
    let d = ok(&ev, "DescribeRule", A, json!({"Name": "prod-push"})).await;
    assert_eq!(d["State"], "ENABLED");
    assert_eq!(d["EventPattern"], PATTERN);
    assert_eq!(d["EventBusName"], "default");
    ok(
        &ev,
        "PutRule",
        A,
        json!({"Name": "prod-push", "EventPattern": PATTERN, "State": "DISABLED", "Description": "x"}),
    )
    .await;
    let d = ok(&ev, "DescribeRule", A, json!({"Name": "prod-push"})).await;
    assert_eq!(
        (d["State"].as_str(), d["Description"].as_str()),
        (Some("DISABLED"), Some("x"))
    );
    ok(&ev, "EnableRule", A, json!({"Name": "prod-push"})).await;
    assert_eq!(
        ok(&ev, "DescribeRule", A, json!({"Name": "prod-push"})).await["State"],
        "ENABLED"
    );
    ok(&ev, "DisableRule", A, json!({"Name": "prod-push"})).await;
    assert_eq!(
        ok(&ev, "DescribeRule", A, json!({"Name": "prod-push"})).await["State"],
        "DISABLED"
    );
    assert_eq!(
        err(&ev, "EnableRule", A, json!({"Name": "nope"})).await.0,
        "ResourceNotFoundException"
    );

    for i in 0..5 {
        ok(
            &ev,
            "PutRule",
            A,
            json!({"Name": format!("p-{i}"), "EventPattern": PATTERN}),
        )
        .await;
    }
    let page = ok(&ev, "ListRules", A, json!({"NamePrefix": "p-", "Limit": 2})).await;
    assert_eq!(page["Rules"].as_array().unwrap().len(), 2);
    let mut names: Vec<String> = page["Rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["Name"].as_str().unwrap().into())
        .collect();
    let mut token = page["NextToken"].as_str().map(str::to_string);
    while let Some(t) = token {
        let p = ok(
            &ev,
            "ListRules",
            A,
            json!({"NamePrefix": "p-", "Limit": 2, "NextToken": t}),
        )
        .await;
        names.extend(
            p["Rules"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["Name"].as_str().unwrap().to_string()),
        );
        token = p["NextToken"].as_str().map(str::to_string);
    }
    assert_eq!(names, ["p-0", "p-1", "p-2", "p-3", "p-4"]);

    let arn = destination(&ev, A).await;
    ok(
        &ev,
        "PutTargets",
        A,
        json!({"Rule": "p-0", "Targets": [{"Id": "t1", "Arn": arn}]}),
    )
    .await;
    let (kind, msg) = err(&ev, "DeleteRule", A, json!({"Name": "p-0"})).await;
    assert_eq!(kind, "ValidationException");
    assert!(msg.contains("has targets"), "{msg}");
    let t = ok(&ev, "ListTargetsByRule", A, json!({"Rule": "p-0"})).await;
    assert_eq!(t["Targets"][0]["Arn"], arn);
    ok(&ev, "RemoveTargets", A, json!({"Rule": "p-0", "Ids": ["t1"]})).await;
    ok(&ev, "DeleteRule", A, json!({"Name": "p-0"})).await;
    ok(&ev, "DeleteRule", A, json!({"Name": "p-0"})).await;
    assert_eq!(
        err(&ev, "DescribeRule", A, json!({"Name": "p-0"})).await.0,
        "ResourceNotFoundException"
    );
}

/// Bad patterns and unsupported inputs answer EventBridge's errors, never a 500.
/// (Acceptance: pattern validation with InvalidEventPatternException; attack: malformed pattern.)
#[tokio::test]
async fn malformed_input_is_refused() {
    let (ev, _s, _d) = events().await;
    for bad in [
        "{",
        "[]",
        r#"{"source": "aws.ecr"}"#,
        r#"{"a": [{"numeric": [">", "x"]}]}"#,
    ] {
        let (kind, msg) = err(&ev, "PutRule", A, json!({"Name": "r", "EventPattern": bad})).await;
        assert_eq!(kind, "InvalidEventPatternException", "{bad}");
        assert!(msg.starts_with("Event pattern is not valid."), "{msg}");
    }
    let cases = [
        ("PutRule", json!({"Name": "r"})),
        ("PutRule", json!({"Name": "r", "ScheduleExpression": "rate(1 minute)"})),
        (
            "PutRule",
            json!({"Name": "r", "EventPattern": PATTERN, "State": "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS"}),
        ),
        (
            "TestEventPattern",
            json!({"EventPattern": PATTERN, "Event": "{\"source\": \"aws.ecr\"}"}),
        ),
        (
            "TestEventPattern",
            json!({"EventPattern": PATTERN, "Event": "not json"}),
        ),
        (
            "CreateConnection",
            json!({"Name": "c", "AuthorizationType": "OAUTH_CLIENT_CREDENTIALS", "AuthParameters": {}}),
        ),
        (
            "CreateConnection",
            json!({"Name": "c", "AuthorizationType": "API_KEY", "AuthParameters": {}}),
        ),
        (
            "CreateConnection",
            json!({"Name": "c", "AuthorizationType": "API_KEY",
            "AuthParameters": {"ApiKeyAuthParameters": {"ApiKeyName": "bad header", "ApiKeyValue": "v"}}}),
        ),
        ("ListRules", json!({"NextToken": "zz-not-hex"})),
    ];
    for (op, input) in cases {
        let (kind, _) = err(&ev, op, A, input.clone()).await;
        assert_eq!(kind, "ValidationException", "{op} {input}");
    }
    let (kind, _) = err(
        &ev,
        "PutRule",
        A,
        json!({"Name": "r", "EventPattern": PATTERN, "EventBusName": "custom"}),
    )
    .await;
    assert_eq!(kind, "ResourceNotFoundException");
    let (kind, _) = err(&ev, "PutEvents", A, json!({})).await;
    assert_eq!(kind, "UnsupportedOperationException");
}

/// TestEventPattern decides like the matcher. (Acceptance: test-event-pattern.)
#[tokio::test]
async fn test_event_pattern() {
    let (ev, _s, _d) = events().await;
    let event = |repo: &str| {
        json!({"version": "0", "id": "1", "detail-type": "ECR Image Action", "source": "aws.ecr", "account": A,
               "time": "2026-01-01T00:00:00Z", "region": REGION, "resources": [],
               "detail": {"action-type": "PUSH", "repository-name": repo}})
        .to_string()
    };
    let r = ok(
        &ev,
        "TestEventPattern",
        A,
        json!({"EventPattern": PATTERN, "Event": event("prod/x")}),
    )
    .await;
    assert_eq!(r["Result"], true);
    let r = ok(
        &ev,
        "TestEventPattern",
        A,
        json!({"EventPattern": PATTERN, "Event": event("dev/x")}),
    )
    .await;
    assert_eq!(r["Result"], false);
}

/// Connections: the secret is sealed at rest (not in the stored row's text, not equal to the
/// plaintext) and never returned; names are unique. (Acceptance: API key / basic auth sealed at rest.)
#[tokio::test]
async fn connection_secrets_are_sealed_and_never_returned() {
    let (ev, store, _d) = events().await;
    destination(&ev, A).await;
    let (kind, _) = err(
        &ev,
        "CreateConnection",
        A,
        json!({"Name": "c", "AuthorizationType": "BASIC",
               "AuthParameters": {"BasicAuthParameters": {"Username": "u", "Password": "pw"}}}),
    )
    .await;
    assert_eq!(kind, "ResourceAlreadyExistsException");
    let row = store.event_resource_get(A, "connection", "c").await.unwrap().unwrap();
    assert!(!row.body.contains("s3cret-value"));
    let sealed = row.secret.unwrap();
    assert!(!sealed.windows(12).any(|w| w == b"s3cret-value"));
    let d = ok(&ev, "DescribeConnection", A, json!({"Name": "c"})).await;
    assert_eq!(d["AuthParameters"]["ApiKeyAuthParameters"]["ApiKeyName"], "x-api-key");
    assert!(!d.to_string().contains("s3cret-value"));
    let l = ok(&ev, "ListConnections", A, json!({})).await;
    assert!(!l.to_string().contains("s3cret-value"));
    assert_eq!(l["Connections"].as_array().unwrap().len(), 1);
    let l = ok(&ev, "ListApiDestinations", A, json!({})).await;
    assert_eq!(l["ApiDestinations"][0]["InvocationEndpoint"], "http://127.0.0.1:9/hook");
    // Another key does not open it.
    let other = Events::new(store.clone(), MasterKey::generate(), REGION);
    let kind = kura_events::target::TargetKind::ApiDestination {
        name: "d".into(),
        uuid: None,
    };
    assert!(other.destination_for(A, &kind).await.is_err());
    let dest = ev.destination_for(A, &kind).await.unwrap();
    assert_eq!(dest.auth.secret(), "s3cret-value");
    ok(&ev, "DeleteApiDestination", A, json!({"Name": "d"})).await;
    ok(&ev, "DeleteConnection", A, json!({"Name": "c"})).await;
    assert_eq!(
        err(&ev, "DescribeConnection", A, json!({"Name": "c"})).await.0,
        "ResourceNotFoundException"
    );
}

/// Another account's rules, connections and API destinations are invisible, and targets or
/// connection ARNs naming another account are refused. (Attack: cross-account rule names.)
#[tokio::test]
async fn accounts_are_isolated() {
    let (ev, _s, _d) = events().await;
    ok(
        &ev,
        "PutRule",
        A,
        json!({"Name": "shared-name", "EventPattern": PATTERN}),
    )
    .await;
    let arn_a = destination(&ev, A).await;
    assert_eq!(
        err(&ev, "DescribeRule", B, json!({"Name": "shared-name"})).await.0,
        "ResourceNotFoundException"
    );
    assert!(ok(&ev, "ListRules", B, json!({})).await["Rules"]
        .as_array()
        .unwrap()
        .is_empty());
    // B's own rule of the same name is a different rule.
    ok(
        &ev,
        "PutRule",
        B,
        json!({"Name": "shared-name", "EventPattern": r#"{"source":["x"]}"#}),
    )
    .await;
    assert_eq!(
        ok(&ev, "DescribeRule", A, json!({"Name": "shared-name"})).await["EventPattern"],
        PATTERN
    );
    // B cannot target A's API destination, nor use A's connection.
    let (kind, _) = err(
        &ev,
        "PutTargets",
        B,
        json!({"Rule": "shared-name", "Targets": [{"Id": "t", "Arn": arn_a}]}),
    )
    .await;
    assert_eq!(kind, "ValidationException");
    let conn_a = ok(&ev, "DescribeConnection", A, json!({"Name": "c"})).await["ConnectionArn"].clone();
    let (kind, _) = err(
        &ev,
        "CreateApiDestination",
        B,
        json!({"Name": "d", "ConnectionArn": conn_a, "InvocationEndpoint": "http://127.0.0.1:9/", "HttpMethod": "POST"}),
    )
    .await;
    assert_eq!(kind, "ValidationException");
    assert_eq!(
        err(&ev, "DescribeConnection", B, json!({"Name": "c"})).await.0,
        "ResourceNotFoundException"
    );
    assert_eq!(
        ev.resource("PutRule", B, &json!({"Name": "r"})),
        format!("arn:aws:events:{REGION}:{B}:rule/r")
    );
}

/// Targets: the limit per rule, unknown destinations, unsupported members.
#[tokio::test]
async fn target_validation() {
    let (ev, _s, _d) = events().await;
    ok(&ev, "PutRule", A, json!({"Name": "r", "EventPattern": PATTERN})).await;
    let arn = destination(&ev, A).await;
    let targets: Vec<Value> = (0..6).map(|i| json!({"Id": format!("t{i}"), "Arn": arn})).collect();
    assert_eq!(
        err(&ev, "PutTargets", A, json!({"Rule": "r", "Targets": targets}))
            .await
            .0,
        "LimitExceededException"
    );
    let missing = format!("arn:aws:events:{REGION}:{A}:api-destination/nope");
    assert_eq!(
        err(
            &ev,
            "PutTargets",
            A,
            json!({"Rule": "r", "Targets": [{"Id": "t", "Arn": missing}]})
        )
        .await
        .0,
        "ResourceNotFoundException"
    );
    assert_eq!(
        err(
            &ev,
            "PutTargets",
            A,
            json!({"Rule": "r", "Targets": [{"Id": "t", "Arn": arn, "InputTransformer": {}}]})
        )
        .await
        .0,
        "ValidationException"
    );
    assert_eq!(
        err(
            &ev,
            "PutTargets",
            A,
            json!({"Rule": "nope", "Targets": [{"Id": "t", "Arn": arn}]})
        )
        .await
        .0,
        "ResourceNotFoundException"
    );
    let webhook = format!("arn:kura:events:{REGION}:{A}:webhook/d");
    ok(
        &ev,
        "PutTargets",
        A,
        json!({"Rule": "r", "Targets": [{"Id": "w", "Arn": webhook}]}),
    )
    .await;
}
