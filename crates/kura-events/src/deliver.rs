//! Sending one event to one target over HTTP.
//!
//! An API destination target gets the EventBridge event as its JSON body, with the
//! connection's authorization (`<ApiKeyName>: <value>`, or Basic), the target's
//! `HttpParameters` (headers, query string, `*` path wildcards filled in order), and
//! `User-Agent: Amazon/EventBridge/ApiDestinations` as EventBridge sends. A Kura webhook
//! target gets a CloudEvents 1.0 JSON envelope instead, signed:
//! `X-Kura-Signature: sha256=<hex HMAC-SHA256 of the body under the connection's secret>`.
//!
//! The outcome follows EventBridge's retry rules for API destinations: 2xx is delivered;
//! 401, 407, 409, 429, 5xx, timeouts and connection errors are worth retrying; any other
//! status (other 4xx, and redirects, which are not followed) never will succeed.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;

use crate::api::{Events, EventsError};
use crate::target::{Auth, Destination, TargetKind};

/// The job payload of one delivery: which target of which rule gets which event. The
/// destination (endpoint, connection, secret) is resolved when the job runs, so no secret is
/// stored in the job table and a changed destination applies to pending deliveries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeliveryJob {
    /// The rule's account.
    pub account: String,
    /// The rule that matched.
    pub rule: String,
    /// The target's id.
    pub target_id: String,
    /// The target's ARN.
    pub target_arn: String,
    /// The target's `HttpParameters`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_parameters: Option<Value>,
    /// The event, EventBridge-shaped.
    pub event: Value,
    /// Give up (dead letter) on a failure after this time (ms): the target's
    /// `RetryPolicy.MaximumEventAgeInSeconds` after the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<i64>,
}

/// How one attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The target answered 2xx.
    Delivered,
    /// Worth trying again later.
    Retry(String),
    /// Will never succeed.
    Fatal(String),
}

/// The HTTP side of delivery.
#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
}

impl Sender {
    /// A sender whose requests time out after `timeout` (EventBridge uses 5 s).
    pub fn new(timeout: Duration) -> Sender {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client with the process's crypto provider");
        Sender { client }
    }

    /// Deliver one job: resolve its destination, send, classify the answer.
    pub async fn deliver(&self, events: &Events, job: &DeliveryJob) -> Outcome {
        let kind = match TargetKind::parse(&job.target_arn, events.region(), &job.account) {
            Ok(k) => k,
            Err(e) => return Outcome::Fatal(e.message),
        };
        let dest = match events.destination_for(&job.account, &kind).await {
            Ok(d) => d,
            Err(EventsError {
                status: 500, message, ..
            }) => return Outcome::Retry(message),
            Err(e) => return Outcome::Fatal(e.message),
        };
        self.send(&kind, &dest, job.http_parameters.as_ref(), &job.event).await
    }

    /// Send `event` to a resolved destination.
    pub async fn send(&self, kind: &TargetKind, dest: &Destination, params: Option<&Value>, event: &Value) -> Outcome {
        let url = match build_url(&dest.endpoint, params) {
            Ok(u) => u,
            Err(e) => return Outcome::Fatal(e),
        };
        let Ok(method) = reqwest::Method::from_bytes(dest.method.as_bytes()) else {
            return Outcome::Fatal(format!("bad HTTP method {}", dest.method));
        };
        let webhook = matches!(kind, TargetKind::Webhook { .. });
        let body = if webhook {
            crate::ecr::cloudevent(event).to_string()
        } else {
            event.to_string()
        };
        let mut req = self
            .client
            .request(method, url)
            .header(
                "content-type",
                if webhook {
                    "application/cloudevents+json"
                } else {
                    "application/json"
                },
            )
            .header("user-agent", "Amazon/EventBridge/ApiDestinations");
        if let Some(headers) = params
            .and_then(|p| p.get("HeaderParameters"))
            .and_then(Value::as_object)
        {
            for (k, v) in headers {
                if let Some(v) = v.as_str() {
                    req = req.header(k.as_str(), v);
                }
            }
        }
        req = match &dest.auth {
            Auth::ApiKey { header, value } if !webhook => req.header(header.as_str(), value.as_str()),
            Auth::Basic { username, password } if !webhook => req.basic_auth(username, Some(password)),
            auth => req.header("x-kura-signature", signature(auth.secret(), body.as_bytes())),
        };
        match req.body(body).send().await {
            Ok(resp) => classify(resp.status().as_u16()),
            Err(e) => Outcome::Retry(format!("sending to {}: {e}", dest.endpoint)),
        }
    }
}

/// `sha256=<hex HMAC-SHA256(secret, body)>`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// EventBridge's retry rule for API destinations.
pub fn classify(status: u16) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered,
        401 | 407 | 409 | 429 | 500..=599 => Outcome::Retry(format!("the target answered {status}")),
        _ => Outcome::Fatal(format!("the target answered {status}")),
    }
}

/// The endpoint with `*` path wildcards filled from `PathParameterValues` (in order) and the
/// `QueryStringParameters` appended.
fn build_url(endpoint: &str, params: Option<&Value>) -> Result<reqwest::Url, String> {
    let mut text = endpoint.to_string();
    if let Some(values) = params
        .and_then(|p| p.get("PathParameterValues"))
        .and_then(Value::as_array)
    {
        for v in values.iter().filter_map(Value::as_str) {
            let Some(i) = text.find('*') else { break };
            let enc = percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC).to_string();
            text.replace_range(i..i + 1, &enc);
        }
    }
    let mut url = reqwest::Url::parse(&text).map_err(|e| format!("bad endpoint {endpoint}: {e}"))?;
    if let Some(q) = params
        .and_then(|p| p.get("QueryStringParameters"))
        .and_then(Value::as_object)
    {
        let mut pairs = url.query_pairs_mut();
        for (k, v) in q {
            if let Some(v) = v.as_str() {
                pairs.append_pair(k, v);
            }
        }
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_rules() {
        assert_eq!(classify(204), Outcome::Delivered);
        for s in [401, 407, 409, 429, 500, 503] {
            assert!(matches!(classify(s), Outcome::Retry(_)), "{s}");
        }
        for s in [301, 400, 403, 404, 413] {
            assert!(matches!(classify(s), Outcome::Fatal(_)), "{s}");
        }
    }

    #[test]
    fn url_parameters() {
        let p = serde_json::json!({"PathParameterValues": ["a b", "c"], "QueryStringParameters": {"k": "v&w"}});
        let u = build_url("http://h:1/x/*/y/*", Some(&p)).unwrap();
        assert_eq!(u.as_str(), "http://h:1/x/a%20b/y/c?k=v%26w");
    }

    #[test]
    fn hmac_signature() {
        // RFC 4231 test case 2.
        let s = signature("Jefe", b"what do ya want for nothing?");
        assert_eq!(
            s,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
