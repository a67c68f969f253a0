//! [`PullThroughRuleStore`] on SQLite and PostgreSQL.

use async_trait::async_trait;

use crate::error::Result;
use crate::ptc_rules::{PtcCreate, PtcRuleRow, PullThroughRuleStore};
use crate::sql::{retry_write, SqlMetaStore, MAX_RETRIES};

const COLS: &str = "account, prefix, upstream_url, upstream_registry, credential_arn, custom_role_arn, \
     upstream_prefix, created_at, updated_at";

#[async_trait]
impl PullThroughRuleStore for SqlMetaStore {
    async fn ptc_rule_create(&self, row: &PtcRuleRow, max: i64) -> Result<PtcCreate> {
        retry_write!(self, async {
            let mut tx = self.begin_write().await?;
            let exists: Option<i64> =
                sqlx::query_scalar("SELECT 1 FROM pull_through_rules WHERE account = $1 AND prefix = $2")
                    .bind(&row.account)
                    .bind(&row.prefix)
                    .fetch_optional(&mut *tx)
                    .await?;
            if exists.is_some() {
                return Ok(PtcCreate::Exists);
            }
            let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pull_through_rules WHERE account = $1")
                .bind(&row.account)
                .fetch_one(&mut *tx)
                .await?;
            if count >= max {
                return Ok(PtcCreate::LimitExceeded);
            }
            sqlx::query(&format!(
                "INSERT INTO pull_through_rules ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            ))
            .bind(&row.account)
            .bind(&row.prefix)
            .bind(&row.upstream_url)
            .bind(&row.upstream_registry)
            .bind(&row.credential_arn)
            .bind(&row.custom_role_arn)
            .bind(&row.upstream_prefix)
            .bind(row.created_at)
            .bind(row.updated_at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(PtcCreate::Created)
        })
    }

    async fn ptc_rule_get(&self, account: &str, prefix: &str) -> Result<Option<PtcRuleRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {COLS} FROM pull_through_rules WHERE account = $1 AND prefix = $2"
        ))
        .bind(account)
        .bind(prefix)
        .fetch_optional(&self.read)
        .await?)
    }

    async fn ptc_rule_list(&self, account: &str, after: Option<&str>, limit: i64) -> Result<Vec<PtcRuleRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {COLS} FROM pull_through_rules WHERE account = $1 AND prefix > $2 ORDER BY prefix LIMIT $3"
        ))
        .bind(account)
        .bind(after.unwrap_or(""))
        .bind(limit)
        .fetch_all(&self.read)
        .await?)
    }

    async fn ptc_rule_update(
        &self,
        account: &str,
        prefix: &str,
        credential_arn: Option<&str>,
        custom_role_arn: Option<&str>,
    ) -> Result<Option<PtcRuleRow>> {
        let now = crate::now_millis();
        retry_write!(self, async {
            let mut tx = self.begin_write().await?;
            let done = sqlx::query(
                "UPDATE pull_through_rules SET credential_arn = COALESCE($3, credential_arn), \
                 custom_role_arn = COALESCE($4, custom_role_arn), updated_at = $5 \
                 WHERE account = $1 AND prefix = $2",
            )
            .bind(account)
            .bind(prefix)
            .bind(credential_arn)
            .bind(custom_role_arn)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Ok(None);
            }
            let row: PtcRuleRow = sqlx::query_as(&format!(
                "SELECT {COLS} FROM pull_through_rules WHERE account = $1 AND prefix = $2"
            ))
            .bind(account)
            .bind(prefix)
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(Some(row))
        })
    }

    async fn ptc_rule_delete(&self, account: &str, prefix: &str) -> Result<Option<PtcRuleRow>> {
        retry_write!(self, async {
            let mut tx = self.begin_write().await?;
            let row: Option<PtcRuleRow> = sqlx::query_as(&format!(
                "SELECT {COLS} FROM pull_through_rules WHERE account = $1 AND prefix = $2"
            ))
            .bind(account)
            .bind(prefix)
            .fetch_optional(&mut *tx)
            .await?;
            if row.is_some() {
                sqlx::query("DELETE FROM pull_through_rules WHERE account = $1 AND prefix = $2")
                    .bind(account)
                    .bind(prefix)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
            }
            Ok(row)
        })
    }
}
