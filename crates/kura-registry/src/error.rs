//! The one error type of the data plane: it knows its status and body.

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use kura_oci::{ErrorCode, OciError};
use kura_store::StoreError;

/// An error answered to a client, plus extra headers (e.g. `Range` on 416).
#[derive(Debug)]
pub struct ApiError {
    /// The spec error (boxed: errors travel in every `Result`).
    pub error: Box<OciError>,
    /// Headers to add to the response.
    pub headers: Box<HeaderMap>,
}

impl ApiError {
    /// An error with a code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            error: Box::new(OciError::new(code, message)),
            headers: Box::default(),
        }
    }

    /// Add a header.
    pub fn header(mut self, name: &'static str, value: impl AsRef<str>) -> Self {
        if let Ok(v) = HeaderValue::from_str(value.as_ref()) {
            self.headers.insert(name, v);
        }
        self
    }

    /// Attach JSON detail.
    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.error.detail = detail;
        self
    }

    /// Override the status.
    pub fn status(mut self, status: StatusCode) -> Self {
        self.error.status_override = Some(status);
        self
    }
}

impl From<OciError> for ApiError {
    fn from(error: OciError) -> Self {
        ApiError {
            error: Box::new(error),
            headers: Box::default(),
        }
    }
}

/// Seconds a client is asked to wait before retrying when storage is full.
pub const DISK_FULL_RETRY_AFTER: &str = "60";

impl ApiError {
    /// 503 `UNAVAILABLE` with `Retry-After`: the registry's storage is full.
    /// A server condition the client retries, never the client's fault.
    pub fn storage_full() -> Self {
        ApiError::new(ErrorCode::Unavailable, "the registry's storage is full; retry later")
            .header("retry-after", DISK_FULL_RETRY_AFTER)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if e.is_disk_full() {
            kura_store::space::note_disk_full("a registry request", &e);
            return ApiError::storage_full();
        }
        if e.is_unstorable_text() {
            return ApiError::new(
                ErrorCode::Unsupported,
                "a request value holds a character the registry cannot store (e.g. NUL)",
            )
            .status(StatusCode::BAD_REQUEST);
        }
        // The detail stays in the log; the client gets a generic message.
        tracing::error!(error = %e, "storage failure");
        ApiError::new(ErrorCode::Internal, "internal storage error")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.error.status();
        let body = serde_json::to_vec(&self.error.body()).unwrap_or_default();
        let mut resp = (status, body).into_response();
        resp.headers_mut()
            .insert("content-type", HeaderValue::from_static("application/json"));
        resp.headers_mut().extend(*self.headers);
        resp
    }
}

/// Result alias for the data plane.
pub type ApiResult<T> = Result<T, ApiError>;
