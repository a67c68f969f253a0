//! Logging and tracing set-up: the log output (text or JSON on stderr,
//! filtered by `RUST_LOG`), the database latency layer when metrics are on,
//! and — when an OTLP endpoint is configured — the export of the tracing
//! spans over OTLP/HTTP (protobuf) to a collector.
//!
//! Spans are batched and sent by the SDK's batch processor from its own
//! thread; the HTTP request itself runs on Kura's tokio runtime (plain
//! `http://` endpoints: the exporter's client has no TLS).

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported (the request span then gets its OTLP name and status).
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// How to set logging and tracing up.
#[derive(Clone, Debug, Default)]
pub struct Telemetry {
    /// `text` or `json`.
    pub log_format: String,
    /// Time database statements into the metrics.
    pub db_metrics: bool,
    /// The OTLP/HTTP endpoint's base URL (`http://collector:4318`); spans go to `<base>/v1/traces`.
    pub otlp_endpoint: Option<String>,
    /// The `service.name` of the exported spans.
    pub service_name: String,
}

/// Flushes the exporter when the server stops.
#[derive(Default)]
pub struct Guard {
    provider: Option<SdkTracerProvider>,
}

impl Guard {
    /// Export the spans still buffered and stop the exporter.
    pub async fn shutdown(mut self) {
        if let Some(p) = self.provider.take() {
            // The SDK blocks while it flushes: off the async workers.
            let _ = tokio::task::spawn_blocking(move || {
                if let Err(e) = p.shutdown() {
                    eprintln!("kura: flushing the OTLP span exporter failed: {e}");
                }
            })
            .await;
        }
    }
}

/// The URL spans are posted to, from an OTLP base endpoint.
pub fn traces_url(base: &str) -> anyhow::Result<String> {
    let base = base.trim();
    let url: reqwest::Url = base
        .parse()
        .map_err(|e| anyhow::anyhow!("the OTLP endpoint {base:?} is not a URL: {e}"))?;
    match url.scheme() {
        "http" => {}
        "https" => anyhow::bail!(
            "the OTLP endpoint {base:?} uses https, which Kura's exporter does not speak: use a collector's plain-HTTP OTLP port (4318)"
        ),
        other => anyhow::bail!("the OTLP endpoint {base:?} has scheme {other:?}: expected http://host:4318"),
    }
    if url.path().ends_with("/v1/traces") {
        return Ok(base.to_string());
    }
    Ok(format!("{}/v1/traces", base.trim_end_matches('/')))
}

/// Install the global tracing subscriber (once per process).
pub fn init(t: &Telemetry) -> anyhow::Result<Guard> {
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    // Colour only on a terminal: logs written to a file stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let fmt = if t.log_format == "json" {
        fmt.json().with_filter(filter).boxed()
    } else {
        fmt.with_filter(filter).boxed()
    };
    let db = t.db_metrics.then(crate::db::layer);
    let (otel, provider) = match &t.otlp_endpoint {
        Some(base) if !base.trim().is_empty() => {
            let provider = tracer_provider(base, &t.service_name)?;
            let tracer = provider.tracer("kura");
            // Kura's own spans (not every dependency's): the request span and what runs in it.
            let filter = EnvFilter::try_from_env("KURA_OTLP_FILTER")
                .unwrap_or_else(|_| EnvFilter::new("info,sqlx=off,h2=off,hyper=off,reqwest=off"));
            let layer = tracing_opentelemetry::layer().with_tracer(tracer).with_filter(filter);
            (Some(layer), Some(provider))
        }
        _ => (None, None),
    };
    tracing_subscriber::registry()
        .with(fmt)
        .with(db)
        .with(otel)
        .try_init()
        .map_err(|e| anyhow::anyhow!("installing the log subscriber: {e}"))?;
    EXPORTING.store(provider.is_some(), Ordering::Relaxed);
    Ok(Guard { provider })
}

fn tracer_provider(base: &str, service: &str) -> anyhow::Result<SdkTracerProvider> {
    let url = traces_url(base)?;
    let handle = tokio::runtime::Handle::try_current()
        .map_err(|_| anyhow::anyhow!("the OTLP exporter needs the tokio runtime"))?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url)
        .with_http_client(OnRuntime {
            handle,
            client: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()
                .map_err(|e| anyhow::anyhow!("building the OTLP HTTP client: {e}"))?,
        })
        .build()
        .map_err(|e| anyhow::anyhow!("configuring the OTLP exporter: {e}"))?;
    let name = if service.is_empty() { "kura" } else { service };
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(name.to_string()).build())
        .build())
}

/// The exporter's HTTP client: Kura's reqwest client, each request run on
/// the tokio runtime (the batch processor calls from a thread of its own,
/// outside the runtime).
#[derive(Debug, Clone)]
struct OnRuntime {
    handle: tokio::runtime::Handle,
    client: reqwest::Client,
}

#[async_trait::async_trait]
impl HttpClient for OnRuntime {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let task = self.handle.spawn(async move {
            let (parts, body) = request.into_parts();
            let mut req = client.request(parts.method, parts.uri.to_string()).body(body);
            for (k, v) in parts.headers.iter() {
                req = req.header(k, v);
            }
            let resp = req.send().await?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = resp.bytes().await?;
            let mut out = Response::new(body);
            *out.status_mut() = status;
            *out.headers_mut() = headers;
            Ok::<_, reqwest::Error>(out)
        });
        let resp = task.await.map_err(|e| Box::new(e) as HttpError)?;
        resp.map_err(|e| Box::new(e) as HttpError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_url_appends_the_signal_path_once() {
        assert_eq!(
            traces_url("http://127.0.0.1:4318").unwrap(),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(traces_url("http://c:4318/").unwrap(), "http://c:4318/v1/traces");
        assert_eq!(
            traces_url("http://c:4318/v1/traces").unwrap(),
            "http://c:4318/v1/traces"
        );
        assert!(traces_url("https://c:4318").unwrap_err().to_string().contains("https"));
        assert!(traces_url("not a url").is_err());
        assert!(traces_url("grpc://c:4317").is_err());
    }
}
