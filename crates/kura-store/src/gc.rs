//! The maintenance store: what garbage collection, the upload purger, the
//! lifecycle runner and the audit trail need. Every method is one short
//! transaction; candidates are re-checked inside the statement that deletes
//! them, so concurrent pushes always win over GC.

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
