//! The distribution spec's error codes and the error value every data-plane
//! failure becomes. The HTTP layer renders it as
//! `{"errors":[{"code","message","detail"}]}` with [`OciError::status`].

use http::StatusCode;
use serde_json::Value;

/// An error code from the distribution spec (plus the ones Docker clients know).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// Blob unknown to registry.
    BlobUnknown,
    /// Blob upload invalid.
    BlobUploadInvalid,
    /// Blob upload unknown to registry.
    BlobUploadUnknown,
    /// Provided digest did not match uploaded content.
    DigestInvalid,
    /// Manifest references a manifest or blob unknown to registry.
    ManifestBlobUnknown,
    /// Manifest invalid.
    ManifestInvalid,
    /// Manifest unknown to registry.
    ManifestUnknown,
    /// Invalid repository name.
    NameInvalid,
    /// Repository name not known to registry.
    NameUnknown,
    /// Provided length did not match content length.
    SizeInvalid,
    /// Authentication required.
    Unauthorized,
    /// Requested access to the resource is denied.
    Denied,
    /// The operation is unsupported.
    Unsupported,
    /// Too many requests.
    TooManyRequests,
    /// Invalid tag (reported as MANIFEST_INVALID's sibling code TAG_INVALID by Docker).
    TagInvalid,
    /// Requested range cannot be satisfied (reported with 416).
    RangeInvalid,
    /// Body too large (413).
    TooLarge,
    /// An unexpected server-side failure (500); details go to the log only.
    Internal,
    /// The registry cannot take this now (503, e.g. its storage is full);
    /// clients retry after `Retry-After`. Distribution's `UNAVAILABLE`.
    Unavailable,
}

impl ErrorCode {
    /// The code string in the error body.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BlobUnknown => "BLOB_UNKNOWN",
            ErrorCode::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            ErrorCode::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            ErrorCode::DigestInvalid => "DIGEST_INVALID",
            ErrorCode::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            ErrorCode::ManifestInvalid => "MANIFEST_INVALID",
            ErrorCode::ManifestUnknown => "MANIFEST_UNKNOWN",
            ErrorCode::NameInvalid => "NAME_INVALID",
            ErrorCode::NameUnknown => "NAME_UNKNOWN",
            ErrorCode::SizeInvalid => "SIZE_INVALID",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Denied => "DENIED",
            ErrorCode::Unsupported => "UNSUPPORTED",
            ErrorCode::TooManyRequests => "TOOMANYREQUESTS",
            ErrorCode::TagInvalid => "TAG_INVALID",
            ErrorCode::RangeInvalid => "BLOB_UPLOAD_INVALID",
            ErrorCode::TooLarge => "SIZE_INVALID",
            ErrorCode::Internal => "UNKNOWN",
            ErrorCode::Unavailable => "UNAVAILABLE",
        }
    }

    /// The HTTP status the spec pairs with the code.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::BlobUnknown
            | ErrorCode::BlobUploadUnknown
            | ErrorCode::ManifestUnknown
            | ErrorCode::NameUnknown => StatusCode::NOT_FOUND,
            ErrorCode::BlobUploadInvalid
            | ErrorCode::DigestInvalid
            | ErrorCode::ManifestBlobUnknown
            | ErrorCode::ManifestInvalid
            | ErrorCode::NameInvalid
            | ErrorCode::SizeInvalid
            | ErrorCode::TagInvalid => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Denied => StatusCode::FORBIDDEN,
            ErrorCode::Unsupported => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RangeInvalid => StatusCode::RANGE_NOT_SATISFIABLE,
            ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// A data-plane error: a spec code, a human message and optional detail.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct OciError {
    /// The spec code; decides the status unless `status` overrides it.
    pub code: ErrorCode,
    /// A sentence for humans.
    pub message: String,
    /// Structured detail (any JSON), `null` when there is none.
    pub detail: Value,
    /// An explicit HTTP status, where the spec pairs a code with another one.
    pub status_override: Option<StatusCode>,
}

impl OciError {
    /// An error with a message and no detail.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        OciError {
            code,
            message: message.into(),
            detail: Value::Null,
            status_override: None,
        }
    }

    /// Attach detail.
    pub fn with_detail(mut self, detail: Value) -> Self {
        self.detail = detail;
        self
    }

    /// Answer with another status than the code's usual one.
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status_override = Some(status);
        self
    }

    /// The HTTP status of the response.
    pub fn status(&self) -> StatusCode {
        self.status_override.unwrap_or_else(|| self.code.status())
    }

    /// The JSON body of the response.
    pub fn body(&self) -> Value {
        serde_json::json!({"errors": [{
            "code": self.code.as_str(),
            "message": self.message,
            "detail": self.detail,
        }]})
    }
}
