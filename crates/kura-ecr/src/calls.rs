//! What the audit trail learns about each API call as it runs, and the hook
//! that records it once the call is answered.
//!
//! The protocol handlers fill a [`CallInfo`] (operation, the caller once
//! known — or the owner of the key a failed signature claimed — and the
//! decoded input); [`crate::api`] turns it and the answer into a
//! [`kura_audit::CallRecord`] and waits for the recorder before it answers.

use std::sync::Arc;

use kura_audit::{AuditRecorder, CallRecord};
use kura_store::AuditStore;
use serde_json::Value;

use crate::auth::Caller;

/// The audit trail's settings on a running service.
#[derive(Clone)]
pub struct AuditHook {
    /// The group-commit writer.
    pub recorder: Arc<AuditRecorder>,
    /// The trail, for `LookupEvents`.
    pub store: Arc<dyn AuditStore>,
    /// Record the data plane's reads (`BatchGetImage`,
    /// `GetDownloadUrlForLayer`) as data events too.
    pub data_reads: bool,
}

/// One call as it runs.
#[derive(Clone, Debug, Default)]
pub struct CallInfo {
    /// `eventSource`.
    pub source: &'static str,
    /// The operation (empty until known).
    pub name: String,
    /// The authenticated caller.
    pub caller: Option<Caller>,
    /// The owner of the access key the request claimed, known before its
    /// signature is checked (recorded when the check fails).
    pub claimed: Option<Caller>,
    /// The decoded input.
    pub params: Option<Value>,
    /// The error answered, when the handler renders it itself (the Query
    /// protocol): (code, message).
    pub error: Option<(String, String)>,
}

/// CloudTrail's `readOnly` for an operation name.
pub fn read_only(op: &str) -> bool {
    ["Get", "List", "Describe", "BatchGet", "BatchCheck", "Lookup"]
        .iter()
        .any(|p| op.starts_with(p))
}

/// The audit form of a caller.
pub fn audit_caller(c: &Caller) -> kura_audit::Caller {
    kura_audit::Caller {
        account: c.account.clone(),
        principal_arn: c.principal_arn.clone(),
        principal_id: c.principal_id.clone(),
        access_key_id: c.access_key_id.clone(),
        token_issued_at: c.token_issued_at,
    }
}

/// The user agent of a request.
pub fn user_agent(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get("user-agent")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

impl CallInfo {
    /// Keep the call's input for its record (when the trail is on): redacted
    /// at once, so a large secret (a layer part) is never copied.
    pub fn capture(&mut self, ecr: &crate::Ecr, input: &Value) {
        if ecr.audit().is_some() {
            self.params = Some(kura_audit::redact::request_parameters(input));
        }
    }

    /// The record of this call.
    pub fn record(
        self,
        region: &str,
        time_ms: i64,
        parts: &http::request::Parts,
        request_id: &str,
        response: Option<Value>,
        error: Option<(String, String)>,
    ) -> CallRecord {
        let error = error.or(self.error);
        let name = if self.name.is_empty() {
            "Unknown".to_string()
        } else {
            self.name
        };
        CallRecord {
            time_ms,
            event_source: self.source.to_string(),
            read_only: read_only(&name),
            event_name: name,
            aws_region: region.to_string(),
            caller: self.caller.or(self.claimed).as_ref().map(audit_caller),
            source_ip: crate::source_ip(parts).map(|ip| ip.to_string()),
            user_agent: user_agent(&parts.headers),
            request_parameters: self.params,
            response_elements: response,
            error_code: error.as_ref().map(|e| e.0.clone()),
            error_message: error.map(|e| e.1),
            request_id: request_id.to_string(),
            data_event: false,
        }
    }
}

/// A data-plane request the trail records: its operation and input, or
/// `None` when it is not recorded (reads without `data_reads`, `/v2/`, the
/// catalog).
pub struct DataCall {
    name: &'static str,
    read: bool,
    params: Value,
}

impl DataCall {
    /// What of `data` the trail records (the request is authorized).
    pub fn of(data: &kura_registry::DataRequest, account: &str, data_reads: bool) -> Option<DataCall> {
        use kura_registry::endpoint::Endpoint;
        let (action, repo) = crate::authz::data_action(&data.endpoint, &data.method)?;
        let name = action.strip_prefix("ecr:").unwrap_or(action);
        let read = !matches!(
            name,
            "PutImage" | "InitiateLayerUpload" | "UploadLayerPart" | "CompleteLayerUpload" | "BatchDeleteImage"
        );
        if read && !data_reads {
            return None;
        }
        let mut params = serde_json::json!({"repositoryName": repo.as_str(), "registryId": account});
        match &data.endpoint {
            Endpoint::Manifest(_, r) | Endpoint::Referrers(_, r) => {
                let key = if r.contains(':') { "imageDigest" } else { "imageTag" };
                params[key] = Value::String(r.clone());
            }
            Endpoint::Blob(_, d) => params["layerDigest"] = Value::String(d.clone()),
            Endpoint::Upload(_, id) => params["uploadId"] = Value::String(id.clone()),
            _ => {}
        }
        Some(DataCall { name, read, params })
    }

    /// The record of the answered request.
    pub fn record(
        self,
        region: &str,
        time_ms: i64,
        caller: &Caller,
        source_ip: Option<std::net::IpAddr>,
        user_agent: Option<String>,
        status: http::StatusCode,
    ) -> CallRecord {
        let error = (status.is_client_error() || status.is_server_error()).then(|| {
            (
                status.as_u16().to_string(),
                status.canonical_reason().unwrap_or("error").to_string(),
            )
        });
        CallRecord {
            time_ms,
            event_source: "ecr.amazonaws.com".into(),
            event_name: self.name.to_string(),
            aws_region: region.to_string(),
            caller: Some(audit_caller(caller)),
            source_ip: source_ip.map(|ip| ip.to_string()),
            user_agent,
            request_parameters: Some(self.params),
            response_elements: None,
            error_code: error.as_ref().map(|e| e.0.clone()),
            error_message: error.map(|e| e.1),
            request_id: uuid::Uuid::new_v4().to_string(),
            read_only: self.read,
            data_event: self.read,
        }
    }
}
