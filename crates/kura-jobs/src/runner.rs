//! The per-node runner: claims, runs, heartbeats and settles jobs, and
//! enqueues periodic schedules.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kura_store::jobs::{FailAction, JobStore};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::{Job, JobError, JobHandler, NewJob, Queue};

/// How a node's runner works.
#[derive(Clone, Debug)]
pub struct RunnerConfig {
    /// Jobs run at once on this node (`--job-workers`).
    pub workers: usize,
    /// How often the queue is looked at without a wake-up (`--job-poll-interval`).
    pub poll: Duration,
    /// How long a claimed job is held without a heartbeat: a job whose node
    /// dies is taken again after at most this long.
    pub lease: Duration,
    /// How often a running job's lease is renewed (well under `lease`).
    pub heartbeat: Duration,
    /// On shutdown, how long running jobs may take to finish before they
    /// are cancelled and released to other runners.
    pub shutdown_grace: Duration,
    /// Who holds the leases (unique per runner; see [`crate::owner_name`]).
    pub owner: String,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig {
            workers: 4,
            poll: Duration::from_secs(1),
            lease: Duration::from_secs(30),
            heartbeat: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(5),
            owner: crate::owner_name(),
        }
    }
}

struct Schedule {
    kind: String,
    every_ms: i64,
    payload: serde_json::Value,
    last_slot: Option<i64>,
}

/// One per node: runs the registered kinds' jobs (see the crate docs).
pub struct Runner {
    queue: Queue,
    config: RunnerConfig,
    handlers: HashMap<String, Arc<dyn JobHandler>>,
    schedules: Vec<Schedule>,
}

/// A started runner.
pub struct RunnerHandle {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RunnerHandle {
    /// Stop claiming, give running jobs [`RunnerConfig::shutdown_grace`] to
    /// finish, release the rest (another runner takes them), and return.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }

    /// Stop at once, as a crash would: running jobs are dropped without
    /// releasing their leases (they lapse). For tests.
    pub fn abort(self) {
        self.task.abort();
    }
}

impl Runner {
    /// A runner over `queue` (share the queue with the code that enqueues,
    /// so its jobs start at once).
    pub fn new(queue: Queue, config: RunnerConfig) -> Self {
        Runner {
            queue,
            config,
            handlers: HashMap::new(),
            schedules: Vec::new(),
        }
    }

    /// Run this handler's kind on this node.
    pub fn register(&mut self, handler: Arc<dyn JobHandler>) -> &mut Self {
        self.handlers.insert(handler.kind().to_string(), handler);
        self
    }

    /// Enqueue a `kind` job with `payload` once per `interval` slot (slots
    /// count from the epoch, so every node agrees). The slot is the job's
    /// unique key: N nodes with the same schedule produce one run per slot.
    /// Runs of one schedule share a lane, so they never overlap. A zero
    /// interval adds nothing.
    pub fn every(&mut self, kind: &str, interval: Duration, payload: impl serde::Serialize) -> &mut Self {
        let every_ms = interval.as_millis() as i64;
        if every_ms > 0 {
            self.schedules.push(Schedule {
                kind: kind.to_string(),
                every_ms,
                payload: serde_json::to_value(payload).unwrap_or(serde_json::Value::Null),
                last_slot: None,
            });
        }
        self
    }

    /// Start the runner on the current tokio runtime.
    pub fn start(self) -> RunnerHandle {
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(self.run(rx));
        RunnerHandle { stop, task }
    }

    /// Enqueue the current slot of each schedule not enqueued yet; how long
    /// until the next slot begins.
    async fn schedule(&mut self) -> Duration {
        let now = kura_store::now_millis();
        let mut next = i64::MAX;
        for s in &mut self.schedules {
            let slot = now.div_euclid(s.every_ms);
            next = next.min((slot + 1) * s.every_ms - now);
            if s.last_slot == Some(slot) {
                continue;
            }
            let job = NewJob::new(s.kind.clone(), s.payload.clone())
                .unique_key(format!("every:{}:{}:{slot}", s.kind, s.every_ms))
                .once()
                .lane(format!("every:{}", s.kind))
                .max_attempts(3);
            match self.queue.enqueue(job).await {
                Ok(_) => s.last_slot = Some(slot),
                Err(e) => tracing::warn!(kind = %s.kind, error = %e, "could not enqueue a scheduled job"),
            }
        }
        Duration::from_millis(next.clamp(1, i64::MAX) as u64)
    }

    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let kinds: Vec<String> = self.handlers.keys().cloned().collect();
        let slots = Arc::new(Semaphore::new(self.config.workers.max(1)));
        let mut tasks = JoinSet::new();
        let lease_ms = self.config.lease.as_millis() as i64;
        let store = self.queue.store().clone();
        let waker = self.queue.waker().clone();
        tracing::info!(owner = %self.config.owner, kinds = ?kinds, workers = self.config.workers, "job runner started");
        loop {
            if *stop.borrow() {
                break;
            }
            let until_slot = self.schedule().await;
            while tasks.try_join_next().is_some() {}
            let free = slots.available_permits();
            let mut claimed = 0;
            if free > 0 && !kinds.is_empty() {
                match store.job_claim(&kinds, &self.config.owner, lease_ms, free as i64).await {
                    Ok(jobs) => {
                        for job in jobs {
                            let Ok(permit) = slots.clone().try_acquire_owned() else {
                                break;
                            };
                            let Some(handler) = self.handlers.get(&job.kind).cloned() else {
                                continue;
                            };
                            claimed += 1;
                            let (store, config, stop, waker) =
                                (store.clone(), self.config.clone(), stop.clone(), waker.clone());
                            tasks.spawn(async move {
                                run_one(store.as_ref(), handler, job, &config, stop).await;
                                drop(permit);
                                waker.notify_one();
                            });
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "claiming jobs failed"),
                }
            }
            if free > 0 && claimed == free {
                // Maybe more are due.
                continue;
            }
            let wait = self.config.poll.min(until_slot);
            tokio::select! {
                _ = waker.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
            }
        }
        // Running jobs get their grace period (see run_one), then are released.
        while tasks.join_next().await.is_some() {}
        tracing::info!(owner = %self.config.owner, "job runner stopped");
    }
}

/// Run one claimed job to its outcome, renewing its lease meanwhile.
async fn run_one(
    store: &dyn JobStore,
    handler: Arc<dyn JobHandler>,
    job: Job,
    config: &RunnerConfig,
    mut stop: watch::Receiver<bool>,
) {
    let (id, owner) = (job.id, config.owner.as_str());
    let lease_ms = config.lease.as_millis() as i64;
    tracing::debug!(id, kind = %job.kind, attempt = job.attempts, "job started");
    let mut work = AbortOnDrop({
        let (handler, job) = (handler.clone(), job.clone());
        tokio::spawn(async move { handler.run(&job).await })
    });
    let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + config.heartbeat, config.heartbeat);
    let grace = async {
        let _ = stop.wait_for(|s| *s).await;
        tokio::time::sleep(config.shutdown_grace).await;
    };
    tokio::pin!(grace);
    let outcome = loop {
        tokio::select! {
            r = &mut work.0 => break r,
            _ = beat.tick() => match store.job_heartbeat(id, owner, lease_ms).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(id, kind = %job.kind, "a job lost its lease (another runner has it now); cancelled here");
                    work.0.abort();
                    return;
                }
                Err(e) => tracing::warn!(id, error = %e, "renewing a job's lease failed"),
            },
            _ = &mut grace => {
                work.0.abort();
                tracing::info!(id, kind = %job.kind, "shutting down: a running job is released to other runners");
                if let Err(e) = store.job_release(id, owner).await {
                    tracing::warn!(id, error = %e, "releasing a job failed (its lease will lapse)");
                }
                return;
            }
        }
    };
    let result = outcome.unwrap_or_else(|e| Err(JobError::Retry(format!("the job's handler stopped: {e}"))));
    // Metrics (names as kura-metrics describes them; kinds are the handlers' own, a bounded set).
    let run_result = if result.is_ok() { "ok" } else { "failed" };
    metrics::counter!("kura_job_runs_total", "kind" => job.kind.clone(), "result" => run_result).increment(1);
    let settled = match result {
        Ok(()) => store.job_complete(id, owner).await.map(|ok| ok.then_some("done")),
        Err(err) => {
            let (action, msg) = match &err {
                JobError::Fatal(m) => (FailAction::Dead, m),
                JobError::Retry(m) => (
                    match handler.retry().next_try(&job, kura_store::now_millis()) {
                        Some(at) => FailAction::RetryAt(at),
                        None => FailAction::Dead,
                    },
                    m,
                ),
            };
            let state = store.job_fail(id, owner, msg, action).await;
            if let Ok(Some(s)) = &state {
                let outcome = if s.as_str() == "dead" { "dead" } else { "retry" };
                metrics::counter!("kura_job_failures_total", "kind" => job.kind.clone(), "outcome" => outcome)
                    .increment(1);
                tracing::warn!(id, kind = %job.kind, attempt = job.attempts, state = s.as_str(), error = %msg, "a job failed");
            }
            state.map(|s| s.map(|s| s.as_str()))
        }
    };
    match settled {
        Ok(Some(state)) => tracing::debug!(id, kind = %job.kind, state, "job settled"),
        Ok(None) => {
            tracing::warn!(id, kind = %job.kind, "a job finished after losing its lease; its outcome was not recorded")
        }
        Err(e) => {
            tracing::warn!(id, kind = %job.kind, error = %e, "recording a job's outcome failed (it will run again)")
        }
    }
}

/// The handler's task, cancelled when the runner lets go of it (also when
/// the runner itself is dropped mid-job).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
