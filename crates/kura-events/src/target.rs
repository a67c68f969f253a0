//! What a rule's target ARN names, and the destination it resolves to.
//!
//! * `arn:aws:events:<region>:<account>:api-destination/<name>[/<uuid>]`: an API destination
//!   of the caller's account; delivery sends the EventBridge event as JSON with the
//!   connection's authorization (an API key header, or Basic).
//! * `arn:kura:events:<region>:<account>:webhook/<name>`: the same API destination as a plain
//!   webhook; delivery sends a CloudEvents 1.0 JSON envelope and signs the body with the
//!   connection's secret (`X-Kura-Signature: sha256=<hex HMAC-SHA256>`).

use kura_store::events::EventResourceRow;
use serde_json::Value;

use crate::api::{Events, EventsError, EventsResult};

/// How a target delivers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetKind {
    /// An EventBridge API destination (by name; the uuid, if given, must match).
    ApiDestination { name: String, uuid: Option<String> },
    /// A Kura webhook through the named API destination.
    Webhook { name: String },
}

/// A connection's authorization, opened.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// `<header>: <value>`.
    ApiKey { header: String, value: String },
    /// HTTP Basic.
    Basic { username: String, password: String },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::ApiKey { header, .. } => write!(f, "ApiKey({header}: <redacted>)"),
            Auth::Basic { username, .. } => write!(f, "Basic({username}:<redacted>)"),
        }
    }
}

impl Auth {
    /// The secret part (the webhook's HMAC key).
    pub fn secret(&self) -> &str {
        match self {
            Auth::ApiKey { value, .. } => value,
            Auth::Basic { password, .. } => password,
        }
    }
}

/// Where and how to deliver: an API destination with its connection.
#[derive(Clone, Debug)]
pub struct Destination {
    /// The endpoint (`*` wildcards filled from the target's `PathParameterValues`).
    pub endpoint: String,
    /// The HTTP method.
    pub method: String,
    /// The connection's authorization.
    pub auth: Auth,
}

impl TargetKind {
    /// Parse a target ARN for `account` in `region`.
    pub fn parse(arn: &str, region: &str, account: &str) -> EventsResult<TargetKind> {
        let refuse = || {
            EventsError::validation(format!(
                "Target Arn {arn} is not supported by Kura: use an API destination \
                 (arn:aws:events:{region}:{account}:api-destination/<name>) or a Kura webhook \
                 (arn:kura:events:{region}:{account}:webhook/<api-destination name>)."
            ))
        };
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let [_, partition, "events", r, a, resource] = parts[..] else {
            return Err(refuse());
        };
        if r != region || a != account {
            return Err(EventsError::validation(format!(
                "Target Arn {arn} names another region or account; targets must be in this account and region."
            )));
        }
        let (kind, rest) = resource.split_once('/').ok_or_else(refuse)?;
        let mut segs = rest.split('/');
        let name = segs.next().filter(|n| !n.is_empty()).ok_or_else(refuse)?.to_string();
        let uuid = segs.next().map(str::to_string);
        if segs.next().is_some() {
            return Err(refuse());
        }
        match (partition, kind, uuid) {
            ("aws", "api-destination", uuid) => Ok(TargetKind::ApiDestination { name, uuid }),
            ("kura", "webhook", None) => Ok(TargetKind::Webhook { name }),
            _ => Err(refuse()),
        }
    }

    /// The API destination's name.
    pub fn name(&self) -> &str {
        match self {
            TargetKind::ApiDestination { name, .. } | TargetKind::Webhook { name } => name,
        }
    }
}

pub(crate) fn connection_context(row: &EventResourceRow) -> Vec<u8> {
    format!("events-connection:{}:{}:{}", row.account, row.name, row.uuid).into_bytes()
}

impl Events {
    /// Resolve a target to its API destination and connection (the secret opened).
    pub async fn destination_for(&self, account: &str, kind: &TargetKind) -> EventsResult<Destination> {
        let dest = self
            .store
            .event_resource_get(account, "api-destination", kind.name())
            .await?
            .ok_or_else(|| EventsError::not_found(format!("API destination {} does not exist.", kind.name())))?;
        if let TargetKind::ApiDestination { uuid: Some(u), name } = kind {
            if *u != dest.uuid {
                return Err(EventsError::not_found(format!(
                    "API destination {name} does not exist."
                )));
            }
        }
        let body: Value = serde_json::from_str(&dest.body).map_err(|_| EventsError::internal())?;
        let conn_name = body["ConnectionName"].as_str().unwrap_or_default();
        let conn = self
            .store
            .event_resource_get(account, "connection", conn_name)
            .await?
            .ok_or_else(|| EventsError::not_found(format!("Connection {conn_name} does not exist.")))?;
        let cbody: Value = serde_json::from_str(&conn.body).map_err(|_| EventsError::internal())?;
        let secret = conn
            .secret
            .as_deref()
            .and_then(|s| self.master.open(s, &connection_context(&conn)).ok())
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                tracing::error!(connection = %conn.name, "events: a connection's secret does not open with the master key");
                EventsError::internal()
            })?;
        let auth = match cbody["AuthorizationType"].as_str() {
            Some("API_KEY") => Auth::ApiKey {
                header: cbody["ApiKeyName"].as_str().unwrap_or_default().to_string(),
                value: secret,
            },
            _ => Auth::Basic {
                username: cbody["Username"].as_str().unwrap_or_default().to_string(),
                password: secret,
            },
        };
        Ok(Destination {
            endpoint: body["InvocationEndpoint"].as_str().unwrap_or_default().to_string(),
            method: body["HttpMethod"].as_str().unwrap_or("POST").to_string(),
            auth,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_arns() {
        let r = "us-east-1";
        let a = "111111111111";
        assert_eq!(
            TargetKind::parse("arn:aws:events:us-east-1:111111111111:api-destination/d/abc", r, a).unwrap(),
            TargetKind::ApiDestination {
                name: "d".into(),
                uuid: Some("abc".into())
            }
        );
        assert_eq!(
            TargetKind::parse("arn:kura:events:us-east-1:111111111111:webhook/d", r, a).unwrap(),
            TargetKind::Webhook { name: "d".into() }
        );
        for bad in [
            "arn:aws:events:us-east-1:222222222222:api-destination/d",
            "arn:aws:events:eu-west-1:111111111111:api-destination/d",
            "arn:aws:lambda:us-east-1:111111111111:function:f",
            "arn:aws:events:us-east-1:111111111111:rule/d",
            "arn:aws:events:us-east-1:111111111111:api-destination/",
            "arn:aws:events:us-east-1:111111111111:api-destination/d/u/x",
            "nonsense",
        ] {
            assert!(TargetKind::parse(bad, r, a).is_err(), "{bad}");
        }
    }
}
