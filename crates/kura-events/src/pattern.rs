//! The EventBridge event pattern language (pure, no I/O).
//!
//! A pattern is a JSON object shaped like the events it selects. A key whose value is an
//! object descends into the event's object of that name; a key whose value is an array lists
//! the values the event's field may take (any one suffices). Each array element is a plain
//! value (string, number, `true`, `false`, `null`: exact match) or a one-key object naming a
//! content filter: `prefix`, `suffix` (each also `{"equals-ignore-case": ..}`),
//! `equals-ignore-case`, `anything-but` (a value, a list, a prefix, a suffix, a case-blind
//! list or a wildcard), `numeric` (one comparison or a lower and an upper bound), `exists`,
//! `wildcard` (`*` any run of characters, `\*` a literal star) and `cidr`. `"$or": [p, q, ..]`
//! at any level matches when any of its sub-patterns does. Every key of a pattern must match
//! (AND).
//!
//! Events are matched on their leaf values: where the event holds an array, the pattern
//! matches when any element does, and an object pattern against an array of objects matches
//! when one element matches the whole object pattern. A field that is absent matches only
//! `{"exists": false}`.
//!
//! [`Pattern::parse`] validates with EventBridge's rules and explains a refusal the way
//! EventBridge's `InvalidEventPatternException` does ("Event pattern is not valid. Reason:
//! ..."); [`Pattern::matches`] decides one event.

use std::fmt;
use std::net::IpAddr;

use serde_json::{Map, Value};

/// Most nested objects (and `$or` levels) a pattern may hold.
const MAX_DEPTH: usize = 32;
/// Most values one field's array may list.
const MAX_VALUES: usize = 512;
/// Numeric filters work within this magnitude (EventBridge's range).
const NUMERIC_LIMIT: f64 = 5.0e9;

/// A pattern refused: the reason, as `InvalidEventPatternException` phrases it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("Event pattern is not valid. Reason: {0}")]
pub struct PatternError(pub String);

fn bad<T>(reason: impl Into<String>) -> Result<T, PatternError> {
    Err(PatternError(reason.into()))
}

/// A compiled event pattern.
#[derive(Clone, Debug, PartialEq)]
pub struct Pattern {
    root: ObjPattern,
}

/// The keys of one object level: all must match; each `$or` group needs one alternative.
#[derive(Clone, Debug, PartialEq, Default)]
struct ObjPattern {
    fields: Vec<(String, Node)>,
    ors: Vec<Vec<ObjPattern>>,
}

#[derive(Clone, Debug, PartialEq)]
enum Node {
    Leaf(Vec<Matcher>),
    Obj(ObjPattern),
}

/// A plain value to compare for equality.
#[derive(Clone, Debug, PartialEq)]
enum Exact {
    Str(String),
    Num(f64),
    Bool(bool),
    Null,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Cmp {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Clone, Debug, PartialEq)]
enum Matcher {
    Exact(Exact),
    Prefix { text: String, fold: bool },
    Suffix { text: String, fold: bool },
    EqualsIgnoreCase(String),
    Wildcard(Wildcard),
    Numeric(Vec<(Cmp, f64)>),
    Exists(bool),
    Cidr(ipnet::IpNet),
    AnythingBut(AnythingBut),
}

#[derive(Clone, Debug, PartialEq)]
enum AnythingBut {
    Values(Vec<Exact>),
    Prefix(String),
    Suffix(String),
    IgnoreCase(Vec<String>),
    Wildcard(Vec<Wildcard>),
}

/// A wildcard expression split at its unescaped stars.
#[derive(Clone, Debug, PartialEq)]
struct Wildcard {
    parts: Vec<String>,
}

impl Pattern {
    /// Parse and validate a pattern's JSON text.
    pub fn parse(text: &str) -> Result<Pattern, PatternError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| PatternError(format!("Filter is not valid JSON: {e}")))?;
        Pattern::from_value(&value)
    }

    /// Validate a pattern already parsed as JSON.
    pub fn from_value(value: &Value) -> Result<Pattern, PatternError> {
        let Value::Object(map) = value else {
            return bad("Filter is not an object");
        };
        if map.is_empty() {
            return bad("Empty objects are not allowed");
        }
        Ok(Pattern {
            root: compile_obj(map, 1)?,
        })
    }

    /// Whether an event (a JSON object) matches.
    pub fn matches(&self, event: &Value) -> bool {
        match event {
            Value::Object(map) => match_obj(&self.root, map),
            _ => false,
        }
    }

    /// Whether the pattern can match only events whose `field` (a top-level key) is one of
    /// the strings returned (None: no such constraint). Lets a caller skip rules cheaply.
    pub fn required_values(&self, field: &str) -> Option<Vec<&str>> {
        let (_, node) = self.root.fields.iter().find(|(k, _)| k == field)?;
        let Node::Leaf(ms) = node else { return None };
        ms.iter()
            .map(|m| match m {
                Matcher::Exact(Exact::Str(s)) => Some(s.as_str()),
                _ => None,
            })
            .collect()
    }
}

impl fmt::Display for Cmp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Cmp::Eq => "=",
            Cmp::Lt => "<",
            Cmp::Le => "<=",
            Cmp::Gt => ">",
            Cmp::Ge => ">=",
        })
    }
}

fn compile_obj(map: &Map<String, Value>, depth: usize) -> Result<ObjPattern, PatternError> {
    if depth > MAX_DEPTH {
        return bad(format!("Pattern nesting is deeper than {MAX_DEPTH} levels"));
    }
    let mut out = ObjPattern::default();
    for (key, value) in map {
        if key == "$or" {
            out.ors.push(compile_or(value, depth)?);
            continue;
        }
        let node = match value {
            Value::Object(inner) => {
                if inner.is_empty() {
                    return bad(format!("Empty objects are not allowed (at \"{key}\")"));
                }
                Node::Obj(compile_obj(inner, depth + 1)?)
            }
            Value::Array(items) => Node::Leaf(compile_leaf(key, items)?),
            _ => {
                return bad(format!(
                    "Match value for \"{key}\" must be an array or an object; a plain value \
                     goes in an array: [value]"
                ))
            }
        };
        out.fields.push((key.clone(), node));
    }
    Ok(out)
}

fn compile_or(value: &Value, depth: usize) -> Result<Vec<ObjPattern>, PatternError> {
    let Value::Array(alts) = value else {
        return bad("The value of $or must be an array of objects");
    };
    if alts.len() < 2 {
        return bad("$or needs at least two alternatives");
    }
    alts.iter()
        .map(|alt| match alt {
            Value::Object(m) if !m.is_empty() => compile_obj(m, depth + 1),
            Value::Object(_) => bad("Empty objects are not allowed in $or"),
            _ => bad("Each alternative of $or must be an object"),
        })
        .collect()
}

fn compile_leaf(key: &str, items: &[Value]) -> Result<Vec<Matcher>, PatternError> {
    if items.is_empty() {
        return bad(format!("Empty arrays are not allowed (at \"{key}\")"));
    }
    if items.len() > MAX_VALUES {
        return bad(format!("More than {MAX_VALUES} values for \"{key}\""));
    }
    items.iter().map(|item| compile_matcher(key, item)).collect()
}

fn exact(v: &Value) -> Option<Exact> {
    Some(match v {
        Value::String(s) => Exact::Str(s.clone()),
        Value::Number(n) => Exact::Num(n.as_f64()?),
        Value::Bool(b) => Exact::Bool(*b),
        Value::Null => Exact::Null,
        _ => return None,
    })
}

fn compile_matcher(key: &str, item: &Value) -> Result<Matcher, PatternError> {
    if let Some(e) = exact(item) {
        return Ok(Matcher::Exact(e));
    }
    let Value::Object(filter) = item else {
        return bad(format!(
            "Match value must be String, number, true, false, null or a content filter \
             object (at \"{key}\")"
        ));
    };
    let mut entries = filter.iter();
    let (Some((op, arg)), None) = (entries.next(), entries.next()) else {
        return bad(format!(
            "A content filter object must have exactly one key (at \"{key}\")"
        ));
    };
    match op.as_str() {
        "prefix" => {
            let (text, fold) = string_or_fold(op, arg)?;
            Ok(Matcher::Prefix { text, fold })
        }
        "suffix" => {
            let (text, fold) = string_or_fold(op, arg)?;
            Ok(Matcher::Suffix { text, fold })
        }
        "equals-ignore-case" => match arg {
            Value::String(s) => Ok(Matcher::EqualsIgnoreCase(s.to_lowercase())),
            _ => bad("equals-ignore-case match pattern must be a string"),
        },
        "wildcard" => match arg {
            Value::String(s) => Ok(Matcher::Wildcard(Wildcard::parse(s)?)),
            _ => bad("wildcard match pattern must be a string"),
        },
        "exists" => match arg {
            Value::Bool(b) => Ok(Matcher::Exists(*b)),
            _ => bad("exists match pattern must be either true or false"),
        },
        "numeric" => compile_numeric(arg),
        "cidr" => match arg {
            Value::String(s) => s
                .parse::<ipnet::IpNet>()
                .map(|n| Matcher::Cidr(n.trunc()))
                .or_else(|_| bad(format!("Malformed CIDR, one '/' required: {s}"))),
            _ => bad("cidr match pattern must be a string"),
        },
        "anything-but" => compile_anything_but(arg).map(Matcher::AnythingBut),
        other => bad(format!("Unrecognized match type {other}")),
    }
}

/// `"text"` or `{"equals-ignore-case": "text"}` (the argument of prefix and suffix).
fn string_or_fold(op: &str, arg: &Value) -> Result<(String, bool), PatternError> {
    match arg {
        Value::String(s) => Ok((s.clone(), false)),
        Value::Object(m) if m.len() == 1 => match m.get("equals-ignore-case") {
            Some(Value::String(s)) => Ok((s.to_lowercase(), true)),
            _ => bad(format!(
                "{op} match pattern must be a string or an equals-ignore-case object with a \
                 string"
            )),
        },
        _ => bad(format!("{op} match pattern must be a string")),
    }
}

fn compile_numeric(arg: &Value) -> Result<Matcher, PatternError> {
    let Value::Array(parts) = arg else {
        return bad("Value of numeric must be an array");
    };
    if parts.is_empty() || parts.len() % 2 != 0 {
        return bad("Value of numeric must be pairs of operator and number");
    }
    if parts.len() > 4 {
        return bad("Too many elements in numeric expression");
    }
    let mut out = Vec::new();
    for pair in parts.chunks(2) {
        let cmp = match pair[0].as_str() {
            Some("=") => Cmp::Eq,
            Some("<") => Cmp::Lt,
            Some("<=") => Cmp::Le,
            Some(">") => Cmp::Gt,
            Some(">=") => Cmp::Ge,
            _ => return bad(format!("Unrecognized numeric range operator: {}", pair[0])),
        };
        let Some(n) = pair[1].as_f64() else {
            return bad(format!("Value of {cmp} must be a number"));
        };
        if !(-NUMERIC_LIMIT..=NUMERIC_LIMIT).contains(&n) {
            return bad(format!("Value of {cmp} must be between -5.0E9 and 5.0E9 inclusive"));
        }
        out.push((cmp, n));
    }
    if out.len() == 2 {
        let (lo, hi) = (out[0], out[1]);
        if !matches!(lo.0, Cmp::Gt | Cmp::Ge) {
            return bad(format!(
                "Bad numeric range: the first operator must be > or >=, not {}",
                lo.0
            ));
        }
        if !matches!(hi.0, Cmp::Lt | Cmp::Le) {
            return bad(format!(
                "Bad numeric range: the second operator must be < or <=, not {}",
                hi.0
            ));
        }
        if lo.1 >= hi.1 {
            return bad("Bad numeric range: the bottom must be less than the top");
        }
    }
    Ok(Matcher::Numeric(out))
}

fn compile_anything_but(arg: &Value) -> Result<AnythingBut, PatternError> {
    if let Some(e) = exact(arg) {
        if e == Exact::Null || matches!(e, Exact::Bool(_)) {
            return bad("Inside anything-but list, only strings and numbers are allowed");
        }
        return Ok(AnythingBut::Values(vec![e]));
    }
    match arg {
        Value::Array(items) => {
            if items.is_empty() {
                return bad("Empty arrays are not allowed in anything-but");
            }
            if items.len() > MAX_VALUES {
                return bad(format!("More than {MAX_VALUES} values in anything-but"));
            }
            let strings = items.iter().all(Value::is_string);
            let numbers = items.iter().all(Value::is_number);
            if !strings && !numbers {
                return bad("Inside anything-but list, all values must be strings or all must be \
                     numbers");
            }
            Ok(AnythingBut::Values(items.iter().filter_map(exact).collect()))
        }
        Value::Object(m) if m.len() == 1 => {
            let (op, inner) = m.iter().next().expect("one entry");
            match (op.as_str(), inner) {
                ("prefix", Value::String(s)) => Ok(AnythingBut::Prefix(s.clone())),
                ("suffix", Value::String(s)) => Ok(AnythingBut::Suffix(s.clone())),
                ("equals-ignore-case", Value::String(s)) => Ok(AnythingBut::IgnoreCase(vec![s.to_lowercase()])),
                ("equals-ignore-case", Value::Array(xs)) if !xs.is_empty() && xs.iter().all(Value::is_string) => Ok(
                    AnythingBut::IgnoreCase(xs.iter().filter_map(Value::as_str).map(str::to_lowercase).collect()),
                ),
                ("wildcard", Value::String(s)) => Ok(AnythingBut::Wildcard(vec![Wildcard::parse(s)?])),
                ("wildcard", Value::Array(xs)) if !xs.is_empty() && xs.iter().all(Value::is_string) => {
                    Ok(AnythingBut::Wildcard(
                        xs.iter()
                            .filter_map(Value::as_str)
                            .map(Wildcard::parse)
                            .collect::<Result<_, _>>()?,
                    ))
                }
                ("prefix" | "suffix", _) => bad(format!("Value of anything-but {op} must be a string")),
                ("equals-ignore-case" | "wildcard", _) => bad(format!(
                    "Value of anything-but {op} must be a string or a non-empty array of \
                     strings"
                )),
                _ => bad(format!("Unsupported anything-but pattern: {op}")),
            }
        }
        _ => bad("Value of anything-but must be a string, a number, an array or an object"),
    }
}

impl Wildcard {
    fn parse(text: &str) -> Result<Wildcard, PatternError> {
        let mut parts = vec![String::new()];
        let mut chars = text.chars().peekable();
        let mut last_star = false;
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(e @ ('*' | '\\')) => {
                        parts.last_mut().expect("non-empty").push(e);
                        last_star = false;
                    }
                    _ => {
                        return bad(format!(
                            "Invalid escape in wildcard pattern \"{text}\": only \\* and \\\\ \
                             are allowed"
                        ))
                    }
                },
                '*' => {
                    if last_star {
                        return bad(format!("Consecutive wildcard characters are not allowed: \"{text}\""));
                    }
                    parts.push(String::new());
                    last_star = true;
                }
                c => {
                    parts.last_mut().expect("non-empty").push(c);
                    last_star = false;
                }
            }
        }
        Ok(Wildcard { parts })
    }

    fn matches(&self, s: &str) -> bool {
        let (first, rest) = self.parts.split_first().expect("non-empty");
        let Some(mut s) = s.strip_prefix(first.as_str()) else {
            return false;
        };
        let Some((last, middle)) = rest.split_last() else {
            return s.is_empty();
        };
        for part in middle {
            match s.find(part.as_str()) {
                Some(i) => s = &s[i + part.len()..],
                None => return false,
            }
        }
        s.ends_with(last.as_str())
    }
}

fn match_obj(p: &ObjPattern, event: &Map<String, Value>) -> bool {
    p.fields.iter().all(|(k, node)| match_node(node, event.get(k)))
        && p.ors.iter().all(|alts| alts.iter().any(|alt| match_obj(alt, event)))
}

fn match_node(node: &Node, value: Option<&Value>) -> bool {
    match node {
        Node::Obj(sub) => match value {
            None => match_obj(sub, &Map::new()),
            Some(Value::Object(m)) => match_obj(sub, m),
            Some(Value::Array(items)) => items.iter().any(|v| match_node(node, Some(v))),
            Some(_) => false,
        },
        Node::Leaf(ms) => {
            let mut leaves = Vec::new();
            if let Some(v) = value {
                collect_leaves(v, &mut leaves);
            }
            if leaves.is_empty() {
                return ms.contains(&Matcher::Exists(false));
            }
            leaves.iter().any(|leaf| ms.iter().any(|m| match_leaf(m, leaf)))
        }
    }
}

/// The scalar values at one path: the value itself, or the scalars of an array (nested
/// arrays flattened). Objects are not leaves.
fn collect_leaves<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| collect_leaves(i, out)),
        Value::Object(_) => {}
        v => out.push(v),
    }
}

fn exact_eq(e: &Exact, v: &Value) -> bool {
    match (e, v) {
        (Exact::Str(a), Value::String(b)) => a == b,
        (Exact::Num(a), Value::Number(b)) => b.as_f64() == Some(*a),
        (Exact::Bool(a), Value::Bool(b)) => a == b,
        (Exact::Null, Value::Null) => true,
        _ => false,
    }
}

fn match_leaf(m: &Matcher, v: &Value) -> bool {
    match m {
        Matcher::Exact(e) => exact_eq(e, v),
        Matcher::Exists(b) => *b,
        Matcher::Prefix { text, fold } => v.as_str().is_some_and(|s| {
            if *fold {
                s.to_lowercase().starts_with(text.as_str())
            } else {
                s.starts_with(text.as_str())
            }
        }),
        Matcher::Suffix { text, fold } => v.as_str().is_some_and(|s| {
            if *fold {
                s.to_lowercase().ends_with(text.as_str())
            } else {
                s.ends_with(text.as_str())
            }
        }),
        Matcher::EqualsIgnoreCase(t) => v.as_str().is_some_and(|s| s.to_lowercase() == *t),
        Matcher::Wildcard(w) => v.as_str().is_some_and(|s| w.matches(s)),
        Matcher::Numeric(cmps) => v.as_f64().is_some_and(|n| {
            cmps.iter().all(|(c, x)| match c {
                Cmp::Eq => n == *x,
                Cmp::Lt => n < *x,
                Cmp::Le => n <= *x,
                Cmp::Gt => n > *x,
                Cmp::Ge => n >= *x,
            })
        }),
        Matcher::Cidr(net) => v
            .as_str()
            .and_then(|s| s.parse::<IpAddr>().ok())
            .is_some_and(|ip| net.contains(&ip)),
        Matcher::AnythingBut(ab) => match ab {
            AnythingBut::Values(xs) => !xs.iter().any(|e| exact_eq(e, v)),
            AnythingBut::Prefix(p) => v.as_str().is_some_and(|s| !s.starts_with(p.as_str())),
            AnythingBut::Suffix(p) => v.as_str().is_some_and(|s| !s.ends_with(p.as_str())),
            AnythingBut::IgnoreCase(xs) => v.as_str().is_some_and(|s| !xs.contains(&s.to_lowercase())),
            AnythingBut::Wildcard(ws) => v.as_str().is_some_and(|s| !ws.iter().any(|w| w.matches(s))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_parts() {
        let w = Wildcard::parse("a*b*c").unwrap();
        assert!(w.matches("abc"));
        assert!(w.matches("aXXbYYc"));
        assert!(!w.matches("aXXbYY"));
        assert!(Wildcard::parse("*").unwrap().matches(""));
        assert!(Wildcard::parse("a\\*").unwrap().matches("a*"));
        assert!(!Wildcard::parse("a\\*").unwrap().matches("ab"));
        assert!(Wildcard::parse("a**").is_err());
        // The middle part must not overlap the suffix.
        assert!(!Wildcard::parse("*ab*ba").unwrap().matches("aba"));
    }
}
