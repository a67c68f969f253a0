//! Who is calling: SigV4 on the API, registry tokens on the data plane,
//! presigned download URLs, host-based account selection, and the first-start
//! bootstrap of the default account and its root key.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use kura_auth::seal::MasterKey;
use kura_auth::sigv4::{self, RequestParts, SigV4Error};
use kura_auth::token::{self, TokenClaims, TokenError};
use kura_registry::http::AccountId;
use kura_registry::service::CatalogFilter;
use kura_registry::DataRequest;
use kura_store::control::AccessKeyRow;
use kura_store::{ControlStore, StoreError};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::error::{EcrError, EcrResult};
use crate::Ecr;

/// How long a registry token lives (ECR: 12 hours).
pub const TOKEN_LIFETIME_SECS: u64 = 12 * 3600;
/// How long a download URL lives.
pub const DOWNLOAD_URL_SECS: u64 = 3600;

/// The authenticated caller of a request: the owner of the access key it
/// authenticated with (directly, or through a registry token of that key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// Account (registry) of the principal.
    pub account: String,
    /// ARN of the principal (`arn:aws:iam::<account>:root` for the root
    /// key), for messages and logs. Authorization never parses it.
    pub principal_arn: String,
    /// The principal's unique id, as recorded on the key (see
    /// [`AccessKeyRow::principal_id`]): what authorization resolves.
    pub principal_id: String,
    /// The access key used.
    pub access_key_id: String,
    /// For temporary credentials: when they were issued (ms since the
    /// epoch), the request's `aws:TokenIssueTime`.
    pub token_issued_at: Option<i64>,
}

impl Caller {
    /// The caller an access key authenticates; `None` for a key without a
    /// recorded owner (it authenticates nobody).
    pub fn from_key(key: AccessKeyRow) -> Option<Caller> {
        if key.principal_id.is_empty() {
            return None;
        }
        Some(Caller {
            token_issued_at: key.session_token_hash.is_some().then_some(key.created_at),
            account: key.account,
            principal_arn: key.principal_arn,
            principal_id: key.principal_id,
            access_key_id: key.access_key_id,
        })
    }
}

/// An API request whose headers passed [`Ecr::authenticate_headers`]: what
/// its signature claims and the secret to check it with, until
/// [`Ecr::authenticate_body`] has the body's hash. Not `Debug`: it holds the
/// secret.
pub struct SignedRequest {
    parsed: sigv4::ParsedAuth,
    /// The request's headers, with `host` filled in from the URI if needed.
    headers: http::HeaderMap,
    secret: String,
    caller: Caller,
}

impl SignedRequest {
    /// The signing name the credential scope claims (`ecr`, `iam`, `sts`, …).
    pub fn service(&self) -> &str {
        &self.parsed.service
    }

    /// The owner of the access key the request claims (not yet proven: the
    /// signature is checked with the body).
    pub fn claimed(&self) -> &Caller {
        &self.caller
    }
}

/// The headers an API request must sign, because they pick what it does:
/// `Content-Type` (JSON or a Query form) always, `X-Amz-Target` (the
/// operation) when the request has one. Every AWS SDK and the CLI sign both
/// (they sign every header but a few hop-by-hop ones).
fn required_signed_headers(headers: &http::HeaderMap) -> Vec<&'static str> {
    let mut names = vec!["content-type"];
    if headers.contains_key("x-amz-target") {
        names.push("x-amz-target");
    }
    names
}

/// Log a refused authentication: where it came from and who it claimed to
/// be (the access key id, and its principal when the key exists), at warn.
/// Never the secret, the signature or a token. A request without any
/// credentials is not a failed authentication and is left to debug.
fn log_auth_failure(parts: &http::request::Parts, claimed: Option<&(String, Option<String>)>, e: &EcrError) {
    let source = crate::source_ip(parts).map_or_else(|| "unknown".to_string(), |ip| ip.to_string());
    if e.kind == "MissingAuthenticationTokenException" {
        tracing::debug!(source = %source, "API request without credentials");
        return;
    }
    let (key, principal) = match claimed {
        Some((k, p)) => (printable(k), p.as_deref().unwrap_or("-").to_string()),
        None => ("-".to_string(), "-".to_string()),
    };
    // An incomplete signature's message may quote the Authorization
    // header, signature included: only the error type is logged then.
    let reason = if e.kind == "IncompleteSignatureException" {
        "malformed or incomplete signature"
    } else {
        e.message.as_str()
    };
    tracing::warn!(
        source = %source,
        access_key = %key,
        principal = %principal,
        error = e.kind,
        reason = %reason,
        "API authentication failed"
    );
}

/// A claimed identifier as it may be logged: printable ASCII, at most 128
/// characters (it comes from the client).
fn printable(s: &str) -> String {
    s.chars()
        .take(128)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn sigv4_error(e: SigV4Error) -> EcrError {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::FORBIDDEN);
    EcrError::new(e.aws_error_type(), e.message()).with_status(status)
}

/// What an unknown access key (or one whose owner is gone) gets.
pub(crate) fn unrecognized() -> EcrError {
    EcrError::new(
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
    )
}

/// The account a host name selects: `<12 digits>.dkr.<anything>`.
pub fn account_from_host(host: &str) -> Option<String> {
    let mut labels = host.split('.');
    let first = labels.next()?;
    if first.len() == 12 && first.bytes().all(|b| b.is_ascii_digit()) && labels.next() == Some("dkr") {
        Some(first.to_string())
    } else {
        None
    }
}

/// The sealing context of an access key's secret.
fn key_context(access_key_id: &str) -> Vec<u8> {
    format!("access-key:{access_key_id}").into_bytes()
}

/// Hash of a session token as stored with temporary credentials.
pub fn session_token_hash(token: &str) -> String {
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// What a download URL grants: one blob (`d`) of one repository (`r`) of
/// one account (`a`) until `e`, for as long as the access key `k` that
/// asked for it stays usable (deleting or deactivating the key, or deleting
/// the role whose session it is, ends its URLs too).
#[derive(Serialize, Deserialize)]
struct DownloadClaims {
    a: String,
    r: String,
    d: String,
    e: u64,
    k: String,
}

impl Ecr {
    /// Verify an API request's SigV4 signature over a body already in
    /// memory and find its principal: [`Self::authenticate_headers`] then
    /// [`Self::authenticate_body`]. `service` is the SigV4 signing name (`ecr`,
    /// `ecr-public`, `iam`, `sts`).
    pub async fn authenticate(&self, parts: &http::request::Parts, body: &[u8], service: &str) -> EcrResult<Caller> {
        let signed = self.authenticate_headers(parts, &[service]).await?;
        let payload = hex::encode(sha2::Sha256::digest(body));
        self.authenticate_body(parts, signed, &payload, service)
    }

    /// The first phase of authenticating an API request, from its headers
    /// alone, before any byte of its body is read: the `Authorization`
    /// header parses, signs the headers that pick the operation
    /// (`Content-Type` always, `X-Amz-Target` when sent), claims a scope for
    /// one of `services`, and names an active access key (with its session
    /// token, unexpired, for temporary credentials) whose secret unseals.
    /// Presigned (query-string) requests are refused: `POST /` has no use
    /// for them, and their signature need not cover the body.
    ///
    /// A failure is logged (warn) with the client's address and the access
    /// key (and principal) the request claimed; never the secret, the
    /// signature or the session token.
    pub async fn authenticate_headers(
        &self,
        parts: &http::request::Parts,
        services: &[&str],
    ) -> EcrResult<SignedRequest> {
        let mut claimed = None;
        let result = self.check_headers(parts, services, &mut claimed).await;
        if let Err(e) = &result {
            log_auth_failure(parts, claimed.as_ref(), e);
        }
        result
    }

    async fn check_headers(
        &self,
        parts: &http::request::Parts,
        services: &[&str],
        claimed: &mut Option<(String, Option<String>)>,
    ) -> EcrResult<SignedRequest> {
        let mut headers = parts.headers.clone();
        if !headers.contains_key("host") {
            if let Some(a) = parts.uri.authority() {
                if let Ok(v) = HeaderValue::from_str(a.as_str()) {
                    headers.insert("host", v);
                }
            }
        }
        let req = RequestParts {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: parts.uri.query(),
            headers: &headers,
            payload_sha256: "",
        };
        let parsed = sigv4::parse(&req).map_err(sigv4_error)?;
        *claimed = Some((parsed.access_key_id.clone(), None));
        if parsed.is_presigned() {
            return Err(sigv4_error(SigV4Error::IncompleteSignature(
                "Presigned (query-string) signatures are not accepted for API calls:                  sign the request with the Authorization header."
                    .into(),
            )));
        }
        for name in required_signed_headers(&headers) {
            if !parsed.signed_headers.iter().any(|h| h == name) {
                return Err(sigv4_error(SigV4Error::IncompleteSignature(format!(
                    "'{name}' must be present and among the SignedHeaders of the Authorization header."
                ))));
            }
        }
        if !services.contains(&parsed.service.as_str()) {
            return Err(sigv4_error(SigV4Error::WrongService {
                expected: services.first().copied().unwrap_or_default().to_string(),
                found: parsed.service.clone(),
            }));
        }
        let key = self
            .control
            .access_key_get(&parsed.access_key_id)
            .await?
            .ok_or_else(unrecognized)?;
        *claimed = Some((key.access_key_id.clone(), Some(key.principal_arn.clone())));
        if key.status != "Active" {
            return Err(unrecognized());
        }
        if let Some(hash) = &key.session_token_hash {
            let given = parsed.session_token.as_deref().ok_or_else(unrecognized)?;
            if &session_token_hash(given) != hash {
                return Err(unrecognized());
            }
            if key.expires_at.is_some_and(|exp| exp <= kura_store::now_millis()) {
                return Err(EcrError::new(
                    "ExpiredTokenException",
                    "The security token included in the request is expired",
                ));
            }
        }
        let secret = self
            .master
            .open(&key.secret_sealed, &key_context(&key.access_key_id))
            .map_err(|_| {
                tracing::error!(access_key = %key.access_key_id, "cannot unseal an access key: wrong master key?");
                EcrError::server()
            })?;
        let secret = String::from_utf8(secret).map_err(|_| EcrError::server())?;
        Ok(SignedRequest {
            parsed,
            headers,
            secret,
            caller: Caller::from_key(key).ok_or_else(unrecognized)?,
        })
    }

    /// The second phase: check the signature of a request that passed
    /// [`Self::authenticate_headers`] against the SHA-256 of the body it
    /// carried (`payload_sha256`, lowercase hex, computed while the body was
    /// read), for the signing name `service` (the scope must name it; IAM,
    /// STS and ECR Public are global services, so their requests may be
    /// signed for any region). Failures are logged like the first phase's.
    pub fn authenticate_body(
        &self,
        parts: &http::request::Parts,
        signed: SignedRequest,
        payload_sha256: &str,
        service: &str,
    ) -> EcrResult<Caller> {
        let SignedRequest {
            parsed,
            headers,
            secret,
            caller,
        } = signed;
        let req = RequestParts {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: parts.uri.query(),
            headers: &headers,
            payload_sha256,
        };
        let region = if matches!(service, "iam" | "sts" | "ecr-public") {
            parsed.region.as_str()
        } else {
            self.config.region.as_str()
        };
        match sigv4::verify(&req, &parsed, &secret, region, service, SystemTime::now()) {
            Ok(()) => Ok(caller),
            Err(e) => {
                let e = sigv4_error(e);
                let claimed = (caller.access_key_id, Some(caller.principal_arn));
                log_auth_failure(parts, Some(&claimed), &e);
                Err(e)
            }
        }
    }

    /// Issue a registry token for a caller: the password docker uses with user `AWS`.
    pub fn issue_token(&self, caller: &Caller, account: &str) -> (String, u64) {
        let now = now_secs();
        let claims = TokenClaims {
            account: account.to_string(),
            principal_arn: caller.principal_arn.clone(),
            access_key_id: caller.access_key_id.clone(),
            issued_at: now,
            expires_at: now + TOKEN_LIFETIME_SECS,
        };
        (token::issue(&self.token_key, &claims), claims.expires_at)
    }

    /// A query string that lets anyone GET one blob of one repository for a
    /// while, as long as the caller's access key stays usable.
    pub fn sign_download(&self, caller: &Caller, account: &str, repo: &str, digest: &str) -> String {
        let claims = DownloadClaims {
            a: account.into(),
            r: repo.into(),
            d: digest.into(),
            e: now_secs() + DOWNLOAD_URL_SECS,
            k: caller.access_key_id.clone(),
        };
        let t = token::issue_raw(&self.token_key, &serde_json::to_vec(&claims).unwrap_or_default());
        format!("{}={t}", kura_registry::request::DOWNLOAD_PARAM)
    }

    /// The account a presigned download token lets `data` read, if the
    /// token is valid, unexpired, made for exactly this request (a GET or
    /// HEAD of the blob it names, compared as the parsed endpoint, never as
    /// the raw path), and the access key that asked for it is still usable.
    async fn check_download(&self, token: &str, data: &DataRequest) -> Option<String> {
        let payload = token::verify_raw(&self.token_key, token).ok()?;
        let c: DownloadClaims = serde_json::from_slice(&payload).ok()?;
        let kura_registry::endpoint::Endpoint::Blob(name, digest) = &data.endpoint else {
            return None;
        };
        if !(c.e > now_secs() && data.is_read() && name.as_str() == c.r && *digest == c.d) {
            return None;
        }
        self.key_caller(&c.k).await.ok().map(|_| c.a)
    }

    /// The caller an access key stands for, if the key is still usable:
    /// present, active, unexpired and with a recorded owner. Registry tokens
    /// and download URLs live only as long as the key they came from.
    async fn key_caller(&self, access_key_id: &str) -> Result<Caller, &'static str> {
        match self.control.access_key_get(access_key_id).await {
            Ok(Some(k)) if k.expires_at.is_some_and(|exp| exp <= kura_store::now_millis()) => {
                Err("Your authorization token has expired. Reauthenticate and try again.")
            }
            Ok(Some(k)) if k.status == "Active" => {
                Caller::from_key(k).ok_or("Your authorization token is no longer valid.")
            }
            Ok(_) => Err("Your authorization token is no longer valid."),
            Err(_) => Err("Your authorization token could not be checked."),
        }
    }

    /// Check an `Authorization` header: Basic `AWS:<token>` (what
    /// `docker login` stores) or `Bearer <token>` (from the token service).
    async fn check_basic(&self, value: &str) -> Result<(TokenClaims, Caller), &'static str> {
        if let Some(t) = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")) {
            return self.check_token(t.trim()).await;
        }
        let b64 = value
            .strip_prefix("Basic ")
            .or_else(|| value.strip_prefix("basic "))
            .ok_or("not Basic")?;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|_| "malformed")?;
        let raw = String::from_utf8(raw).map_err(|_| "malformed")?;
        let (user, pass) = raw.split_once(':').ok_or("malformed")?;
        if user != "AWS" {
            return Err("the user name must be AWS");
        }
        self.check_token(pass).await
    }

    /// Check a registry token: signature, expiry, and that its access key is
    /// still active and unexpired. The caller is the key's recorded owner
    /// (by unique id), not the ARN the token names.
    async fn check_token(&self, pass: &str) -> Result<(TokenClaims, Caller), &'static str> {
        let claims = token::verify(&self.token_key, pass, now_secs()).map_err(|e| match e {
            TokenError::Expired => "Your authorization token has expired. Reauthenticate and try again.",
            _ => "Your authorization token is invalid.",
        })?;
        // Revoking (or deactivating) the key revokes its tokens.
        let caller = self.key_caller(&claims.access_key_id).await?;
        Ok((claims, caller))
    }
}

/// The `Bearer` token that stands for "no credentials" (what the token
/// service hands an anonymous client, for public repositories).
pub const ANONYMOUS_TOKEN: &str = "anonymous";

/// A 401 with the token service's challenge. Clients with credentials
/// (`docker login` with `AWS` and a registry password) fetch a bearer token
/// with them; clients without fetch an anonymous one, which reads public
/// repositories. Basic `AWS:<token>` sent up front is accepted too, as ECR
/// accepts it. The realm's scheme is the one the client used (`https` when a
/// trusted proxy says it terminated TLS), never a cleartext URL behind TLS.
fn challenge(scheme: &str, host: &str, message: &str) -> Response {
    let body = serde_json::json!({"errors": [{"code": "UNAUTHORIZED", "message": message, "detail": null}]});
    let mut r = (StatusCode::UNAUTHORIZED, serde_json::to_vec(&body).unwrap_or_default()).into_response();
    let h = r.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    if let Ok(v) = HeaderValue::from_str(&format!("Bearer realm=\"{scheme}://{host}/token\",service=\"{host}\"")) {
        h.insert("www-authenticate", v);
    }
    h.insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    r
}

/// `GET /token` (and the OAuth2 form `POST /token`): the registry token
/// service the challenge names. With Basic `AWS:<registry password>` (or
/// `grant_type=password` with the same), it answers that registry token as
/// the bearer token; without credentials, the anonymous token.
pub async fn token_service(State(ecr): State<Arc<Ecr>>, req: Request) -> Response {
    let extensions = req.extensions().clone();
    let basic = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let form = if req.method() == http::Method::POST {
        match axum::body::to_bytes(req.into_body(), 64 * 1024).await {
            Ok(b) => form_pairs(&String::from_utf8_lossy(&b)),
            Err(_) => return token_error(StatusCode::BAD_REQUEST, "the form could not be read"),
        }
    } else {
        Vec::new()
    };
    let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| percent_decode(v));
    let password = match (basic, field("grant_type").as_deref()) {
        (_, Some("password")) => {
            if field("username").as_deref() != Some("AWS") {
                return token_error(StatusCode::UNAUTHORIZED, "the user name must be AWS");
            }
            field("password")
        }
        (_, Some(other)) => {
            return token_error(StatusCode::BAD_REQUEST, &format!("unsupported grant_type {other:?}"));
        }
        (Some(value), None) => {
            let decoded = value
                .strip_prefix("Basic ")
                .or_else(|| value.strip_prefix("basic "))
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.trim()).ok())
                .and_then(|b| String::from_utf8(b).ok());
            match decoded.as_deref().and_then(|d| d.split_once(':')) {
                Some(("", "")) => None,
                Some(("AWS", pass)) => Some(pass.to_string()),
                Some(_) => return token_error(StatusCode::UNAUTHORIZED, "the user name must be AWS"),
                None => return token_error(StatusCode::UNAUTHORIZED, "malformed credentials"),
            }
        }
        (None, None) => None,
    };
    let (token, expires_in) = match password {
        Some(pass) => match ecr.check_token(&pass).await {
            Ok((claims, _)) => (pass, claims.expires_at.saturating_sub(now_secs())),
            Err(msg) => {
                log_token_failure(&extensions, &format!("Bearer {pass}"), msg);
                return token_error(StatusCode::UNAUTHORIZED, msg);
            }
        },
        None => (ANONYMOUS_TOKEN.to_string(), TOKEN_LIFETIME_SECS),
    };
    let body = serde_json::json!({
        "token": token, "access_token": token, "expires_in": expires_in,
        "issued_at": kura_iam::format_rfc3339(now_secs() as i64),
    });
    let mut r = (StatusCode::OK, serde_json::to_vec(&body).unwrap_or_default()).into_response();
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}

fn token_error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({"errors": [{"code": "UNAUTHORIZED", "message": message, "detail": null}]});
    let mut r = (status, serde_json::to_vec(&body).unwrap_or_default()).into_response();
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}

fn percent_decode(v: &str) -> String {
    percent_encoding::percent_decode_str(&v.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

fn denied(message: &str) -> Response {
    let body = serde_json::json!({"errors": [{"code": "DENIED", "message": message, "detail": null}]});
    let mut r = (StatusCode::FORBIDDEN, serde_json::to_vec(&body).unwrap_or_default()).into_response();
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}

/// The data plane's guard: every `/v2/` request carries Basic `AWS:<token>`
/// (or is a presigned download); the host name selects the account.
pub async fn data_plane_auth(State(ecr): State<Arc<Ecr>>, req: Request, next: Next) -> Response {
    let has_body = !matches!(
        *req.method(),
        http::Method::GET | http::Method::HEAD | http::Method::DELETE
    );
    let mut resp = guard(ecr, req, next).await;
    if has_body && (resp.status() == StatusCode::UNAUTHORIZED || resp.status() == StatusCode::FORBIDDEN) {
        // Refused before the body was read: the connection cannot be reused.
        resp.headers_mut()
            .insert("connection", HeaderValue::from_static("close"));
    }
    resp
}

async fn guard(ecr: Arc<Ecr>, mut req: Request, next: Next) -> Response {
    if req.uri().path() == "/healthz" {
        return next.run(req).await;
    }
    let host = req
        .headers()
        .get("host")
        .and_then(|h| h.to_str().ok())
        .map(String::from)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_else(|| "localhost".into());
    let account = account_from_host(&host).unwrap_or_else(|| ecr.config.default_account.clone());
    let source_ip = crate::client::source_ip(req.extensions());
    let scheme = crate::client::scheme(req.extensions());
    // The one parse of this request: authorization decides on this value
    // and the handler serves this value (never the raw URI again). What
    // does not parse gets the registry's answer at once (a bad name or
    // path, a method the endpoint lacks, a repeated parameter): it depends
    // on the request's text alone, like a router's 404.
    let mut data = match DataRequest::parse(req.method(), req.uri(), req.headers()) {
        Ok(d) => d,
        Err(e) => return e.into_response(),
    };
    if let Some(t) = &data.params.download {
        return match ecr.check_download(t, &data).await {
            Some(a) if a == account => pass(req, next, account, data).await,
            _ => {
                let source = source_ip.map_or_else(|| "unknown".to_string(), |ip| ip.to_string());
                tracing::warn!(source = %source, path = %req.uri().path(), "refused a download URL: invalid or expired");
                denied("The download URL is invalid or has expired.")
            }
        };
    }
    // Anyone may read a public repository (ECR Public).
    if crate::public::anonymous(req.headers()) {
        if crate::public::anonymous_read_allowed(&ecr, &account, &data).await {
            return pass(req, next, account, data).await;
        }
        return challenge(scheme, &host, "authentication required");
    }
    let Some(value) = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(String::from)
    else {
        return challenge(scheme, &host, "authentication required");
    };
    let (_, caller) = match ecr.check_basic(&value).await {
        Ok(found) => found,
        Err(msg) => {
            log_token_failure(req.extensions(), &value, msg);
            return challenge(scheme, &host, msg);
        }
    };
    // The host picks the registry; the caller may be of another account
    // when policies on both sides allow it.
    match ecr.authorize_data(&caller, &account, &mut data, source_ip).await {
        Ok(Ok(())) => {
            if data.endpoint == kura_registry::endpoint::Endpoint::Catalog {
                let filter = crate::authz::DataCatalogFilter {
                    ecr: ecr.clone(),
                    caller: caller.clone(),
                    source_ip,
                };
                req.extensions_mut().insert(CatalogFilter(Arc::new(filter)));
            }
            // The actor of the image events this request causes (upload
            // caps count its unique id, never its ARN).
            let actor = kura_registry::Actor {
                account: caller.account.clone(),
                principal_arn: caller.principal_arn.clone(),
                principal_id: caller.principal_id.clone(),
                access_key_id: Some(caller.access_key_id.clone()),
                source_ip,
                user_agent: user_agent(req.headers()),
            };
            req.extensions_mut().insert(actor);
            // The audit trail records writes (and, when asked, reads) once
            // answered, before the answer leaves.
            let Some(hook) = ecr.audit() else {
                return pass(req, next, account, data).await;
            };
            let Some(call) = crate::calls::DataCall::of(&data, &account, hook.data_reads) else {
                return pass(req, next, account, data).await;
            };
            let (started, agent) = (kura_store::now_millis(), user_agent(req.headers()));
            let resp = pass(req, next, account, data).await;
            let record = call.record(&ecr.config.region, started, &caller, source_ip, agent, resp.status());
            hook.recorder.record(&record).await;
            resp
        }
        Ok(Err(denial)) => denied(&denial.message),
        // The key's owner no longer exists.
        Err(e) if e.kind == "UnrecognizedClientException" => {
            let msg = "Your authorization token is no longer valid.";
            log_token_failure(req.extensions(), &value, msg);
            challenge(scheme, &host, msg)
        }
        Err(e) => {
            tracing::error!(error = %e, "authorization failed");
            kura_registry::error::ApiError::new(kura_oci::ErrorCode::Internal, "authorization could not be decided")
                .status(StatusCode::INTERNAL_SERVER_ERROR)
                .into_response()
        }
    }
}

fn user_agent(h: &http::HeaderMap) -> Option<String> {
    h.get("user-agent").and_then(|v| v.to_str().ok()).map(String::from)
}

/// Hand the request, with the account it addresses and its parsed (and
/// authorized) form, to the registry. Unless an authenticated actor was
/// inserted, the request's actor is anonymous (a public read, a download URL).
async fn pass(mut req: Request, next: Next, account: String, data: DataRequest) -> Response {
    if req.extensions().get::<kura_registry::Actor>().is_none() {
        let actor = kura_registry::Actor::anonymous(account.clone())
            .from_client(crate::client::source_ip(req.extensions()), user_agent(req.headers()));
        req.extensions_mut().insert(actor);
    }
    req.extensions_mut().insert(AccountId(account));
    req.extensions_mut().insert(data);
    next.run(req).await
}

/// Log a refused registry credential (Basic `AWS:<token>` or a bearer
/// token) at warn: the client's address and the principal and access key
/// the token claims (read without trusting it), never the token itself.
fn log_token_failure(ext: &http::Extensions, credential: &str, reason: &str) {
    let source = crate::client::source_ip(ext).map_or_else(|| "unknown".to_string(), |ip| ip.to_string());
    let token = credential
        .strip_prefix("Bearer ")
        .or_else(|| credential.strip_prefix("bearer "))
        .map(|t| t.trim().to_string())
        .or_else(|| {
            let b64 = credential
                .strip_prefix("Basic ")
                .or_else(|| credential.strip_prefix("basic "))?;
            let raw = base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok()?;
            let raw = String::from_utf8(raw).ok()?;
            raw.split_once(':').map(|(_, p)| p.to_string())
        });
    let claims = token.as_deref().and_then(token::unverified_claims);
    let (principal, key) = claims.map_or_else(
        || ("-".to_string(), "-".to_string()),
        |c| (printable(&c.principal_arn), printable(&c.access_key_id)),
    );
    tracing::warn!(
        source = %source,
        principal = %principal,
        access_key = %key,
        reason = %reason,
        "registry authentication failed"
    );
}

fn form_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect()
}

/// What the operator supplied for the first start.
#[derive(Clone, Debug, Default)]
pub struct BootstrapEnv {
    /// `KURA_ACCOUNT_ID`.
    pub account_id: Option<String>,
    /// `KURA_ROOT_ACCESS_KEY_ID`.
    pub root_access_key_id: Option<String>,
    /// `KURA_ROOT_SECRET_ACCESS_KEY`.
    pub root_secret_access_key: Option<String>,
}

/// The outcome of bootstrapping.
pub struct Bootstrap {
    /// The default account.
    pub default_account: String,
    /// The key that signs tokens and download URLs.
    pub token_key: Vec<u8>,
    /// A root key created now (id, secret): to be shown once, never logged.
    pub created_root_key: Option<(String, String)>,
}

fn random_string(len: usize, alphabet: &[u8]) -> String {
    let mut bytes = vec![0u8; len];
    getrandom::fill(&mut bytes).expect("the OS random generator works");
    bytes
        .iter()
        .map(|b| alphabet[*b as usize % alphabet.len()] as char)
        .collect()
}

/// Generate an access key pair (`AKIA…`, 40-character secret).
pub fn generate_key_pair(prefix: &str) -> (String, String) {
    let id = format!("{prefix}{}", random_string(16, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"));
    let secret = random_string(40, b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/");
    (id, secret)
}

/// Seal a secret for an access key row.
pub fn seal_secret(master: &MasterKey, access_key_id: &str, secret: &str) -> Vec<u8> {
    master.seal(secret.as_bytes(), &key_context(access_key_id))
}

/// Create an account (a random 12-digit id unless `account` is given) with
/// a new root access key; returns `(account, key id, secret)`. An existing
/// account gets one more root key.
pub async fn create_account(
    control: &dyn ControlStore,
    master: &MasterKey,
    account: Option<&str>,
) -> Result<(String, String, String), StoreError> {
    // A key sealed with another master key would never authenticate.
    if let Some(sealed) = control.server_secret_get("token-key").await? {
        master.open(&sealed, b"token-key").map_err(|_| master_key_differs())?;
    }
    let account = match account {
        Some(a) if a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit()) => a.to_string(),
        Some(a) => return Err(StoreError::Invalid(format!("an account id is 12 digits, not {a:?}"))),
        None => random_string(12, b"0123456789"),
    };
    control.account_ensure(&account).await?;
    let (id, secret) = generate_key_pair("AKIA");
    control
        .access_key_put(&AccessKeyRow {
            access_key_id: id.clone(),
            account: account.clone(),
            principal_arn: format!("arn:aws:iam::{account}:root"),
            principal_id: account.clone(),
            secret_sealed: seal_secret(master, &id, &secret),
            status: "Active".into(),
            session_token_hash: None,
            expires_at: None,
            created_at: kura_store::now_millis(),
        })
        .await?;
    Ok((account, id, secret))
}

/// The start-up error when the master key cannot unseal what the
/// deployment already sealed.
fn master_key_differs() -> StoreError {
    StoreError::Invalid(
        "the master key differs from the one that sealed this deployment's data (its secrets do not \
         unseal with it). Every node of a deployment must use the same master key: give them all \
         the same key file with KURA_MASTER_KEY_FILE (or --master-key-file), a copy of the first \
         node's"
            .into(),
    )
}

/// Make sure the token key, the default account and its root key exist,
/// after checking `master` is the key that sealed the deployment's data.
pub async fn bootstrap(
    control: &dyn ControlStore,
    master: &MasterKey,
    env: &BootstrapEnv,
) -> Result<Bootstrap, StoreError> {
    // The master key must be the one that sealed this deployment's data:
    // checked first, before anything is sealed with it. The token key is
    // the first secret any start seals, so whoever started first decides.
    let mut fresh = [0u8; 32];
    getrandom::fill(&mut fresh).expect("the OS random generator works");
    let sealed = control
        .server_secret_get_or_put("token-key", &master.seal(&fresh, b"token-key"))
        .await?;
    let token_key = master.open(&sealed, b"token-key").map_err(|_| master_key_differs())?;
    let account = match &env.account_id {
        Some(a) => {
            if a.len() != 12 || !a.bytes().all(|b| b.is_ascii_digit()) {
                return Err(StoreError::Invalid(format!(
                    "KURA_ACCOUNT_ID must be 12 digits, not {a:?}"
                )));
            }
            control
                .server_secret_get_or_put("default-account", a.as_bytes())
                .await?;
            a.clone()
        }
        None => {
            let generated = random_string(12, b"0123456789");
            let stored = control
                .server_secret_get_or_put("default-account", generated.as_bytes())
                .await?;
            String::from_utf8(stored).map_err(|_| StoreError::Corrupt("default account".into()))?
        }
    };
    control.account_ensure(&account).await?;
    let root_arn = format!("arn:aws:iam::{account}:root");
    let mut created = None;
    match (&env.root_access_key_id, &env.root_secret_access_key) {
        (Some(id), Some(secret)) => {
            let row = AccessKeyRow {
                access_key_id: id.clone(),
                account: account.clone(),
                principal_arn: root_arn,
                principal_id: account.clone(),
                secret_sealed: seal_secret(master, id, secret),
                status: "Active".into(),
                session_token_hash: None,
                expires_at: None,
                created_at: kura_store::now_millis(),
            };
            control.access_key_put(&row).await?;
            let stored = control
                .access_key_get(id)
                .await?
                .ok_or_else(|| StoreError::Corrupt("root key".into()))?;
            let opened = master
                .open(&stored.secret_sealed, &key_context(id))
                .map_err(|_| master_key_differs())?;
            if opened != secret.as_bytes() || stored.account != account {
                return Err(StoreError::Invalid(format!(
                    "access key {id} already exists with another secret or account; KURA_ROOT_SECRET_ACCESS_KEY cannot change it"
                )));
            }
        }
        (None, None) => {
            let marker = format!("root-key:{account}");
            let (id, secret) = generate_key_pair("AKIA");
            let stored = control.server_secret_get_or_put(&marker, id.as_bytes()).await?;
            if stored == id.as_bytes() {
                let row = AccessKeyRow {
                    access_key_id: id.clone(),
                    account: account.clone(),
                    principal_arn: root_arn,
                    principal_id: account.clone(),
                    secret_sealed: seal_secret(master, &id, &secret),
                    status: "Active".into(),
                    session_token_hash: None,
                    expires_at: None,
                    created_at: kura_store::now_millis(),
                };
                control.access_key_put(&row).await?;
                created = Some((id, secret));
            }
        }
        _ => {
            return Err(StoreError::Invalid(
                "set both KURA_ROOT_ACCESS_KEY_ID and KURA_ROOT_SECRET_ACCESS_KEY, or neither".into(),
            ))
        }
    }
    Ok(Bootstrap {
        default_account: account,
        token_key,
        created_root_key: created,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_addressing() {
        assert_eq!(
            account_from_host("123456789012.dkr.ecr.local:5000").as_deref(),
            Some("123456789012")
        );
        assert_eq!(
            account_from_host("123456789012.dkr.localhost").as_deref(),
            Some("123456789012")
        );
        assert_eq!(account_from_host("localhost:5000"), None);
        assert_eq!(account_from_host("12345.dkr.x"), None);
        assert_eq!(account_from_host("123456789012.ecr.x"), None);
    }

    #[test]
    fn generated_keys_look_like_aws_keys() {
        let (id, secret) = generate_key_pair("AKIA");
        assert_eq!(id.len(), 20);
        assert!(id.starts_with("AKIA"));
        assert_eq!(secret.len(), 40);
        assert!(!secret.contains(':'));
    }
}
