//! HTTP handlers of the data plane: thin glue between requests and
//! [`Registry`] calls. One dispatcher parses the path into an [`Endpoint`]
//! (names of any depth), checks the method, and calls one service method.

use std::io;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::StreamExt;
use kura_oci::manifest::MAX_MANIFEST_BYTES;
use kura_oci::{ErrorCode, MediaType, RepoName};

use crate::endpoint::Endpoint;
use crate::error::{ApiError, ApiResult};
use crate::events::Actor;
use crate::request::DataRequest;
use crate::service::{self, CatalogFilter, Registry, StartOutcome, UploadStatus};

/// The account a request addresses, set by an outer layer (host-based
/// addressing arrives with the ECR API); absent means the default account.
#[derive(Clone, Debug)]
pub struct AccountId(pub String);

/// The data-plane router.
pub fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .fallback(dispatch)
        .layer(axum::middleware::map_response(api_version_header))
        .layer(
            tower_http::trace::TraceLayer::new_for_http()
                .make_span_with(RedactedSpan)
                // The binary's request middleware logs each response at INFO (with its request id).
                .on_response(tower_http::trace::DefaultOnResponse::new().level(tracing::Level::DEBUG)),
        )
        .with_state(registry)
}

/// The span of a request: method, path and the query with bearer material
/// (presigned download tokens, SigV4 query signatures and credentials)
/// redacted. Headers are never logged (they carry `Authorization`).
#[derive(Clone, Copy, Debug)]
pub struct RedactedSpan;

impl<B> tower_http::trace::MakeSpan<B> for RedactedSpan {
    fn make_span(&mut self, req: &axum::http::Request<B>) -> tracing::Span {
        tracing::info_span!(
            "request",
            method = %req.method(),
            path = %req.uri().path(),
            query = %crate::request::redact_query(req.uri().query()),
            version = ?req.version(),
        )
    }
}

async fn api_version_header(mut resp: Response) -> Response {
    resp.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    resp
}

fn body_stream(body: Body) -> service::Body {
    body.into_data_stream().map(|r| r.map_err(io::Error::other)).boxed()
}

fn unsupported(method: &Method) -> ApiError {
    ApiError::new(ErrorCode::Unsupported, format!("method {method} is not supported here"))
        .status(StatusCode::METHOD_NOT_ALLOWED)
}

async fn dispatch(State(reg): State<Arc<Registry>>, req: Request) -> Response {
    let head = req.method() == Method::HEAD;
    let has_body = matches!(*req.method(), Method::PUT | Method::PATCH | Method::POST);
    match route(&reg, req).await {
        Ok(r) => r,
        Err(e) => {
            let mut r = e.into_response();
            if head {
                *r.body_mut() = Body::empty();
            }
            if has_body {
                // The request body may be unread (e.g. a 416 before the
                // chunk): tell the client not to reuse this connection.
                r.headers_mut().insert("connection", HeaderValue::from_static("close"));
            }
            r
        }
    }
}

async fn route(reg: &Registry, req: Request) -> ApiResult<Response> {
    let (mut parts, body) = req.into_parts();
    let account = parts
        .extensions
        .remove::<AccountId>()
        .map(|a| a.0)
        .unwrap_or_else(|| reg.config().default_account.clone());
    let account = account.as_str();
    // The guard in front parsed (and authorized) the request: use that very
    // value. Without a guard, parse it here.
    let data = match parts.extensions.remove::<DataRequest>() {
        Some(d) => d,
        None => DataRequest::parse(&parts.method, &parts.uri, &parts.headers)?,
    };
    // Who is asking: the guard in front inserts the authenticated actor
    // (principal, key, client address, user agent); without one the
    // request is anonymous.
    let actor = parts.extensions.remove::<Actor>().unwrap_or_else(|| {
        let ua = parts
            .headers
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        Actor::anonymous(account).from_client(None, ua)
    });
    let filter = parts.extensions.remove::<CatalogFilter>();
    let DataRequest {
        method,
        endpoint,
        params: query,
        headers: h,
    } = data;
    match (endpoint, method) {
        (Endpoint::Base, Method::GET | Method::HEAD) => {
            Ok(json_response(StatusCode::OK, b"{}".to_vec(), "application/json"))
        }
        (Endpoint::Catalog, Method::GET) => {
            let n = query.n;
            let (repos, more) = reg
                .catalog(account, n, query.last.as_deref(), filter.as_ref().map(|f| &*f.0))
                .await?;
            let mut r = json_response(
                StatusCode::OK,
                serde_json::to_vec(&serde_json::json!({ "repositories": repos })).unwrap(),
                "application/json",
            );
            if more {
                link(
                    &mut r,
                    format!(
                        "/v2/_catalog?n={}&last={}",
                        n.unwrap_or(1000),
                        enc(repos.last().unwrap())
                    ),
                );
            }
            Ok(r)
        }
        (Endpoint::Tags(name), Method::GET) => {
            let n = query.n;
            let (tags, more) = reg.list_tags(account, &name, n, query.last.as_deref()).await?;
            let body = serde_json::json!({ "name": name.as_str(), "tags": tags });
            let mut r = json_response(StatusCode::OK, serde_json::to_vec(&body).unwrap(), "application/json");
            if more {
                link(
                    &mut r,
                    format!(
                        "/v2/{name}/tags/list?n={}&last={}",
                        n.unwrap_or(0),
                        enc(tags.last().unwrap())
                    ),
                );
            }
            Ok(r)
        }
        (Endpoint::Manifest(name, reference), m @ (Method::GET | Method::HEAD)) => {
            let pull = (m == Method::GET).then_some(&actor);
            let row = reg.get_manifest(account, &name, &reference, pull).await?;
            let len = row.body.len();
            let mut r = if m == Method::HEAD {
                Response::new(Body::empty())
            } else {
                Response::new(Body::from(row.body))
            };
            let hd = r.headers_mut();
            set(hd, "content-type", &row.media_type);
            set(hd, "content-length", &len.to_string());
            set(hd, "docker-content-digest", &row.digest);
            set(hd, "etag", &format!("\"{}\"", row.digest));
            Ok(r)
        }
        (Endpoint::Manifest(name, reference), Method::PUT) => {
            if let Some(l) = h.content_length.filter(|l| *l > MAX_MANIFEST_BYTES as u64) {
                return Err(service::too_large(l as usize).into());
            }
            let bytes = read_limited(body, MAX_MANIFEST_BYTES).await?;
            let out = reg
                .put_manifest(
                    account,
                    &name,
                    &reference,
                    &query.tags,
                    h.content_type.as_deref(),
                    bytes,
                    &actor,
                )
                .await?;
            let mut r = empty(StatusCode::CREATED);
            let hd = r.headers_mut();
            set(hd, "location", &format!("/v2/{name}/manifests/{}", out.digest));
            set(hd, "docker-content-digest", out.digest.as_str());
            if let Some(s) = out.subject {
                set(hd, "oci-subject", s.as_str());
            }
            Ok(r)
        }
        (Endpoint::Manifest(name, reference), Method::DELETE) => {
            reg.delete_manifest(account, &name, &reference, &actor).await?;
            Ok(empty(StatusCode::ACCEPTED))
        }
        (Endpoint::Blob(name, digest), m @ (Method::GET | Method::HEAD)) => {
            let head = m == Method::HEAD;
            let read = reg.get_blob(account, &name, &digest, h.range.as_deref(), head).await?;
            if let Some(url) = &read.redirect {
                // The bytes come from the blob store (a Range header travels along).
                let mut r = empty(StatusCode::TEMPORARY_REDIRECT);
                let hd = r.headers_mut();
                set(hd, "location", url);
                set(hd, "docker-content-digest", &read.blob.digest);
                return Ok(r);
            }
            let size = read.blob.size as u64;
            let (status, len) = match read.range {
                Some((a, b)) => (StatusCode::PARTIAL_CONTENT, b - a + 1),
                None => (StatusCode::OK, size),
            };
            let mut r = match read.body {
                Some(s) => Response::new(Body::from_stream(s)),
                None => Response::new(Body::empty()),
            };
            *r.status_mut() = status;
            let hd = r.headers_mut();
            set(hd, "content-type", "application/octet-stream");
            set(hd, "content-length", &len.to_string());
            set(hd, "docker-content-digest", &read.blob.digest);
            set(hd, "etag", &format!("\"{}\"", read.blob.digest));
            set(hd, "accept-ranges", "bytes");
            if let Some((a, b)) = read.range {
                set(hd, "content-range", &format!("bytes {a}-{b}/{size}"));
            }
            Ok(r)
        }
        (Endpoint::Blob(name, digest), Method::DELETE) => {
            reg.delete_blob(account, &name, &digest).await?;
            Ok(empty(StatusCode::ACCEPTED))
        }
        (Endpoint::UploadStart(name), Method::POST) => {
            let out = reg
                .start_upload(
                    account,
                    &name,
                    query.mount.as_ref(),
                    query.digest.as_deref(),
                    &actor,
                    body_stream(body),
                )
                .await?;
            Ok(match out {
                StartOutcome::Created(d) => created_blob(&name, d.as_str()),
                StartOutcome::Started(st) => upload_response(StatusCode::ACCEPTED, &name, &st),
            })
        }
        (Endpoint::Upload(name, id), Method::GET) => {
            let st = reg.upload_status(account, &name, &id).await?;
            Ok(upload_response(StatusCode::NO_CONTENT, &name, &st))
        }
        (Endpoint::Upload(name, id), Method::PATCH) => {
            let st = reg
                .patch_upload(
                    account,
                    &name,
                    &id,
                    h.content_range,
                    h.content_length,
                    body_stream(body),
                )
                .await?;
            Ok(upload_response(StatusCode::ACCEPTED, &name, &st))
        }
        (Endpoint::Upload(name, id), Method::PUT) => {
            let digest = query.digest.as_deref().ok_or_else(|| {
                ApiError::new(
                    ErrorCode::DigestInvalid,
                    "the digest query parameter is required to finish an upload",
                )
            })?;
            let range = h.content_range;
            let body = if h.content_length == Some(0) {
                None
            } else {
                Some(body_stream(body))
            };
            let d = reg.finish_upload(account, &name, &id, digest, range, body).await?;
            Ok(created_blob(&name, d.as_str()))
        }
        (Endpoint::Upload(name, id), Method::DELETE) => {
            reg.cancel_upload(account, &name, &id).await?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        (Endpoint::Referrers(name, digest), Method::GET) => {
            let filter = query.artifact_type.as_deref();
            let refs = reg.referrers(account, &name, &digest, filter).await?;
            let manifests: Vec<serde_json::Value> = refs
                .into_iter()
                .map(|r| {
                    let mut d = serde_json::json!({ "mediaType": r.media_type, "digest": r.digest, "size": r.size });
                    if let Some(at) = r.artifact_type {
                        d["artifactType"] = at.into();
                    }
                    if let Some(a) = r
                        .annotations
                        .and_then(|a| serde_json::from_str::<serde_json::Value>(&a).ok())
                    {
                        d["annotations"] = a;
                    }
                    d
                })
                .collect();
            let body =
                serde_json::json!({ "schemaVersion": 2, "mediaType": MediaType::OCI_INDEX, "manifests": manifests });
            let mut r = json_response(StatusCode::OK, serde_json::to_vec(&body).unwrap(), MediaType::OCI_INDEX);
            if filter.is_some() {
                set(r.headers_mut(), "oci-filters-applied", "artifactType");
            }
            Ok(r)
        }
        (_, m) => Err(unsupported(&m)),
    }
}

async fn read_limited(body: Body, limit: usize) -> ApiResult<Vec<u8>> {
    let mut out = Vec::new();
    let mut s = body.into_data_stream();
    while let Some(chunk) = s.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::new(
                ErrorCode::ManifestInvalid,
                format!("manifest body was not received: {e}"),
            )
        })?;
        if out.len() + chunk.len() > limit {
            return Err(service::too_large(out.len() + chunk.len()).into());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

fn set(h: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn link(r: &mut Response, url: String) {
    set(r.headers_mut(), "link", &format!("<{url}>; rel=\"next\""));
}

fn json_response(status: StatusCode, body: Vec<u8>, content_type: &str) -> Response {
    let mut r = (status, body).into_response();
    set(r.headers_mut(), "content-type", content_type);
    r
}

fn empty(status: StatusCode) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    set(r.headers_mut(), "content-length", "0");
    r
}

fn created_blob(name: &RepoName, digest: &str) -> Response {
    let mut r = empty(StatusCode::CREATED);
    set(r.headers_mut(), "location", &format!("/v2/{name}/blobs/{digest}"));
    set(r.headers_mut(), "docker-content-digest", digest);
    r
}

fn upload_response(status: StatusCode, name: &RepoName, st: &UploadStatus) -> Response {
    let mut r = empty(status);
    let hd = r.headers_mut();
    set(hd, "location", &format!("/v2/{name}/blobs/uploads/{}", st.id));
    set(hd, "range", &format!("0-{}", st.offset.saturating_sub(1)));
    set(hd, "docker-upload-uuid", &st.id);
    r
}
