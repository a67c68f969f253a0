//! The access-control store: IAM users, groups, roles and customer managed
//! policies, their inline policies and attachments, access keys by owner,
//! and resource-based policies (ECR repository and registry policies). The
//! SQLite store implements it next to [`crate::MetaStore`].
//!
//! IAM entities share one table shape ([`IamEntity`]): the columns every kind
//! has, and a JSON `body` with what only one kind has (a role's trust policy,
//! a managed policy's versions). Names are unique per account and kind,
//! compared case-insensitively, as IAM compares them. Relations (group
//! membership, policy attachments) are rows of one link table, so deleting an
//! entity can be refused while links remain (IAM's `DeleteConflict`).

use async_trait::async_trait;

use crate::error::Result;

/// The kinds of IAM entity.
pub mod kind {
    /// An IAM user.
    pub const USER: &str = "user";
    /// An IAM group.
    pub const GROUP: &str = "group";
    /// An IAM role.
    pub const ROLE: &str = "role";
    /// A customer managed policy.
    pub const POLICY: &str = "policy";
}

/// The kinds of link between entities.
pub mod rel {
    /// A managed policy attached to a user, group or role: from = the
    /// holder, to = the policy ARN.
    pub const ATTACHED: &str = "attached";
    /// A user in a group: from = the user (kind `user`), to = the group name.
    pub const MEMBER: &str = "member";
}

/// One IAM user, group, role or managed policy.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct IamEntity {
    /// Owning account.
    pub account: String,
    /// [`kind`]: `user`, `group`, `role` or `policy`.
    pub kind: String,
    /// The name, as given (unique per account and kind, case-insensitively).
    pub name: String,
    /// The stable unique id (`AIDA…`, `AGPA…`, `AROA…`, `ANPA…`).
    pub id: String,
    /// The IAM path (`/` by default).
    pub path: String,
    /// The ARN.
    pub arn: String,
    /// Kind-specific fields as JSON (e.g. a role's trust policy, a managed
    /// policy's versions, tags).
    pub body: String,
    /// Created (ms).
    pub created_at: i64,
}

/// An access key as its owner lists it.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct AccessKeyInfo {
    /// The key id.
    pub access_key_id: String,
    /// `Active` or `Inactive`.
    pub status: String,
    /// Created (ms).
    pub created_at: i64,
}

/// A resource-based policy (repository or registry policy) as stored.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct ResourcePolicyRow {
    /// The resource's ARN.
    pub arn: String,
    /// The policy text exactly as put.
    pub policy: String,
    /// Last put (ms).
    pub updated_at: i64,
}

/// Users, groups, roles, managed policies, links, keys, resource policies.
#[async_trait]
pub trait IamStore: Send + Sync + 'static {
    /// Create an entity; false if one of that kind and name (any case)
    /// exists in the account.
    async fn iam_entity_create(&self, e: &IamEntity) -> Result<bool>;
    /// One entity by kind and name (any case).
    async fn iam_entity_get(&self, account: &str, kind: &str, name: &str) -> Result<Option<IamEntity>>;
    /// One entity of `account` by its unique id (`AIDA…`, `AROA…`, …): how a
    /// principal is found from the access key it authenticated with.
    async fn iam_entity_by_id(&self, account: &str, id: &str) -> Result<Option<IamEntity>>;
    /// Replace an entity's body if it is still `expected` (compare and swap);
    /// false if the entity is gone or its body changed.
    async fn iam_entity_update(
        &self,
        account: &str,
        kind: &str,
        name: &str,
        expected: &str,
        body: &str,
    ) -> Result<bool>;
    /// Entities of a kind whose name sorts after `after` (case-insensitive
    /// order), at most `limit`.
    async fn iam_entity_list(
        &self,
        account: &str,
        kind: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<IamEntity>>;
    /// Delete an entity with its inline policies; false if missing. The
    /// caller checks links and keys first (`DeleteConflict`).
    async fn iam_entity_delete(&self, account: &str, kind: &str, name: &str) -> Result<bool>;

    /// Create or replace an inline policy of a user, group or role.
    async fn iam_inline_put(&self, account: &str, kind: &str, owner: &str, policy: &str, document: &str) -> Result<()>;
    /// One inline policy's document.
    async fn iam_inline_get(&self, account: &str, kind: &str, owner: &str, policy: &str) -> Result<Option<String>>;
    /// Every inline policy of an owner, `(name, document)` by name.
    async fn iam_inline_list(&self, account: &str, kind: &str, owner: &str) -> Result<Vec<(String, String)>>;
    /// Delete an inline policy; false if missing.
    async fn iam_inline_delete(&self, account: &str, kind: &str, owner: &str, policy: &str) -> Result<bool>;

    /// Add a link; false if it exists.
    async fn iam_link_add(&self, account: &str, rel: &str, from_kind: &str, from: &str, to: &str) -> Result<bool>;
    /// Remove a link; false if missing.
    async fn iam_link_remove(&self, account: &str, rel: &str, from_kind: &str, from: &str, to: &str) -> Result<bool>;
    /// The targets of `from`'s links of a relation, sorted.
    async fn iam_links_from(&self, account: &str, rel: &str, from_kind: &str, from: &str) -> Result<Vec<String>>;
    /// The `(from_kind, from)` holders of links of a relation to `to`, sorted.
    async fn iam_links_to(&self, account: &str, rel: &str, to: &str) -> Result<Vec<(String, String)>>;

    /// Long-term access keys of a principal, by its unique id (see
    /// [`crate::control::AccessKeyRow::principal_id`]), oldest first.
    async fn access_keys_of(&self, principal_id: &str) -> Result<Vec<AccessKeyInfo>>;
    /// Delete the temporary credentials of every session of the role with
    /// unique id `role_id` (keys whose `principal_id` is `<role_id>:…`); how
    /// many.
    async fn access_keys_delete_sessions(&self, role_id: &str) -> Result<u64>;
    /// Set a key's status (`Active`/`Inactive`); false if missing.
    async fn access_key_set_status(&self, access_key_id: &str, status: &str) -> Result<bool>;
    /// Delete a key; false if missing.
    async fn access_key_delete(&self, access_key_id: &str) -> Result<bool>;
    /// Forget temporary credentials that expired before `before` (ms); how many.
    async fn access_keys_purge_expired(&self, before: i64) -> Result<u64>;

    /// The generation of access-control data: it increases after every
    /// change to entities, inline policies, links, resource policies and
    /// resource tags. Read it *before* loading what it covers; cached inputs
    /// are current while it is unchanged.
    async fn iam_generation(&self) -> Result<i64>;

    /// Create or replace a resource policy.
    async fn resource_policy_put(&self, arn: &str, policy: &str) -> Result<()>;
    /// A resource policy.
    async fn resource_policy_get(&self, arn: &str) -> Result<Option<ResourcePolicyRow>>;
    /// Delete a resource policy; the deleted row.
    async fn resource_policy_delete(&self, arn: &str) -> Result<Option<ResourcePolicyRow>>;
}
