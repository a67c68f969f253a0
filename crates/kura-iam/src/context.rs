//! The request being authorized: who, what, on which resource, and the
//! condition keys.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::arn::Arn;
use crate::time::{format_rfc3339, format_rfc3339_millis};

/// What kind of identity made the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PrincipalKind {
    /// An IAM user (`arn:aws:iam::ACCT:user/NAME`).
    User,
    /// An IAM role itself (`arn:aws:iam::ACCT:role/NAME`).
    Role,
    /// A session of an assumed role (`arn:aws:sts::ACCT:assumed-role/ROLE/SESSION`).
    AssumedRole,
    /// The account root (`arn:aws:iam::ACCT:root`).
    Root,
    /// An unauthenticated caller.
    Anonymous,
}

impl PrincipalKind {
    /// The value of `aws:PrincipalType` for this kind.
    pub fn principal_type(self) -> &'static str {
        match self {
            PrincipalKind::User => "User",
            PrincipalKind::Role | PrincipalKind::AssumedRole => "AssumedRole",
            PrincipalKind::Root => "Account",
            PrincipalKind::Anonymous => "Anonymous",
        }
    }
}

/// The identity that made a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The 12-digit account the identity belongs to (empty for anonymous).
    pub account: String,
    /// The identity's ARN (empty for anonymous).
    pub arn: String,
    /// The unique id (`aws:userid`): the account id for a root, `ROLEID:SESSION`
    /// for a role session.
    pub userid: String,
    /// The friendly user name (`aws:username`), for IAM users only.
    pub username: Option<String>,
    /// What kind of identity this is.
    pub kind: PrincipalKind,
    /// The identity's tags (`aws:PrincipalTag/KEY`).
    pub tags: BTreeMap<String, String>,
}

impl Principal {
    /// The root of `account`.
    pub fn root(account: &str) -> Self {
        Principal {
            account: account.to_string(),
            arn: format!("arn:aws:iam::{account}:root"),
            userid: account.to_string(),
            username: None,
            kind: PrincipalKind::Root,
            tags: BTreeMap::new(),
        }
    }

    /// The IAM user `name` (no path) of `account`; its userid is the name.
    pub fn user(account: &str, name: &str) -> Self {
        Principal {
            account: account.to_string(),
            arn: format!("arn:aws:iam::{account}:user/{name}"),
            userid: name.to_string(),
            username: Some(name.to_string()),
            kind: PrincipalKind::User,
            tags: BTreeMap::new(),
        }
    }

    /// The IAM role `name` (no path) of `account`, acting as itself.
    pub fn role(account: &str, name: &str) -> Self {
        Principal {
            account: account.to_string(),
            arn: format!("arn:aws:iam::{account}:role/{name}"),
            userid: name.to_string(),
            username: None,
            kind: PrincipalKind::Role,
            tags: BTreeMap::new(),
        }
    }

    /// A session `session` of role `role` in `account`; its userid is
    /// `ROLE:SESSION`.
    pub fn assumed_role(account: &str, role: &str, session: &str) -> Self {
        Principal {
            account: account.to_string(),
            arn: format!("arn:aws:sts::{account}:assumed-role/{role}/{session}"),
            userid: format!("{role}:{session}"),
            username: None,
            kind: PrincipalKind::AssumedRole,
            tags: BTreeMap::new(),
        }
    }

    /// An unauthenticated caller.
    pub fn anonymous() -> Self {
        Principal {
            account: String::new(),
            arn: String::new(),
            userid: "anonymous".to_string(),
            username: None,
            kind: PrincipalKind::Anonymous,
            tags: BTreeMap::new(),
        }
    }

    /// The same principal with one more tag.
    pub fn with_tag(mut self, key: &str, value: &str) -> Self {
        self.tags.insert(key.to_string(), value.to_string());
        self
    }

    /// For a role session, the role's name (from the session ARN); for a
    /// role, its name (the last path segment).
    pub fn role_name(&self) -> Option<&str> {
        let arn = Arn::parse(&self.arn).ok()?;
        match self.kind {
            PrincipalKind::AssumedRole => arn.assumed_role().map(|(role, _)| role),
            PrincipalKind::Role => arn.iam_path_name("role").map(|(_, name)| name),
            _ => None,
        }
    }

    /// `aws:PrincipalArn`: the ARN, except that for a role session it is the
    /// role's ARN (without a path, which a session ARN does not carry).
    pub fn principal_arn(&self) -> String {
        match (self.kind, self.role_name()) {
            (PrincipalKind::AssumedRole, Some(role)) => {
                let partition = Arn::parse(&self.arn).map_or("aws", |a| a.partition);
                format!("arn:{partition}:iam::{}:role/{role}", self.account)
            }
            _ => self.arn.clone(),
        }
    }
}

/// The parts of a request that [`RequestContext::fill_standard_keys`] turns
/// into global condition keys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestEnv {
    /// The request time, in seconds since the epoch (`aws:CurrentTime`,
    /// `aws:EpochTime`).
    pub current_time: Option<i64>,
    /// The caller's address (`aws:SourceIp`).
    pub source_ip: Option<IpAddr>,
    /// Whether the request came over TLS (`aws:SecureTransport`).
    pub secure_transport: Option<bool>,
    /// The target resource's tags (`aws:ResourceTag/KEY`, `ecr:ResourceTag/KEY`).
    pub resource_tags: BTreeMap<String, String>,
    /// Tags the request sets (`aws:RequestTag/KEY`, `aws:TagKeys`).
    pub request_tags: BTreeMap<String, String>,
    /// For temporary credentials (a role session): when they were issued, in
    /// milliseconds since the epoch (`aws:TokenIssueTime`). `None` for
    /// long-term keys, which have no such key.
    pub token_issue_time: Option<i64>,
}

/// One request to authorize.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestContext {
    /// Who is asking.
    pub principal: Principal,
    /// The action, `service:Action` (e.g. `ecr:BatchGetImage`).
    pub action: String,
    /// The ARN of the target resource (`*` for actions without one, such as
    /// `ecr:GetAuthorizationToken`).
    pub resource: String,
    /// The account that owns the resource.
    pub resource_account: String,
    /// Condition keys and their values. Key names compare case-insensitively,
    /// as IAM's do. A key with no values counts as absent.
    pub keys: BTreeMap<String, Vec<String>>,
}

impl RequestContext {
    /// A context without condition keys (see [`RequestContext::fill_standard_keys`]).
    pub fn new(principal: Principal, action: &str, resource: &str, resource_account: &str) -> Self {
        RequestContext {
            principal,
            action: action.to_string(),
            resource: resource.to_string(),
            resource_account: resource_account.to_string(),
            keys: BTreeMap::new(),
        }
    }

    /// Set a condition key, replacing any key of the same name in another case.
    pub fn set_key(&mut self, key: &str, values: Vec<String>) {
        self.keys.retain(|k, _| !k.eq_ignore_ascii_case(key));
        self.keys.insert(key.to_string(), values);
    }

    /// The same context with one more single-valued key.
    pub fn with_key(mut self, key: &str, value: &str) -> Self {
        self.set_key(key, vec![value.to_string()]);
        self
    }

    /// The same context with one more multi-valued key.
    pub fn with_key_values(mut self, key: &str, values: &[&str]) -> Self {
        self.set_key(key, values.iter().map(|v| v.to_string()).collect());
        self
    }

    /// The values of condition key `key` (case-insensitive), or `None` if the
    /// request has none.
    ///
    /// Keys set in [`RequestContext::keys`] come first; when absent there, the
    /// keys that describe the principal (`aws:PrincipalAccount`,
    /// `aws:PrincipalArn`, `aws:PrincipalType`, `aws:userid`, `aws:username`,
    /// `aws:PrincipalTag/KEY`) and `aws:ResourceAccount` are derived from the
    /// context itself.
    pub fn key_values(&self, key: &str) -> Option<Vec<String>> {
        if let Some(v) = self.keys.get(key) {
            return (!v.is_empty()).then(|| v.clone());
        }
        if let Some((_, v)) = self.keys.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)) {
            return (!v.is_empty()).then(|| v.clone());
        }
        self.derived_key(key).map(|v| vec![v])
    }

    fn derived_key(&self, key: &str) -> Option<String> {
        let p = &self.principal;
        let anonymous = p.kind == PrincipalKind::Anonymous;
        let lower = key.to_ascii_lowercase();
        if let Some(tag) = lower.strip_prefix("aws:principaltag/") {
            return p
                .tags
                .iter()
                .find(|(k, _)| k.to_ascii_lowercase() == tag)
                .map(|(_, v)| v.clone());
        }
        match lower.as_str() {
            "aws:principalaccount" if !anonymous => Some(p.account.clone()),
            "aws:principalarn" if !anonymous => Some(p.principal_arn()),
            "aws:principaltype" => Some(p.kind.principal_type().to_string()),
            "aws:userid" if !anonymous => Some(p.userid.clone()),
            "aws:username" => p.username.clone(),
            "aws:resourceaccount" if !self.resource_account.is_empty() => Some(self.resource_account.clone()),
            _ => None,
        }
    }

    /// Fill the standard global condition keys: those that describe the
    /// principal (`aws:PrincipalAccount`, `aws:PrincipalArn`,
    /// `aws:PrincipalType`, `aws:PrincipalTag/KEY`, `aws:userid`,
    /// `aws:username`), `aws:ResourceAccount`, and from `env` the time
    /// (`aws:CurrentTime`, `aws:EpochTime`), `aws:SourceIp`,
    /// `aws:SecureTransport`, the resource's tags (`aws:ResourceTag/KEY` and
    /// `ecr:ResourceTag/KEY`), the request's tags (`aws:RequestTag/KEY`,
    /// `aws:TagKeys`) and, for temporary credentials, `aws:TokenIssueTime`
    /// (ISO 8601 with milliseconds, for the `Date*` operators: AWS's "revoke
    /// older sessions" policy denies `DateLessThan` a time). An anonymous
    /// principal gets only `aws:PrincipalType`.
    pub fn fill_standard_keys(&mut self, env: &RequestEnv) {
        let p = self.principal.clone();
        if p.kind != PrincipalKind::Anonymous {
            self.set_key("aws:PrincipalAccount", vec![p.account.clone()]);
            self.set_key("aws:PrincipalArn", vec![p.principal_arn()]);
            self.set_key("aws:userid", vec![p.userid.clone()]);
            if let Some(name) = &p.username {
                self.set_key("aws:username", vec![name.clone()]);
            }
            for (k, v) in &p.tags {
                self.set_key(&format!("aws:PrincipalTag/{k}"), vec![v.clone()]);
            }
        }
        self.set_key("aws:PrincipalType", vec![p.kind.principal_type().to_string()]);
        if !self.resource_account.is_empty() {
            self.set_key("aws:ResourceAccount", vec![self.resource_account.clone()]);
        }
        if let Some(t) = env.current_time {
            self.set_key("aws:CurrentTime", vec![format_rfc3339(t)]);
            self.set_key("aws:EpochTime", vec![t.to_string()]);
        }
        if let Some(ip) = env.source_ip {
            self.set_key("aws:SourceIp", vec![ip.to_string()]);
        }
        if let (Some(t), false) = (env.token_issue_time, p.kind == PrincipalKind::Anonymous) {
            self.set_key("aws:TokenIssueTime", vec![format_rfc3339_millis(t)]);
        }
        if let Some(secure) = env.secure_transport {
            self.set_key("aws:SecureTransport", vec![secure.to_string()]);
        }
        for (k, v) in &env.resource_tags {
            self.set_key(&format!("aws:ResourceTag/{k}"), vec![v.clone()]);
            self.set_key(&format!("ecr:ResourceTag/{k}"), vec![v.clone()]);
        }
        for (k, v) in &env.request_tags {
            self.set_key(&format!("aws:RequestTag/{k}"), vec![v.clone()]);
        }
        if !env.request_tags.is_empty() {
            self.set_key("aws:TagKeys", env.request_tags.keys().cloned().collect());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{evaluate, Decision, Policy};

    fn session_ctx(issued_ms: Option<i64>) -> RequestContext {
        let mut ctx = RequestContext::new(
            Principal::assumed_role("111122223333", "ci", "build"),
            "ecr:BatchGetImage",
            "arn:aws:ecr:us-east-1:111122223333:repository/app",
            "111122223333",
        );
        ctx.fill_standard_keys(&RequestEnv {
            current_time: Some(1_700_000_100),
            token_issue_time: issued_ms,
            ..Default::default()
        });
        ctx
    }

    #[test]
    fn token_issue_time_is_iso_8601_with_milliseconds() {
        let ctx = session_ctx(Some(1_700_000_000_250));
        assert_eq!(
            ctx.key_values("aws:TokenIssueTime"),
            Some(vec!["2023-11-14T22:13:20.250Z".to_string()])
        );
        // Key names compare case-insensitively.
        assert!(ctx.key_values("AWS:tokenissuetime").is_some());
        // Long-term keys carry none.
        assert_eq!(session_ctx(None).key_values("aws:TokenIssueTime"), None);
    }

    /// AWS's "revoke older sessions" policy: a Deny on everything for
    /// credentials issued before a time, with every `Date*` operator family
    /// reading the key.
    #[test]
    fn revoke_older_sessions() {
        let allow = Policy::parse(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:*","Resource":"*"}]}"#,
        )
        .unwrap();
        let revoke = |op: &str, at: &str| {
            Policy::parse(&format!(
                r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Deny","Action":["*"],"Resource":["*"],
                    "Condition":{{"{op}":{{"aws:TokenIssueTime":"{at}"}}}}}}]}}"#
            ))
            .unwrap()
        };
        let decide = |issued: Option<i64>, p: &Policy| evaluate(&session_ctx(issued), &[&allow, p], None).decision;
        let cut = revoke("DateLessThan", "2023-11-14T22:13:20.500Z");
        // Issued before the cut: denied; at or after it: allowed.
        assert_eq!(decide(Some(1_700_000_000_250), &cut), Decision::ExplicitDeny);
        assert_eq!(decide(Some(1_700_000_000_500), &cut), Decision::Allow);
        assert_eq!(decide(Some(1_700_000_000_750), &cut), Decision::Allow);
        // Second precision, as the console writes it.
        let cut = revoke("DateLessThan", "2023-11-14T22:13:21Z");
        assert_eq!(decide(Some(1_700_000_000_999), &cut), Decision::ExplicitDeny);
        assert_eq!(decide(Some(1_700_000_001_000), &cut), Decision::Allow);
        // Epoch seconds work too, and the other operators.
        let cut = revoke("DateLessThanEquals", "1700000001");
        assert_eq!(decide(Some(1_700_000_001_000), &cut), Decision::ExplicitDeny);
        let after = revoke("DateGreaterThan", "2023-11-14T22:13:20Z");
        assert_eq!(decide(Some(1_700_000_000_250), &after), Decision::ExplicitDeny);
        assert_eq!(decide(Some(1_699_999_999_000), &after), Decision::Allow);
        // A long-term key has no issue time: the condition does not match.
        let cut = revoke("DateLessThan", "2023-11-14T22:13:21Z");
        assert_eq!(decide(None, &cut), Decision::Allow);
        // ...unless the policy says what to do when the key is absent.
        let strict = Policy::parse(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"*","Resource":"*",
                "Condition":{"DateLessThanIfExists":{"aws:TokenIssueTime":"2023-11-14T22:13:21Z"},
                             "Null":{"aws:TokenIssueTime":"true"}}}]}"#,
        )
        .unwrap();
        assert_eq!(decide(None, &strict), Decision::ExplicitDeny);
        assert_eq!(decide(Some(1_700_000_000_000), &strict), Decision::Allow);
    }
}
