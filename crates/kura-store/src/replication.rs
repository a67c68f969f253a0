//! Replication's store: one status row per image and destination (what
//! `DescribeImageReplicationStatus` shows), with the replicating job's
//! checkpoint. The SQL store implements it next to [`crate::MetaStore`]
//! (migration 12); rows are deleted with their repository. Backfills
//! (`StartReplicationBackfill`, migration 13): one row per backfill and one
//! per image it queued, whose outcome is that image's status row.

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

    // Backfills (migration 13).

    /// Record a new backfill of `account` to a destination, `PREPARING`.
    /// `None` when one is running for that destination already (after
    /// settling the account's finished ones, see [`ReplicationStore::repl_backfill_settle`]).
    async fn repl_backfill_create(
        &self,
        id: &str,
        account: &str,
        region: &str,
        registry_id: &str,
    ) -> Result<Option<BackfillRow>>;
    /// One backfill of `account`.
    async fn repl_backfill_get(&self, account: &str, id: &str) -> Result<Option<BackfillRow>>;
    /// The account's backfills in creation order, after `after_seq`.
    async fn repl_backfill_list(&self, account: &str, after_seq: Option<i64>, limit: i64) -> Result<Vec<BackfillRow>>;
    /// Move a backfill of `account` from one of `from` to `to` (with a
    /// failure code when `FAILED`; a final status sets its end). False if
    /// it was in none of `from`.
    async fn repl_backfill_transition(
        &self,
        account: &str,
        id: &str,
        from: &[&str],
        to: &str,
        failure_code: Option<&str>,
    ) -> Result<bool>;
    /// Record where the enumerating job got to.
    async fn repl_backfill_cursor_set(&self, id: &str, cursor: &str) -> Result<()>;
    /// Record queued images (an image already recorded is left as it is).
    async fn repl_backfill_items_add(&self, id: &str, items: &[BackfillItem]) -> Result<()>;
    /// Mark the account's `IN_PROGRESS` backfills whose images all
    /// replicated or failed `COMPLETE`; how many.
    async fn repl_backfill_settle(&self, account: &str) -> Result<u64>;
    /// A backfill's counts.
    async fn repl_backfill_progress(&self, id: &str) -> Result<BackfillProgress>;
    /// A backfill's finished images (`COMPLETE` or `FAILED`; only `status`
    /// when given), by repository then digest, after `after`.
    async fn repl_backfill_results(
        &self,
        id: &str,
        status: Option<&str>,
        after: Option<(&str, &str)>,
        limit: i64,
    ) -> Result<Vec<BackfillResult>>;
}

/// Backfill statuses (ECR's `ReplicationBackfillStatus`).
pub mod backfill_status {
    /// Listing the images to replicate and queueing them.
    pub const PREPARING: &str = "PREPARING";
    /// Every image is queued; not all have replicated (or failed) yet.
    pub const IN_PROGRESS: &str = "IN_PROGRESS";
    /// Every image replicated or failed.
    pub const COMPLETE: &str = "COMPLETE";
    /// The backfill could not run.
    pub const FAILED: &str = "FAILED";
    /// Stopped while preparing; the job has not seen it yet.
    pub const STOPPING: &str = "STOPPING";
    /// Stopped: no more images are queued.
    pub const STOPPED: &str = "STOPPED";
    /// The statuses of a running backfill (one per account and destination).
    pub const RUNNING: &[&str] = &[PREPARING, IN_PROGRESS, STOPPING];
    /// Whether `status` is final.
    pub fn is_final(status: &str) -> bool {
        matches!(status, COMPLETE | FAILED | STOPPED)
    }
}

/// One replication backfill (`StartReplicationBackfill`): the images an
/// account had before its configuration, replicated to one destination.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct BackfillRow {
    /// Order of creation.
    pub seq: i64,
    /// Its id (a UUID, ECR's `replicationBackfillId`).
    pub id: String,
    /// The source account.
    pub account: String,
    /// The destination region.
    pub region: String,
    /// The destination registry.
    pub registry_id: String,
    /// One of [`backfill_status`].
    pub status: String,
    /// Why it failed, when `FAILED`.
    pub failure_code: Option<String>,
    /// Where the enumerating job got to (JSON).
    pub cursor: String,
    /// Start (ms).
    pub started_at: i64,
    /// End (ms), once final.
    pub ended_at: Option<i64>,
}

/// An image a backfill queued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackfillItem {
    /// The source repository's id.
    pub repo_id: RepoId,
    /// Its name.
    pub repository: String,
    /// The image's manifest digest.
    pub digest: String,
    /// A tag of the image when it was queued (for the result's image id).
    pub tag: Option<String>,
}

/// A queued image and how its replication went: the status row of the
/// image and the backfill's destination; an image (or repository) gone
/// before it replicated is `FAILED` with `IMAGE_NOT_FOUND`.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct BackfillResult {
    /// The source repository.
    pub repository: String,
    /// The image's manifest digest.
    pub digest: String,
    /// Its tag when queued.
    pub tag: Option<String>,
    /// `IN_PROGRESS`, `COMPLETE` or `FAILED`.
    pub status: String,
    /// The failure code, if any.
    pub failure_code: Option<String>,
}

/// A backfill's counts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackfillProgress {
    /// Images queued.
    pub total: i64,
    /// Replicated.
    pub completed: i64,
    /// Failed.
    pub failed: i64,
    /// The distinct failure codes of the failed ones.
    pub failure_codes: Vec<String>,
}
