//! The destination side of the federation protocol: the routes another
//! region's replicate jobs call, under [`crate::peer::PREFIX`]. Every
//! request carries a federation token naming the source account and this
//! region's account and repository; the work is done by a
//! [`LocalSink`] for that pair, so the destination account's policies
//! decide exactly as they do for replication between accounts of one
//! deployment. Answers are JSON: `{"code", "message"}` on failure.

use std::sync::Arc;

use axum::body::Body as AxumBody;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{patch, post, put};
use axum::{Json, Router};
use futures::{StreamExt, TryStreamExt};
use kura_authz::Authz;
use kura_registry::service::Body;
use kura_registry::Registry;
use kura_store::{AuditStore, ControlStore};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::federation::{now_secs, Claims, FederationKey, SCHEME};
use crate::peer::PREFIX;
use crate::sink::{self, LocalSink, ReplError, Sink};

/// JSON requests are small: at most this many bytes.
const MAX_JSON: usize = 1 << 20;
/// Manifests: the registry's limit, plus one byte to tell "too large".
const MAX_MANIFEST: usize = kura_oci::manifest::MAX_MANIFEST_BYTES + 1;

/// What the routes need.
pub struct FederationServer {
    registry: Arc<Registry>,
    authz: Arc<Authz>,
    control: Arc<dyn ControlStore>,
    key: Option<FederationKey>,
    trail: std::sync::OnceLock<Arc<dyn AuditStore>>,
}

impl FederationServer {
    /// The server of this deployment (`key`: the federation key; without
    /// one every request is refused).
    pub fn new(
        registry: Arc<Registry>,
        authz: Arc<Authz>,
        control: Arc<dyn ControlStore>,
        key: Option<FederationKey>,
    ) -> Arc<FederationServer> {
        Arc::new(FederationServer {
            registry,
            authz,
            control,
            key,
            trail: std::sync::OnceLock::new(),
        })
    }

    /// Record each image that arrives in the destination account's audit
    /// trail (a `ReplicateImage` `AwsServiceEvent` naming the source).
    pub fn record_to(&self, trail: Arc<dyn AuditStore>) {
        let _ = self.trail.set(trail);
    }
}

/// The routes, to merge into the application (before the data plane).
pub fn router(server: Arc<FederationServer>) -> Router {
    Router::new()
        .route(&format!("{PREFIX}/prepare"), post(prepare))
        .route(&format!("{PREFIX}/blobs/missing"), post(missing))
        .route(&format!("{PREFIX}/uploads"), post(upload_start))
        .route(
            &format!("{PREFIX}/uploads/{{id}}"),
            patch(upload_append).get(upload_offset).put(upload_finish),
        )
        .route(&format!("{PREFIX}/manifests"), put(manifest))
        .with_state(server)
}

struct Failure(StatusCode, &'static str, String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"code": self.1, "message": self.2}))).into_response()
    }
}

impl From<ReplError> for Failure {
    fn from(e: ReplError) -> Failure {
        match e {
            ReplError::Failed { code, message } => {
                let status = match code {
                    sink::PERMISSION_DENIED => StatusCode::FORBIDDEN,
                    sink::REGISTRY_NOT_FOUND => StatusCode::NOT_FOUND,
                    sink::TAG_IMMUTABLE => StatusCode::CONFLICT,
                    _ => StatusCode::BAD_REQUEST,
                };
                Failure(status, code, message)
            }
            ReplError::UploadLost(id) => Failure(StatusCode::NOT_FOUND, "UPLOAD_UNKNOWN", id),
            ReplError::Retry(m) => Failure(StatusCode::SERVICE_UNAVAILABLE, "RETRY", m),
        }
    }
}

fn bad(message: impl Into<String>) -> Failure {
    Failure(StatusCode::BAD_REQUEST, "INVALID_REQUEST", message.into())
}

/// Who the request comes from, for which account and repository: the
/// token must be valid here and name exactly the account and repository
/// the request does.
fn authenticate(
    s: &FederationServer,
    headers: &HeaderMap,
    account: &str,
    repository: &str,
) -> Result<LocalSink, Failure> {
    authenticate_claims(s, headers, account, repository).map(|(sink, _)| sink)
}

/// [`authenticate`], with the token's claims.
fn authenticate_claims(
    s: &FederationServer,
    headers: &HeaderMap,
    account: &str,
    repository: &str,
) -> Result<(LocalSink, Claims), Failure> {
    let refuse = |m: String| Failure(StatusCode::UNAUTHORIZED, sink::AUTH_FAILED, m);
    let Some(key) = &s.key else {
        return Err(refuse(
            "this deployment has no federation key (--federation-key-file)".into(),
        ));
    };
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix(SCHEME))
        .and_then(|v| v.strip_prefix(' '))
        .ok_or_else(|| refuse(format!("a {SCHEME} authorization is required")))?;
    let claims: Claims = key.verify(token, s.authz.region(), now_secs()).map_err(|e| {
        tracing::warn!(error = %e, "refused a federation request");
        refuse(e.to_string())
    })?;
    if claims.da != account || claims.repo != repository {
        tracing::warn!(token_account = %claims.da, token_repository = %claims.repo, account, repository,
            "refused a federation request for another account or repository than its token's");
        return Err(refuse(format!(
            "the federation token was issued for {}/{}, not {account}/{repository}",
            claims.da, claims.repo
        )));
    }
    let sink = LocalSink::new(
        s.registry.clone(),
        s.authz.clone(),
        s.control.clone(),
        &claims.sa,
        &claims.da,
    );
    Ok((sink, claims))
}

async fn json_body<T: serde::de::DeserializeOwned>(body: AxumBody) -> Result<T, Failure> {
    let bytes = axum::body::to_bytes(body, MAX_JSON)
        .await
        .map_err(|_| bad(format!("the request body must be JSON of at most {MAX_JSON} bytes")))?;
    serde_json::from_slice(&bytes).map_err(|e| bad(format!("invalid JSON: {e}")))
}

#[derive(Deserialize)]
struct Target {
    account: String,
    repository: String,
}

#[derive(Deserialize)]
struct Blobs {
    account: String,
    repository: String,
    digests: Vec<String>,
}

async fn prepare(
    State(s): State<Arc<FederationServer>>,
    headers: HeaderMap,
    body: AxumBody,
) -> Result<Json<Value>, Failure> {
    let t: Target = json_body(body).await?;
    let sink = authenticate(&s, &headers, &t.account, &t.repository)?;
    sink.prepare(&t.repository).await?;
    Ok(Json(json!({})))
}

async fn missing(
    State(s): State<Arc<FederationServer>>,
    headers: HeaderMap,
    body: AxumBody,
) -> Result<Json<Value>, Failure> {
    let b: Blobs = json_body(body).await?;
    let sink = authenticate(&s, &headers, &b.account, &b.repository)?;
    if b.digests.len() > 1000 {
        return Err(bad("at most 1000 digests per request"));
    }
    let missing = sink.missing_blobs(&b.repository, &b.digests).await?;
    Ok(Json(json!({"missing": missing})))
}

async fn upload_start(
    State(s): State<Arc<FederationServer>>,
    headers: HeaderMap,
    body: AxumBody,
) -> Result<Json<Value>, Failure> {
    let t: Target = json_body(body).await?;
    let sink = authenticate(&s, &headers, &t.account, &t.repository)?;
    let id = sink.upload_start(&t.repository).await?;
    Ok(Json(json!({"uploadId": id})))
}

/// Query parameters of the upload and manifest routes, each given once.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(q: Option<&str>) -> Params {
        Params(
            form_urlencoded::parse(q.unwrap_or_default().as_bytes())
                .into_owned()
                .collect(),
        )
    }

    fn one(&self, name: &str) -> Result<String, Failure> {
        let mut it = self.0.iter().filter(|(k, _)| k == name);
        match (it.next(), it.next()) {
            (Some((_, v)), None) => Ok(v.clone()),
            (None, _) => Err(bad(format!("missing query parameter {name}"))),
            _ => Err(bad(format!("query parameter {name} given more than once"))),
        }
    }

    fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

fn params(uri: &axum::http::Uri) -> Params {
    Params::parse(uri.query())
}

async fn upload_offset(
    State(s): State<Arc<FederationServer>>,
    Path(id): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Result<Json<Value>, Failure> {
    let p = params(&uri);
    let (account, repository) = (p.one("account")?, p.one("repository")?);
    let sink = authenticate(&s, &headers, &account, &repository)?;
    let offset = sink.upload_offset(&repository, &id).await?;
    Ok(Json(json!({"offset": offset})))
}

async fn upload_append(
    State(s): State<Arc<FederationServer>>,
    Path(id): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: AxumBody,
) -> Result<Json<Value>, Failure> {
    let p = params(&uri);
    let (account, repository) = (p.one("account")?, p.one("repository")?);
    let sink = authenticate(&s, &headers, &account, &repository)?;
    let offset: u64 = p.one("offset")?.parse().map_err(|_| bad("offset must be a number"))?;
    let len: u64 = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| bad("a Content-Length is required"))?;
    let stream: Body = body.into_data_stream().map_err(std::io::Error::other).boxed();
    let offset = sink.upload_append(&repository, &id, offset, len, stream).await?;
    Ok(Json(json!({"offset": offset})))
}

async fn upload_finish(
    State(s): State<Arc<FederationServer>>,
    Path(id): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Result<Json<Value>, Failure> {
    let p = params(&uri);
    let (account, repository) = (p.one("account")?, p.one("repository")?);
    let sink = authenticate(&s, &headers, &account, &repository)?;
    sink.upload_finish(&repository, &id, &p.one("digest")?).await?;
    Ok(Json(json!({})))
}

async fn manifest(
    State(s): State<Arc<FederationServer>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: AxumBody,
) -> Result<Json<Value>, Failure> {
    let p = params(&uri);
    let (account, repository) = (p.one("account")?, p.one("repository")?);
    let (sink, claims) = authenticate_claims(&s, &headers, &account, &repository)?;
    let digest = p.one("digest")?;
    let media_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| bad("a Content-Type is required"))?
        .to_string();
    let bytes = axum::body::to_bytes(body, MAX_MANIFEST)
        .await
        .map_err(|_| bad("the manifest is too large"))?;
    let tags = p.all("tag");
    sink.put_manifest(&repository, &digest, &media_type, bytes.to_vec(), &tags)
        .await?;
    if let Some(trail) = s.trail.get() {
        let row = kura_store::audit::aws_service_event(kura_store::audit::ServiceEvent {
            account: &account,
            at_ms: kura_store::now_millis(),
            source: "ecr.amazonaws.com",
            event_name: "ReplicateImage",
            region: Some(s.authz.region()),
            repository: Some(&repository),
            detail: json!({
                "repositoryName": repository,
                "imageDigest": digest,
                "imageTags": tags,
                "sourceRegion": claims.src,
                "sourceRegistryId": claims.sa,
                "status": "RECEIVED",
            }),
        });
        if let Err(e) = trail.trail_append(&[row]).await {
            tracing::warn!(error = %e, "could not record a replicated image in the audit trail");
        }
    }
    Ok(Json(json!({})))
}
