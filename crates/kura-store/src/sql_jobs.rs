//! [`JobStore`](crate::jobs::JobStore) on the SQL store.
//!
//! Claiming is one short transaction. On PostgreSQL it runs READ COMMITTED
//! with `SELECT … FOR UPDATE SKIP LOCKED`: a row another node is claiming is
//! skipped, and a row claimed and committed meanwhile is re-checked against
//! the claim's conditions on its newest version, so two nodes never claim one
//! job. On SQLite the claim runs under the single writer's lock.

use async_trait::async_trait;
use sqlx::FromRow;

use crate::error::{Result, StoreError};
use crate::jobs::{FailAction, JobRow, JobState, NewJobRow};
use crate::now_millis;
use crate::sql::*;

const JOB_COLS: &str = "id, kind, payload, unique_key, lane, state, attempts, max_attempts, run_after, \
     lease_owner, lease_until, last_error, created_at, updated_at, finished_at";

/// A due job: queued and its time has come, or running with a lapsed lease;
/// and not behind an unfinished earlier job of its lane. `$1` is now.
const DUE: &str = "((j.state = 'queued' AND j.run_after <= $1) OR (j.state = 'running' AND j.lease_until < $1)) \
     AND (j.lane IS NULL OR NOT EXISTS (SELECT 1 FROM jobs e WHERE e.lane = j.lane AND e.id < j.id \
          AND e.state IN ('queued', 'running')))";

/// `$first, $first+1, …` for `n` values.
fn marks(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn rows(rs: Vec<sqlx::any::AnyRow>) -> Result<Vec<JobRow>> {
    Ok(rs.iter().map(JobRow::from_row).collect::<Result<_, _>>()?)
}

#[async_trait]
impl crate::jobs::JobStore for SqlMetaStore {
    async fn job_enqueue(&self, job: &NewJobRow) -> Result<i64> {
        if job.kind.is_empty() || serde_json::from_str::<serde_json::Value>(&job.payload).is_err() {
            return Err(StoreError::Invalid("a job needs a kind and a JSON payload".into()));
        }
        retry_write!(self, async {
            let now = now_millis();
            let mut tx = self.begin_write().await?;
            if let (Some(key), true) = (&job.unique_key, job.once) {
                let existing: Option<i64> =
                    sqlx::query_scalar("SELECT id FROM jobs WHERE unique_key = $1 ORDER BY id DESC LIMIT 1")
                        .bind(key)
                        .fetch_optional(&mut *tx)
                        .await?;
                if let Some(id) = existing {
                    tx.commit().await?;
                    return Ok(id);
                }
            }
            let id: Option<i64> = sqlx::query_scalar(
                "INSERT INTO jobs (kind, payload, unique_key, lane, state, attempts, max_attempts, run_after, \
                 created_at, updated_at) VALUES ($1, $2, $3, $4, 'queued', 0, $5, $6, $7, $7) \
                 ON CONFLICT DO NOTHING RETURNING id",
            )
            .bind(&job.kind)
            .bind(&job.payload)
            .bind(&job.unique_key)
            .bind(&job.lane)
            .bind(job.max_attempts.max(1))
            .bind(job.run_after)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            let id = match id {
                Some(id) => id,
                None => {
                    sqlx::query_scalar("SELECT id FROM jobs WHERE unique_key = $1 AND state IN ('queued', 'running')")
                        .bind(&job.unique_key)
                        .fetch_optional(&mut *tx)
                        .await?
                        .ok_or_else(|| StoreError::Corrupt("a job's unique key conflicts with no active job".into()))?
                }
            };
            tx.commit().await?;
            Ok(id)
        })
    }

    async fn job_claim(&self, kinds: &[String], owner: &str, lease_ms: i64, limit: i64) -> Result<Vec<JobRow>> {
        if kinds.is_empty() || limit <= 0 {
            return Ok(Vec::new());
        }
        let in_kinds = marks(3, kinds.len());
        // A cheap look on the read pool first, so an idle poll never takes the
        // write lock.
        let probe = format!(
            "SELECT j.id FROM jobs j WHERE {DUE} AND j.kind IN ({}) LIMIT 1",
            marks(2, kinds.len())
        );
        let mut q = sqlx::query_scalar::<_, i64>(&probe).bind(now_millis());
        for k in kinds {
            q = q.bind(k);
        }
        if q.fetch_optional(&self.read).await?.is_none() {
            return Ok(Vec::new());
        }
        let lock = match self.dialect {
            Dialect::Postgres => " FOR UPDATE OF j SKIP LOCKED",
            Dialect::Sqlite => "",
        };
        // A running job whose lease lapsed after its last attempt is dead (its
        // runner died every time).
        let bury = format!(
            "UPDATE jobs SET state = 'dead', finished_at = $1, updated_at = $1, lease_until = NULL, \
             last_error = 'its runner stopped during its last attempt (the lease lapsed)' \
             WHERE id IN (SELECT j.id FROM jobs j WHERE j.state = 'running' AND j.lease_until < $1 \
             AND j.attempts >= j.max_attempts AND j.kind IN ({}){lock})",
            marks(2, kinds.len())
        );
        let claim = format!(
            "UPDATE jobs SET state = 'running', lease_owner = $2, lease_until = $1 + ${lease}, \
             attempts = attempts + 1, updated_at = $1 \
             WHERE id IN (SELECT j.id FROM jobs j WHERE {DUE} AND NOT (j.state = 'running' AND j.attempts >= j.max_attempts) \
             AND j.kind IN ({in_kinds}) ORDER BY j.run_after, j.id LIMIT ${limit_n}{lock}) RETURNING {JOB_COLS}",
            lease = 3 + kinds.len(),
            limit_n = 4 + kinds.len(),
        );
        let mut claimed = retry_write!(self, async {
            let now = now_millis();
            let mut tx = self.begin_write().await?;
            if self.dialect == Dialect::Postgres {
                sqlx::query("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
                    .execute(&mut *tx)
                    .await?;
            }
            let mut q = sqlx::query(&bury).bind(now);
            for k in kinds {
                q = q.bind(k);
            }
            q.execute(&mut *tx).await?;
            let mut q = sqlx::query(&claim).bind(now).bind(owner);
            for k in kinds {
                q = q.bind(k);
            }
            let got = q.bind(lease_ms).bind(limit).fetch_all(&mut *tx).await?;
            tx.commit().await?;
            rows(got)
        })?;
        claimed.sort_by_key(|j| j.id);
        Ok(claimed)
    }

    async fn job_heartbeat(&self, id: i64, owner: &str, lease_ms: i64) -> Result<bool> {
        retry_write!(self, async {
            let now = now_millis();
            let n = self
                .execute_relaxed(
                    sqlx::query(
                        "UPDATE jobs SET lease_until = $3, updated_at = $4 \
                         WHERE id = $1 AND lease_owner = $2 AND state = 'running'",
                    )
                    .bind(id)
                    .bind(owner)
                    .bind(now + lease_ms)
                    .bind(now),
                )
                .await?;
            Ok(n > 0)
        })
    }

    async fn job_release(&self, id: i64, owner: &str) -> Result<bool> {
        retry_write!(self, async {
            let res = sqlx::query(
                "UPDATE jobs SET lease_until = 0, updated_at = $3 WHERE id = $1 AND lease_owner = $2 AND state = 'running'",
            )
            .bind(id)
            .bind(owner)
            .bind(now_millis())
            .execute(&self.write)
            .await?;
            Ok(res.rows_affected() > 0)
        })
    }

    async fn job_complete(&self, id: i64, owner: &str) -> Result<bool> {
        retry_write!(self, async {
            let now = now_millis();
            let res = sqlx::query(
                "UPDATE jobs SET state = 'done', finished_at = $3, updated_at = $3, lease_until = NULL \
                 WHERE id = $1 AND lease_owner = $2 AND state = 'running'",
            )
            .bind(id)
            .bind(owner)
            .bind(now)
            .execute(&self.write)
            .await?;
            Ok(res.rows_affected() > 0)
        })
    }

    async fn job_fail(&self, id: i64, owner: &str, error: &str, action: FailAction) -> Result<Option<JobState>> {
        let (retry, at) = match action {
            FailAction::RetryAt(at) => (1i64, at),
            FailAction::Dead => (0, 0),
        };
        // Errors are for people: keep them short.
        let error: String = error.chars().take(2000).collect();
        retry_write!(self, async {
            let now = now_millis();
            let state: Option<String> = sqlx::query_scalar(
                "UPDATE jobs SET \
                 state = CASE WHEN $3 = 1 AND attempts < max_attempts THEN 'queued' ELSE 'dead' END, \
                 finished_at = CASE WHEN $3 = 1 AND attempts < max_attempts THEN NULL ELSE $6 END, \
                 run_after = CASE WHEN $3 = 1 AND attempts < max_attempts THEN $4 ELSE run_after END, \
                 last_error = $5, updated_at = $6, lease_until = NULL \
                 WHERE id = $1 AND lease_owner = $2 AND state = 'running' RETURNING state",
            )
            .bind(id)
            .bind(owner)
            .bind(retry)
            .bind(at)
            .bind(&error)
            .bind(now)
            .fetch_optional(&self.write)
            .await?;
            Ok(state.as_deref().and_then(JobState::parse))
        })
    }

    async fn job_get(&self, id: i64) -> Result<Option<JobRow>> {
        let row = sqlx::query(&format!("SELECT {JOB_COLS} FROM jobs WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.as_ref().map(JobRow::from_row).transpose()?)
    }

    async fn job_list(
        &self,
        state: Option<JobState>,
        kind: Option<&str>,
        after: i64,
        limit: i64,
    ) -> Result<Vec<JobRow>> {
        let mut sql = format!("SELECT {JOB_COLS} FROM jobs WHERE id > $1");
        let mut n = 2;
        if state.is_some() {
            sql.push_str(&format!(" AND state = ${n}"));
            n += 1;
        }
        if kind.is_some() {
            sql.push_str(&format!(" AND kind = ${n}"));
            n += 1;
        }
        sql.push_str(&format!(" ORDER BY id LIMIT ${n}"));
        let mut q = sqlx::query(&sql).bind(after);
        if let Some(s) = state {
            q = q.bind(s.as_str());
        }
        if let Some(k) = kind {
            q = q.bind(k);
        }
        rows(q.bind(limit).fetch_all(&self.read).await?)
    }

    async fn job_retry(&self, id: i64) -> Result<bool> {
        retry_write!(self, async {
            let res = sqlx::query(
                "UPDATE jobs SET state = 'queued', attempts = 0, run_after = $2, updated_at = $2, \
                 finished_at = NULL, lease_until = NULL \
                 WHERE id = $1 AND state = 'dead' AND (unique_key IS NULL OR NOT EXISTS \
                 (SELECT 1 FROM jobs o WHERE o.unique_key = jobs.unique_key AND o.state IN ('queued', 'running')))",
            )
            .bind(id)
            .bind(now_millis())
            .execute(&self.write)
            .await?;
            Ok(res.rows_affected() > 0)
        })
    }

    async fn job_purge(&self, state: JobState, before: i64) -> Result<u64> {
        if !matches!(state, JobState::Done | JobState::Dead) {
            return Err(StoreError::Invalid("only finished jobs are purged".into()));
        }
        let mut total = 0;
        loop {
            // In batches: each a short transaction.
            let n = retry_write!(self, async {
                let res = sqlx::query(
                    "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE state = $1 AND finished_at < $2 LIMIT 1000)",
                )
                .bind(state.as_str())
                .bind(before)
                .execute(&self.write)
                .await?;
                Ok::<_, StoreError>(res.rows_affected())
            })?;
            total += n;
            if n < 1000 {
                return Ok(total);
            }
        }
    }
}
