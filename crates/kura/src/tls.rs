//! Built-in TLS (`kura serve --tls-cert FILE --tls-key FILE`): rustls
//! terminates TLS on every accepted connection before hyper sees it
//! (`transport.rs`), and ALPN offers `h2` and `http/1.1`, so clients that
//! speak HTTP/2 get it.
//!
//! - The certificate chain and key are PEM files (the chain: leaf first,
//!   then intermediates; the key: PKCS#8, PKCS#1 RSA or SEC1 EC). Anything
//!   wrong with them (missing, unreadable, no certificate, no key, a key that
//!   is not the certificate's) stops `kura serve` at start with a message
//!   naming the file.
//! - Reload: on SIGHUP, and when either file changes (checked every
//!   `--tls-reload-interval`; a change is a new modification time, size or
//!   inode, so a Kubernetes secret's symlink swap counts). The new pair is
//!   loaded and checked first, then swapped in behind the certificate
//!   resolver: handshakes from then on present it, connections already open
//!   keep going on the one they negotiated. A pair that does not load is
//!   logged and the current one stays.
//! - mTLS (`--tls-client-ca FILE`): every client must present a certificate
//!   that chains to one of the CA certificates in the file; the file is
//!   reloaded with the certificate (a change of it also triggers a reload).
//! - Every request of a TLS connection carries
//!   [`kura_ecr::client::TlsConnection`], so the URLs handed back to the
//!   client (token realm, download URLs, `proxyEndpoint`) say `https`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, bail, Context};
use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::Digest;
use tokio_rustls::TlsAcceptor;

/// `kura serve`'s TLS flags.
#[derive(clap::Args, Clone, Debug)]
pub struct TlsFlags {
    /// Serve HTTPS with this PEM certificate chain (leaf first, then any
    /// intermediates); needs --tls-key. Reloaded on SIGHUP and when the file changes.
    #[arg(long, env = "KURA_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert (PKCS#8, RSA or EC).
    #[arg(long, env = "KURA_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates (mTLS) issued by a CA in this PEM file (reloaded with the certificate).
    #[arg(long, env = "KURA_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// How often the certificate, key and client CA files are checked for changes
    /// ("0s": only SIGHUP reloads them).
    #[arg(long, env = "KURA_TLS_RELOAD_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub tls_reload_interval: Duration,
}

/// The server's TLS: its configuration (swapped when the client CA file is
/// reloaded) and the certificate (swapped behind the resolver).
pub struct Tls {
    config: ArcSwap<ServerConfig>,
    resolver: Arc<Resolver>,
    provider: Arc<CryptoProvider>,
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
    reload_every: Duration,
}

/// Hands every handshake the current certificate.
#[derive(Debug)]
struct Resolver(ArcSwap<CertifiedKey>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

fn some_path(p: &Option<PathBuf>) -> Option<&Path> {
    p.as_deref().filter(|p| !p.as_os_str().is_empty())
}

impl Tls {
    /// The TLS the flags ask for: `None` when no certificate is configured;
    /// an error that names the file when anything is wrong.
    pub fn load(flags: &TlsFlags) -> anyhow::Result<Option<Arc<Tls>>> {
        let (cert, key) = match (some_path(&flags.tls_cert), some_path(&flags.tls_key)) {
            (None, None) => {
                if some_path(&flags.tls_client_ca).is_some() {
                    bail!("--tls-client-ca needs --tls-cert and --tls-key (client certificates are checked over TLS)");
                }
                return Ok(None);
            }
            (Some(_), None) => bail!("--tls-cert needs --tls-key (KURA_TLS_KEY): the certificate's private key"),
            (None, Some(_)) => bail!("--tls-key needs --tls-cert (KURA_TLS_CERT): the certificate chain"),
            (Some(c), Some(k)) => (c.to_path_buf(), k.to_path_buf()),
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certified = load_pair(&cert, &key, &provider)?;
        let resolver = Arc::new(Resolver(ArcSwap::from_pointee(certified)));
        let client_ca = some_path(&flags.tls_client_ca).map(Path::to_path_buf);
        let config = server_config(&provider, &resolver, client_ca.as_deref())?;
        let tls = Tls {
            config: ArcSwap::from_pointee(config),
            resolver,
            provider,
            cert,
            key,
            client_ca,
            reload_every: flags.tls_reload_interval,
        };
        tracing::info!(
            cert = %tls.cert.display(),
            fingerprint = %fingerprint(&tls.resolver.0.load()),
            client_ca = ?tls.client_ca.as_deref().map(Path::display),
            "serving HTTPS (HTTP/2 and HTTP/1.1 by ALPN)"
        );
        Ok(Some(Arc::new(tls)))
    }

    /// The acceptor for the next connection (the current configuration).
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.load_full())
    }

    /// Load the files again and, when they all load (a matching pair, and
    /// the client CA file if there is one), use them from the next handshake
    /// on.
    pub fn reload(&self) -> anyhow::Result<()> {
        let certified = load_pair(&self.cert, &self.key, &self.provider)?;
        if let Some(ca) = &self.client_ca {
            // Built before anything is swapped: a bad CA file changes nothing.
            let config = server_config(&self.provider, &self.resolver, Some(ca))?;
            self.config.store(Arc::new(config));
        }
        let print = fingerprint(&certified);
        self.resolver.0.store(Arc::new(certified));
        tracing::info!(cert = %self.cert.display(), fingerprint = %print, "reloaded the TLS certificate");
        Ok(())
    }

    /// Reload on SIGHUP and when the files change, for as long as the
    /// process runs.
    pub fn watch(self: &Arc<Self>) {
        let tls = self.clone();
        tokio::spawn(async move {
            let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGHUP: the TLS certificate reloads only when its files change");
                    None
                }
            };
            let mut seen = tls.stamp();
            let every = (!tls.reload_every.is_zero()).then_some(tls.reload_every);
            loop {
                let hangup = async {
                    match hup.as_mut() {
                        Some(h) => {
                            h.recv().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                let tick = async {
                    match every {
                        Some(d) => tokio::time::sleep(d).await,
                        None => std::future::pending::<()>().await,
                    }
                };
                let signalled = tokio::select! {
                    () = hangup => true,
                    () = tick => false,
                };
                let now = tls.stamp();
                if !signalled && now == seen {
                    continue;
                }
                seen = now;
                if let Err(e) = tls.reload() {
                    tracing::error!(
                        error = %format!("{e:#}"),
                        "the TLS certificate was not reloaded; the current one stays in use"
                    );
                }
            }
        });
    }

    /// What a change of any of the files changes.
    fn stamp(&self) -> [Option<FileStamp>; 3] {
        [
            FileStamp::of(&self.cert),
            FileStamp::of(&self.key),
            self.client_ca.as_deref().and_then(FileStamp::of),
        ]
    }
}

#[derive(PartialEq, Eq, Clone, Copy, Debug)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    dev: u64,
    ino: u64,
}

impl FileStamp {
    /// The file's identity and state, following symlinks.
    fn of(path: &Path) -> Option<FileStamp> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            modified: m.modified().ok(),
            len: m.len(),
            dev: m.dev(),
            ino: m.ino(),
        })
    }
}

/// The server configuration: TLS 1.2 and 1.3, ALPN h2 then http/1.1, the
/// certificate from `resolver`, client certificates checked against
/// `client_ca` when there is one.
fn server_config(
    provider: &Arc<CryptoProvider>,
    resolver: &Arc<Resolver>,
    client_ca: Option<&Path>,
) -> anyhow::Result<ServerConfig> {
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("configuring TLS")?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let roots = load_roots(ca)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .with_context(|| format!("the client CA file {}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(resolver.clone());
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The certificate chain and its key, checked to belong together.
fn load_pair(cert: &Path, key: &Path, provider: &CryptoProvider) -> anyhow::Result<CertifiedKey> {
    let chain = load_certs(cert).with_context(|| format!("the TLS certificate file {}", cert.display()))?;
    let der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| pem_error(e, "a private key (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)"))
        .with_context(|| format!("the TLS key file {}", key.display()))?;
    CertifiedKey::from_der(chain, der, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => anyhow!(
            "the private key in {} does not belong to the certificate in {}",
            key.display(),
            cert.display()
        ),
        e => anyhow!(
            "the TLS certificate {} and key {} cannot be used: {e}",
            cert.display(),
            key.display()
        ),
    })
}

/// Every CERTIFICATE block of a PEM file; at least one.
fn load_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(e, "a certificate"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(e, "a certificate"))?;
    if certs.is_empty() {
        bail!("no PEM block with a certificate in it");
    }
    Ok(certs)
}

/// The client CA certificates (mTLS).
fn load_roots(path: &Path) -> anyhow::Result<RootCertStore> {
    let certs = load_certs(path).with_context(|| format!("the client CA file {}", path.display()))?;
    let mut roots = RootCertStore::empty();
    for c in certs {
        roots
            .add(c)
            .map_err(|e| anyhow!("the client CA file {}: {e}", path.display()))?;
    }
    Ok(roots)
}

fn pem_error(e: rustls_pki_types::pem::Error, what: &str) -> anyhow::Error {
    match e {
        rustls_pki_types::pem::Error::Io(io) => anyhow!("cannot read it: {io}"),
        rustls_pki_types::pem::Error::NoItemsFound => anyhow!("no PEM block with {what} in it"),
        e => anyhow!("not valid PEM: {e}"),
    }
}

/// The leaf certificate's SHA-256 fingerprint (as `openssl x509 -fingerprint
/// -sha256` prints it, without the colons), for the logs.
fn fingerprint(k: &CertifiedKey) -> String {
    k.cert
        .first()
        .map(|c| hex::encode(sha2::Sha256::digest(c.as_ref())))
        .unwrap_or_default()
}

/// Plain HTTP is for loopback (or behind a TLS-terminating proxy): say so
/// when it listens anywhere else.
pub fn warn_if_cleartext(listen: SocketAddr, tls: bool) {
    if !tls && !listen.ip().is_loopback() {
        tracing::warn!(
            listen = %listen,
            "serving plain HTTP on a non-loopback address: registry passwords and tokens cross the network \
             unencrypted; use --tls-cert/--tls-key, or a TLS-terminating proxy (--trusted-proxies)"
        );
    }
}
