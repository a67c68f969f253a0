//! The registry's signing configuration (`PutSigningConfiguration`,
//! `GetSigningConfiguration`, `DeleteSigningConfiguration`) and
//! `DescribeImageSigningStatus`.
//!
//! The configuration is validated (by the model: at most 10 rules, the
//! signer profile ARN's pattern, 1-100 `WILDCARD_MATCH` filters of
//! repository-name shape), stored as one control-store setting per account
//! and echoed as ECR echoes it. Kura has no AWS Signer and does not sign on
//! push, and says so: an image pushed after the configuration, in a
//! repository a rule matches, has one status per matching signing profile,
//! `FAILED` with failure code [`NOT_SIGNED_CODE`]; images pushed before the
//! configuration, or in repositories no rule matches, have none (as in ECR,
//! which signs only what is pushed after a rule covers it).

use kura_store::ControlStore;

use super::*;

/// The control-store setting holding an account's signing configuration.
pub const SETTING: &str = "signing-configuration";
/// The failure code of every signing status: Kura does not sign images.
pub const NOT_SIGNED_CODE: &str = "SIGNING_NOT_SUPPORTED";
/// The failure reason that goes with [`NOT_SIGNED_CODE`].
pub const NOT_SIGNED_REASON: &str =
    "Kura does not sign images: no signature was generated for this image with this signing profile";

/// The stored configuration and when it was put (epoch ms).
#[derive(serde::Serialize, serde::Deserialize)]
struct Stored {
    config: Value,
    at: i64,
}

async fn load(control: &dyn ControlStore, account: &str) -> EcrResult<Option<Stored>> {
    match control.setting_get(account, SETTING).await? {
        Some(text) if !text.is_empty() => serde_json::from_str(&text).map(Some).map_err(|e| {
            tracing::error!(account, error = %e, "unreadable signing configuration");
            EcrError::server()
        }),
        _ => Ok(None),
    }
}

fn not_found(account: &str) -> EcrError {
    EcrError::new(
        "SigningConfigurationNotFoundException",
        format!("The signing configuration does not exist in the registry with id '{account}'"),
    )
}

/// The configuration as ECR echoes it: rules with their profile ARN, and
/// their filters only when given.
fn normalized(v: &Value) -> Value {
    let rules: Vec<Value> = v
        .get("rules")
        .and_then(Value::as_array)
        .map(|rules| {
            rules
                .iter()
                .map(|r| {
                    let mut out =
                        json!({"signingProfileArn": r.get("signingProfileArn").cloned().unwrap_or(Value::Null)});
                    if let Some(f) = r.get("repositoryFilters").and_then(Value::as_array) {
                        out["repositoryFilters"] = Value::Array(
                            f.iter()
                                .map(|f| json!({"filter": f.get("filter"), "filterType": f.get("filterType")}))
                                .collect(),
                        );
                    }
                    out
                })
                .collect()
        })
        .unwrap_or_default();
    json!({"rules": rules})
}

/// Whether `rule` covers repository `repo`: no filters cover every
/// repository; else one `WILDCARD_MATCH` filter must match the whole name.
fn rule_covers(rule: &Value, repo: &str) -> bool {
    match rule.get("repositoryFilters").and_then(Value::as_array) {
        None => true,
        Some(filters) => filters.iter().any(|f| {
            f.get("filter")
                .and_then(Value::as_str)
                .is_some_and(|p| kura_iam::wildcard_match(p, repo, false))
        }),
    }
}

impl Ecr {
    pub(super) async fn put_signing_configuration(&self, ctx: &Ctx, v: &Value) -> EcrResult<Value> {
        let config = normalized(v.get("signingConfiguration").unwrap_or(&Value::Null));
        let stored = Stored {
            config: config.clone(),
            at: kura_store::now_millis(),
        };
        self.control
            .setting_put(
                &ctx.account,
                SETTING,
                &serde_json::to_string(&stored).unwrap_or_default(),
            )
            .await?;
        Ok(json!({"signingConfiguration": config}))
    }

    pub(super) async fn get_signing_configuration(&self, ctx: &Ctx, delete: bool) -> EcrResult<Value> {
        let account = &ctx.account;
        let _guard = self.settings_lock.lock().await;
        let stored = load(self.control.as_ref(), account)
            .await?
            .ok_or_else(|| not_found(account))?;
        if delete {
            self.control.setting_put(account, SETTING, "").await?;
        }
        Ok(json!({"registryId": account, "signingConfiguration": stored.config}))
    }

    pub(super) async fn describe_image_signing_status(&self, ctx: &Ctx, v: &Value) -> EcrResult<Value> {
        let (account, name, repo) = self.target(ctx, v).await?;
        let id = v.get("imageId").cloned().unwrap_or(json!({}));
        let digest = match self.resolve(repo.id, &id).await? {
            Ok(d) => d,
            Err(("ImageNotFound", _)) => return Err(image_not_found(&id, name.as_str(), &account)),
            Err((_, reason)) => return Err(EcrError::invalid_parameter(reason)),
        };
        let pushed_at = self
            .meta
            .image_get(repo.id, &digest)
            .await?
            .map(|i| i.pushed_at)
            .unwrap_or_default();
        let mut statuses: Vec<Value> = Vec::new();
        if let Some(stored) = load(self.control.as_ref(), &account).await? {
            if pushed_at >= stored.at {
                let rules = stored.config["rules"].as_array().cloned().unwrap_or_default();
                for rule in rules.iter().filter(|r| rule_covers(r, name.as_str())) {
                    let profile = rule["signingProfileArn"].clone();
                    if statuses.iter().any(|s| s["signingProfileArn"] == profile) {
                        continue;
                    }
                    statuses.push(json!({
                        "signingProfileArn": profile,
                        "status": "FAILED",
                        "failureCode": NOT_SIGNED_CODE,
                        "failureReason": NOT_SIGNED_REASON,
                    }));
                }
            }
        }
        Ok(json!({
            "repositoryName": name.as_str(),
            "imageId": image_id(Some(&digest), s(&id, "imageTag")),
            "registryId": account,
            "signingStatuses": statuses,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_cover_repositories_by_whole_name_wildcards() {
        let all = json!({"signingProfileArn": "p"});
        assert!(rule_covers(&all, "anything/at-all"));
        let prod = json!({"signingProfileArn": "p", "repositoryFilters": [
            {"filter": "prod/*", "filterType": "WILDCARD_MATCH"},
            {"filter": "web", "filterType": "WILDCARD_MATCH"}]});
        assert!(rule_covers(&prod, "prod/api"));
        assert!(rule_covers(&prod, "web"));
        assert!(!rule_covers(&prod, "webapp"));
        assert!(!rule_covers(&prod, "dev/prod/api"));
    }
}
