//! The metadata store interface: the source of truth for everything a request
//! decides. [`crate::sql::SqlMetaStore`] implements it on SQLite and on
//! PostgreSQL with one SQL text (ON CONFLICT upserts, keyset paging, `$N`
//! placeholders).
//!
//! Invariants the implementations keep:
//! * a manifest row is inserted in the same transaction that checks every
//!   blob and child manifest it references is readable by its repository;
//! * `manifest_blobs` rows reference `blobs` by foreign key, so a blob that a
//!   committed manifest uses cannot be deleted from the metadata;
//! * an upload's offset only moves by a conditional update on the previous
//!   offset, under a lease, so concurrent or out-of-order chunks cannot
//!   interleave (the OCI 416 rule), even across nodes.

use async_trait::async_trait;

use crate::error::Result;

/// A repository's row id.
pub type RepoId = i64;

/// A repository and its settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoRow {
    /// Row id.
    pub id: RepoId,
    /// Owning account (registry).
    pub account: String,
    /// Repository name.
    pub name: String,
    /// Creation time (ms since epoch).
    pub created_at: i64,
    /// Settings.
    pub settings: RepoSettings,
}

/// Per-repository settings, stored as JSON so later issues can add fields.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RepoSettings {
    /// MUTABLE, IMMUTABLE, IMMUTABLE_WITH_EXCLUSION or MUTABLE_WITH_EXCLUSION.
    #[serde(default = "default_mutability")]
    pub image_tag_mutability: String,
    /// Wildcard tag filters that are exceptions to the mutability setting.
    #[serde(default)]
    pub mutability_exclusion_filters: Vec<String>,
    /// Scan images when they are pushed.
    #[serde(default)]
    pub scan_on_push: bool,
    /// AES256, KMS or KMS_DSSE.
    #[serde(default = "default_encryption")]
    pub encryption_type: String,
    /// KMS key, when encryption_type is KMS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key: Option<String>,
}

fn default_mutability() -> String {
    "MUTABLE".into()
}

fn default_encryption() -> String {
    "AES256".into()
}

impl Default for RepoSettings {
    fn default() -> Self {
        RepoSettings {
            image_tag_mutability: default_mutability(),
            mutability_exclusion_filters: Vec::new(),
            scan_on_push: false,
            encryption_type: default_encryption(),
            kms_key: None,
        }
    }
}

/// Match a tag against an ECR wildcard filter (`*` matches any run of characters).
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0usize, 0usize, None::<usize>, 0usize);
    while ti < t.len() {
        if pi < p.len() && p[pi] != '*' && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

impl RepoSettings {
    /// Whether pushing `tag` may not move it once it exists.
    pub fn tag_is_immutable(&self, tag: &str) -> bool {
        let excluded = self.mutability_exclusion_filters.iter().any(|f| wildcard_match(f, tag));
        match self.image_tag_mutability.as_str() {
            "IMMUTABLE" => true,
            "IMMUTABLE_WITH_EXCLUSION" => !excluded,
            "MUTABLE_WITH_EXCLUSION" => excluded,
            _ => false,
        }
    }
}

/// A tag to point at a manifest, and whether it may be moved if it exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagWrite {
    /// Tag name.
    pub name: String,
    /// Refuse to move it from another digest.
    pub immutable: bool,
}

/// An image (a manifest) as the ECR API describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRow {
    /// Manifest digest.
    pub digest: String,
    /// Tags pointing at it, in byte order.
    pub tags: Vec<String>,
    /// Manifest media type.
    pub media_type: String,
    /// Artifact (config) media type.
    pub artifact_type: Option<String>,
    /// Subject digest, for referrers.
    pub subject: Option<String>,
    /// Size: the sum of the referenced blobs (for an index, the largest child's, as ECR reports it).
    pub size: i64,
    /// Push time (ms).
    pub pushed_at: i64,
    /// Last pull time (ms), if ever pulled.
    pub last_pulled_at: Option<i64>,
    /// Its storage status (schema 14).
    pub status: ImageStatus,
    /// When it last moved to the archive (ms).
    pub archived_at: Option<i64>,
    /// When a restore from the archive last finished (ms).
    pub activated_at: Option<i64>,
}

/// An image's storage status (ECR's `ImageStatus`): in the standard storage
/// class and pullable, archived, or being restored from the archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ImageStatus {
    /// Standard storage: pullable.
    Active,
    /// The archive storage class: listed, kept, not pullable.
    Archived,
    /// A restore job is bringing it back to standard storage.
    Activating,
}

impl ImageStatus {
    /// ECR's (and the column's) spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ImageStatus::Active => "ACTIVE",
            ImageStatus::Archived => "ARCHIVED",
            ImageStatus::Activating => "ACTIVATING",
        }
    }

    /// The status of ECR's (and the column's) spelling.
    pub fn parse(s: &str) -> Option<ImageStatus> {
        match s {
            "ACTIVE" => Some(ImageStatus::Active),
            "ARCHIVED" => Some(ImageStatus::Archived),
            "ACTIVATING" => Some(ImageStatus::Activating),
            _ => None,
        }
    }

    /// Whether the image's bytes are in the archive storage class (archived,
    /// or archived and being restored): what storage is metered as.
    pub fn in_archive(self) -> bool {
        self != ImageStatus::Active
    }
}

/// Bytes of an account's images by storage class (the metering query).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StorageUsage {
    /// Images in standard storage.
    pub standard_images: i64,
    /// Their bytes: the sum of each image's referenced blobs.
    pub standard_bytes: i64,
    /// Images in the archive (ARCHIVED or ACTIVATING).
    pub archive_images: i64,
    /// Their bytes, counted the same way.
    pub archive_bytes: i64,
}

/// Which images a listing wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TagStatus {
    /// Only images with a tag.
    Tagged,
    /// Only images without a tag.
    Untagged,
    /// All.
    Any,
}

/// The outcome of deleting a repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeleteRepo {
    /// Deleted.
    Deleted,
    /// It holds images and `force` was not given.
    NotEmpty,
}

/// A blob's metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobRow {
    /// `algorithm:hex`.
    pub digest: String,
    /// Size in bytes.
    pub size: i64,
    /// Where the blob store keeps it.
    pub storage_key: String,
}

/// An upload session.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct UploadRow {
    /// The id in the upload URL.
    pub id: String,
    /// The repository it uploads to.
    pub repo_id: RepoId,
    /// The blob store's serialisable handle.
    pub handle: String,
    /// Bytes accepted so far.
    #[sqlx(rename = "received")]
    pub offset: i64,
    /// Saved hasher state after `offset` bytes.
    pub hash_state: Vec<u8>,
    /// Start time (ms since epoch).
    pub started_at: i64,
}

/// Caps on open upload sessions (0: no cap).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UploadLimits {
    /// Open sessions per repository.
    pub per_repository: u64,
    /// Open sessions per principal.
    pub per_principal: u64,
}

/// The result of opening an upload session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UploadOpen {
    /// The session exists.
    Opened,
    /// The repository has this many open sessions, the cap: nothing written.
    RepositoryFull(i64),
    /// The principal has this many open sessions, the cap: nothing written.
    PrincipalFull(i64),
}

/// The result of trying to take an upload for writing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Taken: write, then [`MetaStore::upload_advance`] or [`MetaStore::upload_release`].
    Taken(UploadRow),
    /// No such upload.
    Unknown,
    /// The upload exists but its offset is not the expected one, or another
    /// request is writing it. Carries the current offset.
    Conflict(i64),
}

/// A blob-store delete queued in the outbox.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct PendingDelete {
    /// Outbox row id.
    pub id: i64,
    /// `blob` (a storage key) or `upload` (an upload handle).
    pub kind: String,
    /// The key or handle.
    pub key: String,
}

/// The outcome of [`MetaStore::blob_commit`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobCommitted {
    /// The storage key that now serves the digest.
    pub key: String,
    /// Blob-store deletes to perform now (then mark done).
    pub cleanup: Vec<PendingDelete>,
}

/// A manifest to store.
#[derive(Clone, Debug)]
pub struct NewManifest {
    /// Its digest.
    pub digest: String,
    /// The media type it is served with.
    pub media_type: String,
    /// Artifact type for the referrers API.
    pub artifact_type: Option<String>,
    /// Subject digest (referrers API).
    pub subject: Option<String>,
    /// Annotations as JSON text, for the referrers API.
    pub annotations: Option<String>,
    /// The exact bytes.
    pub body: Vec<u8>,
    /// Referenced blob digests.
    pub blobs: Vec<String>,
    /// Referenced child manifest digests.
    pub children: Vec<String>,
}

/// A stored manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestRow {
    /// Its digest.
    pub digest: String,
    /// Media type.
    pub media_type: String,
    /// The exact bytes.
    pub body: Vec<u8>,
    /// Its storage status (only [`ImageStatus::Active`] may be pulled).
    pub status: ImageStatus,
}

/// A referrer of a manifest (an entry of the referrers index).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Referrer {
    /// Digest of the referring manifest.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// Its artifact type.
    pub artifact_type: Option<String>,
    /// Its size.
    pub size: i64,
    /// Its annotations as JSON text.
    pub annotations: Option<String>,
}

/// A tag a manifest put added or moved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagMoved {
    /// The tag.
    pub tag: String,
    /// The digest it pointed at before (`None`: the tag is new).
    pub old_digest: Option<String>,
}

/// Why a manifest could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum PutManifestError {
    /// An immutable tag already points at another manifest.
    #[error("tag {0} is immutable")]
    TagImmutable(String),
    /// Referenced blobs or manifests are not readable by the repository.
    #[error("manifest references unknown content")]
    MissingReferences {
        /// Blob digests missing.
        blobs: Vec<String>,
        /// Child manifest digests missing.
        manifests: Vec<String>,
    },
    /// Storage failure.
    #[error(transparent)]
    Store(#[from] crate::error::StoreError),
}

/// Why a manifest could not be deleted.
#[derive(Debug, PartialEq, Eq)]
pub enum DeleteManifest {
    /// Deleted, with the tags that pointed at it (in byte order).
    Deleted(Vec<String>),
    /// Not in the repository.
    Unknown,
    /// An index in the repository still lists it; carries the parents.
    ReferencedBy(Vec<String>),
}

/// Where a manifest GET points.
#[derive(Clone, Copy, Debug)]
pub enum ManifestKey<'a> {
    /// By tag.
    Tag(&'a str),
    /// By digest.
    Digest(&'a str),
}

/// The outcome of [`MetaStore::fetch_lease_take`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseTake {
    /// The caller holds the lease now.
    Taken,
    /// Another holder has it until `expires_at` (ms).
    Held {
        /// Who holds it.
        holder: String,
        /// When it lapses unless renewed.
        expires_at: i64,
    },
}

/// The metadata store. All methods are short transactions; none moves blob bytes.
#[async_trait]
pub trait MetaStore: Send + Sync + 'static {
    /// Find a repository.
    async fn repo_get(&self, account: &str, name: &str) -> Result<Option<RepoRow>>;
    /// Create a repository; `None` if it already exists.
    async fn repo_create(&self, account: &str, name: &str, settings: &RepoSettings) -> Result<Option<RepoRow>>;
    /// A repository by row id.
    async fn repo_by_id(&self, repo: RepoId) -> Result<Option<RepoRow>>;
    /// Find or create a repository (with default settings).
    async fn repo_get_or_create(&self, account: &str, name: &str) -> Result<RepoId>;
    /// Repository names of an account after `after`, in byte order.
    async fn repo_list(&self, account: &str, after: Option<&str>, limit: i64) -> Result<Vec<String>>;
    /// Repositories of an account after `after`, in byte order.
    async fn repo_list_rows(&self, account: &str, after: Option<&str>, limit: i64) -> Result<Vec<RepoRow>>;
    /// Replace a repository's settings.
    async fn repo_update_settings(&self, repo: RepoId, settings: &RepoSettings) -> Result<()>;
    /// Delete a repository; with `force`, also its images.
    async fn repo_delete(&self, repo: RepoId, force: bool) -> Result<DeleteRepo>;

    /// A blob, if the repository may read it.
    async fn blob_get(&self, repo: RepoId, digest: &str) -> Result<Option<BlobRow>>;
    /// A blob anywhere in the deployment (content is shared).
    async fn blob_lookup(&self, digest: &str) -> Result<Option<BlobRow>>;
    /// Record a finished upload: upsert the blob (the first writer's storage
    /// key wins), grant the repository access, delete the upload row (`upload`
    /// is its id and blob-store handle), and queue the blob-store cleanups
    /// (the upload's leftovers, a losing duplicate copy) in the outbox, all in
    /// one transaction. The caller performs the cleanups and marks them done.
    async fn blob_commit(&self, repo: RepoId, blob: &BlobRow, upload: Option<(&str, &str)>) -> Result<BlobCommitted>;
    /// Mark a queued blob-store delete done.
    async fn pending_done(&self, id: i64) -> Result<()>;
    /// Note that a client saw the blob in the repository (a HEAD): GC leaves
    /// the link alone for its grace period after this.
    async fn blob_touch(&self, repo: RepoId, digest: &str, now: i64) -> Result<()>;
    /// Cross-repository mount: let `to` read a blob `from` can read. False if
    /// `from` cannot read it.
    async fn blob_mount(&self, to: RepoId, from: RepoId, digest: &str) -> Result<bool>;
    /// Remove a repository's access to a blob. False if it had none.
    async fn blob_unlink(&self, repo: RepoId, digest: &str) -> Result<bool>;

    /// Create an upload session (no caps, no recorded principal).
    async fn upload_create(&self, upload: &UploadRow) -> Result<()> {
        self.upload_open(upload, None, UploadLimits::default())
            .await
            .map(|_| ())
    }
    /// Create an upload session opened by `principal` unless the repository
    /// or the principal already has as many open sessions as `limits` allow.
    async fn upload_open(
        &self,
        upload: &UploadRow,
        principal: Option<&str>,
        limits: UploadLimits,
    ) -> Result<UploadOpen>;
    /// Read an upload session.
    async fn upload_get(&self, id: &str) -> Result<Option<UploadRow>>;
    /// Take an upload for writing if its offset is `expected` (any offset when
    /// `None`) and nobody else holds it. `lease` is a fresh token.
    async fn upload_claim(&self, id: &str, expected: Option<i64>, lease: &str) -> Result<Claim>;
    /// Record bytes written under a lease and release it. False if the lease was lost.
    async fn upload_advance(&self, id: &str, lease: &str, handle: &str, offset: i64, hash_state: &[u8])
        -> Result<bool>;
    /// Release a lease without moving the offset.
    async fn upload_release(&self, id: &str, lease: &str) -> Result<()>;
    /// Extend a held lease (the writer calls this while it streams). False if
    /// the lease was lost.
    async fn upload_renew(&self, id: &str, lease: &str) -> Result<bool>;
    /// Delete an upload session. False if unknown.
    async fn upload_delete(&self, id: &str) -> Result<bool>;

    /// Store a manifest and point `tags` at it, checking references first.
    /// An immutable tag that exists on another digest fails the whole put.
    /// Returns the tags this put added or moved, each with the digest it
    /// pointed at before (read in the same transaction).
    async fn manifest_put(
        &self,
        repo: RepoId,
        manifest: &NewManifest,
        tags: &[TagWrite],
    ) -> Result<Vec<TagMoved>, PutManifestError>;
    /// Record a pull of a manifest (at most about once a minute per image).
    async fn manifest_touch_pull(&self, repo: RepoId, digest: &str, now: i64) -> Result<()>;
    /// Images of a repository (every storage status), by digest after `after`.
    async fn image_list(
        &self,
        repo: RepoId,
        status: TagStatus,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ImageRow>> {
        self.image_list_in(repo, status, None, after, limit).await
    }
    /// Images of a repository with one storage status (`None`: any), by digest after `after`.
    async fn image_list_in(
        &self,
        repo: RepoId,
        status: TagStatus,
        image_status: Option<ImageStatus>,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ImageRow>>;
    /// Move an image, and the manifests an index lists, from one of `from` to
    /// `to`: `archived_at` is set when `to` is ARCHIVED, `activated_at` when
    /// it is ACTIVE. Returns the digests that moved (empty: the image was not
    /// in any of `from`, or is gone). One statement, so two callers racing
    /// cannot both move the same image.
    async fn image_set_status(
        &self,
        repo: RepoId,
        digest: &str,
        from: &[ImageStatus],
        to: ImageStatus,
        now: i64,
    ) -> Result<Vec<String>>;
    /// Bytes and images of an account by storage class (all accounts: `None`).
    async fn storage_usage(&self, account: Option<&str>) -> Result<StorageUsage>;
    /// One image by digest.
    async fn image_get(&self, repo: RepoId, digest: &str) -> Result<Option<ImageRow>>;
    /// Digests of the manifests that some index in the repository lists.
    async fn manifest_children_of_repo(&self, repo: RepoId) -> Result<Vec<String>>;
    /// The digest a tag points at.
    async fn tag_get(&self, repo: RepoId, tag: &str) -> Result<Option<String>>;
    /// Read a manifest by tag or digest.
    async fn manifest_get(&self, repo: RepoId, key: ManifestKey<'_>) -> Result<Option<ManifestRow>>;
    /// Delete a manifest and every tag pointing at it.
    async fn manifest_delete(&self, repo: RepoId, digest: &str) -> Result<DeleteManifest>;
    /// Remove a tag, keeping the manifest: the digest it pointed at, or
    /// `None` if the tag was unknown.
    async fn tag_delete(&self, repo: RepoId, tag: &str) -> Result<Option<String>>;
    /// Tags of a repository after `after`, in byte order.
    async fn tag_list(&self, repo: RepoId, after: Option<&str>, limit: i64) -> Result<Vec<String>>;
    /// Manifests whose subject is `subject`, optionally of one artifact type.
    async fn referrers(&self, repo: RepoId, subject: &str, artifact_type: Option<&str>) -> Result<Vec<Referrer>>;

    /// Store a manifest a pull-through cache fetched from its upstream: as
    /// [`MetaStore::manifest_put`], but the blobs and child manifests it
    /// references need not be stored yet (they are fetched when pulled; the
    /// references are recorded then, by [`MetaStore::manifest_settle_cached`]).
    /// Default: the checked put.
    async fn manifest_put_cached(
        &self,
        repo: RepoId,
        m: &NewManifest,
        tags: &[TagWrite],
    ) -> Result<Vec<TagMoved>, PutManifestError> {
        self.manifest_put(repo, m, tags).await
    }

    /// Content `digest` (a blob, or a child manifest) is now stored in
    /// `repo`: record the references to it of manifests stored there by
    /// [`MetaStore::manifest_put_cached`] before it was. Default: nothing
    /// (the default cached put records every reference at once).
    async fn manifest_settle_cached(&self, _repo: RepoId, _digest: &str) -> Result<()> {
        Ok(())
    }

    /// Take the fetch lease `key` for `holder` for `ttl_ms`, unless another
    /// holder has an unexpired one (the pull-through cache's cluster-wide
    /// single flight). Taking a lease one already holds extends it. Default
    /// (one node): always taken.
    async fn fetch_lease_take(&self, _key: &str, _holder: &str, _ttl_ms: i64) -> Result<LeaseTake> {
        Ok(LeaseTake::Taken)
    }

    /// Extend `holder`'s lease `key` to `ttl_ms` from now; false if it is
    /// no longer theirs.
    async fn fetch_lease_renew(&self, _key: &str, _holder: &str, _ttl_ms: i64) -> Result<bool> {
        Ok(true)
    }

    /// Drop `holder`'s lease `key` (no error when it is not theirs).
    async fn fetch_lease_release(&self, _key: &str, _holder: &str) -> Result<()> {
        Ok(())
    }

    /// The holder of lease `key` and when it lapses, if anyone holds it now.
    async fn fetch_lease_get(&self, _key: &str) -> Result<Option<(String, i64)>> {
        Ok(None)
    }
}
