//! Secrets Manager's store (migration 15): secrets and their versions. The SQL store
//! implements it next to [`crate::MetaStore`].
//!
//! Values arrive sealed (the store never sees a plaintext) and are bound by their sealer to
//! the secret's ARN and the version id. What must hold across nodes lives in the SQL: a name
//! is unique per account (a create is refused while the name is taken, also by a secret
//! scheduled for deletion), and every change to a secret or its versions is a compare-and-set
//! on its `revision` ([`SecretsStore::secret_commit`]), so staging labels move atomically.
//! A secret whose `purge_at` has passed is absent to every read and is removed by the next
//! write that meets it ([`SecretsStore::secrets_purge_expired`] removes them all).

use async_trait::async_trait;

use crate::error::Result;

/// One secret (its metadata; the values are [`SecretVersionRow`]s).
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct SecretRow {
    /// Owning account.
    pub account: String,
    /// The name (unique per account).
    pub name: String,
    /// The full ARN (`…:secret:<name>-<6 random characters>`).
    pub arn: String,
    /// Description.
    pub description: Option<String>,
    /// The KMS key id the client named, if any.
    pub kms_key_id: Option<String>,
    /// Tags as a JSON array of `{"Key","Value"}`.
    pub tags: String,
    /// Created (ms).
    pub created_at: i64,
    /// Last changed (ms).
    pub changed_at: i64,
    /// Last read (ms, truncated to the day), if ever.
    pub accessed_at: Option<i64>,
    /// When its deletion was asked (ms), if it is scheduled for deletion.
    pub deleted_at: Option<i64>,
    /// When it goes for good (ms), if it is scheduled for deletion.
    pub purge_at: Option<i64>,
    /// Increases with every change to the secret or its versions.
    pub revision: i64,
}

/// One version of a secret.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct SecretVersionRow {
    /// The version id (the client's request token, or a random UUID).
    pub version_id: String,
    /// `string` (a `SecretString`) or `binary` (a `SecretBinary`).
    pub kind: String,
    /// The value, sealed with the master key.
    pub sealed: Vec<u8>,
    /// Staging labels as a JSON array of strings (empty: deprecated).
    pub stages: String,
    /// Created (ms).
    pub created_at: i64,
}

/// The outcome of creating a secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretCreate {
    /// Created.
    Created,
    /// The name is taken by a live secret.
    Exists,
    /// The name is taken by a secret scheduled for deletion.
    ScheduledForDeletion,
    /// The account has the most secrets it may have.
    TooMany,
}

/// One change to a secret: its new metadata (`row.revision` is the revision it was read
/// at), and the versions to insert, relabel or remove.
#[derive(Clone, Debug)]
pub struct SecretCommit {
    /// The secret as it is to be (keyed by `row.arn`).
    pub row: SecretRow,
    /// A new version to insert.
    pub insert: Option<SecretVersionRow>,
    /// Existing versions' new labels: (version id, JSON array of labels).
    pub relabel: Vec<(String, String)>,
    /// Versions to remove.
    pub remove: Vec<String>,
}

/// The Secrets Manager tables.
#[async_trait]
pub trait SecretsStore: Send + Sync {
    /// Create a secret with its first version, if any, unless the name is taken or the
    /// account already has `max` live secrets. A secret of that name whose `purge_at` is
    /// before `row.created_at` is removed first.
    async fn secret_create(&self, row: &SecretRow, first: Option<&SecretVersionRow>, max: i64) -> Result<SecretCreate>;

    /// The secret called `name` in `account`, unless purged by `now`.
    async fn secret_by_name(&self, account: &str, name: &str, now: i64) -> Result<Option<SecretRow>>;

    /// The secret with the full ARN `arn`, unless purged by `now`.
    async fn secret_by_arn(&self, arn: &str, now: i64) -> Result<Option<SecretRow>>;

    /// Every secret of `account` not purged by `now` (also those scheduled for deletion),
    /// in name order.
    async fn secrets_of(&self, account: &str, now: i64) -> Result<Vec<SecretRow>>;

    /// The versions of the secret with ARN `arn`, oldest first.
    async fn secret_versions(&self, arn: &str) -> Result<Vec<SecretVersionRow>>;

    /// Apply `change` if the secret is still at `change.row.revision` (then its revision
    /// increases); false if it changed meanwhile or is gone.
    async fn secret_commit(&self, change: &SecretCommit) -> Result<bool>;

    /// Record a read: `accessed_at` becomes `day` (no revision change).
    async fn secret_touch(&self, arn: &str, day: i64) -> Result<()>;

    /// Remove a secret and its versions now; false if there was none.
    async fn secret_remove(&self, arn: &str) -> Result<bool>;

    /// Remove every secret whose `purge_at` is at or before `now`; how many.
    async fn secrets_purge_expired(&self, now: i64) -> Result<u64>;
}
