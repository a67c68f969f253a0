//! EventBridge for Kura.
//!
//! * [`pattern`] — the event pattern language as EventBridge documents it (pure).

pub mod pattern;
