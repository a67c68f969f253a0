//! EventBridge for Kura.
//!
//! * [`pattern`] — the event pattern language as EventBridge documents it (pure).
//! * [`ecr`] — ECR's events in the shapes EventBridge delivers them (pure).
//! * [`api`] — the EventBridge API subset over the [`kura_store::EventsStore`].
//! * [`target`] — what a target ARN names and the destination it resolves to.

pub mod api;
pub mod ecr;
pub mod pattern;
pub mod target;

pub use api::{Events, EventsError};
