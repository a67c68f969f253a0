//! Parsing and validating policy documents.

use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::condition::{Condition, ConditionOperator};
use crate::principal::classify;
use crate::{
    ActionSpec, Effect, Policy, PolicyError, PolicyKind, PrincipalSpec, Principals, ResourceSpec, Statement, Version,
};

/// The longest ECR repository policy text, in characters (whitespace counts).
pub const ECR_REPOSITORY_POLICY_MAX_CHARS: usize = 10_240;
/// The longest IAM customer managed policy, in non-whitespace characters.
pub const IAM_MANAGED_POLICY_MAX_CHARS: usize = 6_144;
/// The most non-whitespace characters of all inline policies of one IAM user.
pub const IAM_INLINE_USER_POLICY_MAX_CHARS: usize = 2_048;
/// The most non-whitespace characters of all inline policies of one IAM role.
pub const IAM_INLINE_ROLE_POLICY_MAX_CHARS: usize = 10_240;
/// The most non-whitespace characters of all inline policies of one IAM group.
pub const IAM_INLINE_GROUP_POLICY_MAX_CHARS: usize = 5_120;

const TOP_FIELDS: &[&str] = &["Version", "Id", "Statement"];
const STATEMENT_FIELDS: &[&str] = &[
    "Sid",
    "Effect",
    "Principal",
    "NotPrincipal",
    "Action",
    "NotAction",
    "Resource",
    "NotResource",
    "Condition",
];
const PRINCIPAL_FIELDS: &[&str] = &["AWS", "Service", "Federated", "CanonicalUser"];

/// How a size limit counts the policy text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SizeCount {
    /// Bytes of UTF-8.
    Bytes,
    /// Characters (Unicode scalar values), whitespace included (ECR).
    Chars,
    /// Characters other than whitespace (IAM).
    NonWhitespaceChars,
}

/// A limit on the size of the policy text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SizeLimit {
    /// The largest size allowed.
    pub max: usize,
    /// How the size is counted.
    pub count: SizeCount,
}

/// Extra checks for [`Policy::parse_with`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ParseOptions {
    /// The kind of policy, for its own rules (see [`PolicyKind`]); `None`
    /// checks only what every kind shares.
    pub kind: Option<PolicyKind>,
    /// A size limit, if any.
    pub max_size: Option<SizeLimit>,
    /// Accept two statements with the same `Sid` (ECR's repository and
    /// registry policies do; IAM's identity and trust policies refuse them).
    pub duplicate_sids: bool,
}

impl ParseOptions {
    /// An ECR repository (or registry) policy: a resource policy of at most
    /// [`ECR_REPOSITORY_POLICY_MAX_CHARS`] characters, whose statements may
    /// share a `Sid` (ECR accepts that; IAM does not).
    pub fn ecr_repository_policy() -> Self {
        ParseOptions {
            kind: Some(PolicyKind::Resource),
            max_size: Some(SizeLimit {
                max: ECR_REPOSITORY_POLICY_MAX_CHARS,
                count: SizeCount::Chars,
            }),
            duplicate_sids: true,
        }
    }

    /// An IAM customer managed policy: an identity policy of at most
    /// [`IAM_MANAGED_POLICY_MAX_CHARS`] non-whitespace characters.
    pub fn iam_managed_policy() -> Self {
        ParseOptions {
            kind: Some(PolicyKind::Identity),
            max_size: Some(SizeLimit {
                max: IAM_MANAGED_POLICY_MAX_CHARS,
                count: SizeCount::NonWhitespaceChars,
            }),
            duplicate_sids: false,
        }
    }

    /// An IAM user's inline policy: an identity policy of at most
    /// [`IAM_INLINE_USER_POLICY_MAX_CHARS`] non-whitespace characters.
    pub fn iam_inline_user_policy() -> Self {
        ParseOptions {
            kind: Some(PolicyKind::Identity),
            max_size: Some(SizeLimit {
                max: IAM_INLINE_USER_POLICY_MAX_CHARS,
                count: SizeCount::NonWhitespaceChars,
            }),
            duplicate_sids: false,
        }
    }

    /// Only the kind's checks, no size limit.
    pub fn kind(kind: PolicyKind) -> Self {
        ParseOptions {
            kind: Some(kind),
            max_size: None,
            duplicate_sids: false,
        }
    }
}

impl Policy {
    /// Parse and validate a policy document with the checks every kind of
    /// policy shares (see [`Policy::parse_with`]); `Principal` is optional and
    /// no size limit applies.
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        Policy::parse_with(text, &ParseOptions::default())
    }

    /// Parse and validate a policy document.
    ///
    /// What is checked:
    ///
    /// - The size limit of `options`, if any.
    /// - The text is one JSON object with only `Version`, `Id` and
    ///   `Statement`. `Version` is `2012-10-17` or `2008-10-17` (the default
    ///   when absent). `Statement` is required: one statement object or a
    ///   non-empty list of them.
    /// - A statement has only the fields of the grammar; `Effect` is
    ///   required and `Allow` or `Deny`; exactly one of `Action` and
    ///   `NotAction`; at most one of `Resource` and `NotResource`, and of
    ///   `Principal` and `NotPrincipal`; `Sid`s are strings, unique unless
    ///   [`ParseOptions::duplicate_sids`].
    /// - `Action` entries are `*` or `service:action` with a plain service
    ///   prefix (letters, digits, `-`) and a non-empty action that may use `*`
    ///   and `?`. `Resource` entries are `*` or ARNs (`arn:` and six
    ///   components). Lists are non-empty and hold strings only.
    /// - `Principal` is `"*"` or an object of `AWS`, `Service`, `Federated`,
    ///   `CanonicalUser`; `AWS` entries are `*`, account ids or IAM/STS
    ///   principal ARNs without wildcards.
    /// - `Condition` maps known operators (see [`ConditionOperator::parse`])
    ///   to objects of key → value or non-empty list of values; the values
    ///   must suit the operator (numbers, dates, booleans, CIDR blocks).
    /// - With [`PolicyKind::Identity`], no `Principal`/`NotPrincipal` and a
    ///   required `Resource`/`NotResource`; with [`PolicyKind::Resource`], a
    ///   required `Principal`/`NotPrincipal`.
    pub fn parse_with(text: &str, options: &ParseOptions) -> Result<Policy, PolicyError> {
        if let Some(limit) = options.max_size {
            let size = match limit.count {
                SizeCount::Bytes => text.len(),
                SizeCount::Chars => text.chars().count(),
                SizeCount::NonWhitespaceChars => text.chars().filter(|c| !c.is_whitespace()).count(),
            };
            if size > limit.max {
                let unit = match limit.count {
                    SizeCount::Bytes => "bytes",
                    SizeCount::Chars => "characters",
                    SizeCount::NonWhitespaceChars => "non-whitespace characters",
                };
                return Err(PolicyError::new(format!(
                    "the policy has {size} {unit}; at most {} are allowed",
                    limit.max
                )));
            }
        }
        let doc: Value = serde_json::from_str(text).map_err(|e| PolicyError::new(format!("not valid JSON: {e}")))?;
        let Value::Object(top) = &doc else {
            return Err(PolicyError::new("the policy must be a JSON object"));
        };
        check_fields(top, TOP_FIELDS, "the policy")?;
        let version = match top.get("Version") {
            None => Version::V2008_10_17,
            Some(Value::String(v)) if v == "2012-10-17" => Version::V2012_10_17,
            Some(Value::String(v)) if v == "2008-10-17" => Version::V2008_10_17,
            Some(other) => {
                return Err(PolicyError::new(format!(
                    "Version must be \"2012-10-17\" or \"2008-10-17\" (got {other})"
                )))
            }
        };
        let id = match top.get("Id") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(PolicyError::new("Id must be a string")),
        };
        let statements = match top.get("Statement") {
            None => return Err(PolicyError::new("Statement is required")),
            Some(Value::Array(list)) if list.is_empty() => return Err(PolicyError::new("Statement must not be empty")),
            Some(Value::Array(list)) => list
                .iter()
                .enumerate()
                .map(|(i, s)| statement(s, &format!("Statement[{i}]"), options.kind))
                .collect::<Result<Vec<_>, _>>()?,
            Some(single @ Value::Object(_)) => vec![statement(single, "Statement", options.kind)?],
            Some(_) => return Err(PolicyError::new("Statement must be an object or a list of objects")),
        };
        let mut sids = HashSet::new();
        for (i, st) in statements.iter().enumerate().filter(|_| !options.duplicate_sids) {
            if let Some(sid) = &st.sid {
                if !sid.is_empty() && !sids.insert(sid.as_str()) {
                    return Err(PolicyError::new(format!(
                        "Statement[{i}]: Sid {sid:?} is used twice; statement ids must be unique"
                    )));
                }
            }
        }
        Ok(Policy {
            version,
            id,
            statements,
        })
    }

    /// Check an already parsed policy against the rules of `kind` (see
    /// [`Policy::parse_with`]).
    pub fn validate_kind(&self, kind: PolicyKind) -> Result<(), PolicyError> {
        for (i, st) in self.statements.iter().enumerate() {
            kind_rules(
                st.principal.is_some(),
                st.resource.is_some(),
                kind,
                &format!("Statement[{i}]"),
            )?;
        }
        Ok(())
    }
}

fn check_fields(obj: &Map<String, Value>, allowed: &[&str], path: &str) -> Result<(), PolicyError> {
    for key in obj.keys() {
        if !allowed.contains(&key.as_str()) {
            return Err(PolicyError::new(format!(
                "{path} has an unknown field {key:?} (allowed: {})",
                allowed.join(", ")
            )));
        }
    }
    Ok(())
}

fn kind_rules(principal: bool, resource: bool, kind: PolicyKind, path: &str) -> Result<(), PolicyError> {
    match kind {
        PolicyKind::Identity if principal => Err(PolicyError::new(format!(
            "{path}: Principal and NotPrincipal are not allowed in an identity policy"
        ))),
        PolicyKind::Identity if !resource => Err(PolicyError::new(format!(
            "{path}: Resource or NotResource is required in an identity policy"
        ))),
        PolicyKind::Resource if !principal => Err(PolicyError::new(format!(
            "{path}: Principal or NotPrincipal is required in a resource policy"
        ))),
        _ => Ok(()),
    }
}

/// A string or a non-empty list of strings.
fn string_list(v: &Value, path: &str) -> Result<Vec<String>, PolicyError> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) if items.is_empty() => Err(PolicyError::new(format!("{path} must not be empty"))),
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => Ok(s.clone()),
                other => Err(PolicyError::new(format!(
                    "{path} entries must be strings (got {other})"
                ))),
            })
            .collect(),
        other => Err(PolicyError::new(format!(
            "{path} must be a string or a list of strings (got {other})"
        ))),
    }
}

/// Exactly one of two exclusive fields, if either.
fn one_of<'a>(
    obj: &'a Map<String, Value>,
    a: &str,
    b: &str,
    path: &str,
) -> Result<Option<(bool, &'a Value)>, PolicyError> {
    match (obj.get(a), obj.get(b)) {
        (Some(_), Some(_)) => Err(PolicyError::new(format!("{path}: {a} and {b} are mutually exclusive"))),
        (Some(v), None) => Ok(Some((true, v))),
        (None, Some(v)) => Ok(Some((false, v))),
        (None, None) => Ok(None),
    }
}

fn statement(v: &Value, path: &str, kind: Option<PolicyKind>) -> Result<Statement, PolicyError> {
    let Value::Object(obj) = v else {
        return Err(PolicyError::new(format!("{path} must be an object")));
    };
    check_fields(obj, STATEMENT_FIELDS, path)?;
    let sid = match obj.get("Sid") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(PolicyError::new(format!("{path}: Sid must be a string"))),
    };
    let effect = match obj.get("Effect") {
        None => return Err(PolicyError::new(format!("{path}: Effect is required"))),
        Some(Value::String(s)) if s == "Allow" => Effect::Allow,
        Some(Value::String(s)) if s == "Deny" => Effect::Deny,
        Some(other) => {
            return Err(PolicyError::new(format!(
                "{path}: Effect must be \"Allow\" or \"Deny\" (got {other})"
            )))
        }
    };
    let action = match one_of(obj, "Action", "NotAction", path)? {
        None => return Err(PolicyError::new(format!("{path}: Action or NotAction is required"))),
        Some((positive, v)) => {
            let field = if positive { "Action" } else { "NotAction" };
            let list = string_list(v, &format!("{path}: {field}"))?;
            for a in &list {
                check_action(a).map_err(|why| PolicyError::new(format!("{path}: {field} {a:?} {why}")))?;
            }
            if positive {
                ActionSpec::Action(list)
            } else {
                ActionSpec::NotAction(list)
            }
        }
    };
    let resource = match one_of(obj, "Resource", "NotResource", path)? {
        None => None,
        Some((positive, v)) => {
            let field = if positive { "Resource" } else { "NotResource" };
            let list = string_list(v, &format!("{path}: {field}"))?;
            for r in &list {
                if r != "*" && crate::arn::Arn::parse(r).is_err() {
                    return Err(PolicyError::new(format!(
                        "{path}: {field} {r:?} must be \"*\" or an ARN (arn:partition:service:region:account:resource)"
                    )));
                }
            }
            Some(if positive {
                ResourceSpec::Resource(list)
            } else {
                ResourceSpec::NotResource(list)
            })
        }
    };
    let principal = match one_of(obj, "Principal", "NotPrincipal", path)? {
        None => None,
        Some((positive, v)) => {
            let field = if positive { "Principal" } else { "NotPrincipal" };
            let p = principals(v, &format!("{path}: {field}"))?;
            Some(if positive {
                PrincipalSpec::Principal(p)
            } else {
                PrincipalSpec::NotPrincipal(p)
            })
        }
    };
    let conditions = match obj.get("Condition") {
        None => Vec::new(),
        Some(v) => conditions(v, &format!("{path}: Condition"))?,
    };
    if let Some(kind) = kind {
        kind_rules(principal.is_some(), resource.is_some(), kind, path)?;
    }
    Ok(Statement {
        sid,
        effect,
        principal,
        action,
        resource,
        conditions,
    })
}

fn check_action(a: &str) -> Result<(), &'static str> {
    if a == "*" {
        return Ok(());
    }
    let Some((service, action)) = a.split_once(':') else {
        return Err("must be \"*\" or service:action");
    };
    if service.is_empty() || !service.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err("has an invalid service prefix (letters, digits and '-' only, no wildcards)");
    }
    if action.is_empty() {
        return Err("has an empty action name");
    }
    if !action
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '*' | '?' | '_' | '-'))
    {
        return Err("has an invalid action name (letters, digits, '_', '-', '*', '?' only)");
    }
    Ok(())
}

fn principals(v: &Value, path: &str) -> Result<Principals, PolicyError> {
    match v {
        Value::String(s) if s == "*" => Ok(Principals {
            any: true,
            ..Principals::default()
        }),
        Value::Object(obj) => {
            check_fields(obj, PRINCIPAL_FIELDS, path)?;
            if obj.is_empty() {
                return Err(PolicyError::new(format!("{path} must name at least one principal")));
            }
            let get = |k: &str| -> Result<Vec<String>, PolicyError> {
                obj.get(k)
                    .map(|v| string_list(v, &format!("{path}.{k}")))
                    .transpose()
                    .map(Option::unwrap_or_default)
            };
            let p = Principals {
                any: false,
                aws: get("AWS")?,
                service: get("Service")?,
                federated: get("Federated")?,
                canonical_user: get("CanonicalUser")?,
            };
            for a in &p.aws {
                if classify(a).is_none() {
                    return Err(PolicyError::new(format!(
                        "{path}.AWS has an invalid principal {a:?} (expected \"*\", a 12-digit account id, or an IAM user, role, root or STS session ARN)"
                    )));
                }
            }
            for s in &p.service {
                if s.is_empty() || s.contains(char::is_whitespace) {
                    return Err(PolicyError::new(format!(
                        "{path}.Service has an invalid principal {s:?}"
                    )));
                }
            }
            Ok(p)
        }
        other => Err(PolicyError::new(format!(
            "{path} must be \"*\" or an object such as {{\"AWS\": ...}} (got {other})"
        ))),
    }
}

fn conditions(v: &Value, path: &str) -> Result<Vec<Condition>, PolicyError> {
    let Value::Object(ops) = v else {
        return Err(PolicyError::new(format!("{path} must be an object of operators")));
    };
    let mut out = Vec::new();
    for (name, block) in ops {
        let Some(operator) = ConditionOperator::parse(name) else {
            return Err(PolicyError::new(format!(
                "{path} has an unknown condition operator {name:?}"
            )));
        };
        let Value::Object(keys) = block else {
            return Err(PolicyError::new(format!(
                "{path}.{name} must be an object of condition keys"
            )));
        };
        if keys.is_empty() {
            return Err(PolicyError::new(format!(
                "{path}.{name} must name at least one condition key"
            )));
        }
        for (key, values) in keys {
            let kpath = format!("{path}.{name}.{key}");
            if key.is_empty() || key.contains(char::is_whitespace) {
                return Err(PolicyError::new(format!(
                    "{path}.{name} has an invalid condition key {key:?}"
                )));
            }
            let values = condition_values(values, &kpath)?;
            for v in &values {
                operator
                    .operator
                    .check_value(v)
                    .map_err(|why| PolicyError::new(format!("{kpath}: {why}")))?;
            }
            out.push(Condition {
                operator,
                key: key.clone(),
                values,
            });
        }
    }
    Ok(out)
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn condition_values(v: &Value, path: &str) -> Result<Vec<String>, PolicyError> {
    match v {
        Value::Array(items) if items.is_empty() => Err(PolicyError::new(format!("{path} must not be empty"))),
        Value::Array(items) => items
            .iter()
            .map(|i| {
                scalar(i).ok_or_else(|| {
                    PolicyError::new(format!("{path} values must be strings, numbers or booleans (got {i})"))
                })
            })
            .collect(),
        other => scalar(other).map(|s| vec![s]).ok_or_else(|| {
            PolicyError::new(format!(
                "{path} must be a string, number, boolean or a list of them (got {other})"
            ))
        }),
    }
}
