//! The authenticated caller of an API request.

use std::time::{SystemTime, UNIX_EPOCH};

use kura_auth::token::{self, TokenClaims};
use kura_store::control::AccessKeyRow;

/// How long a registry token lives (ECR: 12 hours).
pub const TOKEN_LIFETIME_SECS: u64 = 12 * 3600;

/// The authenticated caller of a request: the owner of the access key it
/// authenticated with (directly, or through a registry token of that key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// Account (registry) of the principal.
    pub account: String,
    /// ARN of the principal (`arn:aws:iam::<account>:root` for the root
    /// key), for messages and logs. Authorization never parses it.
    pub principal_arn: String,
    /// The principal's unique id, as recorded on the key (see
    /// [`AccessKeyRow::principal_id`]): what authorization resolves.
    pub principal_id: String,
    /// The access key used.
    pub access_key_id: String,
    /// For temporary credentials: when they were issued (ms since the
    /// epoch), the request's `aws:TokenIssueTime`.
    pub token_issued_at: Option<i64>,
}

impl Caller {
    /// The caller an access key authenticates; `None` for a key without a
    /// recorded owner (it authenticates nobody).
    pub fn from_key(key: AccessKeyRow) -> Option<Caller> {
        if key.principal_id.is_empty() {
            return None;
        }
        Some(Caller {
            token_issued_at: key.session_token_hash.is_some().then_some(key.created_at),
            account: key.account,
            principal_arn: key.principal_arn,
            principal_id: key.principal_id,
            access_key_id: key.access_key_id,
        })
    }
}

impl Caller {
    /// Issue a registry token for this caller on `account`'s registry,
    /// signed with `token_key`: the password docker uses with user `AWS`
    /// (from ECR's and ECR Public's `GetAuthorizationToken`). Returns the
    /// token and when it expires (epoch seconds).
    pub fn registry_token(&self, token_key: &[u8], account: &str) -> (String, u64) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let claims = TokenClaims {
            account: account.to_string(),
            principal_arn: self.principal_arn.clone(),
            access_key_id: self.access_key_id.clone(),
            issued_at: now,
            expires_at: now + TOKEN_LIFETIME_SECS,
        };
        (token::issue(token_key, &claims), claims.expires_at)
    }
}
