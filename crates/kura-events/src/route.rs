//! Which targets an event goes to: the enabled rules of its account, matched.
//!
//! The enabled rules of each account (with their targets, patterns compiled) are cached per
//! node. An entry younger than the cache's freshness window is used as is; an older one is
//! revalidated with one read of the store's events generation (bumped by every change to
//! rules and targets, on any node) and reloaded only if that moved. A change through this
//! node's API drops the account's entry at once. So an event on the push path costs one
//! lock and one map lookup when the account has no rules, and a rule change applies on
//! other nodes within the window.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kura_store::StoreError;
use serde_json::Value;

use crate::api::Events;
use crate::deliver::DeliveryJob;
use crate::pattern::Pattern;

/// How long a cached account's rules are used before the generation is read again.
pub const FRESHNESS: Duration = Duration::from_secs(1);

struct CompiledTarget {
    id: String,
    arn: String,
    http_parameters: Option<Value>,
    retry_policy: Option<Value>,
}

struct CompiledRule {
    name: String,
    pattern: Pattern,
    targets: Vec<CompiledTarget>,
}

struct Entry {
    checked: Instant,
    generation: i64,
    rules: Arc<Vec<CompiledRule>>,
}

/// The per-node cache of enabled rules.
#[derive(Default)]
pub struct RuleCache {
    entries: Mutex<HashMap<String, Entry>>,
}

impl RuleCache {
    /// Forget an account's rules (after a change through this node).
    pub fn invalidate(&self, account: &str) {
        self.entries.lock().expect("rule cache").remove(account);
    }

    fn fresh(&self, account: &str) -> Option<Arc<Vec<CompiledRule>>> {
        let map = self.entries.lock().expect("rule cache");
        map.get(account)
            .filter(|e| e.checked.elapsed() < FRESHNESS)
            .map(|e| e.rules.clone())
    }
}

/// One delivery to enqueue: the job and its retry policy's overrides.
#[derive(Clone, Debug, PartialEq)]
pub struct Routed {
    /// The job payload.
    pub job: DeliveryJob,
    /// The target's `RetryPolicy.MaximumRetryAttempts`, if set.
    pub max_retries: Option<u32>,
}

impl Routed {
    /// The job's unique key: the event and the target (a re-emitted event is not sent twice).
    pub fn unique_key(&self) -> String {
        format!(
            "events:{}:{}:{}:{}",
            self.job.event["id"].as_str().unwrap_or_default(),
            self.job.account,
            self.job.rule,
            self.job.target_id
        )
    }

    /// The job's lane: the target and the repository, so events of one repository reach a
    /// slow target in order while other repositories and targets proceed.
    pub fn lane(&self) -> String {
        format!(
            "events:{}:{}:{}:{}",
            self.job.account,
            self.job.rule,
            self.job.target_id,
            self.job.event["detail"]["repository-name"].as_str().unwrap_or_default()
        )
    }
}

impl Events {
    /// The deliveries an event of `account` makes: one per target of each enabled rule whose
    /// pattern matches.
    pub async fn route(&self, account: &str, event: &Value) -> Result<Vec<Routed>, StoreError> {
        let rules = match self.cache.fresh(account) {
            Some(r) => r,
            None => self.reload(account).await?,
        };
        let mut out = Vec::new();
        for rule in rules.iter().filter(|r| r.pattern.matches(event)) {
            for t in &rule.targets {
                let policy = t.retry_policy.as_ref();
                out.push(Routed {
                    job: DeliveryJob {
                        account: account.to_string(),
                        rule: rule.name.clone(),
                        target_id: t.id.clone(),
                        target_arn: t.arn.clone(),
                        http_parameters: t.http_parameters.clone(),
                        event: event.clone(),
                        deadline_ms: policy
                            .and_then(|p| p.get("MaximumEventAgeInSeconds"))
                            .and_then(Value::as_i64)
                            .map(|secs| kura_store::now_millis() + secs * 1000),
                    },
                    max_retries: policy
                        .and_then(|p| p.get("MaximumRetryAttempts"))
                        .and_then(Value::as_u64)
                        .map(|n| n as u32),
                });
            }
        }
        Ok(out)
    }

    async fn reload(&self, account: &str) -> Result<Arc<Vec<CompiledRule>>, StoreError> {
        let generation = self.store.events_generation().await?;
        {
            let mut map = self.cache.entries.lock().expect("rule cache");
            if let Some(e) = map.get_mut(account) {
                if e.generation == generation {
                    e.checked = Instant::now();
                    return Ok(e.rules.clone());
                }
            }
        }
        let mut rules = Vec::new();
        for (rule, targets) in self.store.rules_enabled(account).await? {
            let Ok(pattern) = Pattern::parse(&rule.pattern) else {
                tracing::warn!(account, rule = %rule.name, "events: a stored rule's pattern no longer parses; skipped");
                continue;
            };
            let targets = targets
                .into_iter()
                .map(|t| {
                    let body: Value = serde_json::from_str(&t.body).unwrap_or_default();
                    CompiledTarget {
                        id: t.id,
                        arn: t.arn,
                        http_parameters: body.get("HttpParameters").cloned(),
                        retry_policy: body.get("RetryPolicy").cloned(),
                    }
                })
                .collect();
            rules.push(CompiledRule {
                name: rule.name,
                pattern,
                targets,
            });
        }
        let rules = Arc::new(rules);
        self.cache.entries.lock().expect("rule cache").insert(
            account.to_string(),
            Entry {
                checked: Instant::now(),
                generation,
                rules: rules.clone(),
            },
        );
        Ok(rules)
    }
}
