//! Retention: records older than the retention period are deleted, oldest
//! first, in bounded batches (each one short transaction), so a large
//! backlog never holds the writer for long.

use std::sync::Arc;
use std::time::Duration;

use kura_jobs::{Job, JobError, JobHandler};
use kura_store::AuditStore;

/// The job kind of retention (scheduled hourly on `kura-jobs`).
pub const RETENTION_JOB: &str = "audit-retention";
/// Batches one retention job deletes at most (the next run continues).
pub const MAX_BATCHES: u32 = 200;

/// Records deleted per transaction.
pub const BATCH: i64 = 5_000;

/// Delete every record older than `retention` before `now_ms`, in batches of
/// `batch`; returns how many went. Stops early after `max_batches` (the
/// next run continues).
pub async fn purge_expired(
    store: &dyn AuditStore,
    retention: Duration,
    now_ms: i64,
    batch: i64,
    max_batches: u32,
) -> kura_store::error::Result<u64> {
    let cutoff = now_ms.saturating_sub(retention.as_millis() as i64);
    let mut total = 0;
    for _ in 0..max_batches {
        let n = store.trail_purge(cutoff, batch.max(1)).await?;
        total += n;
        if (n as i64) < batch {
            break;
        }
        // Let the request path's writes in between batches.
        tokio::task::yield_now().await;
    }
    if total > 0 {
        tracing::info!(
            deleted = total,
            retention_days = retention.as_secs() / 86_400,
            "audit records past their retention deleted"
        );
    }
    Ok(total)
}

/// The retention job: one run deletes what is past the retention, in
/// batches of [`BATCH`], at most [`MAX_BATCHES`] of them (re-runnable: a
/// run cut off by a crash leaves only records the next run deletes).
pub struct RetentionJob {
    /// The trail.
    pub store: Arc<dyn AuditStore>,
    /// How long records are kept.
    pub retention: Duration,
}

#[async_trait::async_trait]
impl JobHandler for RetentionJob {
    fn kind(&self) -> &str {
        RETENTION_JOB
    }

    async fn run(&self, _job: &Job) -> Result<(), JobError> {
        purge_expired(
            self.store.as_ref(),
            self.retention,
            kura_store::now_millis(),
            BATCH,
            MAX_BATCHES,
        )
        .await?;
        Ok(())
    }
}
