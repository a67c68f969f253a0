//! Kura's OCI distribution API (the data plane).
//!
//! Layering: [`http`] handlers take a request parsed once into a
//! [`request::DataRequest`] (an [`endpoint::Endpoint`], typed query
//! parameters and headers; by the guard in front, or by the handler when no
//! guard ran) and call one [`service::Registry`] method; the service calls the stores
//! ([`kura_store::MetaStore`], [`kura_store::BlobStore`]); stores never call
//! back. Every failure is an [`error::ApiError`], rendered in the spec's
//! `{"errors":[...]}` format with its status.
//!
//! [`app`] builds the router used by `kura serve` and by the tests (which call
//! it with `tower::ServiceExt::oneshot`, without a socket).

pub mod endpoint;
pub mod error;
pub mod events;
pub mod http;
pub mod request;
pub mod service;
pub mod upstream;

use std::sync::Arc;

pub use error::ApiError;
pub use events::{Actor, EventKind, EventListener, EventType, ImageEvent};
pub use request::DataRequest;
pub use service::{PullThroughStats, PullTimeFilter, Purpose, Registry, RegistryConfig};

/// Build the HTTP application for a registry.
pub fn app(registry: Arc<Registry>) -> axum::Router {
    http::router(registry)
}
