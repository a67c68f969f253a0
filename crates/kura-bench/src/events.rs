//! EventBridge delivery (Kura only): push throughput with a matching rule and an API
//! destination target versus no enabled rule, and the delivery latency of each event
//! (manifest PUT sent → the event's arrival at a local receiver), p50/p99, under a burst of
//! pushes (8 in flight).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::{StreamExt, TryStreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::load::percentile;
use crate::scale::put_blob;
use crate::server::Server;

const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const IN_FLIGHT: usize = 8;

/// Arrival times of events at the receiver, by image tag.
#[derive(Clone, Default)]
pub struct Receiver {
    arrived: Arc<Mutex<HashMap<String, Instant>>>,
}

impl Receiver {
    /// Serve HTTP/1.1 (keep-alive, Content-Length bodies) on a free loopback port; its URL.
    pub async fn start(&self) -> anyhow::Result<String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/events", listener.local_addr()?);
        let arrived = self.arrived.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let arrived = arrived.clone();
                tokio::spawn(async move {
                    let _ = serve(sock, arrived).await;
                });
            }
        });
        Ok(url)
    }

    fn count(&self) -> usize {
        self.arrived.lock().expect("receiver").len()
    }
}

async fn serve(sock: tokio::net::TcpStream, arrived: Arc<Mutex<HashMap<String, Instant>>>) -> anyhow::Result<()> {
    let (r, mut w) = sock.into_split();
    let mut r = BufReader::new(r);
    loop {
        let mut len = 0usize;
        let mut line = String::new();
        let mut first = true;
        loop {
            line.clear();
            if r.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let l = line.trim_end();
            if l.is_empty() && !first {
                break;
            }
            first = false;
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse()?;
                }
            }
        }
        let mut body = vec![0; len];
        r.read_exact(&mut body).await?;
        let now = Instant::now();
        let ev: Value = serde_json::from_slice(&body).unwrap_or_default();
        if let Some(tag) = ev.pointer("/detail/image-tag").and_then(Value::as_str) {
            arrived.lock().expect("receiver").entry(tag.to_string()).or_insert(now);
        }
        w.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await?;
    }
}

/// One measured burst.
pub struct Burst {
    /// Pushes (manifest PUTs) per second.
    pub pushes_per_s: f64,
    /// Delivery latencies in ms (empty when no rule is enabled).
    pub latencies_ms: Vec<f64>,
}

impl Burst {
    pub fn p(&self, q: f64) -> f64 {
        let mut v = self.latencies_ms.clone();
        v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
        percentile(&v, q)
    }
}

/// Configure a rule (`prod/` pushes), a connection and an API destination to `url`.
pub async fn configure(server: &Server, url: &str) -> anyhow::Result<()> {
    let ecr = server.ecr.as_ref().context("Kura's API client")?;
    let call = |op: &'static str, body: Value| async move {
        ecr.call_service("AWSEvents", "events", op, &body).await.map(|r| r.0)
    };
    let pattern = json!({"source": ["aws.ecr"], "detail-type": ["ECR Image Action"],
        "detail": {"action-type": ["PUSH"], "repository-name": [{"prefix": "prod/"}]}});
    call("PutRule", json!({"Name": "bench", "EventPattern": pattern.to_string()})).await?;
    let c = call(
        "CreateConnection",
        json!({"Name": "bench", "AuthorizationType": "API_KEY",
               "AuthParameters": {"ApiKeyAuthParameters": {"ApiKeyName": "x-api-key", "ApiKeyValue": "bench"}}}),
    )
    .await?;
    let d = call(
        "CreateApiDestination",
        json!({"Name": "bench", "ConnectionArn": c["ConnectionArn"], "InvocationEndpoint": url, "HttpMethod": "POST"}),
    )
    .await?;
    call(
        "PutTargets",
        json!({"Rule": "bench", "Targets": [{"Id": "recv", "Arn": d["ApiDestinationArn"]}]}),
    )
    .await?;
    Ok(())
}

/// Enable or disable the rule.
pub async fn set_rule(server: &Server, on: bool) -> anyhow::Result<()> {
    let ecr = server.ecr.as_ref().context("Kura's API client")?;
    let op = if on { "EnableRule" } else { "DisableRule" };
    ecr.call_service("AWSEvents", "events", op, &json!({"Name": "bench"}))
        .await?;
    // Other nodes' caches refresh within a second; this node's at once.
    Ok(())
}

/// Push `n` small images (one shared config and layer, distinct manifests, tags `<label>-<i>`)
/// to `prod/bench`, 8 in flight; with `rx`, wait for every event and measure latencies.
pub async fn burst(server: &Server, n: usize, label: &str, rx: Option<&Receiver>) -> anyhow::Result<Burst> {
    let http = reqwest::Client::new();
    let repo = "prod/bench";
    let config = serde_json::to_vec(&json!({"architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": []}}))?;
    let layer = vec![7u8; 1024];
    let (cl, ll) = (config.len(), layer.len());
    let cd = put_blob(&http, server, repo, config).await?;
    let ld = put_blob(&http, server, repo, layer).await?;
    let auth = server.authorization().unwrap_or_default();
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let t0 = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let (http, auth, sent, cd, ld) = (&http, &auth, sent.clone(), &cd, &ld);
            async move {
                let tag = format!("{label}-{i}");
                let body = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": MANIFEST_TYPE,
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cl},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": ll}],
                    "annotations": {"n": tag}}))?;
                sent.lock().expect("sent").insert(tag.clone(), Instant::now());
                let resp = http
                    .put(format!("{}/v2/{repo}/manifests/{tag}", server.url()))
                    .header("authorization", auth.as_str())
                    .header("content-type", MANIFEST_TYPE)
                    .body(body)
                    .send()
                    .await?;
                if resp.status().as_u16() != 201 {
                    bail!("PUT manifest {tag}: {}", resp.status());
                }
                anyhow::Ok(())
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .try_collect::<()>()
        .await?;
    let pushes_per_s = n as f64 / t0.elapsed().as_secs_f64();
    let mut latencies_ms = Vec::new();
    if let Some(rx) = rx {
        let deadline = Instant::now() + Duration::from_secs(120);
        let want: Vec<String> = (0..n).map(|i| format!("{label}-{i}")).collect();
        loop {
            let arrived = rx.arrived.lock().expect("receiver").clone();
            if want.iter().all(|t| arrived.contains_key(t)) {
                let sent = sent.lock().expect("sent");
                latencies_ms = want
                    .iter()
                    .map(|t| arrived[t].saturating_duration_since(sent[t]).as_secs_f64() * 1000.0)
                    .collect();
                break;
            }
            if Instant::now() > deadline {
                bail!("only {} of {n} events arrived within 120 s", rx.count());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(Burst {
        pushes_per_s,
        latencies_ms,
    })
}
