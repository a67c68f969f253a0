//! The audit trail on the data plane. API calls (`POST /`) are recorded by
//! the AWS pipeline's [`kura_aws::CallRecorder`]; the data plane is not on
//! that pipeline, so its guard ([`crate::auth`]) records its writes (and,
//! when asked, its reads) here, once answered and before the answer leaves.

use std::sync::Arc;

use kura_audit::{AuditRecorder, CallRecord};
use serde_json::Value;

use kura_aws::caller::Caller;

/// The audit trail's settings on a running service.
#[derive(Clone)]
pub struct AuditHook {
    /// The group-commit writer.
    pub recorder: Arc<AuditRecorder>,
    /// Record the data plane's reads (`BatchGetImage`,
    /// `GetDownloadUrlForLayer`) as data events too.
    pub data_reads: bool,
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

    /// Whether it reads (recorded as a data event).
    pub fn is_read(&self) -> bool {
        self.read
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
            caller: Some(caller.clone()),
            claimed_access_key_id: Some(caller.access_key_id.clone()),
            source_ip,
            user_agent,
            request_parameters: Some(self.params),
            response_elements: None,
            error_code: error.as_ref().map(|e| e.0.clone()),
            error_message: error.map(|e| e.1),
            request_id: uuid::Uuid::new_v4().to_string(),
            read_only: self.read,
            status: status.as_u16(),
        }
    }
}
