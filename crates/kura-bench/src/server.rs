//! Starting and stopping the two registries, each on a free loopback port
//! with a fresh data directory.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::Engine;
use oci_client::secrets::RegistryAuth;

use crate::ecr::Ecr;
use crate::procstat;

pub const ACCOUNT_ID: &str = "123456789012";
pub const ACCESS_KEY_ID: &str = "AKIAKURABENCH0000001";
pub const SECRET_ACCESS_KEY: &str = "kuraBenchSecretKey/0123456789abcdefghijk";
pub const REGION: &str = "us-east-1";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Kura,
    Reference,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Kura => "kura",
            Kind::Reference => "reference",
        })
    }
}

/// Kura first on even rounds, the reference first on odd ones.
pub fn order(round: usize) -> [Kind; 2] {
    if round.is_multiple_of(2) {
        [Kind::Kura, Kind::Reference]
    } else {
        [Kind::Reference, Kind::Kura]
    }
}

#[derive(Clone)]
pub struct Binaries {
    pub kura: PathBuf,
    pub reference: PathBuf,
    /// Where the temporary data directories go.
    pub work_dir: PathBuf,
}

pub struct Server {
    pub kind: Kind,
    child: Child,
    /// `127.0.0.1:PORT`
    pub host: String,
    /// The registry password of user `AWS` (Kura only).
    pub token: Option<String>,
    pub ecr: Option<Ecr>,
    dir: Option<tempfile::TempDir>,
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

impl Server {
    pub async fn start(kind: Kind, bins: &Binaries) -> anyhow::Result<Server> {
        Self::start_with(kind, bins, &[]).await
    }

    /// [`Server::start`] with more `kura serve` arguments (ignored for the reference).
    pub async fn start_with(kind: Kind, bins: &Binaries, extra: &[&str]) -> anyhow::Result<Server> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("kura-bench-{kind}-"))
            .tempdir_in(&bins.work_dir)
            .with_context(|| format!("creating a data directory under {}", bins.work_dir.display()))?;
        let port = free_port()?;
        let host = format!("127.0.0.1:{port}");
        let data = dir.path().join("data");
        let log = std::fs::File::create(dir.path().join("server.log"))?;
        let mut cmd = match kind {
            Kind::Kura => {
                let mut c = Command::new(&bins.kura);
                c.arg("serve")
                    .arg("--listen")
                    .arg(&host)
                    .arg("--data-dir")
                    .arg(&data)
                    .args(["--gc-interval", "0s", "--lifecycle-interval", "0s"])
                    .args(extra)
                    .env("KURA_ACCOUNT_ID", ACCOUNT_ID)
                    .env("KURA_ROOT_ACCESS_KEY_ID", ACCESS_KEY_ID)
                    .env("KURA_ROOT_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
                    .env("KURA_REGION", REGION);
                c
            }
            Kind::Reference => {
                let cfg = dir.path().join("config.yml");
                std::fs::write(&cfg, reference_config(&data, &host))?;
                let mut c = Command::new(&bins.reference);
                c.arg("serve").arg(&cfg);
                c
            }
        };
        cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {kind} ({})", cmd.get_program().to_string_lossy()))?;
        let mut server = Server {
            kind,
            child,
            host: host.clone(),
            token: None,
            ecr: None,
            dir: Some(dir),
        };
        server.wait_ready().await?;
        if kind == Kind::Kura {
            let ecr = Ecr {
                http: reqwest::Client::new(),
                host,
                access_key_id: ACCESS_KEY_ID.into(),
                secret_access_key: SECRET_ACCESS_KEY.into(),
                region: REGION.into(),
            };
            ecr.allow_create_on_push()
                .await
                .context("CreateRepositoryCreationTemplate")?;
            server.token = Some(ecr.registry_token().await.context("GetAuthorizationToken")?);
            server.ecr = Some(ecr);
        }
        Ok(server)
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(1)).build()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!("{} exited early ({status}):\n{}", self.kind, self.log_tail());
            }
            // Any HTTP answer on /v2/ (200 without auth, 401 with) means it serves.
            if http.get(format!("{}/v2/", self.url())).send().await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("{} did not become ready:\n{}", self.kind, self.log_tail())
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.host)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn cpu(&self) -> f64 {
        procstat::cpu_seconds(self.pid()).unwrap_or(f64::NAN)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.as_ref().map(|d| d.path().join("data")).unwrap_or_default()
    }

    /// The `Authorization` header value for data-plane requests (None for the reference).
    pub fn authorization(&self) -> Option<String> {
        self.token.as_ref().map(|t| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("AWS:{t}"))
            )
        })
    }

    /// Credentials for oci-client. The reference runs without auth, but
    /// oci-client treats `Anonymous` as "not known yet" and probes `GET /v2/`
    /// before every request; a dummy bearer token (which Distribution ignores
    /// when no auth is configured) spares it those extra round trips, as
    /// Kura's cached Basic credentials do.
    pub fn oci_auth(&self) -> RegistryAuth {
        match &self.token {
            Some(t) => RegistryAuth::Basic("AWS".into(), t.clone()),
            None => RegistryAuth::Bearer("kura-bench-no-auth".into()),
        }
    }

    pub fn log_tail(&self) -> String {
        let Some(dir) = &self.dir else { return String::new() };
        let log = std::fs::read(dir.path().join("server.log")).unwrap_or_default();
        let start = log.len().saturating_sub(4000);
        String::from_utf8_lossy(&log[start..]).into_owned()
    }

    /// Stops the process (SIGTERM, then SIGKILL after 10 s) and removes its data.
    pub fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill(2) with our own child's pid.
            unsafe {
                libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::env::var_os("KURA_BENCH_KEEP").is_some() {
            if let Some(d) = self.dir.take() {
                eprintln!("keeping {}", d.keep().display());
            }
        }
        self.dir.take();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// Distribution's configuration: loopback only, filesystem storage in the temp
/// dir, deletes enabled, the in-memory blob descriptor cache of its stock
/// config, no auth (Debian's packaged config points htpasswd at a directory).
fn reference_config(data: &Path, host: &str) -> String {
    format!(
        "version: 0.1\n\
         log:\n  level: info\n  fields:\n    service: registry\n\
         storage:\n  cache:\n    blobdescriptor: inmemory\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
         http:\n  addr: {host}\n  headers:\n    X-Content-Type-Options: [nosniff]\n",
        data.display()
    )
}

/// `docker-registry --version`, e.g. `github.com/docker/distribution 2.8.2+ds1`.
pub fn reference_version(bin: &Path) -> String {
    Command::new(bin)
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}
