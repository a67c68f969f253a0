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

use crate::endpoint::{self, Endpoint};
use crate::error::{ApiError, ApiResult};
use crate::service::{self, Registry, StartOutcome, UploadStatus};

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
                .make_span_with(tower_http::trace::DefaultMakeSpan::new().level(tracing::Level::INFO))
                .on_response(tower_http::trace::DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .with_state(registry)
}

async fn api_version_header(mut resp: Response) -> Response {
    resp.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    resp
}

struct Query(Vec<(String, String)>);

impl Query {
    fn parse(q: Option<&str>) -> Self {
        Query(
            form_urlencoded::parse(q.unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
        )
    }
    fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str())
    }
    fn all(&self, k: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn content_length(h: &HeaderMap) -> Option<u64> {
    header(h, "content-length").and_then(|v| v.trim().parse().ok())
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
    let account = req
        .extensions()
        .get::<AccountId>()
        .map(|a| a.0.clone())
        .unwrap_or_else(|| reg.config().default_account.clone());
    let account = account.as_str();
    let endpoint = endpoint::parse(req.uri().path())?;
    let query = Query::parse(req.uri().query());
    let method = req.method().clone();
    let (parts, body) = req.into_parts();
    let h = &parts.headers;
    match (endpoint, method) {
        (Endpoint::Base, Method::GET | Method::HEAD) => {
            Ok(json_response(StatusCode::OK, b"{}".to_vec(), "application/json"))
        }
        (Endpoint::Catalog, Method::GET) => {
            let n = parse_n(&query)?;
            let (repos, more) = reg.catalog(account, n, query.get("last")).await?;
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
            let n = parse_n(&query)?;
            let (tags, more) = reg.list_tags(account, &name, n, query.get("last")).await?;
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
            let row = reg.get_manifest(account, &name, &reference, m == Method::GET).await?;
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
            if content_length(h).is_some_and(|l| l > MAX_MANIFEST_BYTES as u64) {
                return Err(service::too_large(content_length(h).unwrap() as usize));
            }
            let bytes = read_limited(body, MAX_MANIFEST_BYTES).await?;
            let out = reg
                .put_manifest(
                    account,
                    &name,
                    &reference,
                    &query.all("tag"),
                    header(h, "content-type"),
                    bytes,
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
            reg.delete_manifest(account, &name, &reference).await?;
            Ok(empty(StatusCode::ACCEPTED))
        }
        (Endpoint::Blob(name, digest), m @ (Method::GET | Method::HEAD)) => {
            let head = m == Method::HEAD;
            let read = reg.get_blob(account, &name, &digest, header(h, "range"), head).await?;
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
            let mount = query.get("mount").map(|m| (m, query.get("from")));
            let out = reg
                .start_upload(account, &name, mount, query.get("digest"), body_stream(body))
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
            let range = parse_content_range(h)?;
            let st = reg
                .patch_upload(account, &name, &id, range, content_length(h), body_stream(body))
                .await?;
            Ok(upload_response(StatusCode::ACCEPTED, &name, &st))
        }
        (Endpoint::Upload(name, id), Method::PUT) => {
            let digest = query.get("digest").ok_or_else(|| {
                ApiError::new(
                    ErrorCode::DigestInvalid,
                    "the digest query parameter is required to finish an upload",
                )
            })?;
            let range = parse_content_range(h)?;
            let body = if content_length(h) == Some(0) {
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
            let filter = query.get("artifactType");
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

fn parse_n(q: &Query) -> ApiResult<Option<u32>> {
    match q.get("n") {
        None | Some("") => Ok(None),
        Some(v) => v.parse::<u32>().map(Some).map_err(|_| {
            ApiError::new(
                ErrorCode::Unsupported,
                format!("n must be a non-negative integer, not {v:?}"),
            )
            .status(StatusCode::BAD_REQUEST)
        }),
    }
}

/// Parse `Content-Range: <start>-<end>` (a `bytes ` prefix and `/total` suffix are tolerated).
fn parse_content_range(h: &HeaderMap) -> ApiResult<Option<(u64, u64)>> {
    let Some(v) = header(h, "content-range") else {
        return Ok(None);
    };
    let bad = || ApiError::new(ErrorCode::RangeInvalid, format!("invalid Content-Range {v:?}"));
    let s = v.trim();
    let s = s
        .strip_prefix("bytes=")
        .or_else(|| s.strip_prefix("bytes "))
        .unwrap_or(s);
    let s = s.split('/').next().unwrap_or(s);
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let (a, b): (u64, u64) = (
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    );
    if b < a {
        return Err(bad());
    }
    Ok(Some((a, b)))
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
            return Err(service::too_large(out.len() + chunk.len()));
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
