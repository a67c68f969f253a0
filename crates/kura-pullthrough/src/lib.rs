//! Kura's pull-through cache, control side: the client for upstream
//! registries ([`client`]), the meaning of ECR's pull-through cache rules
//! ([`rules`]), where the rules' credentials come from ([`creds`]), and
//! [`PullThrough`], the registry's [`kura_registry::upstream::PullThroughSource`].
//!
//! The data path (fetching, storing, single flight) is the registry's; the
//! ECR operations on rules are `kura-ecr`'s (`ops/pullthrough.rs`).

pub mod challenge;
pub mod client;
pub mod creds;
pub mod rules;
pub mod source;

pub use client::{Auth, ClientConfig, Endpoint, RemoteRepo, UpstreamClient};
pub use creds::{CredentialSource, StaticSecrets, UpstreamCredentials};
pub use source::{PullThrough, SecretProblem};
