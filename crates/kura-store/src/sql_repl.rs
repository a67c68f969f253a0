//! [`ReplicationStore`] on SQLite and PostgreSQL.

use async_trait::async_trait;

use crate::error::Result;
use crate::meta::RepoId;
use crate::replication::{
    backfill_status, BackfillItem, BackfillProgress, BackfillResult, BackfillRow, ReplKey, ReplStatusRow,
    ReplicationStore,
};
use crate::sql::{retry_write, SqlMetaStore, MAX_RETRIES};

const COLS: &str = "repo_id, digest, region, registry_id, status, failure_code, reason, progress, attempts, updated_at";

const BACKFILL_COLS: &str = "seq, id, account, region, registry_id, status, failure_code, cursor, started_at, ended_at";

/// Each item of backfill `$1` with its outcome: the status row of the image
/// and the backfill's destination; no row and no image (it, or its
/// repository, went before it replicated): FAILED, IMAGE_NOT_FOUND.
const ITEMS: &str = "SELECT i.repository AS repository, i.digest AS digest, i.tag AS tag, \
     CASE WHEN s.status IS NOT NULL THEN s.status WHEN m.digest IS NULL THEN 'FAILED' ELSE 'IN_PROGRESS' END AS status, \
     CASE WHEN s.status IS NOT NULL THEN s.failure_code WHEN m.digest IS NULL THEN 'IMAGE_NOT_FOUND' END AS failure_code \
     FROM replication_backfill_items i \
     JOIN replication_backfills b ON b.id = i.backfill_id \
     LEFT JOIN replication_status s ON s.repo_id = i.repo_id AND s.digest = i.digest \
     AND s.region = b.region AND s.registry_id = b.registry_id \
     LEFT JOIN manifests m ON m.repo_id = i.repo_id AND m.digest = i.digest \
     WHERE i.backfill_id = $1";

/// Mark the account's (`$1`) IN_PROGRESS backfills whose items all have a
/// final outcome COMPLETE, ended at `$2`.
const SETTLE: &str = "UPDATE replication_backfills SET status = 'COMPLETE', ended_at = $2 \
     WHERE account = $1 AND status = 'IN_PROGRESS' AND NOT EXISTS (\
     SELECT 1 FROM replication_backfill_items i \
     LEFT JOIN replication_status s ON s.repo_id = i.repo_id AND s.digest = i.digest \
     AND s.region = replication_backfills.region AND s.registry_id = replication_backfills.registry_id \
     LEFT JOIN manifests m ON m.repo_id = i.repo_id AND m.digest = i.digest \
     WHERE i.backfill_id = replication_backfills.id \
     AND (s.status = 'IN_PROGRESS' OR (s.status IS NULL AND m.digest IS NOT NULL)))";

#[async_trait]
impl ReplicationStore for SqlMetaStore {
    async fn repl_status_set(
        &self,
        key: ReplKey<'_>,
        status: &str,
        failure: Option<(&str, &str)>,
        attempt: bool,
    ) -> Result<()> {
        let now = crate::now_millis();
        let (code, reason) = failure.map_or((None, None), |(c, r)| (Some(c), Some(r)));
        let inc = i64::from(attempt);
        retry_write!(self, async {
            let mut tx = self.begin_write().await?;
            // INSERT … SELECT: nothing is written when the repository is gone.
            sqlx::query(
                "INSERT INTO replication_status (repo_id, digest, region, registry_id, status, failure_code, \
                 reason, progress, attempts, updated_at) \
                 SELECT id, $2, $3, $4, $5, $6, $7, '{}', $8, $9 FROM repositories WHERE id = $1 \
                 ON CONFLICT (repo_id, digest, region, registry_id) DO UPDATE SET status = excluded.status, \
                 failure_code = excluded.failure_code, reason = excluded.reason, \
                 attempts = replication_status.attempts + $8, updated_at = excluded.updated_at",
            )
            .bind(key.repo_id)
            .bind(key.digest)
            .bind(key.region)
            .bind(key.registry_id)
            .bind(status)
            .bind(code)
            .bind(reason)
            .bind(inc)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    async fn repl_progress_set(&self, key: ReplKey<'_>, progress: &str) -> Result<()> {
        retry_write!(self, async {
            let mut tx = self.begin_write().await?;
            sqlx::query(
                "UPDATE replication_status SET progress = $5 \
                 WHERE repo_id = $1 AND digest = $2 AND region = $3 AND registry_id = $4",
            )
            .bind(key.repo_id)
            .bind(key.digest)
            .bind(key.region)
            .bind(key.registry_id)
            .bind(progress)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    async fn repl_status_get(&self, key: ReplKey<'_>) -> Result<Option<ReplStatusRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {COLS} FROM replication_status \
             WHERE repo_id = $1 AND digest = $2 AND region = $3 AND registry_id = $4"
        ))
        .bind(key.repo_id)
        .bind(key.digest)
        .bind(key.region)
        .bind(key.registry_id)
        .fetch_optional(&self.read)
        .await?)
    }

    async fn repl_status_list(&self, repo_id: RepoId, digest: &str) -> Result<Vec<ReplStatusRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {COLS} FROM replication_status WHERE repo_id = $1 AND digest = $2 \
             ORDER BY region, registry_id"
        ))
        .bind(repo_id)
        .bind(digest)
        .fetch_all(&self.read)
        .await?)
    }

    async fn repl_backfill_create(
        &self,
        id: &str,
        account: &str,
        region: &str,
        registry_id: &str,
    ) -> Result<Option<BackfillRow>> {
        let now = crate::now_millis();
        retry_write!(self, async {
            let mut tx = self.begin_write().await?;
            sqlx::query(SETTLE).bind(account).bind(now).execute(&mut *tx).await?;
            // The partial unique index refuses a second running backfill.
            let inserted = sqlx::query(
                "INSERT INTO replication_backfills (id, account, region, registry_id, status, started_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(account)
            .bind(region)
            .bind(registry_id)
            .bind(backfill_status::PREPARING)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            let row = if inserted == 1 {
                Some(
                    sqlx::query_as(&format!(
                        "SELECT {BACKFILL_COLS} FROM replication_backfills WHERE id = $1"
                    ))
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?,
                )
            } else {
                None
            };
            tx.commit().await?;
            Ok(row)
        })
    }

    async fn repl_backfill_get(&self, account: &str, id: &str) -> Result<Option<BackfillRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {BACKFILL_COLS} FROM replication_backfills WHERE account = $1 AND id = $2"
        ))
        .bind(account)
        .bind(id)
        .fetch_optional(&self.read)
        .await?)
    }

    async fn repl_backfill_list(&self, account: &str, after_seq: Option<i64>, limit: i64) -> Result<Vec<BackfillRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {BACKFILL_COLS} FROM replication_backfills WHERE account = $1 AND seq > $2 \
             ORDER BY seq LIMIT $3"
        ))
        .bind(account)
        .bind(after_seq.unwrap_or(0))
        .bind(limit)
        .fetch_all(&self.read)
        .await?)
    }

    async fn repl_backfill_transition(
        &self,
        account: &str,
        id: &str,
        from: &[&str],
        to: &str,
        failure_code: Option<&str>,
    ) -> Result<bool> {
        if from.is_empty() {
            return Ok(false);
        }
        let now = crate::now_millis();
        let ended = backfill_status::is_final(to).then_some(now);
        let list: Vec<String> = (0..from.len()).map(|i| format!("${}", i + 6)).collect();
        let sql = format!(
            "UPDATE replication_backfills SET status = $3, failure_code = $4, \
             ended_at = COALESCE($5, ended_at) WHERE account = $1 AND id = $2 AND status IN ({})",
            list.join(", ")
        );
        retry_write!(self, async {
            let mut tx = self.begin_write().await?;
            let mut q = sqlx::query(&sql)
                .bind(account)
                .bind(id)
                .bind(to)
                .bind(failure_code)
                .bind(ended);
            for f in from {
                q = q.bind(*f);
            }
            let n = q.execute(&mut *tx).await?.rows_affected();
            tx.commit().await?;
            Ok(n == 1)
        })
    }

    async fn repl_backfill_cursor_set(&self, id: &str, cursor: &str) -> Result<()> {
        retry_write!(self, async {
            let mut tx = self.begin_write().await?;
            sqlx::query("UPDATE replication_backfills SET cursor = $2 WHERE id = $1")
                .bind(id)
                .bind(cursor)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    async fn repl_backfill_items_add(&self, id: &str, items: &[BackfillItem]) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        retry_write!(self, async {
            let mut tx = self.begin_write().await?;
            for it in items {
                sqlx::query(
                    "INSERT INTO replication_backfill_items (backfill_id, repo_id, repository, digest, tag) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                )
                .bind(id)
                .bind(it.repo_id)
                .bind(&it.repository)
                .bind(&it.digest)
                .bind(it.tag.as_deref())
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    async fn repl_backfill_settle(&self, account: &str) -> Result<u64> {
        let now = crate::now_millis();
        retry_write!(self, async {
            let mut tx = self.begin_write().await?;
            let n = sqlx::query(SETTLE)
                .bind(account)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            Ok(n)
        })
    }

    async fn repl_backfill_progress(&self, id: &str) -> Result<BackfillProgress> {
        let (total, completed, failed): (i64, i64, i64) = sqlx::query_as(&format!(
            "SELECT COUNT(*), COUNT(CASE WHEN x.status = 'COMPLETE' THEN 1 END), \
             COUNT(CASE WHEN x.status = 'FAILED' THEN 1 END) FROM ({ITEMS}) x"
        ))
        .bind(id)
        .fetch_one(&self.read)
        .await?;
        let failure_codes: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT DISTINCT x.failure_code FROM ({ITEMS}) x \
             WHERE x.status = 'FAILED' AND x.failure_code IS NOT NULL ORDER BY x.failure_code"
        ))
        .bind(id)
        .fetch_all(&self.read)
        .await?;
        Ok(BackfillProgress {
            total,
            completed,
            failed,
            failure_codes,
        })
    }

    async fn repl_backfill_results(
        &self,
        id: &str,
        status: Option<&str>,
        after: Option<(&str, &str)>,
        limit: i64,
    ) -> Result<Vec<BackfillResult>> {
        let (after_repo, after_digest) = after.unwrap_or(("", ""));
        Ok(sqlx::query_as(&format!(
            "SELECT x.repository, x.digest, x.tag, x.status, x.failure_code FROM ({ITEMS}) x \
             WHERE x.status IN ('COMPLETE', 'FAILED') AND ($2 = '' OR x.status = $2) \
             AND (x.repository > $3 OR (x.repository = $3 AND x.digest > $4)) \
             ORDER BY x.repository, x.digest LIMIT $5"
        ))
        .bind(id)
        .bind(status.unwrap_or(""))
        .bind(after_repo)
        .bind(after_digest)
        .bind(limit)
        .fetch_all(&self.read)
        .await?)
    }
}
