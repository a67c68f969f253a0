//! The durable job table (`jobs`, schema 9): background work that survives a
//! crash. `kura-jobs` builds typed jobs, handlers and the per-node runner on
//! this store; the SQL implementation is in `sql_jobs.rs`.
//!
//! A job is `queued` until a runner claims it (`running`, with a lease: its
//! owner and a deadline the runner keeps extending). It ends `done`, or goes
//! back to `queued` with a later `run_after` to be retried, or `dead` when
//! its attempts are exhausted or its error is fatal (a dead letter an
//! operator can list and retry). A running job whose lease lapsed (its node
//! died or stalled) is claimable again: delivery is at-least-once.
//!
//! * unique key: while a job with the key is queued or running, enqueueing
//!   another is a no-op returning the existing job's id (a burst of identical
//!   requests runs once). With [`NewJobRow::once`] any job with the key, also
//!   a finished one, makes it a no-op (periodic schedules: one run per slot).
//! * lane: the jobs of one lane run one at a time, in id order: a job is not
//!   claimed while an earlier job of its lane is queued or running (also one
//!   waiting for a retry); a dead one no longer holds the lane up.

use async_trait::async_trait;

use crate::error::Result;

/// A job's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JobState {
    /// Waiting to be claimed (from `run_after` on).
    Queued,
    /// Claimed by a runner that holds its lease.
    Running,
    /// Finished successfully.
    Done,
    /// Failed for good (attempts exhausted, or a fatal error): a dead letter.
    Dead,
}

impl JobState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Dead => "dead",
        }
    }

    /// Parse a stored name.
    pub fn parse(s: &str) -> Option<JobState> {
        Some(match s {
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "done" => JobState::Done,
            "dead" => JobState::Dead,
            _ => return None,
        })
    }
}

/// A job to add.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewJobRow {
    /// What runs it (the handler's kind).
    pub kind: String,
    /// Its input, JSON text.
    pub payload: String,
    /// At most one queued or running job per key.
    pub unique_key: Option<String>,
    /// With `unique_key`: no new job if any job, finished or not, has the key.
    pub once: bool,
    /// Jobs of one lane run one at a time in id order.
    pub lane: Option<String>,
    /// Not claimed before this time (ms).
    pub run_after: i64,
    /// Runs at most this many times (at least 1).
    pub max_attempts: i64,
}

/// A stored job.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct JobRow {
    /// Its id (ascending in enqueue order).
    pub id: i64,
    /// Its kind.
    pub kind: String,
    /// Its input, JSON text.
    pub payload: String,
    /// Its unique key.
    pub unique_key: Option<String>,
    /// Its lane.
    pub lane: Option<String>,
    /// `queued`, `running`, `done` or `dead` (see [`JobState`]).
    pub state: String,
    /// Times it was claimed.
    pub attempts: i64,
    /// The most times it may be claimed.
    pub max_attempts: i64,
    /// Not claimed before (ms).
    pub run_after: i64,
    /// The runner that holds (or last held) its lease.
    pub lease_owner: Option<String>,
    /// When that lease lapses (ms).
    pub lease_until: Option<i64>,
    /// The last failure's message.
    pub last_error: Option<String>,
    /// Enqueued (ms).
    pub created_at: i64,
    /// Last changed (ms).
    pub updated_at: i64,
    /// Done or dead since (ms).
    pub finished_at: Option<i64>,
}

/// How a failed job goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailAction {
    /// Run it again from this time (ms), if it has attempts left (else dead).
    RetryAt(i64),
    /// Dead letter now.
    Dead,
}

/// The job table.
#[async_trait]
pub trait JobStore: Send + Sync + 'static {
    /// Add a job; its id. With a unique key already taken (see [`NewJobRow`]),
    /// nothing is added and the existing job's id is returned.
    async fn job_enqueue(&self, job: &NewJobRow) -> Result<i64>;
    /// Claim up to `limit` due jobs of these kinds for `owner`, with a lease
    /// until `now + lease_ms`: queued jobs whose `run_after` has come, and
    /// running jobs whose lease lapsed. Each claim counts an attempt. Two
    /// claimers never get the same job while its lease holds.
    async fn job_claim(&self, kinds: &[String], owner: &str, lease_ms: i64, limit: i64) -> Result<Vec<JobRow>>;
    /// Extend a running job's lease to `now + lease_ms`; false if `owner`
    /// no longer holds it (lapsed and claimed by another, or finished).
    async fn job_heartbeat(&self, id: i64, owner: &str, lease_ms: i64) -> Result<bool>;
    /// Let go of a running job without finishing it (its runner is stopping,
    /// or died): its lease lapses now, so any runner may claim it; the
    /// attempt still counts. False if `owner` does not hold it.
    async fn job_release(&self, id: i64, owner: &str) -> Result<bool>;
    /// Mark a job done; false if `owner` no longer holds it.
    async fn job_complete(&self, id: i64, owner: &str) -> Result<bool>;
    /// Record a failure: queue it again or make it dead (also when its
    /// attempts are used up). The state it is left in; `None` if `owner` no
    /// longer holds it.
    async fn job_fail(&self, id: i64, owner: &str, error: &str, action: FailAction) -> Result<Option<JobState>>;
    /// One job.
    async fn job_get(&self, id: i64) -> Result<Option<JobRow>>;
    /// Jobs after id `after`, by id, optionally of one state and kind.
    async fn job_list(
        &self,
        state: Option<JobState>,
        kind: Option<&str>,
        after: i64,
        limit: i64,
    ) -> Result<Vec<JobRow>>;
    /// Queue a dead job again with fresh attempts; false if it is not dead
    /// (or another job with its unique key is queued or running).
    async fn job_retry(&self, id: i64) -> Result<bool>;
    /// Delete jobs in `state` (done or dead) that finished before `before` (ms).
    async fn job_purge(&self, state: JobState, before: i64) -> Result<u64>;
}
