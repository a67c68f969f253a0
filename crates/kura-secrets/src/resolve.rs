//! A `SecretId` to a secret: a name (in the caller's account), a full ARN (with the random
//! suffix) or a partial ARN (without it), as Secrets Manager takes them.

use kura_aws::AwsResult;
use kura_store::secrets::SecretRow;

use crate::{not_found, Secrets};

/// What a `SecretId` names.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// The account that owns (or would own) the secret.
    pub owner: String,
    /// The ARN to authorize against: the secret's own, or (when there is none) the ARN the
    /// id names, without a suffix.
    pub arn: String,
    /// The secret, if it exists (and is not purged).
    pub secret: Option<SecretRow>,
}

/// The parts of a Secrets Manager secret ARN: (region, account, what follows `secret:`).
pub fn parse_arn(id: &str) -> Option<(&str, &str, &str)> {
    let mut parts = id.splitn(7, ':');
    let (arn, partition, service, region, account, kind, rest) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    let account_ok = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
    (arn == "arn"
        && !partition.is_empty()
        && service == "secretsmanager"
        && kind == "secret"
        && account_ok
        && !rest.is_empty())
    .then_some((region, account, rest))
}

/// Whether `name` is a valid secret name (Secrets Manager's characters; the model bounds
/// its length).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || "/_+=.@-".contains(c))
}

impl Secrets {
    /// The ARN of a secret called `name` of `account` before its suffix.
    pub(crate) fn arn_base(&self, account: &str, name: &str) -> String {
        format!("arn:aws:secretsmanager:{}:{account}:secret:{name}", self.region)
    }

    /// Resolve `id` for a caller in `account`. An ARN of another region, or that is not a
    /// secret ARN at all, names nothing here.
    pub async fn resolve(&self, account: &str, id: &str, now: i64) -> AwsResult<Resolved> {
        if !id.starts_with("arn:") {
            let secret = self.store.secret_by_name(account, id, now).await?;
            return Ok(Resolved {
                owner: account.to_string(),
                arn: secret
                    .as_ref()
                    .map(|s| s.arn.clone())
                    .unwrap_or_else(|| self.arn_base(account, id)),
                secret,
            });
        }
        let Some((region, owner, rest)) = parse_arn(id) else {
            return Err(not_found());
        };
        if region != self.region {
            return Err(not_found());
        }
        // A full ARN first; else the rest is the name (a partial ARN).
        let mut secret = self.store.secret_by_arn(id, now).await?;
        if secret.is_none() {
            secret = self.store.secret_by_name(owner, rest, now).await?;
        }
        Ok(Resolved {
            owner: owner.to_string(),
            arn: secret.as_ref().map(|s| s.arn.clone()).unwrap_or_else(|| id.to_string()),
            secret,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns() {
        assert_eq!(
            parse_arn("arn:aws:secretsmanager:us-east-1:123456789012:secret:a/b-AbC123"),
            Some(("us-east-1", "123456789012", "a/b-AbC123"))
        );
        assert_eq!(parse_arn("arn:aws:secretsmanager:us-east-1:12345678901:secret:a"), None);
        assert_eq!(parse_arn("arn:aws:ecr:us-east-1:123456789012:repository/a"), None);
        assert_eq!(parse_arn("arn:aws:secretsmanager:us-east-1:123456789012:secret:"), None);
        assert_eq!(
            parse_arn("arn:aws:secretsmanager:us-east-1:123456789012:parameter:x"),
            None
        );
        assert!(valid_name("ecr-pullthroughcache/hub"));
        assert!(valid_name("a+b=c.d@e_f-g"));
        assert!(!valid_name("a b"));
        assert!(!valid_name("a:b"));
        assert!(!valid_name(""));
    }
}
