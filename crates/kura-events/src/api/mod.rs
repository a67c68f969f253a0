//! The EventBridge API subset (AWS JSON 1.1, `X-Amz-Target: AWSEvents.<Op>`, SigV4 service
//! `events`): rules and targets on the default event bus (`rules.rs`), connections and API
//! destinations (`destinations.rs`).
//!
//! [`Events::call`] runs one operation for one account on input the model already
//! validated; [`Events::resource`] names what an operation is authorized against
//! (`events:<Op>` on `arn:aws:events:<region>:<account>:rule/<name>`, `connection/<name>`,
//! `api-destination/<name>`, or `*` for lists and `TestEventPattern`). Every name is looked
//! up in the caller's account only, so another account's rules, connections and API
//! destinations are invisible (not found), and a target or connection ARN naming another
//! account is refused.

mod destinations;
mod rules;

use std::sync::Arc;

use kura_auth::seal::MasterKey;
use kura_store::{EventsStore, StoreError};
use serde_json::{json, Value};

/// The operations Kura serves (the rest of the model answers "not supported").
pub const OPERATIONS: &[&str] = &[
    "PutRule",
    "DescribeRule",
    "ListRules",
    "DeleteRule",
    "EnableRule",
    "DisableRule",
    "PutTargets",
    "RemoveTargets",
    "ListTargetsByRule",
    "TestEventPattern",
    "CreateConnection",
    "DescribeConnection",
    "DeleteConnection",
    "ListConnections",
    "CreateApiDestination",
    "DescribeApiDestination",
    "DeleteApiDestination",
    "ListApiDestinations",
];

/// Operations that only read (CloudTrail's `readOnly`).
pub fn read_only(op: &str) -> bool {
    op.starts_with("Describe") || op.starts_with("List") || op == "TestEventPattern"
}

/// Most rules per account (EventBridge's default quota).
pub const MAX_RULES: i64 = 300;
/// Most targets per rule.
pub const MAX_TARGETS: i64 = 5;
/// Most retries a target's `RetryPolicy` may ask for (EventBridge's bound).
pub const MAX_RETRY_ATTEMPTS: i64 = 185;
/// Most connections, and most API destinations, per account.
pub const MAX_DESTINATIONS: i64 = 300;

/// An error in EventBridge's terms: `__type`, message, HTTP status.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct EventsError {
    /// `ResourceNotFoundException`, `ValidationException`, …
    pub kind: &'static str,
    /// A sentence for humans.
    pub message: String,
    /// The HTTP status.
    pub status: u16,
}

impl EventsError {
    fn new(kind: &'static str, message: impl Into<String>) -> EventsError {
        EventsError {
            kind,
            message: message.into(),
            status: 400,
        }
    }

    /// `ValidationException`.
    pub fn validation(message: impl Into<String>) -> EventsError {
        EventsError::new("ValidationException", message)
    }

    /// `ResourceNotFoundException`.
    pub fn not_found(message: impl Into<String>) -> EventsError {
        EventsError::new("ResourceNotFoundException", message)
    }

    /// `ResourceAlreadyExistsException`.
    pub fn exists(message: impl Into<String>) -> EventsError {
        EventsError::new("ResourceAlreadyExistsException", message)
    }

    /// `LimitExceededException`.
    pub fn limit(message: impl Into<String>) -> EventsError {
        EventsError::new("LimitExceededException", message)
    }

    /// `InvalidEventPatternException`.
    pub fn pattern(message: impl Into<String>) -> EventsError {
        EventsError::new("InvalidEventPatternException", message)
    }

    /// `InternalException` (500): the details go to the log only.
    pub fn internal() -> EventsError {
        EventsError {
            kind: "InternalException",
            message: "An internal error occurred; the request was not completed".into(),
            status: 500,
        }
    }
}

impl From<StoreError> for EventsError {
    fn from(e: StoreError) -> EventsError {
        tracing::error!(error = %e, "events: store failure");
        EventsError::internal()
    }
}

/// Result of an operation.
pub type EventsResult<T> = Result<T, EventsError>;

/// The EventBridge API over the store.
#[derive(Clone)]
pub struct Events {
    pub(crate) store: Arc<dyn EventsStore>,
    pub(crate) master: MasterKey,
    pub(crate) region: String,
    pub(crate) cache: Arc<crate::route::RuleCache>,
}

impl Events {
    /// The API for a deployment in `region`, sealing connection secrets with `master`.
    pub fn new(store: Arc<dyn EventsStore>, master: MasterKey, region: impl Into<String>) -> Events {
        Events {
            store,
            master,
            region: region.into(),
            cache: Arc::default(),
        }
    }

    /// The deployment's region.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn EventsStore> {
        &self.store
    }

    /// The master key (delivery opens connection secrets with it).
    pub fn master(&self) -> &MasterKey {
        &self.master
    }

    /// Run operation `op` for `account` on validated `input`.
    pub async fn call(&self, op: &str, account: &str, input: &Value) -> EventsResult<Value> {
        let out = self.dispatch(op, account, input).await;
        if !read_only(op) {
            self.cache.invalidate(account);
        }
        out
    }

    async fn dispatch(&self, op: &str, account: &str, input: &Value) -> EventsResult<Value> {
        match op {
            "PutRule" => self.put_rule(account, input).await,
            "DescribeRule" => self.describe_rule(account, input).await,
            "ListRules" => self.list_rules(account, input).await,
            "DeleteRule" => self.delete_rule(account, input).await,
            "EnableRule" => self.set_rule_state(account, input, "ENABLED").await,
            "DisableRule" => self.set_rule_state(account, input, "DISABLED").await,
            "PutTargets" => self.put_targets(account, input).await,
            "RemoveTargets" => self.remove_targets(account, input).await,
            "ListTargetsByRule" => self.list_targets(account, input).await,
            "TestEventPattern" => test_event_pattern(input),
            "CreateConnection" => self.create_connection(account, input).await,
            "DescribeConnection" => self.describe_connection(account, input).await,
            "DeleteConnection" => self.delete_connection(account, input).await,
            "ListConnections" => self.list_connections(account, input).await,
            "CreateApiDestination" => self.create_api_destination(account, input).await,
            "DescribeApiDestination" => self.describe_api_destination(account, input).await,
            "DeleteApiDestination" => self.delete_api_destination(account, input).await,
            "ListApiDestinations" => self.list_api_destinations(account, input).await,
            other => Err(EventsError::new(
                "UnsupportedOperationException",
                format!("Kura does not support {other} (not in Kura's EventBridge subset)"),
            )),
        }
    }

    /// The ARN an operation is authorized against for `account` (IAM's resource types of
    /// EventBridge); `*` for lists and `TestEventPattern`.
    pub fn resource(&self, op: &str, account: &str, input: &Value) -> String {
        let name = |key: &str| input.get(key).and_then(Value::as_str).unwrap_or("*").to_string();
        let base = format!("arn:aws:events:{}:{account}", self.region);
        match op {
            "PutRule" | "DescribeRule" | "DeleteRule" | "EnableRule" | "DisableRule" => {
                format!("{base}:rule/{}", name("Name"))
            }
            "PutTargets" | "RemoveTargets" | "ListTargetsByRule" => format!("{base}:rule/{}", name("Rule")),
            "CreateConnection" | "DescribeConnection" | "DeleteConnection" => {
                format!("{base}:connection/{}", name("Name"))
            }
            "CreateApiDestination" | "DescribeApiDestination" | "DeleteApiDestination" => {
                format!("{base}:api-destination/{}", name("Name"))
            }
            _ => "*".to_string(),
        }
    }

    pub(crate) fn rule_arn(&self, account: &str, name: &str) -> String {
        format!("arn:aws:events:{}:{account}:rule/{name}", self.region)
    }
}

/// A string member of the input.
pub(crate) fn s<'a>(input: &'a Value, key: &str) -> Option<&'a str> {
    input.get(key).and_then(Value::as_str)
}

/// A required string member (the model checked presence; this only reads it).
pub(crate) fn req<'a>(input: &'a Value, key: &str) -> EventsResult<&'a str> {
    s(input, key).ok_or_else(|| EventsError::validation(format!("Parameter {key} is required.")))
}

/// The page size (`Limit`, default and cap 100).
pub(crate) fn limit(input: &Value) -> i64 {
    input.get("Limit").and_then(Value::as_i64).unwrap_or(100).clamp(1, 100)
}

/// A `NextToken` is the last name of the previous page, hex-encoded (opaque to clients).
pub(crate) fn next_token(last: &str) -> String {
    hex::encode(last)
}

pub(crate) fn after(input: &Value) -> EventsResult<Option<String>> {
    match s(input, "NextToken") {
        None => Ok(None),
        Some(t) => hex::decode(t)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .map(Some)
            .ok_or_else(|| EventsError::validation("The NextToken is not valid.")),
    }
}

/// EventBridge's timestamps in JSON 1.1: seconds since the epoch.
pub(crate) fn epoch(ms: i64) -> Value {
    json!(ms as f64 / 1000.0)
}

/// Only the default event bus exists.
pub(crate) fn check_bus(input: &Value, region: &str, account: &str) -> EventsResult<()> {
    match s(input, "EventBusName") {
        None | Some("default") => Ok(()),
        Some(b) if b == format!("arn:aws:events:{region}:{account}:event-bus/default") => Ok(()),
        Some(b) => Err(EventsError::not_found(format!("Event bus {b} does not exist."))),
    }
}

/// `TestEventPattern`: whether the event matches the pattern.
fn test_event_pattern(input: &Value) -> EventsResult<Value> {
    let pattern =
        crate::pattern::Pattern::parse(req(input, "EventPattern")?).map_err(|e| EventsError::pattern(e.to_string()))?;
    let event: Value = serde_json::from_str(req(input, "Event")?)
        .map_err(|_| EventsError::validation("Parameter Event is not valid."))?;
    let fields = ["id", "account", "source", "time", "region", "detail-type"];
    let ok = event.is_object()
        && fields.iter().all(|f| event.get(*f).is_some_and(Value::is_string))
        && event.get("resources").is_none_or(Value::is_array);
    if !ok {
        return Err(EventsError::validation(
            "Parameter Event is not valid: it must be a JSON object with the string fields id, account, \
             source, time, region and detail-type (and resources, if present, an array).",
        ));
    }
    Ok(json!({"Result": pattern.matches(&event)}))
}
