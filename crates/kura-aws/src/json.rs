//! Small helpers for AWS JSON 1.1 inputs and outputs.

use serde_json::{json, Value};

/// Resource tags (`[{Key, Value}]`) from an input.
pub fn tags_from(v: Option<&Value>) -> Vec<(String, String)> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|t| {
                    Some((
                        t.get("Key")?.as_str()?.to_string(),
                        t.get("Value")?.as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// An epoch-seconds timestamp as the JSON protocols write it, from ms.
pub fn ts(ms: i64) -> Value {
    json!(ms as f64 / 1000.0)
}
