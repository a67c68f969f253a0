//! The registry listener: each image event in ECR's EventBridge shape, matched against the
//! enabled rules of its account, becomes one durable delivery job per (event, target).
//!
//! ECR sends EventBridge an `ECR Image Action` for a push and for a delete, an
//! `ECR Image Scan` when a scan finishes and an `ECR Lifecycle Policy Action` when lifecycle
//! expiry deletes an image; Kura adds an `ECR Replication Action` when the replication
//! of an image to a destination finishes (COMPLETE or FAILED), and an `ECR Pull Through Cache
//! Action` when the pull-through cache synced an image from its upstream (or failed to). Pulls, tag-only changes and blob mounts produce none (listeners
//! of the registry still see them). An expiry is reported once, as the lifecycle action
//! (the registry's `ImageDeleted` by the lifecycle actor that precedes it is not sent again
//! as an image action).

use std::sync::Arc;

use kura_jobs::Queue;
use kura_registry::events::{Actor, EventKind, EventListener, EventType, ImageEvent};

use crate::api::Events;
use crate::ecr::{EcrDetail, EcrEvent};

/// ECR's EventBridge event for a registry event, if ECR sends one.
pub fn ecr_event(ev: &ImageEvent, region: &str) -> Option<EcrEvent> {
    let detail = match &ev.kind {
        EventKind::ImagePushed { digest, tags, .. } => EcrDetail::Push {
            digest: digest.clone(),
            tag: tags.first().cloned(),
        },
        EventKind::ImageDeleted { digest, tags } if ev.actor.principal_arn != Actor::LIFECYCLE => EcrDetail::Delete {
            digest: digest.clone(),
            tag: tags.first().cloned(),
        },
        EventKind::ScanCompleted {
            digest,
            tags,
            status,
            finding_severity_counts,
        } => EcrDetail::Scan {
            digest: digest.clone(),
            tags: tags.clone(),
            status: status.clone(),
            counts: finding_severity_counts.clone(),
        },
        EventKind::LifecycleExpired { digest, tags, .. } => EcrDetail::Expire {
            digest: digest.clone(),
            tags: tags.clone(),
        },
        EventKind::ImageReplicated {
            digest,
            tags,
            destination_region,
            destination_registry,
            result,
            failure_code,
        } => EcrDetail::Replication {
            digest: digest.clone(),
            tags: tags.clone(),
            destination_region: destination_region.clone(),
            destination_registry: destination_registry.clone(),
            result: if result == "COMPLETE" { "SUCCESS" } else { "FAILURE" }.to_string(),
            failure_code: failure_code.clone(),
        },
        EventKind::PullThroughCacheAction {
            digest,
            tag,
            ecr_repository_prefix,
            upstream_registry_url,
            sync_status,
            failure_code,
            failure_reason,
        } => EcrDetail::PullThroughCache {
            digest: digest.clone(),
            tag: tag.clone(),
            ecr_repository_prefix: ecr_repository_prefix.clone(),
            upstream_registry_url: upstream_registry_url.clone(),
            sync_status: sync_status.clone(),
            failure_code: failure_code.clone(),
            failure_reason: failure_reason.clone(),
        },
        _ => return None,
    };
    Some(EcrEvent {
        id: ev.id.clone(),
        time_ms: ev.time_ms,
        account: ev.account.clone(),
        region: region.to_string(),
        repository: ev.repository.clone(),
        detail,
    })
}

/// The registry event types [`ecr_event`] can turn into an ECR event (the
/// listener asks for these and no others).
pub fn routed(ty: EventType) -> bool {
    matches!(
        ty,
        EventType::ImagePushed
            | EventType::ImageDeleted
            | EventType::ScanCompleted
            | EventType::LifecycleExpired
            | EventType::ImageReplicated
            | EventType::PullThroughCacheAction
    )
}

/// Subscribed to the registry: routes ECR's events to delivery jobs.
pub struct EventBridgeListener {
    events: Events,
    queue: Queue,
}

impl EventBridgeListener {
    /// A listener enqueueing on `queue`.
    pub fn new(events: Events, queue: Queue) -> Arc<EventBridgeListener> {
        Arc::new(EventBridgeListener { events, queue })
    }

    /// Route one registry event and enqueue its deliveries; the number enqueued.
    pub async fn handle(&self, ev: &ImageEvent) -> Result<usize, kura_store::StoreError> {
        let Some(ecr) = ecr_event(ev, self.events.region()) else {
            return Ok(0);
        };
        crate::job::enqueue(&self.events, &self.queue, &ev.account, &ecr.to_json()).await
    }
}

#[async_trait::async_trait]
impl EventListener for EventBridgeListener {
    async fn on_event(&self, event: &ImageEvent) {
        if let Err(e) = self.handle(event).await {
            tracing::error!(error = %e, event = %event.id, repository = %event.repository,
                "events: could not enqueue the deliveries of an event");
        }
    }

    fn wants(&self, ty: EventType) -> bool {
        routed(ty)
    }

    fn name(&self) -> &str {
        "eventbridge"
    }
}
