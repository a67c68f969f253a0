//! CloudTrail's `LookupEvents` over the trail, and the rendering `kura
//! audit` shares.
//!
//! One lookup attribute at most (CloudTrail's rule), a time range (both ends
//! inclusive), newest first, at most 50 per page. `NextToken` carries the
//! last record's `(eventTime, seq)` and a fingerprint of the query it
//! belongs to (account, attribute, time range): a token used with another
//! query, or altered, is `InvalidNextTokenException`. A token can only move
//! a cursor within the caller's own account: the account is part of every
//! query, never of the token.

use std::sync::OnceLock;

use base64::Engine;
use kura_store::audit::{TrailEvent, TrailFilter, TrailQuery};
use kura_store::AuditStore;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The CloudTrail API's `X-Amz-Target` prefix.
pub const TARGET_PREFIX: &str = "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101";
/// The shapes of the operations served, from botocore's `cloudtrail` model
/// (`scripts/gen-ecr-model.py`, pruned to `LookupEvents`).
pub const MODEL_JSON: &str = include_str!("../model/cloudtrail-shapes.json");

fn model() -> &'static Value {
    static M: OnceLock<Value> = OnceLock::new();
    M.get_or_init(|| serde_json::from_str(MODEL_JSON).expect("the CloudTrail model is valid JSON"))
}

fn shape(name: &str) -> &'static Value {
    &model()["shapes"][name]
}

/// A refused lookup: CloudTrail's error type and message (HTTP 400).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LookupError {
    /// `__type`, e.g. `InvalidNextTokenException`.
    pub kind: &'static str,
    /// `message`.
    pub message: String,
}

impl LookupError {
    fn new(kind: &'static str, message: impl Into<String>) -> Self {
        LookupError {
            kind,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for LookupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

/// A parsed `LookupEvents` input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LookupInput {
    /// The attribute.
    pub filter: TrailFilter,
    /// Oldest time (ms, inclusive).
    pub start_ms: i64,
    /// Newest time (ms, inclusive).
    pub end_ms: i64,
    /// Whether the input named `EndTime` (else it is "now" of the first
    /// page, carried by the token to the next pages).
    pub end_given: bool,
    /// Page size (1..=50).
    pub max_results: i64,
    /// Where the previous page ended.
    pub next_token: Option<String>,
    /// `EventCategory: insight` (Kura records none).
    pub insights: bool,
}

fn time_ms(v: &Value, member: &str) -> Result<i64, LookupError> {
    let bad = || LookupError::new("SerializationException", format!("Expected a timestamp at '{member}'"));
    match v {
        Value::Number(n) => n.as_f64().map(|s| (s * 1000.0).round() as i64).ok_or_else(bad),
        Value::String(s) => {
            if let Ok(secs) = s.parse::<f64>() {
                return Ok((secs * 1000.0).round() as i64);
            }
            let t = humantime::parse_rfc3339_weak(s).map_err(|_| bad())?;
            let d = t.duration_since(std::time::UNIX_EPOCH).map_err(|_| bad())?;
            Ok(d.as_millis() as i64)
        }
        _ => Err(bad()),
    }
}

/// Parse and check a `LookupEvents` input against the model and CloudTrail's
/// rules. `now_ms` is the default end of the range.
pub fn parse_input(input: &Value, now_ms: i64) -> Result<LookupInput, LookupError> {
    let obj = input
        .as_object()
        .ok_or_else(|| LookupError::new("SerializationException", "The request body must be a JSON object"))?;
    let members = shape("LookupEventsRequest")["members"]
        .as_object()
        .expect("request members");
    if let Some(k) = obj.keys().find(|k| !members.contains_key(*k)) {
        return Err(LookupError::new(
            "SerializationException",
            format!("Unknown member '{k}' for LookupEventsRequest"),
        ));
    }
    let get = |k: &str| obj.get(k).filter(|v| !v.is_null());
    let mut filter = TrailFilter::All;
    if let Some(list) = get("LookupAttributes") {
        let list = list
            .as_array()
            .ok_or_else(|| LookupError::new("SerializationException", "Expected a list at 'LookupAttributes'"))?;
        if list.len() > 1 {
            return Err(LookupError::new(
                "InvalidLookupAttributesException",
                "You can only specify one lookup attribute.",
            ));
        }
        if let Some(a) = list.first() {
            filter = attribute(a)?;
        }
    }
    let end = get("EndTime").map(|v| time_ms(v, "EndTime")).transpose()?;
    let end_ms = end.unwrap_or(now_ms);
    let start_ms = get("StartTime")
        .map(|v| time_ms(v, "StartTime"))
        .transpose()?
        .unwrap_or(0);
    if start_ms > end_ms {
        return Err(LookupError::new(
            "InvalidTimeRangeException",
            "Start time must be before or equal to end time.",
        ));
    }
    let max_shape = shape("MaxResults");
    let max_results = match get("MaxResults") {
        None => max_shape["max"].as_i64().unwrap_or(50),
        Some(v) => {
            let n = v
                .as_i64()
                .ok_or_else(|| LookupError::new("SerializationException", "Expected an integer at 'MaxResults'"))?;
            let (lo, hi) = (
                max_shape["min"].as_i64().unwrap_or(1),
                max_shape["max"].as_i64().unwrap_or(50),
            );
            if n < lo || n > hi {
                return Err(LookupError::new(
                    "InvalidMaxResultsException",
                    format!("Max results must be between {lo} and {hi}."),
                ));
            }
            n
        }
    };
    let next_token = match get("NextToken") {
        None => None,
        Some(v) => Some(
            v.as_str()
                .ok_or_else(|| LookupError::new("InvalidNextTokenException", "Invalid NextToken."))?
                .to_string(),
        ),
    };
    let insights = match get("EventCategory") {
        None => false,
        Some(v) => {
            let allowed = shape("EventCategory")["enum"].as_array().expect("event categories");
            if !v
                .as_str()
                .is_some_and(|s| allowed.iter().any(|a| a.as_str() == Some(s)))
            {
                return Err(LookupError::new(
                    "InvalidEventCategoryException",
                    "Event category is not valid.",
                ));
            }
            true
        }
    };
    Ok(LookupInput {
        filter,
        start_ms,
        end_ms,
        end_given: end.is_some(),
        max_results,
        next_token,
        insights,
    })
}

fn attribute(a: &Value) -> Result<TrailFilter, LookupError> {
    let invalid = |m: &str| LookupError::new("InvalidLookupAttributesException", m.to_string());
    let key = a
        .get("AttributeKey")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("AttributeKey is required."))?;
    let value = a
        .get("AttributeValue")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("AttributeValue is required."))?;
    if let Some(k) = a
        .as_object()
        .and_then(|o| o.keys().find(|k| *k != "AttributeKey" && *k != "AttributeValue"))
    {
        return Err(LookupError::new(
            "SerializationException",
            format!("Unknown member '{k}' for LookupAttribute"),
        ));
    }
    let vs = shape("LookupAttributeValue");
    let len = value.chars().count() as i64;
    if len < vs["min"].as_i64().unwrap_or(1) || len > vs["max"].as_i64().unwrap_or(2000) {
        return Err(invalid("AttributeValue must be 1 to 2000 characters long."));
    }
    let known = shape("LookupAttributeKey")["enum"].as_array().expect("attribute keys");
    if !known.iter().any(|k| k.as_str() == Some(key)) {
        return Err(invalid(&format!(
            "Invalid attribute key: {}",
            crate::redact::clip(key, 64)
        )));
    }
    let v = value.to_string();
    Ok(match key {
        "EventName" => TrailFilter::EventName(v),
        "Username" => TrailFilter::Username(v),
        "ResourceName" => TrailFilter::ResourceName(v),
        "ResourceType" => TrailFilter::ResourceType(v),
        "EventSource" => TrailFilter::EventSource(v),
        "AccessKeyId" => TrailFilter::AccessKeyId(v),
        "EventId" => TrailFilter::EventId(v),
        "ReadOnly" => match value {
            "true" => TrailFilter::ReadOnly(true),
            "false" => TrailFilter::ReadOnly(false),
            _ => return Err(invalid("ReadOnly must be true or false.")),
        },
        _ => return Err(invalid(&format!("Invalid attribute key: {key}"))),
    })
}

fn fingerprint(account: &str, q: &LookupInput) -> String {
    let mut h = Sha256::new();
    let end = if q.end_given {
        q.end_ms.to_string()
    } else {
        "now".into()
    };
    h.update(format!("{account}\0{:?}\0{}\0{end}", q.filter, q.start_ms).as_bytes());
    hex::encode(&h.finalize()[..12])
}

fn encode_token(fp: &str, time: i64, seq: i64, end: i64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("v1.{time}.{seq}.{end}.{fp}"))
}

/// The token's cursor `(event_time, seq)` and the range's end it carries.
fn decode_token(token: &str, fp: &str) -> Result<((i64, i64), i64), LookupError> {
    let bad = || LookupError::new("InvalidNextTokenException", "Invalid NextToken.");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.as_bytes())
        .map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let mut parts = raw.split('.');
    let (Some("v1"), Some(t), Some(s), Some(e), Some(f), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(bad());
    };
    if f != fp {
        return Err(bad());
    }
    let num = |v: &str| v.parse::<i64>().map_err(|_| bad());
    Ok(((num(t)?, num(s)?), num(e)?))
}

/// One page: the records and the token of the next page (if the page was
/// full).
pub async fn lookup(
    store: &dyn AuditStore,
    account: &str,
    q: &LookupInput,
) -> Result<Result<(Vec<TrailEvent>, Option<String>), LookupError>, kura_store::StoreError> {
    let fp = fingerprint(account, q);
    let mut end_ms = q.end_ms;
    let before = match &q.next_token {
        Some(t) => match decode_token(t, &fp) {
            Ok((b, end)) => {
                // Without an EndTime, every page ends where the first did.
                if !q.end_given {
                    end_ms = end;
                }
                Some(b)
            }
            Err(e) => return Ok(Err(e)),
        },
        None => None,
    };
    if q.start_ms > end_ms {
        return Ok(Err(LookupError::new("InvalidNextTokenException", "Invalid NextToken.")));
    }
    if q.insights {
        return Ok(Ok((Vec::new(), None)));
    }
    let events = store
        .trail_lookup(&TrailQuery {
            account: account.to_string(),
            filter: q.filter.clone(),
            start_ms: q.start_ms,
            end_ms,
            before,
            limit: q.max_results,
        })
        .await?;
    let next = (events.len() as i64 == q.max_results)
        .then(|| {
            events
                .last()
                .map(|e| encode_token(&fp, e.row.event_time, e.seq, end_ms))
        })
        .flatten();
    Ok(Ok((events, next)))
}

/// A stored record as CloudTrail shows it (`awsRegion` filled in for the
/// service events the store writes without one).
pub fn record_json(e: &TrailEvent, region: &str) -> Value {
    let mut v: Value = serde_json::from_str(&e.row.record).unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.entry("awsRegion").or_insert_with(|| json!(region));
    }
    v
}

/// One entry of `LookupEvents`' `Events`.
pub fn render_event(e: &TrailEvent, region: &str) -> Value {
    let record = record_json(e, region);
    let mut out = json!({
        "EventId": e.row.event_id,
        "EventName": e.row.event_name,
        "ReadOnly": if e.row.read_only { "true" } else { "false" },
        "EventTime": e.row.event_time as f64 / 1000.0,
        "EventSource": e.row.event_source,
        "Resources": e.row.resources.iter().map(|(t, n)| json!({"ResourceType": t, "ResourceName": n})).collect::<Vec<_>>(),
        "CloudTrailEvent": record.to_string(),
    });
    if let Some(k) = &e.row.access_key_id {
        out["AccessKeyId"] = json!(k);
    }
    if let Some(u) = &e.row.username {
        out["Username"] = json!(u);
    }
    out
}

/// `LookupEvents` for `account`: the JSON answer, or CloudTrail's error.
pub async fn lookup_events(
    store: &dyn AuditStore,
    account: &str,
    region: &str,
    input: &Value,
    now_ms: i64,
) -> Result<Result<Value, LookupError>, kura_store::StoreError> {
    let q = match parse_input(input, now_ms) {
        Ok(q) => q,
        Err(e) => return Ok(Err(e)),
    };
    let (events, next) = match lookup(store, account, &q).await? {
        Ok(page) => page,
        Err(e) => return Ok(Err(e)),
    };
    let mut out = json!({"Events": events.iter().map(|e| render_event(e, region)).collect::<Vec<_>>()});
    if let Some(t) = next {
        out["NextToken"] = json!(t);
    }
    Ok(Ok(out))
}
