//! Replication's store: one status row per image and destination (what
//! `DescribeImageReplicationStatus` shows), with the replicating job's
//! checkpoint. The SQL store implements it next to [`crate::MetaStore`]
//! (migration 12); rows are deleted with their repository.

use async_trait::async_trait;

use crate::error::Result;
use crate::meta::RepoId;

/// One image's replication to one destination.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct ReplStatusRow {
    /// The source repository.
    pub repo_id: RepoId,
    /// The image's manifest digest.
    pub digest: String,
    /// The destination region.
    pub region: String,
    /// The destination registry (account).
    pub registry_id: String,
    /// `IN_PROGRESS`, `COMPLETE` or `FAILED`.
    pub status: String,
    /// The failure code when `FAILED` (or the last retryable failure while `IN_PROGRESS`).
    pub failure_code: Option<String>,
    /// A human-readable reason for the failure code.
    pub reason: Option<String>,
    /// The replicating job's checkpoint (JSON).
    pub progress: String,
    /// Attempts so far.
    pub attempts: i64,
    /// Last change (ms).
    pub updated_at: i64,
}

/// The key of a status row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplKey<'a> {
    /// The source repository.
    pub repo_id: RepoId,
    /// The image's manifest digest.
    pub digest: &'a str,
    /// The destination region.
    pub region: &'a str,
    /// The destination registry.
    pub registry_id: &'a str,
}

/// Replication status rows.
#[async_trait]
pub trait ReplicationStore: Send + Sync + 'static {
    /// Set the status of `key` (insert or update; the checkpoint is kept,
    /// `attempts` is incremented when `attempt` is set). A missing
    /// repository is not an error (it was deleted: nothing to record).
    async fn repl_status_set(
        &self,
        key: ReplKey<'_>,
        status: &str,
        failure: Option<(&str, &str)>,
        attempt: bool,
    ) -> Result<()>;
    /// Replace the checkpoint of `key` (the row must exist).
    async fn repl_progress_set(&self, key: ReplKey<'_>, progress: &str) -> Result<()>;
    /// The row of `key`.
    async fn repl_status_get(&self, key: ReplKey<'_>) -> Result<Option<ReplStatusRow>>;
    /// Every destination's row for one image, by region then registry.
    async fn repl_status_list(&self, repo_id: RepoId, digest: &str) -> Result<Vec<ReplStatusRow>>;
}
