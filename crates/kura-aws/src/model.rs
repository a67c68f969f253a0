//! Request validation against the AWS API models Kura serves: ECR's and
//! ECR Public's.
//!
//! `model/ecr-shapes.json` and `model/ecr-public-shapes.json` are derived from
//! botocore's service models by `scripts/gen-ecr-model.py` (shapes and
//! constraints only, no prose). Every request is checked against its
//! operation's input shape before any handler runs: required members, JSON
//! types, lengths and ranges, enums and patterns. Failures answer
//! `InvalidParameterException` (400) naming the member, the way ECR does; a
//! JSON type mismatch is a `SerializationException`, and so is a member the
//! shape does not define (at any depth): what the model does not define
//! never reaches a handler or an authorization decision, so no member can
//! mean one thing to one and another to the other (a `registryId` sent to an
//! operation without one once picked the account authorization looked at
//! while the operation acted on the caller's). [`model`] is ECR's model,
//! [`public_model`] ECR Public's; both are loaded by [`Model::from_json`].

use std::collections::HashMap;

use regex::Regex;
use serde::Deserialize;
use serde_json::Value;

use crate::error::AwsError;

/// One shape of the model.
#[derive(Debug, Deserialize)]
pub struct Shape {
    /// structure, list, map, string, integer, long, boolean, timestamp, blob, double.
    #[serde(rename = "type")]
    pub kind: String,
    /// Required members (structures).
    #[serde(default)]
    pub required: Vec<String>,
    /// Minimum length or value.
    pub min: Option<f64>,
    /// Maximum length or value.
    pub max: Option<f64>,
    /// Pattern (full match) for strings.
    pub pattern: Option<String>,
    /// Allowed values for strings.
    #[serde(rename = "enum")]
    pub enum_values: Option<Vec<String>>,
    /// Structure members: name → shape.
    #[serde(default)]
    pub members: HashMap<String, String>,
    /// List member shape.
    pub member: Option<String>,
    /// Map key shape.
    pub key: Option<String>,
    /// Map value shape.
    pub value: Option<String>,
}

/// One operation of the model.
#[derive(Debug, Deserialize)]
pub struct Operation {
    /// Input shape name (none for operations without input).
    pub input: Option<String>,
    /// Error shapes the operation may return.
    #[serde(default)]
    pub errors: Vec<String>,
}

/// The model.
#[derive(Debug, Deserialize)]
pub struct Model {
    /// The JSON target prefix: `AmazonEC2ContainerRegistry_V20150921` for
    /// ECR, `SpencerFrontendService` for ECR Public.
    #[serde(rename = "targetPrefix")]
    pub target_prefix: String,
    /// Operations by name.
    pub operations: HashMap<String, Operation>,
    /// Shapes by name.
    pub shapes: HashMap<String, Shape>,
    #[serde(skip)]
    patterns: HashMap<String, Regex>,
}

impl Model {
    /// Load a model in the generator's format, compiling its patterns.
    pub fn from_json(text: &str) -> Result<Model, String> {
        let mut m: Model = serde_json::from_str(text).map_err(|e| format!("not a shape table: {e}"))?;
        let mut patterns = HashMap::new();
        for (name, s) in &m.shapes {
            if let Some(p) = &s.pattern {
                let re = Regex::new(&format!("^(?:{p})$")).map_err(|e| format!("shape {name}: {e}"))?;
                patterns.insert(name.clone(), re);
            }
        }
        // Every reference must resolve, so validation never meets a missing shape.
        let known = |n: &String| m.shapes.contains_key(n);
        for (name, op) in &m.operations {
            if let Some(i) = op.input.as_ref().filter(|i| !known(i)) {
                return Err(format!("operation {name}: unknown input shape {i}"));
            }
        }
        for (name, s) in &m.shapes {
            let mut refs = s.members.values().chain(&s.member).chain(&s.key).chain(&s.value);
            if let Some(r) = refs.find(|r| !known(r)) {
                return Err(format!("shape {name}: unknown shape {r}"));
            }
        }
        m.patterns = patterns;
        Ok(m)
    }

    /// Whether `operation`'s input shape defines the top-level `member`.
    pub fn input_has(&self, operation: &str, member: &str) -> bool {
        self.operations
            .get(operation)
            .and_then(|op| op.input.as_ref())
            .and_then(|shape| self.shapes.get(shape))
            .is_some_and(|shape| shape.members.contains_key(member))
    }

    /// Validate `input` for `operation`.
    pub fn validate(&self, operation: &str, input: &Value) -> Result<(), AwsError> {
        let Some(op) = self.operations.get(operation) else {
            return Err(AwsError::unknown_operation(operation));
        };
        match &op.input {
            Some(shape) => self.check(shape, input, ""),
            // No input shape: only an empty object is an input.
            None => match input.as_object().and_then(|o| o.keys().next()) {
                Some(k) => Err(unknown_member(k, "", operation)),
                None => Ok(()),
            },
        }
    }

    fn check(&self, shape_name: &str, v: &Value, path: &str) -> Result<(), AwsError> {
        let shape = &self.shapes[shape_name];
        let at = if path.is_empty() {
            "request".to_string()
        } else {
            path.to_string()
        };
        let type_err = |want: &str| AwsError::serialization(format!("Expected {want} at '{at}'"));
        match shape.kind.as_str() {
            "structure" => {
                let obj = v.as_object().ok_or_else(|| type_err("an object"))?;
                // What does not deserialize into the shape first, as ECR does.
                if let Some(k) = obj.keys().find(|k| !shape.members.contains_key(*k)) {
                    return Err(unknown_member(k, path, shape_name));
                }
                for r in &shape.required {
                    if obj.get(r).is_none_or(Value::is_null) {
                        let p = join(path, r);
                        return Err(AwsError::invalid_parameter(format!(
                            "Invalid parameter at '{p}' failed to satisfy constraint: 'Member must not be null'"
                        )));
                    }
                }
                for (k, val) in obj.iter().filter(|(_, val)| !val.is_null()) {
                    self.check(&shape.members[k], val, &join(path, k))?;
                }
                Ok(())
            }
            "list" => {
                let arr = v.as_array().ok_or_else(|| type_err("a list"))?;
                self.check_len(shape, arr.len(), path)?;
                let member = shape.member.as_deref().expect("list has a member shape");
                for (i, item) in arr.iter().enumerate() {
                    self.check(member, item, &format!("{path}.{}", i + 1))?;
                }
                Ok(())
            }
            "map" => {
                let obj = v.as_object().ok_or_else(|| type_err("a map"))?;
                self.check_len(shape, obj.len(), path)?;
                let (ks, vs) = (shape.key.as_deref().unwrap(), shape.value.as_deref().unwrap());
                for (k, val) in obj {
                    self.check(ks, &Value::String(k.clone()), &format!("{path}.key"))?;
                    self.check(vs, val, &format!("{path}.{k}"))?;
                }
                Ok(())
            }
            "string" => {
                let s = v.as_str().ok_or_else(|| type_err("a string"))?;
                self.check_len(shape, s.chars().count(), path)?;
                if let Some(values) = &shape.enum_values {
                    if !values.iter().any(|e| e == s) {
                        return Err(AwsError::invalid_parameter(format!(
                            "Invalid parameter at '{path}' failed to satisfy constraint: 'Member must satisfy enum value set: [{}]'",
                            values.join(", ")
                        )));
                    }
                }
                if let Some(re) = self.patterns.get(shape_name) {
                    if !re.is_match(s) {
                        return Err(AwsError::invalid_parameter(format!(
                            "Invalid parameter at '{path}' failed to satisfy constraint: 'must satisfy regular expression '{}''",
                            shape.pattern.as_deref().unwrap_or_default()
                        )));
                    }
                }
                Ok(())
            }
            "integer" | "long" => {
                let n = v.as_i64().ok_or_else(|| type_err("an integer"))?;
                if shape.min.is_some_and(|m| (n as f64) < m) || shape.max.is_some_and(|m| (n as f64) > m) {
                    return Err(AwsError::invalid_parameter(format!(
                        "Invalid parameter at '{path}' failed to satisfy constraint: 'Member must have value {}'",
                        range_text(shape)
                    )));
                }
                Ok(())
            }
            "double" => v.as_f64().map(|_| ()).ok_or_else(|| type_err("a number")),
            "boolean" => v.as_bool().map(|_| ()).ok_or_else(|| type_err("a boolean")),
            "timestamp" => {
                if v.is_number() || v.is_string() {
                    Ok(())
                } else {
                    Err(type_err("a timestamp"))
                }
            }
            "blob" => {
                let s = v.as_str().ok_or_else(|| type_err("base64 data"))?;
                use base64::Engine;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .map_err(|_| AwsError::serialization(format!("Invalid base64 at '{at}'")))?;
                self.check_len(shape, bytes.len(), path)
            }
            _ => Ok(()),
        }
    }

    fn check_len(&self, shape: &Shape, len: usize, path: &str) -> Result<(), AwsError> {
        let l = len as f64;
        if shape.min.is_some_and(|m| l < m) || shape.max.is_some_and(|m| l > m) {
            return Err(AwsError::invalid_parameter(format!(
                "Invalid parameter at '{path}' failed to satisfy constraint: 'Member must have length {}'",
                range_text(shape)
            )));
        }
        Ok(())
    }
}

/// A member the shape does not define: refused like any other input that
/// does not deserialize into the shape (botocore refuses it on the client
/// side, "Unknown parameter in input").
fn unknown_member(member: &str, path: &str, shape: &str) -> AwsError {
    AwsError::serialization(format!(
        "Unknown member '{}': {shape} does not define it",
        join(path, member)
    ))
}

fn range_text(shape: &Shape) -> String {
    match (shape.min, shape.max) {
        (Some(a), Some(b)) => format!("between {a} and {b}, inclusive"),
        (Some(a), None) => format!("greater than or equal to {a}"),
        (None, Some(b)) => format!("less than or equal to {b}"),
        _ => String::new(),
    }
}

fn join(path: &str, member: &str) -> String {
    if path.is_empty() {
        member.to_string()
    } else {
        format!("{path}.{member}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_broken_models() {
        assert!(Model::from_json("[]").is_err());
        let dangling = r#"{"targetPrefix": "X", "operations": {"Op": {"input": "Missing"}}, "shapes": {}}"#;
        assert!(Model::from_json(dangling).unwrap_err().contains("Missing"));
        let bad_re = r#"{"targetPrefix": "X", "operations": {}, "shapes": {"S": {"type": "string", "pattern": "("}}}"#;
        assert!(Model::from_json(bad_re).is_err());
    }
}
