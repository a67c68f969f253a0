//! The archive storage class on the SQL store (schema 14): moving an image
//! between statuses, and the bytes of each storage class (metering).

use sqlx::Row;

use crate::error::Result;
use crate::meta::*;
use crate::sql::*;

/// `image_status IN (…)` of fixed enum spellings (never input text).
fn in_list(from: &[ImageStatus]) -> String {
    let list: Vec<String> = from.iter().map(|s| format!("'{}'", s.as_str())).collect();
    if list.is_empty() {
        "(NULL)".into()
    } else {
        format!("({})", list.join(", "))
    }
}

/// The SET clause of a move to `to`: the status and the time it stamps.
fn set_clause(to: ImageStatus) -> String {
    let stamp = match to {
        ImageStatus::Archived => ", archived_at = $3",
        ImageStatus::Active => ", activated_at = $3",
        // Restore requested: nothing new to stamp until it finishes (an
        // archived image always has `archived_at`; `$3` must be used anyway,
        // or PostgreSQL refuses the extra parameter).
        ImageStatus::Activating => ", archived_at = COALESCE(archived_at, $3)",
    };
    format!("SET image_status = '{}'{stamp}", to.as_str())
}

impl SqlMetaStore {
    pub(crate) async fn set_image_status(
        &self,
        repo: RepoId,
        digest: &str,
        from: &[ImageStatus],
        to: ImageStatus,
        now: i64,
    ) -> Result<Vec<String>> {
        let (set, from) = (set_clause(to), in_list(from));
        retry_write!(self, async {
            let mut tx = self.begin_write().await?;
            let moved: Option<String> = sqlx::query_scalar(&format!(
                "UPDATE manifests {set} WHERE repo_id = $1 AND digest = $2 AND image_status IN {from} RETURNING digest"
            ))
            .bind(repo)
            .bind(digest)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(moved) = moved else {
                return Ok(Vec::new());
            };
            // The manifests an index lists go with it: pulling a platform's
            // image by digest is refused as the index is.
            let mut out = vec![moved];
            let children: Vec<String> = sqlx::query_scalar(&format!(
                "UPDATE manifests {set} WHERE repo_id = $1 AND image_status IN {from} AND digest IN \
                 (SELECT child_digest FROM manifest_children WHERE repo_id = $1 AND parent_digest = $2) RETURNING digest"
            ))
            .bind(repo)
            .bind(digest)
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
            out.extend(children);
            tx.commit().await?;
            Ok(out)
        })
    }

    pub(crate) async fn usage_by_class(&self, account: Option<&str>) -> Result<StorageUsage> {
        let rows = sqlx::query(
            "SELECT m.image_status, COUNT(*) AS images, CAST(COALESCE(SUM((SELECT SUM(b.size) FROM manifest_blobs mb \
             JOIN blobs b ON b.digest = mb.blob_digest WHERE mb.repo_id = m.repo_id AND mb.manifest_digest = m.digest)), 0) AS BIGINT) AS bytes \
             FROM manifests m JOIN repositories r ON r.id = m.repo_id WHERE ($1 = '' OR r.account = $1) GROUP BY m.image_status",
        )
        .bind(account.unwrap_or(""))
        .fetch_all(&self.read)
        .await?;
        let mut u = StorageUsage::default();
        for r in &rows {
            let status = status_of(&r.try_get::<String, _>(0)?)?;
            let (images, bytes): (i64, i64) = (r.try_get(1)?, r.try_get(2)?);
            if status.in_archive() {
                u.archive_images += images;
                u.archive_bytes += bytes;
            } else {
                u.standard_images += images;
                u.standard_bytes += bytes;
            }
        }
        Ok(u)
    }
}
