//! Connections (API key or Basic authorization; the secret part sealed with the master key
//! and never returned) and API destinations (an HTTP endpoint with a connection).

use kura_store::events::EventResourceRow;
use kura_store::now_millis;
use serde_json::{json, Value};

use super::{after, epoch, limit, next_token, req, s, Events, EventsError, EventsResult, MAX_DESTINATIONS};
use crate::target::connection_context;

const CONNECTION: &str = "connection";
const API_DESTINATION: &str = "api-destination";

impl Events {
    fn connection_arn(&self, row: &EventResourceRow) -> String {
        format!(
            "arn:aws:events:{}:{}:connection/{}/{}",
            self.region, row.account, row.name, row.uuid
        )
    }

    fn api_destination_arn(&self, row: &EventResourceRow) -> String {
        format!(
            "arn:aws:events:{}:{}:api-destination/{}/{}",
            self.region, row.account, row.name, row.uuid
        )
    }

    async fn existing(&self, account: &str, kind: &str, name: &str) -> EventsResult<EventResourceRow> {
        self.store
            .event_resource_get(account, kind, name)
            .await?
            .ok_or_else(|| {
                EventsError::not_found(match kind {
                    CONNECTION => format!("Failed to describe the connection(s). Connection '{name}' does not exist."),
                    _ => format!(
                        "Failed to describe the api-destination(s). An api-destination '{name}' does not exist."
                    ),
                })
            })
    }

    async fn create_resource(
        &self,
        account: &str,
        kind: &str,
        name: &str,
        body: Value,
        secret: Option<&str>,
    ) -> EventsResult<EventResourceRow> {
        let count = self
            .store
            .event_resources_list(account, kind, "", None, MAX_DESTINATIONS)
            .await?
            .len() as i64;
        if count >= MAX_DESTINATIONS {
            return Err(EventsError::limit(format!(
                "The requested resource exceeds the maximum number allowed ({MAX_DESTINATIONS})."
            )));
        }
        let now = now_millis();
        let mut row = EventResourceRow {
            account: account.to_string(),
            kind: kind.to_string(),
            name: name.to_string(),
            uuid: uuid::Uuid::new_v4().to_string(),
            body: body.to_string(),
            secret: None,
            created_at: now,
            updated_at: now,
        };
        if let Some(secret) = secret {
            row.secret = Some(self.master.seal(secret.as_bytes(), &connection_context(&row)));
        }
        if !self.store.event_resource_create(&row).await? {
            let what = if kind == CONNECTION {
                "Connection"
            } else {
                "An api-destination"
            };
            return Err(EventsError::exists(format!("{what} '{name}' already exists.")));
        }
        Ok(row)
    }

    fn connection_summary(&self, row: &EventResourceRow) -> Value {
        let body: Value = serde_json::from_str(&row.body).unwrap_or_default();
        json!({
            "ConnectionArn": self.connection_arn(row),
            "Name": row.name,
            "ConnectionState": "AUTHORIZED",
            "AuthorizationType": body["AuthorizationType"],
            "CreationTime": epoch(row.created_at),
            "LastModifiedTime": epoch(row.updated_at),
            "LastAuthorizedTime": epoch(row.created_at),
        })
    }

    fn api_destination_json(&self, row: &EventResourceRow) -> Value {
        let body: Value = serde_json::from_str(&row.body).unwrap_or_default();
        let mut out = json!({
            "ApiDestinationArn": self.api_destination_arn(row),
            "Name": row.name,
            "ApiDestinationState": "ACTIVE",
            "ConnectionArn": body["ConnectionArn"],
            "InvocationEndpoint": body["InvocationEndpoint"],
            "HttpMethod": body["HttpMethod"],
            "CreationTime": epoch(row.created_at),
            "LastModifiedTime": epoch(row.updated_at),
        });
        for k in ["InvocationRateLimitPerSecond", "Description"] {
            if !body[k].is_null() {
                out[k] = body[k].clone();
            }
        }
        out
    }

    pub(super) async fn create_connection(&self, account: &str, input: &Value) -> EventsResult<Value> {
        let name = req(input, "Name")?;
        for unsupported in ["InvocationConnectivityParameters", "KmsKeyIdentifier"] {
            if input.get(unsupported).is_some() {
                return Err(EventsError::validation(format!(
                    "{unsupported} is not supported by Kura."
                )));
            }
        }
        let auth_type = req(input, "AuthorizationType")?;
        let params = input.get("AuthParameters").cloned().unwrap_or_default();
        let allowed: &[&str] = match auth_type {
            "API_KEY" => &["ApiKeyAuthParameters"],
            "BASIC" => &["BasicAuthParameters"],
            other => {
                return Err(EventsError::validation(format!(
                    "AuthorizationType {other} is not supported by Kura (API_KEY or BASIC)."
                )))
            }
        };
        if let Some(other) = params
            .as_object()
            .and_then(|m| m.keys().find(|k| !allowed.contains(&k.as_str())))
        {
            return Err(EventsError::validation(format!(
                "AuthParameters.{other} is not valid with AuthorizationType {auth_type} in Kura."
            )));
        }
        let (public, secret) = match auth_type {
            "API_KEY" => {
                let p = params.get("ApiKeyAuthParameters").ok_or_else(|| {
                    EventsError::validation("AuthParameters.ApiKeyAuthParameters is required for API_KEY.")
                })?;
                let header = req(p, "ApiKeyName")?;
                if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                    return Err(EventsError::validation(format!(
                        "ApiKeyName {header:?} is not a valid header name."
                    )));
                }
                (json!({"ApiKeyName": header}), req(p, "ApiKeyValue")?)
            }
            _ => {
                let p = params.get("BasicAuthParameters").ok_or_else(|| {
                    EventsError::validation("AuthParameters.BasicAuthParameters is required for BASIC.")
                })?;
                let user = req(p, "Username")?;
                if user.contains(':') {
                    return Err(EventsError::validation("Username must not contain ':'."));
                }
                (json!({"Username": user}), req(p, "Password")?)
            }
        };
        if http::HeaderValue::from_str(secret).is_err() {
            return Err(EventsError::validation(
                "The secret must be printable ASCII (it goes in a header).",
            ));
        }
        let mut body = json!({"AuthorizationType": auth_type});
        body.as_object_mut()
            .expect("object")
            .extend(public.as_object().cloned().unwrap_or_default());
        if let Some(d) = s(input, "Description") {
            body["Description"] = json!(d);
        }
        let row = self
            .create_resource(account, CONNECTION, name, body, Some(secret))
            .await?;
        Ok(json!({
            "ConnectionArn": self.connection_arn(&row),
            "ConnectionState": "AUTHORIZED",
            "CreationTime": epoch(row.created_at),
            "LastModifiedTime": epoch(row.updated_at),
        }))
    }

    pub(super) async fn describe_connection(&self, account: &str, input: &Value) -> EventsResult<Value> {
        let row = self.existing(account, CONNECTION, req(input, "Name")?).await?;
        let body: Value = serde_json::from_str(&row.body).unwrap_or_default();
        let mut out = self.connection_summary(&row);
        out["AuthParameters"] = match body["AuthorizationType"].as_str() {
            Some("API_KEY") => json!({"ApiKeyAuthParameters": {"ApiKeyName": body["ApiKeyName"]}}),
            _ => json!({"BasicAuthParameters": {"Username": body["Username"]}}),
        };
        if !body["Description"].is_null() {
            out["Description"] = body["Description"].clone();
        }
        Ok(out)
    }

    pub(super) async fn delete_connection(&self, account: &str, input: &Value) -> EventsResult<Value> {
        let name = req(input, "Name")?;
        let row = self.existing(account, CONNECTION, name).await?;
        self.store.event_resource_delete(account, CONNECTION, name).await?;
        Ok(json!({
            "ConnectionArn": self.connection_arn(&row),
            "ConnectionState": "DELETING",
            "CreationTime": epoch(row.created_at),
            "LastModifiedTime": epoch(row.updated_at),
            "LastAuthorizedTime": epoch(row.created_at),
        }))
    }

    pub(super) async fn list_connections(&self, account: &str, input: &Value) -> EventsResult<Value> {
        if s(input, "ConnectionState").is_some_and(|st| st != "AUTHORIZED") {
            return Ok(json!({"Connections": []}));
        }
        let (rows, token) = self.page(account, CONNECTION, input).await?;
        let mut out = json!({"Connections": rows.iter().map(|r| self.connection_summary(r)).collect::<Vec<_>>()});
        if let Some(t) = token {
            out["NextToken"] = json!(t);
        }
        Ok(out)
    }

    async fn page(
        &self,
        account: &str,
        kind: &str,
        input: &Value,
    ) -> EventsResult<(Vec<EventResourceRow>, Option<String>)> {
        let n = limit(input);
        let mut rows = self
            .store
            .event_resources_list(
                account,
                kind,
                s(input, "NamePrefix").unwrap_or(""),
                after(input)?.as_deref(),
                n + 1,
            )
            .await?;
        let more = rows.len() as i64 > n;
        rows.truncate(n as usize);
        let token = more.then(|| rows.last().map(|r| next_token(&r.name))).flatten();
        Ok((rows, token))
    }

    pub(super) async fn create_api_destination(&self, account: &str, input: &Value) -> EventsResult<Value> {
        let name = req(input, "Name")?;
        let conn_arn = req(input, "ConnectionArn")?;
        let conn_name = self.connection_name_from_arn(account, conn_arn)?;
        let conn = self.existing(account, CONNECTION, &conn_name).await?;
        if self.connection_arn(&conn) != conn_arn {
            return Err(EventsError::not_found(format!(
                "Connection '{conn_name}' does not exist."
            )));
        }
        let endpoint = req(input, "InvocationEndpoint")?;
        check_endpoint(endpoint)?;
        let mut body = json!({
            "ConnectionName": conn_name,
            "ConnectionArn": conn_arn,
            "InvocationEndpoint": endpoint,
            "HttpMethod": req(input, "HttpMethod")?,
        });
        for k in ["InvocationRateLimitPerSecond", "Description"] {
            if let Some(v) = input.get(k) {
                body[k] = v.clone();
            }
        }
        let row = self.create_resource(account, API_DESTINATION, name, body, None).await?;
        Ok(json!({
            "ApiDestinationArn": self.api_destination_arn(&row),
            "ApiDestinationState": "ACTIVE",
            "CreationTime": epoch(row.created_at),
            "LastModifiedTime": epoch(row.updated_at),
        }))
    }

    /// The connection name in a connection ARN of this account and region.
    fn connection_name_from_arn(&self, account: &str, arn: &str) -> EventsResult<String> {
        let prefix = format!("arn:aws:events:{}:{account}:connection/", self.region);
        arn.strip_prefix(&prefix)
            .and_then(|rest| rest.split('/').next())
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .ok_or_else(|| {
                EventsError::validation(format!(
                    "ConnectionArn {arn} must name a connection of account {account} in {}.",
                    self.region
                ))
            })
    }

    pub(super) async fn describe_api_destination(&self, account: &str, input: &Value) -> EventsResult<Value> {
        let row = self.existing(account, API_DESTINATION, req(input, "Name")?).await?;
        Ok(self.api_destination_json(&row))
    }

    pub(super) async fn delete_api_destination(&self, account: &str, input: &Value) -> EventsResult<Value> {
        let name = req(input, "Name")?;
        self.existing(account, API_DESTINATION, name).await?;
        self.store.event_resource_delete(account, API_DESTINATION, name).await?;
        Ok(json!({}))
    }

    pub(super) async fn list_api_destinations(&self, account: &str, input: &Value) -> EventsResult<Value> {
        let (rows, token) = self.page(account, API_DESTINATION, input).await?;
        let filter = s(input, "ConnectionArn");
        let list: Vec<Value> = rows
            .iter()
            .map(|r| self.api_destination_json(r))
            .filter(|v| filter.is_none_or(|f| v["ConnectionArn"] == f))
            .collect();
        let mut out = json!({"ApiDestinations": list});
        if let Some(t) = token {
            out["NextToken"] = json!(t);
        }
        Ok(out)
    }
}

/// An endpoint must be an absolute `http` or `https` URL with a host.
fn check_endpoint(endpoint: &str) -> EventsResult<()> {
    let uri: http::Uri = endpoint
        .parse()
        .map_err(|_| EventsError::validation(format!("InvocationEndpoint {endpoint} is not a valid URL.")))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(h)) if !h.is_empty() => Ok(()),
        _ => Err(EventsError::validation(format!(
            "InvocationEndpoint {endpoint} must be an http:// or https:// URL with a host."
        ))),
    }
}
