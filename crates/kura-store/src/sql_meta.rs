//! [`MetaStore`] on the SQL store: repositories, blobs, uploads, manifests and tags.

use async_trait::async_trait;
use sqlx::{FromRow, Row};

use crate::error::{Result, StoreError};
use crate::meta::*;
use crate::now_millis;
use crate::sql::*;

#[async_trait]
impl MetaStore for SqlMetaStore {
    async fn repo_get(&self, account: &str, name: &str) -> Result<Option<RepoRow>> {
        let row = sqlx::query(&format!(
            "SELECT {REPO_COLS} FROM repositories WHERE account = $1 AND name = $2"
        ))
        .bind(account)
        .bind(name)
        .fetch_optional(&self.read)
        .await?;
        row.as_ref().map(repo_from_row).transpose()
    }

    async fn repo_create(&self, account: &str, name: &str, settings: &RepoSettings) -> Result<Option<RepoRow>> {
        retry_write!(self, async {
            let json = serde_json::to_string(settings).map_err(|e| StoreError::Invalid(e.to_string()))?;
            let row = sqlx::query(&format!(
                "INSERT INTO repositories (account, name, created_at, settings) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (account, name) DO NOTHING RETURNING {REPO_COLS}"
            ))
            .bind(account)
            .bind(name)
            .bind(now_millis())
            .bind(json)
            .fetch_optional(&self.write)
            .await?;
            row.as_ref().map(repo_from_row).transpose()
        })
    }

    async fn repo_by_id(&self, repo: RepoId) -> Result<Option<RepoRow>> {
        let row = sqlx::query(&format!("SELECT {REPO_COLS} FROM repositories WHERE id = $1"))
            .bind(repo)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(repo_from_row).transpose()
    }

    async fn repo_get_or_create(&self, account: &str, name: &str) -> Result<RepoId> {
        retry_write!(self, async {
            if let Some(r) = self.repo_get(account, name).await? {
                return Ok(r.id);
            }
            if let Some(r) = self.repo_create(account, name, &RepoSettings::default()).await? {
                return Ok(r.id);
            }
            Ok(
                sqlx::query_scalar("SELECT id FROM repositories WHERE account = $1 AND name = $2")
                    .bind(account)
                    .bind(name)
                    .fetch_one(&self.write)
                    .await?,
            )
        })
    }

    async fn repo_list_rows(&self, account: &str, after: Option<&str>, limit: i64) -> Result<Vec<RepoRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {REPO_COLS} FROM repositories WHERE account = $1 AND name > $2 ORDER BY name LIMIT $3"
        ))
        .bind(account)
        .bind(after.unwrap_or(""))
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(repo_from_row).collect()
    }

    async fn repo_update_settings(&self, repo: RepoId, settings: &RepoSettings) -> Result<()> {
        retry_write!(self, async {
            let json = serde_json::to_string(settings).map_err(|e| StoreError::Invalid(e.to_string()))?;
            sqlx::query("UPDATE repositories SET settings = $2 WHERE id = $1")
                .bind(repo)
                .bind(json)
                .execute(&self.write)
                .await?;
            Ok(())
        })
    }

    async fn repo_delete(&self, repo: RepoId, force: bool) -> Result<DeleteRepo> {
        retry_write!(self, async {
            let mut tx = self.begin_write().await?;
            if !force {
                let any: Option<i64> = sqlx::query_scalar("SELECT 1 FROM manifests WHERE repo_id = $1 LIMIT 1")
                    .bind(repo)
                    .fetch_optional(&mut *tx)
                    .await?;
                if any.is_some() {
                    return Ok(DeleteRepo::NotEmpty);
                }
            }
            // Children before parents, so no foreign key is ever left dangling.
            for sql in [
                "DELETE FROM tags WHERE repo_id = $1",
                "DELETE FROM manifest_children WHERE repo_id = $1",
                "DELETE FROM manifest_blobs WHERE repo_id = $1",
                "DELETE FROM manifests WHERE repo_id = $1",
                "DELETE FROM repo_blobs WHERE repo_id = $1",
                "DELETE FROM uploads WHERE repo_id = $1",
                "DELETE FROM repositories WHERE id = $1",
            ] {
                sqlx::query(sql).bind(repo).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(DeleteRepo::Deleted)
        })
    }

    async fn repo_list(&self, account: &str, after: Option<&str>, limit: i64) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT name FROM repositories WHERE account = $1 AND name > $2 ORDER BY name LIMIT $3")
                .bind(account)
                .bind(after.unwrap_or(""))
                .bind(limit)
                .fetch_all(&self.read)
                .await?,
        )
    }

    async fn blob_get(&self, repo: RepoId, digest: &str) -> Result<Option<BlobRow>> {
        let row = sqlx::query(
            "SELECT b.digest, b.size, b.storage_key FROM repo_blobs rb JOIN blobs b ON b.digest = rb.digest \
             WHERE rb.repo_id = $1 AND rb.digest = $2",
        )
        .bind(repo)
        .bind(digest)
        .fetch_optional(&self.read)
        .await?;
        row.as_ref().map(blob_from_row).transpose()
    }

    async fn blob_lookup(&self, digest: &str) -> Result<Option<BlobRow>> {
        let row = sqlx::query("SELECT digest, size, storage_key FROM blobs WHERE digest = $1")
            .bind(digest)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(blob_from_row).transpose()
    }

    async fn blob_commit(&self, repo: RepoId, blob: &BlobRow, upload: Option<(&str, &str)>) -> Result<BlobCommitted> {
        retry_write!(self, async {
            let now = now_millis();
            let mut tx = self.begin_write().await?;
            sqlx::query(
                "INSERT INTO blobs (digest, size, storage_key, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (digest) DO NOTHING",
            )
            .bind(&blob.digest)
            .bind(blob.size)
            .bind(&blob.storage_key)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let key: String = sqlx::query_scalar("SELECT storage_key FROM blobs WHERE digest = $1")
                .bind(&blob.digest)
                .fetch_one(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO repo_blobs (repo_id, digest, created_at, touched_at) VALUES ($1, $2, $3, $3) \
                 ON CONFLICT (repo_id, digest) DO UPDATE SET touched_at = excluded.touched_at",
            )
            .bind(repo)
            .bind(&blob.digest)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let mut cleanup = Vec::new();
            if let Some((id, handle)) = upload {
                sqlx::query("DELETE FROM uploads WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                cleanup.push(outbox(&mut tx, "upload", handle, now).await?);
            }
            if key != blob.storage_key {
                // Another upload of the same content won: ours is a spare copy.
                cleanup.push(outbox(&mut tx, "blob", &blob.storage_key, now).await?);
            }
            tx.commit().await?;
            Ok(BlobCommitted { key, cleanup })
        })
    }

    async fn pending_done(&self, id: i64) -> Result<()> {
        retry_write!(self, async {
            self.execute_relaxed(sqlx::query("DELETE FROM pending_deletes WHERE id = $1").bind(id))
                .await?;
            Ok(())
        })
    }

    async fn blob_touch(&self, repo: RepoId, digest: &str, now: i64) -> Result<()> {
        retry_write!(self, async {
            self.execute_relaxed(
                sqlx::query(
                    "UPDATE repo_blobs SET touched_at = $3 WHERE repo_id = $1 AND digest = $2 AND touched_at < $4",
                )
                .bind(repo)
                .bind(digest)
                .bind(now)
                .bind(now - TOUCH_EVERY_MS),
            )
            .await?;
            Ok(())
        })
    }

    async fn blob_mount(&self, to: RepoId, from: RepoId, digest: &str) -> Result<bool> {
        retry_write!(self, async {
            // One statement: the source link is read and the target link written
            // atomically, so GC cannot slip in between.
            let res = sqlx::query(
                "INSERT INTO repo_blobs (repo_id, digest, created_at, touched_at) \
                 SELECT $1, digest, $3, $3 FROM repo_blobs WHERE repo_id = $2 AND digest = $4 \
                 ON CONFLICT (repo_id, digest) DO UPDATE SET touched_at = excluded.touched_at",
            )
            .bind(to)
            .bind(from)
            .bind(now_millis())
            .bind(digest)
            .execute(&self.write)
            .await?;
            Ok(res.rows_affected() > 0)
        })
    }

    async fn blob_unlink(&self, repo: RepoId, digest: &str) -> Result<bool> {
        retry_write!(self, async {
            let res = sqlx::query("DELETE FROM repo_blobs WHERE repo_id = $1 AND digest = $2")
                .bind(repo)
                .bind(digest)
                .execute(&self.write)
                .await?;
            Ok(res.rows_affected() > 0)
        })
    }

    async fn upload_open(&self, u: &UploadRow, principal: Option<&str>, limits: UploadLimits) -> Result<UploadOpen> {
        let cap = |n: u64| {
            if n == 0 {
                i64::MAX
            } else {
                i64::try_from(n).unwrap_or(i64::MAX)
            }
        };
        let (per_repo, per_principal) = (cap(limits.per_repository), cap(limits.per_principal));
        // One statement counts and inserts, so concurrent opens cannot pass
        // the cap together (SQLite has one writer; PostgreSQL runs it
        // SERIALIZABLE and retries a conflict).
        let inserted = retry_write!(self, async {
            self.execute_relaxed(
                sqlx::query(
                    "INSERT INTO uploads (id, repo_id, handle, received, hash_state, started_at, updated_at, principal) \
                     SELECT $1, $2, $3, $4, $5, $6, $6, $7 \
                     WHERE (SELECT COUNT(*) FROM uploads WHERE repo_id = $2) < $8 \
                     AND (SELECT COUNT(*) FROM uploads WHERE principal = $7) < $9",
                )
                .bind(&u.id)
                .bind(u.repo_id)
                .bind(&u.handle)
                .bind(u.offset)
                .bind(&u.hash_state)
                .bind(u.started_at)
                .bind(principal)
                .bind(per_repo)
                .bind(per_principal),
            )
            .await
        })?;
        if inserted == 1 {
            return Ok(UploadOpen::Opened);
        }
        let in_repo: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM uploads WHERE repo_id = $1")
            .bind(u.repo_id)
            .fetch_one(&self.read)
            .await?;
        Ok(if in_repo >= per_repo {
            UploadOpen::RepositoryFull(in_repo)
        } else {
            let by_principal: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM uploads WHERE principal = $1")
                .bind(principal)
                .fetch_one(&self.read)
                .await?;
            UploadOpen::PrincipalFull(by_principal)
        })
    }

    async fn upload_get(&self, id: &str) -> Result<Option<UploadRow>> {
        let row = sqlx::query(&format!("SELECT {UPLOAD_COLS} FROM uploads WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.as_ref().map(UploadRow::from_row).transpose()?)
    }

    async fn upload_claim(&self, id: &str, expected: Option<i64>, lease: &str) -> Result<Claim> {
        retry_write!(self, async {
            let mut w = self.relaxed().await?;
            let now = now_millis();
            let sql = match expected {
                Some(_) => format!(
                    "UPDATE uploads SET lease = $2, lease_until = $3 WHERE id = $1 \
                     AND (lease IS NULL OR lease_until < $4) AND received = $5 RETURNING {UPLOAD_COLS}"
                ),
                None => format!(
                    "UPDATE uploads SET lease = $2, lease_until = $3 WHERE id = $1 \
                     AND (lease IS NULL OR lease_until < $4) RETURNING {UPLOAD_COLS}"
                ),
            };
            let mut q = sqlx::query(&sql).bind(id).bind(lease).bind(now + LEASE_MS).bind(now);
            if let Some(e) = expected {
                q = q.bind(e);
            }
            if let Some(row) = q.fetch_optional(w.conn()).await? {
                w.done().await?;
                return Ok(Claim::Taken(UploadRow::from_row(&row)?));
            }
            let cur: Option<i64> = sqlx::query_scalar("SELECT received FROM uploads WHERE id = $1")
                .bind(id)
                .fetch_optional(w.conn())
                .await?;
            w.done().await?;
            Ok(match cur {
                Some(off) => Claim::Conflict(off),
                None => Claim::Unknown,
            })
        })
    }

    async fn upload_advance(
        &self,
        id: &str,
        lease: &str,
        handle: &str,
        offset: i64,
        hash_state: &[u8],
    ) -> Result<bool> {
        retry_write!(self, async {
            let res = sqlx::query(
                "UPDATE uploads SET handle = $3, received = $4, hash_state = $5, lease = NULL, lease_until = NULL, updated_at = $6 \
                 WHERE id = $1 AND lease = $2",
            )
            .bind(id)
            .bind(lease)
            .bind(handle)
            .bind(offset)
            .bind(hash_state)
            .bind(now_millis())
            .execute(&self.write)
            .await?;
            Ok(res.rows_affected() > 0)
        })
    }

    async fn upload_release(&self, id: &str, lease: &str) -> Result<()> {
        retry_write!(self, async {
            self.execute_relaxed(
                sqlx::query("UPDATE uploads SET lease = NULL, lease_until = NULL WHERE id = $1 AND lease = $2")
                    .bind(id)
                    .bind(lease),
            )
            .await?;
            Ok(())
        })
    }

    async fn upload_renew(&self, id: &str, lease: &str) -> Result<bool> {
        retry_write!(self, async {
            let affected = self
                .execute_relaxed(
                    sqlx::query("UPDATE uploads SET lease_until = $3 WHERE id = $1 AND lease = $2")
                        .bind(id)
                        .bind(lease)
                        .bind(now_millis() + LEASE_MS),
                )
                .await?;
            Ok(affected > 0)
        })
    }

    async fn upload_delete(&self, id: &str) -> Result<bool> {
        retry_write!(self, async {
            let res = sqlx::query("DELETE FROM uploads WHERE id = $1")
                .bind(id)
                .execute(&self.write)
                .await?;
            Ok(res.rows_affected() > 0)
        })
    }

    async fn manifest_put(
        &self,
        repo: RepoId,
        m: &NewManifest,
        tags: &[TagWrite],
    ) -> Result<Vec<TagMoved>, PutManifestError> {
        self.put_manifest_checked(repo, m, tags, true).await
    }

    async fn manifest_put_cached(
        &self,
        repo: RepoId,
        m: &NewManifest,
        tags: &[TagWrite],
    ) -> Result<Vec<TagMoved>, PutManifestError> {
        self.put_manifest_checked(repo, m, tags, false).await
    }

    async fn fetch_lease_take(&self, key: &str, holder: &str, ttl_ms: i64) -> Result<LeaseTake> {
        self.lease_take(key, holder, ttl_ms).await
    }

    async fn fetch_lease_renew(&self, key: &str, holder: &str, ttl_ms: i64) -> Result<bool> {
        self.lease_renew(key, holder, ttl_ms).await
    }

    async fn fetch_lease_release(&self, key: &str, holder: &str) -> Result<()> {
        self.lease_release(key, holder).await
    }

    async fn fetch_lease_get(&self, key: &str) -> Result<Option<(String, i64)>> {
        self.lease_get(key).await
    }

    async fn manifest_settle_cached(&self, repo: RepoId, digest: &str) -> Result<()> {
        self.settle_cached(repo, digest).await
    }

    async fn manifest_touch_pull(&self, repo: RepoId, digest: &str, now: i64) -> Result<()> {
        retry_write!(self, async {
            self.execute_relaxed(
                sqlx::query(
                    "UPDATE manifests SET last_pulled_at = $3 WHERE repo_id = $1 AND digest = $2 \
                 AND (last_pulled_at IS NULL OR last_pulled_at < $4)",
                )
                .bind(repo)
                .bind(digest)
                .bind(now)
                .bind(now - 60_000),
            )
            .await?;
            Ok(())
        })
    }

    async fn image_list_in(
        &self,
        repo: RepoId,
        status: TagStatus,
        image_status: Option<ImageStatus>,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ImageRow>> {
        let filter = match status {
            TagStatus::Any => "",
            TagStatus::Tagged => {
                " AND EXISTS (SELECT 1 FROM tags t WHERE t.repo_id = m.repo_id AND t.digest = m.digest)"
            }
            TagStatus::Untagged => {
                " AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.repo_id = m.repo_id AND t.digest = m.digest)"
            }
        };
        // The status is one of the enum's fixed spellings, never input text.
        let status_filter = image_status
            .map(|st| format!(" AND m.image_status = '{}'", st.as_str()))
            .unwrap_or_default();
        let rows = sqlx::query(&format!(
            "{} WHERE m.repo_id = $1 AND m.digest > $2{filter}{status_filter} ORDER BY m.digest LIMIT $3",
            self.image_select()
        ))
        .bind(repo)
        .bind(after.unwrap_or(""))
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(image_from_row).collect()
    }

    async fn image_set_status(
        &self,
        repo: RepoId,
        digest: &str,
        from: &[ImageStatus],
        to: ImageStatus,
        now: i64,
    ) -> Result<Vec<String>> {
        self.set_image_status(repo, digest, from, to, now).await
    }

    async fn storage_usage(&self, account: Option<&str>) -> Result<StorageUsage> {
        self.usage_by_class(account).await
    }

    async fn image_get(&self, repo: RepoId, digest: &str) -> Result<Option<ImageRow>> {
        let row = sqlx::query(&format!(
            "{} WHERE m.repo_id = $1 AND m.digest = $2",
            self.image_select()
        ))
        .bind(repo)
        .bind(digest)
        .fetch_optional(&self.read)
        .await?;
        row.as_ref().map(image_from_row).transpose()
    }

    async fn manifest_children_of_repo(&self, repo: RepoId) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT DISTINCT child_digest FROM manifest_children WHERE repo_id = $1")
                .bind(repo)
                .fetch_all(&self.read)
                .await?,
        )
    }

    async fn tag_get(&self, repo: RepoId, tag: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT digest FROM tags WHERE repo_id = $1 AND name = $2")
                .bind(repo)
                .bind(tag)
                .fetch_optional(&self.read)
                .await?,
        )
    }

    async fn manifest_get(&self, repo: RepoId, key: ManifestKey<'_>) -> Result<Option<ManifestRow>> {
        let row = match key {
            ManifestKey::Digest(d) => {
                sqlx::query(
                    "SELECT digest, media_type, body, image_status FROM manifests WHERE repo_id = $1 AND digest = $2",
                )
                    .bind(repo)
                    .bind(d)
                    .fetch_optional(&self.read)
                    .await?
            }
            ManifestKey::Tag(t) => {
                sqlx::query(
                    "SELECT m.digest, m.media_type, m.body, m.image_status FROM tags t JOIN manifests m ON m.repo_id = t.repo_id AND m.digest = t.digest \
                     WHERE t.repo_id = $1 AND t.name = $2",
                )
                .bind(repo)
                .bind(t)
                .fetch_optional(&self.read)
                .await?
            }
        };
        row.map(|r| {
            Ok(ManifestRow {
                digest: r.try_get(0)?,
                media_type: r.try_get(1)?,
                body: r.try_get(2)?,
                status: status_of(&r.try_get::<String, _>(3)?)?,
            })
        })
        .transpose()
    }

    async fn manifest_delete(&self, repo: RepoId, digest: &str) -> Result<DeleteManifest> {
        retry_write!(self, async {
            let mut tx = self.begin_write().await?;
            let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM manifests WHERE repo_id = $1 AND digest = $2")
                .bind(repo)
                .bind(digest)
                .fetch_optional(&mut *tx)
                .await?;
            if exists.is_none() {
                return Ok(DeleteManifest::Unknown);
            }
            let parents: Vec<String> =
                sqlx::query_scalar("SELECT parent_digest FROM manifest_children WHERE repo_id = $1 AND child_digest = $2 ORDER BY parent_digest")
                    .bind(repo)
                    .bind(digest)
                    .fetch_all(&mut *tx)
                    .await?;
            if !parents.is_empty() {
                return Ok(DeleteManifest::ReferencedBy(parents));
            }
            let mut tags: Vec<String> =
                sqlx::query_scalar("DELETE FROM tags WHERE repo_id = $1 AND digest = $2 RETURNING name")
                    .bind(repo)
                    .bind(digest)
                    .fetch_all(&mut *tx)
                    .await?;
            tags.sort();
            sqlx::query("DELETE FROM manifests WHERE repo_id = $1 AND digest = $2")
                .bind(repo)
                .bind(digest)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(DeleteManifest::Deleted(tags))
        })
    }

    async fn tag_delete(&self, repo: RepoId, tag: &str) -> Result<Option<String>> {
        retry_write!(self, async {
            Ok(
                sqlx::query_scalar("DELETE FROM tags WHERE repo_id = $1 AND name = $2 RETURNING digest")
                    .bind(repo)
                    .bind(tag)
                    .fetch_optional(&self.write)
                    .await?,
            )
        })
    }

    async fn tag_list(&self, repo: RepoId, after: Option<&str>, limit: i64) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT name FROM tags WHERE repo_id = $1 AND name > $2 ORDER BY name LIMIT $3")
                .bind(repo)
                .bind(after.unwrap_or(""))
                .bind(limit)
                .fetch_all(&self.read)
                .await?,
        )
    }

    async fn referrers(&self, repo: RepoId, subject: &str, artifact_type: Option<&str>) -> Result<Vec<Referrer>> {
        let rows = match artifact_type {
            Some(at) => {
                sqlx::query(
                    "SELECT digest, media_type, artifact_type, size, annotations FROM manifests \
                 WHERE repo_id = $1 AND subject = $2 AND artifact_type = $3 ORDER BY digest",
                )
                .bind(repo)
                .bind(subject)
                .bind(at)
                .fetch_all(&self.read)
                .await?
            }
            None => {
                sqlx::query(
                    "SELECT digest, media_type, artifact_type, size, annotations FROM manifests \
                 WHERE repo_id = $1 AND subject = $2 ORDER BY digest",
                )
                .bind(repo)
                .bind(subject)
                .fetch_all(&self.read)
                .await?
            }
        };
        rows.iter()
            .map(|r| {
                Ok(Referrer {
                    digest: r.try_get(0)?,
                    media_type: r.try_get(1)?,
                    artifact_type: r.try_get(2)?,
                    size: r.try_get(3)?,
                    annotations: r.try_get(4)?,
                })
            })
            .collect()
    }
}

impl SqlMetaStore {
    /// A manifest put; `check_refs` refuses one whose references are not in the repository.
    pub(crate) async fn put_manifest_checked(
        &self,
        repo: RepoId,
        m: &NewManifest,
        tags: &[TagWrite],
        check_refs: bool,
    ) -> Result<Vec<TagMoved>, PutManifestError> {
        retry_write!(self, async {
            let now = now_millis();
            let mut tx = self.begin_write().await?;
            let mut missing_blobs = Vec::new();
            for b in &m.blobs {
                // Unchecked (a pull-through cache's manifest): a blob the
                // deployment does not store yet is recorded as pending.
                let found: Option<i64> = if check_refs {
                    sqlx::query_scalar("SELECT 1 FROM repo_blobs WHERE repo_id = $1 AND digest = $2")
                        .bind(repo)
                        .bind(b)
                        .fetch_optional(&mut *tx)
                        .await
                } else {
                    sqlx::query_scalar("SELECT 1 FROM blobs WHERE digest = $1")
                        .bind(b)
                        .fetch_optional(&mut *tx)
                        .await
                }
                .map_err(StoreError::from)?;
                if found.is_none() {
                    missing_blobs.push(b.clone());
                }
            }
            let mut missing_manifests = Vec::new();
            for c in &m.children {
                if c == &m.digest {
                    missing_manifests.push(c.clone());
                    continue;
                }
                let found: Option<i64> =
                    sqlx::query_scalar("SELECT 1 FROM manifests WHERE repo_id = $1 AND digest = $2")
                        .bind(repo)
                        .bind(c)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(StoreError::from)?;
                if found.is_none() {
                    missing_manifests.push(c.clone());
                }
            }
            if check_refs && (!missing_blobs.is_empty() || !missing_manifests.is_empty()) {
                return Err(PutManifestError::MissingReferences {
                    blobs: missing_blobs,
                    manifests: missing_manifests,
                });
            }
            sqlx::query(
                "INSERT INTO manifests (repo_id, digest, media_type, artifact_type, subject, annotations, size, body, pushed_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (repo_id, digest) DO NOTHING",
            )
            .bind(repo)
            .bind(&m.digest)
            .bind(&m.media_type)
            .bind(&m.artifact_type)
            .bind(&m.subject)
            .bind(&m.annotations)
            .bind(m.body.len() as i64)
            .bind(&m.body)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from)?;
            for b in m.blobs.iter().filter(|b| !missing_blobs.contains(b)) {
                sqlx::query("INSERT INTO manifest_blobs (repo_id, manifest_digest, blob_digest) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                    .bind(repo)
                    .bind(&m.digest)
                    .bind(b)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::from)?;
            }
            for c in m.children.iter().filter(|c| !missing_manifests.contains(c)) {
                sqlx::query("INSERT INTO manifest_children (repo_id, parent_digest, child_digest) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                    .bind(repo)
                    .bind(&m.digest)
                    .bind(c)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::from)?;
            }
            // References the pull-through cache fetches later (schema 17):
            // recorded once the content is stored ([`Self::settle_cached`]).
            let pending = missing_blobs
                .iter()
                .map(|b| (b, 0i64))
                .chain(missing_manifests.iter().filter(|c| **c != m.digest).map(|c| (c, 1i64)));
            for (r, is_child) in pending {
                sqlx::query(
                    "INSERT INTO cache_pending_refs (repo_id, manifest_digest, ref_digest, is_child) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                )
                .bind(repo)
                .bind(&m.digest)
                .bind(r)
                .bind(is_child)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from)?;
            }
            let mut moved = Vec::new();
            for t in tags {
                let before: Option<String> =
                    sqlx::query_scalar("SELECT digest FROM tags WHERE repo_id = $1 AND name = $2")
                        .bind(repo)
                        .bind(&t.name)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(StoreError::from)?;
                // The immutability guard lives in the upsert itself, so two racing
                // pushes of an immutable tag cannot both win.
                let res = sqlx::query(
                    "INSERT INTO tags (repo_id, name, digest, updated_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (repo_id, name) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at \
                     WHERE $5 = 0 OR tags.digest = excluded.digest",
                )
                .bind(repo)
                .bind(&t.name)
                .bind(&m.digest)
                .bind(now)
                .bind(t.immutable as i64)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from)?;
                if res.rows_affected() == 0 {
                    return Err(PutManifestError::TagImmutable(t.name.clone()));
                }
                if before.as_deref() != Some(m.digest.as_str()) && !moved.iter().any(|x: &TagMoved| x.tag == t.name) {
                    moved.push(TagMoved {
                        tag: t.name.clone(),
                        old_digest: before,
                    });
                }
            }
            tx.commit().await.map_err(StoreError::from)?;
            Ok(moved)
        })
    }
}
