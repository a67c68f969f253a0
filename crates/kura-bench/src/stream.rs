//! One big layer streamed in (one chunked-encoding `PATCH`, as docker sends
//! it, then `PUT ?digest=`) and back out (`GET`), generated and hashed on the
//! fly: the client never holds more than a chunk. The server's peak RSS is
//! read from /proc before and after.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{bail, Context};
use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest, Sha256};

use crate::gen::Rng;
use crate::procstat;
use crate::server::Server;

const CHUNK: usize = 1 << 20;

pub struct StreamResult {
    pub push_secs: f64,
    pub pull_secs: f64,
    pub push_cpu: f64,
    pub pull_cpu: f64,
    /// RSS before the stream, KiB.
    pub rss_before_kib: u64,
    /// Peak RSS while the blob streamed in, KiB.
    pub peak_push_kib: u64,
    /// Peak RSS over the push and the pull, KiB.
    pub peak_kib: u64,
    /// Whether the peak was reset before the stream (else it is the peak since start).
    pub peak_reset: bool,
}

fn resolve(server: &Server, location: &str) -> anyhow::Result<reqwest::Url> {
    let base = reqwest::Url::parse(&format!("{}/", server.url()))?;
    Ok(base.join(location)?)
}

fn location(resp: &reqwest::Response) -> anyhow::Result<String> {
    Ok(resp
        .headers()
        .get("location")
        .context("no Location header")?
        .to_str()?
        .to_string())
}

pub async fn run(server: &Server, repo: &str, size: u64) -> anyhow::Result<StreamResult> {
    let http = reqwest::Client::new();
    let auth = server.authorization();
    let with_auth = |rb: reqwest::RequestBuilder| match &auth {
        Some(a) => rb.header("authorization", a),
        None => rb,
    };
    let pid = server.pid();
    let rss_before_kib = procstat::rss_kib(pid)?;
    let peak_reset = procstat::reset_peak_rss(pid);

    // Push: POST, one streamed PATCH, PUT ?digest=.
    let cpu0 = server.cpu();
    let t0 = Instant::now();
    let resp = with_auth(http.post(format!("{}/v2/{repo}/blobs/uploads/", server.url())))
        .send()
        .await?;
    if resp.status().as_u16() != 202 {
        bail!("{}: POST upload: {}", server.kind, resp.status());
    }
    let upload = resolve(server, &location(&resp)?)?;
    let hasher = Arc::new(Mutex::new(Sha256::new()));
    let body = {
        let hasher = hasher.clone();
        let mut rng = Rng::fresh();
        futures::stream::unfold(0u64, move |sent| {
            let hasher = hasher.clone();
            let n = (size - sent).min(CHUNK as u64) as usize;
            let chunk = (n > 0).then(|| {
                let b = rng.bytes(n);
                hasher.lock().expect("hasher").update(&b);
                b
            });
            async move { chunk.map(|b| (Ok::<Bytes, std::io::Error>(b), sent + n as u64)) }
        })
    };
    let resp = with_auth(http.patch(upload))
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await?;
    if resp.status().as_u16() != 202 {
        bail!(
            "{}: PATCH: {} {}",
            server.kind,
            resp.status(),
            resp.text().await.unwrap_or_default()
        );
    }
    let digest = format!(
        "sha256:{}",
        hex::encode(hasher.lock().expect("hasher").clone().finalize())
    );
    let mut finish = resolve(server, &location(&resp)?)?;
    finish.query_pairs_mut().append_pair("digest", &digest);
    let resp = with_auth(http.put(finish)).header("content-length", "0").send().await?;
    if resp.status().as_u16() != 201 {
        bail!(
            "{}: PUT ?digest=: {} {}",
            server.kind,
            resp.status(),
            resp.text().await.unwrap_or_default()
        );
    }
    let push_secs = t0.elapsed().as_secs_f64();
    let push_cpu = server.cpu() - cpu0;
    let peak_push_kib = procstat::peak_rss_kib(pid)?;

    // Pull: one GET, hashed as it arrives.
    let cpu0 = server.cpu();
    let t0 = Instant::now();
    let resp = with_auth(http.get(format!("{}/v2/{repo}/blobs/{digest}", server.url())))
        .send()
        .await?;
    if !resp.status().is_success() {
        bail!("{}: GET blob: {}", server.kind, resp.status());
    }
    let mut h = Sha256::new();
    let mut got = 0u64;
    let mut s = resp.bytes_stream();
    while let Some(chunk) = s.next().await {
        let chunk = chunk?;
        got += chunk.len() as u64;
        h.update(&chunk);
    }
    let pull_secs = t0.elapsed().as_secs_f64();
    let pull_cpu = server.cpu() - cpu0;
    let peak_kib = procstat::peak_rss_kib(pid)?;
    let got_digest = format!("sha256:{}", hex::encode(h.finalize()));
    if got != size || got_digest != digest {
        bail!(
            "{}: pulled {got} bytes {got_digest}, pushed {size} bytes {digest}",
            server.kind
        );
    }
    Ok(StreamResult {
        push_secs,
        pull_secs,
        push_cpu,
        pull_cpu,
        rss_before_kib,
        peak_push_kib,
        peak_kib,
        peak_reset,
    })
}
