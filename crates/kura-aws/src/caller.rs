//! The authenticated caller of an API request.

use kura_store::control::AccessKeyRow;

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
