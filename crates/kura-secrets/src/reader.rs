//! [`SecretReader`]: Kura itself reading a secret's current string, the way ECR's
//! pull-through cache reads a rule's credentials: on behalf of the account that owns the
//! rule, without an IAM check of a caller, and only ever in that account.

use kura_store::now_millis;

use crate::ops::pick_version;
use crate::Secrets;

/// Why a secret could not be read (never because it does not exist: that is `Ok(None)`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretReadError {
    /// The store failed.
    Store(String),
    /// The stored value does not open with the master key.
    Sealed,
}

impl std::fmt::Display for SecretReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretReadError::Store(e) => write!(f, "the secret store failed: {e}"),
            SecretReadError::Sealed => f.write_str("the secret's value does not open with the master key"),
        }
    }
}

impl std::error::Error for SecretReadError {}

/// A small cloneable handle that reads secrets' current strings for Kura itself.
#[derive(Clone)]
pub struct SecretReader {
    secrets: Secrets,
}

impl SecretReader {
    pub(crate) fn new(secrets: Secrets) -> SecretReader {
        SecretReader { secrets }
    }

    /// The `AWSCURRENT` `SecretString` of the secret `arn_or_name` (a name, a full ARN or a
    /// partial ARN) of `account`. `Ok(None)` when there is no such secret in `account` (an
    /// ARN of another account or region names none), it is scheduled for deletion, or its
    /// current value is binary or missing.
    pub async fn read_secret_string(
        &self,
        account: &str,
        arn_or_name: &str,
    ) -> Result<Option<String>, SecretReadError> {
        let s = &self.secrets;
        let r = match s.resolve(account, arn_or_name, now_millis()).await {
            Ok(r) => r,
            Err(e) if e.kind == "ResourceNotFoundException" => return Ok(None),
            Err(e) => return Err(SecretReadError::Store(e.message)),
        };
        let Some(secret) = r.secret.filter(|x| r.owner == account && x.account == account) else {
            return Ok(None);
        };
        if secret.deleted_at.is_some() {
            return Ok(None);
        }
        let versions = s
            .store
            .secret_versions(&secret.arn)
            .await
            .map_err(|e| SecretReadError::Store(e.to_string()))?;
        let Ok(v) = pick_version(&versions, None, None) else {
            return Ok(None);
        };
        if v.kind != "string" {
            return Ok(None);
        }
        let bytes = s.open(&secret.arn, v).map_err(|_| SecretReadError::Sealed)?;
        s.touch(&secret).await;
        Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
    }
}
