//! The replicate job: copy one image to one destination, resumably.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kura_authz::Authz;
use kura_jobs::{payload, Job, JobError, JobHandler, Queue, RetryPolicy};
use kura_registry::{Actor, EventKind, Registry};
use kura_store::meta::{ManifestKey, RepoRow};
use kura_store::replication::ReplicationStore;
use kura_store::{AuditStore, ControlStore, StoreError};
use serde::{Deserialize, Serialize};

use crate::peer::Peers;
use crate::sink::{self, LocalSink, ReplError, Sink};
use crate::{ReplicateRequest, COMPLETE, FAILED, IN_PROGRESS, REPLICATE_JOB, REPLICATION_SERVICE};

/// A layer is sent in requests of at most this many bytes (a multiple of
/// the S3 store's 8 MiB parts), each committed by the destination.
pub const CHUNK: u64 = 16 << 20;

/// Index nesting deeper than this is refused (an index of indexes of …).
const MAX_DEPTH: usize = 4;

/// Replication in this deployment: the push listener ([`crate::listener`])
/// and the [`REPLICATE_JOB`] handler.
pub struct Replicator {
    pub(crate) registry: Arc<Registry>,
    pub(crate) authz: Arc<Authz>,
    pub(crate) control: Arc<dyn ControlStore>,
    pub(crate) store: Arc<dyn ReplicationStore>,
    pub(crate) queue: Queue,
    pub(crate) peers: Peers,
    pub(crate) retry: RetryPolicy,
    /// The audit trail, when on: one record per finished replication.
    trail: std::sync::OnceLock<Arc<dyn AuditStore>>,
}

/// The job's checkpoint, kept in its status row: the destination's upload
/// session per blob, so a retry (after a crash, or a destination that went
/// away mid-layer) continues where the bytes stopped.
#[derive(Default, Serialize, Deserialize)]
struct Progress {
    #[serde(default)]
    uploads: BTreeMap<String, String>,
}

impl Replicator {
    /// Replication for this deployment (`peers` names the other regions).
    /// `retry_base` is the first retry's delay while a destination is
    /// unreachable (doubling to 5 minutes; `FAILED` after a day).
    pub fn new(
        registry: Arc<Registry>,
        authz: Arc<Authz>,
        control: Arc<dyn ControlStore>,
        store: Arc<dyn ReplicationStore>,
        queue: Queue,
        peers: Peers,
        retry_base: Duration,
    ) -> Arc<Replicator> {
        Arc::new(Replicator {
            registry,
            authz,
            control,
            store,
            queue,
            peers,
            retry: RetryPolicy {
                base: retry_base,
                cap: Duration::from_secs(300).max(retry_base),
                max_attempts: u32::MAX,
                max_age: Some(Duration::from_secs(24 * 3600)),
            },
            trail: std::sync::OnceLock::new(),
        })
    }

    /// Record each finished replication in the audit trail (a CloudTrail
    /// `AwsServiceEvent` named `ReplicateImage` in the source account's trail).
    pub fn record_to(&self, trail: Arc<dyn AuditStore>) {
        let _ = self.trail.set(trail);
    }

    /// This deployment's region.
    pub fn region(&self) -> &str {
        self.peers.region()
    }

    fn sink_for(&self, req: &ReplicateRequest) -> Result<Box<dyn Sink>, ReplError> {
        let d = &req.destination;
        if d.region == self.region() {
            if d.registry_id == req.account {
                return Err(ReplError::failed(
                    sink::REJECTED,
                    "the destination is the source registry itself",
                ));
            }
            return Ok(Box::new(LocalSink::new(
                self.registry.clone(),
                self.authz.clone(),
                self.control.clone(),
                &req.account,
                &d.registry_id,
            )));
        }
        Ok(Box::new(self.peers.sink(&d.region, &d.registry_id, &req.account)?))
    }

    /// Copy the image: the repository, every manifest (children first),
    /// the blobs the destination lacks, then the manifest under its tags,
    /// then its referrers. Returns the tags it set.
    pub async fn replicate(&self, req: &ReplicateRequest) -> Result<Vec<String>, ReplError> {
        let meta = self.registry.meta();
        let gone = || {
            ReplError::failed(
                sink::IMAGE_NOT_FOUND,
                format!("{} is no longer in {}", req.digest, req.repository),
            )
        };
        let repo = meta.repo_by_id(req.repo_id).await.map_err(store)?.ok_or_else(gone)?;
        // The tags the image has now (a tag that moved away since the push
        // replicates with its own job).
        let image = meta
            .image_get(repo.id, &req.digest)
            .await
            .map_err(store)?
            .ok_or_else(gone)?;
        let sink = self.sink_for(req)?;
        sink.prepare(&repo.name).await?;
        self.copy_manifest(&*sink, &repo, req, &req.digest, &image.tags, 0)
            .await?;
        // Referrers (signatures, SBOMs) that point at it.
        for r in meta.referrers(repo.id, &req.digest, None).await.map_err(store)? {
            self.copy_manifest(&*sink, &repo, req, &r.digest, &[], 0).await?;
        }
        Ok(image.tags)
    }

    async fn copy_manifest(
        &self,
        sink: &dyn Sink,
        repo: &RepoRow,
        req: &ReplicateRequest,
        digest: &str,
        tags: &[String],
        depth: usize,
    ) -> Result<(), ReplError> {
        if depth > MAX_DEPTH {
            return Err(ReplError::failed(
                sink::REJECTED,
                "indexes nest too deeply to replicate",
            ));
        }
        let meta = self.registry.meta();
        let m = meta
            .manifest_get(repo.id, ManifestKey::Digest(digest))
            .await
            .map_err(store)?
            .ok_or_else(|| {
                ReplError::failed(
                    sink::IMAGE_NOT_FOUND,
                    format!("manifest {digest} is gone from the source"),
                )
            })?;
        let info = kura_oci::manifest::inspect(&m.body, Some(&m.media_type))
            .map_err(|e| ReplError::failed(sink::REJECTED, format!("manifest {digest}: {e}")))?;
        for child in &info.children {
            Box::pin(self.copy_manifest(sink, repo, req, child.as_str(), &[], depth + 1)).await?;
        }
        let blobs: Vec<String> = info.blobs.iter().map(|d| d.to_string()).collect();
        for d in sink.missing_blobs(&repo.name, &blobs).await? {
            self.send_blob(sink, repo, req, &d).await?;
        }
        sink.put_manifest(&repo.name, digest, &m.media_type, m.body, tags).await
    }

    async fn progress(&self, req: &ReplicateRequest) -> Progress {
        match self.store.repl_status_get(req.key()).await {
            Ok(Some(row)) => serde_json::from_str(&row.progress).unwrap_or_default(),
            _ => Progress::default(),
        }
    }

    async fn save(&self, req: &ReplicateRequest, p: &Progress) -> Result<(), ReplError> {
        let text = serde_json::to_string(p).unwrap_or_else(|_| "{}".into());
        self.store.repl_progress_set(req.key(), &text).await.map_err(store)
    }

    /// Send one blob through an upload session, resuming the session a
    /// previous attempt recorded at the offset the destination holds.
    async fn send_blob(
        &self,
        sink: &dyn Sink,
        repo: &RepoRow,
        req: &ReplicateRequest,
        digest: &str,
    ) -> Result<(), ReplError> {
        let meta = self.registry.meta();
        let blob = meta.blob_get(repo.id, digest).await.map_err(store)?.ok_or_else(|| {
            ReplError::failed(sink::IMAGE_NOT_FOUND, format!("blob {digest} is gone from the source"))
        })?;
        let size = u64::try_from(blob.size).unwrap_or(0);
        let mut progress = self.progress(req).await;
        let resumed = match progress.uploads.get(digest) {
            Some(id) => match sink.upload_offset(&repo.name, id).await {
                Ok(offset) if offset <= size => Some((id.clone(), offset)),
                Ok(_) | Err(ReplError::UploadLost(_)) => None,
                Err(e) => return Err(e),
            },
            None => None,
        };
        let (id, offset) = match resumed {
            Some(r) => {
                tracing::info!(digest, offset = r.1, size, "replication resumes a layer");
                r
            }
            None => {
                let id = sink.upload_start(&repo.name).await?;
                progress.uploads.insert(digest.to_string(), id.clone());
                self.save(req, &progress).await?;
                (id, 0)
            }
        };
        // In chunks, each committed by the destination before the next: a
        // crash or a cut connection loses at most the chunk in flight.
        let mut offset = offset;
        while offset < size {
            let end = (offset + CHUNK).min(size);
            let stream = self
                .registry
                .blobs()
                .read(&blob.storage_key, Some((offset, end - 1)))
                .await
                .map_err(store)?;
            let reached = sink
                .upload_append(&repo.name, &id, offset, end - offset, stream)
                .await?;
            if reached != end {
                return Err(ReplError::Retry(format!(
                    "the destination holds {reached} bytes of {digest}, expected {end}"
                )));
            }
            offset = end;
        }
        sink.upload_finish(&repo.name, &id, digest).await?;
        progress.uploads.remove(digest);
        self.save(req, &progress).await
    }

    async fn finished(&self, req: &ReplicateRequest, tags: Vec<String>, failure: Option<(&str, &str)>) {
        let status = if failure.is_some() { FAILED } else { COMPLETE };
        let kind = EventKind::ImageReplicated {
            digest: req.digest.clone(),
            tags,
            destination_region: req.destination.region.clone(),
            destination_registry: req.destination.registry_id.clone(),
            result: status.to_string(),
            failure_code: failure.map(|(c, _)| c.to_string()),
        };
        let actor = Actor::service(&req.account, REPLICATION_SERVICE);
        self.registry
            .replicated(&req.account, &req.repository, &actor, kind)
            .await;
        if let Some(trail) = self.trail.get() {
            let detail = serde_json::json!({
                "repositoryName": req.repository,
                "imageDigest": req.digest,
                "destinationRegion": req.destination.region,
                "destinationRegistryId": req.destination.registry_id,
                "status": status,
                "failureCode": failure.map(|(c, _)| c),
                "reason": failure.map(|(_, r)| r),
            });
            let row = kura_store::audit::aws_service_event(kura_store::audit::ServiceEvent {
                account: &req.account,
                at_ms: kura_store::now_millis(),
                source: "ecr.amazonaws.com",
                event_name: "ReplicateImage",
                region: Some(self.region()),
                repository: Some(&req.repository),
                detail,
            });
            if let Err(e) = trail.trail_append(&[row]).await {
                tracing::warn!(error = %e, "could not record a replication in the audit trail");
            }
        }
        // The status last: once it says COMPLETE or FAILED, the event and
        // the audit record are there too.
        if let Err(e) = self.store.repl_status_set(req.key(), status, failure, true).await {
            tracing::warn!(error = %e, "could not record a replication's status");
        }
        if failure.is_none() {
            // The checkpoint is spent.
            let _ = self.store.repl_progress_set(req.key(), "{}").await;
        }
    }
}

fn store(e: StoreError) -> ReplError {
    ReplError::Retry(format!("source store: {e}"))
}

#[async_trait::async_trait]
impl JobHandler for Replicator {
    fn kind(&self) -> &str {
        REPLICATE_JOB
    }

    fn retry(&self) -> RetryPolicy {
        self.retry
    }

    async fn run(&self, job: &Job) -> Result<(), JobError> {
        let req: ReplicateRequest = payload(job)?;
        let dest = format!("{}/{}", req.destination.region, req.destination.registry_id);
        match self.replicate(&req).await {
            Ok(tags) => {
                tracing::info!(repository = %req.repository, digest = %req.digest, destination = %dest, "replicated");
                self.finished(&req, tags, None).await;
                Ok(())
            }
            Err(ReplError::Failed { code, message }) => {
                tracing::warn!(repository = %req.repository, digest = %req.digest, destination = %dest, code, %message, "replication failed");
                self.finished(&req, req.tags.clone(), Some((code, &message))).await;
                Ok(())
            }
            Err(e @ (ReplError::Retry(_) | ReplError::UploadLost(_))) => {
                let message = e.to_string();
                if self.retry.next_try(job, kura_store::now_millis()).is_none() {
                    tracing::warn!(repository = %req.repository, digest = %req.digest, destination = %dest, %message, "replication gave up");
                    self.finished(&req, req.tags.clone(), Some((sink::UNAVAILABLE, &message)))
                        .await;
                    return Err(JobError::Fatal(message));
                }
                tracing::info!(repository = %req.repository, digest = %req.digest, destination = %dest, %message, "replication will retry");
                let _ = self
                    .store
                    .repl_status_set(req.key(), IN_PROGRESS, Some((sink::UNAVAILABLE, &message)), true)
                    .await;
                Err(JobError::Retry(message))
            }
        }
    }
}
