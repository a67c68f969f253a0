//! The IAM policy language: parsing, validation and evaluation.
//!
//! This crate is pure: no I/O, no clock, no storage. The caller passes policy
//! text and a description of one request ([`RequestContext`]); the crate says
//! whether the text is a valid policy ([`Policy::parse`], [`Policy::parse_with`])
//! and whether the policies allow the request ([`evaluate`]).
//!
//! It follows the IAM User Guide's "IAM JSON policy element reference" and
//! "Policy evaluation logic" chapters (paraphrased in the doc comments here,
//! never quoted), as far as a container registry needs them:
//!
//! - The grammar: `Version`, `Id`, `Statement` (a list or a single object) with
//!   `Sid`, `Effect`, `Action`/`NotAction`, `Resource`/`NotResource`,
//!   `Principal`/`NotPrincipal` and `Condition`.
//! - Wildcards `*` and `?` in actions (case-insensitive) and resources
//!   (case-sensitive); see [`wildcard_match`].
//! - Every condition operator family (`String*`, `Arn*`, `Numeric*`, `Date*`,
//!   `Bool`, `BinaryEquals`, `IpAddress`/`NotIpAddress`, `Null`), their
//!   `...IfExists` forms and the `ForAnyValue:`/`ForAllValues:` set qualifiers;
//!   see [`Condition`].
//! - Policy variables (`${aws:username}`, `${aws:PrincipalTag/team}`, any
//!   `${key}` of the request, the `${*}`, `${?}`, `${$}` escapes and the
//!   `${key, 'default'}` form) in `Resource` and in the values of `String*` and
//!   `Arn*` conditions, for policies of version `2012-10-17`.
//! - The decision: explicit deny wins; within one account an allow from either
//!   an identity policy or the resource policy suffices; across accounts both
//!   sides must allow; see [`evaluate`].
//! - AWS's managed ECR policies by ARN; see [`managed_policy`].
//!
//! # Example
//!
//! ```
//! use kura_iam::{evaluate, Decision, Policy, Principal, RequestContext};
//!
//! let policy = Policy::parse(
//!     r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"ecr:BatchGet*",
//!         "Resource":"arn:aws:ecr:us-east-1:111122223333:repository/${aws:username}/*"}}"#,
//! )
//! .unwrap();
//! let ctx = RequestContext::new(
//!     Principal::user("111122223333", "alice"),
//!     "ecr:BatchGetImage",
//!     "arn:aws:ecr:us-east-1:111122223333:repository/alice/app",
//!     "111122223333",
//! );
//! assert_eq!(evaluate(&ctx, &[&policy], None).decision, Decision::Allow);
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod arn;
mod condition;
mod context;
mod eval;
mod managed;
mod parse;
mod pattern;
mod principal;
mod time;
mod vars;

pub use arn::{is_account_id, Arn, ArnError};
pub use condition::{Condition, ConditionOperator, Operator, SetQualifier};
pub use context::{Principal, PrincipalKind, RequestContext, RequestEnv};
pub use eval::{evaluate, Decision, Evaluation, PolicySource, StatementRef};
pub use managed::{
    managed_policy, managed_policy_names, managed_policy_text, AMAZON_EC2_CONTAINER_REGISTRY_FULL_ACCESS,
    AMAZON_EC2_CONTAINER_REGISTRY_POWER_USER, AMAZON_EC2_CONTAINER_REGISTRY_READ_ONLY,
};
pub use parse::{
    ParseOptions, SizeCount, SizeLimit, ECR_REPOSITORY_POLICY_MAX_CHARS, IAM_INLINE_GROUP_POLICY_MAX_CHARS,
    IAM_INLINE_ROLE_POLICY_MAX_CHARS, IAM_INLINE_USER_POLICY_MAX_CHARS, IAM_MANAGED_POLICY_MAX_CHARS,
};
pub use pattern::wildcard_match;
pub use time::{format_rfc3339, format_rfc3339_millis, parse_date};

/// A parsed and validated policy document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// `Version`: which language version the document uses.
    pub version: Version,
    /// `Id`: an optional identifier, kept but never interpreted.
    pub id: Option<String>,
    /// `Statement`: the statements, in document order.
    pub statements: Vec<Statement>,
}

/// The policy language version (`Version`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    /// `2012-10-17`: the current language, with policy variables.
    V2012_10_17,
    /// `2008-10-17`: the old language; `${...}` is plain text there. Also the
    /// version of a document without a `Version` field.
    V2008_10_17,
}

impl Version {
    /// The policy JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V2012_10_17 => "2012-10-17",
            Version::V2008_10_17 => "2008-10-17",
        }
    }

    /// Whether `${...}` policy variables are substituted in this version.
    pub fn has_variables(self) -> bool {
        self == Version::V2012_10_17
    }
}

/// Which kind of policy a document is, for the checks that differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PolicyKind {
    /// Attached to a user, group or role: no `Principal`/`NotPrincipal`, and
    /// `Resource` or `NotResource` is required.
    Identity,
    /// Attached to a resource (an ECR repository policy): `Principal` or
    /// `NotPrincipal` is required; `Resource` is optional and defaults to the
    /// resource the policy is attached to.
    Resource,
}

/// One statement of a policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    /// `Sid`: an optional statement identifier.
    pub sid: Option<String>,
    /// `Effect`.
    pub effect: Effect,
    /// `Principal` or `NotPrincipal`, if present.
    pub principal: Option<PrincipalSpec>,
    /// `Action` or `NotAction`.
    pub action: ActionSpec,
    /// `Resource` or `NotResource`, if present (`None` means "the resource this
    /// policy is attached to", i.e. any resource the caller asks about).
    pub resource: Option<ResourceSpec>,
    /// `Condition`, flattened: one entry per operator and key, all ANDed.
    pub conditions: Vec<Condition>,
}

/// `Effect`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Effect {
    /// `Allow`.
    Allow,
    /// `Deny`.
    Deny,
}

impl Effect {
    /// The policy JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Allow => "Allow",
            Effect::Deny => "Deny",
        }
    }
}

/// `Action` (the statement covers these actions) or `NotAction` (it covers
/// every action except these). Each entry is `*` or `service:pattern`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ActionSpec {
    /// `Action`.
    Action(Vec<String>),
    /// `NotAction`.
    NotAction(Vec<String>),
}

/// `Resource` or `NotResource`. Each entry is `*` or an ARN pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResourceSpec {
    /// `Resource`.
    Resource(Vec<String>),
    /// `NotResource`.
    NotResource(Vec<String>),
}

/// `Principal` or `NotPrincipal`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrincipalSpec {
    /// `Principal`.
    Principal(Principals),
    /// `NotPrincipal`.
    NotPrincipal(Principals),
}

/// The principals a `Principal` or `NotPrincipal` element names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Principals {
    /// `"*"`: everyone, anonymous callers included.
    pub any: bool,
    /// `AWS`: `*`, 12-digit account ids, account root, user, role,
    /// assumed-role session and federated-user ARNs, or unique ids.
    pub aws: Vec<String>,
    /// `Service`: accepted, but no Kura caller is a service, so never matched.
    pub service: Vec<String>,
    /// `Federated`: accepted, never matched.
    pub federated: Vec<String>,
    /// `CanonicalUser`: accepted, never matched.
    pub canonical_user: Vec<String>,
}

/// Why a policy document was refused.
///
/// `message` reads like IAM's: `Invalid policy document: <reason>`, where the
/// reason names the place, e.g. `Statement[1]: Action and NotAction are
/// mutually exclusive` (statement indexes count from 0).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PolicyError {
    /// The whole message, prefix included.
    pub message: String,
}

/// The prefix of every [`PolicyError`] message.
pub const ERROR_PREFIX: &str = "Invalid policy document: ";

impl PolicyError {
    pub(crate) fn new(reason: impl std::fmt::Display) -> Self {
        PolicyError {
            message: format!("{ERROR_PREFIX}{reason}"),
        }
    }

    /// The reason alone, without the common prefix.
    pub fn reason(&self) -> &str {
        self.message.strip_prefix(ERROR_PREFIX).unwrap_or(&self.message)
    }
}
