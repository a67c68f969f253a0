//! [`IamStore`] on SQLite.

use async_trait::async_trait;
use sqlx::{FromRow, Row};

use crate::error::Result;
use crate::iam::{AccessKeyInfo, IamEntity, IamStore, ResourcePolicyRow};
use crate::now_millis;
use crate::sql::{retry_write, SqlMetaStore, MAX_RETRIES};

const ENTITY_COLS: &str = "account, kind, name, id, path, arn, body, created_at";

fn key(name: &str) -> String {
    name.to_lowercase()
}

impl SqlMetaStore {
    /// Bump the access-control generation (after the change it covers).
    pub(crate) async fn bump_iam_generation(&self) -> Result<()> {
        retry_write!(self, async {
            sqlx::query("UPDATE iam_generation SET gen = gen + 1 WHERE id = 1")
                .execute(&self.write)
                .await?;
            Ok(())
        })
    }
}

#[async_trait]
impl IamStore for SqlMetaStore {
    async fn iam_entity_create(&self, e: &IamEntity) -> Result<bool> {
        retry_write!(self, async {
            let done = sqlx::query(
                "INSERT INTO iam_entities (account, kind, name_key, name, id, path, arn, body, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (account, kind, name_key) DO NOTHING",
            )
            .bind(&e.account)
            .bind(&e.kind)
            .bind(key(&e.name))
            .bind(&e.name)
            .bind(&e.id)
            .bind(&e.path)
            .bind(&e.arn)
            .bind(&e.body)
            .bind(e.created_at)
            .execute(&self.write)
            .await?;
            self.bump_iam_generation().await?;
            Ok(done.rows_affected() == 1)
        })
    }

    async fn iam_entity_get(&self, account: &str, kind: &str, name: &str) -> Result<Option<IamEntity>> {
        let row = sqlx::query(&format!(
            "SELECT {ENTITY_COLS} FROM iam_entities WHERE account = $1 AND kind = $2 AND name_key = $3"
        ))
        .bind(account)
        .bind(kind)
        .bind(key(name))
        .fetch_optional(&self.read)
        .await?;
        Ok(row.as_ref().map(IamEntity::from_row).transpose()?)
    }

    async fn iam_entity_by_id(&self, account: &str, id: &str) -> Result<Option<IamEntity>> {
        let row = sqlx::query(&format!(
            "SELECT {ENTITY_COLS} FROM iam_entities WHERE id = $1 AND account = $2"
        ))
        .bind(id)
        .bind(account)
        .fetch_optional(&self.read)
        .await?;
        Ok(row.as_ref().map(IamEntity::from_row).transpose()?)
    }

    async fn iam_entity_update(
        &self,
        account: &str,
        kind: &str,
        name: &str,
        expected: &str,
        body: &str,
    ) -> Result<bool> {
        retry_write!(self, async {
            let done = sqlx::query(
                "UPDATE iam_entities SET body = $1 WHERE account = $2 AND kind = $3 AND name_key = $4 AND body = $5",
            )
            .bind(body)
            .bind(account)
            .bind(kind)
            .bind(key(name))
            .bind(expected)
            .execute(&self.write)
            .await?;
            self.bump_iam_generation().await?;
            Ok(done.rows_affected() == 1)
        })
    }

    async fn iam_entity_list(
        &self,
        account: &str,
        kind: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<IamEntity>> {
        let rows = sqlx::query(&format!(
            "SELECT {ENTITY_COLS} FROM iam_entities WHERE account = $1 AND kind = $2 AND name_key > $3 \
             ORDER BY name_key LIMIT $4"
        ))
        .bind(account)
        .bind(kind)
        .bind(after.map(key).unwrap_or_default())
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .iter()
            .map(IamEntity::from_row)
            .collect::<std::result::Result<_, _>>()?)
    }

    async fn iam_entity_delete(&self, account: &str, kind: &str, name: &str) -> Result<bool> {
        retry_write!(self, async {
            let done = sqlx::query("DELETE FROM iam_entities WHERE account = $1 AND kind = $2 AND name_key = $3")
                .bind(account)
                .bind(kind)
                .bind(key(name))
                .execute(&self.write)
                .await?;
            self.bump_iam_generation().await?;
            Ok(done.rows_affected() == 1)
        })
    }

    async fn iam_inline_put(&self, account: &str, kind: &str, owner: &str, policy: &str, document: &str) -> Result<()> {
        retry_write!(self, async {
            sqlx::query(
                "INSERT INTO iam_inline_policies (account, kind, owner_key, name, document) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (account, kind, owner_key, name) DO UPDATE SET document = excluded.document",
            )
            .bind(account)
            .bind(kind)
            .bind(key(owner))
            .bind(policy)
            .bind(document)
            .execute(&self.write)
            .await?;
            self.bump_iam_generation().await?;
            Ok(())
        })
    }

    async fn iam_inline_get(&self, account: &str, kind: &str, owner: &str, policy: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT document FROM iam_inline_policies WHERE account = $1 AND kind = $2 AND owner_key = $3 AND name = $4",
        )
        .bind(account)
        .bind(kind)
        .bind(key(owner))
        .bind(policy)
        .fetch_optional(&self.read)
        .await?)
    }

    async fn iam_inline_list(&self, account: &str, kind: &str, owner: &str) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT name, document FROM iam_inline_policies WHERE account = $1 AND kind = $2 AND owner_key = $3 \
             ORDER BY name",
        )
        .bind(account)
        .bind(kind)
        .bind(key(owner))
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }

    async fn iam_inline_delete(&self, account: &str, kind: &str, owner: &str, policy: &str) -> Result<bool> {
        retry_write!(self, async {
            let done = sqlx::query(
                "DELETE FROM iam_inline_policies WHERE account = $1 AND kind = $2 AND owner_key = $3 AND name = $4",
            )
            .bind(account)
            .bind(kind)
            .bind(key(owner))
            .bind(policy)
            .execute(&self.write)
            .await?;
            self.bump_iam_generation().await?;
            Ok(done.rows_affected() == 1)
        })
    }

    async fn iam_link_add(&self, account: &str, rel: &str, from_kind: &str, from: &str, to: &str) -> Result<bool> {
        retry_write!(self, async {
            let done = sqlx::query(
                "INSERT INTO iam_links (account, rel, from_kind, from_key, from_name, target) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (account, rel, from_kind, from_key, target) DO NOTHING",
            )
            .bind(account)
            .bind(rel)
            .bind(from_kind)
            .bind(key(from))
            .bind(from)
            .bind(to)
            .execute(&self.write)
            .await?;
            self.bump_iam_generation().await?;
            Ok(done.rows_affected() == 1)
        })
    }

    async fn iam_link_remove(&self, account: &str, rel: &str, from_kind: &str, from: &str, to: &str) -> Result<bool> {
        retry_write!(self, async {
            let done = sqlx::query(
                "DELETE FROM iam_links WHERE account = $1 AND rel = $2 AND from_kind = $3 AND from_key = $4 AND target = $5",
            )
            .bind(account)
            .bind(rel)
            .bind(from_kind)
            .bind(key(from))
            .bind(to)
            .execute(&self.write)
            .await?;
            self.bump_iam_generation().await?;
            Ok(done.rows_affected() == 1)
        })
    }

    async fn iam_links_from(&self, account: &str, rel: &str, from_kind: &str, from: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT target FROM iam_links WHERE account = $1 AND rel = $2 AND from_kind = $3 AND from_key = $4 \
             ORDER BY target",
        )
        .bind(account)
        .bind(rel)
        .bind(from_kind)
        .bind(key(from))
        .fetch_all(&self.read)
        .await?)
    }

    async fn iam_links_to(&self, account: &str, rel: &str, to: &str) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT from_kind, from_name FROM iam_links WHERE account = $1 AND rel = $2 AND target = $3 \
             ORDER BY from_kind, from_key",
        )
        .bind(account)
        .bind(rel)
        .bind(to)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }

    async fn access_keys_of(&self, principal_id: &str) -> Result<Vec<AccessKeyInfo>> {
        let rows = sqlx::query(
            "SELECT access_key_id, status, created_at FROM access_keys \
             WHERE principal_id = $1 AND session_token_hash IS NULL ORDER BY created_at, access_key_id",
        )
        .bind(principal_id)
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .iter()
            .map(AccessKeyInfo::from_row)
            .collect::<std::result::Result<_, _>>()?)
    }

    async fn access_key_set_status(&self, access_key_id: &str, status: &str) -> Result<bool> {
        retry_write!(self, async {
            let done = sqlx::query("UPDATE access_keys SET status = $1 WHERE access_key_id = $2")
                .bind(status)
                .bind(access_key_id)
                .execute(&self.write)
                .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    async fn access_key_delete(&self, access_key_id: &str) -> Result<bool> {
        retry_write!(self, async {
            let done = sqlx::query("DELETE FROM access_keys WHERE access_key_id = $1")
                .bind(access_key_id)
                .execute(&self.write)
                .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    async fn access_keys_delete_sessions(&self, role_id: &str) -> Result<u64> {
        // `<role_id>:` up to (not including) `<role_id>;`, `;` being the
        // byte after `:`: every session id of the role, from the index.
        retry_write!(self, async {
            let done = sqlx::query(
                "DELETE FROM access_keys WHERE principal_id >= $1 AND principal_id < $2 \
                 AND session_token_hash IS NOT NULL",
            )
            .bind(format!("{role_id}:"))
            .bind(format!("{role_id};"))
            .execute(&self.write)
            .await?;
            Ok(done.rows_affected())
        })
    }

    async fn access_keys_purge_expired(&self, before: i64) -> Result<u64> {
        retry_write!(self, async {
            let done = sqlx::query("DELETE FROM access_keys WHERE expires_at IS NOT NULL AND expires_at < $1")
                .bind(before)
                .execute(&self.write)
                .await?;
            Ok(done.rows_affected())
        })
    }

    async fn iam_generation(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT gen FROM iam_generation WHERE id = 1")
            .fetch_one(&self.read)
            .await?)
    }

    async fn resource_policy_put(&self, arn: &str, policy: &str) -> Result<()> {
        retry_write!(self, async {
            sqlx::query(
                "INSERT INTO resource_policies (arn, policy, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (arn) DO UPDATE SET policy = excluded.policy, updated_at = excluded.updated_at",
            )
            .bind(arn)
            .bind(policy)
            .bind(now_millis())
            .execute(&self.write)
            .await?;
            self.bump_iam_generation().await?;
            Ok(())
        })
    }

    async fn resource_policy_get(&self, arn: &str) -> Result<Option<ResourcePolicyRow>> {
        let row = sqlx::query("SELECT arn, policy, updated_at FROM resource_policies WHERE arn = $1")
            .bind(arn)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.as_ref().map(ResourcePolicyRow::from_row).transpose()?)
    }

    async fn resource_policy_delete(&self, arn: &str) -> Result<Option<ResourcePolicyRow>> {
        retry_write!(self, async {
            let row = sqlx::query("DELETE FROM resource_policies WHERE arn = $1 RETURNING arn, policy, updated_at")
                .bind(arn)
                .fetch_optional(&self.write)
                .await?;
            self.bump_iam_generation().await?;
            Ok(row.as_ref().map(ResourcePolicyRow::from_row).transpose()?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::ControlStore;
    use crate::sql::{Dialect, POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS};

    /// Schema 6 gives every access key its owner's unique id, found by exact
    /// ARN against the IAM entities (root by its ARN, a session by its
    /// role's name); a key whose owner is gone gets none.
    async fn backfill(s: &SqlMetaStore) {
        let a = "111111111111";
        s.account_ensure(a).await.unwrap();
        let ent = |kind: &str, name: &str, path: &str, id: &str| IamEntity {
            account: a.into(),
            kind: kind.into(),
            name: name.into(),
            id: id.into(),
            path: path.into(),
            arn: format!("arn:aws:iam::{a}:{kind}{path}{name}"),
            body: "{}".into(),
            created_at: 1,
        };
        for e in [
            ent("user", "boss", "/", "AIDABOSS"),
            ent("user", "mallory", "/boss:/", "AIDAMALLORY"),
            ent("role", "ci", "/", "AROACI"),
            ent("role", "c", "/", "AROAC"),
        ] {
            assert!(s.iam_entity_create(&e).await.unwrap());
        }
        // Back to schema 5: no owner column.
        sqlx::raw_sql(
            "DROP INDEX access_keys_by_principal_id; ALTER TABLE access_keys DROP COLUMN principal_id; \
             DROP INDEX IF EXISTS manifests_listing; DROP INDEX IF EXISTS manifests_status; ALTER TABLE manifests DROP COLUMN image_status; \
             ALTER TABLE manifests DROP COLUMN archived_at; ALTER TABLE manifests DROP COLUMN activated_at; \
             DROP INDEX uploads_repo; DROP INDEX uploads_principal; ALTER TABLE uploads DROP COLUMN principal; \
             UPDATE schema_version SET version = 5;",
        )
        .execute(&s.write)
        .await
        .unwrap();
        let keys = [
            ("AKIAROOT", format!("arn:aws:iam::{a}:root"), false),
            ("AKIABOSS", format!("arn:aws:iam::{a}:user/boss"), false),
            ("AKIAMAL", format!("arn:aws:iam::{a}:user/boss:/mallory"), false),
            ("AKIAGONE", format!("arn:aws:iam::{a}:user/gone"), false),
            ("ASIACI", format!("arn:aws:sts::{a}:assumed-role/ci/build-1"), true),
            ("ASIAGONE", format!("arn:aws:sts::{a}:assumed-role/deleted/x"), true),
        ];
        for (id, arn, temp) in &keys {
            sqlx::query(
                "INSERT INTO access_keys (access_key_id, account, principal_arn, secret_sealed, status, \
                 session_token_hash, expires_at, created_at) VALUES ($1, $2, $3, $4, 'Active', $5, $6, 7)",
            )
            .bind(*id)
            .bind(a)
            .bind(arn.as_str())
            .bind(vec![1u8])
            .bind(temp.then(|| "h".to_string()))
            .bind(temp.then_some(i64::MAX))
            .execute(&s.write)
            .await
            .unwrap();
        }
        let migrations = match s.dialect() {
            Dialect::Sqlite => SQLITE_MIGRATIONS,
            Dialect::Postgres => POSTGRES_MIGRATIONS,
        };
        s.migrate(migrations).await.unwrap();
        let owner = |id: &'static str| async move { s.access_key_get(id).await.unwrap().unwrap().principal_id };
        assert_eq!(owner("AKIAROOT").await, a);
        assert_eq!(owner("AKIABOSS").await, "AIDABOSS");
        assert_eq!(owner("AKIAMAL").await, "AIDAMALLORY", "mallory is not boss");
        assert_eq!(owner("AKIAGONE").await, "");
        assert_eq!(owner("ASIACI").await, "AROACI:build-1");
        assert_eq!(owner("ASIAGONE").await, "");
        assert_eq!(s.access_key_get("ASIACI").await.unwrap().unwrap().created_at, 7);
        let listed: Vec<_> = s
            .access_keys_of("AIDAMALLORY")
            .await
            .unwrap()
            .into_iter()
            .map(|k| k.access_key_id)
            .collect();
        assert_eq!(listed, ["AKIAMAL"]);
    }

    #[tokio::test]
    async fn schema_6_backfills_key_owners_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        backfill(&SqlMetaStore::open(dir.path().join("meta.db")).await.unwrap()).await;
    }

    #[tokio::test]
    async fn schema_6_backfills_key_owners_postgres() {
        if let Some(s) = crate::testdb::postgres("schema_6_backfills_key_owners_postgres").await {
            backfill(&s).await;
        }
    }
}
