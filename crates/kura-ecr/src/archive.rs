//! The archive storage class: `UpdateImageStorageClass` and the restore job.
//!
//! An image is ACTIVE (the standard storage class), ARCHIVED or ACTIVATING
//! (`kura_store::meta::ImageStatus`, a column of the manifest's row). Archiving
//! is a status change (the lifecycle runner's `transition` actions use the same
//! path): the manifest, its tags and its blob links stay, so the image is
//! listed, described, deleted and expired as before and GC keeps its bytes,
//! but the registry refuses to serve its manifest (`RegistryError::ImageArchived`:
//! an OCI error on `/v2/`, `ImageInaccessible` in `BatchGetImage`). Restoring
//! moves it to ACTIVATING and enqueues a durable `image-restore` job (run no
//! earlier than `EcrConfig::archive_restore_delay`), which makes it ACTIVE.
//!
//! Kura keeps archived bytes where they were (one blob store): the archive is
//! metered apart (`MetaStore::storage_usage`), not stored apart. A cheaper
//! tier (a second bucket, or an S3 storage class such as Glacier Instant
//! Retrieval) would plug in here: the archive path would copy the image's
//! blobs that no ACTIVE image shares to the archive store, and the restore job
//! would copy them back before it flips the status, which is why restoring is
//! already a job and not a status flip in the API call.

use std::sync::Arc;

use kura_store::meta::ImageStatus;
use kura_store::{MetaStore, StoreError};
use serde_json::{json, Value};

use crate::error::{EcrError, EcrResult};
use crate::ops::Ctx;
use crate::Ecr;

/// The job kind of restores.
pub const RESTORE_JOB: &str = "image-restore";

/// What a restore job carries.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct RestorePayload {
    /// The repository's row id.
    pub repo_id: i64,
    /// The image's digest.
    pub digest: String,
}

/// Enqueue the restore of an image (idempotent: one job per image at a time).
pub async fn enqueue_restore(
    jobs: &kura_jobs::Queue,
    repo: i64,
    digest: &str,
    delay: std::time::Duration,
) -> Result<i64, StoreError> {
    let payload = RestorePayload {
        repo_id: repo,
        digest: digest.to_string(),
    };
    jobs.enqueue(
        kura_jobs::NewJob::new(RESTORE_JOB, payload)
            .unique_key(format!("{RESTORE_JOB}:{repo}:{digest}"))
            .delay(delay),
    )
    .await
}

/// Brings images back from the archive (`image-restore` jobs): ACTIVATING →
/// ACTIVE, stamping `lastActivatedAt`. Idempotent; an image deleted meanwhile
/// is simply done.
pub struct RestoreJob {
    /// Images.
    pub meta: Arc<dyn MetaStore>,
}

#[async_trait::async_trait]
impl kura_jobs::JobHandler for RestoreJob {
    fn kind(&self) -> &str {
        RESTORE_JOB
    }

    fn retry(&self) -> kura_jobs::RetryPolicy {
        // A restore must finish: keep trying for a day.
        kura_jobs::RetryPolicy::for_a_day()
    }

    async fn run(&self, job: &kura_jobs::Job) -> Result<(), kura_jobs::JobError> {
        let p: RestorePayload = kura_jobs::payload(job)?;
        let moved = self
            .meta
            .image_set_status(
                p.repo_id,
                &p.digest,
                &[ImageStatus::Activating],
                ImageStatus::Active,
                kura_store::now_millis(),
            )
            .await?;
        tracing::info!(repo_id = p.repo_id, digest = %p.digest, images = moved.len(), "restored from the archive storage class");
        Ok(())
    }
}

fn not_supported(message: impl Into<String>) -> EcrError {
    EcrError::new("ImageStorageClassUpdateNotSupportedException", message.into())
}

impl Ecr {
    /// `UpdateImageStorageClass`: ARCHIVE moves an ACTIVE image to ARCHIVED at
    /// once; STANDARD moves an ARCHIVED image to ACTIVATING and enqueues its
    /// restore. Asking for the class an image is already in (or on its way
    /// to) answers its status and changes nothing; archiving an image that is
    /// being restored, or a manifest an index in the repository lists (archive
    /// the index: its manifests go with it), is not supported.
    pub(crate) async fn update_image_storage_class(&self, ctx: &Ctx, v: &Value) -> EcrResult<Value> {
        let (account, name, repo) = self.target(ctx, v).await?;
        let id = v.get("imageId").cloned().unwrap_or_else(|| json!({}));
        let digest = match kura_images::resolve(self.meta.as_ref(), repo.id, &id).await? {
            Ok(d) => d,
            Err(("ImageNotFound", _)) => return Err(kura_images::image_not_found(&id, name.as_str(), &account)),
            Err((_, reason)) => return Err(EcrError::invalid_parameter(reason)),
        };
        let target = v.get("targetStorageClass").and_then(Value::as_str).unwrap_or_default();
        let mut status = self
            .image_status(repo.id, &digest, &id, name.as_str(), &account)
            .await?;
        let now = kura_store::now_millis();
        match (target, status) {
            ("ARCHIVE", ImageStatus::Active) => {
                let parents = self.meta.manifest_children_of_repo(repo.id).await?;
                if parents.iter().any(|c| c == &digest) {
                    return Err(not_supported(format!(
                        "The image with digest '{digest}' is referenced by a manifest list in the repository with name '{}'; archive the manifest list instead",
                        name.as_str()
                    )));
                }
                let moved = self
                    .meta
                    .image_set_status(repo.id, &digest, &[ImageStatus::Active], ImageStatus::Archived, now)
                    .await?;
                status = if moved.is_empty() {
                    // Changed in between: answer what it is now.
                    self.image_status(repo.id, &digest, &id, name.as_str(), &account).await?
                } else {
                    ImageStatus::Archived
                };
            }
            ("ARCHIVE", ImageStatus::Activating) => {
                return Err(not_supported(format!(
                    "The image with digest '{digest}' is being restored to the standard storage class; it can be archived again once it is ACTIVE"
                )))
            }
            ("STANDARD", ImageStatus::Archived) => {
                let moved = self
                    .meta
                    .image_set_status(repo.id, &digest, &[ImageStatus::Archived], ImageStatus::Activating, now)
                    .await?;
                if !moved.is_empty() {
                    enqueue_restore(&self.jobs, repo.id, &digest, self.config.archive_restore_delay).await?;
                    status = ImageStatus::Activating;
                } else {
                    status = self.image_status(repo.id, &digest, &id, name.as_str(), &account).await?;
                }
            }
            ("STANDARD", ImageStatus::Activating) => {
                // Make sure a restore is queued (the unique key keeps it one).
                enqueue_restore(&self.jobs, repo.id, &digest, self.config.archive_restore_delay).await?;
            }
            // Already there: ARCHIVE of ARCHIVED, STANDARD of ACTIVE.
            ("ARCHIVE", _) | ("STANDARD", _) => {}
            // The model's enum has refused anything else already.
            (other, _) => {
                return Err(EcrError::invalid_parameter(format!(
                    "Invalid parameter at 'targetStorageClass' failed to satisfy constraint: 'Member must satisfy enum value set: [STANDARD, ARCHIVE]' ({other})"
                )))
            }
        }
        Ok(json!({
            "registryId": account,
            "repositoryName": name.as_str(),
            "imageId": kura_images::image_id(Some(&digest), id.get("imageTag").and_then(Value::as_str)),
            "imageStatus": status.as_str(),
        }))
    }

    async fn image_status(
        &self,
        repo: i64,
        digest: &str,
        id: &Value,
        name: &str,
        account: &str,
    ) -> EcrResult<ImageStatus> {
        match self.meta.image_get(repo, digest).await? {
            Some(img) => Ok(img.status),
            None => Err(kura_images::image_not_found(id, name, account)),
        }
    }
}
