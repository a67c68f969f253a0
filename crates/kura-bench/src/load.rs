//! Requests per second at N concurrent connections: N tasks, each owning one
//! keep-alive HTTP/1.1 connection (hyper, no pool), sending the same request
//! back to back for a fixed time.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

use crate::server::Server;

pub struct LoadResult {
    pub rps: f64,
    pub requests: u64,
    pub errors: u64,
    pub p99_ms: f64,
    pub cpu: f64,
}

/// Sends `method path` with `accept` (if any) on `conns` connections for
/// `secs` seconds (after a short unmeasured warm-up) and counts 2xx answers.
pub async fn run(
    server: &Server,
    method: Method,
    path: &str,
    accept: Option<&str>,
    conns: usize,
    secs: f64,
) -> anyhow::Result<LoadResult> {
    let warmup = Duration::from_secs_f64((secs / 10.0).min(1.0));
    let start = Instant::now() + warmup;
    let end = start + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (host, path, method) = (server.host.clone(), path.to_string(), method.clone());
        let (auth, accept) = (server.authorization(), accept.map(str::to_string));
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(&host).await?;
            stream.set_nodelay(true)?;
            let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            let (mut ok, mut errors, mut lat) = (0u64, 0u64, Vec::with_capacity(1 << 16));
            loop {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                let mut b = Request::builder()
                    .method(method.clone())
                    .uri(&path)
                    .header("host", &host);
                if let Some(a) = &auth {
                    b = b.header("authorization", a);
                }
                if let Some(a) = &accept {
                    b = b.header("accept", a);
                }
                send.ready().await?;
                let resp = send.send_request(b.body(Empty::<Bytes>::new())?).await?;
                let status = resp.status();
                resp.into_body().collect().await?;
                if now >= start {
                    if status.is_success() {
                        ok += 1;
                        lat.push(now.elapsed().as_secs_f64());
                    } else {
                        errors += 1;
                    }
                }
            }
            anyhow::Ok((ok, errors, lat))
        }));
    }
    tokio::time::sleep_until(start.into()).await;
    let cpu0 = server.cpu();
    let (mut ok, mut errors, mut lat) = (0, 0, Vec::new());
    for t in tasks {
        let (o, e, l) = t.await?.with_context(|| format!("load on {}", server.kind))?;
        ok += o;
        errors += e;
        lat.extend(l);
    }
    let cpu = server.cpu() - cpu0;
    if ok == 0 {
        bail!("{} {path} on {}: no successful request", method, server.kind);
    }
    lat.sort_by(f64::total_cmp);
    Ok(LoadResult {
        rps: ok as f64 / secs,
        requests: ok,
        errors,
        p99_ms: percentile(&lat, 0.99) * 1e3,
        cpu,
    })
}

/// The q-quantile of sorted values (nearest rank).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}
