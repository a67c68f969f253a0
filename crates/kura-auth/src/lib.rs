//! Authentication primitives for Kura, free of HTTP frameworks and storage.
//!
//! - [`sigv4`]: verification (and, for tests and tools, creation) of AWS
//!   Signature Version 4 signed requests, as the ECR, IAM and STS APIs use.
//! - [`seal`]: secrets encrypted at rest under a [`seal::MasterKey`]
//!   (AES-256-GCM with associated data).
//! - [`token`]: HMAC-signed, expiring tokens such as the registry passwords
//!   that ECR's `GetAuthorizationToken` hands out.
//!
//! Everything here is synchronous and pure except [`seal::MasterKey`]'s key
//! file handling; time is always passed in by the caller.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod seal;
pub mod sigv4;
pub mod token;
