//! The metadata store interface: the source of truth for everything a request
//! decides. [`crate::sqlite::SqliteMetaStore`] implements it; the SQL is kept to
//! the dialect SQLite and PostgreSQL share (ON CONFLICT upserts, keyset
//! paging, `$N` placeholders) so a PostgreSQL implementation can reuse it.
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadRow {
    /// The id in the upload URL.
    pub id: String,
    /// The repository it uploads to.
    pub repo_id: RepoId,
    /// The blob store's serialisable handle.
    pub handle: String,
    /// Bytes accepted so far.
    pub offset: i64,
    /// Saved hasher state after `offset` bytes.
    pub hash_state: Vec<u8>,
    /// Start time (ms since epoch).
    pub started_at: i64,
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

/// Why a manifest could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum PutManifestError {
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
    /// Deleted (with its tags).
    Deleted,
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

/// The metadata store. All methods are short transactions; none moves blob bytes.
#[async_trait]
pub trait MetaStore: Send + Sync + 'static {
    /// Find a repository.
    async fn repo_get(&self, account: &str, name: &str) -> Result<Option<RepoId>>;
    /// Find or create a repository.
    async fn repo_get_or_create(&self, account: &str, name: &str) -> Result<RepoId>;
    /// Repository names of an account after `after`, in byte order.
    async fn repo_list(
        &self,
        account: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<String>>;

    /// A blob, if the repository may read it.
    async fn blob_get(&self, repo: RepoId, digest: &str) -> Result<Option<BlobRow>>;
    /// A blob anywhere in the deployment (content is shared).
    async fn blob_lookup(&self, digest: &str) -> Result<Option<BlobRow>>;
    /// Record a finished upload: upsert the blob (the first writer's storage
    /// key wins: returns it, so the caller can drop a duplicate copy), grant
    /// the repository access, and delete the upload row, in one transaction.
    async fn blob_commit(
        &self,
        repo: RepoId,
        blob: &BlobRow,
        upload_id: Option<&str>,
    ) -> Result<String>;
    /// Cross-repository mount: let `to` read a blob `from` can read. False if
    /// `from` cannot read it.
    async fn blob_mount(&self, to: RepoId, from: RepoId, digest: &str) -> Result<bool>;
    /// Remove a repository's access to a blob. False if it had none.
    async fn blob_unlink(&self, repo: RepoId, digest: &str) -> Result<bool>;

    /// Create an upload session.
    async fn upload_create(&self, upload: &UploadRow) -> Result<()>;
    /// Read an upload session.
    async fn upload_get(&self, id: &str) -> Result<Option<UploadRow>>;
    /// Take an upload for writing if its offset is `expected` (any offset when
    /// `None`) and nobody else holds it. `lease` is a fresh token.
    async fn upload_claim(&self, id: &str, expected: Option<i64>, lease: &str) -> Result<Claim>;
    /// Record bytes written under a lease and release it. False if the lease was lost.
    async fn upload_advance(
        &self,
        id: &str,
        lease: &str,
        handle: &str,
        offset: i64,
        hash_state: &[u8],
    ) -> Result<bool>;
    /// Release a lease without moving the offset.
    async fn upload_release(&self, id: &str, lease: &str) -> Result<()>;
    /// Delete an upload session. False if unknown.
    async fn upload_delete(&self, id: &str) -> Result<bool>;

    /// Store a manifest and point `tags` at it, checking references first.
    async fn manifest_put(
        &self,
        repo: RepoId,
        manifest: &NewManifest,
        tags: &[String],
    ) -> Result<(), PutManifestError>;
    /// Read a manifest by tag or digest.
    async fn manifest_get(&self, repo: RepoId, key: ManifestKey<'_>)
        -> Result<Option<ManifestRow>>;
    /// Delete a manifest and every tag pointing at it.
    async fn manifest_delete(&self, repo: RepoId, digest: &str) -> Result<DeleteManifest>;
    /// Remove a tag, keeping the manifest. False if the tag was unknown.
    async fn tag_delete(&self, repo: RepoId, tag: &str) -> Result<bool>;
    /// Tags of a repository after `after`, in byte order.
    async fn tag_list(&self, repo: RepoId, after: Option<&str>, limit: i64) -> Result<Vec<String>>;
    /// Manifests whose subject is `subject`, optionally of one artifact type.
    async fn referrers(
        &self,
        repo: RepoId,
        subject: &str,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>>;
}
