//! Typed image events and their listeners.
//!
//! Every change to an image (push, tag, untag, delete by the data plane, by
//! the ECR API or by lifecycle expiry, a blob mount, a finished scan) and,
//! for listeners that ask for them, every pull goes through one
//! [`crate::Registry`] method, which emits one [`ImageEvent`] per fact after
//! its metadata commit, naming the [`Actor`] that caused it. Listeners
//! subscribe with [`crate::Registry::subscribe`] (any number); the registry
//! awaits each interested listener before the request is answered, so an
//! event is never reported for a change that did not commit and a listener
//! sees a request's events before its client does. Listeners must be quick
//! (enqueue work, never do it inline); a listener that panics is logged and
//! never fails the request.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};

use futures::FutureExt;

use serde::{Deserialize, Serialize};

/// Who caused an event: the authenticated principal and where the request
/// came from, or the service itself (lifecycle expiry, the scanner).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Actor {
    /// The principal's account (for a service actor: the account acted on).
    pub account: String,
    /// The principal's ARN (`arn:aws:iam::<account>:root`, a user's or an
    /// assumed role's ARN); for a service actor its service principal
    /// (e.g. [`Actor::LIFECYCLE`]); for an anonymous reader `"anonymous"`.
    pub principal_arn: String,
    /// The principal's unique id (the account id for the root, `AIDA…` for
    /// a user, `AROA…:<session>` for a role session); for a service actor
    /// its service principal again; for an anonymous reader `"anonymous"`.
    pub principal_id: String,
    /// The access key the request was signed with (or whose registry token
    /// or download URL it carried).
    pub access_key_id: Option<String>,
    /// The client's address (`aws:SourceIp`), as `kura_ecr::client` decided it.
    pub source_ip: Option<IpAddr>,
    /// The request's `User-Agent`.
    pub user_agent: Option<String>,
}

impl Actor {
    /// The service principal of lifecycle expiry (ECR's events say the
    /// lifecycle service, not a user, expired an image).
    pub const LIFECYCLE: &'static str = "lifecycle.ecr.amazonaws.com";
    /// The service principal of the image scanner.
    pub const SCANNER: &'static str = "scanning.ecr.amazonaws.com";
    /// The principal of an unauthenticated reader (public repositories).
    pub const ANONYMOUS: &'static str = "anonymous";
    /// The service principal of the pull-through cache (it "pushes" what it
    /// fetched from an upstream).
    pub const PULL_THROUGH_CACHE: &'static str = "pullthroughcache.ecr.amazonaws.com";

    /// A service acting on `account` on its own (no request, no key, no
    /// address): `service` is its service principal, e.g. [`Actor::LIFECYCLE`].
    pub fn service(account: impl Into<String>, service: &str) -> Actor {
        Actor {
            account: account.into(),
            principal_arn: service.to_string(),
            principal_id: service.to_string(),
            access_key_id: None,
            source_ip: None,
            user_agent: None,
        }
    }

    /// Lifecycle expiry in `account`.
    pub fn lifecycle(account: impl Into<String>) -> Actor {
        Actor::service(account, Actor::LIFECYCLE)
    }

    /// The pull-through cache, in `account`.
    pub fn pull_through_cache(account: impl Into<String>) -> Actor {
        Actor::service(account, Actor::PULL_THROUGH_CACHE)
    }

    /// The scanner, in `account`.
    pub fn scanner(account: impl Into<String>) -> Actor {
        Actor::service(account, Actor::SCANNER)
    }

    /// An unauthenticated reader of `account`'s public repositories (also
    /// the actor of a request no guard authenticated: the data plane's own
    /// tests, a registry run without `kura-ecr`).
    pub fn anonymous(account: impl Into<String>) -> Actor {
        Actor::service(account, Actor::ANONYMOUS)
    }

    /// The service principal when a service acted on its own (not a
    /// principal's request, not an anonymous one).
    pub fn service_principal(&self) -> Option<&str> {
        (!self.principal_arn.starts_with("arn:") && self.principal_arn != Actor::ANONYMOUS)
            .then_some(self.principal_arn.as_str())
    }

    /// True for an unauthenticated reader.
    pub fn is_anonymous(&self) -> bool {
        self.principal_arn == Actor::ANONYMOUS
    }

    /// The same actor with the client's address and user agent set.
    pub fn from_client(mut self, source_ip: Option<IpAddr>, user_agent: Option<String>) -> Actor {
        self.source_ip = source_ip;
        self.user_agent = user_agent;
        self
    }
}

/// One fact about an image in a repository.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageEvent {
    /// A fresh UUID (v4, hyphenated): the event's identity for deduplication.
    pub id: String,
    /// When the change committed (ms since the epoch).
    pub time_ms: i64,
    /// The registry (account) whose repository changed. Listeners add the
    /// region (the deployment's) themselves.
    pub account: String,
    /// The repository's name.
    pub repository: String,
    /// Who did it.
    pub actor: Actor,
    /// What happened.
    pub kind: EventKind,
}

/// What happened to an image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all_fields = "camelCase")]
pub enum EventKind {
    /// A manifest was stored (data-plane PUT or ECR `PutImage`), under
    /// `tags` (empty: pushed by digest). Each tag that this push added or
    /// moved also gets its own [`EventKind::TagChanged`].
    ImagePushed {
        /// The manifest's digest.
        digest: String,
        /// The manifest's media type.
        media_type: String,
        /// Its artifact type, if any.
        artifact_type: Option<String>,
        /// The tags the push named.
        tags: Vec<String>,
    },
    /// A manifest was deleted, with the tags it had then.
    ImageDeleted {
        /// The manifest's digest.
        digest: String,
        /// The tags that pointed at it and went with it.
        tags: Vec<String>,
    },
    /// A tag was added (`old_digest` none), moved, or removed (`new_digest` none).
    TagChanged {
        /// The tag.
        tag: String,
        /// The manifest it pointed at before.
        old_digest: Option<String>,
        /// The manifest it points at now.
        new_digest: Option<String>,
    },
    /// A manifest was read (data-plane GET, not HEAD; ECR `BatchGetImage`).
    /// Only listeners whose [`EventListener::wants`] asks for
    /// [`EventType::ImagePulled`] get these, and none is built when none does.
    ImagePulled {
        /// The manifest's digest.
        digest: String,
        /// The tag it was asked for by, if any.
        tag: Option<String>,
    },
    /// A blob was mounted into the repository from another one.
    BlobMounted {
        /// The blob's digest.
        digest: String,
        /// The repository it came from (same account).
        from_repository: String,
    },
    /// A scan of an image finished.
    ScanCompleted {
        /// The manifest's digest.
        digest: String,
        /// Its tags when the scan finished.
        tags: Vec<String>,
        /// ECR's scan status (`COMPLETE`, `FAILED`, `UNSUPPORTED_IMAGE`, …).
        status: String,
        /// Findings per severity (`CRITICAL`, `HIGH`, …), as ECR counts them.
        finding_severity_counts: BTreeMap<String, u64>,
    },
    /// Replication of an image to one destination finished (in the source
    /// registry; the destination sees an [`EventKind::ImagePushed`] by the
    /// replication service).
    ImageReplicated {
        /// The manifest's digest.
        digest: String,
        /// The tags replicated with it.
        tags: Vec<String>,
        /// The destination region.
        destination_region: String,
        /// The destination registry (account).
        destination_registry: String,
        /// `COMPLETE` or `FAILED`.
        result: String,
        /// Why it failed.
        failure_code: Option<String>,
    },
    /// Lifecycle expiry deleted an image (an [`EventKind::ImageDeleted`]
    /// with the same digest and tags is emitted just before).
    LifecycleExpired {
        /// The manifest's digest.
        digest: String,
        /// The tags it had.
        tags: Vec<String>,
        /// The priority of the lifecycle rule that expired it.
        rule_priority: i64,
    },
    /// The pull-through cache synced an image from its upstream (ECR's
    /// `ECR Pull Through Cache Action`): stored it (`SUCCESS`), or could not
    /// (`FAILED`, with why).
    PullThroughCacheAction {
        /// The manifest's digest (when known).
        digest: Option<String>,
        /// The tag it was asked for by, if any.
        tag: Option<String>,
        /// The rule's repository prefix, as far as the names tell it.
        ecr_repository_prefix: String,
        /// The upstream registry's host.
        upstream_registry_url: String,
        /// `SUCCESS` or `FAILED`.
        sync_status: String,
        /// Why it failed (`UPSTREAM_UNAVAILABLE`, `UPSTREAM_TOO_MANY_REQUESTS`,
        /// `UPSTREAM_ACCESS_DENIED`, `UPSTREAM_INVALID_CONTENT`, `IMAGE_NOT_FOUND`).
        failure_code: Option<String>,
        /// The failure's message.
        failure_reason: Option<String>,
    },
}

/// The kinds of [`EventKind`], without their fields (for [`EventListener::wants`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    /// [`EventKind::ImagePushed`].
    ImagePushed,
    /// [`EventKind::ImageDeleted`].
    ImageDeleted,
    /// [`EventKind::TagChanged`].
    TagChanged,
    /// [`EventKind::ImagePulled`].
    ImagePulled,
    /// [`EventKind::BlobMounted`].
    BlobMounted,
    /// [`EventKind::ScanCompleted`].
    ScanCompleted,
    /// [`EventKind::LifecycleExpired`].
    LifecycleExpired,
    /// [`EventKind::ImageReplicated`].
    ImageReplicated,
    /// [`EventKind::PullThroughCacheAction`].
    PullThroughCacheAction,
}

impl EventType {
    /// Every event type.
    pub const ALL: [EventType; 9] = [
        EventType::ImagePushed,
        EventType::ImageDeleted,
        EventType::TagChanged,
        EventType::ImagePulled,
        EventType::BlobMounted,
        EventType::ScanCompleted,
        EventType::LifecycleExpired,
        EventType::ImageReplicated,
        EventType::PullThroughCacheAction,
    ];

    fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

impl EventKind {
    /// This event's type.
    pub fn event_type(&self) -> EventType {
        match self {
            EventKind::ImagePushed { .. } => EventType::ImagePushed,
            EventKind::ImageDeleted { .. } => EventType::ImageDeleted,
            EventKind::TagChanged { .. } => EventType::TagChanged,
            EventKind::ImagePulled { .. } => EventType::ImagePulled,
            EventKind::BlobMounted { .. } => EventType::BlobMounted,
            EventKind::ScanCompleted { .. } => EventType::ScanCompleted,
            EventKind::LifecycleExpired { .. } => EventType::LifecycleExpired,
            EventKind::ImageReplicated { .. } => EventType::ImageReplicated,
            EventKind::PullThroughCacheAction { .. } => EventType::PullThroughCacheAction,
        }
    }

    /// The digest the event is about.
    pub fn digest(&self) -> Option<&str> {
        match self {
            EventKind::ImagePushed { digest, .. }
            | EventKind::ImageDeleted { digest, .. }
            | EventKind::ImagePulled { digest, .. }
            | EventKind::BlobMounted { digest, .. }
            | EventKind::ScanCompleted { digest, .. }
            | EventKind::LifecycleExpired { digest, .. }
            | EventKind::ImageReplicated { digest, .. } => Some(digest),
            EventKind::TagChanged {
                new_digest, old_digest, ..
            } => new_digest.as_deref().or(old_digest.as_deref()),
            EventKind::PullThroughCacheAction { digest, .. } => digest.as_deref(),
        }
    }
}

impl ImageEvent {
    /// A new event (fresh id, the current time).
    pub fn new(account: &str, repository: &str, actor: &Actor, kind: EventKind) -> ImageEvent {
        ImageEvent {
            id: uuid::Uuid::new_v4().hyphenated().to_string(),
            time_ms: kura_store::now_millis(),
            account: account.to_string(),
            repository: repository.to_string(),
            actor: actor.clone(),
            kind,
        }
    }
}

/// Receives image events. Called on the request path, after the change
/// committed and before the client is answered: return quickly (enqueue
/// durable work, never do it inline). Log your own failures; a panic is
/// caught and logged by the registry, and the request still succeeds.
#[async_trait::async_trait]
pub trait EventListener: Send + Sync + 'static {
    /// One event.
    async fn on_event(&self, event: &ImageEvent);

    /// Whether this listener wants events of type `ty`. Asked once, when it
    /// subscribes. Default: every type but [`EventType::ImagePulled`] (pulls
    /// are the hot path: a listener asks for them explicitly).
    fn wants(&self, ty: EventType) -> bool {
        ty != EventType::ImagePulled
    }

    /// A name for logs.
    fn name(&self) -> &str {
        std::any::type_name::<Self>()
    }
}

struct Subscriber {
    listener: Arc<dyn EventListener>,
    mask: u32,
}

/// The registry's listeners: any number, each with the event types it wants.
pub(crate) struct Listeners {
    subs: RwLock<Arc<[Arc<Subscriber>]>>,
    /// The union of every subscriber's mask: a type nobody wants costs one
    /// atomic load and no allocation.
    any: AtomicU32,
}

impl Default for Listeners {
    fn default() -> Self {
        Listeners {
            subs: RwLock::new(Arc::from(Vec::new())),
            any: AtomicU32::new(0),
        }
    }
}

impl Listeners {
    pub(crate) fn subscribe(&self, listener: Arc<dyn EventListener>) {
        let mask = EventType::ALL
            .iter()
            .filter(|t| listener.wants(**t))
            .fold(0, |m, t| m | t.bit());
        let mut subs = self.subs.write().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<_> = subs.iter().cloned().collect();
        all.push(Arc::new(Subscriber { listener, mask }));
        *subs = all.into();
        self.any.fetch_or(mask, Ordering::Release);
    }

    /// Whether any listener wants `ty` (build no event otherwise).
    pub(crate) fn wants(&self, ty: EventType) -> bool {
        self.any.load(Ordering::Acquire) & ty.bit() != 0
    }

    /// Hand `event` to every listener that wants it, in subscription order.
    pub(crate) async fn emit(&self, event: &ImageEvent) {
        let bit = event.kind.event_type().bit();
        if self.any.load(Ordering::Acquire) & bit == 0 {
            return;
        }
        let subs = self.subs.read().unwrap_or_else(|e| e.into_inner()).clone();
        for s in subs.iter().filter(|s| s.mask & bit != 0) {
            let run = std::panic::AssertUnwindSafe(s.listener.on_event(event)).catch_unwind();
            if run.await.is_err() {
                tracing::error!(
                    listener = s.listener.name(),
                    event = %event.id,
                    "an event listener panicked; the request goes on"
                );
            }
        }
    }
}
