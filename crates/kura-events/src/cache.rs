//! The per-node cache of each account's enabled rules, compiled: a leaf
//! module (routing in [`crate::route`] reads and fills it; the API drops an
//! account's entry when it changes a rule).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::pattern::Pattern;

/// How long a cached account's rules are used before the generation is read again.
pub const FRESHNESS: Duration = Duration::from_secs(1);

/// A target of a cached rule.
pub(crate) struct CompiledTarget {
    pub(crate) id: String,
    pub(crate) arn: String,
    pub(crate) http_parameters: Option<Value>,
    pub(crate) retry_policy: Option<Value>,
}

/// An enabled rule with its parsed pattern.
pub(crate) struct CompiledRule {
    pub(crate) name: String,
    pub(crate) pattern: Pattern,
    pub(crate) targets: Vec<CompiledTarget>,
}

/// An account's cached rules and the generation they were read at.
pub(crate) struct Entry {
    pub(crate) checked: Instant,
    pub(crate) generation: i64,
    pub(crate) rules: Arc<Vec<CompiledRule>>,
}

/// The per-node cache of enabled rules.
#[derive(Default)]
pub struct RuleCache {
    pub(crate) entries: Mutex<HashMap<String, Entry>>,
}

impl RuleCache {
    /// Forget an account's rules (after a change through this node).
    pub fn invalidate(&self, account: &str) {
        self.entries.lock().expect("rule cache").remove(account);
    }

    pub(crate) fn fresh(&self, account: &str) -> Option<Arc<Vec<CompiledRule>>> {
        let map = self.entries.lock().expect("rule cache");
        map.get(account)
            .filter(|e| e.checked.elapsed() < FRESHNESS)
            .map(|e| e.rules.clone())
    }
}
