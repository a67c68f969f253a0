//! [`ReplicationStore`] on SQLite and PostgreSQL.

use async_trait::async_trait;

use crate::error::Result;
use crate::meta::RepoId;
use crate::replication::{ReplKey, ReplStatusRow, ReplicationStore};
use crate::sql::{retry_write, SqlMetaStore, MAX_RETRIES};

const COLS: &str = "repo_id, digest, region, registry_id, status, failure_code, reason, progress, attempts, updated_at";

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
}
