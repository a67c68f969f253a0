//! Push and pull whole images with the `oci-client` crate (a low-overhead
//! Rust client): time and server CPU of each.

use std::time::Instant;

use anyhow::{anyhow, Context};
use futures::{StreamExt, TryStreamExt};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::OciDescriptor;
use oci_client::{Client, Reference, RegistryOperation};

use crate::gen::Image;
use crate::procstat;
use crate::server::Server;

/// How blobs go up: one `POST` + one `PUT` with the whole blob (what docker,
/// containerd and skopeo do in effect: one request body per blob), or
/// oci-client's default of 4 MiB `PATCH` chunks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PushMode {
    Monolithic,
    Chunked,
}

pub fn client(mode: PushMode) -> Client {
    Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        use_monolithic_push: mode == PushMode::Monolithic,
        ..Default::default()
    })
}

/// Wall time and server CPU of one operation.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub secs: f64,
    /// Server CPU-seconds.
    pub cpu: f64,
    /// Client (this process) CPU-seconds.
    pub client_cpu: f64,
}

pub fn reference(server: &Server, repo: &str, tag: &str) -> anyhow::Result<Reference> {
    format!("{}/{repo}:{tag}", server.host)
        .parse()
        .map_err(|e| anyhow!("bad reference: {e}"))
}

pub async fn push(client: &Client, server: &Server, r: &Reference, image: &Image) -> anyhow::Result<Sample> {
    let auth = server.oci_auth();
    // Authenticate (the /v2/ probe) before the clock starts.
    client.auth(r, &auth, RegistryOperation::Push).await?;
    let cpu0 = server.cpu();
    let client0 = procstat::self_cpu_seconds();
    let t0 = Instant::now();
    client
        .push(
            r,
            &image.layers,
            image.config.clone(),
            &auth,
            Some(image.manifest.clone()),
        )
        .await
        .with_context(|| format!("pushing {r} to {}", server.kind))?;
    let secs = t0.elapsed().as_secs_f64();
    Ok(Sample {
        secs,
        cpu: server.cpu() - cpu0,
        client_cpu: procstat::self_cpu_seconds() - client0,
    })
}

/// Pulls the manifest, the config and every layer (16 at a time, as
/// oci-client's own `pull` does), verifying each blob's digest and dropping
/// the bytes. Returns the bytes received.
pub async fn pull(client: &Client, server: &Server, r: &Reference) -> anyhow::Result<(Sample, u64)> {
    let auth = server.oci_auth();
    client.auth(r, &auth, RegistryOperation::Pull).await?;
    let cpu0 = server.cpu();
    let client0 = procstat::self_cpu_seconds();
    let t0 = Instant::now();
    let (manifest, _digest) = client.pull_image_manifest(r, &auth).await?;
    let mut blobs: Vec<OciDescriptor> = manifest.layers.clone();
    blobs.push(manifest.config.clone());
    let sizes: Vec<u64> = futures::stream::iter(blobs)
        .map(|d| async move {
            let mut s = client.pull_blob_stream(r, &d).await?;
            let mut n = 0u64;
            while let Some(chunk) = s.try_next().await? {
                n += chunk.len() as u64;
            }
            if n != d.size as u64 {
                anyhow::bail!("{}: got {n} bytes, expected {}", d.digest, d.size);
            }
            Ok(n)
        })
        .buffer_unordered(16)
        .try_collect()
        .await
        .with_context(|| format!("pulling {r} from {}", server.kind))?;
    let secs = t0.elapsed().as_secs_f64();
    Ok((
        Sample {
            secs,
            cpu: server.cpu() - cpu0,
            client_cpu: procstat::self_cpu_seconds() - client0,
        },
        sizes.iter().sum(),
    ))
}

/// Pulls the same blobs with plain `GET`s (reqwest, 16 at a time) and counts
/// the bytes without hashing them: what the server and the loopback allow
/// when the client does no digest work. Returns the bytes received.
pub async fn pull_raw(server: &Server, repo: &str, blobs: &[OciDescriptor]) -> anyhow::Result<(Sample, u64)> {
    let http = reqwest::Client::new();
    let auth = server.authorization();
    let cpu0 = server.cpu();
    let client0 = procstat::self_cpu_seconds();
    let t0 = Instant::now();
    let sizes: Vec<u64> = futures::stream::iter(blobs.iter().cloned())
        .map(|d| {
            let (http, auth) = (http.clone(), auth.clone());
            async move {
                let mut rb = http.get(format!("{}/v2/{repo}/blobs/{}", server.url(), d.digest));
                if let Some(a) = &auth {
                    rb = rb.header("authorization", a);
                }
                let resp = rb.send().await?.error_for_status()?;
                let mut body = resp.bytes_stream();
                let mut n = 0u64;
                while let Some(chunk) = body.try_next().await? {
                    n += chunk.len() as u64;
                }
                if n != d.size as u64 {
                    anyhow::bail!("{}: got {n} bytes, expected {}", d.digest, d.size);
                }
                Ok(n)
            }
        })
        .buffer_unordered(16)
        .try_collect()
        .await
        .with_context(|| format!("raw pull of {repo} from {}", server.kind))?;
    let secs = t0.elapsed().as_secs_f64();
    Ok((
        Sample {
            secs,
            cpu: server.cpu() - cpu0,
            client_cpu: procstat::self_cpu_seconds() - client0,
        },
        sizes.iter().sum(),
    ))
}
