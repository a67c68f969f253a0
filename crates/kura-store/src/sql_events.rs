//! [`EventsStore`] on SQLite and PostgreSQL.

use async_trait::async_trait;
use sqlx::Row;

use crate::error::Result;
use crate::events::{EventResourceRow, EventsStore, RuleDelete, RuleRow, TargetRow, TargetsPut};
use crate::sql::{retry_write, SqlMetaStore, MAX_RETRIES};

const RULE_COLS: &str = "account, name, pattern, state, description, created_at, updated_at";
const RES_COLS: &str = "account, kind, name, uuid, body, secret, created_at, updated_at";

fn resource_from_row(r: &sqlx::any::AnyRow) -> Result<EventResourceRow> {
    Ok(EventResourceRow {
        account: r.try_get("account")?,
        kind: r.try_get("kind")?,
        name: r.try_get("name")?,
        uuid: r.try_get("uuid")?,
        body: r.try_get("body")?,
        secret: r.try_get("secret")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

async fn bump(tx: &mut sqlx::Transaction<'static, sqlx::Any>) -> Result<()> {
    sqlx::query("UPDATE event_generation SET gen = gen + 1 WHERE id = 1")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[async_trait]
impl EventsStore for SqlMetaStore {
    async fn rule_put(&self, row: &RuleRow) -> Result<RuleRow> {
        retry_write!(self, async {
            let mut tx = self.begin_write().await?;
            let stored: RuleRow = sqlx::query_as(&format!(
                "INSERT INTO event_rules ({RULE_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (account, name) DO UPDATE SET pattern = excluded.pattern, \
                 state = excluded.state, description = excluded.description, updated_at = excluded.updated_at \
                 RETURNING {RULE_COLS}"
            ))
            .bind(&row.account)
            .bind(&row.name)
            .bind(&row.pattern)
            .bind(&row.state)
            .bind(&row.description)
            .bind(row.created_at)
            .bind(row.updated_at)
            .fetch_one(&mut *tx)
            .await?;
            bump(&mut tx).await?;
            tx.commit().await?;
            Ok(stored)
        })
    }

    async fn rule_get(&self, account: &str, name: &str) -> Result<Option<RuleRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {RULE_COLS} FROM event_rules WHERE account = $1 AND name = $2"
        ))
        .bind(account)
        .bind(name)
        .fetch_optional(&self.read)
        .await?)
    }

    async fn rules_list(&self, account: &str, prefix: &str, after: Option<&str>, limit: i64) -> Result<Vec<RuleRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {RULE_COLS} FROM event_rules WHERE account = $1 AND substr(name, 1, length($2)) = $2 \
             AND name > $3 ORDER BY name LIMIT $4"
        ))
        .bind(account)
        .bind(prefix)
        .bind(after.unwrap_or(""))
        .bind(limit)
        .fetch_all(&self.read)
        .await?)
    }

    async fn rule_set_state(&self, account: &str, name: &str, state: &str, now: i64) -> Result<bool> {
        retry_write!(self, async {
            let mut tx = self.begin_write().await?;
            let done =
                sqlx::query("UPDATE event_rules SET state = $1, updated_at = $2 WHERE account = $3 AND name = $4")
                    .bind(state)
                    .bind(now)
                    .bind(account)
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
            bump(&mut tx).await?;
            tx.commit().await?;
            Ok(done.rows_affected() == 1)
        })
    }

    async fn rule_delete(&self, account: &str, name: &str) -> Result<RuleDelete> {
        retry_write!(self, async {
            let mut tx = self.begin_write().await?;
            let targets: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM event_targets WHERE account = $1 AND rule = $2")
                    .bind(account)
                    .bind(name)
                    .fetch_one(&mut *tx)
                    .await?;
            if targets > 0 {
                return Ok(RuleDelete::HasTargets);
            }
            let done = sqlx::query("DELETE FROM event_rules WHERE account = $1 AND name = $2")
                .bind(account)
                .bind(name)
                .execute(&mut *tx)
                .await?;
            bump(&mut tx).await?;
            tx.commit().await?;
            Ok(if done.rows_affected() == 1 {
                RuleDelete::Deleted
            } else {
                RuleDelete::NotFound
            })
        })
    }

    async fn targets_put(&self, account: &str, rule: &str, targets: &[TargetRow], max: i64) -> Result<TargetsPut> {
        retry_write!(self, async {
            let mut tx = self.begin_write().await?;
            let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM event_rules WHERE account = $1 AND name = $2")
                .bind(account)
                .bind(rule)
                .fetch_optional(&mut *tx)
                .await?;
            if exists.is_none() {
                return Ok(TargetsPut::NoRule);
            }
            for t in targets {
                sqlx::query(
                    "INSERT INTO event_targets (account, rule, id, arn, body) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (account, rule, id) DO UPDATE SET arn = excluded.arn, body = excluded.body",
                )
                .bind(account)
                .bind(rule)
                .bind(&t.id)
                .bind(&t.arn)
                .bind(&t.body)
                .execute(&mut *tx)
                .await?;
            }
            let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM event_targets WHERE account = $1 AND rule = $2")
                .bind(account)
                .bind(rule)
                .fetch_one(&mut *tx)
                .await?;
            if count > max {
                return Ok(TargetsPut::TooMany);
            }
            bump(&mut tx).await?;
            tx.commit().await?;
            Ok(TargetsPut::Done)
        })
    }

    async fn targets_remove(&self, account: &str, rule: &str, ids: &[String]) -> Result<Option<Vec<String>>> {
        retry_write!(self, async {
            let mut tx = self.begin_write().await?;
            let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM event_rules WHERE account = $1 AND name = $2")
                .bind(account)
                .bind(rule)
                .fetch_optional(&mut *tx)
                .await?;
            if exists.is_none() {
                return Ok(None);
            }
            let mut removed = Vec::new();
            for id in ids {
                let done = sqlx::query("DELETE FROM event_targets WHERE account = $1 AND rule = $2 AND id = $3")
                    .bind(account)
                    .bind(rule)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() == 1 {
                    removed.push(id.clone());
                }
            }
            bump(&mut tx).await?;
            tx.commit().await?;
            Ok(Some(removed))
        })
    }

    async fn targets_list(&self, account: &str, rule: &str) -> Result<Vec<TargetRow>> {
        Ok(
            sqlx::query_as("SELECT id, arn, body FROM event_targets WHERE account = $1 AND rule = $2 ORDER BY id")
                .bind(account)
                .bind(rule)
                .fetch_all(&self.read)
                .await?,
        )
    }

    async fn rules_enabled(&self, account: &str) -> Result<Vec<(RuleRow, Vec<TargetRow>)>> {
        let rules: Vec<RuleRow> = sqlx::query_as(&format!(
            "SELECT {RULE_COLS} FROM event_rules WHERE account = $1 AND state = 'ENABLED' ORDER BY name"
        ))
        .bind(account)
        .fetch_all(&self.read)
        .await?;
        let targets = sqlx::query(
            "SELECT t.rule, t.id, t.arn, t.body FROM event_targets t JOIN event_rules r \
             ON r.account = t.account AND r.name = t.rule \
             WHERE t.account = $1 AND r.state = 'ENABLED' ORDER BY t.rule, t.id",
        )
        .bind(account)
        .fetch_all(&self.read)
        .await?;
        let mut out: Vec<(RuleRow, Vec<TargetRow>)> = rules.into_iter().map(|r| (r, Vec::new())).collect();
        for row in &targets {
            let rule: String = row.try_get("rule")?;
            if let Some((_, ts)) = out.iter_mut().find(|(r, _)| r.name == rule) {
                ts.push(TargetRow {
                    id: row.try_get("id")?,
                    arn: row.try_get("arn")?,
                    body: row.try_get("body")?,
                });
            }
        }
        out.retain(|(_, ts)| !ts.is_empty());
        Ok(out)
    }

    async fn events_generation(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT gen FROM event_generation WHERE id = 1")
            .fetch_one(&self.read)
            .await?)
    }

    async fn event_resource_create(&self, row: &EventResourceRow) -> Result<bool> {
        retry_write!(self, async {
            let done = sqlx::query(&format!(
                "INSERT INTO event_resources ({RES_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (account, kind, name) DO NOTHING"
            ))
            .bind(&row.account)
            .bind(&row.kind)
            .bind(&row.name)
            .bind(&row.uuid)
            .bind(&row.body)
            .bind(&row.secret)
            .bind(row.created_at)
            .bind(row.updated_at)
            .execute(&self.write)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    async fn event_resource_get(&self, account: &str, kind: &str, name: &str) -> Result<Option<EventResourceRow>> {
        let row = sqlx::query(&format!(
            "SELECT {RES_COLS} FROM event_resources WHERE account = $1 AND kind = $2 AND name = $3"
        ))
        .bind(account)
        .bind(kind)
        .bind(name)
        .fetch_optional(&self.read)
        .await?;
        row.as_ref().map(resource_from_row).transpose()
    }

    async fn event_resources_list(
        &self,
        account: &str,
        kind: &str,
        prefix: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<EventResourceRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {RES_COLS} FROM event_resources WHERE account = $1 AND kind = $2 \
             AND substr(name, 1, length($3)) = $3 AND name > $4 ORDER BY name LIMIT $5"
        ))
        .bind(account)
        .bind(kind)
        .bind(prefix)
        .bind(after.unwrap_or(""))
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(resource_from_row).collect()
    }

    async fn event_resource_delete(&self, account: &str, kind: &str, name: &str) -> Result<bool> {
        retry_write!(self, async {
            let done = sqlx::query("DELETE FROM event_resources WHERE account = $1 AND kind = $2 AND name = $3")
                .bind(account)
                .bind(kind)
                .bind(name)
                .execute(&self.write)
                .await?;
            Ok(done.rows_affected() == 1)
        })
    }
}
