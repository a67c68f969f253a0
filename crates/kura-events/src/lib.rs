//! EventBridge for Kura.
//!
//! * [`job`] — the delivery job handler (retries for 24 h, then the dead letter).
//! * [`listener`] — the registry listener: image events → delivery jobs.
//! * [`pattern`] — the event pattern language as EventBridge documents it (pure).
//! * [`ecr`] — ECR's events in the shapes EventBridge delivers them (pure).
//! * [`api`] — the EventBridge API subset over the [`kura_store::EventsStore`].
//! * [`deliver`] — sending one event to one target over HTTP (API destinations, webhooks).
//! * [`route`] — which targets an event goes to (enabled rules of its account, cached).
//! * [`service`] — EventBridge as an `AwsService` of the AWS pipeline.
//! * [`target`] — what a target ARN names and the destination it resolves to.

pub mod api;
pub mod deliver;
pub mod ecr;
pub mod job;
pub mod listener;
pub mod pattern;
pub mod route;
pub mod service;
pub mod target;

pub use api::{Events, EventsError};
