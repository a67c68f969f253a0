//! The audit hook: one [`CallRecord`] per API call, handed to a
//! [`CallRecorder`] after the result is known and before the answer is sent.

use std::net::IpAddr;

use async_trait::async_trait;
use serde_json::Value;

use crate::caller::Caller;

/// What one API call did, for the audit trail (CloudTrail's fields).
#[derive(Clone, Debug)]
pub struct CallRecord {
    /// When the call arrived (ms since the epoch).
    pub time_ms: i64,
    /// `ecr.amazonaws.com`, `iam.amazonaws.com`, …
    pub event_source: String,
    /// The operation (`CreateRepository`); for a call whose operation is
    /// unknown, what the client named (at most 128 printable characters), or
    /// empty when it named none (a Query call refused before its form was read).
    pub event_name: String,
    /// This deployment's region.
    pub aws_region: String,
    /// The authenticated caller; `None` when authentication failed (or was
    /// not reached).
    pub caller: Option<Caller>,
    /// The access key id the request claimed, when it named one (also when
    /// authentication failed).
    pub claimed_access_key_id: Option<String>,
    /// The client's address.
    pub source_ip: Option<IpAddr>,
    /// The client's `User-Agent`.
    pub user_agent: Option<String>,
    /// The input, once parsed (JSON services: the body; Query services: the
    /// form's fields, `Action` and `Version` included). Strings longer than
    /// [`MAX_RECORDED_STRING`] bytes are replaced by a note of their length.
    pub request_parameters: Option<Value>,
    /// The output of a successful JSON call (same trimming); `None` for
    /// errors and Query services.
    pub response_elements: Option<Value>,
    /// The error code (`__type` or Query `Code`), for a failed call.
    pub error_code: Option<String>,
    /// The error message, for a failed call.
    pub error_message: Option<String>,
    /// The call's request id (`x-amzn-RequestId`).
    pub request_id: String,
    /// Whether the operation only reads (false for unknown operations).
    pub read_only: bool,
    /// The HTTP status answered.
    pub status: u16,
}

/// Longest string value kept in [`CallRecord::request_parameters`] and
/// [`CallRecord::response_elements`] (layer parts and logos are not audit
/// material).
pub const MAX_RECORDED_STRING: usize = 16 * 1024;

/// Receives every API call's record. The pipeline awaits [`Self::record`]
/// before the answer is sent; an implementation that must not slow calls
/// down queues the record and returns.
#[async_trait]
pub trait CallRecorder: Send + Sync + 'static {
    /// Record one call.
    async fn record(&self, record: CallRecord);
}

/// A copy of `v` for a record: strings over [`MAX_RECORDED_STRING`] bytes
/// become `"<N bytes omitted>"`.
pub fn trimmed(v: &Value) -> Value {
    match v {
        Value::String(s) if s.len() > MAX_RECORDED_STRING => Value::String(format!("<{} bytes omitted>", s.len())),
        Value::Array(a) => Value::Array(a.iter().map(trimmed).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), trimmed(v))).collect()),
        other => other.clone(),
    }
}
