//! Reading an API request's body: only after its headers authenticated
//! ([`crate::Authenticator::authenticate_headers`]), hashed while it arrives (the SHA-256 the
//! signature is then checked against), at most [`MAX_API_BODY`] bytes, and
//! under a byte budget shared by every API request of the process
//! ([`BodyBudget`]), so the memory held by request bodies is bounded however
//! many arrive at once.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, HttpBody as _};
use axum::http::StatusCode;
use futures::StreamExt;
use sha2::{Digest as _, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{AwsError, AwsResult};
use crate::MAX_API_BODY;

/// The default budget (`KURA_API_BODY_BUDGET_MIB`): 256 MiB.
pub const DEFAULT_BODY_BUDGET: usize = 256 << 20;

/// How long a request waits for room in the budget before it is answered
/// 503 (the SDKs retry those).
pub const BUDGET_WAIT: Duration = Duration::from_secs(10);

/// Bytes of API request bodies in memory at once, across all requests: a
/// semaphore counting bytes. A body takes its declared length before its
/// first byte is read (or, without a `Content-Length`, each chunk as it
/// arrives) and gives it back when the call is answered.
pub struct BodyBudget {
    bytes: Arc<Semaphore>,
    total: usize,
}

impl BodyBudget {
    /// A budget of `total` bytes (at least one).
    pub fn new(total: usize) -> Self {
        let total = total.clamp(1, Semaphore::MAX_PERMITS);
        BodyBudget {
            bytes: Arc::new(Semaphore::new(total)),
            total,
        }
    }

    /// The budget's size in bytes.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Bytes not held by any request now.
    pub fn available(&self) -> usize {
        self.bytes.available_permits()
    }

    /// Take `n` bytes, waiting up to [`BUDGET_WAIT`] for them; 503 when
    /// they do not come free in time or can never fit.
    async fn take(&self, n: usize) -> AwsResult<Option<OwnedSemaphorePermit>> {
        if n == 0 {
            return Ok(None);
        }
        let count = u32::try_from(n)
            .ok()
            .filter(|_| n <= self.total)
            .ok_or_else(|| busy(self.total))?;
        match tokio::time::timeout(BUDGET_WAIT, self.bytes.clone().acquire_many_owned(count)).await {
            Ok(Ok(permit)) => Ok(Some(permit)),
            _ => Err(busy(self.total)),
        }
    }
}

/// A request body read whole, its SHA-256, and its share of the budget
/// (given back when this is dropped, after the call is answered).
pub struct ApiBody {
    /// The bytes.
    pub bytes: Vec<u8>,
    /// Lowercase hex SHA-256 of the bytes.
    pub sha256: String,
    _held: Option<OwnedSemaphorePermit>,
}

/// The body of an API request until it is read: [`RequestBody::unread`]
/// tells afterwards whether the request was answered without reading it
/// (the connection is then closed rather than drained).
pub struct RequestBody(Option<Body>);

impl RequestBody {
    /// Wrap a request's body.
    pub fn new(body: Body) -> Self {
        RequestBody(Some(body))
    }

    /// Whether a body with bytes in it was never read.
    pub fn unread(&self) -> bool {
        self.0.as_ref().is_some_and(|b| !b.is_end_stream())
    }
}

impl BodyBudget {
    /// Read an API request's body (call only after the headers
    /// authenticated): at most [`MAX_API_BODY`] bytes, else 413; within the
    /// byte budget, else 503; hashed as it arrives.
    pub async fn read(&self, parts: &http::request::Parts, body: &mut RequestBody) -> AwsResult<ApiBody> {
        let declared = declared_length(parts)?;
        let Some(body) = body.0.take() else {
            return Err(AwsError::serialization("the request body was already read"));
        };
        let mut held = self.take(declared.unwrap_or(0)).await?;
        let mut allowed = declared.unwrap_or(0);
        let mut bytes = Vec::with_capacity(declared.unwrap_or(0));
        let mut hasher = Sha256::new();
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| AwsError::serialization(format!("request body was not received: {e}")))?;
            let len = bytes.len() + chunk.len();
            if len > MAX_API_BODY || declared.is_some_and(|d| len > d) {
                return Err(too_large());
            }
            if len > allowed {
                // No Content-Length: the budget grows with the body.
                if let Some(more) = self.take(len - allowed).await? {
                    match &mut held {
                        Some(h) => h.merge(more),
                        None => held = Some(more),
                    }
                }
                allowed = len;
            }
            hasher.update(&chunk);
            bytes.extend_from_slice(&chunk);
        }
        Ok(ApiBody {
            bytes,
            sha256: hex::encode(hasher.finalize()),
            _held: held,
        })
    }
}

/// The declared `Content-Length`, refused (413) past [`MAX_API_BODY`]
/// without reading anything.
pub fn declared_length(parts: &http::request::Parts) -> AwsResult<Option<usize>> {
    let Some(v) = parts.headers.get("content-length") else {
        return Ok(None);
    };
    let n = v
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .ok_or_else(|| AwsError::serialization("the Content-Length header is not a number"))?;
    if n > MAX_API_BODY as u64 {
        return Err(too_large());
    }
    Ok(Some(n as usize))
}

fn too_large() -> AwsError {
    AwsError::new(
        "RequestEntityTooLargeException",
        format!("The request body exceeds the {MAX_API_BODY}-byte limit"),
    )
    .with_status(StatusCode::PAYLOAD_TOO_LARGE)
}

fn busy(total: usize) -> AwsError {
    AwsError::new(
        "ServiceUnavailableException",
        format!(
            "The server is reading as many API request bodies as its {} MiB budget allows; retry shortly",
            total >> 20
        ),
    )
    .with_status(StatusCode::SERVICE_UNAVAILABLE)
}
