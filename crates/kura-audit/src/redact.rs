//! What of a call's input and output a record keeps.
//!
//! Secrets never reach the trail: their values are replaced with
//! [`HIDDEN`], CloudTrail's own marker. Policy-sized blobs (policy
//! documents, lifecycle policy texts, manifests, event patterns) are
//! trimmed to a marker naming their size and hash, so a record stays small
//! and two records can still be compared. Member names are compared without
//! case, `_` or `-`, so every protocol's spelling (`secretAccessKey`,
//! `SecretAccessKey`, `Password`) matches.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// CloudTrail's replacement for a value it does not record.
pub const HIDDEN: &str = "HIDDEN_DUE_TO_SECURITY_REASONS";

/// Members whose value is a secret, wherever they appear (normalized names).
const SECRET: &[&str] = &[
    "secretaccesskey",
    "password",
    "newpassword",
    "oldpassword",
    "sessiontoken",
    "securitytoken",
    "authorizationtoken",
    "layerpartblob",
    "apikeyvalue",
    "clientsecret",
    "privatekey",
    "downloadurl",
    // Secrets Manager: a secret's value, and a generated password.
    "secretstring",
    "secretbinary",
    "randompassword",
];

/// Members holding a connection's authorization (EventBridge's
/// `AuthParameters`): every value beneath them is hidden but names.
const AUTH_CONTAINERS: &[&str] = &["authparameters", "authorization"];
/// Under an authorization container, members that only name things.
const AUTH_NAMES: &[&str] = &[
    "username",
    "apikeyname",
    "clientid",
    "key",
    "authorizationendpoint",
    "httpmethod",
    "isvaluesecret",
];

/// Members holding a policy-sized document, kept as a marker when long.
const BLOBS: &[&str] = &[
    "policytext",
    "lifecyclepolicytext",
    "imagemanifest",
    "policydocument",
    "assumerolepolicydocument",
    "eventpattern",
    "repositorypolicytext",
    "registrypolicytext",
    "policy",
];

/// A blob member longer than this is trimmed.
pub const BLOB_KEEP: usize = 256;
/// Any string longer than this is trimmed.
pub const STRING_KEEP: usize = 4096;
/// Lists longer than this keep their first items and a marker.
pub const LIST_KEEP: usize = 100;
/// A `requestParameters` element larger than this (serialized) is replaced
/// by a marker.
pub const REQUEST_MAX: usize = 64 * 1024;
/// A `responseElements` element larger than this is not recorded.
pub const RESPONSE_MAX: usize = 4 * 1024;

fn norm(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

/// The marker a trimmed value becomes.
pub fn trimmed(s: &str) -> Value {
    let h = hex::encode(Sha256::digest(s.as_bytes()));
    Value::String(format!("[trimmed: {} bytes, sha256:{}]", s.len(), &h[..16]))
}

/// `s` cut to at most `max` bytes (at a character boundary).
pub fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn walk(v: &Value, in_auth: bool) -> Value {
    match v {
        Value::Object(o) => {
            let mut out = Map::new();
            for (k, val) in o {
                let n = norm(k);
                let kept = if SECRET.contains(&n.as_str())
                    || (in_auth && !AUTH_NAMES.contains(&n.as_str()) && is_scalar(val))
                {
                    if val.is_null() {
                        Value::Null
                    } else {
                        Value::String(HIDDEN.into())
                    }
                } else if BLOBS.contains(&n.as_str()) && val.as_str().is_some_and(|s| s.len() > BLOB_KEEP) {
                    trimmed(val.as_str().unwrap_or_default())
                } else {
                    walk(val, in_auth || AUTH_CONTAINERS.contains(&n.as_str()))
                };
                out.insert(k.clone(), kept);
            }
            Value::Object(out)
        }
        Value::Array(a) => {
            let mut out: Vec<Value> = a.iter().take(LIST_KEEP).map(|x| walk(x, in_auth)).collect();
            if a.len() > LIST_KEEP {
                out.push(Value::String(format!("[trimmed: {} more items]", a.len() - LIST_KEEP)));
            }
            Value::Array(out)
        }
        Value::String(s) if s.len() > STRING_KEEP => trimmed(s),
        other => other.clone(),
    }
}

fn is_scalar(v: &Value) -> bool {
    !(v.is_object() || v.is_array())
}

/// A call's input as its record keeps it.
pub fn request_parameters(v: &Value) -> Value {
    let out = walk(v, false);
    let size = out.to_string().len();
    if size > REQUEST_MAX {
        return Value::String(format!("[trimmed: requestParameters of {size} bytes]"));
    }
    out
}

/// A write's output as its record keeps it: secrets hidden, and nothing at
/// all when it is large.
pub fn response_elements(v: &Value) -> Value {
    let out = walk(v, false);
    if out.to_string().len() > RESPONSE_MAX {
        return Value::Null;
    }
    out
}
