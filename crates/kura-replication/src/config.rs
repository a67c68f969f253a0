//! ECR's replication configuration: its JSON shape, ECR's validation, and
//! which destinations a repository's pushes go to.

use std::collections::BTreeSet;

use kura_store::{ControlStore, StoreError};
use serde::{Deserialize, Serialize};

/// The control-store setting (per account) that holds the configuration JSON.
pub const SETTING: &str = "replication-configuration";

/// At most this many rules (ECR's quota).
pub const MAX_RULES: usize = 10;
/// At most this many unique destinations across all rules (ECR's quota).
pub const MAX_DESTINATIONS: usize = 25;
/// At most this many filters per rule.
pub const MAX_FILTERS: usize = 100;

/// A registry's replication configuration (`PutReplicationConfiguration`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationConfiguration {
    /// The rules, in order.
    pub rules: Vec<Rule>,
}

/// One rule: where to replicate the repositories its filters match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// Destinations.
    pub destinations: Vec<Destination>,
    /// Filters (none: every repository).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repository_filters: Vec<RepositoryFilter>,
    /// ECR's `deleteReplication` (deletes are not replicated unless enabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_replication: Option<DeleteReplication>,
}

/// `deleteReplication`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteReplication {
    /// Whether image deletions are replicated.
    pub enabled: bool,
}

/// One destination registry: a region and an account.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Destination {
    /// The region (a deployment).
    pub region: String,
    /// The account (registry id).
    pub registry_id: String,
}

/// A repository filter (`PREFIX_MATCH` only, as ECR).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryFilter {
    /// The prefix.
    pub filter: String,
    /// `PREFIX_MATCH`.
    pub filter_type: String,
}

impl Rule {
    /// Does this rule cover repository `name`?
    pub fn covers(&self, name: &str) -> bool {
        self.repository_filters.is_empty()
            || self
                .repository_filters
                .iter()
                .any(|f| f.filter_type == "PREFIX_MATCH" && name.starts_with(&f.filter))
    }
}

impl ReplicationConfiguration {
    /// The destinations repository `name`'s pushes replicate to: every
    /// destination of every rule that covers it, each once, in rule order.
    pub fn destinations_for(&self, name: &str) -> Vec<Destination> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for rule in self.rules.iter().filter(|r| r.covers(name)) {
            for d in &rule.destinations {
                if seen.insert(d.clone()) {
                    out.push(d.clone());
                }
            }
        }
        out
    }

    /// Every unique destination.
    pub fn all_destinations(&self) -> BTreeSet<Destination> {
        self.rules.iter().flat_map(|r| r.destinations.iter().cloned()).collect()
    }

    /// ECR's checks beyond the model's shapes: at most 10 rules and 25
    /// unique destinations, no destination that is this registry itself,
    /// filters of `PREFIX_MATCH` only, 2–256 characters. `Err` carries the
    /// `InvalidParameterException` message.
    pub fn validate(&self, own_region: &str, own_account: &str) -> Result<(), String> {
        if self.rules.len() > MAX_RULES {
            return Err(format!(
                "Invalid parameter at 'replicationConfiguration' failed to satisfy constraint: \
                 'The number of replication rules ({}) exceeds the limit of {MAX_RULES}'",
                self.rules.len()
            ));
        }
        let unique = self.all_destinations();
        if unique.len() > MAX_DESTINATIONS {
            return Err(format!(
                "Invalid parameter at 'replicationConfiguration' failed to satisfy constraint: \
                 'The number of unique replication destinations ({}) exceeds the limit of {MAX_DESTINATIONS}'",
                unique.len()
            ));
        }
        for rule in &self.rules {
            if rule.destinations.is_empty() {
                return Err(
                    "Invalid parameter at 'replicationConfiguration' failed to satisfy constraint: \
                     'A replication rule must have at least one destination'"
                        .to_string(),
                );
            }
            for d in &rule.destinations {
                if d.region == own_region && d.registry_id == own_account {
                    return Err(
                        "Invalid parameter at 'replicationConfiguration' failed to satisfy constraint: \
                         'Replication destination cannot be the same as the source registry'"
                            .to_string(),
                    );
                }
                if !is_region(&d.region) {
                    return Err(format!(
                        "Invalid parameter at 'region' failed to satisfy constraint: \
                         'must satisfy regular expression pattern: [0-9a-z-]{{2,25}}' ('{}')",
                        d.region
                    ));
                }
                if d.registry_id.len() != 12 || !d.registry_id.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(format!(
                        "Invalid parameter at 'registryId' failed to satisfy constraint: \
                         'must satisfy regular expression pattern: [0-9]{{12}}' ('{}')",
                        d.registry_id
                    ));
                }
            }
            // Kura does not replicate deletions: a rule asking for it is refused
            // rather than accepted and silently not honoured.
            if rule.delete_replication.as_ref().is_some_and(|d| d.enabled) {
                return Err(
                    "Invalid parameter at 'deleteReplication' failed to satisfy constraint: \
                     'Kura does not replicate image deletions; set deleteReplication.enabled to false or omit it'"
                        .to_string(),
                );
            }
            if rule.repository_filters.len() > MAX_FILTERS {
                return Err(format!(
                    "Invalid parameter at 'repositoryFilters' failed to satisfy constraint: \
                     'Member must have length less than or equal to {MAX_FILTERS}'"
                ));
            }
            for f in &rule.repository_filters {
                if f.filter_type != "PREFIX_MATCH" {
                    return Err(format!(
                        "Invalid parameter at 'filterType' failed to satisfy constraint: \
                         'Member must satisfy enum value set: [PREFIX_MATCH]' ('{}')",
                        f.filter_type
                    ));
                }
                let n = f.filter.chars().count();
                if !(2..=256).contains(&n) {
                    return Err(format!(
                        "Invalid parameter at 'filter' failed to satisfy constraint: \
                         'Member must have length between 2 and 256' ('{}')",
                        f.filter
                    ));
                }
                if !is_filter(&f.filter) {
                    return Err(format!(
                        "Invalid parameter at 'filter' failed to satisfy constraint: 'Member must satisfy \
                         regular expression pattern: ^(?:[a-z0-9]+(?:[._-][a-z0-9]*)*/)*[a-z0-9]*(?:[._-][a-z0-9]*)*$' ('{}')",
                        f.filter
                    ));
                }
            }
        }
        Ok(())
    }

    /// The configuration stored for `account` (no rules when none is).
    pub async fn load(control: &dyn ControlStore, account: &str) -> Result<ReplicationConfiguration, StoreError> {
        Ok(control
            .setting_get(account, SETTING)
            .await?
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default())
    }

    /// Store it for `account` (validate first).
    pub async fn store(&self, control: &dyn ControlStore, account: &str) -> Result<(), StoreError> {
        let text = serde_json::to_string(self).map_err(|e| StoreError::Invalid(e.to_string()))?;
        control.setting_put(account, SETTING, &text).await
    }
}

fn is_region(r: &str) -> bool {
    (2..=25).contains(&r.len())
        && r.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The model's filter pattern: path components of lowercase alphanumerics
/// separated by `.`, `_` or `-`, the last one possibly partial.
fn is_filter(f: &str) -> bool {
    let comp_ok = |c: &str, last: bool| {
        if c.is_empty() {
            return last;
        }
        let first = c.as_bytes()[0];
        if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
            return false;
        }
        c.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
    };
    let parts: Vec<&str> = f.split('/').collect();
    let n = parts.len();
    parts.iter().enumerate().all(|(i, c)| comp_ok(c, i + 1 == n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(json: &str) -> ReplicationConfiguration {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn prefix_filters_pick_destinations_once() {
        let c = cfg(r#"{"rules":[
            {"destinations":[{"region":"eu-west-1","registryId":"111111111111"}],
             "repositoryFilters":[{"filter":"prod/","filterType":"PREFIX_MATCH"}]},
            {"destinations":[{"region":"eu-west-1","registryId":"111111111111"},
                             {"region":"ap-northeast-1","registryId":"222222222222"}]}]}"#);
        assert_eq!(c.destinations_for("prod/api").len(), 2);
        assert_eq!(
            c.destinations_for("dev/api"),
            vec![
                Destination {
                    region: "eu-west-1".into(),
                    registry_id: "111111111111".into()
                },
                Destination {
                    region: "ap-northeast-1".into(),
                    registry_id: "222222222222".into()
                },
            ]
        );
        let only = cfg(
            r#"{"rules":[{"destinations":[{"region":"eu-west-1","registryId":"111111111111"}],
             "repositoryFilters":[{"filter":"prod/","filterType":"PREFIX_MATCH"}]}]}"#,
        );
        assert!(only.destinations_for("production").is_empty());
        assert_eq!(only.destinations_for("prod/x").len(), 1);
    }

    #[test]
    fn ecr_limits_and_self_destination() {
        let own = cfg(r#"{"rules":[{"destinations":[{"region":"us-east-1","registryId":"123456789012"}]}]}"#);
        let e = own.validate("us-east-1", "123456789012").unwrap_err();
        assert!(e.contains("cannot be the same as the source registry"), "{e}");
        assert!(own.validate("eu-west-1", "123456789012").is_ok());
        let rule = r#"{"destinations":[{"region":"eu-west-1","registryId":"111111111111"}]}"#;
        let eleven = cfg(&format!(r#"{{"rules":[{}]}}"#, [rule; 11].join(",")));
        assert!(eleven.validate("us-east-1", "1").unwrap_err().contains("limit of 10"));
        let dests: Vec<String> = (0..26)
            .map(|i| format!(r#"{{"region":"eu-west-1","registryId":"{:012}"}}"#, i))
            .collect();
        let many = cfg(&format!(r#"{{"rules":[{{"destinations":[{}]}}]}}"#, dests.join(",")));
        assert!(many.validate("us-east-1", "1").unwrap_err().contains("limit of 25"));
        let short = cfg(
            r#"{"rules":[{"destinations":[{"region":"eu-west-1","registryId":"111111111111"}],
             "repositoryFilters":[{"filter":"a","filterType":"PREFIX_MATCH"}]}]}"#,
        );
        assert!(short
            .validate("us-east-1", "1")
            .unwrap_err()
            .contains("between 2 and 256"));
        let upper = cfg(
            r#"{"rules":[{"destinations":[{"region":"eu-west-1","registryId":"111111111111"}],
             "repositoryFilters":[{"filter":"Prod","filterType":"PREFIX_MATCH"}]}]}"#,
        );
        assert!(upper.validate("us-east-1", "1").is_err());
        let deletes = cfg(
            r#"{"rules":[{"destinations":[{"region":"eu-west-1","registryId":"111111111111"}],
             "deleteReplication":{"enabled":true}}]}"#,
        );
        assert!(deletes
            .validate("us-east-1", "1")
            .unwrap_err()
            .contains("deleteReplication"));
        let no_deletes = cfg(
            r#"{"rules":[{"destinations":[{"region":"eu-west-1","registryId":"111111111111"}],
             "deleteReplication":{"enabled":false}}]}"#,
        );
        assert!(no_deletes.validate("us-east-1", "1").is_ok());
        assert!(is_filter("prod/") && is_filter("prod/ap") && is_filter("ab") && !is_filter("/x"));
    }
}
