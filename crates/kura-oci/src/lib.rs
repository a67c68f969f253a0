//! Types of the OCI distribution protocol, with no I/O: digests, repository
//! names and tags, manifest inspection, and the spec's error codes.
//!
//! Everything here is pure so that the HTTP layer, the storage layer and
//! (later) the ECR control plane share one definition of what is valid.

pub mod digest;
pub mod error;
pub mod manifest;
pub mod name;

pub use digest::{Algorithm, Digest, DigestError, Hasher};
pub use error::{ErrorCode, OciError};
pub use manifest::{Descriptor, ManifestError, ManifestInfo, MediaType};
pub use name::{Reference, RepoName, Tag};
