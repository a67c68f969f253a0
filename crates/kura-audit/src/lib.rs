//! Kura's audit trail: what CloudTrail records, for every call on every
//! protocol.
//!
//! * [`record`]: a call ([`CallRecord`]) becomes CloudTrail's record
//!   (`userIdentity`, `requestParameters` with secrets redacted and
//!   policy-sized blobs trimmed ([`redact`]), small `responseElements`, …)
//!   and the indexed row the store keeps ([`kura_store::audit::TrailRow`]).
//! * [`recorder`]: group commit. Calls hand their record to one writer task,
//!   which writes whatever has arrived meanwhile in one transaction;
//!   `record()` returns once that transaction has committed, so the call is
//!   answered after its record is stored.
//! * [`lookup`]: CloudTrail's `LookupEvents` (one attribute, time range,
//!   keyset paging with a validated `NextToken`), and the rendering that
//!   `kura audit` shares.
//! * [`service`]: `LookupEvents` as a [`kura_aws::AwsService`] on the one
//!   AWS pipeline (which also calls the recorder, a
//!   [`kura_aws::CallRecorder`], for every call).
//! * [`retention`]: deleting records older than the retention, in bounded
//!   batches.

pub mod lookup;
pub mod record;
pub mod recorder;
pub mod redact;
pub mod retention;
pub mod service;

pub use record::{CallRecord, Caller};
pub use recorder::{AuditRecorder, RecorderOptions};
pub use service::CloudTrail;

/// How long records are kept unless configured (CloudTrail's event history).
pub const DEFAULT_RETENTION: std::time::Duration = std::time::Duration::from_secs(90 * 24 * 3600);
