//! The trail over the real store (SQLite, and PostgreSQL when
//! `KURA_TEST_DATABASE_URL` is set): LookupEvents by each attribute, time
//! range, paging, tokens, account isolation; group commit; retention.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kura_audit::lookup::{lookup_events, parse_input};
use kura_audit::recorder::wait_queued;
use kura_audit::{AuditRecorder, CallRecord, Caller, RecorderOptions};
use kura_store::audit::{TrailEvent, TrailQuery, TrailRow};
use kura_store::{AuditStore, SqlMetaStore};
use serde_json::{json, Value};

const A: &str = "111111111111";
const B: &str = "222222222222";
const T0: i64 = 1_750_000_000_000;

async fn stores() -> (Vec<(&'static str, Arc<SqlMetaStore>)>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut out = vec![(
        "sqlite",
        Arc::new(SqlMetaStore::open(dir.path().join("meta.db")).await.unwrap()),
    )];
    if let Some(pg) = kura_store::testdb::postgres("trail").await {
        out.push(("postgres", Arc::new(pg)));
    }
    (out, dir)
}

fn caller(account: &str, user: &str) -> Caller {
    Caller {
        account: account.into(),
        principal_arn: if user == "root" {
            format!("arn:aws:iam::{account}:root")
        } else {
            format!("arn:aws:iam::{account}:user/{user}")
        },
        principal_id: format!("AIDA{user}"),
        access_key_id: format!("AKIA{}", user.to_uppercase()),
        token_issued_at: None,
    }
}

fn call(account: &str, user: &str, name: &str, source: &str, repo: &str, at: i64) -> CallRecord {
    CallRecord {
        time_ms: at,
        event_source: source.into(),
        event_name: name.into(),
        aws_region: "us-east-1".into(),
        caller: Some(caller(account, user)),
        source_ip: Some(std::net::IpAddr::from([127, 0, 0, 1])),
        user_agent: Some("test".into()),
        request_parameters: Some(json!({"repositoryName": repo})),
        read_only: name.starts_with("Describe"),
        request_id: "r".into(),
        claimed_access_key_id: None,
        response_elements: None,
        error_code: None,
        error_message: None,
        status: 200,
    }
}

/// The trail of the suite: 30 calls in account A over 30 seconds, 5 in B.
async fn fill(store: &dyn AuditStore) -> Vec<TrailRow> {
    let mut rows = Vec::new();
    for i in 0..30 {
        let (user, name, source, repo) = match i % 3 {
            0 => ("alice", "CreateRepository", "ecr.amazonaws.com", "team/app"),
            1 => ("bob", "DescribeRepositories", "ecr.amazonaws.com", "team/web"),
            _ => ("root", "CreateUser", "iam.amazonaws.com", ""),
        };
        rows.push(kura_audit::record::build(
            &call(A, user, name, source, repo, T0 + i * 1000),
            false,
            A,
        ));
    }
    for i in 0..5 {
        rows.push(kura_audit::record::build(
            &call(
                B,
                "carol",
                "CreateRepository",
                "ecr.amazonaws.com",
                "team/app",
                T0 + i * 1000,
            ),
            false,
            B,
        ));
    }
    store.trail_append(&rows).await.unwrap();
    rows
}

async fn look(store: &dyn AuditStore, account: &str, input: Value) -> Result<Value, String> {
    lookup_events(store, account, "us-east-1", &input, T0 + 3_600_000)
        .await
        .unwrap()
        .map_err(|e| e.kind.to_string())
}

fn names(v: &Value, field: &str) -> Vec<String> {
    v["Events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e[field].as_str().unwrap_or("-").to_string())
        .collect()
}

fn attr(k: &str, v: &str) -> Value {
    json!({"LookupAttributes": [{"AttributeKey": k, "AttributeValue": v}]})
}

/// Guards: LookupEvents by each attribute (EventName, Username,
/// ResourceName, ResourceType, EventSource, AccessKeyId, ReadOnly, EventId),
/// newest first, with each event's summary fields.
#[tokio::test]
async fn lookup_by_each_attribute() {
    let (stores, _dir) = stores().await;
    for (engine, s) in stores {
        let rows = fill(s.as_ref()).await;
        let v = look(s.as_ref(), A, attr("EventName", "CreateRepository"))
            .await
            .unwrap();
        assert_eq!(v["Events"].as_array().unwrap().len(), 10, "{engine}");
        let e = &v["Events"][0];
        assert_eq!(e["EventName"], "CreateRepository");
        assert_eq!(e["Username"], "alice");
        assert_eq!(e["AccessKeyId"], "AKIAALICE");
        assert_eq!(e["ReadOnly"], "false");
        assert_eq!(e["EventSource"], "ecr.amazonaws.com");
        assert_eq!(
            e["EventTime"].as_f64().unwrap(),
            (T0 + 27_000) as f64 / 1000.0,
            "newest first"
        );
        assert_eq!(
            e["Resources"],
            json!([{"ResourceType": "AWS::ECR::Repository", "ResourceName": "team/app"}])
        );
        let inner: Value = serde_json::from_str(e["CloudTrailEvent"].as_str().unwrap()).unwrap();
        assert_eq!(inner["eventID"], e["EventId"]);
        assert_eq!(inner["userIdentity"]["userName"], "alice");

        let count = |v: &Value| v["Events"].as_array().unwrap().len();
        assert_eq!(
            count(&look(s.as_ref(), A, attr("Username", "bob")).await.unwrap()),
            10,
            "{engine}"
        );
        assert_eq!(
            count(&look(s.as_ref(), A, attr("Username", "root")).await.unwrap()),
            10,
            "{engine}"
        );
        assert_eq!(
            count(&look(s.as_ref(), A, attr("ResourceName", "team/web")).await.unwrap()),
            10,
            "{engine}"
        );
        assert_eq!(
            count(
                &look(s.as_ref(), A, attr("ResourceType", "AWS::ECR::Repository"))
                    .await
                    .unwrap()
            ),
            20,
            "{engine}"
        );
        assert_eq!(
            count(
                &look(s.as_ref(), A, attr("EventSource", "iam.amazonaws.com"))
                    .await
                    .unwrap()
            ),
            10,
            "{engine}"
        );
        assert_eq!(
            count(&look(s.as_ref(), A, attr("AccessKeyId", "AKIABOB")).await.unwrap()),
            10,
            "{engine}"
        );
        let ro = look(s.as_ref(), A, attr("ReadOnly", "true")).await.unwrap();
        assert_eq!(names(&ro, "EventName"), vec!["DescribeRepositories"; 10], "{engine}");
        assert_eq!(
            count(&look(s.as_ref(), A, attr("ReadOnly", "false")).await.unwrap()),
            20,
            "{engine}"
        );
        let one = look(s.as_ref(), A, attr("EventId", &rows[4].event_id)).await.unwrap();
        assert_eq!(names(&one, "EventId"), vec![rows[4].event_id.clone()], "{engine}");
        assert_eq!(count(&look(s.as_ref(), A, json!({})).await.unwrap()), 30, "{engine}");
        assert_eq!(
            count(&look(s.as_ref(), A, attr("EventName", "Nothing")).await.unwrap()),
            0,
            "{engine}"
        );
    }
}

/// Guards: StartTime/EndTime are inclusive bounds (numbers or RFC 3339),
/// and paging walks every record once, newest first, with NextToken.
#[tokio::test]
async fn time_range_and_paging() {
    let (stores, _dir) = stores().await;
    for (engine, s) in stores {
        fill(s.as_ref()).await;
        let v = look(
            s.as_ref(),
            A,
            json!({"StartTime": (T0 + 10_000) as f64 / 1000.0, "EndTime": (T0 + 19_000) as f64 / 1000.0}),
        )
        .await
        .unwrap();
        let times: Vec<f64> = v["Events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["EventTime"].as_f64().unwrap())
            .collect();
        assert_eq!(times.len(), 10, "{engine}");
        assert_eq!(times[0], (T0 + 19_000) as f64 / 1000.0);
        assert_eq!(times[9], (T0 + 10_000) as f64 / 1000.0);
        let start =
            humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis((T0 + 25_000) as u64))
                .to_string();
        let v = look(s.as_ref(), A, json!({"StartTime": start})).await.unwrap();
        assert_eq!(v["Events"].as_array().unwrap().len(), 5, "{engine}");

        // Pages of 7 over 30 records.
        let mut seen = Vec::new();
        let mut input = json!({"MaxResults": 7});
        loop {
            let v = look(s.as_ref(), A, input.clone()).await.unwrap();
            seen.extend(names(&v, "EventId"));
            match v.get("NextToken").and_then(Value::as_str) {
                Some(t) => input["NextToken"] = json!(t),
                None => break,
            }
        }
        assert_eq!(seen.len(), 30, "{engine}");
        let mut unique = seen.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 30, "{engine}: every record once");

        // Paging by an attribute (the resource table's walk).
        let mut seen = 0;
        let mut input = json!({"MaxResults": 3, "LookupAttributes": [{"AttributeKey": "ResourceName", "AttributeValue": "team/app"}]});
        loop {
            let v = look(s.as_ref(), A, input.clone()).await.unwrap();
            seen += v["Events"].as_array().unwrap().len();
            match v.get("NextToken").and_then(Value::as_str) {
                Some(t) => input["NextToken"] = json!(t),
                None => break,
            }
        }
        assert_eq!(seen, 10, "{engine}");
    }
}

/// Guards: CloudTrail's errors for bad input: two attributes, an unknown
/// key, an empty value, a bad ReadOnly, start after end, MaxResults out of
/// range, an unknown member, a bad or altered or foreign NextToken.
#[tokio::test]
async fn bad_input_gets_cloudtrails_errors() {
    let (stores, _dir) = stores().await;
    let s = stores[0].1.clone();
    fill(s.as_ref()).await;
    let err = |input: Value| {
        let s = s.clone();
        async move { look(s.as_ref(), A, input).await.unwrap_err() }
    };
    assert_eq!(
        err(json!({"LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": "a"}, {"AttributeKey": "Username", "AttributeValue": "b"}]})).await,
        "InvalidLookupAttributesException"
    );
    assert_eq!(err(attr("Colour", "red")).await, "InvalidLookupAttributesException");
    assert_eq!(err(attr("EventName", "")).await, "InvalidLookupAttributesException");
    assert_eq!(
        err(attr("EventName", &"x".repeat(2001))).await,
        "InvalidLookupAttributesException"
    );
    assert_eq!(err(attr("ReadOnly", "maybe")).await, "InvalidLookupAttributesException");
    assert_eq!(
        err(json!({"StartTime": 20, "EndTime": 10})).await,
        "InvalidTimeRangeException"
    );
    assert_eq!(err(json!({"MaxResults": 0})).await, "InvalidMaxResultsException");
    assert_eq!(err(json!({"MaxResults": 51})).await, "InvalidMaxResultsException");
    assert_eq!(err(json!({"Colour": 1})).await, "SerializationException");
    assert_eq!(err(json!({"StartTime": {"a": 1}})).await, "SerializationException");
    assert_eq!(
        err(json!({"EventCategory": "other"})).await,
        "InvalidEventCategoryException"
    );
    assert_eq!(err(json!({"NextToken": "garbage!"})).await, "InvalidNextTokenException");
    assert_eq!(err(json!({"NextToken": 5})).await, "InvalidNextTokenException");
    // A real token used with another query, or altered.
    let v = look(s.as_ref(), A, json!({"MaxResults": 2})).await.unwrap();
    let token = v["NextToken"].as_str().unwrap().to_string();
    assert_eq!(
        err(json!({"MaxResults": 2, "NextToken": token, "StartTime": 1})).await,
        "InvalidNextTokenException"
    );
    assert_eq!(err(json!({"MaxResults": 2, "NextToken": token.clone(), "LookupAttributes": [{"AttributeKey": "Username", "AttributeValue": "bob"}]})).await, "InvalidNextTokenException");
    let mut altered = token.clone().into_bytes();
    altered[3] ^= 1;
    assert_eq!(
        err(json!({"NextToken": String::from_utf8_lossy(&altered)})).await,
        "InvalidNextTokenException"
    );
    // Account B cannot page with A's token.
    assert_eq!(
        look(s.as_ref(), B, json!({"MaxResults": 2, "NextToken": token}))
            .await
            .unwrap_err(),
        "InvalidNextTokenException"
    );
    // Insights: none recorded, an empty answer.
    let v = look(s.as_ref(), A, json!({"EventCategory": "insight"})).await.unwrap();
    assert_eq!(v["Events"], json!([]));
    assert!(parse_input(&json!({}), 5).unwrap().end_ms == 5);
}

/// Guards: an account sees only its own records, whatever it filters on.
#[tokio::test]
async fn accounts_see_only_their_own_records() {
    let (stores, _dir) = stores().await;
    for (engine, s) in stores {
        fill(s.as_ref()).await;
        let v = look(s.as_ref(), B, json!({})).await.unwrap();
        assert_eq!(names(&v, "Username"), vec!["carol"; 5], "{engine}");
        let v = look(s.as_ref(), B, attr("ResourceName", "team/app")).await.unwrap();
        assert_eq!(names(&v, "Username"), vec!["carol"; 5], "{engine}");
        let v = look(s.as_ref(), B, attr("Username", "alice")).await.unwrap();
        assert_eq!(v["Events"], json!([]), "{engine}");
        let v = look(s.as_ref(), "333333333333", json!({})).await.unwrap();
        assert_eq!(v["Events"], json!([]), "{engine}");
    }
}

/// A store whose first append waits for a gate: the writer is held while
/// records queue.
struct Gated {
    inner: Arc<SqlMetaStore>,
    appends: AtomicUsize,
    gate: tokio::sync::Semaphore,
}

#[async_trait]
impl AuditStore for Gated {
    async fn trail_append(&self, rows: &[TrailRow]) -> kura_store::error::Result<()> {
        if self.appends.fetch_add(1, Ordering::SeqCst) == 0 {
            let _ = self.gate.acquire().await.unwrap();
        }
        self.inner.trail_append(rows).await
    }
    async fn trail_lookup(&self, q: &TrailQuery) -> kura_store::error::Result<Vec<TrailEvent>> {
        self.inner.trail_lookup(q).await
    }
    async fn trail_purge(&self, before: i64, limit: i64) -> kura_store::error::Result<u64> {
        self.inner.trail_purge(before, limit).await
    }
}

/// Guards: group commit — records arriving while a batch commits share the
/// next transaction (200 calls → 2 transactions), and each caller's record
/// is in the store when record() returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_records_share_transactions() {
    let (stores, _dir) = stores().await;
    for (engine, s) in stores {
        let gated = Arc::new(Gated {
            inner: s.clone(),
            appends: AtomicUsize::new(0),
            gate: tokio::sync::Semaphore::new(0),
        });
        let rec = Arc::new(AuditRecorder::start(gated.clone(), RecorderOptions::new(A)));
        // The first record takes the writer, which then waits at the gate.
        let first = {
            let rec = rec.clone();
            tokio::spawn(async move {
                rec.record(&call(A, "alice", "CreateRepository", "ecr.amazonaws.com", "first", T0))
                    .await
            })
        };
        // Held at the gate with that one record alone.
        for _ in 0..3000 {
            if gated.appends.load(Ordering::SeqCst) == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            gated.appends.load(Ordering::SeqCst),
            1,
            "{engine}: the writer holds the first batch"
        );
        let mut tasks = Vec::new();
        for i in 0..199 {
            let (rec, s) = (rec.clone(), s.clone());
            tasks.push(tokio::spawn(async move {
                let repo = format!("repo-{i}");
                rec.record(&call(
                    A,
                    "alice",
                    "CreateRepository",
                    "ecr.amazonaws.com",
                    &repo,
                    T0 + i,
                ))
                .await;
                // Committed before record() returned.
                let v = look(s.as_ref(), A, attr("ResourceName", &repo)).await.unwrap();
                assert_eq!(v["Events"].as_array().unwrap().len(), 1);
            }));
        }
        assert!(
            wait_queued(&rec, 199, Duration::from_secs(30)).await,
            "{engine}: the records queue"
        );
        gated.gate.add_permits(1);
        first.await.unwrap();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(rec.stats().records.load(Ordering::Relaxed), 200, "{engine}");
        assert_eq!(
            rec.stats().batches.load(Ordering::Relaxed),
            2,
            "{engine}: one for the first, one for the 199 queued"
        );
        assert_eq!(gated.appends.load(Ordering::SeqCst), 2);
    }
}

/// A store that fails every write.
struct Broken;

#[async_trait]
impl AuditStore for Broken {
    async fn trail_append(&self, _: &[TrailRow]) -> kura_store::error::Result<()> {
        Err(kura_store::StoreError::Corrupt("the disk is on fire".into()))
    }
    async fn trail_lookup(&self, _: &TrailQuery) -> kura_store::error::Result<Vec<TrailEvent>> {
        Ok(Vec::new())
    }
    async fn trail_purge(&self, _: i64, _: i64) -> kura_store::error::Result<u64> {
        Ok(0)
    }
}

/// Guards: a failing store never fails or stalls a call: record() returns,
/// and the loss is counted.
#[tokio::test]
async fn a_failing_store_does_not_fail_calls() {
    let rec = AuditRecorder::start(Arc::new(Broken), RecorderOptions::new(A));
    for _ in 0..3 {
        rec.record(&call(A, "alice", "CreateRepository", "ecr.amazonaws.com", "r", T0))
            .await;
    }
    assert_eq!(rec.stats().lost.load(Ordering::Relaxed), 3);
    assert_eq!(rec.stats().records.load(Ordering::Relaxed), 0);
}

/// Guards: retention deletes what is older than the retention period, in
/// bounded batches, every account, with the records' resources; newer
/// records stay.
#[tokio::test]
async fn retention_deletes_old_records_in_batches() {
    let (stores, _dir) = stores().await;
    for (engine, s) in stores {
        fill(s.as_ref()).await;
        // "now" is 10 days after T0 + 20 s: retention 10 days keeps the last 10 of A.
        let now = T0 + 20_000 + 10 * 86_400_000;
        let retention = Duration::from_secs(10 * 86_400);
        // Batches of 4, at most 2 batches: 8 go first.
        let n = kura_audit::retention::purge_expired(s.as_ref(), retention, now, 4, 2)
            .await
            .unwrap();
        assert_eq!(n, 8, "{engine}");
        let n = kura_audit::retention::purge_expired(s.as_ref(), retention, now, 4, 100)
            .await
            .unwrap();
        assert_eq!(n, 20 + 5 - 8, "{engine}: A's first 20 and B's 5");
        let v = look(s.as_ref(), A, json!({})).await.unwrap();
        assert_eq!(v["Events"].as_array().unwrap().len(), 10, "{engine}");
        assert_eq!(look(s.as_ref(), B, json!({})).await.unwrap()["Events"], json!([]));
        // The deleted records' resources went with them.
        let v = look(s.as_ref(), A, attr("ResourceName", "team/app")).await.unwrap();
        assert_eq!(v["Events"].as_array().unwrap().len(), 3, "{engine}");
        assert_eq!(
            kura_audit::retention::purge_expired(s.as_ref(), retention, now, 4, 100)
                .await
                .unwrap(),
            0
        );
    }
}

/// Guards: without an EndTime, the pages of one lookup share the first
/// page's "now": the token stays valid as time moves, and a record newer
/// than the first page does not slip into later pages.
#[tokio::test]
async fn paging_without_end_time_keeps_the_first_pages_now() {
    let (stores, _dir) = stores().await;
    let s = stores[0].1.clone();
    fill(s.as_ref()).await;
    let now = T0 + 3_600_000;
    let first = lookup_events(s.as_ref(), A, "us-east-1", &json!({"MaxResults": 20}), now)
        .await
        .unwrap()
        .unwrap();
    let token = first["NextToken"].as_str().unwrap().to_string();
    // A newer record arrives, and time moves on.
    let late = kura_audit::record::build(
        &call(A, "alice", "CreateRepository", "ecr.amazonaws.com", "late", now + 5),
        false,
        A,
    );
    s.trail_append(&[late]).await.unwrap();
    let second = lookup_events(
        s.as_ref(),
        A,
        "us-east-1",
        &json!({"MaxResults": 20, "NextToken": token}),
        now + 60_000,
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(second["Events"].as_array().unwrap().len(), 10);
    assert!(second.get("NextToken").is_none());
}
