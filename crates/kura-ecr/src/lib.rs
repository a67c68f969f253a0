//! The Amazon ECR control plane on Kura, and ECR-style authentication of the
//! data plane.
//!
//! * [`api`] answers `POST /` in the AWS JSON 1.1 protocol
//!   (`X-Amz-Target: AmazonEC2ContainerRegistry_V20150921.<Operation>`):
//!   it authenticates the SigV4 signature ([`auth`]), validates the input
//!   against the model ([`model`]), and dispatches to one operation in
//!   [`ops`].
//! * [`auth::data_plane_auth`] guards `/v2/`: Basic `AWS:<token>` from
//!   `GetAuthorizationToken`, or a presigned download URL, and selects the
//!   account from the host name (`<account>.dkr.<rest>`).
//! * [`templates::TemplateProvisioner`] lets a push create a repository when a
//!   creation template with `CREATE_ON_PUSH` covers its name.
//!
//! Layering: handlers call [`Ecr`] operations; operations call the stores
//! and the data-plane [`Registry`] service (for uploads and manifests, so
//! both planes share one set of rules); nothing calls back up.

pub mod auth;
pub mod authz;
pub mod body;
pub mod calls;
pub mod client;
pub mod cloudtrail;
pub mod error;
pub mod iamapi;
pub mod lifecycle;
pub mod model;
pub mod ops;
pub mod public;
pub mod scanning;
pub mod templates;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use kura_auth::seal::MasterKey;
use kura_registry::Registry;
use kura_store::{ControlStore, IamStore, MaintenanceStore, MetaStore, ScanStore};
use serde_json::Value;

pub use error::{EcrError, EcrResult};

/// Largest API request body accepted (an `UploadLayerPart` of 20 MiB, base64).
pub const MAX_API_BODY: usize = 30 * 1024 * 1024;

/// Deployment settings of the ECR API.
#[derive(Clone, Debug)]
pub struct EcrConfig {
    /// This deployment's region (`KURA_REGION`).
    pub region: String,
    /// The account used when a host name does not name one.
    pub default_account: String,
    /// The longest session STS hands out, in seconds (`KURA_STS_MAX_SESSION`;
    /// IAM's own ceiling is 12 hours).
    pub max_session_secs: u64,
    /// Bytes of API request bodies held in memory at once, across all
    /// requests (`KURA_API_BODY_BUDGET_MIB`; see [`body::BodyBudget`]).
    pub api_body_budget: usize,
    /// Peers whose `X-Forwarded-For`/`X-Forwarded-Proto` are believed
    /// (`KURA_TRUSTED_PROXIES`); nobody by default.
    pub trusted_proxies: client::TrustedProxies,
}

impl EcrConfig {
    /// A configuration with IAM's defaults.
    pub fn new(region: &str, default_account: &str) -> Self {
        EcrConfig {
            region: region.to_string(),
            default_account: default_account.to_string(),
            max_session_secs: 12 * 3600,
            api_body_budget: body::DEFAULT_BODY_BUDGET,
            trusted_proxies: client::TrustedProxies::default(),
        }
    }
}

/// The stores the service reads and writes. One SQLite (or PostgreSQL)
/// store implements all of them; they are separate traits so each concern
/// stays small.
#[derive(Clone)]
pub struct Stores {
    /// Repositories, images, uploads.
    pub meta: Arc<dyn MetaStore>,
    /// Accounts, keys, tags, templates, settings.
    pub control: Arc<dyn ControlStore>,
    /// Audit, leases, lifecycle, GC.
    pub maint: Arc<dyn MaintenanceStore>,
    /// Vulnerability data and scans.
    pub scans: Arc<dyn ScanStore>,
    /// IAM principals and resource policies.
    pub iam: Arc<dyn IamStore>,
    /// Durable background jobs (scans, lifecycle previews).
    pub jobs: Arc<dyn kura_store::JobStore>,
}

impl Stores {
    /// Every store from one implementation.
    pub fn all<S>(store: Arc<S>) -> Self
    where
        S: MetaStore + ControlStore + MaintenanceStore + ScanStore + IamStore + kura_store::JobStore,
    {
        Stores {
            meta: store.clone(),
            control: store.clone(),
            maint: store.clone(),
            scans: store.clone(),
            iam: store.clone(),
            jobs: store,
        }
    }
}

/// The ECR service: stores, the data-plane service, and key material.
pub struct Ecr {
    meta: Arc<dyn MetaStore>,
    control: Arc<dyn ControlStore>,
    maint: Arc<dyn MaintenanceStore>,
    iam: Arc<dyn IamStore>,
    authz_cache: authz::AuthzCache,
    registry: Arc<Registry>,
    scanner: scanning::Scanner,
    jobs: kura_jobs::Queue,
    master: MasterKey,
    token_key: Vec<u8>,
    body_budget: body::BodyBudget,
    config: EcrConfig,
    audit: std::sync::OnceLock<calls::AuditHook>,
}

impl Ecr {
    /// Assemble the service. `token_key` signs registry tokens and download URLs.
    /// The scanner subscribes to the registry's `ImagePushed` events (scan on push).
    pub fn new(
        stores: Stores,
        registry: Arc<Registry>,
        master: MasterKey,
        token_key: Vec<u8>,
        config: EcrConfig,
        scan_settings: scanning::ScanSettings,
    ) -> Self {
        let jobs = kura_jobs::Queue::new(stores.jobs.clone());
        let scanner = scanning::Scanner::new(
            jobs.clone(),
            stores.meta.clone(),
            stores.scans,
            stores.control.clone(),
            stores.maint.clone(),
            registry.clone(),
            scan_settings,
        );
        registry.subscribe(Arc::new(scanner.clone()));
        Ecr {
            meta: stores.meta,
            control: stores.control,
            maint: stores.maint,
            iam: stores.iam,
            authz_cache: Default::default(),
            registry,
            scanner,
            jobs,
            master,
            token_key,
            body_budget: body::BodyBudget::new(config.api_body_budget),
            config,
            audit: std::sync::OnceLock::new(),
        }
    }

    /// Record every call in the audit trail (once, at start-up).
    pub fn set_audit(&self, hook: calls::AuditHook) {
        if self.audit.set(hook).is_err() {
            tracing::warn!("the audit trail was already configured");
        }
    }

    /// The audit trail, when enabled.
    pub fn audit(&self) -> Option<&calls::AuditHook> {
        self.audit.get()
    }

    /// The byte budget of API request bodies.
    pub fn body_budget(&self) -> &body::BodyBudget {
        &self.body_budget
    }

    /// The data plane's service (subscribe event listeners here).
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The image scanner.
    pub fn scanner(&self) -> &scanning::Scanner {
        &self.scanner
    }

    /// The job queue scans and lifecycle previews go through: give it to
    /// this node's [`kura_jobs::Runner`] so they start at once.
    pub fn jobs(&self) -> &kura_jobs::Queue {
        &self.jobs
    }

    /// The job handlers of the ECR service (scans and the scanner's sweep,
    /// lifecycle runs and previews), for this node's runner.
    pub fn job_handlers(&self) -> Vec<Arc<dyn kura_jobs::JobHandler>> {
        vec![
            Arc::new(scanning::ScanJob(self.scanner.clone())),
            Arc::new(scanning::SweepJob(self.scanner.clone())),
            Arc::new(lifecycle::RunJob {
                registry: self.registry.clone(),
                maint: self.maint.clone(),
            }),
            Arc::new(lifecycle::PreviewJob {
                meta: self.meta.clone(),
                maint: self.maint.clone(),
            }),
        ]
    }

    /// The configuration.
    pub fn config(&self) -> &EcrConfig {
        &self.config
    }
}

/// The whole HTTP application: the ECR API on `POST /` and the
/// authenticated data plane everywhere else.
pub fn app(ecr: Arc<Ecr>, registry: Arc<Registry>) -> Router {
    let data =
        kura_registry::app(registry).layer(axum::middleware::from_fn_with_state(ecr.clone(), auth::data_plane_auth));
    Router::new()
        .route("/", post(api))
        .route(
            "/token",
            axum::routing::get(auth::token_service).post(auth::token_service),
        )
        .with_state(ecr.clone())
        .merge(data)
        // First of all: who the client is (peer, or a trusted proxy's word).
        .layer(axum::middleware::from_fn_with_state(ecr, client::layer))
}

fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// `POST /`: one API call. The protocol picks the service: AWS JSON 1.1 with
/// `X-Amz-Target: AmazonEC2ContainerRegistry_V20150921.*` is ECR,
/// `SpencerFrontendService.*` is ECR Public ([`public`]), and an AWS Query
/// form (`Action=...`) is IAM or STS ([`iamapi`]). Each authenticates the
/// headers first, then reads the body ([`body`]) and checks the signature
/// over it; a request refused before its body was read closes the
/// connection instead of draining it.
pub async fn api(State(ecr): State<Arc<Ecr>>, req: Request) -> Response {
    let rid = request_id();
    let started = kura_store::now_millis();
    let (parts, body) = req.into_parts();
    let mut body = body::RequestBody::new(body);
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let form = parts
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let mut info = calls::CallInfo::default();
    let (mut resp, outcome) = match target {
        None if form => (iamapi::handle(&ecr, &parts, &mut body, &rid, &mut info).await, None),
        Some(t) if t.starts_with(public::TARGET_PREFIX) => {
            info.source = "ecr-public.amazonaws.com";
            let r = public::handle(&ecr, &parts, &t, &mut body, &mut info).await;
            (json_response(&r, &rid), Some(r))
        }
        Some(t) if t.starts_with(kura_audit::lookup::TARGET_PREFIX) => {
            info.source = "cloudtrail.amazonaws.com";
            let r = cloudtrail::handle(&ecr, &parts, &t, &mut body, &mut info).await;
            (json_response(&r, &rid), Some(r))
        }
        target => {
            info.source = "ecr.amazonaws.com";
            let r = handle(&ecr, &parts, target.as_deref(), &mut body, &mut info).await;
            (json_response(&r, &rid), Some(r))
        }
    };
    // The record is committed before the call is answered.
    if let Some(hook) = ecr.audit() {
        // A request that named no credentials at all is no one's call.
        if info.caller.is_some() || info.claimed.is_some() || parts.headers.contains_key("authorization") {
            let (response, error) = match outcome {
                Some(Ok(v)) => (Some(v), None),
                Some(Err(e)) => (None, Some((e.kind.to_string(), e.message))),
                None => (None, None),
            };
            let record = info.record(&ecr.config.region, started, &parts, &rid, response, error);
            hook.recorder.record(&record).await;
        }
    }
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

/// An AWS JSON 1.1 answer.
fn json_response(result: &EcrResult<Value>, rid: &str) -> Response {
    match result {
        Ok(v) => {
            let mut r = (StatusCode::OK, serde_json::to_vec(v).unwrap_or_default()).into_response();
            r.headers_mut()
                .insert("content-type", HeaderValue::from_static("application/x-amz-json-1.1"));
            r
        }
        Err(e) => {
            if e.status.is_server_error() {
                tracing::error!(request_id = %rid, error = %e, "API failure");
            }
            e.clone().into_response()
        }
    }
}

/// Parse a JSON 1.1 body: an object, or empty.
pub(crate) fn json_input(bytes: &[u8]) -> EcrResult<Value> {
    let input: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Default::default())
    } else {
        serde_json::from_slice(bytes).map_err(|e| EcrError::serialization(format!("Malformed JSON body: {e}")))?
    };
    if !input.is_object() {
        return Err(EcrError::serialization("The request body must be a JSON object"));
    }
    Ok(input)
}

/// The `host` header (or URI authority) of a request.
pub(crate) fn request_host(parts: &http::request::Parts) -> String {
    parts
        .headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| parts.uri.authority().map(|a| a.to_string()))
        .unwrap_or_else(|| "localhost".to_string())
}

async fn handle(
    ecr: &Ecr,
    parts: &http::request::Parts,
    target: Option<&str>,
    body: &mut body::RequestBody,
    info: &mut calls::CallInfo,
) -> EcrResult<Value> {
    let model = model::model();
    let prefix = &model.target_prefix;
    let target = target.ok_or_else(|| EcrError::unknown_operation("(no X-Amz-Target header)"))?;
    let op = target
        .strip_prefix(prefix.as_str())
        .and_then(|s| s.strip_prefix('.'))
        .filter(|op| model.operations.contains_key(*op))
        .ok_or_else(|| EcrError::unknown_operation(target))?
        .to_string();
    info.name = op.clone();
    body::declared_length(parts)?;
    let signed = ecr.authenticate_headers(parts, &["ecr"]).await?;
    info.claimed = Some(signed.claimed().clone());
    let body = ecr.read_body(parts, body).await?;
    let caller = ecr.authenticate_body(parts, signed, &body.sha256, "ecr")?;
    info.caller = Some(caller.clone());
    let input = json_input(&body.bytes)?;
    info.capture(ecr, &input);
    model.validate(&op, &input)?;
    let ctx = ops::Ctx {
        account: ops::Ctx::registry_of(model, &op, &input, &caller),
        caller,
        host: request_host(parts),
        source_ip: source_ip(parts),
    };
    tracing::info!(operation = %op, principal = %ctx.caller.principal_arn, registry = %ctx.account, "ECR API call");
    // The body's share of the byte budget is held until the call is answered.
    let result = ops::dispatch(ecr, &ctx, &op, input).await;
    drop(body);
    result
}

/// The client address, when the server recorded it: the peer, or what a
/// trusted proxy reported ([`client`]).
pub(crate) fn source_ip(parts: &http::request::Parts) -> Option<std::net::IpAddr> {
    client::source_ip(&parts.extensions)
}
