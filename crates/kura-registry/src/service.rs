//! The registry service: the data plane's rules, independent of HTTP.
//!
//! Handlers call these methods; these methods call the stores. A push is
//! atomic because bytes are made durable in the blob store first and become
//! visible only through one short metadata transaction afterwards.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use kura_oci::manifest::{self, MAX_MANIFEST_BYTES};
use kura_oci::{Algorithm, Digest, Hasher, Reference, RepoName, Tag};
use kura_store::blob::ByteStream;
use kura_store::meta::{
    BlobRow, Claim, DeleteManifest, ManifestKey, ManifestRow, NewManifest, PutManifestError, Referrer, RepoId, RepoRow,
    TagWrite, UploadLimits, UploadOpen, UploadRow,
};
use kura_store::{BlobStore, MetaStore, StoreError};

use crate::error::{Invalid, RegistryError, RegistryResult};
use crate::events::{Actor, EventKind, EventListener, EventType, ImageEvent};

mod catalog;
mod flight;
mod manifests;
mod ptc_stats;
mod pullthrough;
pub use catalog::{CatalogFilter, RepoFilter};
pub use manifests::{DeleteCause, Untagged};
pub use ptc_stats::PullThroughStats;

/// A request body as a stream of chunks.
pub type Body = BoxStream<'static, io::Result<Bytes>>;

/// Settings of the data plane.
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// The account used when a request does not name one.
    pub default_account: String,
    /// Create a repository on its first push (until ECR creation templates exist).
    pub create_on_push: bool,
    /// Answer blob GETs with a redirect to a URL of the blob store valid this
    /// long, when the store can presign (`None`: Kura serves the bytes).
    pub blob_redirect: Option<Duration>,
    /// Open upload sessions a repository may have at once (0: no cap).
    pub max_uploads_per_repo: u64,
    /// Open upload sessions one principal may have at once (0: no cap).
    pub max_uploads_per_principal: u64,
    /// A pull-through cache checks a cached tag against its upstream at most
    /// this often (ECR: 24 hours).
    pub pull_through_refresh: Duration,
    /// A pull-through cache fetches the layers of a manifest it stored in
    /// the background (clients join those downloads), and announces the
    /// image as pushed once they are all there (so scan on push and
    /// replication see a whole image). Off: layers come when pulled and
    /// the push is announced with the manifest.
    pub pull_through_prefetch: bool,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            default_account: "000000000000".into(),
            create_on_push: true,
            blob_redirect: None,
            max_uploads_per_repo: 1000,
            max_uploads_per_principal: 1000,
            pull_through_refresh: Duration::from_secs(24 * 3600),
            pull_through_prefetch: true,
        }
    }
}

/// Decides whether a push may create a missing repository (ECR's
/// create-on-push repository creation templates plug in here).
#[async_trait::async_trait]
pub trait RepoProvisioner: Send + Sync + 'static {
    /// Create `name` in `account` for a push, or return `None` to refuse.
    async fn provision(&self, account: &str, name: &str) -> Result<Option<RepoRow>, StoreError>;

    /// Create `name` in `account` for `purpose` from the creation template
    /// that applies to it, or return `None` when no template does (the
    /// caller then decides: a push is refused, replication uses ECR's
    /// defaults). The default: pushes go to [`RepoProvisioner::provision`],
    /// other purposes have no template.
    async fn provision_for(&self, account: &str, name: &str, purpose: Purpose) -> Result<Option<RepoRow>, StoreError> {
        match purpose {
            Purpose::CreateOnPush => self.provision(account, name).await,
            _ => Ok(None),
        }
    }
}

/// Why a repository is created without a `CreateRepository` call (a
/// creation template's `appliedFor`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// A push to a missing repository (`CREATE_ON_PUSH`).
    CreateOnPush,
    /// The first image replicated into it (`REPLICATION`).
    Replication,
    /// The first image a pull-through cache stores in it (`PULL_THROUGH_CACHE`).
    PullThroughCache,
}

impl Purpose {
    /// The `appliedFor` value of templates for this purpose.
    pub fn applied_for(self) -> &'static str {
        match self {
            Purpose::CreateOnPush => "CREATE_ON_PUSH",
            Purpose::Replication => "REPLICATION",
            Purpose::PullThroughCache => "PULL_THROUGH_CACHE",
        }
    }
}

/// Decides whether a pull updates an image's `lastRecordedPullTime` (ECR's
/// pull-time update exclusions: a scanner's pulls must not keep images alive
/// under `sinceImagePulled` lifecycle rules). Asked on the request path
/// before the pull-time write is scheduled, so it must be cheap (a cache).
#[async_trait::async_trait]
pub trait PullTimeFilter: Send + Sync + 'static {
    /// Whether `actor`'s pull of an image in `account`'s registry is recorded.
    async fn records(&self, account: &str, actor: &Actor) -> bool;
}

/// The data-plane service.
pub struct Registry {
    listeners: Arc<crate::events::Listeners>,
    meta: Arc<dyn MetaStore>,
    blobs: Arc<dyn BlobStore>,
    config: RegistryConfig,
    provisioner: Option<Arc<dyn RepoProvisioner>>,
    /// Recent pull-time and HEAD writes, so hot images cost no write per request.
    pulls: Throttle,
    touches: Throttle,
    pull_filter: std::sync::OnceLock<Arc<dyn PullTimeFilter>>,
    ptc: pullthrough::PullThrough,
}

/// Remembers when a key was last written, to skip writes within `every_ms`.
/// An optimisation only: the store applies the same rule in its UPDATE, so a
/// cold cache (another node, a restart) never writes more than once per period.
struct Throttle {
    every_ms: i64,
    seen: std::sync::Mutex<std::collections::HashMap<(i64, String), i64>>,
}

impl Throttle {
    fn new(every_ms: i64) -> Self {
        Throttle {
            every_ms,
            seen: Default::default(),
        }
    }

    /// True if the caller should write now (and records that it did).
    fn due(&self, repo: i64, digest: &str, now: i64) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() > 100_000 {
            seen.clear();
        }
        match seen.get(&(repo, digest.to_string())) {
            Some(last) if now - last < self.every_ms => false,
            _ => {
                seen.insert((repo, digest.to_string()), now);
                true
            }
        }
    }
}

/// The state of an upload, as reported in `Location` and `Range` headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadStatus {
    /// The upload id.
    pub id: String,
    /// Bytes received so far.
    pub offset: u64,
}

/// What a POST to `/blobs/uploads/` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartOutcome {
    /// The blob was mounted from another repository, or uploaded in one POST.
    Created(Digest),
    /// An upload session was opened.
    Started(UploadStatus),
}

/// A blob to send to a client.
pub struct BlobRead {
    /// The blob's row.
    pub blob: BlobRow,
    /// The body (`None` for HEAD).
    pub body: Option<ByteStream>,
    /// The inclusive byte range served, if a Range was asked for.
    pub range: Option<(u64, u64)>,
    /// A URL of the blob store to redirect the GET to (then `body` is `None`).
    pub redirect: Option<String>,
}

impl std::fmt::Debug for BlobRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobRead")
            .field("blob", &self.blob)
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

/// The result of a manifest PUT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutManifestOutcome {
    /// Digest of the stored manifest.
    pub digest: Digest,
    /// Its subject, if any (for the `OCI-Subject` header).
    pub subject: Option<Digest>,
}

fn digest_param(s: &str) -> RegistryResult<Digest> {
    s.parse::<Digest>()
        .map_err(|e| RegistryError::invalid(Invalid::Digest, format!("invalid digest {s:?}: {e}")))
}

/// ECR's answer for a repository that does not exist.
pub fn name_unknown(account: &str, name: &RepoName) -> RegistryError {
    RegistryError::RepositoryUnknown {
        account: account.to_string(),
        name: name.to_string(),
    }
}

fn upload_unknown(id: &str) -> RegistryError {
    RegistryError::UploadUnknown { id: id.to_string() }
}

fn is_not_found(e: &StoreError) -> bool {
    matches!(e, StoreError::Io(io) if io.kind() == io::ErrorKind::NotFound)
}

/// Parse a `Range: bytes=...` header against a blob size into an inclusive range.
pub fn parse_range(header: &str, size: u64) -> Option<(u64, u64)> {
    let spec = header.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None; // multipart ranges are not offered
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        if n == 0 || size == 0 {
            return None;
        }
        (size.saturating_sub(n), size - 1)
    } else {
        let start: u64 = a.parse().ok()?;
        let end: u64 = if b.is_empty() {
            size.saturating_sub(1)
        } else {
            b.parse::<u64>().ok()?.min(size.saturating_sub(1))
        };
        if start >= size || end < start {
            return None;
        }
        (start, end)
    };
    Some(range)
}

impl Registry {
    /// A registry over the given stores.
    pub fn new(meta: Arc<dyn MetaStore>, blobs: Arc<dyn BlobStore>, config: RegistryConfig) -> Self {
        Registry {
            meta,
            blobs,
            config,
            provisioner: None,
            listeners: Default::default(),
            pulls: Throttle::new(60_000),
            touches: Throttle::new(kura_store::sql::TOUCH_EVERY_MS),
            pull_filter: std::sync::OnceLock::new(),
            ptc: Default::default(),
        }
    }

    /// Let `filter` decide which pulls update pull times (once, at start-up;
    /// without one every pull does).
    pub fn set_pull_time_filter(&self, filter: Arc<dyn PullTimeFilter>) {
        if self.pull_filter.set(filter).is_err() {
            tracing::warn!("a pull-time filter was already set");
        }
    }

    /// Let `source` say which repositories a pull-through cache rule covers
    /// and where their content comes from (once, at start-up; without one no
    /// repository is a cache).
    pub fn set_pull_through(&self, source: Arc<dyn crate::upstream::PullThroughSource>) {
        if self.ptc.source.set(source).is_err() {
            tracing::warn!("a pull-through source was already set");
        }
    }

    /// Whether `actor`'s pull in `account` updates the pull time.
    pub(crate) async fn records_pull(&self, account: &str, actor: &Actor) -> bool {
        match self.pull_filter.get() {
            Some(f) => f.records(account, actor).await,
            None => true,
        }
    }

    /// Add an event listener (any number; each gets the events of the
    /// types its [`EventListener::wants`] asks for, in subscription order).
    pub fn subscribe(&self, listener: Arc<dyn EventListener>) {
        self.listeners.subscribe(listener);
    }

    /// Whether some listener wants events of type `ty`.
    pub fn wants(&self, ty: EventType) -> bool {
        self.listeners.wants(ty)
    }

    /// Emit one event to the listeners that want it (after the change committed).
    pub(crate) async fn emit(&self, account: &str, repository: &str, actor: &Actor, kind: EventKind) {
        if self.listeners.wants(kind.event_type()) {
            let event = ImageEvent::new(account, repository, actor, kind);
            self.listeners.emit(&event).await;
        }
    }

    /// Let a push create missing repositories through `p`.
    pub fn with_provisioner(mut self, p: Arc<dyn RepoProvisioner>) -> Self {
        self.provisioner = Some(p);
        self
    }

    /// The metadata store.
    pub fn meta(&self) -> &Arc<dyn MetaStore> {
        &self.meta
    }

    /// The blob store.
    pub fn blobs(&self) -> &Arc<dyn BlobStore> {
        &self.blobs
    }

    /// The configuration.
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    async fn repo(&self, account: &str, name: &RepoName) -> RegistryResult<RepoId> {
        Ok(self.repo_row(account, name).await?.id)
    }

    async fn repo_row(&self, account: &str, name: &RepoName) -> RegistryResult<RepoRow> {
        self.meta
            .repo_get(account, name.as_str())
            .await?
            .ok_or_else(|| name_unknown(account, name))
    }

    /// The repository `name` of `account`, created for `purpose` when it is
    /// missing: from the creation template for that purpose, else (for
    /// replication and the pull-through cache) with ECR's default settings.
    /// A push (`CreateOnPush`) without a template is refused as a push to a
    /// missing repository is. Returns the row and whether it was created.
    pub async fn ensure_repository(
        &self,
        account: &str,
        name: &RepoName,
        purpose: Purpose,
    ) -> RegistryResult<(RepoRow, bool)> {
        if let Some(r) = self.meta.repo_get(account, name.as_str()).await? {
            return Ok((r, false));
        }
        if purpose == Purpose::CreateOnPush {
            return Ok((self.repo_for_push(account, name).await?, true));
        }
        if let Some(p) = &self.provisioner {
            if let Some(r) = p.provision_for(account, name.as_str(), purpose).await? {
                return Ok((r, true));
            }
        }
        match self
            .meta
            .repo_create(account, name.as_str(), &kura_store::meta::RepoSettings::default())
            .await?
        {
            Some(r) => {
                tracing::info!(account, repository = %name, purpose = purpose.applied_for(), "created repository with default settings");
                Ok((r, true))
            }
            // Created concurrently.
            None => Ok((self.repo_row(account, name).await?, false)),
        }
    }

    /// Let repository `name` read a blob this deployment already stores
    /// (content is shared across repositories and accounts): replication
    /// into another account of the same deployment moves no bytes. False
    /// when no repository holds the blob.
    pub async fn adopt_blob(&self, account: &str, name: &RepoName, digest: &str) -> RegistryResult<bool> {
        let digest = digest_param(digest)?;
        let repo = self.repo(account, name).await?;
        if self.meta.blob_get(repo, digest.as_str()).await?.is_some() {
            return Ok(true);
        }
        let Some(blob) = self.meta.blob_lookup(digest.as_str()).await? else {
            return Ok(false);
        };
        let done = self.meta.blob_commit(repo, &blob, None).await?;
        self.run_cleanup(&done.cleanup).await;
        Ok(true)
    }

    /// Emit the outcome of replicating an image of `repository` (in the
    /// source registry) to one destination.
    pub async fn replicated(&self, account: &str, repository: &str, actor: &Actor, kind: EventKind) {
        if matches!(kind, EventKind::ImageReplicated { .. }) {
            self.emit(account, repository, actor, kind).await;
        }
    }

    async fn repo_for_push(&self, account: &str, name: &RepoName) -> RegistryResult<RepoRow> {
        if let Some(r) = self.meta.repo_get(account, name.as_str()).await? {
            return Ok(r);
        }
        if let Some(p) = &self.provisioner {
            return p
                .provision(account, name.as_str())
                .await?
                .ok_or_else(|| name_unknown(account, name));
        }
        if self.config.create_on_push {
            self.meta.repo_get_or_create(account, name.as_str()).await?;
            return self.repo_row(account, name).await;
        }
        Err(name_unknown(account, name))
    }

    // ----- blobs -------------------------------------------------------------

    /// Read a blob (or a range of it); `head` skips the body. A blob a
    /// pull-through cache repository misses comes from its upstream.
    pub async fn get_blob(
        &self,
        account: &str,
        name: &RepoName,
        digest: &str,
        range: Option<&str>,
        head: bool,
    ) -> RegistryResult<BlobRead> {
        match self.get_blob_local(account, name, digest, range, head).await {
            Ok(read) => {
                self.note_hit(account, name).await;
                Ok(read)
            }
            Err(miss) if self.ptc.source.get().is_some() => {
                let d = digest_param(digest)?;
                self.blob_miss(account, name, &d, range, head, miss).await
            }
            Err(e) => Err(e),
        }
    }

    /// Read a stored blob (or a range of it); `head` skips the body.
    async fn get_blob_local(
        &self,
        account: &str,
        name: &RepoName,
        digest: &str,
        range: Option<&str>,
        head: bool,
    ) -> RegistryResult<BlobRead> {
        let digest = digest_param(digest)?;
        let repo = self.repo(account, name).await?;
        let blob = self
            .meta
            .blob_get(repo, digest.as_str())
            .await?
            .ok_or_else(|| RegistryError::BlobUnknown {
                digest: digest.to_string(),
                message: format!("blob {digest} is not in repository {name}"),
            })?;
        let size = blob.size as u64;
        let range = match range {
            None => None,
            Some(h) => Some(parse_range(h, size).ok_or_else(|| RegistryError::RangeUnsatisfiable {
                range: h.to_string(),
                size,
            })?),
        };
        let body = if head {
            // A HEAD usually precedes a manifest that references the blob
            // without uploading it: keep GC off the link for a while.
            let now = kura_store::now_millis();
            if self.touches.due(repo, digest.as_str(), now) {
                self.meta.blob_touch(repo, digest.as_str(), now).await?;
            }
            None
        } else if let Some(url) = self.presigned(&blob.storage_key).await? {
            return Ok(BlobRead {
                blob,
                body: None,
                range,
                redirect: Some(url),
            });
        } else {
            match self.blobs.read(&blob.storage_key, range).await {
                Ok(s) => Some(s),
                Err(e) if is_not_found(&e) => {
                    tracing::error!(digest = %digest, key = %blob.storage_key, "blob row has no bytes");
                    return Err(RegistryError::BlobUnknown {
                        digest: digest.to_string(),
                        message: format!("blob {digest} content is missing"),
                    });
                }
                Err(e) => return Err(e.into()),
            }
        };
        Ok(BlobRead {
            blob,
            body,
            range,
            redirect: None,
        })
    }

    /// A presigned URL of the blob store for a blob GET, when redirects are on
    /// and the store can presign.
    async fn presigned(&self, key: &str) -> RegistryResult<Option<String>> {
        match self.config.blob_redirect {
            Some(ttl) => Ok(self.blobs.presign_get(key, ttl).await?),
            None => Ok(None),
        }
    }

    /// Remove a blob from a repository (the bytes go when nothing references them).
    pub async fn delete_blob(&self, account: &str, name: &RepoName, digest: &str) -> RegistryResult<()> {
        let digest = digest_param(digest)?;
        let repo = self.repo(account, name).await?;
        if self.meta.blob_unlink(repo, digest.as_str()).await? {
            Ok(())
        } else {
            Err(RegistryError::BlobUnknown {
                digest: digest.to_string(),
                message: format!("blob {digest} is not in repository {name}"),
            })
        }
    }

    // ----- uploads -----------------------------------------------------------

    /// POST `/blobs/uploads/`: mount, single-POST upload, or open a session.
    /// The `actor`'s principal (its unique id; none when anonymous) is
    /// recorded with the session and counted against the per-principal cap.
    /// A mount emits [`EventKind::BlobMounted`].
    pub async fn start_upload(
        &self,
        account: &str,
        name: &RepoName,
        mount: Option<&crate::request::Mount>,
        digest: Option<&str>,
        actor: &Actor,
        body: Body,
    ) -> RegistryResult<StartOutcome> {
        let principal = (!actor.is_anonymous()).then_some(actor.principal_id.as_str());
        let repo = self.repo_for_push(account, name).await?.id;
        if let Some(m) = mount {
            let d = digest_param(&m.digest)?;
            if let Some(from_repo) = self.meta.repo_get(account, m.from.as_str()).await? {
                if self.meta.blob_mount(repo, from_repo.id, d.as_str()).await? {
                    let mounted = EventKind::BlobMounted {
                        digest: d.to_string(),
                        from_repository: from_repo.name,
                    };
                    self.emit(account, name.as_str(), actor, mounted).await;
                    return Ok(StartOutcome::Created(d));
                }
            }
            // Cannot mount: fall through to an ordinary upload session (202).
        }
        let expected = match digest {
            Some(d) => Some(digest_param(d)?),
            None => None,
        };
        let algorithm = expected.as_ref().map(|d| d.algorithm()).unwrap_or(Algorithm::Sha256);
        let id = uuid::Uuid::new_v4().hyphenated().to_string();
        let handle = self.blobs.begin(&id).await?;
        let row = UploadRow {
            id: id.clone(),
            repo_id: repo,
            handle,
            offset: 0,
            hash_state: Hasher::new(algorithm).save(),
            started_at: kura_store::now_millis(),
        };
        let limits = UploadLimits {
            per_repository: self.config.max_uploads_per_repo,
            per_principal: self.config.max_uploads_per_principal,
        };
        let refused = match self.meta.upload_open(&row, principal, limits).await? {
            UploadOpen::Opened => None,
            UploadOpen::RepositoryFull(n) => Some(format!(
                "repository {name} has {n} open upload sessions, the most allowed (max-uploads-per-repo); \
                 finish or cancel some, or wait until abandoned ones expire"
            )),
            UploadOpen::PrincipalFull(n) => Some(format!(
                "{} has {n} open upload sessions, the most allowed (max-uploads-per-principal); \
                 finish or cancel some, or wait until abandoned ones expire",
                principal.unwrap_or("the caller")
            )),
        };
        if let Some(msg) = refused {
            if let Err(e) = self.blobs.abort(&row.handle).await {
                tracing::warn!(error = %e, upload = %id, "could not remove a refused upload's file");
            }
            return Err(RegistryError::LimitExceeded { message: msg });
        }
        match expected {
            Some(d) => {
                self.finish_upload(account, name, &id, d.as_str(), None, Some(body))
                    .await?;
                Ok(StartOutcome::Created(d))
            }
            None => Ok(StartOutcome::Started(UploadStatus { id, offset: 0 })),
        }
    }

    async fn upload_in_repo(&self, account: &str, name: &RepoName, id: &str) -> RegistryResult<UploadRow> {
        let repo = self
            .meta
            .repo_get(account, name.as_str())
            .await?
            .ok_or_else(|| upload_unknown(id))?
            .id;
        match self.meta.upload_get(id).await? {
            Some(u) if u.repo_id == repo => Ok(u),
            _ => Err(upload_unknown(id)),
        }
    }

    /// GET on an upload: its progress.
    pub async fn upload_status(&self, account: &str, name: &RepoName, id: &str) -> RegistryResult<UploadStatus> {
        let u = self.upload_in_repo(account, name, id).await?;
        Ok(UploadStatus {
            id: u.id,
            offset: u.offset as u64,
        })
    }

    /// DELETE on an upload: cancel it.
    pub async fn cancel_upload(&self, account: &str, name: &RepoName, id: &str) -> RegistryResult<()> {
        let u = self.upload_in_repo(account, name, id).await?;
        if self.meta.upload_delete(&u.id).await? {
            self.blobs.abort(&u.handle).await?;
        }
        Ok(())
    }

    /// Take the upload for writing, append `body` (if any) at the expected
    /// offset while hashing it, and return the claimed row, lease, new offset
    /// and hasher. The lease is still held on success.
    async fn write_chunk(
        &self,
        account: &str,
        name: &RepoName,
        id: &str,
        start: Option<u64>,
        declared_len: Option<u64>,
        body: Option<Body>,
    ) -> RegistryResult<(UploadRow, String, u64, Hasher)> {
        let repo = self
            .meta
            .repo_get(account, name.as_str())
            .await?
            .ok_or_else(|| upload_unknown(id))?
            .id;
        let lease = uuid::Uuid::new_v4().simple().to_string();
        let row = match self.meta.upload_claim(id, start.map(|s| s as i64), &lease).await? {
            Claim::Taken(row) => row,
            Claim::Unknown => return Err(upload_unknown(id)),
            Claim::Conflict(off) => {
                if self.meta.upload_get(id).await?.is_some_and(|u| u.repo_id != repo) {
                    return Err(upload_unknown(id));
                }
                return Err(range_error(
                    name,
                    id,
                    off as u64,
                    "chunk does not start at the upload's current offset",
                ));
            }
        };
        if row.repo_id != repo {
            self.meta.upload_release(id, &lease).await?;
            return Err(upload_unknown(id));
        }
        let mut hasher = match Hasher::restore(&row.hash_state) {
            Some(h) => h,
            None => {
                self.meta.upload_release(id, &lease).await?;
                return Err(StoreError::Corrupt(format!("upload {id} has an unreadable hash state")).into());
            }
        };
        let offset = row.offset as u64;
        let Some(body) = body else {
            return Ok((row, lease, offset, hasher));
        };
        let stream = body
            .map(|chunk| {
                if let Ok(b) = &chunk {
                    hasher.update(b);
                }
                chunk
            })
            .boxed();
        let result = self
            .renewing(id, &lease, self.blobs.append(&row.handle, offset, stream))
            .await;
        let (handle, new_offset) = match result {
            Ok(v) => v,
            Err(e) if e.is_disk_full() => {
                // A server condition: 503 (retried by clients), counted and
                // logged; the session ends and its partial file goes now, so
                // the space is free at once.
                kura_store::space::note_disk_full("an upload", &e);
                if let Err(e) = self.blobs.abort(&row.handle).await {
                    tracing::warn!(upload = %id, error = %e, "could not remove a failed upload's file");
                }
                if let Err(e) = self.meta.upload_delete(id).await {
                    tracing::warn!(upload = %id, error = %e, "could not end a failed upload; GC will");
                }
                return Err(RegistryError::Unavailable);
            }
            Err(e) => {
                self.meta.upload_release(id, &lease).await?;
                if is_not_found(&e) {
                    // The upload's bytes are gone (e.g. a crash after they were
                    // committed elsewhere): the session cannot continue.
                    self.meta.upload_delete(id).await?;
                    return Err(upload_unknown(id));
                }
                if let StoreError::Io(io) = &e {
                    // A client that hangs up mid-body: nothing was accepted.
                    return Err(RegistryError::invalid(
                        Invalid::BlobUpload,
                        format!("upload body was not received: {io}"),
                    ));
                }
                return Err(e.into());
            }
        };
        let received = new_offset - offset;
        if let Some(len) = declared_len {
            if len != received {
                self.meta.upload_release(id, &lease).await?;
                return Err(RegistryError::invalid(
                    Invalid::Size,
                    format!("chunk declared {len} bytes but {received} were received"),
                ));
            }
        }
        let row = UploadRow { handle, ..row };
        Ok((row, lease, new_offset, hasher))
    }

    /// Run `work` (a blob-store write under the upload's lease) while renewing
    /// the lease every third of its length: a long body keeps its upload, and
    /// the lease of a node that died mid-write lapses soon, so the client can
    /// resume through another node.
    async fn renewing<T>(&self, id: &str, lease: &str, work: impl std::future::Future<Output = T>) -> T {
        let every = std::time::Duration::from_millis((kura_store::sql::LEASE_MS / 3) as u64);
        tokio::pin!(work);
        loop {
            tokio::select! {
                out = &mut work => return out,
                _ = tokio::time::sleep(every) => {
                    match self.meta.upload_renew(id, lease).await {
                        Ok(true) => {}
                        Ok(false) => tracing::warn!(upload = id, "upload lease lost while writing"),
                        Err(e) => tracing::warn!(upload = id, error = %e, "renewing an upload lease failed"),
                    }
                }
            }
        }
    }

    /// PATCH: append a chunk (`range` from Content-Range) or a streamed body.
    pub async fn patch_upload(
        &self,
        account: &str,
        name: &RepoName,
        id: &str,
        range: Option<(u64, u64)>,
        content_length: Option<u64>,
        body: Body,
    ) -> RegistryResult<UploadStatus> {
        let declared = match (range, content_length) {
            (Some((a, b)), Some(len)) if b - a + 1 != len => {
                return Err(RegistryError::invalid(
                    Invalid::Size,
                    format!("Content-Range {a}-{b} does not match Content-Length {len}"),
                ))
            }
            (Some((a, b)), _) => Some(b - a + 1),
            (None, len) => len,
        };
        let (row, lease, new_offset, hasher) = self
            .write_chunk(account, name, id, range.map(|r| r.0), declared, Some(body))
            .await?;
        if !self
            .meta
            .upload_advance(id, &lease, &row.handle, new_offset as i64, &hasher.save())
            .await?
        {
            return Err(range_error(
                name,
                id,
                row.offset as u64,
                "the upload was taken over by another request",
            ));
        }
        Ok(UploadStatus {
            id: id.to_string(),
            offset: new_offset,
        })
    }

    /// PUT `?digest=`: append the final chunk (if any), verify, and commit.
    pub async fn finish_upload(
        &self,
        account: &str,
        name: &RepoName,
        id: &str,
        digest: &str,
        range: Option<(u64, u64)>,
        body: Option<Body>,
    ) -> RegistryResult<Digest> {
        let expected = digest_param(digest)?;
        let declared = range.map(|(a, b)| b - a + 1);
        let (row, lease, size, hasher) = self
            .write_chunk(account, name, id, range.map(|r| r.0), declared, body)
            .await?;
        let actual = if hasher.algorithm() == expected.algorithm() {
            hasher.finish()
        } else {
            // Streamed with another algorithm than the client asked for at the
            // end (rare: chunked sha512). Re-hash the stored bytes once.
            let mut h = Hasher::new(expected.algorithm());
            let mut s = match self.blobs.read_upload(&row.handle, size).await {
                Ok(s) => s,
                Err(StoreError::Unsupported(m)) => {
                    // S3 cannot read back a multipart upload: say so plainly.
                    self.meta.upload_release(id, &lease).await?;
                    return Err(RegistryError::invalid(
                        Invalid::Unsupported,
                        format!(
                            "cannot verify a {} digest of a chunked upload streamed as {} ({m}); \
                             name the digest when the upload starts, or use sha256",
                            expected.algorithm().as_str(),
                            hasher.algorithm().as_str()
                        ),
                    ));
                }
                Err(e) => {
                    self.meta.upload_release(id, &lease).await?;
                    return Err(e.into());
                }
            };
            while let Some(chunk) = s.next().await {
                match chunk {
                    Ok(b) => h.update(&b),
                    Err(e) => {
                        self.meta.upload_release(id, &lease).await?;
                        return Err(StoreError::from(e).into());
                    }
                }
            }
            h.finish()
        };
        if actual != expected {
            // Nothing is stored: the session ends and its bytes are dropped.
            self.meta.upload_delete(id).await?;
            self.blobs.abort(&row.handle).await?;
            return Err(RegistryError::DigestMismatch {
                expected: expected.to_string(),
                actual: actual.to_string(),
                size,
            });
        }
        let key = match self
            .renewing(id, &lease, self.blobs.commit(&row.handle, size, &expected))
            .await
        {
            Ok(k) => k,
            Err(e) if is_not_found(&e) => {
                // The upload's bytes are gone from the blob store: the session
                // cannot finish, and the client starts over.
                tracing::warn!(upload = %id, error = %e, "upload lost by the blob store");
                self.meta.upload_release(id, &lease).await?;
                if self.meta.upload_delete(id).await? {
                    let _ = self.blobs.abort(&row.handle).await;
                }
                return Err(upload_unknown(id));
            }
            Err(e) => {
                self.meta.upload_release(id, &lease).await?;
                return Err(e.into());
            }
        };
        let blob = BlobRow {
            digest: expected.to_string(),
            size: size as i64,
            storage_key: key.clone(),
        };
        let committed = self
            .meta
            .blob_commit(row.repo_id, &blob, Some((id, &row.handle)))
            .await?;
        // The session row is gone; drop its leftovers (and our copy, if another
        // upload of the same content won). A crash here leaves the outbox
        // entries for the next GC run.
        self.run_cleanup(&committed.cleanup).await;
        Ok(expected)
    }

    /// Perform queued blob-store deletes and mark them done; failures stay
    /// queued for GC.
    pub async fn run_cleanup(&self, pending: &[kura_store::meta::PendingDelete]) {
        for p in pending {
            let res = match p.kind.as_str() {
                "upload" => self.blobs.abort(&p.key).await,
                _ => self.blobs.delete(&p.key).await,
            };
            match res {
                Ok(()) => {
                    if let Err(e) = self.meta.pending_done(p.id).await {
                        tracing::warn!(error = %e, "could not mark a blob-store delete done");
                    }
                }
                Err(e) => tracing::warn!(key = %p.key, error = %e, "blob-store delete failed; GC will retry"),
            }
        }
    }
}

/// A 413 for a manifest body over the limit.
pub fn too_large(len: usize) -> RegistryError {
    RegistryError::ManifestTooLarge { len }
}

fn range_error(name: &RepoName, id: &str, offset: u64, why: &str) -> RegistryError {
    RegistryError::UploadOffset {
        repository: name.to_string(),
        id: id.to_string(),
        offset,
        why: why.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=50-500", 100), Some((50, 99)));
        assert!(parse_range("bytes=100-", 100).is_none());
        assert!(parse_range("bytes=5-1", 100).is_none());
        assert!(parse_range("bytes=0-1,3-4", 100).is_none());
        assert!(parse_range("items=0-1", 100).is_none());
        assert!(parse_range("bytes=0-0", 0).is_none());
    }
}
