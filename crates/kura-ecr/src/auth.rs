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
use kura_auth::token::{self, TokenClaims, TokenError};
use kura_registry::http::AccountId;
use kura_registry::service::CatalogFilter;
use kura_registry::DataRequest;
use kura_store::control::AccessKeyRow;
use kura_store::{ControlStore, StoreError};
use serde::{Deserialize, Serialize};

pub use kura_aws::caller::Caller;
pub use kura_aws::sigv4::{generate_key_pair, seal_secret};
use kura_aws::sigv4::{key_context, printable, random_string};
pub use kura_aws::sigv4::{session_token_hash, SignedRequest};

use crate::error::EcrResult;
use crate::Ecr;

pub use kura_aws::caller::TOKEN_LIFETIME_SECS;
/// How long a download URL lives.
pub const DOWNLOAD_URL_SECS: u64 = 3600;

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
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
    /// memory and find its principal (see [`kura_aws::Authenticator`]).
    pub async fn authenticate(&self, parts: &http::request::Parts, body: &[u8], service: &str) -> EcrResult<Caller> {
        self.auth.authenticate(parts, body, service).await
    }

    /// The first phase of authenticating an API request, from its headers
    /// alone ([`kura_aws::Authenticator::authenticate_headers`]).
    pub async fn authenticate_headers(
        &self,
        parts: &http::request::Parts,
        services: &[&str],
    ) -> EcrResult<SignedRequest> {
        self.auth.authenticate_headers(parts, services).await
    }

    /// The second phase: the signature over the body's hash
    /// ([`kura_aws::Authenticator::authenticate_body`]).
    pub fn authenticate_body(
        &self,
        parts: &http::request::Parts,
        signed: SignedRequest,
        payload_sha256: &str,
        service: &str,
    ) -> EcrResult<Caller> {
        self.auth.authenticate_body(parts, signed, payload_sha256, service)
    }

    /// Issue a registry token for a caller: the password docker uses with user `AWS`.
    pub fn issue_token(&self, caller: &Caller, account: &str) -> (String, u64) {
        caller.registry_token(&self.token_key, account)
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

pub use kura_public::ANONYMOUS_TOKEN;

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
    let decision = match ecr.authorize_data(&caller, &account, &mut data, source_ip).await {
        // A pull the pull-through cache would answer from its upstream also needs the import.
        Ok(Ok(())) => match crate::ptc_gate::import_denial(&ecr, &caller, &account, &data, source_ip).await {
            Ok(None) => Ok(Ok(())),
            Ok(Some(denial)) => Ok(Err(denial)),
            Err(e) => Err(e),
        },
        other => other,
    };
    match decision {
        Ok(Ok(())) => {
            if data.endpoint == kura_registry::endpoint::Endpoint::Catalog {
                let filter = crate::authz::DataCatalogFilter {
                    authz: ecr.authz.clone(),
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
            let read = call.is_read();
            let resp = pass(req, next, account, data).await;
            let record = call.record(&ecr.config.region, started, &caller, source_ip, agent, resp.status());
            if read {
                hook.recorder.record_data(&record).await;
            } else {
                hook.recorder.record(&record).await;
            }
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
