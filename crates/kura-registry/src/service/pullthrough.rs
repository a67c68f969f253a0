//! The pull-through cache's data path: repositories a pull-through cache
//! rule covers (asked through [`PullThroughSource`]) get what they miss from
//! their upstream.
//!
//! * A manifest GET/HEAD that misses (no repository, no such tag or digest)
//!   fetches the manifest, verifies its digest, creates the repository (from
//!   a `PULL_THROUGH_CACHE` creation template) and stores it as the
//!   pull-through cache service's push ([`EventKind::ImagePushed`], so scan
//!   on push, replication and events apply). The blobs and child manifests
//!   it names are fetched when they are pulled.
//! * A cached tag is checked against the upstream at most once per
//!   [`RegistryConfig::pull_through_refresh`] (cluster-wide: a lease per tag
//!   in the store): a HEAD first, the manifest only when the digest moved.
//!   If the upstream fails, the cached manifest is served (stale: a warning
//!   and [`PullThroughStats::stale_served`]). Content by digest is never
//!   fetched again.
//! * A blob GET that misses streams the blob from the upstream to the
//!   client while it is written ([`super::flight`]); every request for it on
//!   this node joins that download, other nodes wait for it through the
//!   store's fetch lease. Nothing becomes visible before its digest checks.
//! * Uncached content whose upstream fails gets [`RegistryError::Upstream`]
//!   (429 with `Retry-After` when the upstream said 429).

use std::collections::HashMap;
use std::sync::Mutex;

use super::flight::{under_lease, BlobFetch, Failure, Flights, LeadGuard};
use super::ptc_stats::PullThroughStats;
use super::*;
use crate::upstream::{PullThroughSource, UpstreamError, UpstreamManifest, UpstreamRepo};

/// The longest a request waits for another node's fetch of the same content.
const MAX_WAIT: Duration = Duration::from_secs(600);
/// How long this node remembers whether a rule covers a repository (for
/// the hit counter and tag refreshes only: a miss always asks the source).
const COVERAGE_TTL_MS: i64 = 10_000;
/// After a failed refresh, the tag is tried again after this long (or the
/// refresh interval, if shorter).
const RETRY_AFTER_FAILURE_MS: i64 = 60_000;

type Upstream = Arc<dyn UpstreamRepo>;
/// (account, repository) → its upstream (`None`: not covered) until (ms).
type Coverage = HashMap<(String, String), (Option<Upstream>, i64)>;

/// The pull-through cache's state in a [`Registry`].
#[derive(Default)]
pub(crate) struct PullThrough {
    pub(crate) source: std::sync::OnceLock<Arc<dyn PullThroughSource>>,
    pub(crate) stats: Arc<PullThroughStats>,
    blob_flights: Flights,
    manifest_flights: Flights,
    coverage: Mutex<Coverage>,
    /// (repository, tag) → when this node may check it upstream again (ms).
    next_check: Mutex<HashMap<(RepoId, String), i64>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn failure_error(f: Failure, not_found: impl FnOnce(String) -> RegistryError) -> RegistryError {
    match f {
        Failure::NotFound(m) => not_found(m),
        Failure::Upstream { upstream, error } => RegistryError::Upstream { upstream, error },
        Failure::Internal(m) => RegistryError::Store(StoreError::Backend(m)),
        Failure::StorageFull => RegistryError::Unavailable,
        Failure::Abandoned => RegistryError::Upstream {
            upstream: "the upstream".into(),
            error: UpstreamError::Unavailable {
                message: "the fetch was abandoned".into(),
            },
        },
    }
}

fn is_miss(e: &RegistryError) -> bool {
    matches!(
        e,
        RegistryError::RepositoryUnknown { .. }
            | RegistryError::ManifestUnknown { .. }
            | RegistryError::BlobUnknown { .. }
    )
}

/// ECR's failure code of a failed sync.
fn failure_code(e: &UpstreamError) -> &'static str {
    match e {
        UpstreamError::Unavailable { .. } => "UPSTREAM_UNAVAILABLE",
        UpstreamError::TooManyRequests { .. } => "UPSTREAM_TOO_MANY_REQUESTS",
        UpstreamError::Denied { .. } => "UPSTREAM_ACCESS_DENIED",
        UpstreamError::Invalid { .. } => "UPSTREAM_INVALID_CONTENT",
    }
}

/// The rule's prefix and the upstream's host, from the repository's name
/// and the upstream's description (`host/upstream/repository`): the prefix
/// is what is left of the name after the path both end with.
fn rule_names(name: &str, upstream: &str) -> (String, String) {
    let (host, path) = upstream.split_once('/').unwrap_or((upstream, ""));
    let ours: Vec<&str> = name.split('/').collect();
    let theirs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let common = ours
        .iter()
        .rev()
        .zip(theirs.iter().rev())
        .take_while(|(a, b)| a == b)
        .count()
        .min(ours.len().saturating_sub(1));
    (ours[..ours.len() - common].join("/"), host.to_string())
}

impl Registry {
    /// The pull-through cache's counters.
    pub fn pull_through_stats(&self) -> &Arc<PullThroughStats> {
        &self.ptc.stats
    }

    /// The upstream of `name`, asked now (a miss: a rule created a moment
    /// ago counts).
    async fn upstream_now(&self, account: &str, name: &RepoName) -> RegistryResult<Option<Upstream>> {
        let Some(source) = self.ptc.source.get() else {
            return Ok(None);
        };
        let found = source.upstream_for(account, name).await.map_err(|error| {
            PullThroughStats::bump(&self.ptc.stats.errors);
            RegistryError::Upstream {
                upstream: format!("of repository {name}"),
                error,
            }
        })?;
        let until = kura_store::now_millis() + COVERAGE_TTL_MS;
        lock(&self.ptc.coverage).insert((account.to_string(), name.to_string()), (found.clone(), until));
        Ok(found)
    }

    /// The upstream of `name` as this node last knew it (for hits and
    /// refreshes; failures count as "not covered" for now).
    async fn upstream_cached(&self, account: &str, name: &RepoName) -> Option<Upstream> {
        self.ptc.source.get()?;
        let now = kura_store::now_millis();
        {
            let mut map = lock(&self.ptc.coverage);
            if map.len() > 100_000 {
                map.clear();
            }
            if let Some((up, until)) = map.get(&(account.to_string(), name.to_string())) {
                if *until > now {
                    return up.clone();
                }
            }
        }
        match self.upstream_now(account, name).await {
            Ok(up) => up,
            Err(e) => {
                // Not asked again for a while: a hot cached tag must not
                // turn every pull into a failing lookup.
                tracing::warn!(account, repository = %name, error = %e, "pull-through rule lookup failed");
                let until = now + COVERAGE_TTL_MS;
                lock(&self.ptc.coverage).insert((account.to_string(), name.to_string()), (None, until));
                None
            }
        }
    }

    /// Count a hit when `name` is a pull-through cache repository.
    pub(crate) async fn note_hit(&self, account: &str, name: &RepoName) {
        if self.ptc.source.get().is_some() && self.upstream_cached(account, name).await.is_some() {
            PullThroughStats::bump(&self.ptc.stats.hits);
        }
    }

    /// The stored manifest `reference` of `name`.
    pub(crate) async fn local_manifest(
        &self,
        account: &str,
        name: &RepoName,
        reference: &Reference,
    ) -> RegistryResult<(RepoId, ManifestRow)> {
        let repo = self.repo(account, name).await?;
        let key = match reference {
            Reference::Tag(t) => ManifestKey::Tag(t.as_str()),
            Reference::Digest(d) => ManifestKey::Digest(d.as_str()),
        };
        let row = self
            .meta
            .manifest_get(repo, key)
            .await?
            .ok_or_else(|| manifests::manifest_unknown(&reference.to_string(), name))?;
        Ok((repo, row))
    }

    /// A manifest lookup missed with `miss`: fetch the manifest when a rule
    /// covers the repository, else return `miss`.
    pub(crate) async fn manifest_miss(
        &self,
        account: &str,
        name: &RepoName,
        reference: &Reference,
        miss: RegistryError,
    ) -> RegistryResult<(RepoId, ManifestRow)> {
        if !is_miss(&miss) {
            return Err(miss);
        }
        let Some(up) = self.upstream_now(account, name).await? else {
            return Err(miss);
        };
        PullThroughStats::bump(&self.ptc.stats.misses);
        self.manifest_flight(account, name, reference, &up, None).await?;
        self.local_manifest(account, name, reference).await
    }

    /// Fetch `reference` once (on this node and across the cluster) unless
    /// it is stored (with digest `expect`, when given).
    async fn manifest_flight(
        &self,
        account: &str,
        name: &RepoName,
        reference: &Reference,
        up: &Upstream,
        expect: Option<&str>,
    ) -> RegistryResult<()> {
        let key = format!("manifest:{account}:{name}:{reference}");
        loop {
            let (flight, lead) = self.ptc.manifest_flights.join_or_lead(&key);
            let result = if lead {
                let guard = LeadGuard {
                    flights: self.ptc.manifest_flights.clone(),
                    key: key.clone(),
                    flight: flight.clone(),
                    landed: false,
                };
                let r = under_lease(
                    &self.meta,
                    &key,
                    MAX_WAIT,
                    || PullThroughStats::bump(&self.ptc.stats.remote_waits),
                    || self.manifest_present(account, name, reference, expect),
                    |_| self.fetch_manifest(account, name, reference, up),
                )
                .await;
                guard.land(r.clone());
                r
            } else {
                PullThroughStats::bump(&self.ptc.stats.joined);
                flight.done().await
            };
            match result {
                Ok(()) => return Ok(()),
                Err(Failure::Abandoned) => continue,
                Err(f) => {
                    return Err(failure_error(f, |message| RegistryError::ManifestUnknown {
                        reference: reference.to_string(),
                        message,
                    }))
                }
            }
        }
    }

    async fn manifest_present(
        &self,
        account: &str,
        name: &RepoName,
        reference: &Reference,
        expect: Option<&str>,
    ) -> Result<bool, Failure> {
        match self.local_manifest(account, name, reference).await {
            Ok((_, row)) => Ok(expect.is_none_or(|d| d == row.digest)),
            Err(e) if is_miss(&e) => Ok(false),
            Err(e) => Err(Failure::Internal(e.to_string())),
        }
    }

    /// GET the manifest from the upstream and store it.
    async fn fetch_manifest(
        &self,
        account: &str,
        name: &RepoName,
        reference: &Reference,
        up: &Upstream,
    ) -> Result<(), Failure> {
        PullThroughStats::bump(&self.ptc.stats.upstream_fetches);
        let tag = match reference {
            Reference::Tag(t) => Some(t.to_string()),
            Reference::Digest(_) => None,
        };
        let fetched = match up.get_manifest(&reference.to_string()).await {
            Ok(Some(m)) => self.store_fetched(account, name, reference, up, m).await,
            Ok(None) => Err(Failure::NotFound(format!(
                "manifest {reference} is not in the upstream {}",
                up.describe()
            ))),
            Err(error) => Err(Failure::Upstream {
                upstream: up.describe(),
                error,
            }),
        };
        if let Err(f) = &fetched {
            PullThroughStats::bump(&self.ptc.stats.errors);
            let (code, reason) = match f {
                Failure::Upstream { error, .. } => (failure_code(error), f.to_string()),
                Failure::NotFound(m) => ("IMAGE_NOT_FOUND", m.clone()),
                _ => ("INTERNAL_ERROR", "internal error".to_string()),
            };
            tracing::warn!(account, repository = %name, reference = %reference, upstream = %up.describe(),
                error = %reason, "pull-through cache: fetching a manifest failed");
            self.sync_event(account, name, up, None, tag, Some((code, reason)))
                .await;
        }
        fetched
    }

    /// Verify a manifest from the upstream and store it as the cache's push.
    async fn store_fetched(
        &self,
        account: &str,
        name: &RepoName,
        reference: &Reference,
        up: &Upstream,
        m: UpstreamManifest,
    ) -> Result<(), Failure> {
        let invalid = |message: String| Failure::Upstream {
            upstream: up.describe(),
            error: UpstreamError::Invalid { message },
        };
        if m.body.len() > MAX_MANIFEST_BYTES {
            return Err(invalid(format!("manifest of {} bytes is over the limit", m.body.len())));
        }
        let digest = match reference {
            Reference::Digest(d) => Digest::of(d.algorithm(), &m.body),
            Reference::Tag(_) => Digest::sha256(&m.body),
        };
        if let Reference::Digest(d) = reference {
            if &digest != d {
                return Err(invalid(format!("it sent a manifest with digest {digest} for {d}")));
            }
        }
        if let Ok(claimed) = m.digest.parse::<Digest>() {
            let actual = Digest::of(claimed.algorithm(), &m.body);
            if actual != claimed {
                return Err(invalid(format!(
                    "it said the manifest's digest is {claimed}, but it is {actual}"
                )));
            }
        }
        let info = manifest::inspect(&m.body, Some(&m.media_type)).map_err(|e| invalid(e.to_string()))?;
        let internal = |e: RegistryError| Failure::Internal(e.to_string());
        let (repo, created) = self
            .ensure_repository(account, name, Purpose::PullThroughCache)
            .await
            .map_err(internal)?;
        if created {
            tracing::info!(account, repository = %name, upstream = %up.describe(), "pull-through cache created a repository");
        }
        let tags: Vec<String> = match reference {
            Reference::Tag(t) => vec![t.to_string()],
            Reference::Digest(_) => Vec::new(),
        };
        let writes: Vec<TagWrite> = tags
            .iter()
            .map(|t| TagWrite {
                name: t.clone(),
                immutable: repo.settings.tag_is_immutable(t),
            })
            .collect();
        let new = NewManifest {
            digest: digest.to_string(),
            media_type: info.media_type.clone(),
            artifact_type: info.artifact_type.clone(),
            subject: info.subject.as_ref().map(|s| s.to_string()),
            annotations: info.annotations.as_ref().and_then(|a| serde_json::to_string(a).ok()),
            body: m.body.to_vec(),
            blobs: info.blobs.iter().map(|d| d.to_string()).collect(),
            children: info.children.iter().map(|d| d.to_string()).collect(),
        };
        let moved = match self.meta.manifest_put_cached(repo.id, &new, &writes).await {
            Ok(moved) => moved,
            Err(PutManifestError::TagImmutable(t)) => {
                return Err(Failure::Internal(format!(
                    "tag {t} is immutable in {name}: the upstream's manifest {digest} was not stored"
                )))
            }
            Err(e) => return Err(Failure::Internal(format!("storing a fetched manifest: {e}"))),
        };
        // An index stored before it names it now.
        if let Err(e) = self.meta.manifest_settle_cached(repo.id, digest.as_str()).await {
            return Err(Failure::Internal(format!(
                "recording a fetched manifest's references: {e}"
            )));
        }
        let actor = Actor::pull_through_cache(account);
        let pushed = EventKind::ImagePushed {
            digest: digest.to_string(),
            media_type: info.media_type.clone(),
            artifact_type: info.artifact_type.clone(),
            tags: tags.clone(),
        };
        // Its layers are fetched now (clients pulling them join), and the
        // push is announced once they are all stored.
        let mut missing = Vec::new();
        if self.config.pull_through_prefetch {
            for b in &info.blobs {
                match self.meta.blob_get(repo.id, b.as_str()).await {
                    Ok(Some(_)) => {}
                    Ok(None) => missing.push(b.clone()),
                    Err(e) => return Err(Failure::Internal(format!("reading a fetched manifest's blobs: {e}"))),
                }
            }
        }
        if missing.is_empty() {
            self.emit(account, &repo.name, &actor, pushed).await;
        } else {
            let flights: Vec<_> = missing.iter().map(|d| self.blob_flight(repo.id, d, up)).collect();
            let listeners = self.listeners.clone();
            let (account, repository, actor) = (account.to_string(), repo.name.clone(), actor.clone());
            tokio::spawn(async move {
                for (f, d) in flights.iter().zip(&missing) {
                    if let Err(e) = f.done().await {
                        tracing::warn!(account, repository, blob = %d, error = %e,
                            "pull-through cache: a layer could not be fetched; the image is not announced as pushed");
                        return;
                    }
                }
                if listeners.wants(EventType::ImagePushed) {
                    listeners
                        .emit(&crate::events::ImageEvent::new(&account, &repository, &actor, pushed))
                        .await;
                }
            });
        }
        for mv in moved {
            let changed = EventKind::TagChanged {
                tag: mv.tag,
                old_digest: mv.old_digest,
                new_digest: Some(digest.to_string()),
            };
            self.emit(account, &repo.name, &actor, changed).await;
        }
        let tag = tags.first().cloned();
        self.sync_event(account, name, up, Some(digest.to_string()), tag.clone(), None)
            .await;
        if let Some(t) = tag {
            // The refresh window starts now.
            let interval = self.config.pull_through_refresh.as_millis() as i64;
            let key = format!("refresh:{}:{t}", repo.id);
            if let Err(e) = self
                .meta
                .fetch_lease_take(&key, &super::flight::holder_id(), interval)
                .await
            {
                tracing::warn!(error = %e, "could not record a tag's refresh window");
            }
            lock(&self.ptc.next_check).insert((repo.id, t), kura_store::now_millis() + interval);
        }
        tracing::info!(account, repository = %name, digest = %digest, upstream = %up.describe(), "pull-through cache stored a manifest");
        Ok(())
    }

    async fn sync_event(
        &self,
        account: &str,
        name: &RepoName,
        up: &Upstream,
        digest: Option<String>,
        tag: Option<String>,
        failure: Option<(&str, String)>,
    ) {
        if !self.wants(EventType::PullThroughCacheAction) {
            return;
        }
        let (prefix, host) = rule_names(name.as_str(), &up.describe());
        let (code, reason) = failure.map(|(c, r)| (c.to_string(), r)).unzip();
        let kind = EventKind::PullThroughCacheAction {
            digest,
            tag,
            ecr_repository_prefix: prefix,
            upstream_registry_url: host,
            sync_status: if code.is_some() { "FAILED" } else { "SUCCESS" }.to_string(),
            failure_code: code,
            failure_reason: reason,
        };
        self.emit(account, name.as_str(), &Actor::pull_through_cache(account), kind)
            .await;
    }

    /// A cached tag: at most once per interval (cluster-wide), ask the
    /// upstream whether it moved, and fetch the new manifest if it did. The
    /// cached manifest is served when the upstream fails (stale).
    pub(crate) async fn refresh_tag(
        &self,
        account: &str,
        name: &RepoName,
        repo: RepoId,
        tag: &Tag,
        row: ManifestRow,
    ) -> ManifestRow {
        let Some(up) = self.upstream_cached(account, name).await else {
            return row;
        };
        PullThroughStats::bump(&self.ptc.stats.hits);
        let now = kura_store::now_millis();
        let slot = (repo, tag.to_string());
        if lock(&self.ptc.next_check).get(&slot).is_some_and(|t| *t > now) {
            return row;
        }
        let interval = self.config.pull_through_refresh.as_millis() as i64;
        let key = format!("refresh:{repo}:{tag}");
        let holder = super::flight::holder_id();
        match self.meta.fetch_lease_take(&key, &holder, interval).await {
            Ok(kura_store::meta::LeaseTake::Taken) => {
                lock(&self.ptc.next_check).insert(slot.clone(), now + interval);
            }
            Ok(kura_store::meta::LeaseTake::Held { expires_at, .. }) => {
                lock(&self.ptc.next_check).insert(slot, expires_at);
                return row;
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not take a tag's refresh lease; serving the cached tag");
                return row;
            }
        }
        PullThroughStats::bump(&self.ptc.stats.refreshes);
        let reference = Reference::Tag(tag.clone());
        let failure = match up.head_manifest(tag.as_str()).await {
            Ok(Some(head)) if head.digest == row.digest => return row,
            Ok(Some(head)) => match self
                .manifest_flight(account, name, &reference, &up, Some(&head.digest))
                .await
            {
                Ok(()) => match self.local_manifest(account, name, &reference).await {
                    Ok((_, newer)) => return newer,
                    Err(e) => e.to_string(),
                },
                Err(e) => e.to_string(),
            },
            Ok(None) => {
                tracing::warn!(account, repository = %name, tag = %tag, upstream = %up.describe(),
                    "pull-through cache: the upstream no longer has this tag; serving the cached one");
                return row;
            }
            Err(error) => {
                let f = Failure::Upstream {
                    upstream: up.describe(),
                    error: error.clone(),
                };
                let reason = f.to_string();
                self.sync_event(
                    account,
                    name,
                    &up,
                    None,
                    Some(tag.to_string()),
                    Some((failure_code(&error), reason.clone())),
                )
                .await;
                PullThroughStats::bump(&self.ptc.stats.errors);
                reason
            }
        };
        PullThroughStats::bump(&self.ptc.stats.stale_served);
        tracing::warn!(account, repository = %name, tag = %tag, digest = %row.digest, upstream = %up.describe(),
            error = %failure, "pull-through cache: refreshing a tag failed; serving the cached (stale) manifest");
        let retry = RETRY_AFTER_FAILURE_MS.min(interval);
        if let Err(e) = self.meta.fetch_lease_renew(&key, &holder, retry).await {
            tracing::warn!(error = %e, "could not shorten a tag's refresh window");
        }
        lock(&self.ptc.next_check).insert(slot, now + retry);
        row
    }

    /// A blob lookup missed with `miss`: when a rule covers the repository,
    /// stream the blob from its upstream (joining a download under way).
    pub(crate) async fn blob_miss(
        &self,
        account: &str,
        name: &RepoName,
        digest: &Digest,
        range: Option<&str>,
        head: bool,
        miss: RegistryError,
    ) -> RegistryResult<BlobRead> {
        if !is_miss(&miss) {
            return Err(miss);
        }
        let Some(up) = self.upstream_now(account, name).await? else {
            return Err(miss);
        };
        // The repository exists once one of its manifests was pulled: a blob
        // GET alone creates none.
        let Some(repo) = self.meta.repo_get(account, name.as_str()).await? else {
            return Err(miss);
        };
        PullThroughStats::bump(&self.ptc.stats.misses);
        loop {
            let flight = self.blob_flight(repo.id, digest, &up);
            if range.is_none() {
                if let Some(size) = flight.stream_size().await {
                    let blob = BlobRow {
                        digest: digest.to_string(),
                        size: size as i64,
                        storage_key: String::new(),
                    };
                    let body = (!head).then(|| flight.clone().reader());
                    return Ok(BlobRead {
                        blob,
                        body,
                        range: None,
                        redirect: None,
                    });
                }
            }
            match flight.done().await {
                Ok(()) => return self.get_blob_local(account, name, digest.as_str(), range, head).await,
                Err(Failure::Abandoned) => continue,
                Err(f) => {
                    return Err(failure_error(f, |message| RegistryError::BlobUnknown {
                        digest: digest.to_string(),
                        message,
                    }))
                }
            }
        }
    }

    /// The download of blob `digest` into `repo` under way on this node,
    /// started (in a task of its own, under the cluster-wide lease) if none is.
    fn blob_flight(&self, repo: RepoId, digest: &Digest, up: &Upstream) -> Arc<super::flight::Flight> {
        let key = format!("blob:{repo}:{digest}");
        let (flight, lead) = self.ptc.blob_flights.join_or_lead(&key);
        if lead {
            let fetch = BlobFetch {
                meta: self.meta.clone(),
                blobs: self.blobs.clone(),
                stats: self.ptc.stats.clone(),
                upstream: up.clone(),
                repo,
                digest: digest.clone(),
            };
            let guard = LeadGuard {
                flights: self.ptc.blob_flights.clone(),
                key: key.clone(),
                flight: flight.clone(),
                landed: false,
            };
            // The download goes on when the client that started it leaves.
            tokio::spawn(async move {
                let f = guard.flight.clone();
                let meta = fetch.meta.clone();
                let present = || async {
                    match fetch.meta.blob_get(fetch.repo, fetch.digest.as_str()).await {
                        Ok(b) => Ok(b.is_some()),
                        Err(e) => Err(Failure::Internal(e.to_string())),
                    }
                };
                let waiting = || {
                    PullThroughStats::bump(&fetch.stats.remote_waits);
                    f.start(None, false);
                };
                let r = under_lease(&meta, &guard.key, MAX_WAIT, waiting, present, |_| fetch.run(&f)).await;
                if let Err(e) = &r {
                    PullThroughStats::bump(&fetch.stats.errors);
                    tracing::warn!(digest = %fetch.digest, upstream = %fetch.upstream.describe(), error = %e,
                            "pull-through cache: fetching a blob failed");
                }
                guard.land(r);
            });
        } else {
            PullThroughStats::bump(&self.ptc.stats.joined);
        }
        flight
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::NotFound(m) | Failure::Internal(m) => f.write_str(m),
            Failure::Upstream { upstream, error } => f.write_str(&crate::error::upstream_message(upstream, error)),
            Failure::Abandoned => f.write_str("the fetch was abandoned"),
            Failure::StorageFull => f.write_str("the registry's storage is full; retry later"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::rule_names;

    #[test]
    fn prefix_and_host_from_names() {
        let (p, h) = rule_names("hub/library/nginx", "registry-1.docker.io/library/nginx");
        assert_eq!((p.as_str(), h.as_str()), ("hub", "registry-1.docker.io"));
        let (p, _) = rule_names("hub/nginx", "registry-1.docker.io/library/nginx");
        assert_eq!(p, "hub");
        let (p, h) = rule_names("q/team/app", "quay.io/other/app");
        assert_eq!((p.as_str(), h.as_str()), ("q/team", "quay.io"));
        // The prefix never takes the whole name.
        let (p, _) = rule_names("nginx", "example.com/nginx");
        assert_eq!(p, "nginx");
    }
}
