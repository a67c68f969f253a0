//! Pull-through cache rules (migration 16): per account, an ECR repository
//! prefix mapped to an upstream registry. The SQL store implements it next to
//! [`crate::MetaStore`]; `kura-pullthrough` owns the rules' meaning.

use async_trait::async_trait;

use crate::error::Result;

/// One pull-through cache rule.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct PtcRuleRow {
    /// The registry (account) the rule belongs to.
    pub account: String,
    /// The ECR repository prefix (`ROOT`, or a prefix without a trailing `/`).
    pub prefix: String,
    /// The upstream registry URL as the rule was created with it.
    pub upstream_url: String,
    /// ECR's `upstreamRegistry` value, when the URL names a known one.
    pub upstream_registry: Option<String>,
    /// The Secrets Manager secret with the upstream's credentials.
    pub credential_arn: Option<String>,
    /// The IAM role ECR would assume for the upstream (kept, echoed).
    pub custom_role_arn: Option<String>,
    /// The upstream repository prefix (none: the upstream's root).
    pub upstream_prefix: Option<String>,
    /// Creation time (ms).
    pub created_at: i64,
    /// Last update (ms).
    pub updated_at: i64,
}

/// What creating a rule did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PtcCreate {
    /// Stored.
    Created,
    /// A rule with that prefix exists in the account.
    Exists,
    /// The account already holds the maximum number of rules.
    LimitExceeded,
}

/// The pull-through cache rules of every account.
#[async_trait]
pub trait PullThroughRuleStore: Send + Sync + 'static {
    /// Insert `row` unless its prefix exists or the account already has `max` rules.
    async fn ptc_rule_create(&self, row: &PtcRuleRow, max: i64) -> Result<PtcCreate>;
    /// One rule by prefix.
    async fn ptc_rule_get(&self, account: &str, prefix: &str) -> Result<Option<PtcRuleRow>>;
    /// The account's rules in prefix order, after `after`, at most `limit`.
    async fn ptc_rule_list(&self, account: &str, after: Option<&str>, limit: i64) -> Result<Vec<PtcRuleRow>>;
    /// Set a rule's credential and role (None: unchanged); the updated rule, None when absent.
    async fn ptc_rule_update(
        &self,
        account: &str,
        prefix: &str,
        credential_arn: Option<&str>,
        custom_role_arn: Option<&str>,
    ) -> Result<Option<PtcRuleRow>>;
    /// Delete a rule; the deleted rule, None when absent.
    async fn ptc_rule_delete(&self, account: &str, prefix: &str) -> Result<Option<PtcRuleRow>>;
}
