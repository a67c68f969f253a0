//! SigV4 authentication of API requests against the control store's
//! access keys, in two phases: the headers (before any byte of the body is
//! read), then the signature over the body's hash.

use std::sync::Arc;
use std::time::SystemTime;

use http::{HeaderValue, StatusCode};
use kura_auth::seal::MasterKey;
use kura_auth::sigv4::{self, RequestParts, SigV4Error};
use kura_store::ControlStore;
use sha2::Digest as _;

use crate::caller::Caller;
use crate::error::{AwsError, AwsResult};

/// Checks API signatures: the access keys of the control store, their
/// secrets sealed with the master key, and this deployment's region (what a
/// regional service's requests must be signed for).
#[derive(Clone)]
pub struct Authenticator {
    control: Arc<dyn ControlStore>,
    master: MasterKey,
    region: String,
}

impl Authenticator {
    /// An authenticator over `control`'s keys.
    pub fn new(control: Arc<dyn ControlStore>, master: MasterKey, region: &str) -> Self {
        Authenticator {
            control,
            master,
            region: region.to_string(),
        }
    }

    /// The region regional services are signed for.
    pub fn region(&self) -> &str {
        &self.region
    }
}

/// An API request whose headers passed [`Authenticator::authenticate_headers`]: what
/// its signature claims and the secret to check it with, until
/// [`Authenticator::authenticate_body`] has the body's hash. Not `Debug`: it holds the
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
fn log_auth_failure(parts: &http::request::Parts, claimed: Option<&(String, Option<String>)>, e: &AwsError) {
    let source = crate::client::source_ip(&parts.extensions).map_or_else(|| "unknown".to_string(), |ip| ip.to_string());
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
pub fn printable(s: &str) -> String {
    s.chars()
        .take(128)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}

fn sigv4_error(e: SigV4Error) -> AwsError {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::FORBIDDEN);
    AwsError::new(e.aws_error_type(), e.message()).with_status(status)
}

/// What an unknown access key (or one whose owner is gone) gets.
pub fn unrecognized() -> AwsError {
    AwsError::new(
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
    )
}

/// The sealing context of an access key's secret.
pub fn key_context(access_key_id: &str) -> Vec<u8> {
    format!("access-key:{access_key_id}").into_bytes()
}

/// Hash of a session token as stored with temporary credentials.
pub fn session_token_hash(token: &str) -> String {
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

impl Authenticator {
    /// Verify an API request's SigV4 signature over a body already in
    /// memory and find its principal: [`Self::authenticate_headers`] then
    /// [`Self::authenticate_body`]. `service` is the SigV4 signing name (`ecr`,
    /// `ecr-public`, `iam`, `sts`).
    pub async fn authenticate(&self, parts: &http::request::Parts, body: &[u8], service: &str) -> AwsResult<Caller> {
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
    ) -> AwsResult<SignedRequest> {
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
    ) -> AwsResult<SignedRequest> {
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
                return Err(AwsError::new(
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
                AwsError::server()
            })?;
        let secret = String::from_utf8(secret).map_err(|_| AwsError::server())?;
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
    ) -> AwsResult<Caller> {
        let global = matches!(service, "iam" | "sts" | "ecr-public");
        self.authenticate_body_in(parts, signed, payload_sha256, service, global)
    }

    /// [`Self::authenticate_body`] for a service that says itself whether it
    /// is global (`any_region`: signed for any region) or regional (signed
    /// for this deployment's region).
    pub fn authenticate_body_in(
        &self,
        parts: &http::request::Parts,
        signed: SignedRequest,
        payload_sha256: &str,
        service: &str,
        any_region: bool,
    ) -> AwsResult<Caller> {
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
        let region = if any_region {
            parsed.region.as_str()
        } else {
            self.region.as_str()
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
}

fn parse_unverified(parts: &http::request::Parts) -> Option<sigv4::ParsedAuth> {
    let req = RequestParts {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query(),
        headers: &parts.headers,
        payload_sha256: "",
    };
    sigv4::parse(&req).ok()
}

/// The signing name a request's credential scope claims, read without
/// checking anything (to answer a refusal in the claimed service's format).
pub fn claimed_service(parts: &http::request::Parts) -> Option<String> {
    parse_unverified(parts).map(|p| p.service)
}

/// The access key id a request claims, read without checking anything (for
/// the record of a refused call).
pub fn claimed_access_key(parts: &http::request::Parts) -> Option<String> {
    parse_unverified(parts).map(|p| p.access_key_id)
}

/// A random string of `len` characters from `alphabet`.
pub fn random_string(len: usize, alphabet: &[u8]) -> String {
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
