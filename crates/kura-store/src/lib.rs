//! Kura's storage layer: two stores, one source of truth.
//!
//! * [`meta::MetaStore`] — the metadata store ([`sql::SqlMetaStore`]: SQLite by
//!   default, PostgreSQL for several nodes, one SQL text). Everything a
//!   request must decide lives here: repositories, manifests, tags, references,
//!   blob visibility per repository, and upload sessions with their resumable
//!   hash state.
//! * [`blob::BlobStore`] — bytes only, content-addressed, shared across
//!   repositories (local filesystem or S3). It never decides races.
//!
//! Layering: services call stores; stores never call services.

pub mod audit;
pub mod blob;
pub mod control;
pub mod error;
pub mod events;
pub mod fs;
pub mod gc;
pub mod iam;
pub mod jobs;
pub mod meta;
pub mod ptc_rules;
pub mod replication;
pub mod s3;
pub mod scan;
pub mod secrets;
pub mod space;
pub mod sql;
mod sql_archive;
mod sql_audit;
mod sql_control;
mod sql_events;
mod sql_fetch;
pub mod sql_health;
mod sql_iam;
mod sql_jobs;
mod sql_maint;
mod sql_meta;
mod sql_ptc_rules;
mod sql_repl;
mod sql_scan;
mod sql_secrets;
pub mod testdb;

pub use audit::AuditStore;
pub use blob::{BlobStore, ByteStream, StoredKind, StoredObject};
pub use control::ControlStore;
pub use error::StoreError;
pub use events::EventsStore;
pub use fs::FsBlobStore;
pub use gc::MaintenanceStore;
pub use iam::IamStore;
pub use jobs::JobStore;
pub use meta::MetaStore;
pub use ptc_rules::PullThroughRuleStore;
pub use replication::ReplicationStore;
pub use s3::{S3BlobStore, S3Config};
pub use scan::ScanStore;
pub use secrets::SecretsStore;
pub use space::DiskReserve;
pub use sql::{Dialect, SqlMetaStore, SqliteMetaStore};

/// Milliseconds since the Unix epoch, the time unit of every stored timestamp.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
