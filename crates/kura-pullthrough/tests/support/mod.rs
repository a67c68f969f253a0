//! Real upstreams for the tests: Debian's `docker-registry` (Distribution
//! 2.8) open, with htpasswd Basic, with token authentication (a tiny token
//! server here signs the JWTs with a key made by `openssl`), and over TLS
//! with a CA of the test's own; plus a seeded image.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use kura_oci::Digest;

/// Whether the tools the tests need are here; a clear message when not.
pub fn have(tool: &str) -> bool {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIPPED: {tool} is not installed (.ci/install-deps.sh installs it)");
    }
    ok
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running docker-registry; killed on drop.
pub struct Dist {
    child: Child,
    pub port: u16,
    pub base: String,
    _config: tempfile::TempDir,
}

impl Drop for Dist {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start docker-registry over `storage` with `auth` (YAML under `auth:`, or
/// empty) and, if given, TLS (certificate, key).
pub async fn registry(storage: &Path, auth: &str, tls: Option<(&Path, &Path)>) -> Dist {
    let config = tempfile::tempdir().unwrap();
    let port = free_port();
    let tls_yaml = match tls {
        Some((cert, key)) => format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            cert.display(),
            key.display()
        ),
        None => String::new(),
    };
    let auth_yaml = if auth.is_empty() {
        String::new()
    } else {
        format!("auth:\n{auth}")
    };
    let yaml = format!(
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{tls_yaml}{auth_yaml}",
        storage.display()
    );
    let path = config.path().join("config.yml");
    std::fs::write(&path, yaml).unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker-registry starts");
    let scheme = if tls.is_some() { "https" } else { "http" };
    let d = Dist {
        child,
        port,
        base: format!("{scheme}://127.0.0.1:{port}"),
        _config: config,
    };
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("docker-registry did not listen on {port}");
}

/// An image pushed to an open registry.
#[derive(Clone)]
pub struct Image {
    pub manifest: Vec<u8>,
    pub digest: String,
    pub config: Vec<u8>,
    pub layer: Vec<u8>,
    pub layer_digest: String,
}

pub fn image(seed: &str) -> Image {
    let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":"{seed}"}}"#).into_bytes();
    let layer: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(31) ^ seed.len() as u32) as u8)
        .collect();
    let cd = Digest::sha256(&config).to_string();
    let ld = Digest::sha256(&layer).to_string();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{ld}","size":{}}}]}}"#,
        config.len(),
        layer.len()
    )
    .into_bytes();
    Image {
        digest: Digest::sha256(&manifest).to_string(),
        manifest,
        config,
        layer,
        layer_digest: ld,
    }
}

/// Push `img` as `repo:tag` to an open registry at `base`.
pub async fn push(base: &str, repo: &str, tag: &str, img: &Image) {
    let http = reqwest::Client::new();
    for blob in [&img.config, &img.layer] {
        let d = Digest::sha256(blob).to_string();
        let r = http
            .post(format!("{base}/v2/{repo}/blobs/uploads/"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "start upload");
        let loc = r.headers()["location"].to_str().unwrap().to_string();
        let loc = if loc.starts_with('/') {
            format!("{base}{loc}")
        } else {
            loc
        };
        let sep = if loc.contains('?') { '&' } else { '?' };
        let r = http
            .put(format!("{loc}{sep}digest={d}"))
            .body(blob.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "finish upload");
    }
    let r = http
        .put(format!("{base}/v2/{repo}/manifests/{tag}"))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(img.manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "put manifest");
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `htpasswd` (bcrypt) file with one user.
pub fn htpasswd(dir: &Path, user: &str, password: &str) -> PathBuf {
    let out = Command::new("htpasswd")
        .args(["-nbB", user, password])
        .output()
        .unwrap();
    assert!(out.status.success());
    let path = dir.join("htpasswd");
    std::fs::write(&path, out.stdout).unwrap();
    path
}

/// A CA and a server certificate for 127.0.0.1 it signed: (ca, cert, key).
pub fn tls_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-subj",
            "/CN=kura-test-ca",
            "-days",
            "2",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "srv.key",
            "-out",
            "srv.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "srv.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "srv.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
    (dir.join("ca.pem"), dir.join("srv.pem"), dir.join("srv.key"))
}

/// The token server's record of what it was asked.
#[derive(Default)]
pub struct TokenLog {
    pub issued: AtomicUsize,
    pub refused: AtomicUsize,
    pub scopes: Mutex<Vec<String>>,
}

pub struct TokenServer {
    pub realm: String,
    pub cert: PathBuf,
    pub log: Arc<TokenLog>,
    _dir: tempfile::TempDir,
}

pub const TOKEN_SERVICE: &str = "kura-test-registry";
pub const TOKEN_ISSUER: &str = "kura-test-issuer";

fn b64url(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// A token server that issues RS256 JWTs (with the certificate in `x5c`) to
/// `user`:`password` for whatever scope is asked.
pub async fn token_server(user: &str, password: &str) -> TokenServer {
    let dir = tempfile::tempdir().unwrap();
    openssl(
        dir.path(),
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
            "-subj",
            "/CN=kura-test-token",
            "-days",
            "2",
        ],
    );
    openssl(
        dir.path(),
        &["x509", "-in", "cert.pem", "-outform", "DER", "-out", "cert.der"],
    );
    let der = std::fs::read(dir.path().join("cert.der")).unwrap();
    let x5c = base64::engine::general_purpose::STANDARD.encode(der);
    let key = dir.path().join("key.pem");
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    );
    let log = Arc::new(TokenLog::default());
    let state = (log.clone(), expected, x5c, key);
    let app = axum::Router::new()
        .route(
            "/token",
            axum::routing::get(
                |axum::extract::State((log, expected, x5c, key)): axum::extract::State<(
                    Arc<TokenLog>,
                    String,
                    String,
                    PathBuf,
                )>,
                 headers: axum::http::HeaderMap,
                 axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>| async move {
                    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
                    if auth != Some(expected.as_str()) {
                        log.refused.fetch_add(1, Ordering::SeqCst);
                        return (axum::http::StatusCode::UNAUTHORIZED, "{}".to_string());
                    }
                    let scope = q.get("scope").cloned().unwrap_or_default();
                    log.scopes.lock().unwrap().push(scope.clone());
                    let access: Vec<serde_json::Value> = scope
                        .split(' ')
                        .filter_map(|s| {
                            let mut p = s.splitn(3, ':');
                            let (t, n, a) = (p.next()?, p.next()?, p.next()?);
                            Some(serde_json::json!({"type": t, "name": n, "actions": a.split(',').collect::<Vec<_>>()}))
                        })
                        .collect();
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_secs();
                    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [x5c]});
                    let claims = serde_json::json!({
                        "iss": TOKEN_ISSUER, "sub": "alice", "aud": TOKEN_SERVICE,
                        "exp": now + 300, "nbf": now - 10, "iat": now,
                        "jti": format!("t{}", log.issued.load(Ordering::SeqCst)), "access": access,
                    });
                    let input = format!(
                        "{}.{}",
                        b64url(header.to_string().as_bytes()),
                        b64url(claims.to_string().as_bytes())
                    );
                    let sig = tokio::task::spawn_blocking(move || {
                        use std::io::Write;
                        let mut child = Command::new("openssl")
                            .args(["dgst", "-sha256", "-sign"])
                            .arg(&key)
                            .stdin(Stdio::piped())
                            .stdout(Stdio::piped())
                            .spawn()
                            .unwrap();
                        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
                        let out = child.wait_with_output().unwrap();
                        (input, out.stdout)
                    })
                    .await
                    .unwrap();
                    log.issued.fetch_add(1, Ordering::SeqCst);
                    let token = format!("{}.{}", sig.0, b64url(&sig.1));
                    (
                        axum::http::StatusCode::OK,
                        serde_json::json!({"token": token, "expires_in": 300}).to_string(),
                    )
                },
            ),
        )
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    TokenServer {
        realm: format!("http://127.0.0.1:{port}/token"),
        cert: dir.path().join("cert.pem"),
        log,
        _dir: dir,
    }
}

impl TokenServer {
    /// The `auth:` section of a registry that trusts this server.
    pub fn auth_yaml(&self) -> String {
        format!(
            "  token:\n    realm: {}\n    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
            self.realm,
            self.cert.display()
        )
    }
}
