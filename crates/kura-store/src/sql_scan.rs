//! [`ScanStore`] on SQLite.

use async_trait::async_trait;

use crate::error::Result;
use crate::meta::RepoId;
use crate::scan::{AdvisoryRow, ScanRow, ScanStart, ScanStore, VulnImportRow};
use crate::sql::{retry_write, SqlMetaStore, MAX_RETRIES};

const SCAN_COLS: &str = "repo_id, digest, status, description, scan_type, requested_at, completed_at, \
     vuln_import_id, vuln_updated_at, inventory, findings, counts";
const SUMMARY_COLS: &str = "repo_id, digest, status, description, scan_type, requested_at, completed_at, \
     vuln_import_id, vuln_updated_at, NULL AS inventory, NULL AS findings, counts";

#[async_trait]
impl ScanStore for SqlMetaStore {
    async fn vuln_import_begin(&self, origin: &str, now: i64) -> Result<i64> {
        retry_write!(self, async {
            Ok(
                sqlx::query_scalar("INSERT INTO vuln_imports (origin, started_at) VALUES ($1, $2) RETURNING id")
                    .bind(origin)
                    .bind(now)
                    .fetch_one(&self.write)
                    .await?,
            )
        })
    }

    async fn vuln_import_add(&self, import: i64, rows: &[AdvisoryRow]) -> Result<()> {
        retry_write!(self, async {
            let mut tx = self.write.begin().await?;
            for r in rows {
                sqlx::query(
                    "INSERT INTO vuln_advisories (import_id, ecosystem, package, name, data) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(import)
                .bind(&r.ecosystem)
                .bind(&r.package)
                .bind(&r.name)
                .bind(&r.data)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    async fn vuln_import_finish(&self, import: i64, summary: &VulnImportRow, now: i64) -> Result<()> {
        retry_write!(self, async {
            let ecosystems: Vec<String> = serde_json::from_str(&summary.ecosystems).unwrap_or_default();
            let mut tx = self.write.begin().await?;
            for eco in &ecosystems {
                sqlx::query(
                    "DELETE FROM vuln_advisories WHERE ecosystem = $1 AND import_id < $2 \
                     AND import_id IN (SELECT id FROM vuln_imports WHERE completed_at IS NOT NULL)",
                )
                .bind(eco)
                .bind(import)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query(
                "UPDATE vuln_imports SET completed_at = $1, kinds = $2, records = $3, advisories = $4, ecosystems = $5 \
                 WHERE id = $6",
            )
            .bind(now)
            .bind(&summary.kinds)
            .bind(summary.records)
            .bind(summary.advisories)
            .bind(&summary.ecosystems)
            .bind(import)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    async fn vuln_imports(&self) -> Result<Vec<VulnImportRow>> {
        Ok(sqlx::query_as(
            "SELECT id, origin, started_at, completed_at, kinds, records, advisories, ecosystems FROM vuln_imports \
             WHERE completed_at IS NOT NULL ORDER BY id DESC",
        )
        .fetch_all(&self.read)
        .await?)
    }

    async fn vuln_lookup(&self, ecosystem: &str, package: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT a.data FROM vuln_advisories a JOIN vuln_imports i ON i.id = a.import_id \
             WHERE a.ecosystem = $1 AND a.package = $2 AND i.completed_at IS NOT NULL ORDER BY a.import_id DESC, a.name",
        )
        .bind(ecosystem)
        .bind(package)
        .fetch_all(&self.read)
        .await?)
    }

    async fn vuln_import_purge_incomplete(&self, before: i64) -> Result<u64> {
        retry_write!(self, async {
            let r = sqlx::query("DELETE FROM vuln_imports WHERE completed_at IS NULL AND started_at < $1")
                .bind(before)
                .execute(&self.write)
                .await?;
            Ok(r.rows_affected())
        })
    }

    async fn layer_index_get(&self, digest: &str, format: i64) -> Result<Option<Vec<u8>>> {
        Ok(
            sqlx::query_scalar("SELECT data FROM scan_layers WHERE digest = $1 AND format = $2")
                .bind(digest)
                .bind(format)
                .fetch_optional(&self.read)
                .await?,
        )
    }

    async fn layer_index_put(&self, digest: &str, format: i64, data: &[u8], now: i64) -> Result<()> {
        retry_write!(self, async {
            sqlx::query(
                "INSERT INTO scan_layers (digest, format, data, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (digest, format) DO NOTHING",
            )
            .bind(digest)
            .bind(format)
            .bind(data)
            .bind(now)
            .execute(&self.write)
            .await?;
            Ok(())
        })
    }

    async fn scan_start(
        &self,
        repo: RepoId,
        digest: &str,
        scan_type: &str,
        now: i64,
        quota_ms: Option<i64>,
    ) -> Result<ScanStart> {
        retry_write!(self, async {
            // One statement decides: insert, or take over the row unless the quota forbids it.
            let limit = quota_ms.map(|q| now - q).unwrap_or(i64::MAX);
            let r = sqlx::query(
                "INSERT INTO image_scans (repo_id, digest, status, description, scan_type, requested_at) \
                 SELECT $1, $2, 'IN_PROGRESS', NULL, $3, $4 \
                 WHERE EXISTS (SELECT 1 FROM manifests WHERE repo_id = $1 AND digest = $2) \
                 ON CONFLICT (repo_id, digest) DO UPDATE SET status = 'IN_PROGRESS', description = NULL, \
                     scan_type = excluded.scan_type, requested_at = excluded.requested_at \
                 WHERE image_scans.requested_at <= $5",
            )
            .bind(repo)
            .bind(digest)
            .bind(scan_type)
            .bind(now)
            .bind(limit)
            .execute(&self.write)
            .await?;
            Ok(if r.rows_affected() == 1 {
                ScanStart::Started
            } else {
                ScanStart::QuotaExceeded
            })
        })
    }

    async fn scan_finish(&self, row: &ScanRow) -> Result<()> {
        retry_write!(self, async {
            sqlx::query(
                "UPDATE image_scans SET status = $3, description = $4, scan_type = $5, completed_at = $6, \
                 vuln_import_id = $7, vuln_updated_at = $8, inventory = COALESCE($9, inventory), findings = $10, counts = $11 \
                 WHERE repo_id = $1 AND digest = $2",
            )
            .bind(row.repo_id)
            .bind(&row.digest)
            .bind(&row.status)
            .bind(&row.description)
            .bind(&row.scan_type)
            .bind(row.completed_at)
            .bind(row.vuln_import_id)
            .bind(row.vuln_updated_at)
            .bind(&row.inventory)
            .bind(&row.findings)
            .bind(&row.counts)
            .execute(&self.write)
            .await?;
            Ok(())
        })
    }

    async fn scan_get(&self, repo: RepoId, digest: &str) -> Result<Option<ScanRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {SCAN_COLS} FROM image_scans WHERE repo_id = $1 AND digest = $2"
        ))
        .bind(repo)
        .bind(digest)
        .fetch_optional(&self.read)
        .await?)
    }

    async fn scan_summaries(&self, repo: RepoId, digests: &[String]) -> Result<Vec<ScanRow>> {
        let mut out = Vec::new();
        for chunk in digests.chunks(200) {
            let marks: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
            let sql = format!(
                "SELECT {SUMMARY_COLS} FROM image_scans WHERE repo_id = $1 AND digest IN ({})",
                marks.join(", ")
            );
            let mut q = sqlx::query_as(&sql).bind(repo);
            for d in chunk {
                q = q.bind(d);
            }
            out.extend(q.fetch_all(&self.read).await?);
        }
        Ok(out)
    }

    async fn scans_to_rematch(&self, import: i64, after: Option<(RepoId, &str)>, limit: i64) -> Result<Vec<ScanRow>> {
        let (after_repo, after_digest) = after.unwrap_or((-1, ""));
        Ok(sqlx::query_as(&format!(
            "SELECT {SCAN_COLS} FROM image_scans WHERE status = 'COMPLETE' AND inventory IS NOT NULL \
             AND COALESCE(vuln_import_id, 0) < $1 AND (repo_id, digest) > ($2, $3) \
             ORDER BY repo_id, digest LIMIT $4"
        ))
        .bind(import)
        .bind(after_repo)
        .bind(after_digest)
        .bind(limit)
        .fetch_all(&self.read)
        .await?)
    }

    async fn scans_stalled(&self, before: i64, limit: i64) -> Result<Vec<ScanRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {SCAN_COLS} FROM image_scans WHERE status = 'IN_PROGRESS' AND requested_at < $1 \
             ORDER BY requested_at LIMIT $2"
        ))
        .bind(before)
        .bind(limit)
        .fetch_all(&self.read)
        .await?)
    }
}
