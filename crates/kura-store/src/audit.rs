//! The audit trail's storage: CloudTrail-shaped records with the attributes
//! `LookupEvents` filters on as indexed columns.
//!
//! Appends come in batches (the recorder groups records arriving together
//! into one transaction); lookups are per account, newest first, keyset-paged
//! on `(event_time, seq)`; retention deletes the oldest rows in bounded
//! batches.

use async_trait::async_trait;

use crate::error::Result;

/// One record to append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrailRow {
    /// CloudTrail's `eventID` (unique per account).
    pub event_id: String,
    /// The account whose trail holds it (`recipientAccountId`).
    pub account: String,
    /// `eventTime`, ms since the epoch.
    pub event_time: i64,
    /// `eventName`, e.g. `CreateRepository`.
    pub event_name: String,
    /// `eventSource`, e.g. `ecr.amazonaws.com`.
    pub event_source: String,
    /// LookupEvents' `Username`, when the caller has one.
    pub username: Option<String>,
    /// The access key the call was signed with.
    pub access_key_id: Option<String>,
    /// `readOnly`.
    pub read_only: bool,
    /// The resources the call names: (type, name), e.g.
    /// (`AWS::ECR::Repository`, `team/app`).
    pub resources: Vec<(String, String)>,
    /// The whole record, CloudTrail's JSON.
    pub record: String,
}

/// A stored record, with its place in the trail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrailEvent {
    /// Insertion order (ties of `event_time` are broken by it).
    pub seq: i64,
    /// The record.
    pub row: TrailRow,
}

/// What a lookup filters on (CloudTrail's lookup attributes; one at a time).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrailFilter {
    /// Every record.
    All,
    /// `EventName`.
    EventName(String),
    /// `Username`.
    Username(String),
    /// `ResourceName`.
    ResourceName(String),
    /// `ResourceType`.
    ResourceType(String),
    /// `EventSource`.
    EventSource(String),
    /// `AccessKeyId`.
    AccessKeyId(String),
    /// `ReadOnly`.
    ReadOnly(bool),
    /// `EventId`.
    EventId(String),
}

/// One page of a lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrailQuery {
    /// Only this account's records.
    pub account: String,
    /// The attribute.
    pub filter: TrailFilter,
    /// Oldest `event_time` (ms, inclusive).
    pub start_ms: i64,
    /// Newest `event_time` (ms, inclusive).
    pub end_ms: i64,
    /// Continue after this `(event_time, seq)` (the last record of the
    /// previous page; pages go newest first).
    pub before: Option<(i64, i64)>,
    /// At most this many records.
    pub limit: i64,
}

/// The audit trail.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Append records in one transaction. On SQLite the commit is relaxed
    /// (no fsync of its own): it survives the process being killed, and the
    /// next durable commit makes it survive a power cut too.
    async fn trail_append(&self, rows: &[TrailRow]) -> Result<()>;

    /// One page of an account's records matching `q`, newest first.
    async fn trail_lookup(&self, q: &TrailQuery) -> Result<Vec<TrailEvent>>;

    /// Delete at most `limit` records older than `before_ms` (any account),
    /// oldest first; returns how many went.
    async fn trail_purge(&self, before_ms: i64, limit: i64) -> Result<u64>;
}

/// CloudTrail's `AwsServiceEvent` record for a service's own action
/// (`PolicyExecutionEvent`: the lifecycle expired an image), or `None` for
/// an [`AuditEvent`](crate::gc::AuditEvent) that is not a CloudTrail record.
/// The deployment's region is not known here: the record has no
/// `awsRegion`, which the reader fills in.
pub fn service_event(e: &crate::gc::AuditEvent) -> Option<TrailRow> {
    if e.event_name != "PolicyExecutionEvent" || e.source != "ecr.amazonaws.com" {
        return None;
    }
    let detail: serde_json::Value = serde_json::from_str(&e.detail).ok()?;
    let repo = detail
        .get("repositoryName")
        .and_then(|v| v.as_str())
        .map(str::to_string);
    Some(aws_service_event(ServiceEvent {
        account: &e.account,
        at_ms: e.at,
        source: &e.source,
        event_name: &e.event_name,
        region: None,
        repository: repo.as_deref(),
        detail,
    }))
}

/// A service's own action, for [`aws_service_event`].
pub struct ServiceEvent<'a> {
    /// The account whose trail gets it.
    pub account: &'a str,
    /// When (ms).
    pub at_ms: i64,
    /// The service (`ecr.amazonaws.com`).
    pub source: &'a str,
    /// What it did (`PolicyExecutionEvent`, `ReplicateImage`).
    pub event_name: &'a str,
    /// The region (none: the reader fills in the deployment's).
    pub region: Option<&'a str>,
    /// The repository it acted on.
    pub repository: Option<&'a str>,
    /// `serviceEventDetails`.
    pub detail: serde_json::Value,
}

/// CloudTrail's `AwsServiceEvent` record of a service acting on its own
/// (no caller): `userIdentity` names the service as `invokedBy`.
pub fn aws_service_event(e: ServiceEvent<'_>) -> TrailRow {
    let event_id = uuid::Uuid::new_v4().to_string();
    let secs = e.at_ms.div_euclid(1000);
    let region = e.region.unwrap_or_default();
    let mut record = serde_json::json!({
        "eventVersion": "1.08",
        "userIdentity": {"accountId": e.account, "invokedBy": e.source},
        "eventTime": rfc3339_secs(secs),
        "eventSource": e.source,
        "eventName": e.event_name,
        "sourceIPAddress": e.source,
        "userAgent": e.source,
        "requestParameters": null,
        "responseElements": null,
        "eventID": event_id,
        "readOnly": false,
        "resources": e.repository.iter().map(|r| serde_json::json!({
            "accountId": e.account,
            "type": "AWS::ECR::Repository",
            "ARN": format!("arn:aws:ecr:{region}:{}:repository/{r}", e.account),
        })).collect::<Vec<_>>(),
        "eventType": "AwsServiceEvent",
        "managementEvent": true,
        "recipientAccountId": e.account,
        "serviceEventDetails": e.detail,
        "eventCategory": "Management",
    });
    if let Some(r) = e.region {
        record["awsRegion"] = serde_json::json!(r);
    }
    TrailRow {
        event_id,
        account: e.account.to_string(),
        event_time: e.at_ms,
        event_name: e.event_name.to_string(),
        event_source: e.source.to_string(),
        username: None,
        access_key_id: None,
        read_only: false,
        resources: e
            .repository
            .into_iter()
            .map(|r| ("AWS::ECR::Repository".to_string(), r.to_string()))
            .collect(),
        record: record.to_string(),
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the epoch (UTC; CloudTrail's
/// `eventTime`).
pub fn rfc3339_secs(secs: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}
