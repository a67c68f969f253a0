//! Retention: records older than the retention period are deleted, oldest
//! first, in bounded batches (each one short transaction), so a large
//! backlog never holds the writer for long.

use std::time::Duration;

use kura_store::AuditStore;

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
        tracing::info!(deleted = total, retention_days = retention.as_secs() / 86_400, "audit records past their retention deleted");
    }
    Ok(total)
}
