//! The protocol core shared by every AWS API Kura serves (ECR, ECR Public,
//! IAM, STS, and whatever comes next).
//!
//! * [`pipeline::api`] answers `POST /`: it picks the registered
//!   [`AwsService`] (by `X-Amz-Target` prefix for AWS JSON 1.1, by `Action`
//!   for AWS Query), authenticates the SigV4 signature ([`sigv4`]), reads the
//!   body within the process-wide byte budget ([`body`]), parses and
//!   validates the input, authorizes, runs, renders the answer or the
//!   [`AwsError`] in the protocol's format, and hands a [`CallRecord`] to the
//!   optional [`CallRecorder`] (the audit trail).
//! * [`client`] resolves who the client is (peer or trusted proxy).
//! * [`model`] validates JSON input against a botocore-derived shape table.
//!
//! A new API implements [`AwsService`] and is registered with
//! [`Api::register`]; nothing else changes.

pub mod body;
pub mod caller;
pub mod client;
pub mod error;
pub mod json;
pub mod model;
pub mod pipeline;
pub mod query;
pub mod record;
pub mod service;
pub mod sigv4;

pub use caller::Caller;
pub use error::{AwsError, AwsResult};
pub use pipeline::{api, Api, OperationLabel, RequestId};
pub use record::{CallRecord, CallRecorder};
pub use service::{AwsService, Call, OpSpec, Protocol, Scope};
pub use sigv4::Authenticator;

/// Largest API request body accepted (an `UploadLayerPart` of 20 MiB, base64).
pub const MAX_API_BODY: usize = 30 * 1024 * 1024;
