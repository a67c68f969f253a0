//! The control-plane store: accounts, access keys, deployment secrets,
//! resource tags, repository creation templates, account settings and the
//! marks that publish repositories through ECR Public. The SQLite store
//! implements it next to [`crate::MetaStore`].

use async_trait::async_trait;

use crate::error::Result;

/// An access key: who it belongs to and its sealed secret.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct AccessKeyRow {
    /// The public id (`AKIA…` / `ASIA…`).
    pub access_key_id: String,
    /// Owning account.
    pub account: String,
    /// The ARN of the principal it authenticates (root, user or assumed
    /// role), as it was when the key was issued: for display and messages.
    /// Never parsed to find the principal; that is `principal_id`.
    pub principal_arn: String,
    /// The unique id of the principal it authenticates, its `aws:userid`:
    /// the account id for the account root, the user's id (`AIDA…`) for an
    /// IAM user, `<role id>:<session name>` (`AROA…:name`) for a role
    /// session. A deleted and re-created user or role has a new id, so the
    /// key no longer resolves. Empty for a key whose owner was not found
    /// when the id was introduced (schema 6): it authenticates nobody.
    pub principal_id: String,
    /// The secret, sealed with the master key.
    pub secret_sealed: Vec<u8>,
    /// `Active` or `Inactive`.
    pub status: String,
    /// For temporary credentials: a hash of the session token.
    pub session_token_hash: Option<String>,
    /// For temporary credentials: expiry (ms).
    pub expires_at: Option<i64>,
    /// When the key was issued (ms); for temporary credentials, the
    /// session's `aws:TokenIssueTime`.
    pub created_at: i64,
}

/// A repository creation template, kept as the API's JSON.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct TemplateRow {
    /// The prefix (or `ROOT`).
    pub prefix: String,
    /// The template's fields as JSON (API shape, without timestamps).
    pub body: String,
    /// Created (ms).
    pub created_at: i64,
    /// Updated (ms).
    pub updated_at: i64,
}

/// The mark that makes a repository public (ECR Public), with its catalog
/// data. The repository itself is an ordinary [`crate::meta::RepoRow`].
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct PublicRepoRow {
    /// The repository's row id.
    pub repo_id: i64,
    /// Owning account (registry).
    pub account: String,
    /// Repository name.
    pub name: String,
    /// The catalog data as JSON (the API's `RepositoryCatalogData` fields).
    pub catalog_data: String,
    /// When the repository was made public (ms).
    pub created_at: i64,
    /// When the catalog data last changed (ms).
    pub updated_at: i64,
}

/// Accounts, keys, secrets, tags, templates, settings, public marks.
#[async_trait]
pub trait ControlStore: Send + Sync + 'static {
    /// Create the account if missing.
    async fn account_ensure(&self, account: &str) -> Result<()>;
    /// Whether the account exists in this deployment.
    async fn account_exists(&self, account: &str) -> Result<bool>;
    /// Insert an access key (no-op if the id exists).
    async fn access_key_put(&self, key: &AccessKeyRow) -> Result<()>;
    /// Look up an access key.
    async fn access_key_get(&self, access_key_id: &str) -> Result<Option<AccessKeyRow>>;
    /// The named secret, if stored.
    async fn server_secret_get(&self, name: &str) -> Result<Option<Vec<u8>>>;
    /// Return the named secret, storing `value` first if there is none.
    async fn server_secret_get_or_put(&self, name: &str, value: &[u8]) -> Result<Vec<u8>>;

    /// Tags of a resource, by key.
    async fn resource_tags(&self, arn: &str) -> Result<Vec<(String, String)>>;
    /// Add or overwrite tags.
    async fn resource_tags_put(&self, arn: &str, tags: &[(String, String)]) -> Result<()>;
    /// Remove tags by key.
    async fn resource_tags_remove(&self, arn: &str, keys: &[String]) -> Result<()>;

    /// Create (`create`) or update a template; false if it exists (create) or
    /// is missing (update).
    async fn template_put(&self, account: &str, prefix: &str, body: &str, create: bool) -> Result<bool>;
    /// One template.
    async fn template_get(&self, account: &str, prefix: &str) -> Result<Option<TemplateRow>>;
    /// Templates after `after`, by prefix.
    async fn template_list(&self, account: &str, after: Option<&str>, limit: i64) -> Result<Vec<TemplateRow>>;
    /// Delete a template; the deleted row.
    async fn template_delete(&self, account: &str, prefix: &str) -> Result<Option<TemplateRow>>;

    /// An account setting.
    async fn setting_get(&self, account: &str, name: &str) -> Result<Option<String>>;
    /// Set an account setting.
    async fn setting_put(&self, account: &str, name: &str, value: &str) -> Result<()>;

    /// Mark a repository public, or replace its catalog data if it is
    /// already; false if the repository does not exist.
    async fn public_repo_put(&self, repo_id: i64, catalog_data: &str) -> Result<bool>;
    /// The public mark of a repository, if it is public.
    async fn public_repo_get(&self, account: &str, name: &str) -> Result<Option<PublicRepoRow>>;
    /// The public repositories of an account after `after`, by name.
    async fn public_repo_list(&self, account: &str, after: Option<&str>, limit: i64) -> Result<Vec<PublicRepoRow>>;
    /// Remove a repository's public mark (deleting the repository removes it
    /// too); false if there was none.
    async fn public_repo_remove(&self, repo_id: i64) -> Result<bool>;
}
