//! Listing latency with many images in one repository: populate quickly
//! (one config and one layer, then many small distinct manifests, each
//! tagged), then time every page of `tags/list` (both registries) and of
//! ECR `ListImages` / `DescribeImages` (Kura) while walking the whole list.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::{StreamExt, TryStreamExt};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::gen::Rng;
use crate::load::percentile;
use crate::server::Server;

pub const REPO: &str = "bench/scale";
pub const PAGE: usize = 100;
const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

pub struct Repo {
    config: (String, usize),
    layer: (String, usize),
    nonce: String,
    pub count: usize,
}

fn with_auth(server: &Server, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    match server.authorization() {
        Some(a) => rb.header("authorization", a),
        None => rb,
    }
}

/// Monolithic upload (POST, then PUT ?digest= with the body); returns the digest.
pub async fn put_blob(http: &reqwest::Client, server: &Server, repo: &str, data: Vec<u8>) -> anyhow::Result<String> {
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&data)));
    let resp = with_auth(server, http.post(format!("{}/v2/{repo}/blobs/uploads/", server.url())))
        .send()
        .await?;
    if resp.status().as_u16() != 202 {
        bail!("POST upload: {}", resp.status());
    }
    let loc = resp
        .headers()
        .get("location")
        .context("no Location")?
        .to_str()?
        .to_string();
    let mut url = reqwest::Url::parse(&format!("{}/", server.url()))?.join(&loc)?;
    url.query_pairs_mut().append_pair("digest", &digest);
    let resp = with_auth(server, http.put(url))
        .header("content-type", "application/octet-stream")
        .body(data)
        .send()
        .await?;
    if resp.status().as_u16() != 201 {
        bail!("PUT blob: {} {}", resp.status(), resp.text().await.unwrap_or_default());
    }
    Ok(digest)
}

impl Repo {
    pub async fn create(http: &reqwest::Client, server: &Server) -> anyhow::Result<Repo> {
        let mut rng = Rng::fresh();
        let config = serde_json::to_vec(&json!({"architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []}, "config": {"Labels": {"n": rng.next_u64().to_string()}}}))?;
        let layer = rng.bytes(1024).to_vec();
        let (cl, ll) = (config.len(), layer.len());
        let config = (put_blob(http, server, REPO, config).await?, cl);
        let layer = (put_blob(http, server, REPO, layer).await?, ll);
        Ok(Repo {
            config,
            layer,
            nonce: format!("{:016x}", rng.next_u64()),
            count: 0,
        })
    }

    fn manifest(&self, i: usize) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": self.config.0, "size": self.config.1},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": self.layer.0, "size": self.layer.1}],
            "annotations": {"kura.bench.image": format!("{i}"), "kura.bench.run": self.nonce},
        }))
        .expect("json")
    }

    /// PUTs manifests until the repository holds `target` tagged images
    /// (8 requests in flight); returns manifests per second.
    pub async fn grow(&mut self, http: &reqwest::Client, server: &Server, target: usize) -> anyhow::Result<f64> {
        if target <= self.count {
            return Ok(f64::NAN);
        }
        let t0 = Instant::now();
        let this = &*self;
        futures::stream::iter(this.count..target)
            .map(|i| async move {
                let resp = with_auth(
                    server,
                    http.put(format!("{}/v2/{REPO}/manifests/{}", server.url(), tag(i))),
                )
                .header("content-type", MANIFEST_TYPE)
                .body(this.manifest(i))
                .send()
                .await?;
                if resp.status().as_u16() != 201 {
                    bail!(
                        "PUT manifest {i}: {} {}",
                        resp.status(),
                        resp.text().await.unwrap_or_default()
                    );
                }
                anyhow::Ok(())
            })
            .buffer_unordered(8)
            .try_collect::<()>()
            .await
            .with_context(|| format!("populating {} on {}", REPO, server.kind))?;
        let rate = (target - self.count) as f64 / t0.elapsed().as_secs_f64();
        self.count = target;
        Ok(rate)
    }
}

pub fn tag(i: usize) -> String {
    format!("t{i:07}")
}

/// Latencies of listing pages while walking the whole list, repeated until
/// `min_samples` pages were timed or the time budget is spent.
pub struct Walk {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub pages: usize,
    /// Items the first complete walk returned (None: no walk completed).
    pub items: Option<usize>,
    /// Largest number of items in one response.
    pub max_page_items: usize,
}

fn summarize(mut lat: Vec<f64>, items: Option<usize>, max_page_items: usize) -> Walk {
    lat.sort_by(f64::total_cmp);
    Walk {
        p50_ms: percentile(&lat, 0.5) * 1e3,
        p99_ms: percentile(&lat, 0.99) * 1e3,
        pages: lat.len(),
        items,
        max_page_items,
    }
}

/// `GET /v2/<name>/tags/list?n=100&last=…`, following pages until one is short.
pub async fn walk_tags(server: &Server, budget: Duration, min_samples: usize) -> anyhow::Result<Walk> {
    let http = reqwest::Client::new();
    let t0 = Instant::now();
    let (mut lat, mut items, mut max_items) = (Vec::new(), None, 0);
    'walks: loop {
        let (mut last, mut seen): (Option<String>, usize) = (None, 0);
        loop {
            let mut url = format!("{}/v2/{REPO}/tags/list?n={PAGE}", server.url());
            if let Some(l) = &last {
                url.push_str(&format!("&last={l}"));
            }
            let rb = with_auth(server, http.get(url));
            let t = Instant::now();
            let resp = rb.send().await?;
            let status = resp.status();
            let more = resp.headers().contains_key("link");
            let body = resp.bytes().await?;
            lat.push(t.elapsed().as_secs_f64());
            if !status.is_success() {
                bail!("{}: tags/list: {status}", server.kind);
            }
            let v: Value = serde_json::from_slice(&body)?;
            let tags = v["tags"].as_array().map(Vec::as_slice).unwrap_or_default();
            seen += tags.len();
            max_items = max_items.max(tags.len());
            // A registry without pagination answers everything at once, without a Link.
            if !more || tags.len() != PAGE {
                items.get_or_insert(seen);
                break;
            }
            last = tags.last().and_then(Value::as_str).map(str::to_string);
            if t0.elapsed() > budget && lat.len() >= 10 {
                break 'walks;
            }
        }
        if t0.elapsed() > budget || lat.len() >= min_samples {
            break;
        }
    }
    Ok(summarize(lat, items, max_items))
}

/// ECR `ListImages` or `DescribeImages` with maxResults 100, following nextToken.
pub async fn walk_ecr(server: &Server, op: &str, budget: Duration, min_samples: usize) -> anyhow::Result<Walk> {
    let ecr = server.ecr.as_ref().context("ECR API: Kura only")?;
    let key = if op == "ListImages" { "imageIds" } else { "imageDetails" };
    let t0 = Instant::now();
    let (mut lat, mut items, mut max_items) = (Vec::new(), None, 0);
    'walks: loop {
        let (mut token, mut seen): (Option<String>, usize) = (None, 0);
        loop {
            let mut body = json!({"repositoryName": REPO, "maxResults": PAGE});
            if let Some(t) = &token {
                body["nextToken"] = json!(t);
            }
            let (v, took) = ecr.call_timed(op, &body).await?;
            lat.push(took.as_secs_f64());
            let n = v[key].as_array().map(Vec::len).unwrap_or(0);
            seen += n;
            max_items = max_items.max(n);
            match v["nextToken"].as_str() {
                Some(t) => token = Some(t.to_string()),
                None => {
                    items.get_or_insert(seen);
                    break;
                }
            }
            if t0.elapsed() > budget && lat.len() >= 10 {
                break 'walks;
            }
        }
        if t0.elapsed() > budget || lat.len() >= min_samples {
            break;
        }
    }
    Ok(summarize(lat, items, max_items))
}
