//! The runner against a real job table: SQLite, or PostgreSQL when
//! `KURA_TEST_DATABASE_URL` names a server (a fresh database per test).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kura_jobs::{Job, JobError, JobHandler, NewJob, Queue, RetryPolicy, Runner, RunnerConfig};
use kura_store::jobs::JobState;
use kura_store::{JobStore, SqlMetaStore};

async fn store(dir: &tempfile::TempDir) -> Arc<SqlMetaStore> {
    Arc::new(kura_store::testdb::from_env_or_sqlite(dir.path().join("meta.db")).await)
}

fn config(owner: &str) -> RunnerConfig {
    RunnerConfig {
        workers: 4,
        poll: Duration::from_millis(50),
        lease: Duration::from_secs(30),
        heartbeat: Duration::from_secs(10),
        shutdown_grace: Duration::from_millis(0),
        owner: owner.to_string(),
    }
}

/// Wait (bounded) until `cond` holds.
async fn until(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn state(s: &dyn JobStore, id: i64) -> String {
    s.job_get(id).await.unwrap().unwrap().state
}

/// Runs a closure per job.
struct Handler<F> {
    kind: &'static str,
    policy: RetryPolicy,
    f: F,
}

#[async_trait::async_trait]
impl<F, Fut> JobHandler for Handler<F>
where
    F: Fn(Job) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), JobError>> + Send,
{
    fn kind(&self) -> &str {
        self.kind
    }
    fn retry(&self) -> RetryPolicy {
        self.policy
    }
    async fn run(&self, job: &Job) -> Result<(), JobError> {
        (self.f)(job.clone()).await
    }
}

fn handler<F, Fut>(kind: &'static str, f: F) -> Arc<dyn JobHandler>
where
    F: Fn(Job) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), JobError>> + Send + 'static,
{
    Arc::new(Handler {
        kind,
        policy: RetryPolicy::default(),
        f,
    })
}

/// A job enqueued on this node starts at once, not at the next poll (the
/// poll here is an hour: fails if the in-process wake-up broke).
#[tokio::test]
async fn an_enqueued_job_starts_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir).await;
    let q = Queue::new(s.clone());
    let ran = Arc::new(AtomicUsize::new(0));
    let mut r = Runner::new(
        q.clone(),
        RunnerConfig {
            poll: Duration::from_secs(3600),
            ..config("a")
        },
    );
    let r2 = ran.clone();
    r.register(handler("k", move |_| {
        let r2 = r2.clone();
        async move {
            r2.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }));
    let h = r.start();
    tokio::time::sleep(Duration::from_millis(100)).await; // the runner is idle, waiting
    let id = q.enqueue(NewJob::new("k", serde_json::json!({}))).await.unwrap();
    until("the job is done", async || state(s.as_ref(), id).await == "done").await;
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    h.shutdown().await;
}

/// A runner that dies mid-job (no release, no more heartbeats): once the
/// lease lapses another runner takes the job, and it completes exactly once.
#[tokio::test]
async fn a_dead_runners_job_is_taken_over_and_completes_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir).await;
    let q = Queue::new(s.clone());
    let started = Arc::new(AtomicUsize::new(0));
    let completed = Arc::new(AtomicUsize::new(0));
    let short = |owner: &str| RunnerConfig {
        lease: Duration::from_millis(400),
        heartbeat: Duration::from_millis(100),
        ..config(owner)
    };
    // Runner A: starts the job and hangs.
    let mut a = Runner::new(q.clone(), short("a"));
    let st = started.clone();
    a.register(handler("work", move |_| {
        let st = st.clone();
        async move {
            st.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<()>().await;
            Ok(())
        }
    }));
    let a = a.start();
    let id = q
        .enqueue(NewJob::new("work", serde_json::json!({"n": 1})))
        .await
        .unwrap();
    until("A started the job", async || started.load(Ordering::SeqCst) == 1).await;
    a.abort(); // killed: no release, its lease lapses
    let row = s.job_get(id).await.unwrap().unwrap();
    assert_eq!((row.state.as_str(), row.lease_owner.as_deref()), ("running", Some("a")));
    // Runner B takes it over once the lease lapsed.
    let mut b = Runner::new(Queue::new(s.clone()), short("b"));
    let c = completed.clone();
    b.register(handler("work", move |_| {
        let c = c.clone();
        async move {
            c.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }));
    let b = b.start();
    until("B completed it", async || state(s.as_ref(), id).await == "done").await;
    let row = s.job_get(id).await.unwrap().unwrap();
    assert_eq!((row.attempts, row.lease_owner.as_deref()), (2, Some("b")));
    tokio::time::sleep(Duration::from_millis(600)).await; // longer than a lease
    assert_eq!(completed.load(Ordering::SeqCst), 1, "completed exactly once");
    assert_eq!(started.load(Ordering::SeqCst), 1, "A never ran it again");
    b.shutdown().await;
}

/// Two runners on one database, many jobs: no job ever runs in two places at
/// once, and each runs exactly once (on PostgreSQL this is the
/// `FOR UPDATE SKIP LOCKED` claim; counted in the handler).
#[tokio::test]
async fn two_runners_never_run_one_job_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir).await;
    let running: Arc<Mutex<HashMap<i64, usize>>> = Default::default();
    let runs: Arc<Mutex<HashMap<i64, usize>>> = Default::default();
    let overlap = Arc::new(AtomicBool::new(false));
    let by_runner = [Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0))];
    let mut handles = Vec::new();
    let queues: Vec<Queue> = (0..2).map(|_| Queue::new(s.clone())).collect();
    for (i, q) in queues.iter().enumerate() {
        let mut r = Runner::new(q.clone(), config(&format!("runner-{i}")));
        let (running, runs, overlap, mine) = (running.clone(), runs.clone(), overlap.clone(), by_runner[i].clone());
        r.register(handler("race", move |job| {
            let (running, runs, overlap, mine) = (running.clone(), runs.clone(), overlap.clone(), mine.clone());
            async move {
                {
                    let mut r = running.lock().unwrap();
                    let n = r.entry(job.id).or_default();
                    *n += 1;
                    if *n > 1 {
                        overlap.store(true, Ordering::SeqCst);
                    }
                }
                tokio::time::sleep(Duration::from_millis(3)).await;
                *running.lock().unwrap().get_mut(&job.id).unwrap() -= 1;
                *runs.lock().unwrap().entry(job.id).or_default() += 1;
                mine.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        }));
        handles.push(r.start());
    }
    let mut ids = Vec::new();
    for i in 0..300 {
        let q = &queues[i % 2];
        ids.push(
            q.enqueue(NewJob::new("race", serde_json::json!({"i": i})))
                .await
                .unwrap(),
        );
    }
    until("every job ran", async || runs.lock().unwrap().len() == ids.len()).await;
    until("every job is done", async || {
        s.job_list(Some(JobState::Done), Some("race"), 0, 1000)
            .await
            .unwrap()
            .len()
            == ids.len()
    })
    .await;
    assert!(!overlap.load(Ordering::SeqCst), "a job ran in two places at once");
    assert!(runs.lock().unwrap().values().all(|n| *n == 1), "a job ran twice");
    assert!(
        by_runner.iter().all(|n| n.load(Ordering::SeqCst) > 0),
        "both runners took part: {by_runner:?}"
    );
    for h in handles {
        h.shutdown().await;
    }
}

/// A handler that keeps failing: retried with backoff, then dead after its
/// policy's attempts, with the last error kept; a fatal error is dead at once.
#[tokio::test]
async fn a_failing_job_goes_dead_after_its_retries() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir).await;
    let q = Queue::new(s.clone());
    let tries = Arc::new(AtomicUsize::new(0));
    let mut r = Runner::new(q.clone(), config("a"));
    let t = tries.clone();
    r.register(Arc::new(Handler {
        kind: "flaky",
        policy: RetryPolicy {
            base: Duration::from_millis(20),
            cap: Duration::from_millis(40),
            max_attempts: 3,
            max_age: None,
        },
        f: move |job: Job| {
            let t = t.clone();
            async move {
                t.fetch_add(1, Ordering::SeqCst);
                if job.payload.contains("fatal") {
                    Err(JobError::Fatal("cannot ever work".into()))
                } else {
                    Err(JobError::Retry(format!("target down (attempt {})", job.attempts)))
                }
            }
        },
    }));
    let h = r.start();
    let id = q.enqueue(NewJob::new("flaky", serde_json::json!({}))).await.unwrap();
    until("the job is dead", async || state(s.as_ref(), id).await == "dead").await;
    let row = s.job_get(id).await.unwrap().unwrap();
    assert_eq!(row.attempts, 3);
    assert_eq!(row.last_error.as_deref(), Some("target down (attempt 3)"));
    assert_eq!(tries.load(Ordering::SeqCst), 3);
    assert_eq!(s.job_list(Some(JobState::Dead), None, 0, 10).await.unwrap().len(), 1);

    let fatal = q
        .enqueue(NewJob::new("flaky", serde_json::json!({"fatal": true})))
        .await
        .unwrap();
    until("the fatal job is dead", async || {
        state(s.as_ref(), fatal).await == "dead"
    })
    .await;
    assert_eq!(s.job_get(fatal).await.unwrap().unwrap().attempts, 1, "fatal: no retry");
    h.shutdown().await;
}

/// Two runners with the same schedule: one run per slot (the slot is the
/// unique key), never two runs of a slot.
#[tokio::test]
async fn a_schedule_runs_once_per_slot_across_runners() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir).await;
    let keys: Arc<Mutex<Vec<String>>> = Default::default();
    let mut handles = Vec::new();
    for i in 0..2 {
        let mut r = Runner::new(Queue::new(s.clone()), config(&format!("n{i}")));
        let keys = keys.clone();
        r.register(handler("tick", move |job| {
            let keys = keys.clone();
            async move {
                keys.lock().unwrap().push(job.unique_key.clone().unwrap_or_default());
                Ok(())
            }
        }));
        r.every("tick", Duration::from_millis(150), serde_json::json!({"what": "tick"}));
        handles.push(r.start());
    }
    until("several slots ran", async || keys.lock().unwrap().len() >= 5).await;
    for h in handles {
        h.shutdown().await;
    }
    let keys = keys.lock().unwrap().clone();
    let mut unique = keys.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), keys.len(), "a slot ran twice: {keys:?}");
    let rows = s.job_list(None, Some("tick"), 0, 1000).await.unwrap();
    assert_eq!(rows.len(), keys.len(), "one job per slot");
}

/// A job whose lease is taken by another runner is cancelled where it runs;
/// on shutdown a running job is released and claimable at once.
#[tokio::test]
async fn a_lost_lease_cancels_and_shutdown_releases() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir).await;
    let q = Queue::new(s.clone());
    let cancelled = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(AtomicUsize::new(0));
    struct Flag(Arc<AtomicUsize>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let mut r = Runner::new(
        q.clone(),
        RunnerConfig {
            heartbeat: Duration::from_millis(50),
            ..config("a")
        },
    );
    let (c, st) = (cancelled.clone(), started.clone());
    r.register(handler("long", move |_| {
        let (c, st) = (c.clone(), st.clone());
        async move {
            let _flag = Flag(c);
            st.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<()>().await;
            Ok(())
        }
    }));
    let h = r.start();
    let id = q.enqueue(NewJob::new("long", serde_json::json!({}))).await.unwrap();
    until("it started", async || started.load(Ordering::SeqCst) == 1).await;
    // Another runner takes the lease (as if A had stalled past it).
    assert!(s.job_release(id, "a").await.unwrap());
    assert_eq!(
        s.job_claim(&["long".to_string()], "thief", 60_000, 1)
            .await
            .unwrap()
            .len(),
        1
    );
    until("A cancelled its copy", async || cancelled.load(Ordering::SeqCst) == 1).await;
    assert!(s.job_complete(id, "thief").await.unwrap());

    // Shutdown releases a running job.
    let id2 = q
        .enqueue(NewJob::new("long", serde_json::json!({"n": 2})))
        .await
        .unwrap();
    until("it started", async || started.load(Ordering::SeqCst) == 2).await;
    h.shutdown().await;
    assert_eq!(cancelled.load(Ordering::SeqCst), 2);
    let got = s.job_claim(&["long".to_string()], "other", 60_000, 1).await.unwrap();
    assert_eq!(
        got.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![id2],
        "released: claimable at once"
    );
}
