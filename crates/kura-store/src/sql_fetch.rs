//! Fetch leases of the pull-through cache (schema 17) on the SQL store: the
//! cluster-wide single flight of upstream fetches and the tag refresh window.

use crate::error::Result;
use crate::meta::{LeaseTake, RepoId};
use crate::now_millis;
use crate::sql::*;

impl SqlMetaStore {
    pub(crate) async fn lease_take(&self, key: &str, holder: &str, ttl_ms: i64) -> Result<LeaseTake> {
        retry_write!(self, async {
            let now = now_millis();
            // One statement decides the race: a new row, or an expired (or
            // our own) row taken over.
            let res = sqlx::query(
                "INSERT INTO fetch_leases (lease_key, holder, expires_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (lease_key) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
                 WHERE fetch_leases.expires_at <= $4 OR fetch_leases.holder = excluded.holder",
            )
            .bind(key)
            .bind(holder)
            .bind(now + ttl_ms)
            .bind(now)
            .execute(&self.write)
            .await?;
            if res.rows_affected() > 0 {
                // Now and then, drop rows long expired (a dead node's, a
                // deleted repository's tags): they decide nothing any more.
                if uuid::Uuid::new_v4().as_bytes()[0] == 0 {
                    sqlx::query("DELETE FROM fetch_leases WHERE expires_at < $1")
                        .bind(now - 7 * 24 * 3600 * 1000)
                        .execute(&self.write)
                        .await?;
                }
                return Ok(LeaseTake::Taken);
            }
            match self.lease_get(key).await? {
                Some((holder, expires_at)) => Ok(LeaseTake::Held { holder, expires_at }),
                // Released in between: the caller asks again.
                None => Ok(LeaseTake::Held {
                    holder: String::new(),
                    expires_at: now,
                }),
            }
        })
    }

    pub(crate) async fn lease_renew(&self, key: &str, holder: &str, ttl_ms: i64) -> Result<bool> {
        retry_write!(self, async {
            let affected = self
                .execute_relaxed(
                    sqlx::query("UPDATE fetch_leases SET expires_at = $3 WHERE lease_key = $1 AND holder = $2")
                        .bind(key)
                        .bind(holder)
                        .bind(now_millis() + ttl_ms),
                )
                .await?;
            Ok(affected > 0)
        })
    }

    pub(crate) async fn lease_release(&self, key: &str, holder: &str) -> Result<()> {
        retry_write!(self, async {
            sqlx::query("DELETE FROM fetch_leases WHERE lease_key = $1 AND holder = $2")
                .bind(key)
                .bind(holder)
                .execute(&self.write)
                .await?;
            Ok(())
        })
    }

    pub(crate) async fn lease_get(&self, key: &str) -> Result<Option<(String, i64)>> {
        let row: Option<(String, i64)> =
            sqlx::query_as("SELECT holder, expires_at FROM fetch_leases WHERE lease_key = $1 AND expires_at > $2")
                .bind(key)
                .bind(now_millis())
                .fetch_optional(&self.read)
                .await?;
        Ok(row)
    }

    /// Move the pending references to `digest` in `repo` into
    /// `manifest_blobs` / `manifest_children`, now that it is stored.
    pub(crate) async fn settle_cached(&self, repo: RepoId, digest: &str) -> Result<()> {
        retry_write!(self, async {
            let mut tx = self.begin_write().await?;
            sqlx::query(
                "INSERT INTO manifest_blobs (repo_id, manifest_digest, blob_digest) \
                 SELECT p.repo_id, p.manifest_digest, p.ref_digest FROM cache_pending_refs p \
                 WHERE p.repo_id = $1 AND p.ref_digest = $2 AND p.is_child = 0 \
                 AND EXISTS (SELECT 1 FROM blobs b WHERE b.digest = p.ref_digest) ON CONFLICT DO NOTHING",
            )
            .bind(repo)
            .bind(digest)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO manifest_children (repo_id, parent_digest, child_digest) \
                 SELECT p.repo_id, p.manifest_digest, p.ref_digest FROM cache_pending_refs p \
                 WHERE p.repo_id = $1 AND p.ref_digest = $2 AND p.is_child = 1 \
                 AND EXISTS (SELECT 1 FROM manifests m WHERE m.repo_id = p.repo_id AND m.digest = p.ref_digest) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(repo)
            .bind(digest)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "DELETE FROM cache_pending_refs WHERE repo_id = $1 AND ref_digest = $2 AND (is_child = 1 \
                 AND EXISTS (SELECT 1 FROM manifests m WHERE m.repo_id = $1 AND m.digest = $2) \
                 OR is_child = 0 AND EXISTS (SELECT 1 FROM blobs b WHERE b.digest = $2))",
            )
            .bind(repo)
            .bind(digest)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }
}
