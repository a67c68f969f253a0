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
    let meter = Meter::start(server);
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
    Ok(meter.stop(server))
}

/// The clock and the CPU counters of one timed operation.
struct Meter {
    cpu0: f64,
    client0: f64,
    t0: Instant,
}

impl Meter {
    fn start(server: &Server) -> Meter {
        Meter {
            cpu0: server.cpu(),
            client0: procstat::self_cpu_seconds(),
            t0: Instant::now(),
        }
    }

    fn stop(self, server: &Server) -> Sample {
        Sample {
            secs: self.t0.elapsed().as_secs_f64(),
            cpu: server.cpu() - self.cpu0,
            client_cpu: procstat::self_cpu_seconds() - self.client0,
        }
    }
}

/// Read a blob's body to the end, counting bytes, and check its size.
async fn drain<S, B, E>(mut body: S, d: &OciDescriptor) -> anyhow::Result<u64>
where
    S: futures::Stream<Item = Result<B, E>> + Unpin,
    B: AsRef<[u8]>,
    E: Into<anyhow::Error>,
{
    let mut n = 0u64;
    while let Some(chunk) = body.try_next().await.map_err(Into::into)? {
        n += chunk.as_ref().len() as u64;
    }
    if n != d.size as u64 {
        anyhow::bail!("{}: got {n} bytes, expected {}", d.digest, d.size);
    }
    Ok(n)
}

/// Pulls the manifest, the config and every layer (16 at a time, as
/// oci-client's own `pull` does), verifying each blob's digest and dropping
/// the bytes. Returns the bytes received.
pub async fn pull(client: &Client, server: &Server, r: &Reference) -> anyhow::Result<(Sample, u64)> {
    let auth = server.oci_auth();
    client.auth(r, &auth, RegistryOperation::Pull).await?;
    let meter = Meter::start(server);
    let (manifest, _digest) = client.pull_image_manifest(r, &auth).await?;
    let mut blobs: Vec<OciDescriptor> = manifest.layers.clone();
    blobs.push(manifest.config.clone());
    let sizes: Vec<u64> = futures::stream::iter(blobs)
        .map(|d| async move { drain(client.pull_blob_stream(r, &d).await?, &d).await })
        .buffer_unordered(16)
        .try_collect()
        .await
        .with_context(|| format!("pulling {r} from {}", server.kind))?;
    Ok((meter.stop(server), sizes.iter().sum()))
}

/// Pulls the same blobs with plain `GET`s (reqwest, 16 at a time) and counts
/// the bytes without hashing them: what the server and the loopback allow
/// when the client does no digest work. Returns the bytes received.
pub async fn pull_raw(server: &Server, repo: &str, blobs: &[OciDescriptor]) -> anyhow::Result<(Sample, u64)> {
    let http = reqwest::Client::new();
    let auth = server.authorization();
    let meter = Meter::start(server);
    let sizes: Vec<u64> = futures::stream::iter(blobs.iter().cloned())
        .map(|d| {
            let (http, auth) = (http.clone(), auth.clone());
            async move {
                let mut rb = http.get(format!("{}/v2/{repo}/blobs/{}", server.url(), d.digest));
                if let Some(a) = &auth {
                    rb = rb.header("authorization", a);
                }
                let resp = rb.send().await?.error_for_status()?;
                drain(resp.bytes_stream(), &d).await
            }
        })
        .buffer_unordered(16)
        .try_collect()
        .await
        .with_context(|| format!("raw pull of {repo} from {}", server.kind))?;
    Ok((meter.stop(server), sizes.iter().sum()))
}
