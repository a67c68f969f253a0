//! Where a replicated image goes: the [`Sink`] seam, and [`LocalSink`],
//! a registry of this deployment (another account here, or this region's
//! side of the federation protocol).

use std::sync::Arc;

use async_trait::async_trait;
use kura_authz::{registry_arn, repository_arn, Access, Authz};
use kura_iam::Principal;
use kura_oci::RepoName;
use kura_registry::error::RegistryError;
use kura_registry::service::Body;
use kura_registry::{Actor, Purpose, Registry};
use kura_store::ControlStore;

use crate::REPLICATION_SERVICE;

/// The destination denies the source account `ecr:ReplicateImage` or `ecr:CreateRepository`.
pub const PERMISSION_DENIED: &str = "REPLICATION_PERMISSION_DENIED";
/// An IMMUTABLE destination tag names another image.
pub const TAG_IMMUTABLE: &str = "IMAGE_TAG_IMMUTABLE";
/// No `--peer-region` for the destination region.
pub const REGION_UNKNOWN: &str = "DESTINATION_REGION_UNKNOWN";
/// The destination account does not exist in the destination region.
pub const REGISTRY_NOT_FOUND: &str = "DESTINATION_REGISTRY_NOT_FOUND";
/// The destination did not answer (retried with backoff; `FAILED` after a day).
pub const UNAVAILABLE: &str = "DESTINATION_UNAVAILABLE";
/// The destination refused the federation token (another federation key).
pub const AUTH_FAILED: &str = "FEDERATION_AUTHENTICATION_FAILED";
/// The image is gone from the source before it replicated.
pub const IMAGE_NOT_FOUND: &str = "IMAGE_NOT_FOUND";
/// The destination refused the content (a bad manifest, a digest mismatch).
pub const REJECTED: &str = "DESTINATION_REJECTED_IMAGE";

/// Why a step of a replication failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplError {
    /// Will not succeed by retrying: the status becomes `FAILED` with `code`.
    #[error("{code}: {message}")]
    Failed {
        /// The failure code.
        code: &'static str,
        /// Why, in words.
        message: String,
    },
    /// Worth retrying (the destination is down, busy or slow).
    #[error("{0}")]
    Retry(String),
    /// An upload session the destination no longer knows (start a new one).
    #[error("the destination lost upload {0}")]
    UploadLost(String),
}

impl ReplError {
    /// A permanent failure.
    pub fn failed(code: &'static str, message: impl Into<String>) -> ReplError {
        ReplError::Failed {
            code,
            message: message.into(),
        }
    }
}

/// One destination registry (region and account), as the replicate job
/// drives it. Every method names the destination repository; blobs and
/// manifests go in the order the job calls them, and a manifest is only
/// accepted once everything it references is there, so the destination
/// never shows half an image.
#[async_trait]
pub trait Sink: Send + Sync {
    /// Make sure the repository exists (created from the destination's
    /// creation template for `REPLICATION`, else with ECR's defaults).
    async fn prepare(&self, repository: &str) -> Result<(), ReplError>;
    /// Of `blobs`, those the destination repository still lacks. Blobs the
    /// destination registry already stores elsewhere are linked into the
    /// repository (a mount inside the destination) and not listed.
    async fn missing_blobs(&self, repository: &str, blobs: &[String]) -> Result<Vec<String>, ReplError>;
    /// Open an upload session; its id.
    async fn upload_start(&self, repository: &str) -> Result<String, ReplError>;
    /// How many bytes session `id` holds ([`ReplError::UploadLost`] if gone).
    async fn upload_offset(&self, repository: &str, id: &str) -> Result<u64, ReplError>;
    /// Append `len` bytes at `offset`; the new offset.
    async fn upload_append(
        &self,
        repository: &str,
        id: &str,
        offset: u64,
        len: u64,
        body: Body,
    ) -> Result<u64, ReplError>;
    /// Finish session `id` as blob `digest` (the destination verifies it).
    async fn upload_finish(&self, repository: &str, id: &str, digest: &str) -> Result<(), ReplError>;
    /// Store a manifest byte-exact under its digest and `tags`.
    async fn put_manifest(
        &self,
        repository: &str,
        digest: &str,
        media_type: &str,
        body: Vec<u8>,
        tags: &[String],
    ) -> Result<(), ReplError>;
}

/// A destination registry in this deployment: the destination account's
/// policies decide what the source account may do, as they do for a
/// cross-account push; the content goes through the same [`Registry`]
/// methods as any push (so its events, scans and rules apply).
pub struct LocalSink {
    registry: Arc<Registry>,
    authz: Arc<Authz>,
    control: Arc<dyn ControlStore>,
    /// The source account.
    source_account: String,
    /// The destination account (in this deployment).
    account: String,
    actor: Actor,
}

impl LocalSink {
    /// Replication from `source_account` (of any region of the federation)
    /// into `account` of this deployment.
    pub fn new(
        registry: Arc<Registry>,
        authz: Arc<Authz>,
        control: Arc<dyn ControlStore>,
        source_account: &str,
        account: &str,
    ) -> LocalSink {
        LocalSink {
            registry,
            authz,
            control,
            source_account: source_account.to_string(),
            account: account.to_string(),
            actor: Actor::service(account, REPLICATION_SERVICE),
        }
    }

    fn name(&self, repository: &str) -> Result<RepoName, ReplError> {
        repository
            .parse::<RepoName>()
            .map_err(|e| ReplError::failed(REJECTED, format!("invalid repository name {repository:?}: {e}")))
    }

    /// The destination's registry policy must allow the source account's
    /// root `action` on the repository (only across accounts: an account
    /// replicating into itself in another region needs no policy).
    async fn allowed(&self, action: &str, repository: &str) -> Result<(), ReplError> {
        if self.source_account == self.account {
            return Ok(());
        }
        let region = self.authz.region().to_string();
        let access = Access {
            action: action.to_string(),
            resource: repository_arn(&region, &self.account, repository),
            resource_account: self.account.clone(),
            policy_arn: Some(registry_arn(&region, &self.account)),
            tags_arn: None,
            request_tags: Default::default(),
        };
        let principal = Principal::root(&self.source_account);
        match self.authz.check(&principal, &access, None).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(denial)) => Err(ReplError::failed(
                PERMISSION_DENIED,
                format!(
                    "the registry policy of {} in {region} does not allow account {} {action}: {}",
                    self.account, self.source_account, denial.message
                ),
            )),
            Err(e) => Err(ReplError::Retry(format!("authorization could not be decided: {e}"))),
        }
    }

    async fn repo_exists(&self, repository: &str) -> Result<bool, ReplError> {
        Ok(self
            .registry
            .meta()
            .repo_get(&self.account, repository)
            .await
            .map_err(store)?
            .is_some())
    }
}

fn store(e: kura_store::StoreError) -> ReplError {
    ReplError::Retry(format!("destination store: {e}"))
}

/// A registry error of the destination as a replication failure.
pub fn from_registry(e: RegistryError) -> ReplError {
    match e {
        RegistryError::TagImmutable { .. } => ReplError::failed(TAG_IMMUTABLE, e.to_string()),
        RegistryError::UploadUnknown { id } => ReplError::UploadLost(id),
        // The session is busy (a request of an attempt that died still holds its
        // lease, e.g. the source was killed mid-PUT) or stands elsewhere than the
        // job thought: the next attempt asks for the offset again, and a lapsed
        // lease frees the session.
        RegistryError::UploadOffset { .. } => ReplError::Retry(e.to_string()),
        RegistryError::Store(_) | RegistryError::Unavailable | RegistryError::Upstream { .. } => {
            ReplError::Retry(e.to_string())
        }
        RegistryError::LimitExceeded { .. } => ReplError::Retry(e.to_string()),
        other => ReplError::failed(REJECTED, other.to_string()),
    }
}

#[async_trait]
impl Sink for LocalSink {
    async fn prepare(&self, repository: &str) -> Result<(), ReplError> {
        if !self.control.account_exists(&self.account).await.map_err(store)? {
            return Err(ReplError::failed(
                REGISTRY_NOT_FOUND,
                format!(
                    "the registry {} does not exist in {}",
                    self.account,
                    self.authz.region()
                ),
            ));
        }
        self.allowed("ecr:ReplicateImage", repository).await?;
        if self.repo_exists(repository).await? {
            return Ok(());
        }
        self.allowed("ecr:CreateRepository", repository).await?;
        let name = self.name(repository)?;
        self.registry
            .ensure_repository(&self.account, &name, Purpose::Replication)
            .await
            .map_err(from_registry)?;
        Ok(())
    }

    async fn missing_blobs(&self, repository: &str, blobs: &[String]) -> Result<Vec<String>, ReplError> {
        self.allowed("ecr:ReplicateImage", repository).await?;
        let name = self.name(repository)?;
        let mut missing = Vec::new();
        for d in blobs {
            if !self
                .registry
                .adopt_blob(&self.account, &name, d)
                .await
                .map_err(from_registry)?
            {
                missing.push(d.clone());
            }
        }
        Ok(missing)
    }

    async fn upload_start(&self, repository: &str) -> Result<String, ReplError> {
        self.allowed("ecr:ReplicateImage", repository).await?;
        let name = self.name(repository)?;
        let empty: Body = Box::pin(futures::stream::empty());
        match self
            .registry
            .start_upload(&self.account, &name, None, None, &self.actor, empty)
            .await
            .map_err(from_registry)?
        {
            kura_registry::service::StartOutcome::Started(s) => Ok(s.id),
            kura_registry::service::StartOutcome::Created(_) => Err(ReplError::failed(
                REJECTED,
                "the destination finished an upload it was asked to open",
            )),
        }
    }

    async fn upload_offset(&self, repository: &str, id: &str) -> Result<u64, ReplError> {
        self.allowed("ecr:ReplicateImage", repository).await?;
        let name = self.name(repository)?;
        Ok(self
            .registry
            .upload_status(&self.account, &name, id)
            .await
            .map_err(from_registry)?
            .offset)
    }

    async fn upload_append(
        &self,
        repository: &str,
        id: &str,
        offset: u64,
        len: u64,
        body: Body,
    ) -> Result<u64, ReplError> {
        self.allowed("ecr:ReplicateImage", repository).await?;
        let name = self.name(repository)?;
        if len == 0 {
            return self.upload_offset(repository, id).await;
        }
        Ok(self
            .registry
            .patch_upload(
                &self.account,
                &name,
                id,
                Some((offset, offset + len - 1)),
                Some(len),
                body,
            )
            .await
            .map_err(from_registry)?
            .offset)
    }

    async fn upload_finish(&self, repository: &str, id: &str, digest: &str) -> Result<(), ReplError> {
        self.allowed("ecr:ReplicateImage", repository).await?;
        let name = self.name(repository)?;
        self.registry
            .finish_upload(&self.account, &name, id, digest, None, None)
            .await
            .map_err(from_registry)?;
        Ok(())
    }

    async fn put_manifest(
        &self,
        repository: &str,
        digest: &str,
        media_type: &str,
        body: Vec<u8>,
        tags: &[String],
    ) -> Result<(), ReplError> {
        self.allowed("ecr:ReplicateImage", repository).await?;
        let name = self.name(repository)?;
        self.registry
            .put_manifest(&self.account, &name, digest, tags, Some(media_type), body, &self.actor)
            .await
            .map_err(from_registry)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_or_moved_upload_is_retried_not_failed() {
        let e = RegistryError::UploadOffset {
            repository: "prod/big".into(),
            id: "u1".into(),
            offset: 209_715_200,
            why: "chunk does not start at the upload's current offset".into(),
        };
        assert!(matches!(from_registry(e), ReplError::Retry(_)));
        let lost = from_registry(RegistryError::UploadUnknown { id: "u1".into() });
        assert_eq!(lost, ReplError::UploadLost("u1".into()));
    }
}
