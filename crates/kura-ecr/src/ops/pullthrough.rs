//! Pull-through cache rules: `CreatePullThroughCacheRule`,
//! `DescribePullThroughCacheRules`, `UpdatePullThroughCacheRule`,
//! `DeletePullThroughCacheRule` and `ValidatePullThroughCacheRule`.
//!
//! The model has checked the shapes (prefix grammar, ARN patterns); here are
//! ECR's semantic rules: the upstream registry named by the URL (or given,
//! when the URL is a registry ECR does not know: any OCI registry, or another
//! ECR-compatible one with `upstreamRegistry: ecr`), which registries take or
//! need a credential secret, the secret read at create/update time (it must
//! be the account's own `ecr-pullthroughcache/…` secret), ECR's default quota
//! of 50 rules per registry. Validation really contacts the upstream
//! (`kura_pullthrough::PullThrough::validate`).

use kura_pullthrough::rules::{self, CredentialNeed};
use kura_pullthrough::SecretProblem;
use kura_store::ptc_rules::{PtcCreate, PtcRuleRow};

use super::*;

fn rule_not_found(prefix: &str, account: &str) -> EcrError {
    EcrError::new(
        "PullThroughCacheRuleNotFoundException",
        format!(
            "The pull through cache rule with prefix '{prefix}' does not exist in the registry with id '{account}'"
        ),
    )
}

/// The rule's members every output shares.
fn rule_json(r: &PtcRuleRow) -> Value {
    let mut v = json!({
        "ecrRepositoryPrefix": r.prefix,
        "registryId": r.account,
    });
    if let Some(c) = &r.credential_arn {
        v["credentialArn"] = json!(c);
    }
    if let Some(c) = &r.custom_role_arn {
        v["customRoleArn"] = json!(c);
    }
    if let Some(p) = &r.upstream_prefix {
        v["upstreamRepositoryPrefix"] = json!(p);
    }
    v
}

fn with_url(mut v: Value, r: &PtcRuleRow) -> Value {
    v["upstreamRegistryUrl"] = json!(r.upstream_url);
    v
}

/// Refuse a secret ECR would not take, with ECR's exception for why.
fn secret_error(p: SecretProblem, arn: &str) -> EcrError {
    match p {
        SecretProblem::NotFound => EcrError::new(
            "SecretNotFoundException",
            format!("The secret with ARN '{arn}' was not found"),
        ),
        other => EcrError::new(
            "UnableToAccessSecretException",
            format!("Unable to access the secret with ARN '{arn}': {other}"),
        ),
    }
}

/// A custom role must be an IAM role of the registry's own account.
fn check_role(v: &Value, account: &str) -> EcrResult<()> {
    if let Some(role) = s(v, "customRoleArn") {
        let ok = role
            .strip_prefix("arn:aws:iam::")
            .or_else(|| role.strip_prefix("arn:aws-cn:iam::"))
            .or_else(|| role.strip_prefix("arn:aws-us-gov:iam::"))
            .and_then(|r| r.split_once(":role/"))
            .is_some_and(|(acct, name)| acct == account && !name.is_empty());
        if !ok {
            return Err(EcrError::invalid_parameter(format!(
                "Invalid parameter at 'customRoleArn' failed to satisfy constraint: 'the role must be an IAM role ARN of account {account}'"
            )));
        }
    }
    if s(v, "upstreamRoleArn").is_some() {
        return Err(EcrError::invalid_parameter(
            "Invalid parameter at 'upstreamRoleArn' failed to satisfy constraint: 'upstreamRoleArn can only be used with the ecr-public-premium upstream registry'",
        ));
    }
    Ok(())
}

fn check_credential_need(registry: Option<&str>, credential: Option<&str>) -> EcrResult<()> {
    let name = registry.unwrap_or("this upstream registry");
    match (rules::credential_need(registry), credential) {
        (CredentialNeed::Required, None) => Err(EcrError::invalid_parameter(format!(
            "Invalid parameter at 'credentialArn' failed to satisfy constraint: 'a credential ARN is required for upstream registry {name}'"
        ))),
        (CredentialNeed::Refused, Some(_)) => Err(EcrError::invalid_parameter(format!(
            "Invalid parameter at 'credentialArn' failed to satisfy constraint: 'upstream registry {name} does not take credentials'"
        ))),
        _ => Ok(()),
    }
}

impl Ecr {
    /// Read the rule's secret now, as ECR does when a rule is created or updated.
    async fn check_secret(&self, account: &str, arn: &str) -> EcrResult<()> {
        match self.pull_through.credentials(account, arn).await {
            // A secret that reads but is malformed is reported by validation.
            Ok(_) | Err(SecretProblem::Malformed(_)) => Ok(()),
            Err(p) => Err(secret_error(p, arn)),
        }
    }

    pub(super) async fn create_pull_through_cache_rule(&self, ctx: &Ctx, v: &Value) -> EcrResult<Value> {
        let account = ctx.account.clone();
        let prefix = rules::normalize_prefix(s(v, "ecrRepositoryPrefix").unwrap_or_default());
        let url_text = s(v, "upstreamRegistryUrl").unwrap_or_default();
        let url = rules::parse_url(url_text).map_err(|m| {
            EcrError::invalid_parameter(format!(
                "Invalid parameter at 'upstreamRegistryUrl' failed to satisfy constraint: '{m}'"
            ))
        })?;
        let derived = rules::registry_for_host(&url.host);
        let given = s(v, "upstreamRegistry");
        let registry = match (given, derived) {
            (Some(g), Some(d)) if g != d => {
                return Err(EcrError::invalid_parameter(format!(
                    "Invalid parameter at 'upstreamRegistry' failed to satisfy constraint: 'upstream registry URL {url_text} is a {d} registry, not {g}'"
                )))
            }
            (g, d) => g.or(d),
        };
        if registry == Some("ecr-public-premium") {
            return Err(EcrError::new(
                "UnsupportedUpstreamRegistryException",
                "The upstream registry ecr-public-premium is not supported: Kura cannot assume its upstream role",
            ));
        }
        check_role(v, &account)?;
        let credential = s(v, "credentialArn");
        check_credential_need(registry, credential)?;
        if let Some(arn) = credential {
            self.check_secret(&account, arn).await?;
        }
        let upstream_prefix = s(v, "upstreamRepositoryPrefix")
            .map(rules::normalize_prefix)
            .filter(|p| p != rules::ROOT);
        if prefix == rules::ROOT && upstream_prefix.is_some() {
            return Err(EcrError::invalid_parameter(
                "Invalid parameter at 'upstreamRepositoryPrefix' failed to satisfy constraint: 'an upstream repository prefix can only be set when the ECR repository prefix is not ROOT'",
            ));
        }
        let now = kura_store::now_millis();
        let row = PtcRuleRow {
            account: account.clone(),
            prefix: prefix.clone(),
            upstream_url: url_text.to_string(),
            upstream_registry: registry.map(str::to_string),
            credential_arn: credential.map(str::to_string),
            custom_role_arn: s(v, "customRoleArn").map(str::to_string),
            upstream_prefix,
            created_at: now,
            updated_at: now,
        };
        match self.pull_through.store().ptc_rule_create(&row, rules::MAX_RULES).await? {
            PtcCreate::Created => {}
            PtcCreate::Exists => {
                return Err(EcrError::new(
                    "PullThroughCacheRuleAlreadyExistsException",
                    format!("A pull through cache rule with prefix '{prefix}' already exists in the registry with id '{account}'"),
                ))
            }
            PtcCreate::LimitExceeded => {
                return Err(EcrError::new(
                    "LimitExceededException",
                    format!(
                        "The maximum number of pull through cache rules ({}) for the registry with id '{account}' has been reached",
                        rules::MAX_RULES
                    ),
                ))
            }
        }
        self.pull_through.invalidate(&account);
        let mut out = with_url(rule_json(&row), &row);
        out["createdAt"] = ts(row.created_at);
        if let Some(r) = &row.upstream_registry {
            out["upstreamRegistry"] = json!(r);
        }
        Ok(out)
    }

    pub(super) async fn describe_pull_through_cache_rules(&self, ctx: &Ctx, v: &Value) -> EcrResult<Value> {
        let account = ctx.account.clone();
        let store = self.pull_through.store();
        let limit = max_results(v, 100);
        let after = decode_token(v)?;
        let mut rows = match v.get("ecrRepositoryPrefixes").and_then(Value::as_array) {
            Some(list) => {
                let mut wanted: Vec<String> = list
                    .iter()
                    .filter_map(Value::as_str)
                    .map(rules::normalize_prefix)
                    .collect();
                wanted.sort();
                wanted.dedup();
                let mut rows = Vec::new();
                for p in wanted {
                    let row = store
                        .ptc_rule_get(&account, &p)
                        .await?
                        .ok_or_else(|| rule_not_found(&p, &account))?;
                    if after.as_deref().is_none_or(|a| row.prefix.as_str() > a) {
                        rows.push(row);
                    }
                }
                rows.truncate(limit as usize + 1);
                rows
            }
            None => store.ptc_rule_list(&account, after.as_deref(), limit + 1).await?,
        };
        let next = page(&mut rows, limit, |r| r.prefix.as_str());
        let rules: Vec<Value> = rows
            .iter()
            .map(|r| {
                let mut o = with_url(rule_json(r), r);
                o["createdAt"] = ts(r.created_at);
                o["updatedAt"] = ts(r.updated_at);
                if let Some(u) = &r.upstream_registry {
                    o["upstreamRegistry"] = json!(u);
                }
                o
            })
            .collect();
        let mut out = json!({"pullThroughCacheRules": rules});
        with_next(&mut out, next);
        Ok(out)
    }

    pub(super) async fn update_pull_through_cache_rule(&self, ctx: &Ctx, v: &Value) -> EcrResult<Value> {
        let account = ctx.account.clone();
        let prefix = rules::normalize_prefix(s(v, "ecrRepositoryPrefix").unwrap_or_default());
        let store = self.pull_through.store();
        let rule = store
            .ptc_rule_get(&account, &prefix)
            .await?
            .ok_or_else(|| rule_not_found(&prefix, &account))?;
        check_role(v, &account)?;
        let credential = s(v, "credentialArn");
        if let Some(arn) = credential {
            check_credential_need(rule.upstream_registry.as_deref(), Some(arn))?;
            self.check_secret(&account, arn).await?;
        }
        let updated = store
            .ptc_rule_update(&account, &prefix, credential, s(v, "customRoleArn"))
            .await?
            .ok_or_else(|| rule_not_found(&prefix, &account))?;
        self.pull_through.invalidate(&account);
        let mut out = rule_json(&updated);
        out["updatedAt"] = ts(updated.updated_at);
        Ok(out)
    }

    pub(super) async fn delete_pull_through_cache_rule(&self, ctx: &Ctx, v: &Value) -> EcrResult<Value> {
        let account = ctx.account.clone();
        let prefix = rules::normalize_prefix(s(v, "ecrRepositoryPrefix").unwrap_or_default());
        let row = self
            .pull_through
            .store()
            .ptc_rule_delete(&account, &prefix)
            .await?
            .ok_or_else(|| rule_not_found(&prefix, &account))?;
        self.pull_through.invalidate(&account);
        let mut out = with_url(rule_json(&row), &row);
        out["createdAt"] = ts(row.created_at);
        Ok(out)
    }

    pub(super) async fn validate_pull_through_cache_rule(&self, ctx: &Ctx, v: &Value) -> EcrResult<Value> {
        let account = ctx.account.clone();
        let prefix = rules::normalize_prefix(s(v, "ecrRepositoryPrefix").unwrap_or_default());
        let rule = self
            .pull_through
            .store()
            .ptc_rule_get(&account, &prefix)
            .await?
            .ok_or_else(|| rule_not_found(&prefix, &account))?;
        let result = self.pull_through.validate(&rule).await;
        let mut out = with_url(rule_json(&rule), &rule);
        out["isValid"] = json!(result.is_ok());
        if let Err(failure) = result {
            out["failure"] = json!(failure);
        }
        Ok(out)
    }
}
