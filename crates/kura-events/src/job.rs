//! The delivery job handler: one attempt per run, retried with backoff for 24 hours (or the
//! target's `RetryPolicy`), then the dead letter (`kura jobs list --state dead`).

use kura_jobs::{payload, Job, JobError, JobHandler, NewJob, Queue, RetryPolicy};
use serde_json::Value;

use crate::api::Events;
use crate::deliver::{DeliveryJob, Outcome, Sender};

/// The job kind of one delivery.
pub const DELIVERY_KIND: &str = "events.deliver";

/// Runs `events.deliver` jobs.
pub struct DeliveryHandler {
    events: Events,
    sender: Sender,
    retry: RetryPolicy,
}

impl DeliveryHandler {
    /// A handler sending with `sender`, retrying per `retry` (normally
    /// [`RetryPolicy::for_a_day`]; tests shorten the backoff).
    pub fn new(events: Events, sender: Sender, retry: RetryPolicy) -> DeliveryHandler {
        DeliveryHandler { events, sender, retry }
    }
}

#[async_trait::async_trait]
impl JobHandler for DeliveryHandler {
    fn kind(&self) -> &str {
        DELIVERY_KIND
    }

    fn retry(&self) -> RetryPolicy {
        self.retry
    }

    async fn run(&self, job: &Job) -> Result<(), JobError> {
        let d: DeliveryJob = payload(job)?;
        match self.sender.deliver(&self.events, &d).await {
            Outcome::Delivered => Ok(()),
            Outcome::Fatal(why) => {
                tracing::warn!(rule = %d.rule, target = %d.target_id, event = %d.event["id"], %why,
                    "events: delivery failed for good (dead letter)");
                Err(JobError::Fatal(why))
            }
            Outcome::Retry(why) if d.deadline_ms.is_some_and(|t| kura_store::now_millis() > t) => Err(JobError::Fatal(
                format!("{why}; the event is older than the target's MaximumEventAgeInSeconds"),
            )),
            Outcome::Retry(why) => {
                tracing::info!(rule = %d.rule, target = %d.target_id, event = %d.event["id"], %why,
                    "events: delivery failed; will retry");
                Err(JobError::Retry(why))
            }
        }
    }
}

/// Route an EventBridge-shaped event of `account` and enqueue one delivery job per matching
/// target: unique key = event id + target (a re-emitted event is never sent twice), lane =
/// target + repository (one repository's events reach a slow target in order). The number
/// enqueued.
pub async fn enqueue(
    events: &Events,
    queue: &Queue,
    account: &str,
    event: &Value,
) -> Result<usize, kura_store::StoreError> {
    let routed = events.route(account, event).await?;
    for r in &routed {
        let mut job = NewJob::new(DELIVERY_KIND, &r.job)
            .unique_key(r.unique_key())
            .once()
            .lane(r.lane())
            .max_attempts(u32::MAX);
        if let Some(n) = r.max_retries {
            job = job.max_attempts(n.saturating_add(1));
        }
        queue.enqueue(job).await?;
    }
    Ok(routed.len())
}
