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

/// What a request to the registry service can fail with, in the domain's
/// terms. The data plane's HTTP edge turns it into the spec's error JSON
/// (`From<RegistryError> for ApiError`, the codes and messages below); the
/// ECR API turns it into ECR's exceptions. Nothing decodes a wire error back
/// into one of these.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The repository does not exist (or a push may not create it).
    #[error("The repository with name '{name}' does not exist in the registry with id '{account}'")]
    RepositoryUnknown {
        /// The registry.
        account: String,
        /// The repository's name.
        name: String,
    },
    /// No such manifest or tag in the repository.
    #[error("{message}")]
    ManifestUnknown {
        /// What was asked for (a tag or a digest).
        reference: String,
        /// The spec's message.
        message: String,
    },
    /// No such blob in the repository (or its bytes are gone).
    #[error("{message}")]
    BlobUnknown {
        /// The blob's digest.
        digest: String,
        /// The spec's message.
        message: String,
    },
    /// No such upload session (or it finished, or is in another repository).
    #[error("upload {id:?} is unknown or finished")]
    UploadUnknown {
        /// The session's id.
        id: String,
    },
    /// An immutable tag already names another manifest.
    #[error("The image tag '{tag}' already exists in the '{repository}' repository and cannot be overwritten because the repository is immutable.")]
    TagImmutable {
        /// The tag.
        tag: String,
        /// The repository.
        repository: String,
    },
    /// The manifest is listed by an index in the repository.
    #[error("manifest {digest} is referenced by manifest list {}; delete that first", parents.first().map(String::as_str).unwrap_or_default())]
    ReferencedBy {
        /// The manifest.
        digest: String,
        /// The indexes that list it.
        parents: Vec<String>,
    },
    /// A manifest names blobs or manifests the repository does not have.
    #[error("manifest references {}, which is not in repository {repository}", blobs.first().or(manifests.first()).map(String::as_str).unwrap_or_default())]
    MissingReferences {
        /// The repository.
        repository: String,
        /// Missing blobs.
        blobs: Vec<String>,
        /// Missing child manifests.
        manifests: Vec<String>,
    },
    /// Uploaded content does not have the digest the client named.
    #[error("uploaded content has digest {actual}, not {expected}")]
    DigestMismatch {
        /// The digest named.
        expected: String,
        /// The content's digest.
        actual: String,
        /// Bytes received.
        size: u64,
    },
    /// A chunk does not start where the upload stands.
    #[error("{why}; the upload has {offset} bytes")]
    UploadOffset {
        /// The repository.
        repository: String,
        /// The session's id.
        id: String,
        /// Bytes the upload has.
        offset: u64,
        /// Why the chunk was refused.
        why: String,
    },
    /// A `Range` a blob cannot satisfy.
    #[error("range {range:?} cannot be satisfied for a blob of {size} bytes")]
    RangeUnsatisfiable {
        /// The header's value.
        range: String,
        /// The blob's size.
        size: u64,
    },
    /// A manifest body over the size limit.
    #[error(
        "manifest of {len} bytes exceeds the {}-byte limit",
        kura_oci::manifest::MAX_MANIFEST_BYTES
    )]
    ManifestTooLarge {
        /// Its length.
        len: usize,
    },
    /// Something the client sent is not acceptable.
    #[error("{message}")]
    Invalid {
        /// What was wrong.
        what: Invalid,
        /// The message.
        message: String,
    },
    /// A cap was reached (open uploads); retry later.
    #[error("{message}")]
    LimitExceeded {
        /// The message.
        message: String,
    },
    /// The registry's storage is full (a server condition, retried).
    #[error("the registry's storage is full; retry later")]
    Unavailable,
    /// A pull-through cache could not get content it does not hold from its
    /// upstream (`upstream` names it, e.g. `registry-1.docker.io/library/nginx`).
    #[error("{}", upstream_message(upstream, error))]
    Upstream {
        /// The upstream repository.
        upstream: String,
        /// What went wrong there.
        error: crate::upstream::UpstreamError,
    },
    /// The image is in the archive storage class (or being restored from
    /// it): listed, but not pullable until a restore finishes.
    #[error("The image with digest '{digest}' in the repository with name '{repository}' is {}: restore it to the standard storage class (UpdateImageStorageClass with targetStorageClass STANDARD) before pulling it", match .status { kura_store::meta::ImageStatus::Activating => "being restored from the archive storage class", _ => "archived" })]
    ImageArchived {
        /// The repository's name.
        repository: String,
        /// The manifest's digest.
        digest: String,
        /// ARCHIVED or ACTIVATING.
        status: kura_store::meta::ImageStatus,
    },
    /// Any other storage failure.
    #[error(transparent)]
    Store(StoreError),
}

/// The message of a [`RegistryError::Upstream`]: it names the upstream and the problem.
pub fn upstream_message(upstream: &str, error: &crate::upstream::UpstreamError) -> String {
    use crate::upstream::UpstreamError as U;
    match error {
        U::Unavailable { message } => format!("the upstream registry {upstream} is unavailable: {message}"),
        U::TooManyRequests { message, .. } => {
            format!("the upstream registry {upstream} is rate limiting pulls (429): {message}")
        }
        U::Denied { message } => format!("the upstream registry {upstream} refused access: {message}"),
        U::Invalid { message } => format!("the upstream registry {upstream} answered invalid content: {message}"),
    }
}

/// What part of a request [`RegistryError::Invalid`] refuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalid {
    /// A digest that does not parse, or a body that does not match its digest.
    Digest,
    /// A tag that does not parse.
    Tag,
    /// A manifest that does not parse.
    Manifest,
    /// A length that does not match what was received.
    Size,
    /// An upload body that was not received.
    BlobUpload,
    /// Something the registry does not support.
    Unsupported,
}

impl RegistryError {
    /// An [`RegistryError::Invalid`].
    pub fn invalid(what: Invalid, message: impl Into<String>) -> Self {
        RegistryError::Invalid {
            what,
            message: message.into(),
        }
    }
}

impl From<StoreError> for RegistryError {
    fn from(e: StoreError) -> Self {
        if e.is_disk_full() {
            kura_store::space::note_disk_full("a registry request", &e);
            return RegistryError::Unavailable;
        }
        RegistryError::Store(e)
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        let message = e.to_string();
        match e {
            RegistryError::RepositoryUnknown { name, .. } => {
                ApiError::new(ErrorCode::NameUnknown, message).detail(serde_json::json!({ "name": name }))
            }
            RegistryError::ManifestUnknown { .. } => ApiError::new(ErrorCode::ManifestUnknown, message),
            RegistryError::BlobUnknown { .. } => ApiError::new(ErrorCode::BlobUnknown, message),
            RegistryError::UploadUnknown { .. } => ApiError::new(ErrorCode::BlobUploadUnknown, message),
            RegistryError::TagImmutable { tag, .. } => {
                ApiError::new(ErrorCode::TagInvalid, message).detail(serde_json::json!({ "immutableTag": tag }))
            }
            RegistryError::ReferencedBy { parents, .. } => ApiError::new(ErrorCode::Denied, message)
                .detail(serde_json::json!({ "referencedBy": parents }))
                .status(StatusCode::CONFLICT),
            RegistryError::MissingReferences { blobs, manifests, .. } => {
                ApiError::new(ErrorCode::ManifestBlobUnknown, message)
                    .detail(serde_json::json!({ "blobs": blobs, "manifests": manifests }))
            }
            RegistryError::DigestMismatch { expected, actual, size } => {
                ApiError::new(ErrorCode::DigestInvalid, message)
                    .detail(serde_json::json!({ "expected": expected, "actual": actual, "size": size }))
            }
            RegistryError::UploadOffset {
                repository, id, offset, ..
            } => ApiError::new(ErrorCode::RangeInvalid, message)
                .header("location", format!("/v2/{repository}/blobs/uploads/{id}"))
                .header("range", format!("0-{}", offset.saturating_sub(1)))
                .header("docker-upload-uuid", id),
            RegistryError::RangeUnsatisfiable { size, .. } => {
                ApiError::new(ErrorCode::RangeInvalid, message).header("content-range", format!("bytes */{size}"))
            }
            RegistryError::ManifestTooLarge { .. } => ApiError::new(ErrorCode::TooLarge, message),
            RegistryError::Invalid { what, .. } => ApiError::new(
                match what {
                    Invalid::Digest => ErrorCode::DigestInvalid,
                    Invalid::Tag => ErrorCode::TagInvalid,
                    Invalid::Manifest => ErrorCode::ManifestInvalid,
                    Invalid::Size => ErrorCode::SizeInvalid,
                    Invalid::BlobUpload => ErrorCode::BlobUploadInvalid,
                    Invalid::Unsupported => ErrorCode::Unsupported,
                },
                message,
            ),
            RegistryError::LimitExceeded { .. } => {
                ApiError::new(ErrorCode::TooManyRequests, message).header("retry-after", "60")
            }
            RegistryError::Unavailable => ApiError::storage_full(),
            RegistryError::Upstream { upstream, error } => {
                use crate::upstream::UpstreamError as U;
                let detail = serde_json::json!({ "upstream": upstream });
                match error {
                    U::Unavailable { .. } => ApiError::new(ErrorCode::Unavailable, message),
                    U::TooManyRequests { retry_after_secs, .. } => {
                        let after = retry_after_secs.unwrap_or(60).to_string();
                        ApiError::new(ErrorCode::TooManyRequests, message).header("retry-after", after)
                    }
                    // Kura's access to the upstream failed, not the client's:
                    // a gateway error, with the spec's code for the cause.
                    U::Denied { .. } => ApiError::new(ErrorCode::Denied, message).status(StatusCode::BAD_GATEWAY),
                    U::Invalid { .. } => ApiError::new(ErrorCode::Unavailable, message).status(StatusCode::BAD_GATEWAY),
                }
                .detail(detail)
            }
            // Not pullable until restored: the spec's MANIFEST_UNKNOWN (404),
            // so clients report it as a missing image, with the reason in the
            // message and the status in the detail.
            RegistryError::ImageArchived { digest, status, .. } => ApiError::new(ErrorCode::ManifestUnknown, message)
                .detail(serde_json::json!({ "digest": digest, "imageStatus": status.as_str() })),
            RegistryError::Store(e) => ApiError::from(e),
        }
    }
}

/// Result alias for the registry service.
pub type RegistryResult<T> = Result<T, RegistryError>;
