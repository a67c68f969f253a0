//! Delivery through the durable job queue and a real runner (SQLite, or PostgreSQL with
//! `KURA_TEST_DATABASE_URL`), to a local HTTP receiver. Acceptance point 4: one job per
//! (event, target), exactly one delivery; a 500 then 200 is delivered after a retry; a target
//! that always answers 4xx, or is unreachable past the retry window, ends in the dead letter.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Receiver;
use kura_auth::seal::MasterKey;
use kura_events::deliver::Sender;
use kura_events::ecr::{EcrDetail, EcrEvent};
use kura_events::job::{enqueue, DeliveryHandler, DELIVERY_KIND};
use kura_events::Events;
use kura_jobs::{Queue, RetryPolicy, Runner, RunnerConfig, RunnerHandle};
use kura_store::jobs::JobState;
use kura_store::{JobStore, SqlMetaStore};
use serde_json::{json, Value};

const A: &str = "111111111111";
const REGION: &str = "us-east-1";

struct Setup {
    events: Events,
    queue: Queue,
    store: Arc<SqlMetaStore>,
    _dir: tempfile::TempDir,
}

async fn setup(endpoint: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(kura_store::testdb::from_env_or_sqlite(dir.path().join("meta.db")).await);
    let events = Events::new(store.clone(), MasterKey::generate(), REGION);
    let c = events
        .call(
            "CreateConnection",
            A,
            &json!({"Name": "c", "AuthorizationType": "API_KEY",
                    "AuthParameters": {"ApiKeyAuthParameters": {"ApiKeyName": "x-api-key", "ApiKeyValue": "k"}}}),
        )
        .await
        .unwrap();
    events
        .call(
            "CreateApiDestination",
            A,
            &json!({"Name": "d", "ConnectionArn": c["ConnectionArn"], "InvocationEndpoint": endpoint, "HttpMethod": "POST"}),
        )
        .await
        .unwrap();
    let pattern = r#"{"source":["aws.ecr"],"detail":{"repository-name":[{"prefix":"prod/"}]}}"#;
    events
        .call("PutRule", A, &json!({"Name": "r", "EventPattern": pattern}))
        .await
        .unwrap();
    events
        .call(
            "PutTargets",
            A,
            &json!({"Rule": "r", "Targets": [{"Id": "t", "Arn": format!("arn:aws:events:{REGION}:{A}:api-destination/d")}]}),
        )
        .await
        .unwrap();
    let queue = Queue::new(store.clone());
    Setup {
        events,
        queue,
        store,
        _dir: dir,
    }
}

fn runner(s: &Setup, retry: RetryPolicy) -> RunnerHandle {
    let mut r = Runner::new(
        s.queue.clone(),
        RunnerConfig {
            workers: 4,
            poll: Duration::from_millis(50),
            lease: Duration::from_secs(30),
            heartbeat: Duration::from_secs(10),
            shutdown_grace: Duration::from_millis(0),
            owner: "test".into(),
        },
    );
    r.register(Arc::new(DeliveryHandler::new(
        s.events.clone(),
        Sender::new(Duration::from_secs(2)),
        retry,
    )));
    r.start()
}

fn quick(max_attempts: u32, max_age: Option<Duration>) -> RetryPolicy {
    RetryPolicy {
        base: Duration::from_millis(50),
        cap: Duration::from_millis(100),
        max_attempts,
        max_age,
    }
}

fn push(repo: &str, n: u32) -> Value {
    EcrEvent {
        id: format!("00000000-0000-4000-8000-{n:012}"),
        time_ms: 1_700_000_000_000,
        account: A.into(),
        region: REGION.into(),
        repository: repo.into(),
        detail: EcrDetail::Push {
            digest: format!("sha256:{n:064}"),
            tag: Some(format!("v{n}")),
        },
    }
    .to_json()
}

async fn until(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn jobs(store: &SqlMetaStore, state: JobState) -> usize {
    store
        .job_list(Some(state), Some(DELIVERY_KIND), 0, 1000)
        .await
        .unwrap()
        .len()
}

/// One matching event → one job → exactly one request; enqueueing the same event again adds
/// no job (unique key = event + target); a non-matching event enqueues nothing.
#[tokio::test]
async fn one_event_one_delivery() {
    let rx = Receiver::default();
    let base = rx.start().await;
    let s = setup(&format!("{base}/hook")).await;
    assert_eq!(enqueue(&s.events, &s.queue, A, &push("dev/x", 1)).await.unwrap(), 0);
    assert_eq!(enqueue(&s.events, &s.queue, A, &push("prod/x", 2)).await.unwrap(), 1);
    assert_eq!(enqueue(&s.events, &s.queue, A, &push("prod/x", 2)).await.unwrap(), 1);
    let h = runner(&s, quick(10, None));
    until("delivered", async || jobs(&s.store, JobState::Done).await == 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.count(), 1);
    let body: Value = serde_json::from_slice(&rx.all()[0].body).unwrap();
    assert_eq!(body["detail"]["repository-name"], "prod/x");
    assert_eq!(
        jobs(&s.store, JobState::Done).await,
        1,
        "the duplicate enqueue made no second job"
    );
    h.shutdown().await;
}

/// 500 then 200: delivered on the second attempt.
#[tokio::test]
async fn retried_after_a_server_error() {
    let rx = Receiver::default();
    rx.statuses.lock().unwrap().push_back(500);
    let base = rx.start().await;
    let s = setup(&format!("{base}/hook")).await;
    enqueue(&s.events, &s.queue, A, &push("prod/x", 1)).await.unwrap();
    let h = runner(&s, quick(10, None));
    until("delivered", async || jobs(&s.store, JobState::Done).await == 1).await;
    assert_eq!(rx.count(), 2, "one failed attempt, one delivery");
    h.shutdown().await;
}

/// Always 4xx: dead at once (no retries). Unreachable past the retry window: dead. Both are
/// listed as dead letters with the reason.
#[tokio::test]
async fn dead_letters() {
    let rx = Receiver::default();
    *rx.always.lock().unwrap() = Some(403);
    let base = rx.start().await;
    let s = setup(&format!("{base}/hook")).await;
    enqueue(&s.events, &s.queue, A, &push("prod/x", 1)).await.unwrap();
    let h = runner(&s, quick(10, None));
    until("dead", async || jobs(&s.store, JobState::Dead).await == 1).await;
    assert_eq!(rx.count(), 1, "a 4xx is not retried");
    let dead = s
        .store
        .job_list(Some(JobState::Dead), Some(DELIVERY_KIND), 0, 10)
        .await
        .unwrap();
    assert!(dead[0].last_error.as_deref().unwrap_or_default().contains("403"));
    h.shutdown().await;

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let s = setup(&format!("http://127.0.0.1:{port}/hook")).await;
    enqueue(&s.events, &s.queue, A, &push("prod/y", 2)).await.unwrap();
    let h = runner(&s, quick(u32::MAX, Some(Duration::from_millis(400))));
    until("dead", async || jobs(&s.store, JobState::Dead).await == 1).await;
    let dead = s
        .store
        .job_list(Some(JobState::Dead), Some(DELIVERY_KIND), 0, 10)
        .await
        .unwrap();
    assert!(dead[0].attempts > 1, "retried before giving up");
    h.shutdown().await;
}

/// Events of one repository reach a slow target in order (one lane per target and repository).
#[tokio::test]
async fn order_per_repository_is_kept() {
    let rx = Receiver::default();
    // The first attempt of the first event fails: the later events of the repository wait.
    rx.statuses.lock().unwrap().push_back(503);
    let base = rx.start().await;
    let s = setup(&format!("{base}/hook")).await;
    for n in 1..=5 {
        enqueue(&s.events, &s.queue, A, &push("prod/ordered", n)).await.unwrap();
    }
    let h = runner(&s, quick(10, None));
    until("all delivered", async || jobs(&s.store, JobState::Done).await == 5).await;
    let tags: Vec<String> = rx
        .all()
        .iter()
        .skip(1)
        .map(|g| {
            serde_json::from_slice::<Value>(&g.body).unwrap()["detail"]["image-tag"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(tags, ["v1", "v2", "v3", "v4", "v5"]);
    h.shutdown().await;
}
