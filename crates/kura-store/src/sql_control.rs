//! [`ControlStore`] on the SQL store: accounts, access keys, tags, templates and settings.

use async_trait::async_trait;
use sqlx::{FromRow, Row};

use crate::control::*;
use crate::error::Result;
use crate::meta::*;
use crate::now_millis;
use crate::sql::*;

#[async_trait]
impl ControlStore for SqlMetaStore {
    async fn account_ensure(&self, account: &str) -> Result<()> {
        retry_write!(self, async {
            sqlx::query("INSERT INTO accounts (id, created_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING")
                .bind(account)
                .bind(now_millis())
                .execute(&self.write)
                .await?;
            Ok(())
        })
    }

    async fn account_exists(&self, account: &str) -> Result<bool> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM accounts WHERE id = $1")
            .bind(account)
            .fetch_one(&self.read)
            .await?;
        Ok(n > 0)
    }

    async fn access_key_put(&self, k: &AccessKeyRow) -> Result<()> {
        retry_write!(self, async {
            sqlx::query(
                "INSERT INTO access_keys (access_key_id, account, principal_arn, principal_id, secret_sealed, status, session_token_hash, expires_at, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (access_key_id) DO NOTHING",
            )
            .bind(&k.access_key_id)
            .bind(&k.account)
            .bind(&k.principal_arn)
            .bind(&k.principal_id)
            .bind(&k.secret_sealed)
            .bind(&k.status)
            .bind(&k.session_token_hash)
            .bind(k.expires_at)
            .bind(k.created_at)
            .execute(&self.write)
            .await?;
            Ok(())
        })
    }

    async fn access_key_get(&self, access_key_id: &str) -> Result<Option<AccessKeyRow>> {
        let row = sqlx::query(
            "SELECT access_key_id, account, principal_arn, COALESCE(principal_id, '') AS principal_id, secret_sealed, \
             status, session_token_hash, expires_at, created_at FROM access_keys WHERE access_key_id = $1",
        )
        .bind(access_key_id)
        .fetch_optional(&self.read)
        .await?;
        Ok(row.as_ref().map(AccessKeyRow::from_row).transpose()?)
    }

    async fn server_secret_get(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(sqlx::query_scalar("SELECT value FROM server_secrets WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.read)
            .await?)
    }

    async fn server_secret_get_or_put(&self, name: &str, value: &[u8]) -> Result<Vec<u8>> {
        retry_write!(self, async {
            sqlx::query("INSERT INTO server_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
                .bind(name)
                .bind(value)
                .execute(&self.write)
                .await?;
            Ok(sqlx::query_scalar("SELECT value FROM server_secrets WHERE name = $1")
                .bind(name)
                .fetch_one(&self.write)
                .await?)
        })
    }

    async fn resource_tags(&self, arn: &str) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query("SELECT key, value FROM resource_tags WHERE arn = $1 ORDER BY key")
            .bind(arn)
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }

    async fn resource_tags_put(&self, arn: &str, tags: &[(String, String)]) -> Result<()> {
        retry_write!(self, async {
            let mut tx = self.begin_write().await?;
            for (k, v) in tags {
                sqlx::query(
                    "INSERT INTO resource_tags (arn, key, value) VALUES ($1, $2, $3) \
                     ON CONFLICT (arn, key) DO UPDATE SET value = excluded.value",
                )
                .bind(arn)
                .bind(k)
                .bind(v)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            self.bump_iam_generation().await?;
            Ok(())
        })
    }

    async fn resource_tags_remove(&self, arn: &str, keys: &[String]) -> Result<()> {
        retry_write!(self, async {
            let mut tx = self.begin_write().await?;
            for k in keys {
                sqlx::query("DELETE FROM resource_tags WHERE arn = $1 AND key = $2")
                    .bind(arn)
                    .bind(k)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            self.bump_iam_generation().await?;
            Ok(())
        })
    }

    async fn template_put(&self, account: &str, prefix: &str, body: &str, create: bool) -> Result<bool> {
        retry_write!(self, async {
            let now = now_millis();
            let res = if create {
                sqlx::query(
                    "INSERT INTO creation_templates (account, prefix, body, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) \
                     ON CONFLICT (account, prefix) DO NOTHING",
                )
                .bind(account)
                .bind(prefix)
                .bind(body)
                .bind(now)
                .execute(&self.write)
                .await?
            } else {
                sqlx::query(
                    "UPDATE creation_templates SET body = $3, updated_at = $4 WHERE account = $1 AND prefix = $2",
                )
                .bind(account)
                .bind(prefix)
                .bind(body)
                .bind(now)
                .execute(&self.write)
                .await?
            };
            Ok(res.rows_affected() > 0)
        })
    }

    async fn template_get(&self, account: &str, prefix: &str) -> Result<Option<TemplateRow>> {
        let row = sqlx::query(
            "SELECT prefix, body, created_at, updated_at FROM creation_templates WHERE account = $1 AND prefix = $2",
        )
        .bind(account)
        .bind(prefix)
        .fetch_optional(&self.read)
        .await?;
        Ok(row.as_ref().map(TemplateRow::from_row).transpose()?)
    }

    async fn template_list(&self, account: &str, after: Option<&str>, limit: i64) -> Result<Vec<TemplateRow>> {
        let rows = sqlx::query(
            "SELECT prefix, body, created_at, updated_at FROM creation_templates \
             WHERE account = $1 AND prefix > $2 ORDER BY prefix LIMIT $3",
        )
        .bind(account)
        .bind(after.unwrap_or(""))
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        Ok(rows.iter().map(TemplateRow::from_row).collect::<Result<_, _>>()?)
    }

    async fn template_delete(&self, account: &str, prefix: &str) -> Result<Option<TemplateRow>> {
        retry_write!(self, async {
            let row = sqlx::query(
                "DELETE FROM creation_templates WHERE account = $1 AND prefix = $2 RETURNING prefix, body, created_at, updated_at",
            )
            .bind(account)
            .bind(prefix)
            .fetch_optional(&self.write)
            .await?;
            Ok(row.as_ref().map(TemplateRow::from_row).transpose()?)
        })
    }

    async fn setting_get(&self, account: &str, name: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT value FROM account_settings WHERE account = $1 AND name = $2")
                .bind(account)
                .bind(name)
                .fetch_optional(&self.read)
                .await?,
        )
    }

    async fn setting_put(&self, account: &str, name: &str, value: &str) -> Result<()> {
        retry_write!(self, async {
            sqlx::query(
                "INSERT INTO account_settings (account, name, value) VALUES ($1, $2, $3) \
                 ON CONFLICT (account, name) DO UPDATE SET value = excluded.value",
            )
            .bind(account)
            .bind(name)
            .bind(value)
            .execute(&self.write)
            .await?;
            Ok(())
        })
    }

    async fn public_repo_put(&self, repo: RepoId, catalog_data: &str) -> Result<bool> {
        retry_write!(self, async {
            let now = now_millis();
            // INSERT ... SELECT with a WHERE: nothing is written for a repository
            // that does not exist (or was just deleted).
            let res = sqlx::query(
                "INSERT INTO public_repositories (repo_id, catalog_data, created_at, updated_at) \
                 SELECT id, $2, $3, $3 FROM repositories WHERE id = $1 \
                 ON CONFLICT (repo_id) DO UPDATE SET catalog_data = excluded.catalog_data, updated_at = excluded.updated_at",
            )
            .bind(repo)
            .bind(catalog_data)
            .bind(now)
            .execute(&self.write)
            .await?;
            Ok(res.rows_affected() > 0)
        })
    }

    async fn public_repo_get(&self, account: &str, name: &str) -> Result<Option<PublicRepoRow>> {
        let row = sqlx::query(
            "SELECT p.repo_id, r.account, r.name, p.catalog_data, p.created_at, p.updated_at \
             FROM public_repositories p JOIN repositories r ON r.id = p.repo_id \
             WHERE r.account = $1 AND r.name = $2",
        )
        .bind(account)
        .bind(name)
        .fetch_optional(&self.read)
        .await?;
        Ok(row.as_ref().map(PublicRepoRow::from_row).transpose()?)
    }

    async fn public_repo_list(&self, account: &str, after: Option<&str>, limit: i64) -> Result<Vec<PublicRepoRow>> {
        let rows = sqlx::query(
            "SELECT p.repo_id, r.account, r.name, p.catalog_data, p.created_at, p.updated_at \
             FROM public_repositories p JOIN repositories r ON r.id = p.repo_id \
             WHERE r.account = $1 AND r.name > $2 ORDER BY r.name LIMIT $3",
        )
        .bind(account)
        .bind(after.unwrap_or(""))
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        Ok(rows.iter().map(PublicRepoRow::from_row).collect::<Result<_, _>>()?)
    }

    async fn public_repo_remove(&self, repo: RepoId) -> Result<bool> {
        retry_write!(self, async {
            let res = sqlx::query("DELETE FROM public_repositories WHERE repo_id = $1")
                .bind(repo)
                .execute(&self.write)
                .await?;
            Ok(res.rows_affected() > 0)
        })
    }
}
