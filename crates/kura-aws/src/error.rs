//! The one error type of every AWS API Kura serves: its `__type` (or Query
//! `Code`), message and status.
//!
//! In the JSON 1.1 protocol it renders as `{"__type": "...", "message":
//! "..."}` with the same name in the `X-Amzn-ErrorType` header (botocore
//! reads the body, other SDKs the header); in the Query protocol as an
//! `<ErrorResponse>` document ([`crate::query::error_response`]).
//! Predictable failures are 4xx; only storage faults are 500.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use kura_store::StoreError;

/// An error answered by an AWS API (ECR, ECR Public, IAM, STS, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AwsError {
    /// The error shape name, e.g. `RepositoryNotFoundException`.
    pub kind: &'static str,
    /// A sentence for humans.
    pub message: String,
    /// The HTTP status.
    pub status: StatusCode,
}

impl AwsError {
    /// An error with status 400.
    pub fn new(kind: &'static str, message: impl Into<String>) -> Self {
        AwsError {
            kind,
            message: message.into(),
            status: StatusCode::BAD_REQUEST,
        }
    }

    /// Override the status.
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// `InvalidParameterException`.
    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::new("InvalidParameterException", message)
    }

    /// `SerializationException`: the body is not the JSON the operation takes.
    pub fn serialization(message: impl Into<String>) -> Self {
        Self::new("SerializationException", message)
    }

    /// `UnknownOperationException`.
    pub fn unknown_operation(op: &str) -> Self {
        Self::new("UnknownOperationException", format!("Unknown operation {op:?}"))
    }

    /// `RepositoryNotFoundException` in ECR's words.
    pub fn repository_not_found(name: &str, registry: &str) -> Self {
        Self::new(
            "RepositoryNotFoundException",
            format!("The repository with name '{name}' does not exist in the registry with id '{registry}'"),
        )
    }

    /// `ServerException` (500): details go to the log only.
    pub fn server() -> Self {
        Self::new(
            "ServerException",
            "An internal error occurred; the request was not completed",
        )
        .with_status(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// An operation Kura does not implement yet (a later feature).
    pub fn unsupported(op: &str, feature: &str) -> Self {
        Self::new(
            "UnsupportedOperationException",
            format!("Kura does not support {op} yet ({feature} is not implemented in this version)"),
        )
    }
}

impl From<StoreError> for AwsError {
    fn from(e: StoreError) -> Self {
        if e.is_disk_full() {
            kura_store::space::note_disk_full("an AWS API request", &e);
            // 503 ServerException: the AWS SDKs retry it.
            return AwsError::new("ServerException", "the registry's storage is full; retry later")
                .with_status(StatusCode::SERVICE_UNAVAILABLE);
        }
        if e.is_unstorable_text() {
            return AwsError::invalid_parameter("A request value holds a character that cannot be stored (e.g. NUL)");
        }
        tracing::error!(error = %e, "storage failure in an AWS API");
        AwsError::server()
    }
}

impl std::fmt::Display for AwsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for AwsError {}

impl AwsError {
    /// The error as an AWS JSON 1.1 answer.
    pub fn json_response(&self) -> Response {
        let body = serde_json::json!({ "__type": self.kind, "message": self.message });
        let mut r = (self.status, serde_json::to_vec(&body).unwrap_or_default()).into_response();
        let h = r.headers_mut();
        h.insert("content-type", HeaderValue::from_static("application/x-amz-json-1.1"));
        h.insert("x-amzn-errortype", HeaderValue::from_static(self.kind));
        r
    }
}

/// Result alias for the AWS APIs.
pub type AwsResult<T> = Result<T, AwsError>;

impl IntoResponse for AwsError {
    fn into_response(self) -> Response {
        self.json_response()
    }
}
