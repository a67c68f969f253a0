//! The cost of metrics on the request path (Kura only): two Kura servers,
//! one plain and one with `--metrics` (the per-request histogram, byte
//! counters, in-flight gauges, timed blob store and database statements, the
//! sampler), each hammered with manifest GETs by tag in alternating rounds;
//! req/s, p99 latency and server CPU per request for both, and how long one
//! `/metrics` scrape takes after the load.

use std::time::Instant;

use http::Method;

use crate::report::{self, Report, Target};
use crate::server::{Binaries, Kind, Server};
use crate::transfer::{self, PushMode};
use crate::{gen, load, progress};

const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
                      application/vnd.docker.distribution.manifest.v2+json";

pub async fn section(report: &mut Report, secs: f64, conns: usize, bins: &Binaries) -> anyhow::Result<()> {
    let plain = Server::start(Kind::Kura, bins).await?;
    let metered = Server::start_with(Kind::Kura, bins, &["--metrics"]).await?;
    let client = transfer::client(PushMode::Monolithic);
    let img = gen::image(&[64 << 10]);
    for s in [&plain, &metered] {
        let r = transfer::reference(s, "bench/metrics", "latest")?;
        transfer::push(&client, s, &r, &img).await?;
    }
    let rounds = 4;
    let (mut off, mut on) = (vec![], vec![]);
    let (mut off_cpu, mut on_cpu) = (vec![], vec![]);
    let (mut off_p99, mut on_p99) = (vec![], vec![]);
    let mut errors = 0;
    for round in 0..rounds {
        // Alternate who goes first.
        let order: [(bool, &Server); 2] = if round % 2 == 0 {
            [(false, &plain), (true, &metered)]
        } else {
            [(true, &metered), (false, &plain)]
        };
        for (metrics, s) in order {
            progress(&format!(
                "metrics round {}/{rounds}: manifest GET, metrics {}",
                round + 1,
                if metrics { "on" } else { "off" }
            ));
            let m = load::run(
                s,
                Method::GET,
                "/v2/bench/metrics/manifests/latest",
                Some(ACCEPT),
                conns,
                secs,
            )
            .await?;
            errors += m.errors;
            let cpu_us = m.cpu / m.requests.max(1) as f64 * 1e6;
            if metrics {
                on.push(m.rps);
                on_cpu.push(cpu_us);
                on_p99.push(m.p99_ms);
            } else {
                off.push(m.rps);
                off_cpu.push(cpu_us);
                off_p99.push(m.p99_ms);
            }
        }
    }
    // One scrape after the load: its size and time.
    let http = reqwest::Client::new();
    let t = Instant::now();
    let body = http
        .get(format!("{}/metrics", metered.url()))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    let scrape_ms = t.elapsed().as_secs_f64() * 1e3;
    report.section(&format!(
        "Cost of metrics (Kura only; manifest GET by tag, {conns} connections, {secs} s each, {rounds} rounds)"
    ));
    report.rounds("manifest GET, metrics off", "req/s", off.clone(), vec![], Target::None);
    report.rounds("manifest GET, `--metrics`", "req/s", on.clone(), vec![], Target::None);
    report.row(
        "manifest GET req/s, metrics on ÷ off",
        "ratio",
        Some(report::median(&on) / report::median(&off)),
        None,
        Target::None,
    );
    report.rounds("manifest GET p99, metrics off", "ms", off_p99, vec![], Target::None);
    report.rounds("manifest GET p99, `--metrics`", "ms", on_p99, vec![], Target::None);
    report.rounds(
        "server CPU per GET, metrics off",
        "CPU-µs",
        off_cpu,
        vec![],
        Target::None,
    );
    report.rounds(
        "server CPU per GET, `--metrics`",
        "CPU-µs",
        on_cpu,
        vec![],
        Target::None,
    );
    report.row(
        "one /metrics scrape after the load",
        "ms",
        Some(scrape_ms),
        None,
        Target::None,
    );
    report.row("its size", "KiB", Some(body.len() as f64 / 1024.0), None, Target::None);
    if errors > 0 {
        report
            .notes
            .push(format!("{errors} failed requests in the metrics-cost test."));
    }
    plain.stop();
    metered.stop();
    Ok(())
}
