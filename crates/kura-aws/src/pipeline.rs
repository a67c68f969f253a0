//! THE pipeline of every AWS API call on `POST /`:
//! route → authenticate → read the body → validate → authorize → run →
//! render, with one [`CallRecord`] per call handed to the recorder before
//! the answer leaves.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::body::{self, BodyBudget, RequestBody};
use crate::caller::Caller;
use crate::error::{AwsError, AwsResult};
use crate::query;
use crate::record::{trimmed, CallRecord, CallRecorder};
use crate::service::{AwsService, Call, OpSpec, Protocol};
use crate::sigv4::Authenticator;

/// The registered services, how to authenticate and read requests, and the
/// optional recorder: the state of [`api`].
pub struct Api {
    services: Vec<Arc<dyn AwsService>>,
    auth: Authenticator,
    budget: Arc<BodyBudget>,
    recorder: Option<Arc<dyn CallRecorder>>,
}

impl Api {
    /// A pipeline without services (register them) and without a recorder.
    pub fn new(auth: Authenticator, budget: Arc<BodyBudget>) -> Self {
        Api {
            services: Vec::new(),
            auth,
            budget,
            recorder: None,
        }
    }

    /// Serve one more API. JSON 1.1 services are picked by their target
    /// prefix (the first JSON service registered also answers requests
    /// whose target names no registered prefix); Query services by the
    /// `Action` they have (the first Query service registered answers
    /// actions nobody has).
    pub fn register(&mut self, service: Arc<dyn AwsService>) -> &mut Self {
        self.services.push(service);
        self
    }

    /// Hand every call's record to `recorder`.
    pub fn set_recorder(&mut self, recorder: Arc<dyn CallRecorder>) -> &mut Self {
        self.recorder = Some(recorder);
        self
    }

    /// The registered services.
    pub fn services(&self) -> &[Arc<dyn AwsService>] {
        &self.services
    }

    /// The authenticator.
    pub fn authenticator(&self) -> &Authenticator {
        &self.auth
    }

    /// The byte budget of request bodies.
    pub fn body_budget(&self) -> &BodyBudget {
        &self.budget
    }

    /// The JSON service a target picks (by the longest matching prefix),
    /// else the default JSON service.
    fn json_service(&self, target: Option<&str>) -> Option<(&Arc<dyn AwsService>, Option<&'static str>)> {
        let by_prefix = target.and_then(|t| {
            self.services
                .iter()
                .filter_map(|s| match s.protocol() {
                    Protocol::Json11 { target_prefix } if t.starts_with(target_prefix) => Some((s, target_prefix)),
                    _ => None,
                })
                .max_by_key(|(_, p)| p.len())
        });
        match by_prefix {
            Some((s, p)) => Some((s, Some(p))),
            None => self
                .services
                .iter()
                .find(|s| matches!(s.protocol(), Protocol::Json11 { .. }))
                .map(|s| (s, None)),
        }
    }

    fn query_services(&self) -> impl Iterator<Item = &Arc<dyn AwsService>> {
        self.services
            .iter()
            .filter(|s| matches!(s.protocol(), Protocol::Query { .. }))
    }

    /// The Query service with signing name `name`, else the default one.
    fn query_by_signing_name(&self, name: Option<&str>) -> Option<&Arc<dyn AwsService>> {
        self.query_services()
            .find(|s| Some(s.signing_name()) == name)
            .or_else(|| self.query_services().next())
    }
}

/// What the record of a call collects on the way.
struct Trace {
    event_source: &'static str,
    event_name: String,
    /// The operation, once it is one the service has (a bounded name).
    op_name: Option<&'static str>,
    caller: Option<Caller>,
    params: Option<Value>,
    read_only: bool,
    recording: bool,
}

impl Trace {
    fn op(&mut self, op: &OpSpec) {
        self.event_name = op.name.to_string();
        self.op_name = Some(op.name);
        self.read_only = op.read_only;
    }

    fn input(&mut self, input: &Value) {
        if self.recording {
            self.params = Some(trimmed(input));
        }
    }
}

/// The request id an outer layer chose for this request (the metrics
/// middleware): the API answers with it as `x-amzn-RequestId`.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// Which service and operation answered a call, in the response's
/// extensions (for metrics labels: both are from fixed tables).
#[derive(Clone, Copy, Debug)]
pub struct OperationLabel {
    /// The service's signing name (`ecr`, `iam`, `sts`, …), or `unknown`.
    pub api: &'static str,
    /// The operation (`PutImage`), or `unknown` when it is not one the service has.
    pub operation: &'static str,
}

/// A new request id.
pub fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A client-supplied name as it may be recorded: printable ASCII, at most
/// 128 characters.
fn printable(s: &str) -> String {
    s.chars()
        .take(128)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}

/// `POST /`: one API call. The protocol picks the service: AWS JSON 1.1
/// by the `X-Amz-Target` prefix, an AWS Query form (`Action=...`, no
/// target) by its action. The headers authenticate first, then the body is
/// read ([`body`]) and the signature checked over it; a request refused
/// before its body was read closes the connection instead of draining it.
pub async fn api(State(api): State<Arc<Api>>, req: Request) -> Response {
    let rid = match req.extensions().get::<RequestId>() {
        Some(r) => r.0.clone(),
        None => request_id(),
    };
    let time_ms = now_ms();
    let (parts, body) = req.into_parts();
    let mut body = RequestBody::new(body);
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let target = header("x-amz-target");
    let user_agent = header("user-agent");
    let form = header("content-type").is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let mut trace = Trace {
        event_source: "",
        event_name: String::new(),
        op_name: None,
        caller: None,
        params: None,
        read_only: false,
        recording: api.recorder.is_some(),
    };
    let (service, result) = if target.is_none() && form {
        query_call(&api, &parts, &mut body, &rid, user_agent.clone(), &mut trace).await
    } else {
        json_call(
            &api,
            &parts,
            target.as_deref(),
            &mut body,
            &rid,
            user_agent.clone(),
            &mut trace,
        )
        .await
    };
    let (namespace, result) = match (&service, result) {
        (Some(s), r) => {
            let r = match s.protocol() {
                Protocol::Query { .. } => r.map_err(|e| s.map_error(query_codes(e))),
                Protocol::Json11 { .. } => r.map_err(|e| s.map_error(e)),
            };
            match s.protocol() {
                Protocol::Query { namespace } => (Some(namespace), r),
                Protocol::Json11 { .. } => (None, r),
            }
        }
        (None, r) => (None, r),
    };
    if let Err(e) = &result {
        if e.status.is_server_error() {
            tracing::error!(request_id = %rid, error = %e, "API failure");
        }
    }
    let op_name = trace.event_name.clone();
    let label = OperationLabel {
        api: service.as_ref().map_or("unknown", |s| s.signing_name()),
        operation: trace.op_name.unwrap_or("unknown"),
    };
    if let Some(recorder) = &api.recorder {
        let (status, error_code, error_message) = match &result {
            Ok(_) => (200, None, None),
            Err(e) => {
                let code = if namespace.is_some() {
                    query::error_code(e)
                } else {
                    e.kind
                };
                (e.status.as_u16(), Some(code.to_string()), Some(e.message.clone()))
            }
        };
        let response_elements = match (&result, namespace) {
            (Ok(v), None) => Some(trimmed(v)),
            _ => None,
        };
        let claimed_access_key_id = match &trace.caller {
            Some(c) => Some(c.access_key_id.clone()),
            None => crate::sigv4::claimed_access_key(&parts).map(|k| printable(&k)),
        };
        recorder
            .record(CallRecord {
                time_ms,
                event_source: trace.event_source.to_string(),
                event_name: trace.event_name,
                aws_region: api.auth.region().to_string(),
                caller: trace.caller,
                claimed_access_key_id,
                source_ip: crate::client::source_ip(&parts.extensions),
                user_agent,
                request_parameters: trace.params,
                response_elements,
                error_code,
                error_message,
                request_id: rid.clone(),
                read_only: trace.read_only,
                status,
            })
            .await;
    }
    let mut resp = match (namespace, result) {
        (Some(ns), Ok(v)) => query::success_response(ns, &op_name, v.as_str(), &rid),
        (Some(ns), Err(e)) => query::error_response(ns, &e, &rid),
        (None, Ok(v)) => {
            let mut r = (StatusCode::OK, serde_json::to_vec(&v).unwrap_or_default()).into_response();
            r.headers_mut()
                .insert("content-type", HeaderValue::from_static("application/x-amz-json-1.1"));
            r
        }
        (None, Err(e)) => e.json_response(),
    };
    resp.extensions_mut().insert(label);
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&rid) {
        h.insert("x-amzn-requestid", v);
    }
    if body.unread() {
        h.insert("connection", HeaderValue::from_static("close"));
    }
    if resp.status() == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut().insert("retry-after", HeaderValue::from_static("1"));
    }
    resp
}

/// Query protocol codes for the pipeline's own refusals.
fn query_codes(e: AwsError) -> AwsError {
    match e.kind {
        "ServiceUnavailableException" => AwsError {
            kind: "ServiceUnavailable",
            ..e
        },
        _ => e,
    }
}

/// The `host` header (or URI authority) of a request.
pub fn request_host(parts: &http::request::Parts) -> String {
    parts
        .headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| parts.uri.authority().map(|a| a.to_string()))
        .unwrap_or_else(|| "localhost".to_string())
}

/// Parse a JSON 1.1 body: an object, or empty.
pub fn json_input(bytes: &[u8]) -> AwsResult<Value> {
    let input: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Default::default())
    } else {
        serde_json::from_slice(bytes).map_err(|e| AwsError::serialization(format!("Malformed JSON body: {e}")))?
    };
    if !input.is_object() {
        return Err(AwsError::serialization("The request body must be a JSON object"));
    }
    Ok(input)
}

fn call_of(
    parts: &http::request::Parts,
    api: &Api,
    caller: Caller,
    op: &OpSpec,
    rid: &str,
    user_agent: Option<String>,
) -> Call {
    Call {
        caller,
        operation: op.name,
        request_id: rid.to_string(),
        host: request_host(parts),
        source_ip: crate::client::source_ip(&parts.extensions),
        scheme: crate::client::scheme(&parts.extensions),
        user_agent,
        region: api.auth.region().to_string(),
    }
}

/// Validate, authorize and run an authenticated call.
async fn perform(service: &dyn AwsService, call: &Call, op: &OpSpec, input: Value) -> AwsResult<Value> {
    service.validate(op, &input)?;
    tracing::info!(
        service = service.signing_name(),
        operation = op.name,
        principal = %call.caller.principal_arn,
        "API call"
    );
    service.authorize(call, op, &input).await?;
    service.run(call, op, input).await
}

/// An AWS JSON 1.1 call.
async fn json_call(
    api: &Api,
    parts: &http::request::Parts,
    target: Option<&str>,
    body: &mut RequestBody,
    rid: &str,
    user_agent: Option<String>,
    trace: &mut Trace,
) -> (Option<Arc<dyn AwsService>>, AwsResult<Value>) {
    let Some((service, prefix)) = api.json_service(target) else {
        return (
            None,
            Err(AwsError::unknown_operation(
                target.unwrap_or("(no X-Amz-Target header)"),
            )),
        );
    };
    let service = service.clone();
    trace.event_source = service.event_source();
    let result = async {
        let target = target.ok_or_else(|| service.unknown_operation("(no X-Amz-Target header)"))?;
        let name = prefix
            .and_then(|p| target.strip_prefix(p))
            .and_then(|s| s.strip_prefix('.'));
        trace.event_name = printable(name.unwrap_or(target));
        let op = name
            .and_then(|n| service.operation(n))
            .ok_or_else(|| service.unknown_operation(target))?;
        trace.op(&op);
        body::declared_length(parts)?;
        let signed = api.auth.authenticate_headers(parts, &[service.signing_name()]).await?;
        let body = api.budget.read(parts, body).await?;
        let caller =
            api.auth
                .authenticate_body_in(parts, signed, &body.sha256, service.signing_name(), service.global())?;
        trace.caller = Some(caller.clone());
        let input = json_input(&body.bytes)?;
        trace.input(&input);
        let call = call_of(parts, api, caller, &op, rid, user_agent);
        // The body's share of the byte budget is held until the call is answered.
        let result = perform(service.as_ref(), &call, &op, input).await;
        drop(body);
        result
    }
    .await;
    (Some(service), result)
}

/// An AWS Query call: the headers authenticate for any Query service's
/// signing name, the form is read, its `Action` picks the service, and the
/// signature is checked over the form for that service.
async fn query_call(
    api: &Api,
    parts: &http::request::Parts,
    body: &mut RequestBody,
    rid: &str,
    user_agent: Option<String>,
    trace: &mut Trace,
) -> (Option<Arc<dyn AwsService>>, AwsResult<Value>) {
    let names: Vec<&str> = api.query_services().map(|s| s.signing_name()).collect();
    let claimed_scope = crate::sigv4::claimed_service(parts);
    let Some(claimed) = api.query_by_signing_name(claimed_scope.as_deref()).cloned() else {
        return (None, Err(AwsError::unknown_operation("(no X-Amz-Target header)")));
    };
    trace.event_source = claimed.event_source();
    let signed = match api.auth.authenticate_headers(parts, &names).await {
        Ok(s) => s,
        Err(e) => return (Some(claimed), Err(e)),
    };
    let claimed = api
        .query_by_signing_name(Some(signed.service()))
        .cloned()
        .unwrap_or(claimed);
    trace.event_source = claimed.event_source();
    let body = match api.budget.read(parts, body).await {
        Ok(b) => b,
        Err(e) => return (Some(claimed), Err(e)),
    };
    let input = query::form_input(&body.bytes);
    let action = input
        .get("Action")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    trace.event_name = printable(&action);
    trace.input(&input);
    let service = api
        .query_services()
        .find(|s| s.operation(&action).is_some())
        .or_else(|| api.query_services().next())
        .cloned()
        .unwrap_or(claimed);
    trace.event_source = service.event_source();
    let result = async {
        let caller =
            api.auth
                .authenticate_body_in(parts, signed, &body.sha256, service.signing_name(), service.global())?;
        trace.caller = Some(caller.clone());
        let op = service
            .operation(&action)
            .ok_or_else(|| service.unknown_operation(&action))?;
        trace.op(&op);
        let call = call_of(parts, api, caller, &op, rid, user_agent);
        perform(service.as_ref(), &call, &op, input).await
    }
    .await;
    drop(body);
    (Some(service), result)
}
