//! Observability in `kura serve`: the flags, the log/trace subscriber (with
//! the OTLP exporter when configured), the metrics recorder, `/metrics` on
//! the main listener (`--metrics`) and/or an admin listener
//! (`--metrics-listen`), `/readyz`, the request middleware and the sampler.
//! The pieces live in the `kura-metrics` crate; this module wires them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use kura_metrics::ready::{readyz, Probes};
use kura_metrics::Metrics;
use kura_registry::PullThroughStats;
use kura_store::{BlobStore, SqlMetaStore};

/// `kura serve`'s observability flags.
#[derive(clap::Args, Clone, Debug)]
pub struct ObsFlags {
    /// Serve Prometheus metrics at `/metrics` on the main listener (unauthenticated).
    #[arg(long, env = "KURA_METRICS", value_parser = clap::builder::BoolishValueParser::new())]
    pub metrics: bool,
    /// Serve `/metrics`, `/healthz` and `/readyz` on this admin address too
    /// (e.g. `127.0.0.1:9090`); metrics are on when either is set.
    #[arg(long, env = "KURA_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// How often job queue depth, vulnerability data freshness, database and
    /// blob store reachability and free disk space are sampled for the metrics.
    #[arg(long, env = "KURA_METRICS_SAMPLE_INTERVAL", default_value = "15s", value_parser = humantime::parse_duration)]
    pub metrics_sample_interval: Duration,
    /// Export the tracing spans over OTLP/HTTP (protobuf) to this collector
    /// (`http://collector:4318`; spans are posted to `/v1/traces` under it).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// The `service.name` of the exported spans.
    #[arg(long, env = "OTEL_SERVICE_NAME", default_value = "kura")]
    pub otlp_service_name: String,
}

impl ObsFlags {
    fn metrics_on(&self) -> bool {
        self.metrics || self.metrics_listen.is_some()
    }
}

/// Set by [`init`]: what the server needs later.
pub struct Observability {
    metrics: Option<Metrics>,
    telemetry: kura_metrics::otlp::Guard,
    /// The blob store before timing: the probes' own calls are not traffic.
    raw_blobs: Option<Arc<dyn BlobStore>>,
}

/// Logging (and OTLP export), then the metrics recorder if metrics are on.
pub fn init(log_format: &str, flags: &ObsFlags) -> anyhow::Result<Observability> {
    let telemetry = kura_metrics::otlp::init(&kura_metrics::otlp::Telemetry {
        log_format: log_format.to_string(),
        db_metrics: flags.metrics_on(),
        otlp_endpoint: flags.otlp_endpoint.clone().filter(|s| !s.trim().is_empty()),
        service_name: flags.otlp_service_name.clone(),
    })
    .context("--otlp-endpoint")?;
    if let Some(e) = flags.otlp_endpoint.as_deref().filter(|s| !s.trim().is_empty()) {
        tracing::info!(endpoint = e, "exporting tracing spans over OTLP/HTTP");
    }
    let metrics = if flags.metrics_on() {
        Some(kura_metrics::install()?)
    } else {
        None
    };
    Ok(Observability {
        metrics,
        telemetry,
        raw_blobs: None,
    })
}

impl Observability {
    /// The blob store, timed when metrics are on.
    pub fn blobs(&mut self, blobs: Arc<dyn BlobStore>) -> Arc<dyn BlobStore> {
        self.raw_blobs = Some(blobs.clone());
        match self.metrics {
            Some(_) => kura_metrics::blobs::timed(blobs),
            None => blobs,
        }
    }

    /// `app` with `/readyz`, `/metrics` (with `--metrics`) and the request
    /// middleware; starts the sampler and the admin listener when metrics are on.
    pub async fn serve_with(
        &self,
        app: Router,
        flags: &ObsFlags,
        meta: Arc<SqlMetaStore>,
        blobs: Arc<dyn BlobStore>,
        data_dir: PathBuf,
        pull_through: Arc<PullThroughStats>,
    ) -> anyhow::Result<Router> {
        let probes = Probes {
            meta,
            blobs: self.raw_blobs.clone().unwrap_or(blobs),
        };
        let mut app = app.route("/readyz", get(readyz).with_state(probes.clone()));
        if let Some(m) = &self.metrics {
            if flags.metrics {
                app = app.route("/metrics", get(render).with_state(m.clone()));
            }
            kura_metrics::sampler::spawn(
                kura_metrics::sampler::Sources {
                    probes: probes.clone(),
                    data_dir: Some(data_dir),
                    pull_through: Some(pull_through),
                },
                flags.metrics_sample_interval,
            );
            if let Some(addr) = flags.metrics_listen {
                let admin = Router::new()
                    .route("/metrics", get(render).with_state(m.clone()))
                    .route("/healthz", get(|| async { "ok" }))
                    .route("/readyz", get(readyz).with_state(probes))
                    .layer(axum::middleware::from_fn(kura_metrics::http::track));
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding the metrics listener {addr}"))?;
                tracing::info!(listen = %addr, "serving /metrics, /healthz and /readyz");
                tokio::spawn(async move {
                    if let Err(e) = axum::serve(listener, admin).await {
                        tracing::error!(error = %e, "the metrics listener stopped");
                    }
                });
            }
        }
        Ok(app.layer(axum::middleware::from_fn(kura_metrics::http::track)))
    }

    /// Flush the span exporter.
    pub async fn shutdown(self) {
        self.telemetry.shutdown().await;
    }
}

async fn render(State(m): State<Metrics>) -> Response {
    (
        StatusCode::OK,
        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
        m.render(),
    )
        .into_response()
}
