//! Kura's observability: metrics through the `metrics` facade, rendered in
//! the Prometheus text format by `metrics-exporter-prometheus` ([`install`],
//! [`Metrics::render`]); the HTTP middleware that counts and times every
//! request by API, operation, status class and plane ([`http`]); blob store
//! ([`blobs`]) and database ([`db`]) latency; a sampler of queue depths,
//! freshness and reachability ([`sampler`]); readiness ([`ready`]); and the
//! OTLP export of the tracing spans ([`otlp`]).
//!
//! Every label has a bounded set of values: API and operation names come
//! from fixed tables (the AWS operations Kura implements, the OCI endpoint
//! kinds), never from a path, digest, tag or repository name.

pub mod blobs;
pub mod db;
pub mod http;
pub mod names;
pub mod otlp;
pub mod ready;
pub mod sampler;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets (seconds) of every `*_seconds` histogram: 0.5 ms to 60 s.
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The process-wide recorder's handle: renders `/metrics`.
#[derive(Clone)]
pub struct Metrics {
    handle: PrometheusHandle,
    process: Arc<metrics_process::Collector>,
}

static INSTALLED: OnceLock<Metrics> = OnceLock::new();

/// Install the Prometheus recorder as the process's global recorder (once;
/// later calls return the same handle) and describe Kura's metrics.
pub fn install() -> anyhow::Result<Metrics> {
    if let Some(m) = INSTALLED.get() {
        return Ok(m.clone());
    }
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|e| anyhow::anyhow!("installing the metrics recorder: {e}"))?;
    let process = Arc::new(metrics_process::Collector::default());
    process.describe();
    names::describe();
    metrics::gauge!(names::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    let m = Metrics { handle, process };
    // Histograms and summaries drain their buckets in the upkeep; without
    // it they would grow between scrapes that never come.
    let upkeep = m.handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(INSTALLED.get_or_init(|| m).clone())
}

impl Metrics {
    /// The Prometheus text exposition of every metric, process metrics
    /// collected now.
    pub fn render(&self) -> String {
        self.process.collect();
        self.handle.render()
    }
}

/// The metrics recorder, if [`install`] ran.
pub fn installed() -> Option<&'static Metrics> {
    INSTALLED.get()
}
