//! Where a rule's upstream credentials come from: a Secrets Manager secret
//! named `ecr-pullthroughcache/…` of the rule's account, holding
//! `{"username": …, "accessToken": …}` (ECR's format). For an `ecr` upstream
//! (another ECR-compatible registry) the username is an access key id and the
//! access token its secret key; an optional `"region"` names the region to
//! sign for.

use std::collections::HashMap;
use std::sync::Mutex;

/// Reads secret strings of an account. The deployment connects its Secrets
/// Manager here; tests use [`StaticSecrets`].
#[async_trait::async_trait]
pub trait CredentialSource: Send + Sync + 'static {
    /// The secret string of the secret `arn` of `account`: Ok(None) when the
    /// account has no such secret (or it is deleted); Err when it could not
    /// be read.
    async fn secret_string(&self, account: &str, arn: &str) -> Result<Option<String>, String>;
}

/// The credentials a secret holds.
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamCredentials {
    /// The user name (for `ecr`: the access key id).
    pub username: String,
    /// The password or token (for `ecr`: the secret access key).
    pub access_token: String,
    /// For `ecr`: the region to sign the token exchange for.
    pub region: Option<String>,
}

impl std::fmt::Debug for UpstreamCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamCredentials")
            .field("username", &self.username)
            .field("access_token", &"<redacted>")
            .finish()
    }
}

impl UpstreamCredentials {
    /// Parse a secret string; the error says what is wrong without quoting it.
    pub fn parse(secret: &str) -> Result<Self, String> {
        let v: serde_json::Value = serde_json::from_str(secret)
            .map_err(|_| "the secret is not a JSON object with username and accessToken".to_string())?;
        let field = |k: &str| v.get(k).and_then(serde_json::Value::as_str).filter(|s| !s.is_empty());
        let (Some(username), Some(access_token)) = (field("username"), field("accessToken")) else {
            return Err("the secret must hold non-empty \"username\" and \"accessToken\" strings".into());
        };
        Ok(UpstreamCredentials {
            username: username.to_string(),
            access_token: access_token.to_string(),
            region: field("region").map(str::to_string),
        })
    }
}

/// The prefix every pull-through cache secret's name has (ECR's rule).
pub const SECRET_NAME_PREFIX: &str = "ecr-pullthroughcache/";

/// Whether `arn` names a Secrets Manager secret whose name starts with
/// `ecr-pullthroughcache/` (the model's pattern checks the same on input).
pub fn is_cache_secret_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(7, ':').collect();
    parts.len() == 7
        && parts[0] == "arn"
        && parts[2] == "secretsmanager"
        && parts[5] == "secret"
        && parts[6].starts_with(SECRET_NAME_PREFIX)
        && parts[6].len() > SECRET_NAME_PREFIX.len()
}

/// Secrets held in memory, keyed by (account, ARN): for tests and for
/// deployments without Secrets Manager.
#[derive(Default)]
pub struct StaticSecrets {
    secrets: Mutex<HashMap<(String, String), String>>,
}

impl StaticSecrets {
    /// Store (or replace) a secret.
    pub fn put(&self, account: &str, arn: &str, value: &str) {
        self.secrets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((account.to_string(), arn.to_string()), value.to_string());
    }

    /// Delete a secret.
    pub fn delete(&self, account: &str, arn: &str) {
        self.secrets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(account.to_string(), arn.to_string()));
    }
}

#[async_trait::async_trait]
impl CredentialSource for StaticSecrets {
    async fn secret_string(&self, account: &str, arn: &str) -> Result<Option<String>, String> {
        Ok(self
            .secrets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(account.to_string(), arn.to_string()))
            .cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_parse_and_never_print_the_token() {
        let c = UpstreamCredentials::parse(r#"{"username":"u","accessToken":"hunter2"}"#).unwrap();
        assert_eq!((c.username.as_str(), c.access_token.as_str()), ("u", "hunter2"));
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(UpstreamCredentials::parse("hunter2").is_err());
        let e = UpstreamCredentials::parse(r#"{"username":"u","password":"hunter2"}"#).unwrap_err();
        assert!(!e.contains("hunter2"));
        assert!(UpstreamCredentials::parse(r#"{"username":"","accessToken":"x"}"#).is_err());
    }

    #[test]
    fn only_cache_secrets_are_taken() {
        assert!(is_cache_secret_arn(
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:ecr-pullthroughcache/hub-AbCdEf"
        ));
        assert!(!is_cache_secret_arn(
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-AbCdEf"
        ));
        assert!(!is_cache_secret_arn(
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:ecr-pullthroughcache/"
        ));
        assert!(!is_cache_secret_arn(
            "arn:aws:iam::123456789012:role/ecr-pullthroughcache/x"
        ));
    }
}
