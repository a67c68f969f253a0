//! The maintenance store: what garbage collection, the upload purger, the
//! lifecycle runner and the audit trail need. Every method is one short
//! transaction; candidates are re-checked inside the statement that deletes
//! them, so concurrent pushes always win over GC.

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::Result;
use crate::meta::{BlobRow, PendingDelete, RepoId, UploadRow};

/// A lifecycle policy as stored.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct LifecyclePolicyRow {
    /// Repository.
    pub repo_id: RepoId,
    /// The policy JSON text.
    pub policy: String,
    /// Last change (ms).
    pub updated_at: i64,
    /// Last evaluation (ms).
    pub last_evaluated_at: Option<i64>,
}

/// A lifecycle preview as stored.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct PreviewRow {
    /// Repository.
    pub repo_id: RepoId,
    /// The policy text previewed.
    pub policy: String,
    /// IN_PROGRESS, COMPLETE or FAILED.
    pub status: String,
    /// Results JSON (when COMPLETE).
    pub results: Option<String>,
    /// Start time (ms).
    pub started_at: i64,
}

/// An audit record.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditEvent {
    /// Row id (0 when appending).
    pub id: i64,
    /// Time (ms).
    pub at: i64,
    /// Account.
    pub account: String,
    /// Event name, e.g. `PolicyExecutionEvent`.
    pub event_name: String,
    /// Source, e.g. `ecr.amazonaws.com`.
    pub source: String,
    /// JSON detail.
    pub detail: String,
}

/// GC, purger, lifecycle and audit storage.
#[async_trait]
pub trait MaintenanceStore: Send + Sync + 'static {
    /// Take (or renew) the named lease for `ttl_ms` if free, expired or ours.
    async fn lease_acquire(&self, name: &str, holder: &str, ttl_ms: i64) -> Result<bool>;
    /// Give a lease back.
    async fn lease_release(&self, name: &str, holder: &str) -> Result<()>;
    /// Who holds the named lease, and until when (ms), if anyone.
    async fn lease_get(&self, name: &str) -> Result<Option<(String, i64)>>;

    /// Uploads not written to since `cutoff` (ms), after `after` (id).
    async fn stale_uploads(&self, cutoff: i64, after: Option<&str>, limit: i64) -> Result<Vec<UploadRow>>;
    /// Delete an upload row if still stale, queueing its bytes for deletion.
    async fn upload_purge(&self, id: &str, cutoff: i64) -> Result<Option<PendingDelete>>;

    /// Repository links that no manifest of the repository references and
    /// that nobody touched since `cutoff`, after `(repo, digest)`.
    async fn unreferenced_links(
        &self,
        cutoff: i64,
        after: Option<(RepoId, &str)>,
        limit: i64,
    ) -> Result<Vec<(RepoId, String, i64)>>;
    /// Drop such a link if it still qualifies (checked in the statement).
    async fn link_collect(&self, repo: RepoId, digest: &str, cutoff: i64) -> Result<bool>;
    /// How many repository links and manifest references a blob has.
    async fn blob_refs(&self, digest: &str) -> Result<(i64, i64)>;
    /// How many of a blob's links are unreferenced and untouched since `cutoff`.
    async fn unreferenced_link_count(&self, digest: &str, cutoff: i64) -> Result<i64>;
    /// Blobs no repository links and no manifest references, created before `cutoff`.
    async fn unreferenced_blobs(&self, cutoff: i64, after: Option<&str>, limit: i64) -> Result<Vec<BlobRow>>;
    /// Delete such a blob row if it still qualifies, queueing its bytes.
    async fn blob_collect(&self, digest: &str, cutoff: i64) -> Result<Option<PendingDelete>>;
    /// Which of these upload ids have an `uploads` row.
    async fn uploads_known(&self, ids: &[String]) -> Result<Vec<String>>;
    /// Which of these storage keys a `blobs` row names.
    async fn blob_keys_known(&self, keys: &[String]) -> Result<Vec<String>>;
    /// Queued blob-store deletes, oldest first.
    async fn pending_deletes(&self, limit: i64) -> Result<Vec<PendingDelete>>;

    /// A repository's lifecycle policy.
    async fn lifecycle_get(&self, repo: RepoId) -> Result<Option<LifecyclePolicyRow>>;
    /// Set a repository's lifecycle policy.
    async fn lifecycle_put(&self, repo: RepoId, policy: &str) -> Result<()>;
    /// Delete a repository's lifecycle policy; the deleted row.
    async fn lifecycle_delete(&self, repo: RepoId) -> Result<Option<LifecyclePolicyRow>>;
    /// Every policy, after repository `after`.
    async fn lifecycle_list(&self, after: Option<RepoId>, limit: i64) -> Result<Vec<LifecyclePolicyRow>>;
    /// Record an evaluation time.
    async fn lifecycle_evaluated(&self, repo: RepoId, at: i64) -> Result<()>;
    /// Start a preview (replacing any); false if one is in progress.
    async fn preview_start(&self, repo: RepoId, policy: &str) -> Result<bool>;
    /// Finish a preview.
    async fn preview_finish(&self, repo: RepoId, status: &str, results: Option<&str>) -> Result<()>;
    /// A repository's preview.
    async fn preview_get(&self, repo: RepoId) -> Result<Option<PreviewRow>>;

    /// Append an audit record.
    async fn audit_append(&self, e: &AuditEvent) -> Result<()>;
    /// Audit records of an account after id `after`.
    async fn audit_list(&self, account: &str, after: i64, limit: i64) -> Result<Vec<AuditEvent>>;
}

/// How long a deployment-wide job's lease lasts without renewal: a job whose
/// process dies stops blocking the others after at most this long.
pub const JOB_LEASE_MS: i64 = 30 * 1000;
/// How often a running job renews its lease.
pub const JOB_LEASE_RENEW: Duration = Duration::from_secs(10);

/// A lease holder name that says who holds it: `<host>:<pid>:<random>`, so an
/// embedded start-up can tell its own dead predecessors' leases
/// ([`crate::SqlMetaStore::clear_dead_job_leases`]) and a skipped run can
/// say who holds the lease.
pub fn lease_holder() -> String {
    format!(
        "{}:{}:{}",
        host_name(),
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    )
}

/// This machine's name (for lease holders).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty() && !h.contains(':'))
        .unwrap_or_else(|| "localhost".into())
}

/// What [`with_job_lease`] did.
#[derive(Debug)]
pub enum Leased<T> {
    /// The job ran (to this result).
    Ran(T),
    /// Another holder has the lease: who, and until when (ms).
    Held(String, i64),
}

/// Run `job` under the named lease, renewing it every [`JOB_LEASE_RENEW`]
/// while the job runs, and release it after. If another holder has the
/// lease, the job does not run; a job that loses its lease (its process
/// stalled past the lease) is stopped.
pub async fn with_job_lease<T>(
    maint: &dyn MaintenanceStore,
    name: &str,
    job: impl Future<Output = Result<T>>,
) -> Result<Leased<T>> {
    let holder = lease_holder();
    if !maint.lease_acquire(name, &holder, JOB_LEASE_MS).await? {
        let (by, until) = maint.lease_get(name).await?.unwrap_or_default();
        return Ok(Leased::Held(by, until));
    }
    tokio::pin!(job);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + JOB_LEASE_RENEW, JOB_LEASE_RENEW);
    let out = loop {
        tokio::select! {
            out = &mut job => break out,
            _ = tick.tick() => match maint.lease_acquire(name, &holder, JOB_LEASE_MS).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(lease = name, "lost the lease mid-run (stalled past it?); stopping the run");
                    return Err(crate::StoreError::Invalid(format!("lost the {name} lease")));
                }
                Err(e) => tracing::warn!(lease = name, error = %e, "renewing a job lease failed"),
            },
        }
    };
    maint.lease_release(name, &holder).await?;
    Ok(Leased::Ran(out?))
}

/// A lease time (ms since the epoch) as RFC 3339, for log lines.
pub fn format_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_times() {
        assert_eq!(super::format_ms(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::format_ms(1_700_000_000_000), "2023-11-14T22:13:20Z");
    }
}
