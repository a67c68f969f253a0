//! The upstream registry client: the distribution API's manifest and blob
//! reads with the registry's authentication (anonymous, Basic, the Bearer
//! token flow with scopes, or ECR's token exchange with an access key), over
//! rustls with the system's roots plus an optional CA bundle, with bounded
//! connect, first-byte and idle-body timeouts.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::StreamExt;
use kura_oci::{Digest, Reference, RepoName};
use kura_registry::upstream::{UpstreamBlob, UpstreamError, UpstreamManifest, UpstreamManifestHead, UpstreamRepo};
use reqwest::{Method, StatusCode};
use sha2::Digest as _;

use crate::challenge::{parse_challenge, Challenge};

/// Every manifest media type Kura stores, in the order a client prefers them.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.docker.distribution.manifest.v2+json";

const MANIFEST_TYPES: [&str; 4] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// The client's limits and trust.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Connecting (TCP and TLS).
    pub connect_timeout: Duration,
    /// From sending a request to the response's headers.
    pub response_timeout: Duration,
    /// Between two chunks of a response body.
    pub idle_timeout: Duration,
    /// PEM certificates trusted besides the system's roots (private upstreams).
    pub ca_bundle: Option<PathBuf>,
    /// The largest manifest taken from an upstream (ECR's limit: 4 MiB).
    pub max_manifest_bytes: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            connect_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            ca_bundle: None,
            max_manifest_bytes: 4 * 1024 * 1024,
        }
    }
}

/// How an upstream is authenticated to.
#[derive(Clone)]
pub enum Auth {
    /// No credentials (public registries; anonymous tokens).
    Anonymous,
    /// A user name and password or token: Basic, or given to the token service.
    Basic {
        /// The user name.
        username: String,
        /// The password or access token.
        password: String,
    },
    /// Another ECR-compatible registry: `GetAuthorizationToken` signed with
    /// this access key at `api_base`, then Basic `AWS:<token>`.
    Ecr {
        /// The access key id.
        access_key_id: String,
        /// Its secret.
        secret_access_key: String,
        /// The region the exchange is signed for.
        region: String,
        /// `scheme://authority` of the ECR API.
        api_base: String,
    },
}

impl Auth {
    /// A key naming these credentials in the token cache (never the secret itself).
    fn identity(&self) -> String {
        let fp = |s: &str| hex::encode(&sha2::Sha256::digest(s.as_bytes())[..8]);
        match self {
            Auth::Anonymous => "-".into(),
            Auth::Basic { username, password } => format!("basic:{username}:{}", fp(password)),
            Auth::Ecr {
                access_key_id,
                secret_access_key,
                ..
            } => format!("ecr:{access_key_id}:{}", fp(secret_access_key)),
        }
    }
}

/// One upstream registry and how to authenticate to it.
pub struct Endpoint {
    /// `scheme://authority` of its distribution API.
    pub base: String,
    /// Its credentials.
    pub auth: Auth,
}

impl Endpoint {
    fn authority(&self) -> &str {
        self.base.split_once("://").map_or(self.base.as_str(), |(_, a)| a)
    }
}

struct Cached {
    header: String,
    until: Instant,
}

/// The HTTP client every upstream request of this node goes through (one
/// connection pool, one token cache).
pub struct UpstreamClient {
    http: reqwest::Client,
    config: ClientConfig,
    /// Authorization header values by (endpoint, credentials, scope).
    tokens: Mutex<HashMap<String, Cached>>,
    /// Endpoints (with credentials) that asked for Basic.
    basic: Mutex<HashMap<String, ()>>,
    /// The Bearer challenge (realm, service) each endpoint answered with:
    /// later requests fetch their token first instead of collecting a 401.
    realms: Mutex<HashMap<String, (String, Option<String>)>>,
    /// One token fetch at a time per token key: a burst of requests for one
    /// repository costs the token service one request.
    flights: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

fn unavailable(what: &str, why: impl std::fmt::Display) -> UpstreamError {
    UpstreamError::Unavailable {
        message: format!("upstream {what}: {why}"),
    }
}

fn invalid(what: &str, why: impl std::fmt::Display) -> UpstreamError {
    UpstreamError::Invalid {
        message: format!("upstream {what}: {why}"),
    }
}

fn denied(what: &str, why: impl std::fmt::Display) -> UpstreamError {
    UpstreamError::Denied {
        message: format!("upstream {what}: {why}"),
    }
}

/// `Retry-After` in seconds (delta-seconds or an HTTP date).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(secs);
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(SystemTime::now()).map_or(0, |d| d.as_secs()))
}

/// An upstream's answer as an error, for statuses that are not success or 404.
fn status_error(what: &str, resp: &reqwest::Response) -> UpstreamError {
    let status = resp.status();
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => denied(what, format!("access denied ({status})")),
        StatusCode::TOO_MANY_REQUESTS => UpstreamError::TooManyRequests {
            message: format!("upstream {what}: too many requests (429)"),
            retry_after_secs: retry_after(resp.headers()),
        },
        s if s.is_server_error() => unavailable(what, format!("answered {status}")),
        _ => invalid(what, format!("answered {status}")),
    }
}

fn send_error(what: &str, e: reqwest::Error) -> UpstreamError {
    if e.is_timeout() {
        unavailable(what, "timed out")
    } else if e.is_connect() {
        unavailable(what, "cannot connect")
    } else {
        unavailable(what, format!("request failed: {e}"))
    }
}

impl UpstreamClient {
    /// A client with `config`'s limits; fails when the CA bundle cannot be read.
    pub fn new(config: ClientConfig) -> Result<Self, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::limited(5))
            .user_agent(concat!("kura-pullthrough/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &config.ca_bundle {
            let pem = std::fs::read(path).map_err(|e| format!("CA bundle {}: {e}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("CA bundle {}: {e}", path.display()))?;
            if certs.is_empty() {
                return Err(format!("CA bundle {}: no certificates", path.display()));
            }
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder.build().map_err(|e| format!("HTTP client: {e}"))?;
        Ok(UpstreamClient {
            http,
            config,
            tokens: Mutex::new(HashMap::new()),
            basic: Mutex::new(HashMap::new()),
            realms: Mutex::new(HashMap::new()),
            flights: Mutex::new(HashMap::new()),
        })
    }

    /// The limits.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    fn cached(&self, key: &str) -> Option<String> {
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        match tokens.get(key) {
            Some(c) if c.until > Instant::now() => Some(c.header.clone()),
            Some(_) => {
                tokens.remove(key);
                None
            }
            None => None,
        }
    }

    fn cache(&self, key: String, header: String, ttl: Duration) {
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        if tokens.len() > 10_000 {
            let now = Instant::now();
            tokens.retain(|_, c| c.until > now);
        }
        tokens.insert(
            key,
            Cached {
                header,
                until: Instant::now() + ttl,
            },
        );
    }

    async fn send(
        &self,
        what: &str,
        method: Method,
        url: &str,
        accept: Option<&str>,
        auth: Option<&str>,
    ) -> Result<reqwest::Response, UpstreamError> {
        let mut req = self.http.request(method, url);
        if let Some(a) = accept {
            req = req.header(reqwest::header::ACCEPT, a);
        }
        if let Some(a) = auth {
            req = req.header(reqwest::header::AUTHORIZATION, a);
        }
        match tokio::time::timeout(self.config.response_timeout, req.send()).await {
            Ok(r) => r.map_err(|e| send_error(what, e)),
            Err(_) => Err(unavailable(what, "timed out waiting for the response")),
        }
    }

    /// Send a request with the endpoint's authentication, answering one
    /// challenge (Bearer: a token for `scope`; Basic: the credentials).
    pub(crate) async fn request(
        &self,
        ep: &Endpoint,
        what: &str,
        method: Method,
        url: &str,
        accept: Option<&str>,
        scope: Option<&str>,
    ) -> Result<reqwest::Response, UpstreamError> {
        let ident = ep.auth.identity();
        let token_key = format!("{}|{ident}|{}", ep.base, scope.unwrap_or(""));
        let mut auth = match &ep.auth {
            Auth::Ecr { .. } => Some(self.ecr_token(ep, false).await?),
            Auth::Basic { username, password }
                if self
                    .basic
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .contains_key(&format!("{}|{ident}", ep.base)) =>
            {
                Some(basic_header(username, password))
            }
            _ => match self.cached(&token_key) {
                Some(h) => Some(h),
                None => {
                    let known = self
                        .realms
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get(&ep.base)
                        .cloned();
                    match known {
                        Some((realm, service)) => Some(
                            self.token(ep, what, &token_key, &realm, service.as_deref(), scope, None)
                                .await?,
                        ),
                        None => None,
                    }
                }
            },
        };
        let mut answered = false;
        loop {
            let resp = self.send(what, method.clone(), url, accept, auth.as_deref()).await?;
            if resp.status() != StatusCode::UNAUTHORIZED || answered {
                return Ok(resp);
            }
            answered = true;
            if let Auth::Ecr { .. } = ep.auth {
                // The exchanged token may have expired upstream: exchange again, once.
                auth = Some(self.ecr_token(ep, true).await?);
                continue;
            }
            let header = resp
                .headers()
                .get(reqwest::header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            match parse_challenge(header) {
                Some(Challenge::Bearer {
                    realm,
                    service,
                    scope: s,
                }) => {
                    self.realms
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(ep.base.clone(), (realm.clone(), service.clone()));
                    let scope = scope.map(str::to_string).or(s);
                    let header = self
                        .token(
                            ep,
                            what,
                            &token_key,
                            &realm,
                            service.as_deref(),
                            scope.as_deref(),
                            auth.as_deref(),
                        )
                        .await?;
                    auth = Some(header);
                }
                Some(Challenge::Basic) => match &ep.auth {
                    Auth::Basic { username, password } => {
                        self.basic
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(format!("{}|{ident}", ep.base), ());
                        auth = Some(basic_header(username, password));
                    }
                    _ => return Ok(resp),
                },
                None => return Ok(resp),
            }
        }
    }

    /// The token for `token_key`: the cached one unless it is `stale` (the
    /// upstream just refused it), else fetched once for all waiting requests.
    #[allow(clippy::too_many_arguments)]
    async fn token(
        &self,
        ep: &Endpoint,
        what: &str,
        token_key: &str,
        realm: &str,
        service: Option<&str>,
        scope: Option<&str>,
        stale: Option<&str>,
    ) -> Result<String, UpstreamError> {
        let flight = {
            let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
            if flights.len() > 10_000 {
                flights.retain(|_, f| Arc::strong_count(f) > 1);
            }
            flights.entry(token_key.to_string()).or_default().clone()
        };
        let _one = flight.lock().await;
        if let Some(h) = self.cached(token_key) {
            if Some(h.as_str()) != stale {
                return Ok(h);
            }
        }
        let (header, ttl) = self.bearer(ep, what, realm, service, scope).await?;
        self.cache(token_key.to_string(), header.clone(), ttl);
        Ok(header)
    }

    /// Fetch a token from a Bearer challenge's realm.
    async fn bearer(
        &self,
        ep: &Endpoint,
        what: &str,
        realm: &str,
        service: Option<&str>,
        scope: Option<&str>,
    ) -> Result<(String, Duration), UpstreamError> {
        if !(realm.starts_with("https://") || realm.starts_with("http://")) {
            return Err(invalid(what, "its token realm is not an http(s) URL"));
        }
        let mut url = reqwest::Url::parse(realm).map_err(|_| invalid(what, "its token realm is not a URL"))?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            if let Some(s) = scope {
                q.append_pair("scope", s);
            }
        }
        let auth = match &ep.auth {
            Auth::Basic { username, password } => Some(basic_header(username, password)),
            _ => None,
        };
        let resp = self
            .send(what, Method::GET, url.as_str(), None, auth.as_deref())
            .await?;
        if matches!(resp.status(), StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            return Err(denied(
                what,
                format!("the token service refused the credentials ({})", resp.status()),
            ));
        }
        if !resp.status().is_success() {
            return Err(status_error(&format!("{what} token service"), &resp));
        }
        let body = self.read_limited(what, resp, 1 << 20).await?;
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|_| invalid(what, "its token service answered no JSON"))?;
        let token = v
            .get("token")
            .or_else(|| v.get("access_token"))
            .and_then(serde_json::Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| invalid(what, "its token service answered no token"))?;
        let expires = v
            .get("expires_in")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(60)
            .max(10);
        // Renew a little before the upstream would refuse it.
        let ttl = Duration::from_secs(expires.saturating_sub(5).max(5));
        Ok((format!("Bearer {token}"), ttl))
    }

    /// Basic `AWS:<token>` from the ECR API's `GetAuthorizationToken`.
    async fn ecr_token(&self, ep: &Endpoint, fresh: bool) -> Result<String, UpstreamError> {
        let Auth::Ecr {
            access_key_id,
            secret_access_key,
            region,
            api_base,
        } = &ep.auth
        else {
            return Err(denied(ep.authority(), "no access key"));
        };
        let key = format!("ecr|{api_base}|{region}|{}", ep.auth.identity());
        if !fresh {
            if let Some(h) = self.cached(&key) {
                return Ok(h);
            }
        }
        let what = api_base.split_once("://").map_or(api_base.as_str(), |(_, a)| a);
        let authority = what.to_string();
        let body = b"{}";
        let mut headers = http::HeaderMap::new();
        let secs = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let amz_date = kura_iam::format_rfc3339(secs).replace(['-', ':'], "");
        let hv = |s: &str| http::HeaderValue::from_str(s).map_err(|_| invalid(what, "an unusable host name"));
        headers.insert(http::header::HOST, hv(&authority)?);
        headers.insert(http::header::CONTENT_TYPE, hv("application/x-amz-json-1.1")?);
        headers.insert(
            "x-amz-target",
            hv("AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken")?,
        );
        headers.insert("x-amz-date", hv(&amz_date)?);
        let payload = hex::encode(sha2::Sha256::digest(body));
        let signature = kura_auth::sigv4::sign(
            &kura_auth::sigv4::RequestParts {
                method: "POST",
                path: "/",
                query: None,
                headers: &headers,
                payload_sha256: &payload,
            },
            access_key_id,
            secret_access_key,
            region,
            "ecr",
        )
        .map_err(|e| invalid(what, format!("cannot sign the token exchange: {e}")))?;
        headers.insert(http::header::AUTHORIZATION, hv(&signature)?);
        let req = self
            .http
            .post(format!("{api_base}/"))
            .headers(headers)
            .body(body.to_vec());
        let resp = match tokio::time::timeout(self.config.response_timeout, req.send()).await {
            Ok(r) => r.map_err(|e| send_error(what, e))?,
            Err(_) => return Err(unavailable(what, "timed out waiting for the response")),
        };
        let status = resp.status();
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(status_error(what, &resp));
        }
        let text = self.read_limited(what, resp, 1 << 20).await?;
        let v: serde_json::Value = serde_json::from_slice(&text).unwrap_or_default();
        if !status.is_success() {
            let kind = v
                .get("__type")
                .and_then(serde_json::Value::as_str)
                .map(|t| t.rsplit('#').next().unwrap_or(t).to_string())
                .unwrap_or_else(|| status.to_string());
            return Err(denied(
                what,
                format!("GetAuthorizationToken with the rule's access key failed: {kind}"),
            ));
        }
        let data = &v["authorizationData"][0];
        let token = data["authorizationToken"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| invalid(what, "GetAuthorizationToken answered no token"))?;
        let expires_at = data["expiresAt"].as_f64().unwrap_or(0.0);
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let ttl = Duration::from_secs_f64((expires_at - now - 60.0).clamp(30.0, 12.0 * 3600.0));
        let header = format!("Basic {token}");
        self.cache(key, header.clone(), ttl);
        Ok(header)
    }

    /// Read a whole (small) body, at most `limit` bytes, each chunk within the idle timeout.
    async fn read_limited(&self, what: &str, resp: reqwest::Response, limit: usize) -> Result<Bytes, UpstreamError> {
        if resp.content_length().is_some_and(|n| n > limit as u64) {
            return Err(invalid(what, format!("answered more than {limit} bytes")));
        }
        let mut out = BytesMut::new();
        let mut body = idle_stream(resp, self.config.idle_timeout);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| unavailable(what, format!("the response broke off: {e}")))?;
            if out.len() + chunk.len() > limit {
                return Err(invalid(what, format!("answered more than {limit} bytes")));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out.freeze())
    }

    /// Ping `/v2/` with the endpoint's authentication: Ok when the upstream
    /// lets these credentials in.
    pub async fn check(&self, ep: &Endpoint) -> Result<(), UpstreamError> {
        let what = ep.authority().to_string();
        let url = format!("{}/v2/", ep.base);
        let resp = self.request(ep, &what, Method::GET, &url, None, None).await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(status_error(&what, &resp))
        }
    }
}

fn basic_header(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// A response body whose chunks each arrive within `idle`; it ends after the first error.
fn idle_stream(resp: reqwest::Response, idle: Duration) -> BoxStream<'static, io::Result<Bytes>> {
    let inner = resp.bytes_stream().boxed();
    futures::stream::unfold(Some(inner), move |state| async move {
        let mut s = state?;
        match tokio::time::timeout(idle, s.next()).await {
            Ok(Some(Ok(b))) => Some((Ok(b), Some(s))),
            Ok(Some(Err(e))) => Some((Err(io::Error::other(e)), None)),
            Ok(None) => None,
            Err(_) => Some((
                Err(io::Error::new(io::ErrorKind::TimedOut, "the upstream stopped sending")),
                None,
            )),
        }
    })
    .boxed()
}

/// One repository of an upstream.
pub struct RemoteRepo {
    client: Arc<UpstreamClient>,
    endpoint: Arc<Endpoint>,
    name: String,
    what: String,
}

impl RemoteRepo {
    /// Repository `name` of `endpoint`; the name must be a valid repository name.
    pub fn new(client: Arc<UpstreamClient>, endpoint: Arc<Endpoint>, name: &str) -> Result<Self, UpstreamError> {
        let name: RepoName = name
            .parse()
            .map_err(|e: String| invalid(endpoint.authority(), format!("invalid upstream repository name: {e}")))?;
        let what = format!("{}/{}", endpoint.authority(), name.as_str());
        Ok(RemoteRepo {
            client,
            endpoint,
            name: name.as_str().to_string(),
            what,
        })
    }

    fn scope(&self) -> String {
        format!("repository:{}:pull", self.name)
    }

    fn manifest_url(&self, reference: &str) -> Result<String, UpstreamError> {
        Reference::parse(reference).map_err(|e| invalid(&self.what, format!("invalid reference: {e}")))?;
        Ok(format!("{}/v2/{}/manifests/{reference}", self.endpoint.base, self.name))
    }

    async fn call(
        &self,
        method: Method,
        url: &str,
        accept: Option<&str>,
    ) -> Result<Option<reqwest::Response>, UpstreamError> {
        let scope = self.scope();
        let resp = self
            .client
            .request(&self.endpoint, &self.what, method, url, accept, Some(&scope))
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(Some(resp)),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(status_error(&self.what, &resp)),
        }
    }
}

fn header<'a>(resp: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

fn media_type(content_type: Option<&str>) -> Option<String> {
    let t = content_type?.split(';').next()?.trim().to_ascii_lowercase();
    MANIFEST_TYPES.contains(&t.as_str()).then_some(t)
}

/// Check a manifest's bytes against the digest asked for and the one the
/// upstream claims; the manifest's digest.
pub fn verify_manifest(
    what: &str,
    reference: &str,
    claimed: Option<&str>,
    body: &[u8],
) -> Result<String, UpstreamError> {
    let check = |d: &str, whose: &str| -> Result<Digest, UpstreamError> {
        let digest: Digest = d
            .parse()
            .map_err(|_| invalid(what, format!("{whose} digest {d:?} is not a digest")))?;
        if Digest::of(digest.algorithm(), body) != digest {
            return Err(invalid(
                what,
                format!("the manifest's content does not match {whose} digest {digest}"),
            ));
        }
        Ok(digest)
    };
    let by_ref = match Reference::parse(reference) {
        Ok(Reference::Digest(d)) => Some(check(d.as_str(), "the requested")?),
        _ => None,
    };
    let by_header = match claimed {
        Some(c) => Some(check(c, "the upstream's Docker-Content-Digest")?),
        None => None,
    };
    Ok(by_ref.or(by_header).unwrap_or_else(|| Digest::sha256(body)).to_string())
}

#[async_trait::async_trait]
impl UpstreamRepo for RemoteRepo {
    fn describe(&self) -> String {
        self.what.clone()
    }

    async fn head_manifest(&self, reference: &str) -> Result<Option<UpstreamManifestHead>, UpstreamError> {
        let url = self.manifest_url(reference)?;
        let Some(resp) = self.call(Method::HEAD, &url, Some(MANIFEST_ACCEPT)).await? else {
            return Ok(None);
        };
        let digest = header(&resp, "docker-content-digest").and_then(|d| d.parse::<Digest>().ok());
        let media = media_type(header(&resp, "content-type"));
        // A HEAD's body is empty: the size is the header's, not the body's.
        let size = header(&resp, "content-length").and_then(|v| v.trim().parse::<u64>().ok());
        match (digest, media, size) {
            (Some(digest), Some(media_type), Some(size)) => Ok(Some(UpstreamManifestHead {
                digest: digest.to_string(),
                media_type,
                size,
            })),
            // The upstream's HEAD says too little: ask for the manifest itself.
            _ => Ok(self.get_manifest(reference).await?.map(|m| UpstreamManifestHead {
                size: m.body.len() as u64,
                digest: m.digest,
                media_type: m.media_type,
            })),
        }
    }

    async fn get_manifest(&self, reference: &str) -> Result<Option<UpstreamManifest>, UpstreamError> {
        let url = self.manifest_url(reference)?;
        let Some(resp) = self.call(Method::GET, &url, Some(MANIFEST_ACCEPT)).await? else {
            return Ok(None);
        };
        let claimed = header(&resp, "docker-content-digest").map(str::to_string);
        let content_type = media_type(header(&resp, "content-type"));
        let body = self
            .client
            .read_limited(&self.what, resp, self.client.config.max_manifest_bytes)
            .await?;
        let digest = verify_manifest(&self.what, reference, claimed.as_deref(), &body)?;
        let media_type = match content_type {
            Some(t) => t,
            None => serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("mediaType").and_then(|m| m.as_str()).map(str::to_string))
                .filter(|t| MANIFEST_TYPES.contains(&t.as_str()))
                .ok_or_else(|| invalid(&self.what, "the manifest's media type is not one Kura stores"))?,
        };
        Ok(Some(UpstreamManifest {
            digest,
            media_type,
            body,
        }))
    }

    async fn get_blob(&self, digest: &str) -> Result<Option<UpstreamBlob>, UpstreamError> {
        let d: Digest = digest
            .parse()
            .map_err(|_| invalid(&self.what, format!("invalid digest {digest:?}")))?;
        let url = format!("{}/v2/{}/blobs/{}", self.endpoint.base, self.name, d);
        let Some(resp) = self.call(Method::GET, &url, None).await? else {
            return Ok(None);
        };
        Ok(Some(UpstreamBlob {
            size: resp.content_length(),
            body: idle_stream(resp, self.client.config.idle_timeout),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_are_checked_against_both_digests() {
        let body = br#"{"schemaVersion":2}"#;
        let good = Digest::sha256(body).to_string();
        let other = Digest::sha256(b"x").to_string();
        assert_eq!(verify_manifest("u", "latest", None, body).unwrap(), good);
        assert_eq!(verify_manifest("u", "latest", Some(&good), body).unwrap(), good);
        assert_eq!(verify_manifest("u", &good, Some(&good), body).unwrap(), good);
        assert!(matches!(
            verify_manifest("u", "latest", Some(&other), body),
            Err(UpstreamError::Invalid { .. })
        ));
        assert!(matches!(
            verify_manifest("u", &other, None, body),
            Err(UpstreamError::Invalid { .. })
        ));
        assert!(matches!(
            verify_manifest("u", "latest", Some("sha256:nothex"), body),
            Err(UpstreamError::Invalid { .. })
        ));
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("retry-after", "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(7));
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        h.insert("retry-after", later.parse().unwrap());
        assert!(matches!(retry_after(&h), Some(100..=120)));
        h.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }
}
