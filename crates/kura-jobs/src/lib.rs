//! Durable background jobs for Kura: one crate owns background work.
//!
//! Jobs live in the metadata store's `jobs` table ([`kura_store::JobStore`],
//! SQLite or PostgreSQL), so they survive a crash and are shared by every
//! node of a deployment.
//!
//! * [`Queue::enqueue`] adds a [`NewJob`] (kind, JSON payload, optional
//!   unique key, lane, start time, attempts) and wakes this node's runner.
//! * A [`JobHandler`] runs the jobs of one kind and says how failures are
//!   retried ([`RetryPolicy`]: exponential backoff with a cap, a maximum
//!   number of attempts and a maximum age, then the dead letter).
//! * One [`Runner`] per node claims due jobs of its handlers' kinds, runs
//!   them with bounded concurrency, keeps each one's lease alive (a job
//!   that loses its lease is cancelled), and completes, retries or
//!   dead-letters them. [`Runner::every`] adds a periodic schedule: one job
//!   per interval slot across all nodes.
//!
//! Guarantees: at-least-once. A job runs again if its node dies or stalls
//! past the lease before recording the outcome, so handlers must be
//! idempotent (or check their effect first). Two runners never hold one
//! job's lease at once.

mod runner;

use std::sync::Arc;
use std::time::Duration;

pub use kura_store::jobs::{JobRow as Job, JobState};
use kura_store::jobs::{JobStore, NewJobRow};
use kura_store::StoreError;
pub use runner::{Runner, RunnerConfig, RunnerHandle};

/// Attempts a job gets unless it says otherwise.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 10;

/// A job to enqueue.
#[derive(Clone, Debug)]
pub struct NewJob {
    kind: String,
    payload: serde_json::Value,
    unique_key: Option<String>,
    once: bool,
    lane: Option<String>,
    run_after: Option<i64>,
    max_attempts: u32,
}

impl NewJob {
    /// A job of `kind` with a JSON payload.
    pub fn new(kind: impl Into<String>, payload: impl serde::Serialize) -> Self {
        NewJob {
            kind: kind.into(),
            payload: serde_json::to_value(payload).unwrap_or(serde_json::Value::Null),
            unique_key: None,
            once: false,
            lane: None,
            run_after: None,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
        }
    }

    /// While a job with this key is queued or running, enqueueing another is
    /// a no-op that returns its id.
    pub fn unique_key(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }

    /// With a unique key: no new job if any job ever had the key (until it
    /// is purged), finished or not.
    pub fn once(mut self) -> Self {
        self.once = true;
        self
    }

    /// Run one at a time with the other jobs of this lane, in enqueue order.
    pub fn lane(mut self, lane: impl Into<String>) -> Self {
        self.lane = Some(lane.into());
        self
    }

    /// Not before this time (ms since the epoch).
    pub fn run_after_ms(mut self, at: i64) -> Self {
        self.run_after = Some(at);
        self
    }

    /// Not before `delay` from now.
    pub fn delay(self, delay: Duration) -> Self {
        self.run_after_ms(kura_store::now_millis() + delay.as_millis() as i64)
    }

    /// Run at most this many times (at least once).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// Its kind.
    pub fn kind(&self) -> &str {
        &self.kind
    }
}

/// A handler's failure.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// Worth trying again later (per the handler's [`RetryPolicy`]).
    #[error("{0}")]
    Retry(String),
    /// Will never succeed: dead letter now.
    #[error("{0}")]
    Fatal(String),
}

impl From<StoreError> for JobError {
    fn from(e: StoreError) -> Self {
        JobError::Retry(e.to_string())
    }
}

/// How a kind's failed jobs are retried: after `base`, doubling per attempt
/// up to `cap`; dead once the job has been tried `max_attempts` times (the
/// job's own limit applies too) or the next try would come later than
/// `max_age` after it was enqueued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first retry's delay.
    pub base: Duration,
    /// The longest delay.
    pub cap: Duration,
    /// Dead after this many attempts.
    pub max_attempts: u32,
    /// Dead when a retry would start later than this after enqueueing.
    pub max_age: Option<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_secs(10),
            cap: Duration::from_secs(3600),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            max_age: Some(Duration::from_secs(24 * 3600)),
        }
    }
}

impl RetryPolicy {
    /// Event delivery's policy: retries with backoff (30 s doubling to 1 h)
    /// for 24 hours, then the dead letter.
    pub fn for_a_day() -> Self {
        RetryPolicy {
            base: Duration::from_secs(30),
            cap: Duration::from_secs(3600),
            max_attempts: u32::MAX,
            max_age: Some(Duration::from_secs(24 * 3600)),
        }
    }

    /// The delay before the retry that follows attempt `attempts` (1-based).
    pub fn delay(&self, attempts: u32) -> Duration {
        let exp = attempts.saturating_sub(1).min(30);
        self.base.saturating_mul(1u32 << exp).min(self.cap)
    }

    /// When the job gets its next try (ms), or `None` for the dead letter.
    pub fn next_try(&self, job: &Job, now: i64) -> Option<i64> {
        let attempts = u32::try_from(job.attempts).unwrap_or(u32::MAX);
        if attempts >= self.max_attempts || job.attempts >= job.max_attempts {
            return None;
        }
        let at = now + self.delay(attempts).as_millis() as i64;
        match self.max_age {
            Some(age) if at > job.created_at + age.as_millis() as i64 => None,
            _ => Some(at),
        }
    }
}

/// Runs the jobs of one kind.
#[async_trait::async_trait]
pub trait JobHandler: Send + Sync + 'static {
    /// The kind it runs.
    fn kind(&self) -> &str;
    /// How its failures are retried.
    fn retry(&self) -> RetryPolicy {
        RetryPolicy::default()
    }
    /// Run one job. It may run more than once (at-least-once): make it
    /// idempotent. Cancelled (dropped) if its lease is lost.
    async fn run(&self, job: &Job) -> Result<(), JobError>;
}

/// The queue: enqueue jobs, and wake this node's runner when it has.
#[derive(Clone)]
pub struct Queue {
    store: Arc<dyn JobStore>,
    wake: Arc<tokio::sync::Notify>,
}

impl Queue {
    /// A queue over the job table.
    pub fn new(store: Arc<dyn JobStore>) -> Self {
        Queue {
            store,
            wake: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// Add a job (or find the one holding its unique key); its id.
    pub async fn enqueue(&self, job: NewJob) -> Result<i64, StoreError> {
        let row = NewJobRow {
            payload: job.payload.to_string(),
            kind: job.kind,
            unique_key: job.unique_key,
            once: job.once,
            lane: job.lane,
            run_after: job.run_after.unwrap_or(0),
            max_attempts: i64::from(job.max_attempts),
        };
        let id = self.store.job_enqueue(&row).await?;
        self.wake.notify_one();
        Ok(id)
    }

    /// The job table.
    pub fn store(&self) -> &Arc<dyn JobStore> {
        &self.store
    }

    /// Wait until a job is enqueued through this queue (or another waker).
    pub(crate) fn waker(&self) -> &Arc<tokio::sync::Notify> {
        &self.wake
    }
}

/// A job's payload as `T`; a payload that does not parse is fatal.
pub fn payload<T: serde::de::DeserializeOwned>(job: &Job) -> Result<T, JobError> {
    serde_json::from_str(&job.payload)
        .map_err(|e| JobError::Fatal(format!("job {} ({}): bad payload: {e}", job.id, job.kind)))
}

/// A runner's owner name: `<host>:<pid>:<random>` (the lease holders' format).
pub fn owner_name() -> String {
    kura_store::gc::lease_holder()
}

/// The job kind that deletes old finished jobs.
pub const PURGE_JOB: &str = "jobs-purge";

/// Deletes done jobs older than `keep_done` and dead letters older than
/// `keep_dead` (`jobs-purge`, scheduled by the binary).
pub struct PurgeJob {
    /// The job table.
    pub store: Arc<dyn JobStore>,
    /// How long done jobs stay listable.
    pub keep_done: Duration,
    /// How long dead letters stay listable (and retryable).
    pub keep_dead: Duration,
}

#[async_trait::async_trait]
impl JobHandler for PurgeJob {
    fn kind(&self) -> &str {
        PURGE_JOB
    }

    async fn run(&self, _job: &Job) -> Result<(), JobError> {
        let now = kura_store::now_millis();
        let done = self
            .store
            .job_purge(JobState::Done, now - self.keep_done.as_millis() as i64)
            .await?;
        let dead = self
            .store
            .job_purge(JobState::Dead, now - self.keep_dead.as_millis() as i64)
            .await?;
        if done + dead > 0 {
            tracing::info!(done, dead, "purged old jobs");
        }
        Ok(())
    }
}

/// Release the running jobs of processes of this host that are gone: for
/// the embedded (SQLite) setup at start-up, so a job cut off by a crash is
/// taken again at once instead of when its lease lapses. Returns their ids.
pub async fn release_orphans(store: &dyn JobStore) -> Result<Vec<i64>, StoreError> {
    let host = kura_store::gc::host_name();
    let mut released = Vec::new();
    let mut after = 0;
    loop {
        let page = store.job_list(Some(JobState::Running), None, after, 500).await?;
        for job in &page {
            let owner = job.lease_owner.as_deref().unwrap_or_default();
            let mut parts = owner.splitn(3, ':');
            let (Some(h), Some(pid)) = (parts.next(), parts.next().and_then(|p| p.parse::<u32>().ok())) else {
                continue;
            };
            // Our own pid is a predecessor's (a container's pid 1): call this
            // before this process's runner starts.
            let alive = pid != std::process::id() && std::path::Path::new(&format!("/proc/{pid}")).exists();
            if h == host && !alive && store.job_release(job.id, owner).await? {
                released.push(job.id);
            }
        }
        match page.last() {
            Some(l) if page.len() == 500 => after = l.id,
            _ => return Ok(released),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(attempts: i64, max: i64, created_at: i64) -> Job {
        Job {
            id: 1,
            kind: "k".into(),
            payload: "{}".into(),
            unique_key: None,
            lane: None,
            state: "running".into(),
            attempts,
            max_attempts: max,
            run_after: 0,
            lease_owner: None,
            lease_until: None,
            last_error: None,
            created_at,
            updated_at: 0,
            finished_at: None,
        }
    }

    /// Backoff doubles from the base and stops at the cap; attempts and age
    /// end in the dead letter.
    #[test]
    fn backoff_doubles_to_a_cap_then_dead() {
        let p = RetryPolicy {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
            max_attempts: 100,
            max_age: Some(Duration::from_secs(3600)),
        };
        assert_eq!(p.delay(1), Duration::from_secs(1));
        assert_eq!(p.delay(2), Duration::from_secs(2));
        assert_eq!(p.delay(5), Duration::from_secs(16));
        assert_eq!(p.delay(7), Duration::from_secs(60));
        assert_eq!(p.delay(1000), Duration::from_secs(60));
        assert_eq!(p.next_try(&job(1, 10, 0), 0), Some(1000));
        assert_eq!(p.next_try(&job(10, 10, 0), 0), None, "the job's own limit");
        let tight = RetryPolicy { max_attempts: 3, ..p };
        assert_eq!(tight.next_try(&job(3, 10, 0), 0), None, "the policy's limit");
        assert_eq!(p.next_try(&job(1, 10, 0), 3_600_000), None, "too old");
        let day = RetryPolicy::for_a_day();
        assert!(
            day.next_try(&job(30, i64::MAX, 0), 3_600_000).is_some(),
            "retried within the day"
        );
        assert_eq!(
            day.next_try(&job(3, i64::MAX, 0), 25 * 3_600_000),
            None,
            "24 h then dead"
        );
    }
}
