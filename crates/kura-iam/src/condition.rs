//! The `Condition` element: operators, their values and how they match.

use std::net::IpAddr;

use crate::context::RequestContext;
use crate::pattern::{arn_match, literal, match_tokens, plain_tokens, Tok};
use crate::time::parse_date;
use crate::vars::expand;

/// A condition operator without its `ForAnyValue:`/`ForAllValues:` prefix and
/// `IfExists` suffix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // The variants are the operator names.
pub enum Operator {
    StringEquals,
    StringNotEquals,
    StringEqualsIgnoreCase,
    StringNotEqualsIgnoreCase,
    StringLike,
    StringNotLike,
    ArnEquals,
    ArnLike,
    ArnNotEquals,
    ArnNotLike,
    NumericEquals,
    NumericNotEquals,
    NumericLessThan,
    NumericLessThanEquals,
    NumericGreaterThan,
    NumericGreaterThanEquals,
    DateEquals,
    DateNotEquals,
    DateLessThan,
    DateLessThanEquals,
    DateGreaterThan,
    DateGreaterThanEquals,
    Bool,
    BinaryEquals,
    IpAddress,
    NotIpAddress,
    Null,
}

const ALL: [Operator; 27] = [
    Operator::StringEquals,
    Operator::StringNotEquals,
    Operator::StringEqualsIgnoreCase,
    Operator::StringNotEqualsIgnoreCase,
    Operator::StringLike,
    Operator::StringNotLike,
    Operator::ArnEquals,
    Operator::ArnLike,
    Operator::ArnNotEquals,
    Operator::ArnNotLike,
    Operator::NumericEquals,
    Operator::NumericNotEquals,
    Operator::NumericLessThan,
    Operator::NumericLessThanEquals,
    Operator::NumericGreaterThan,
    Operator::NumericGreaterThanEquals,
    Operator::DateEquals,
    Operator::DateNotEquals,
    Operator::DateLessThan,
    Operator::DateLessThanEquals,
    Operator::DateGreaterThan,
    Operator::DateGreaterThanEquals,
    Operator::Bool,
    Operator::BinaryEquals,
    Operator::IpAddress,
    Operator::NotIpAddress,
    Operator::Null,
];

impl Operator {
    /// Every operator.
    pub fn all() -> &'static [Operator] {
        &ALL
    }

    /// The policy JSON spelling.
    pub fn name(self) -> &'static str {
        use Operator::*;
        match self {
            StringEquals => "StringEquals",
            StringNotEquals => "StringNotEquals",
            StringEqualsIgnoreCase => "StringEqualsIgnoreCase",
            StringNotEqualsIgnoreCase => "StringNotEqualsIgnoreCase",
            StringLike => "StringLike",
            StringNotLike => "StringNotLike",
            ArnEquals => "ArnEquals",
            ArnLike => "ArnLike",
            ArnNotEquals => "ArnNotEquals",
            ArnNotLike => "ArnNotLike",
            NumericEquals => "NumericEquals",
            NumericNotEquals => "NumericNotEquals",
            NumericLessThan => "NumericLessThan",
            NumericLessThanEquals => "NumericLessThanEquals",
            NumericGreaterThan => "NumericGreaterThan",
            NumericGreaterThanEquals => "NumericGreaterThanEquals",
            DateEquals => "DateEquals",
            DateNotEquals => "DateNotEquals",
            DateLessThan => "DateLessThan",
            DateLessThanEquals => "DateLessThanEquals",
            DateGreaterThan => "DateGreaterThan",
            DateGreaterThanEquals => "DateGreaterThanEquals",
            Bool => "Bool",
            BinaryEquals => "BinaryEquals",
            IpAddress => "IpAddress",
            NotIpAddress => "NotIpAddress",
            Null => "Null",
        }
    }

    /// The operator of this name, compared case-insensitively.
    pub fn from_name(name: &str) -> Option<Operator> {
        ALL.iter().copied().find(|op| op.name().eq_ignore_ascii_case(name))
    }

    /// The operators that match when *none* of the policy values matches.
    pub fn is_negated(self) -> bool {
        self.positive() != self
    }

    /// For a negated operator, the positive operator it negates; else itself.
    pub fn positive(self) -> Operator {
        use Operator::*;
        match self {
            StringNotEquals => StringEquals,
            StringNotEqualsIgnoreCase => StringEqualsIgnoreCase,
            StringNotLike => StringLike,
            ArnNotEquals => ArnEquals,
            ArnNotLike => ArnLike,
            NumericNotEquals => NumericEquals,
            DateNotEquals => DateEquals,
            NotIpAddress => IpAddress,
            other => other,
        }
    }

    /// Whether policy variables are substituted in this operator's values
    /// (the `String*` and `Arn*` families).
    pub fn takes_variables(self) -> bool {
        use Operator::*;
        matches!(
            self.positive(),
            StringEquals | StringEqualsIgnoreCase | StringLike | ArnEquals | ArnLike
        )
    }

    /// Check one policy value for this operator: numbers for `Numeric*`,
    /// dates for `Date*`, `true`/`false` for `Bool` and `Null`, addresses or
    /// CIDR blocks for `IpAddress`.
    pub(crate) fn check_value(self, value: &str) -> Result<(), String> {
        use Operator::*;
        let ok = match self.positive() {
            NumericEquals | NumericLessThan | NumericLessThanEquals | NumericGreaterThan | NumericGreaterThanEquals => {
                parse_number(value).is_some()
            }
            DateEquals | DateLessThan | DateLessThanEquals | DateGreaterThan | DateGreaterThanEquals => {
                parse_date(value).is_some()
            }
            Bool | Null => value.eq_ignore_ascii_case("true") || value.eq_ignore_ascii_case("false"),
            IpAddress => parse_cidr(value).is_some(),
            _ => true,
        };
        if ok {
            Ok(())
        } else {
            let what = match self.positive() {
                Bool | Null => "true or false",
                IpAddress => "an IP address or CIDR block",
                DateEquals | DateLessThan | DateLessThanEquals | DateGreaterThan | DateGreaterThanEquals => {
                    "an ISO 8601 date or epoch seconds"
                }
                _ => "a number",
            };
            Err(format!("{} value {value:?} is not {what}", self.name()))
        }
    }
}

/// `ForAnyValue:` or `ForAllValues:`, for multi-valued condition keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SetQualifier {
    /// `ForAnyValue:`: at least one request value must match; false when the
    /// key is absent or empty.
    ForAnyValue,
    /// `ForAllValues:`: every request value must match; true when the key is
    /// absent or empty.
    ForAllValues,
}

/// A full condition operator name: qualifier, operator, `IfExists`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConditionOperator {
    /// The `ForAnyValue:`/`ForAllValues:` prefix, if any.
    pub qualifier: Option<SetQualifier>,
    /// The operator.
    pub operator: Operator,
    /// The `IfExists` suffix: true when the key is absent.
    pub if_exists: bool,
}

impl ConditionOperator {
    /// Parse a full operator name such as `ForAllValues:StringLikeIfExists`.
    /// `Null` takes no `IfExists`.
    pub fn parse(name: &str) -> Option<ConditionOperator> {
        let (qualifier, rest) = if let Some(r) = strip_prefix_ci(name, "ForAnyValue:") {
            (Some(SetQualifier::ForAnyValue), r)
        } else if let Some(r) = strip_prefix_ci(name, "ForAllValues:") {
            (Some(SetQualifier::ForAllValues), r)
        } else {
            (None, name)
        };
        if let Some(operator) = Operator::from_name(rest) {
            return Some(ConditionOperator {
                qualifier,
                operator,
                if_exists: false,
            });
        }
        let cut = rest.len().checked_sub("IfExists".len())?;
        let (base, suffix) = (rest.get(..cut)?, rest.get(cut..)?);
        if !suffix.eq_ignore_ascii_case("IfExists") {
            return None;
        }
        let operator = Operator::from_name(base).filter(|op| *op != Operator::Null)?;
        Some(ConditionOperator {
            qualifier,
            operator,
            if_exists: true,
        })
    }

    /// The policy JSON spelling.
    pub fn name(&self) -> String {
        let prefix = match self.qualifier {
            None => "",
            Some(SetQualifier::ForAnyValue) => "ForAnyValue:",
            Some(SetQualifier::ForAllValues) => "ForAllValues:",
        };
        let suffix = if self.if_exists { "IfExists" } else { "" };
        format!("{prefix}{}{suffix}", self.operator.name())
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &s[prefix.len()..])
}

/// One condition: an operator, a key and the policy values (ORed).
///
/// How it evaluates, after IAM's condition-element documentation:
///
/// - The request values of `key` are looked up case-insensitively
///   ([`RequestContext::key_values`]).
/// - `Null`: with `true`, matches when the key is absent; with `false`, when
///   it is present.
/// - Key absent: `IfExists` makes the condition true; otherwise
///   `ForAllValues:` is true and everything else, negated operators
///   included, is false.
/// - Positive operators match when some policy value matches a request
///   value; negated ones (`StringNotEquals`, `NotIpAddress`, ...) when no
///   policy value matches any request value.
/// - `ForAnyValue:` matches when at least one request value satisfies the
///   operator against the policy values, `ForAllValues:` when every one does.
/// - In `String*` and `Arn*` values, policy variables are expanded (version
///   `2012-10-17`); a value whose variable has no value and no default is
///   dropped, and a condition left without values is false.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    /// The operator.
    pub operator: ConditionOperator,
    /// The condition key, e.g. `aws:SourceIp`.
    pub key: String,
    /// The policy values, as text (JSON numbers and booleans are spelled out).
    pub values: Vec<String>,
}

impl Condition {
    /// Whether the request satisfies this condition.
    pub fn matches(&self, ctx: &RequestContext, variables: bool) -> bool {
        let op = self.operator.operator;
        let request = ctx.key_values(&self.key);
        if op == Operator::Null {
            let absent = request.is_none();
            return self.values.iter().any(|v| v.eq_ignore_ascii_case("true") == absent);
        }
        let Some(request) = request else {
            return self.operator.if_exists || self.operator.qualifier == Some(SetQualifier::ForAllValues);
        };
        let policy: Vec<Vec<Tok>> = if op.takes_variables() {
            self.values.iter().filter_map(|v| expand(v, variables, ctx)).collect()
        } else {
            self.values.iter().map(|v| plain_tokens(v)).collect()
        };
        if policy.is_empty() {
            return false;
        }
        let positive = op.positive();
        let negated = op.is_negated();
        let one = |rv: &String| {
            let any = policy.iter().any(|pv| value_matches(positive, pv, rv));
            any != negated
        };
        match (self.operator.qualifier, negated) {
            (Some(SetQualifier::ForAllValues), _) | (None, true) => request.iter().all(one),
            (Some(SetQualifier::ForAnyValue), _) | (None, false) => request.iter().any(one),
        }
    }
}

fn parse_number(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok().filter(|n| n.is_finite())
}

/// Whether request value `rv` matches policy value `pv` under a positive
/// operator.
fn value_matches(op: Operator, pv: &[Tok], rv: &str) -> bool {
    use Operator::*;
    match op {
        StringEquals => literal(pv) == rv,
        StringEqualsIgnoreCase => literal(pv).to_lowercase() == rv.to_lowercase(),
        StringLike => {
            let chars: Vec<char> = rv.chars().collect();
            match_tokens(pv, &chars, false)
        }
        // AWS treats ArnEquals like ArnLike: both honor wildcards.
        ArnEquals | ArnLike => arn_match(pv, rv),
        NumericEquals | NumericLessThan | NumericLessThanEquals | NumericGreaterThan | NumericGreaterThanEquals => {
            match (parse_number(rv), parse_number(&literal(pv))) {
                (Some(r), Some(p)) => match op {
                    NumericEquals => r == p,
                    NumericLessThan => r < p,
                    NumericLessThanEquals => r <= p,
                    NumericGreaterThan => r > p,
                    _ => r >= p,
                },
                _ => false,
            }
        }
        DateEquals | DateLessThan | DateLessThanEquals | DateGreaterThan | DateGreaterThanEquals => {
            match (parse_date(rv), parse_date(&literal(pv))) {
                (Some(r), Some(p)) => match op {
                    DateEquals => r == p,
                    DateLessThan => r < p,
                    DateLessThanEquals => r <= p,
                    DateGreaterThan => r > p,
                    _ => r >= p,
                },
                _ => false,
            }
        }
        Bool => literal(pv).eq_ignore_ascii_case(rv.trim()),
        BinaryEquals => literal(pv) == rv,
        IpAddress => match (parse_cidr(&literal(pv)), rv.trim().parse::<IpAddr>()) {
            (Some(net), Ok(ip)) => cidr_contains(net, ip),
            _ => false,
        },
        // Negated operators and Null never reach here.
        _ => false,
    }
}

/// Parse `a.b.c.d/n`, `x::y/n`, or a bare address (a /32 or /128 block).
pub(crate) fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let s = s.trim();
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => {
            if l.is_empty() || l.len() > 3 || !l.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            (a, Some(l.parse::<u8>().ok()?))
        }
        None => (s, None),
    };
    let ip: IpAddr = addr.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = len.unwrap_or(max);
    (len <= max).then_some((ip, len))
}

fn cidr_contains((net, len): (IpAddr, u8), ip: IpAddr) -> bool {
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len))
            };
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_names() {
        for op in Operator::all() {
            assert_eq!(Operator::from_name(op.name()), Some(*op));
        }
        let c = ConditionOperator::parse("ForAllValues:StringLikeIfExists").unwrap();
        assert_eq!(c.qualifier, Some(SetQualifier::ForAllValues));
        assert_eq!(c.operator, Operator::StringLike);
        assert!(c.if_exists);
        assert_eq!(c.name(), "ForAllValues:StringLikeIfExists");
        assert!(ConditionOperator::parse("NullIfExists").is_none());
        assert!(ConditionOperator::parse("StringSortOf").is_none());
        assert!(ConditionOperator::parse("IfExists").is_none());
        assert!(ConditionOperator::parse("ForAnyValue:").is_none());
        assert!(ConditionOperator::parse("é").is_none());
    }

    #[test]
    fn cidrs() {
        let c = |n: &str, ip: &str| cidr_contains(parse_cidr(n).unwrap(), ip.parse().unwrap());
        assert!(c("203.0.113.0/24", "203.0.113.9"));
        assert!(!c("203.0.113.0/24", "203.0.114.9"));
        assert!(c("0.0.0.0/0", "8.8.8.8"));
        assert!(c("10.0.0.1", "10.0.0.1"));
        assert!(c("2001:db8::/32", "2001:db8:1::1"));
        assert!(!c("2001:db8::/32", "2001:db9::1"));
        assert!(!c("2001:db8::/32", "203.0.113.9"));
        assert!(parse_cidr("10.0.0.0/33").is_none());
        assert!(parse_cidr("10.0.0.0/").is_none());
        assert!(parse_cidr("nope").is_none());
    }
}
