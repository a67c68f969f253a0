//! [`PullThrough`]: the registry's [`PullThroughSource`]. It finds the rule
//! covering a repository name (longest prefix; `ROOT` last), reads the rule's
//! credentials, and hands the registry the upstream repository. Each node
//! caches an account's rules for a few seconds and drops them at once when
//! this node changes them (other nodes see a change within the TTL).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use kura_oci::RepoName;
use kura_registry::upstream::{PullThroughSource, UpstreamError, UpstreamRepo};
use kura_store::ptc_rules::PtcRuleRow;
use kura_store::{PullThroughRuleStore, StoreError};

use crate::client::{Auth, ClientConfig, Endpoint, RemoteRepo, UpstreamClient};
use crate::creds::{is_cache_secret_arn, CredentialSource, UpstreamCredentials};
use crate::rules;

/// How long a node trusts its copy of an account's rules.
pub const RULE_TTL: Duration = Duration::from_secs(10);
/// How long a node keeps a rule's resolved credentials.
pub const CREDENTIAL_TTL: Duration = Duration::from_secs(30);

/// Why a rule's secret gave no credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretProblem {
    /// No secrets service is connected to the pull-through cache.
    NotConnected,
    /// The account has no such secret.
    NotFound,
    /// The secret is not the account's, or not an `ecr-pullthroughcache/` secret.
    NotAccessible(String),
    /// Reading it failed.
    Unreadable(String),
    /// It does not hold `{"username","accessToken"}`.
    Malformed(String),
}

impl std::fmt::Display for SecretProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretProblem::NotConnected => write!(f, "no secrets service is connected to the pull-through cache"),
            SecretProblem::NotFound => write!(f, "the credential secret was not found"),
            SecretProblem::NotAccessible(why) => write!(f, "the credential secret cannot be accessed: {why}"),
            SecretProblem::Unreadable(why) => write!(f, "the credential secret could not be read: {why}"),
            SecretProblem::Malformed(why) => write!(f, "the credential secret is unusable: {why}"),
        }
    }
}

type RuleCache = HashMap<String, (Instant, Arc<Vec<PtcRuleRow>>)>;

/// The pull-through cache's rules, credentials and upstream client.
pub struct PullThrough {
    store: Arc<dyn PullThroughRuleStore>,
    client: RwLock<Arc<UpstreamClient>>,
    creds: RwLock<Option<Arc<dyn CredentialSource>>>,
    rules: Mutex<RuleCache>,
    endpoints: Mutex<HashMap<String, (Instant, Arc<Endpoint>)>>,
}

impl PullThrough {
    /// Rules from `store`, the default client limits, no credential source yet.
    pub fn new(store: Arc<dyn PullThroughRuleStore>) -> Self {
        let client = UpstreamClient::new(ClientConfig::default()).expect("an HTTP client without a CA bundle");
        PullThrough {
            store,
            client: RwLock::new(Arc::new(client)),
            creds: RwLock::new(None),
            rules: Mutex::new(HashMap::new()),
            endpoints: Mutex::new(HashMap::new()),
        }
    }

    /// Use a client with these limits and trust (the binary's flags).
    pub fn set_client_config(&self, config: ClientConfig) -> Result<(), String> {
        let client = UpstreamClient::new(config)?;
        *self.client.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(client);
        Ok(())
    }

    /// Read rules' secrets from `source` (the deployment's Secrets Manager).
    pub fn set_credentials(&self, source: Arc<dyn CredentialSource>) {
        *self.creds.write().unwrap_or_else(|e| e.into_inner()) = Some(source);
        self.endpoints.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// The rules' store.
    pub fn store(&self) -> &Arc<dyn PullThroughRuleStore> {
        &self.store
    }

    /// The client.
    pub fn client(&self) -> Arc<UpstreamClient> {
        self.client.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Forget this node's copy of the account's rules and credentials (after a change).
    pub fn invalidate(&self, account: &str) {
        self.rules.lock().unwrap_or_else(|e| e.into_inner()).remove(account);
        let prefix = format!("{account}|");
        self.endpoints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|k, _| !k.starts_with(&prefix));
    }

    /// The account's rules (cached for [`RULE_TTL`]).
    pub async fn rules(&self, account: &str) -> Result<Arc<Vec<PtcRuleRow>>, StoreError> {
        if let Some((at, rules)) = self.rules.lock().unwrap_or_else(|e| e.into_inner()).get(account) {
            if at.elapsed() < RULE_TTL {
                return Ok(rules.clone());
            }
        }
        let rows = Arc::new(self.store.ptc_rule_list(account, None, rules::MAX_RULES * 20).await?);
        self.rules
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(account.to_string(), (Instant::now(), rows.clone()));
        Ok(rows)
    }

    /// The credentials secret `arn` of `account` holds.
    pub async fn credentials(&self, account: &str, arn: &str) -> Result<UpstreamCredentials, SecretProblem> {
        if !is_cache_secret_arn(arn) {
            return Err(SecretProblem::NotAccessible(
                "only secrets named ecr-pullthroughcache/… can be used".into(),
            ));
        }
        if rules::arn_account(arn) != Some(account) {
            return Err(SecretProblem::NotAccessible(
                "the secret belongs to another account".into(),
            ));
        }
        let source = self
            .creds
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(SecretProblem::NotConnected)?;
        match source.secret_string(account, arn).await {
            Ok(Some(s)) => UpstreamCredentials::parse(&s).map_err(SecretProblem::Malformed),
            Ok(None) => Err(SecretProblem::NotFound),
            Err(e) => Err(SecretProblem::Unreadable(e)),
        }
    }

    /// The upstream endpoint of a rule, with its credentials read now.
    pub async fn endpoint(&self, rule: &PtcRuleRow) -> Result<Endpoint, UpstreamError> {
        let url = rules::parse_url(&rule.upstream_url).map_err(|message| UpstreamError::Invalid { message })?;
        let base = url.base();
        let auth = match &rule.credential_arn {
            None => Auth::Anonymous,
            Some(arn) => {
                let creds = self
                    .credentials(&rule.account, arn)
                    .await
                    .map_err(|p| UpstreamError::Denied {
                        message: format!("upstream {}: {p}", url.authority),
                    })?;
                if rule.upstream_registry.as_deref() == Some("ecr") {
                    let aws_region = rules::ecr_region(&url.host);
                    let region = creds
                        .region
                        .clone()
                        .or_else(|| aws_region.clone())
                        .unwrap_or_else(|| "us-east-1".to_string());
                    let api_base = match aws_region {
                        Some(r) => format!("https://api.ecr.{r}.amazonaws.com"),
                        None => base.clone(),
                    };
                    Auth::Ecr {
                        access_key_id: creds.username,
                        secret_access_key: creds.access_token,
                        region,
                        api_base,
                    }
                } else {
                    Auth::Basic {
                        username: creds.username,
                        password: creds.access_token,
                    }
                }
            }
        };
        Ok(Endpoint { base, auth })
    }

    async fn cached_endpoint(&self, rule: &PtcRuleRow) -> Result<Arc<Endpoint>, UpstreamError> {
        let key = format!("{}|{}|{}", rule.account, rule.prefix, rule.updated_at);
        if let Some((at, ep)) = self.endpoints.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            if at.elapsed() < CREDENTIAL_TTL {
                return Ok(ep.clone());
            }
        }
        let ep = Arc::new(self.endpoint(rule).await?);
        let mut map = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 10_000 {
            map.retain(|_, (at, _)| at.elapsed() < CREDENTIAL_TTL);
        }
        map.insert(key, (Instant::now(), ep.clone()));
        Ok(ep)
    }

    /// What `ValidatePullThroughCacheRule` checks: the secret reads and
    /// parses, and the upstream lets its credentials in. Err: the failure.
    pub async fn validate(&self, rule: &PtcRuleRow) -> Result<(), String> {
        let ep = self.endpoint(rule).await.map_err(|e| message(&e))?;
        self.client().check(&ep).await.map_err(|e| message(&e))
    }

    /// The upstream repository a rule and the rest of a name map to.
    pub async fn remote(&self, rule: &PtcRuleRow, rest: &str) -> Result<RemoteRepo, UpstreamError> {
        let url = rules::parse_url(&rule.upstream_url).map_err(|message| UpstreamError::Invalid { message })?;
        let docker_hub =
            rule.upstream_registry.as_deref() == Some("docker-hub") || rules::is_docker_hub_host(&url.host);
        let name = rules::upstream_name(rule.upstream_prefix.as_deref(), rest, docker_hub);
        let ep = self.cached_endpoint(rule).await?;
        RemoteRepo::new(self.client(), ep, &name)
    }
}

/// An upstream error's message.
pub fn message(e: &UpstreamError) -> String {
    match e {
        UpstreamError::Unavailable { message }
        | UpstreamError::TooManyRequests { message, .. }
        | UpstreamError::Denied { message }
        | UpstreamError::Invalid { message } => message.clone(),
    }
}

#[async_trait::async_trait]
impl PullThroughSource for PullThrough {
    async fn upstream_for(
        &self,
        account: &str,
        name: &RepoName,
    ) -> Result<Option<Arc<dyn UpstreamRepo>>, UpstreamError> {
        let rules = self.rules(account).await.map_err(|e| {
            tracing::error!(account, error = %e, "cannot read the pull-through cache rules");
            UpstreamError::Unavailable {
                message: "the pull-through cache rules cannot be read".into(),
            }
        })?;
        let Some((prefix, rest)) = rules::longest(rules.iter().map(|r| r.prefix.as_str()), name.as_str()) else {
            return Ok(None);
        };
        let Some(rule) = rules.iter().find(|r| r.prefix == prefix && r.account == account) else {
            return Ok(None);
        };
        let remote = self.remote(rule, rest).await?;
        Ok(Some(Arc::new(remote)))
    }
}
