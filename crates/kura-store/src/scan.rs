//! The scanner's store: imported vulnerability data, per-layer file indexes, and the latest
//! scan of each image. The SQLite store implements it next to [`crate::MetaStore`].
//!
//! The rules that must hold across nodes live in the SQL: a scan is started by a conditional
//! upsert (so two nodes cannot both start the 24-hour-limited manual scan), and an import's
//! advisories become visible only when the import is marked complete.

use async_trait::async_trait;

use crate::error::Result;
use crate::meta::RepoId;

/// One import of vulnerability data.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct VulnImportRow {
    /// Increasing id.
    pub id: i64,
    /// What was imported (a file name).
    pub origin: String,
    /// Started (ms).
    pub started_at: i64,
    /// Completed (ms); `None` while importing or after a crash mid-import.
    pub completed_at: Option<i64>,
    /// Kinds of data (`OSV,DEBIAN_SECURITY_TRACKER`).
    pub kinds: String,
    /// Records read.
    pub records: i64,
    /// Advisories stored.
    pub advisories: i64,
    /// Ecosystems covered (JSON array).
    pub ecosystems: String,
}

/// One advisory, as the scanner serialized it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdvisoryRow {
    /// OSV ecosystem.
    pub ecosystem: String,
    /// Package name.
    pub package: String,
    /// Vulnerability name (CVE id).
    pub name: String,
    /// The advisory as JSON.
    pub data: String,
}

/// The latest scan of an image.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct ScanRow {
    /// Repository.
    pub repo_id: RepoId,
    /// Image manifest digest.
    pub digest: String,
    /// `IN_PROGRESS`, `COMPLETE`, `FAILED`, `UNSUPPORTED_IMAGE`, …
    pub status: String,
    /// Status description.
    pub description: Option<String>,
    /// `BASIC` or `ENHANCED`.
    pub scan_type: String,
    /// When the scan was last requested (push or StartImageScan), ms.
    pub requested_at: i64,
    /// When the last matching completed, ms.
    pub completed_at: Option<i64>,
    /// The vulnerability import matched against.
    pub vuln_import_id: Option<i64>,
    /// That import's completion time, ms.
    pub vuln_updated_at: Option<i64>,
    /// The image inventory (JSON), kept for re-matching.
    pub inventory: Option<String>,
    /// Findings (JSON).
    pub findings: Option<String>,
    /// Severity counts (JSON object).
    pub counts: Option<String>,
}

/// The outcome of asking to start a scan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScanStart {
    /// Recorded as `IN_PROGRESS`: the caller runs it.
    Started,
    /// A scan was requested within the quota window: refused.
    QuotaExceeded,
}

/// Storage for scanning.
#[async_trait]
pub trait ScanStore: Send + Sync + 'static {
    /// Begin an import; returns its id.
    async fn vuln_import_begin(&self, origin: &str, now: i64) -> Result<i64>;
    /// Add advisories to an unfinished import (one short transaction per call).
    async fn vuln_import_add(&self, import: i64, rows: &[AdvisoryRow]) -> Result<()>;
    /// Complete an import: record its summary, make it visible and drop the advisories of
    /// older imports for the ecosystems it covered.
    async fn vuln_import_finish(&self, import: i64, summary: &VulnImportRow, now: i64) -> Result<()>;
    /// Completed imports, newest first.
    async fn vuln_imports(&self) -> Result<Vec<VulnImportRow>>;
    /// Advisories (JSON) for a package of an ecosystem, from completed imports.
    async fn vuln_lookup(&self, ecosystem: &str, package: &str) -> Result<Vec<String>>;
    /// Remove imports that never completed (a crash mid-import), started before `before`.
    async fn vuln_import_purge_incomplete(&self, before: i64) -> Result<u64>;

    /// A cached per-layer index.
    async fn layer_index_get(&self, digest: &str, format: i64) -> Result<Option<Vec<u8>>>;
    /// Cache a per-layer index.
    async fn layer_index_put(&self, digest: &str, format: i64, data: &[u8], now: i64) -> Result<()>;

    /// Start a scan of an image: `IN_PROGRESS`, requested now. With `quota_ms`, refuse when
    /// the previous request was less than that long ago (decided by one conditional upsert).
    async fn scan_start(
        &self,
        repo: RepoId,
        digest: &str,
        scan_type: &str,
        now: i64,
        quota_ms: Option<i64>,
    ) -> Result<ScanStart>;
    /// Record a finished scan (or a re-match). Ignored if the image is gone.
    async fn scan_finish(&self, row: &ScanRow) -> Result<()>;
    /// The latest scan of an image.
    async fn scan_get(&self, repo: RepoId, digest: &str) -> Result<Option<ScanRow>>;
    /// Scans of several images of a repository (summaries for DescribeImages: without the
    /// inventory and findings).
    async fn scan_summaries(&self, repo: RepoId, digests: &[String]) -> Result<Vec<ScanRow>>;
    /// Completed scans matched against an import older than `import`, in key order after
    /// `after` (keyset pagination).
    async fn scans_to_rematch(&self, import: i64, after: Option<(RepoId, &str)>, limit: i64) -> Result<Vec<ScanRow>>;
    /// Scans left `IN_PROGRESS` since before `before` (a node stopped mid-scan).
    async fn scans_stalled(&self, before: i64, limit: i64) -> Result<Vec<ScanRow>>;
}
