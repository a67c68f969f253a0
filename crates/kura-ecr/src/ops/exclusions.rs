//! Pull-time update exclusions (`RegisterPullTimeUpdateExclusion`,
//! `DeregisterPullTimeUpdateExclusion`, `ListPullTimeUpdateExclusions`):
//! IAM users and roles whose pulls do not update an image's
//! `lastRecordedPullTime`, so a scanner's pulls do not keep images alive under
//! `sinceImagePulled` lifecycle rules.
//!
//! Stored as one control-store setting per account (a JSON list, at most
//! [`MAX_EXCLUSIONS`] as in ECR). The data plane asks [`PullExclusions`]
//! about each pull ([`kura_registry::PullTimeFilter`]): a per-node cache of
//! each account's list, read again after [`CACHE_TTL`] and dropped at once on
//! this node when the list changes here, so another node sees a change
//! within [`CACHE_TTL`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kura_registry::Actor;
use kura_store::ControlStore;

use super::*;

/// The control-store setting holding an account's exclusions.
pub const SETTING: &str = "pull-time-update-exclusions";
/// ECR's quota of exclusions per account.
pub const MAX_EXCLUSIONS: usize = 100;
/// How long a node trusts its cached copy of an account's list.
pub const CACHE_TTL: Duration = Duration::from_secs(10);

/// The stored list: principal ARN → creation time (epoch ms).
type List = BTreeMap<String, i64>;

async fn load(control: &dyn ControlStore, account: &str) -> EcrResult<List> {
    match control.setting_get(account, SETTING).await? {
        Some(text) if !text.is_empty() => serde_json::from_str(&text).map_err(|e| {
            tracing::error!(account, error = %e, "unreadable pull-time update exclusions");
            EcrError::server()
        }),
        _ => Ok(List::new()),
    }
}

/// What an exclusion or a puller's ARN names: `<account>:<role|user>:<name>`.
/// A role is named without its path, as an assumed-role session names it
/// (`arn:aws:sts::<account>:assumed-role/<name>/<session>`), so a role's
/// exclusion covers every session of it.
fn principal_key(arn: &str) -> Option<String> {
    let mut parts = arn.splitn(6, ':');
    let (_arn, _partition, service, _region, account, resource) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    let (kind, rest) = resource.split_once('/')?;
    let name = match (service, kind) {
        ("iam", "role") | ("iam", "user") => rest.rsplit('/').next()?,
        ("sts", "assumed-role") => rest.split('/').next()?,
        _ => return None,
    };
    let kind = if kind == "user" { "user" } else { "role" };
    Some(format!("{account}:{kind}:{name}"))
}

/// An account's excluded principal keys, and when they were read.
type Cached = (Instant, Arc<HashSet<String>>);

/// The per-node view of every account's exclusions, for the data plane.
pub struct PullExclusions {
    control: Arc<dyn ControlStore>,
    cache: Mutex<HashMap<String, Cached>>,
}

impl PullExclusions {
    /// Exclusions read from `control`.
    pub fn new(control: Arc<dyn ControlStore>) -> Self {
        PullExclusions {
            control,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Forget `account`'s cached list (it changed on this node).
    pub fn invalidate(&self, account: &str) {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).remove(account);
    }

    async fn keys(&self, account: &str) -> EcrResult<Arc<HashSet<String>>> {
        if let Some((at, keys)) = self.cache.lock().unwrap_or_else(|e| e.into_inner()).get(account) {
            if at.elapsed() < CACHE_TTL {
                return Ok(keys.clone());
            }
        }
        let keys: Arc<HashSet<String>> = Arc::new(
            load(self.control.as_ref(), account)
                .await?
                .keys()
                .filter_map(|a| principal_key(a))
                .collect(),
        );
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(account.to_string(), (Instant::now(), keys.clone()));
        Ok(keys)
    }
}

#[async_trait::async_trait]
impl kura_registry::PullTimeFilter for PullExclusions {
    async fn records(&self, account: &str, actor: &Actor) -> bool {
        let Some(key) = principal_key(&actor.principal_arn) else {
            return true;
        };
        match self.keys(account).await {
            Ok(keys) => !keys.contains(&key),
            // Unknown: record, as ECR did before exclusions existed.
            Err(_) => true,
        }
    }
}

fn principal(v: &Value) -> String {
    s(v, "principalArn").unwrap_or_default().to_string()
}

impl Ecr {
    pub(super) async fn register_pull_time_update_exclusion(&self, ctx: &Ctx, v: &Value) -> EcrResult<Value> {
        let account = &ctx.account;
        let arn = principal(v);
        let _guard = self.settings_lock.lock().await;
        let mut list = load(self.control.as_ref(), account).await?;
        if list.contains_key(&arn) {
            return Err(EcrError::new(
                "ExclusionAlreadyExistsException",
                format!("The pull time update exclusion for principal '{arn}' already exists in the registry with id '{account}'"),
            ));
        }
        if list.len() >= MAX_EXCLUSIONS {
            return Err(EcrError::new(
                "LimitExceededException",
                format!("The registry with id '{account}' already has the maximum of {MAX_EXCLUSIONS} pull time update exclusions"),
            ));
        }
        let now = kura_store::now_millis();
        list.insert(arn.clone(), now);
        self.control
            .setting_put(account, SETTING, &serde_json::to_string(&list).unwrap_or_default())
            .await?;
        self.pull_exclusions.invalidate(account);
        Ok(json!({"principalArn": arn, "createdAt": ts(now)}))
    }

    pub(super) async fn deregister_pull_time_update_exclusion(&self, ctx: &Ctx, v: &Value) -> EcrResult<Value> {
        let account = &ctx.account;
        let arn = principal(v);
        let _guard = self.settings_lock.lock().await;
        let mut list = load(self.control.as_ref(), account).await?;
        if list.remove(&arn).is_none() {
            return Err(EcrError::new(
                "ExclusionNotFoundException",
                format!("The pull time update exclusion for principal '{arn}' does not exist in the registry with id '{account}'"),
            ));
        }
        self.control
            .setting_put(account, SETTING, &serde_json::to_string(&list).unwrap_or_default())
            .await?;
        self.pull_exclusions.invalidate(account);
        Ok(json!({"principalArn": arn}))
    }

    pub(super) async fn list_pull_time_update_exclusions(&self, ctx: &Ctx, v: &Value) -> EcrResult<Value> {
        let list = load(self.control.as_ref(), &ctx.account).await?;
        let after = decode_token(v)?;
        let limit = max_results(v, 100);
        let mut arns: Vec<String> = list
            .into_keys()
            .filter(|a| after.as_deref().is_none_or(|t| a.as_str() > t))
            .take(limit as usize + 1)
            .collect();
        let next = page(&mut arns, limit, |a| a.as_str());
        let mut out = json!({"pullTimeUpdateExclusions": arns});
        with_next(&mut out, next);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::principal_key;

    #[test]
    fn roles_match_their_sessions_and_users_match_by_name() {
        let role = principal_key("arn:aws:iam::123456789012:role/scanners/trivy").unwrap();
        assert_eq!(
            principal_key("arn:aws:sts::123456789012:assumed-role/trivy/s1").as_deref(),
            Some(role.as_str())
        );
        assert_ne!(
            principal_key("arn:aws:sts::210987654321:assumed-role/trivy/s1").as_deref(),
            Some(role.as_str())
        );
        let user = principal_key("arn:aws:iam::123456789012:user/ci/bot").unwrap();
        assert_eq!(
            principal_key("arn:aws:iam::123456789012:user/bot").as_deref(),
            Some(user.as_str())
        );
        assert_ne!(user, principal_key("arn:aws:iam::123456789012:role/bot").unwrap());
        assert_eq!(principal_key("arn:aws:iam::123456789012:root"), None);
        assert_eq!(principal_key("anonymous"), None);
    }
}
