//! What the metrics sampler and `/readyz` read: whether the database
//! answers and is migrated, job queue depths, and how fresh the
//! vulnerability data and scans are. Each is one small query on the read pool.

use crate::error::Result;
use crate::sql::{SqlMetaStore, SCHEMA_VERSION};

/// Jobs of one kind in one state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobCount {
    pub kind: String,
    pub state: String,
    pub count: i64,
}

impl SqlMetaStore {
    /// The schema version the database is at (an error when the database
    /// does not answer).
    pub async fn schema_version(&self) -> Result<i64> {
        let v: Option<i64> = sqlx::query_scalar("SELECT version FROM schema_version")
            .fetch_optional(&self.read)
            .await?;
        Ok(v.unwrap_or(0))
    }

    /// The schema version this build migrates to.
    pub fn expected_schema_version() -> i64 {
        SCHEMA_VERSION
    }

    /// Jobs that are not done, by kind and state (queued, running, dead).
    pub async fn job_counts(&self) -> Result<Vec<JobCount>> {
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT kind, state, COUNT(*) FROM jobs WHERE state <> 'done' GROUP BY kind, state")
                .fetch_all(&self.read)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(kind, state, count)| JobCount { kind, state, count })
            .collect())
    }

    /// When the newest vulnerability database import completed (ms), if any did.
    pub async fn newest_vuln_import_ms(&self) -> Result<Option<i64>> {
        let v: Option<i64> = sqlx::query_scalar("SELECT MAX(completed_at) FROM vuln_imports")
            .fetch_one(&self.read)
            .await?;
        Ok(v)
    }

    /// When the newest image scan completed (ms), if any did.
    pub async fn newest_scan_ms(&self) -> Result<Option<i64>> {
        let v: Option<i64> = sqlx::query_scalar("SELECT MAX(completed_at) FROM image_scans")
            .fetch_one(&self.read)
            .await?;
        Ok(v)
    }
}
