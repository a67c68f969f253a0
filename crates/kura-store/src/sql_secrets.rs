//! [`SecretsStore`] on SQLite and PostgreSQL.

use async_trait::async_trait;

use crate::error::Result;
use crate::secrets::{SecretCommit, SecretCreate, SecretRow, SecretVersionRow, SecretsStore};
use crate::sql::{retry_write, SqlMetaStore, MAX_RETRIES};

const COLS: &str = "account, name, arn, description, kms_key_id, tags, created_at, changed_at, accessed_at, \
                    deleted_at, purge_at, revision";
const VCOLS: &str = "version_id, kind, sealed, stages, created_at";
/// Live at `$n`: not purged by then.
const LIVE: &str = "(purge_at IS NULL OR purge_at > $";

async fn remove_in(tx: &mut sqlx::Transaction<'static, sqlx::Any>, arn: &str) -> Result<bool> {
    sqlx::query("DELETE FROM secret_versions WHERE arn = $1")
        .bind(arn)
        .execute(&mut **tx)
        .await?;
    let done = sqlx::query("DELETE FROM secrets WHERE arn = $1")
        .bind(arn)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

#[async_trait]
impl SecretsStore for SqlMetaStore {
    async fn secret_create(&self, row: &SecretRow, first: Option<&SecretVersionRow>, max: i64) -> Result<SecretCreate> {
        retry_write!(self, async {
            let mut tx = self.begin_write().await?;
            let taken: Option<(String, Option<i64>)> =
                sqlx::query_as("SELECT arn, purge_at FROM secrets WHERE account = $1 AND name = $2")
                    .bind(&row.account)
                    .bind(&row.name)
                    .fetch_optional(&mut *tx)
                    .await?;
            match taken {
                Some((arn, Some(p))) if p <= row.created_at => {
                    remove_in(&mut tx, &arn).await?;
                }
                Some((_, Some(_))) => return Ok(SecretCreate::ScheduledForDeletion),
                Some((_, None)) => return Ok(SecretCreate::Exists),
                None => {}
            }
            let count: i64 =
                sqlx::query_scalar(&format!("SELECT COUNT(*) FROM secrets WHERE account = $1 AND {LIVE}2)"))
                    .bind(&row.account)
                    .bind(row.created_at)
                    .fetch_one(&mut *tx)
                    .await?;
            if count >= max {
                return Ok(SecretCreate::TooMany);
            }
            sqlx::query(&format!(
                "INSERT INTO secrets ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
            ))
            .bind(&row.account)
            .bind(&row.name)
            .bind(&row.arn)
            .bind(&row.description)
            .bind(&row.kms_key_id)
            .bind(&row.tags)
            .bind(row.created_at)
            .bind(row.changed_at)
            .bind(row.accessed_at)
            .bind(row.deleted_at)
            .bind(row.purge_at)
            .bind(row.revision)
            .execute(&mut *tx)
            .await?;
            if let Some(v) = first {
                insert_version(&mut tx, &row.arn, v).await?;
            }
            tx.commit().await?;
            Ok(SecretCreate::Created)
        })
    }

    async fn secret_by_name(&self, account: &str, name: &str, now: i64) -> Result<Option<SecretRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {COLS} FROM secrets WHERE account = $1 AND name = $2 AND {LIVE}3)"
        ))
        .bind(account)
        .bind(name)
        .bind(now)
        .fetch_optional(&self.read)
        .await?)
    }

    async fn secret_by_arn(&self, arn: &str, now: i64) -> Result<Option<SecretRow>> {
        Ok(
            sqlx::query_as(&format!("SELECT {COLS} FROM secrets WHERE arn = $1 AND {LIVE}2)"))
                .bind(arn)
                .bind(now)
                .fetch_optional(&self.read)
                .await?,
        )
    }

    async fn secrets_of(&self, account: &str, now: i64) -> Result<Vec<SecretRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {COLS} FROM secrets WHERE account = $1 AND {LIVE}2) ORDER BY name"
        ))
        .bind(account)
        .bind(now)
        .fetch_all(&self.read)
        .await?)
    }

    async fn secret_versions(&self, arn: &str) -> Result<Vec<SecretVersionRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {VCOLS} FROM secret_versions WHERE arn = $1 ORDER BY created_at, version_id"
        ))
        .bind(arn)
        .fetch_all(&self.read)
        .await?)
    }

    async fn secret_commit(&self, change: &SecretCommit) -> Result<bool> {
        let row = &change.row;
        retry_write!(self, async {
            let mut tx = self.begin_write().await?;
            let done = sqlx::query(
                "UPDATE secrets SET description = $1, kms_key_id = $2, tags = $3, changed_at = $4, \
                 deleted_at = $5, purge_at = $6, revision = revision + 1 WHERE arn = $7 AND revision = $8",
            )
            .bind(&row.description)
            .bind(&row.kms_key_id)
            .bind(&row.tags)
            .bind(row.changed_at)
            .bind(row.deleted_at)
            .bind(row.purge_at)
            .bind(&row.arn)
            .bind(row.revision)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() != 1 {
                return Ok(false);
            }
            for id in &change.remove {
                sqlx::query("DELETE FROM secret_versions WHERE arn = $1 AND version_id = $2")
                    .bind(&row.arn)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            for (id, stages) in &change.relabel {
                sqlx::query("UPDATE secret_versions SET stages = $1 WHERE arn = $2 AND version_id = $3")
                    .bind(stages)
                    .bind(&row.arn)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            if let Some(v) = &change.insert {
                insert_version(&mut tx, &row.arn, v).await?;
            }
            tx.commit().await?;
            Ok(true)
        })
    }

    async fn secret_touch(&self, arn: &str, day: i64) -> Result<()> {
        retry_write!(self, async {
            let mut tx = self.begin_write().await?;
            sqlx::query("UPDATE secrets SET accessed_at = $1 WHERE arn = $2")
                .bind(day)
                .bind(arn)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    async fn secret_remove(&self, arn: &str) -> Result<bool> {
        retry_write!(self, async {
            let mut tx = self.begin_write().await?;
            let done = remove_in(&mut tx, arn).await?;
            tx.commit().await?;
            Ok(done)
        })
    }

    async fn secrets_purge_expired(&self, now: i64) -> Result<u64> {
        retry_write!(self, async {
            let mut tx = self.begin_write().await?;
            let arns: Vec<String> =
                sqlx::query_scalar("SELECT arn FROM secrets WHERE purge_at IS NOT NULL AND purge_at <= $1")
                    .bind(now)
                    .fetch_all(&mut *tx)
                    .await?;
            let mut n = 0;
            for arn in &arns {
                if remove_in(&mut tx, arn).await? {
                    n += 1;
                }
            }
            tx.commit().await?;
            Ok(n)
        })
    }
}

async fn insert_version(tx: &mut sqlx::Transaction<'static, sqlx::Any>, arn: &str, v: &SecretVersionRow) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO secret_versions (arn, {VCOLS}) VALUES ($1, $2, $3, $4, $5, $6)"
    ))
    .bind(arn)
    .bind(&v.version_id)
    .bind(&v.kind)
    .bind(&v.sealed)
    .bind(&v.stages)
    .bind(v.created_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
