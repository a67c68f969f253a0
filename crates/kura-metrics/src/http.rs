//! The request middleware: every request gets a request id (in a tracing
//! span around its handling, in the `x-request-id` response header, and —
//! for the AWS APIs — as the `x-amzn-RequestId` the pipeline answers with)
//! and one log line when it is answered, and, when metrics are on, is counted and timed by api, operation, status
//! class and plane, its body bytes counted, and its time in flight tracked
//! until its response body ends.
//!
//! Planes: `data` (the OCI distribution API under `/v2/` and the token
//! service), `control` (the AWS APIs on `POST /`), `federation` (replication
//! between regions), `admin` (`/healthz`, `/readyz`, `/metrics`) and `other`.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tracing::Instrument;

use crate::names;

/// Which part of Kura a request addresses, as metric labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Class {
    pub plane: &'static str,
    pub api: &'static str,
    pub operation: &'static str,
    /// A blob upload request (its body streams into the blob store).
    pub upload: bool,
}

/// Classify a request by method and path alone (the AWS operation is known
/// only once the pipeline has read the target or the form; it reports it in
/// a response extension, [`kura_aws::OperationLabel`]).
pub fn classify(method: &Method, path: &str) -> Class {
    let class = |plane, api, operation| Class {
        plane,
        api,
        operation,
        upload: false,
    };
    if path == "/" {
        return class("control", "aws", "unknown");
    }
    if let Some(rest) = path.strip_prefix("/v2") {
        if rest.is_empty() || rest.starts_with('/') {
            let (operation, upload) = oci_operation(method, rest);
            return Class {
                plane: "data",
                api: "oci",
                operation,
                upload,
            };
        }
    }
    match path {
        "/token" => class("data", "oci", "token"),
        "/healthz" => class("admin", "kura", "healthz"),
        "/readyz" => class("admin", "kura", "readyz"),
        "/metrics" => class("admin", "kura", "metrics"),
        p if p.starts_with("/kura/federation/") => class("federation", "replication", "federation"),
        _ => class("other", "unknown", "unknown"),
    }
}

/// The OCI endpoint kind and method of `/v2<rest>`, and whether it uploads.
fn oci_operation(method: &Method, rest: &str) -> (&'static str, bool) {
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    if rest.is_empty() {
        return ("base", false);
    }
    if rest == "_catalog" {
        return ("catalog", false);
    }
    let segs: Vec<&str> = rest.rsplitn(4, '/').collect();
    // segs[0] is the last segment, segs[1] the one before, …
    let at = |i: usize| segs.get(i).copied().unwrap_or("");
    let m = method;
    if segs.len() >= 3 && at(1) == "tags" && at(0) == "list" {
        return ("tags_list", false);
    }
    if segs.len() >= 3 && (at(1) == "uploads" && at(2) == "blobs") {
        // `/blobs/uploads/` (start) or `/blobs/uploads/<id>`.
        return if at(0).is_empty() {
            (
                if m == Method::POST {
                    "upload_start"
                } else {
                    "upload_other"
                },
                true,
            )
        } else {
            let op = match *m {
                Method::PATCH => "upload_chunk",
                Method::PUT => "upload_finish",
                Method::GET | Method::HEAD => "upload_status",
                Method::DELETE => "upload_cancel",
                _ => "upload_other",
            };
            (op, matches!(*m, Method::PATCH | Method::PUT))
        };
    }
    if segs.len() >= 3 && at(1) == "blobs" && at(0) == "uploads" {
        return (
            if m == Method::POST {
                "upload_start"
            } else {
                "upload_other"
            },
            true,
        );
    }
    if segs.len() >= 3 && at(1) == "manifests" {
        let op = match *m {
            Method::GET => "manifest_get",
            Method::HEAD => "manifest_head",
            Method::PUT => "manifest_put",
            Method::DELETE => "manifest_delete",
            _ => "manifest_other",
        };
        return (op, false);
    }
    if segs.len() >= 3 && at(1) == "blobs" {
        let op = match *m {
            Method::GET => "blob_get",
            Method::HEAD => "blob_head",
            Method::DELETE => "blob_delete",
            _ => "blob_other",
        };
        return (op, false);
    }
    if segs.len() >= 3 && at(1) == "referrers" {
        return ("referrers", false);
    }
    ("unknown", false)
}

/// `2xx`, `4xx`, …
pub fn status_class(s: StatusCode) -> &'static str {
    match s.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// The `api` label of an AWS service by its signing name.
fn aws_api(signing_name: &'static str) -> &'static str {
    match signing_name {
        "secretsmanager" => "secrets",
        other => other,
    }
}

/// A new request id.
pub fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The middleware (`axum::middleware::from_fn(track)`), outermost.
pub async fn track(mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let class = classify(req.method(), req.uri().path());
    let rid = new_request_id();
    req.extensions_mut().insert(kura_aws::RequestId(rid.clone()));
    let span = tracing::info_span!(
        "http",
        request_id = %rid,
        http.response.status_code = tracing::field::Empty,
    );
    if crate::otlp::exporting() {
        // A caller's W3C `traceparent`: this request's span joins its trace.
        use opentelemetry::propagation::TextMapPropagator;
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        if req.headers().contains_key("traceparent") {
            let cx = opentelemetry_sdk::propagation::TraceContextPropagator::new()
                .extract(&opentelemetry_http::HeaderExtractor(req.headers()));
            let _ = span.set_parent(cx);
        }
    }
    let metrics_on = crate::installed().is_some();
    let plane = class.plane;
    let in_flight = metrics_on.then(|| Gauge::inc(names::HTTP_IN_FLIGHT, plane));
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    if metrics_on {
        let upload = (class.upload).then(|| Gauge::inc(names::UPLOADS_IN_FLIGHT, plane));
        req = req.map(|b| {
            Body::new(Counted {
                inner: b,
                bytes: 0,
                counter: names::HTTP_RECEIVED,
                plane,
                _guard: upload,
            })
        });
    }
    let mut resp = next.run(req).instrument(span.clone()).await;
    let (api, operation) = match resp.extensions().get::<kura_aws::OperationLabel>() {
        Some(l) => (aws_api(l.api), l.operation),
        None => (class.api, class.operation),
    };
    let status = resp.status();
    let elapsed = start.elapsed();
    if crate::otlp::exporting() {
        // The exported span's name, known only now (the OTLP span exists already).
        use opentelemetry::trace::TraceContextExt;
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        span.context().span().update_name(format!("{method} {api} {operation}"));
        span.record("http.response.status_code", status.as_u16());
    }
    if metrics_on {
        metrics::histogram!(
            names::HTTP_DURATION,
            "api" => api,
            "operation" => operation,
            "status_class" => status_class(status),
            "plane" => plane,
        )
        .record(elapsed.as_secs_f64());
    }
    // One line per response, in the span (so with the request id); probes
    // and scrapes only at DEBUG.
    let latency_ms = elapsed.as_millis() as u64;
    span.in_scope(|| {
        if plane == "admin" {
            tracing::debug!(status = status.as_u16(), %method, %path, api, operation, latency_ms, "response");
        } else {
            tracing::info!(status = status.as_u16(), %method, %path, api, operation, latency_ms, "response");
        }
    });
    if let Ok(v) = HeaderValue::from_str(&rid) {
        resp.headers_mut().insert("x-request-id", v);
    }
    if metrics_on {
        resp = resp.map(|b| {
            Body::new(Counted {
                inner: b,
                bytes: 0,
                counter: names::HTTP_SENT,
                plane,
                _guard: in_flight,
            })
        });
    }
    resp
}

/// A gauge incremented now and decremented on drop.
struct Gauge {
    name: &'static str,
    plane: &'static str,
}

impl Gauge {
    fn inc(name: &'static str, plane: &'static str) -> Self {
        metrics::gauge!(name, "plane" => plane).increment(1.0);
        Gauge { name, plane }
    }
}

impl Drop for Gauge {
    fn drop(&mut self) {
        metrics::gauge!(self.name, "plane" => self.plane).decrement(1.0);
    }
}

/// A body that counts its data bytes into `counter` once, when dropped, and
/// holds a guard until then.
struct Counted {
    inner: Body,
    bytes: u64,
    counter: &'static str,
    plane: &'static str,
    _guard: Option<Gauge>,
}

impl HttpBody for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &r {
            if let Some(d) = f.data_ref() {
                this.bytes += d.len() as u64;
            }
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if self.bytes > 0 {
            metrics::counter!(self.counter, "plane" => self.plane).increment(self.bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oci_paths_classify_without_names_or_digests() {
        let d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let cases: &[(Method, String, &str, bool)] = &[
            (Method::GET, "/v2/".into(), "base", false),
            (Method::GET, "/v2".into(), "base", false),
            (Method::GET, "/v2/_catalog".into(), "catalog", false),
            (Method::GET, "/v2/a/b/c/tags/list".into(), "tags_list", false),
            (Method::GET, "/v2/a/manifests/latest".into(), "manifest_get", false),
            (
                Method::HEAD,
                format!("/v2/team/app/manifests/{d}"),
                "manifest_head",
                false,
            ),
            (Method::PUT, "/v2/a/manifests/v1".into(), "manifest_put", false),
            (Method::DELETE, format!("/v2/a/manifests/{d}"), "manifest_delete", false),
            (Method::GET, format!("/v2/x/y/blobs/{d}"), "blob_get", false),
            (Method::HEAD, format!("/v2/x/blobs/{d}"), "blob_head", false),
            (Method::POST, "/v2/x/blobs/uploads/".into(), "upload_start", true),
            (Method::POST, "/v2/x/blobs/uploads".into(), "upload_start", true),
            (Method::PATCH, "/v2/x/blobs/uploads/3f2a-1".into(), "upload_chunk", true),
            (Method::PUT, "/v2/x/blobs/uploads/3f2a-1".into(), "upload_finish", true),
            (Method::GET, "/v2/x/blobs/uploads/3f2a-1".into(), "upload_status", false),
            (
                Method::DELETE,
                "/v2/x/blobs/uploads/3f2a-1".into(),
                "upload_cancel",
                false,
            ),
            (Method::GET, format!("/v2/x/referrers/{d}"), "referrers", false),
            (Method::GET, "/v2/x/nothing".into(), "unknown", false),
        ];
        for (m, p, op, upload) in cases {
            let c = classify(m, p);
            assert_eq!(
                (c.plane, c.api, c.operation, c.upload),
                ("data", "oci", *op, *upload),
                "{m} {p}"
            );
        }
    }

    #[test]
    fn other_paths_have_their_planes() {
        assert_eq!(classify(&Method::POST, "/").plane, "control");
        assert_eq!(classify(&Method::GET, "/token").operation, "token");
        assert_eq!(classify(&Method::GET, "/readyz").plane, "admin");
        assert_eq!(
            classify(&Method::POST, "/kura/federation/v1/prepare").plane,
            "federation"
        );
        let c = classify(&Method::GET, "/v2x/whatever");
        assert_eq!((c.plane, c.operation), ("other", "unknown"));
        assert_eq!(status_class(StatusCode::NOT_FOUND), "4xx");
        assert_eq!(status_class(StatusCode::SERVICE_UNAVAILABLE), "5xx");
        assert_eq!(status_class(StatusCode::TEMPORARY_REDIRECT), "3xx");
    }
}
