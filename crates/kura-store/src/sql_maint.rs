//! [`MaintenanceStore`](crate::gc::MaintenanceStore) on the SQL store: leases, GC, the outbox, lifecycle and audit.

use async_trait::async_trait;
use sqlx::{FromRow, Row};

use crate::error::Result;
use crate::meta::*;
use crate::now_millis;
use crate::sql::*;

#[async_trait]
impl crate::gc::MaintenanceStore for SqlMetaStore {
    async fn lease_acquire(&self, name: &str, holder: &str, ttl_ms: i64) -> Result<bool> {
        retry_write!(self, async {
            let now = now_millis();
            let res = sqlx::query(
                "INSERT INTO leases (name, holder, until_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until_ms = excluded.until_ms \
                 WHERE leases.until_ms < $4 OR leases.holder = excluded.holder",
            )
            .bind(name)
            .bind(holder)
            .bind(now + ttl_ms)
            .bind(now)
            .execute(&self.write)
            .await?;
            Ok(res.rows_affected() > 0)
        })
    }

    async fn lease_release(&self, name: &str, holder: &str) -> Result<()> {
        retry_write!(self, async {
            sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
                .bind(name)
                .bind(holder)
                .execute(&self.write)
                .await?;
            Ok(())
        })
    }

    async fn lease_get(&self, name: &str) -> Result<Option<(String, i64)>> {
        let row = sqlx::query("SELECT holder, until_ms FROM leases WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.read)
            .await?;
        Ok(match row {
            Some(r) => Some((r.try_get(0)?, r.try_get(1)?)),
            None => None,
        })
    }

    async fn uploads_known(&self, ids: &[String]) -> Result<Vec<String>> {
        self.known("SELECT id FROM uploads WHERE id IN", ids).await
    }

    async fn blob_keys_known(&self, keys: &[String]) -> Result<Vec<String>> {
        self.known("SELECT storage_key FROM blobs WHERE storage_key IN", keys)
            .await
    }

    async fn stale_uploads(&self, cutoff: i64, after: Option<&str>, limit: i64) -> Result<Vec<UploadRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {UPLOAD_COLS} FROM uploads WHERE updated_at < $1 AND id > $2 ORDER BY id LIMIT $3"
        ))
        .bind(cutoff)
        .bind(after.unwrap_or(""))
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        Ok(rows.iter().map(UploadRow::from_row).collect::<Result<_, _>>()?)
    }

    async fn upload_purge(&self, id: &str, cutoff: i64) -> Result<Option<crate::meta::PendingDelete>> {
        retry_write!(self, async {
            let mut tx = self.begin_write().await?;
            let handle: Option<String> = sqlx::query_scalar(
                "DELETE FROM uploads WHERE id = $1 AND updated_at < $2 \
                 AND (lease IS NULL OR lease_until < $3) RETURNING handle",
            )
            .bind(id)
            .bind(cutoff)
            .bind(now_millis())
            .fetch_optional(&mut *tx)
            .await?;
            let pending = match handle {
                Some(h) => Some(outbox(&mut tx, "upload", &h, now_millis()).await?),
                None => None,
            };
            tx.commit().await?;
            Ok(pending)
        })
    }

    async fn unreferenced_links(
        &self,
        cutoff: i64,
        after: Option<(RepoId, &str)>,
        limit: i64,
    ) -> Result<Vec<(RepoId, String, i64)>> {
        let (after_repo, after_digest) = after.unwrap_or((-1, ""));
        let rows = sqlx::query(
            "SELECT rb.repo_id, rb.digest, b.size FROM repo_blobs rb JOIN blobs b ON b.digest = rb.digest \
             WHERE rb.touched_at < $1 AND (rb.repo_id > $2 OR (rb.repo_id = $2 AND rb.digest > $3)) \
             AND NOT EXISTS (SELECT 1 FROM manifest_blobs mb WHERE mb.repo_id = rb.repo_id AND mb.blob_digest = rb.digest) \
             ORDER BY rb.repo_id, rb.digest LIMIT $4",
        )
        .bind(cutoff)
        .bind(after_repo)
        .bind(after_digest)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }

    async fn link_collect(&self, repo: RepoId, digest: &str, cutoff: i64) -> Result<bool> {
        retry_write!(self, async {
            // The conditions are re-checked in the DELETE itself: a manifest PUT
            // or a HEAD that committed since the scan keeps the link.
            let res = sqlx::query(
                "DELETE FROM repo_blobs WHERE repo_id = $1 AND digest = $2 AND touched_at < $3 \
                 AND NOT EXISTS (SELECT 1 FROM manifest_blobs mb WHERE mb.repo_id = $1 AND mb.blob_digest = $2)",
            )
            .bind(repo)
            .bind(digest)
            .bind(cutoff)
            .execute(&self.write)
            .await?;
            Ok(res.rows_affected() > 0)
        })
    }

    async fn blob_refs(&self, digest: &str) -> Result<(i64, i64)> {
        let links: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM repo_blobs WHERE digest = $1")
            .bind(digest)
            .fetch_one(&self.read)
            .await?;
        let manifests: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM manifest_blobs WHERE blob_digest = $1")
            .bind(digest)
            .fetch_one(&self.read)
            .await?;
        Ok((links, manifests))
    }

    async fn unreferenced_link_count(&self, digest: &str, cutoff: i64) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM repo_blobs rb WHERE rb.digest = $1 AND rb.touched_at < $2 \
             AND NOT EXISTS (SELECT 1 FROM manifest_blobs mb WHERE mb.repo_id = rb.repo_id AND mb.blob_digest = rb.digest)",
        )
        .bind(digest)
        .bind(cutoff)
        .fetch_one(&self.read)
        .await?)
    }

    async fn unreferenced_blobs(&self, cutoff: i64, after: Option<&str>, limit: i64) -> Result<Vec<BlobRow>> {
        let rows = sqlx::query(
            "SELECT b.digest, b.size, b.storage_key FROM blobs b WHERE b.created_at < $1 AND b.digest > $2 \
             AND NOT EXISTS (SELECT 1 FROM repo_blobs rb WHERE rb.digest = b.digest) \
             AND NOT EXISTS (SELECT 1 FROM manifest_blobs mb WHERE mb.blob_digest = b.digest) \
             ORDER BY b.digest LIMIT $3",
        )
        .bind(cutoff)
        .bind(after.unwrap_or(""))
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(blob_from_row).collect()
    }

    async fn blob_collect(&self, digest: &str, cutoff: i64) -> Result<Option<crate::meta::PendingDelete>> {
        retry_write!(self, async {
            let mut tx = self.begin_write().await?;
            let key: Option<String> = sqlx::query_scalar(
                "DELETE FROM blobs WHERE digest = $1 AND created_at < $2 \
                 AND NOT EXISTS (SELECT 1 FROM repo_blobs rb WHERE rb.digest = $1) \
                 AND NOT EXISTS (SELECT 1 FROM manifest_blobs mb WHERE mb.blob_digest = $1) RETURNING storage_key",
            )
            .bind(digest)
            .bind(cutoff)
            .fetch_optional(&mut *tx)
            .await?;
            let pending = match key {
                Some(k) => Some(outbox(&mut tx, "blob", &k, now_millis()).await?),
                None => None,
            };
            tx.commit().await?;
            Ok(pending)
        })
    }

    async fn pending_deletes(&self, limit: i64) -> Result<Vec<crate::meta::PendingDelete>> {
        let rows = sqlx::query("SELECT id, kind, key FROM pending_deletes ORDER BY id LIMIT $1")
            .bind(limit)
            .fetch_all(&self.read)
            .await?;
        Ok(rows
            .iter()
            .map(crate::meta::PendingDelete::from_row)
            .collect::<Result<_, _>>()?)
    }

    async fn lifecycle_get(&self, repo: RepoId) -> Result<Option<crate::gc::LifecyclePolicyRow>> {
        let row = sqlx::query(
            "SELECT repo_id, policy, updated_at, last_evaluated_at FROM lifecycle_policies WHERE repo_id = $1",
        )
        .bind(repo)
        .fetch_optional(&self.read)
        .await?;
        Ok(row.as_ref().map(crate::gc::LifecyclePolicyRow::from_row).transpose()?)
    }

    async fn lifecycle_put(&self, repo: RepoId, policy: &str) -> Result<()> {
        retry_write!(self, async {
            sqlx::query(
                "INSERT INTO lifecycle_policies (repo_id, policy, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (repo_id) DO UPDATE SET policy = excluded.policy, updated_at = excluded.updated_at",
            )
            .bind(repo)
            .bind(policy)
            .bind(now_millis())
            .execute(&self.write)
            .await?;
            Ok(())
        })
    }

    async fn lifecycle_delete(&self, repo: RepoId) -> Result<Option<crate::gc::LifecyclePolicyRow>> {
        retry_write!(self, async {
            let row = sqlx::query(
                "DELETE FROM lifecycle_policies WHERE repo_id = $1 RETURNING repo_id, policy, updated_at, last_evaluated_at",
            )
            .bind(repo)
            .fetch_optional(&self.write)
            .await?;
            Ok(row.as_ref().map(crate::gc::LifecyclePolicyRow::from_row).transpose()?)
        })
    }

    async fn lifecycle_list(&self, after: Option<RepoId>, limit: i64) -> Result<Vec<crate::gc::LifecyclePolicyRow>> {
        let rows = sqlx::query(
            "SELECT repo_id, policy, updated_at, last_evaluated_at FROM lifecycle_policies WHERE repo_id > $1 ORDER BY repo_id LIMIT $2",
        )
        .bind(after.unwrap_or(-1))
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .iter()
            .map(crate::gc::LifecyclePolicyRow::from_row)
            .collect::<Result<_, _>>()?)
    }

    async fn lifecycle_evaluated(&self, repo: RepoId, at: i64) -> Result<()> {
        retry_write!(self, async {
            sqlx::query("UPDATE lifecycle_policies SET last_evaluated_at = $2 WHERE repo_id = $1")
                .bind(repo)
                .bind(at)
                .execute(&self.write)
                .await?;
            Ok(())
        })
    }

    async fn preview_start(&self, repo: RepoId, policy: &str) -> Result<bool> {
        retry_write!(self, async {
            let now = now_millis();
            // A preview stuck IN_PROGRESS for ten minutes (a crashed node) may be replaced.
            let res = sqlx::query(
                "INSERT INTO lifecycle_previews (repo_id, policy, status, results, started_at) VALUES ($1, $2, 'IN_PROGRESS', NULL, $3) \
                 ON CONFLICT (repo_id) DO UPDATE SET policy = excluded.policy, status = excluded.status, results = NULL, \
                 started_at = excluded.started_at \
                 WHERE lifecycle_previews.status <> 'IN_PROGRESS' OR lifecycle_previews.started_at < $4",
            )
            .bind(repo)
            .bind(policy)
            .bind(now)
            .bind(now - 600_000)
            .execute(&self.write)
            .await?;
            Ok(res.rows_affected() > 0)
        })
    }

    async fn preview_finish(&self, repo: RepoId, status: &str, results: Option<&str>) -> Result<()> {
        retry_write!(self, async {
            sqlx::query("UPDATE lifecycle_previews SET status = $2, results = $3 WHERE repo_id = $1")
                .bind(repo)
                .bind(status)
                .bind(results)
                .execute(&self.write)
                .await?;
            Ok(())
        })
    }

    async fn preview_get(&self, repo: RepoId) -> Result<Option<crate::gc::PreviewRow>> {
        let row = sqlx::query(
            "SELECT repo_id, policy, status, results, started_at FROM lifecycle_previews WHERE repo_id = $1",
        )
        .bind(repo)
        .fetch_optional(&self.read)
        .await?;
        Ok(row.as_ref().map(crate::gc::PreviewRow::from_row).transpose()?)
    }

    async fn audit_append(&self, e: &crate::gc::AuditEvent) -> Result<()> {
        // The lifecycle's expiries are CloudTrail service events: they go
        // to the audit trail, where LookupEvents and `kura audit` read them.
        if let Some(row) = crate::audit::service_event(e) {
            return crate::AuditStore::trail_append(self, &[row]).await;
        }
        retry_write!(self, async {
            sqlx::query(
                "INSERT INTO audit_events (at, account, event_name, source, detail) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(e.at)
            .bind(&e.account)
            .bind(&e.event_name)
            .bind(&e.source)
            .bind(&e.detail)
            .execute(&self.write)
            .await?;
            Ok(())
        })
    }

    async fn audit_list(&self, account: &str, after: i64, limit: i64) -> Result<Vec<crate::gc::AuditEvent>> {
        let rows = sqlx::query(
            "SELECT id, at, account, event_name, source, detail FROM audit_events WHERE account = $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(account)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .iter()
            .map(crate::gc::AuditEvent::from_row)
            .collect::<Result<_, _>>()?)
    }
}
