//! EventBridge's store: rules with their event patterns, rule targets, and the connections
//! and API destinations HTTP targets deliver through. The SQL store implements it next to
//! [`crate::MetaStore`] (migration 10).
//!
//! The rules that must hold across nodes live in the SQL: names are unique per account (a
//! create is an `INSERT … ON CONFLICT DO NOTHING`), a rule is deleted only when no target
//! remains (checked in the deleting transaction), and every change to rules or targets bumps
//! [`EventsStore::events_generation`], so a node may cache the enabled rules of an account
//! while the generation it read before loading them is still current.

use async_trait::async_trait;

use crate::error::Result;

/// One rule.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct RuleRow {
    /// Owning account.
    pub account: String,
    /// Rule name (unique per account).
    pub name: String,
    /// The event pattern's JSON text, as given.
    pub pattern: String,
    /// `ENABLED` or `DISABLED`.
    pub state: String,
    /// Description.
    pub description: Option<String>,
    /// Created (ms).
    pub created_at: i64,
    /// Last changed (ms).
    pub updated_at: i64,
}

/// One target of a rule.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct TargetRow {
    /// The target's id (unique per rule).
    pub id: String,
    /// The target's ARN (an API destination's, or a Kura webhook's).
    pub arn: String,
    /// The target as the API gave it (JSON).
    pub body: String,
}

/// A connection (`kind` = `connection`) or API destination (`api-destination`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventResourceRow {
    /// Owning account.
    pub account: String,
    /// `connection` or `api-destination`.
    pub kind: String,
    /// Name (unique per account and kind).
    pub name: String,
    /// The random part of the resource's ARN.
    pub uuid: String,
    /// The public description (JSON; never a secret).
    pub body: String,
    /// A connection's secret parts, sealed with the master key.
    pub secret: Option<Vec<u8>>,
    /// Created (ms).
    pub created_at: i64,
    /// Last changed (ms).
    pub updated_at: i64,
}

/// The outcome of deleting a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleDelete {
    /// Deleted.
    Deleted,
    /// No such rule.
    NotFound,
    /// Refused: the rule still has targets.
    HasTargets,
}

/// The outcome of adding targets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetsPut {
    /// Stored (inserted or replaced).
    Done,
    /// No such rule.
    NoRule,
    /// Refused: the rule would have more than the limit of targets.
    TooMany,
}

/// The EventBridge tables.
#[async_trait]
pub trait EventsStore: Send + Sync {
    /// Create or update a rule (the created time is kept on update). Returns the stored row.
    async fn rule_put(&self, row: &RuleRow) -> Result<RuleRow>;

    /// One rule.
    async fn rule_get(&self, account: &str, name: &str) -> Result<Option<RuleRow>>;

    /// Rules of an account whose name starts with `prefix`, in name order after `after`, at
    /// most `limit`.
    async fn rules_list(&self, account: &str, prefix: &str, after: Option<&str>, limit: i64) -> Result<Vec<RuleRow>>;

    /// Set a rule's state; false if there is no such rule.
    async fn rule_set_state(&self, account: &str, name: &str, state: &str, now: i64) -> Result<bool>;

    /// Delete a rule unless targets remain.
    async fn rule_delete(&self, account: &str, name: &str) -> Result<RuleDelete>;

    /// Add or replace targets of a rule (by id), keeping at most `max` targets on it.
    async fn targets_put(&self, account: &str, rule: &str, targets: &[TargetRow], max: i64) -> Result<TargetsPut>;

    /// Remove targets by id; returns the ids that existed. None if there is no such rule.
    async fn targets_remove(&self, account: &str, rule: &str, ids: &[String]) -> Result<Option<Vec<String>>>;

    /// A rule's targets in id order.
    async fn targets_list(&self, account: &str, rule: &str) -> Result<Vec<TargetRow>>;

    /// Every enabled rule of an account that has targets, with its targets: what delivery
    /// matches events against.
    async fn rules_enabled(&self, account: &str) -> Result<Vec<(RuleRow, Vec<TargetRow>)>>;

    /// The generation of rules and targets: it increases after every change to them.
    async fn events_generation(&self) -> Result<i64>;

    /// Create a connection or API destination; false if the name is taken.
    async fn event_resource_create(&self, row: &EventResourceRow) -> Result<bool>;

    /// One connection or API destination.
    async fn event_resource_get(&self, account: &str, kind: &str, name: &str) -> Result<Option<EventResourceRow>>;

    /// Connections or API destinations whose name starts with `prefix`, in name order after
    /// `after`, at most `limit`.
    async fn event_resources_list(
        &self,
        account: &str,
        kind: &str,
        prefix: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<EventResourceRow>>;

    /// Delete a connection or API destination; false if there was none.
    async fn event_resource_delete(&self, account: &str, kind: &str, name: &str) -> Result<bool>;
}
