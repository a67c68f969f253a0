//! Pushes and tag moves become replicate jobs.
//!
//! On `ImagePushed` (every push, including one that adds or moves a tag
//! on an existing image: that push names the tag), the listener reads the account's replication configuration and, for each
//! destination whose rule covers the repository, marks the image
//! `IN_PROGRESS` and queues a [`crate::REPLICATE_JOB`], inline, before the
//! push is answered (so an acknowledged push is durably on its way).
//! Pushes by the replication service itself are not replicated again (no
//! loops between regions that replicate to each other); deletes are not
//! replicated (as ECR, unless a rule enables `deleteReplication`, which is
//! refused by the API until Kura replicates deletions).

use kura_registry::{EventKind, EventListener, EventType, ImageEvent};

use crate::config::ReplicationConfiguration;
use crate::job::Replicator;
use crate::{enqueue, ReplicateRequest, REPLICATION_SERVICE};

impl Replicator {
    /// Queue the replications one event calls for; how many were queued.
    pub async fn on_image_event(&self, ev: &ImageEvent) -> Result<usize, kura_store::StoreError> {
        if ev.actor.principal_arn == REPLICATION_SERVICE {
            return Ok(0);
        }
        let (digest, tags) = match &ev.kind {
            EventKind::ImagePushed { digest, tags, .. } => (digest.clone(), tags.clone()),
            _ => return Ok(0),
        };
        let config = ReplicationConfiguration::load(self.control.as_ref(), &ev.account).await?;
        if config.rules.is_empty() {
            return Ok(0);
        }
        let destinations = config.destinations_for(&ev.repository);
        if destinations.is_empty() {
            return Ok(0);
        }
        let Some(repo) = self.registry.meta().repo_get(&ev.account, &ev.repository).await? else {
            return Ok(0);
        };
        let mut n = 0;
        for destination in destinations {
            let req = ReplicateRequest {
                account: ev.account.clone(),
                repository: ev.repository.clone(),
                repo_id: repo.id,
                digest: digest.clone(),
                tags: tags.clone(),
                destination,
                backfill: None,
            };
            enqueue(&self.queue, self.store.as_ref(), &req).await?;
            n += 1;
        }
        Ok(n)
    }
}

#[async_trait::async_trait]
impl EventListener for Replicator {
    async fn on_event(&self, event: &ImageEvent) {
        if let Err(e) = self.on_image_event(event).await {
            tracing::warn!(error = %e, repository = %event.repository, "replication could not be queued");
        }
    }

    fn wants(&self, ty: EventType) -> bool {
        ty == EventType::ImagePushed
    }

    fn name(&self) -> &str {
        "replication"
    }
}
