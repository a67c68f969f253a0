//! Signed, expiring tokens.
//!
//! A token is `base64url(payload) + "." + base64url(HMAC-SHA256(key,
//! base64url(payload)))`, without padding. Only `A–Z a–z 0–9 - _ .` appear,
//! never `:`, so a token can be the password half of `AWS:<token>` that
//! docker and the AWS CLI split on the first `:`.
//!
//! [`issue`] and [`verify`] carry [`TokenClaims`] as JSON: the registry login
//! passwords that ECR's `GetAuthorizationToken` returns. [`issue_raw`] and
//! [`verify_raw`] sign arbitrary bytes, for other short-lived tokens (use a
//! different key, or a payload that cannot be mistaken for claims).
//!
//! Tokens are authenticated, not encrypted: anyone holding one can read its
//! claims.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Length of the HMAC-SHA256 tag, before base64.
const TAG_LEN: usize = 32;

/// Who a registry login token was issued to, and for how long.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenClaims {
    /// The 12-digit account the token gives access to.
    pub account: String,
    /// The ARN of the principal that asked for the token.
    pub principal_arn: String,
    /// The access key the token was requested with, so revoking the key
    /// revokes its tokens.
    pub access_key_id: String,
    /// Issue time, seconds since the Unix epoch.
    pub issued_at: u64,
    /// Expiry time, seconds since the Unix epoch: the token is refused from
    /// this second on.
    pub expires_at: u64,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not of the token form, or the signed payload is not valid claims.
    #[error("malformed token")]
    Malformed,
    /// The signature does not match: forged, altered, or another key.
    #[error("token signature does not match")]
    BadSignature,
    /// Authentic, but past its expiry time.
    #[error("token has expired")]
    Expired,
}

/// Issues a token carrying `claims`, signed with `key`.
pub fn issue(key: &[u8], claims: &TokenClaims) -> String {
    let json = serde_json::to_vec(claims).expect("claims serialize to JSON");
    issue_raw(key, &json)
}

/// Checks a token made by [`issue`] with the same key and returns its
/// claims.
///
/// # Errors
///
/// [`TokenError::Malformed`] if it is not a token, [`TokenError::BadSignature`]
/// if the signature does not match (compared in constant time, before the
/// claims are parsed), [`TokenError::Expired`] if `now_epoch_secs` is at or
/// past `expires_at`.
pub fn verify(key: &[u8], token: &str, now_epoch_secs: u64) -> Result<TokenClaims, TokenError> {
    let payload = verify_raw(key, token)?;
    let claims: TokenClaims = serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
    if now_epoch_secs >= claims.expires_at {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

/// The claims a token carries, WITHOUT checking its signature or expiry:
/// only for saying who a refused token claimed to be (in a log line). Never
/// decide anything on them.
pub fn unverified_claims(token: &str) -> Option<TokenClaims> {
    let (body, _) = token.split_once('.')?;
    let payload = URL_SAFE_NO_PAD.decode(body).ok()?;
    serde_json::from_slice(&payload).ok()
}

/// Signs arbitrary bytes into a token: `base64url(payload) + "." +
/// base64url(HMAC-SHA256(key, base64url(payload)))`, no padding.
pub fn issue_raw(key: &[u8], payload: &[u8]) -> String {
    let body = URL_SAFE_NO_PAD.encode(payload);
    let tag = mac(key, body.as_bytes()).finalize().into_bytes();
    let mut token = body;
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(tag, &mut token);
    token
}

/// Checks a token made by [`issue_raw`] and returns its payload. Expiry, if
/// any, is the caller's to check.
///
/// # Errors
///
/// [`TokenError::Malformed`] if it is not of the token form,
/// [`TokenError::BadSignature`] if the signature does not match.
pub fn verify_raw(key: &[u8], token: &str) -> Result<Vec<u8>, TokenError> {
    let (body, tag) = token.split_once('.').ok_or(TokenError::Malformed)?;
    if tag.contains('.') {
        return Err(TokenError::Malformed);
    }
    let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| TokenError::Malformed)?;
    if tag.len() != TAG_LEN {
        return Err(TokenError::Malformed);
    }
    mac(key, body.as_bytes())
        .verify_slice(&tag)
        .map_err(|_| TokenError::BadSignature)?;
    URL_SAFE_NO_PAD.decode(body).map_err(|_| TokenError::Malformed)
}

fn mac(key: &[u8], data: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn claims() -> TokenClaims {
        TokenClaims {
            account: "123456789012".into(),
            principal_arn: "arn:aws:iam::123456789012:user/ci:deploy".into(),
            access_key_id: "AKIAKURAEXAMPLE00001".into(),
            issued_at: 1_768_472_430,
            expires_at: 1_768_472_430 + 12 * 3600,
        }
    }

    #[test]
    fn round_trip() {
        let c = claims();
        let token = issue(KEY, &c);
        assert_eq!(verify(KEY, &token, c.issued_at).unwrap(), c);
        assert_eq!(verify(KEY, &token, c.expires_at - 1).unwrap(), c);
    }

    #[test]
    fn unverified_claims_read_any_token_of_the_form() {
        let c = claims();
        assert_eq!(unverified_claims(&issue(KEY, &c)), Some(c.clone()));
        assert_eq!(unverified_claims(&issue(b"another key", &c)), Some(c));
        assert_eq!(unverified_claims("not a token"), None);
        assert_eq!(unverified_claims(&issue_raw(KEY, b"[1]")), None);
    }

    #[test]
    fn never_contains_a_colon_or_padding() {
        let mut c = claims();
        for i in 0..200u64 {
            c.issued_at = i;
            c.account = ":".repeat(i as usize % 7);
            let token = issue(KEY, &c);
            assert!(!token.contains(':'), "{token}");
            assert!(!token.contains('='), "{token}");
            assert!(
                token.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
                "{token}"
            );
            assert_eq!(token.matches('.').count(), 1);
        }
    }

    #[test]
    fn expired() {
        let c = claims();
        let token = issue(KEY, &c);
        assert_eq!(verify(KEY, &token, c.expires_at), Err(TokenError::Expired));
        assert_eq!(verify(KEY, &token, u64::MAX), Err(TokenError::Expired));
    }

    #[test]
    fn forged_claims_are_refused() {
        let c = claims();
        let token = issue(KEY, &c);
        let (body, tag) = token.split_once('.').unwrap();
        // Altered claims with the original signature.
        let mut json = URL_SAFE_NO_PAD.decode(body).unwrap();
        let at = json.iter().position(|&b| b == b'1').unwrap();
        json[at] = b'9';
        let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(&json));
        assert_eq!(verify(KEY, &forged, 0), Err(TokenError::BadSignature));
        // Every single-bit flip of the decoded claims.
        let json = URL_SAFE_NO_PAD.decode(body).unwrap();
        for i in 0..json.len() * 8 {
            let mut bad = json.clone();
            bad[i / 8] ^= 1 << (i % 8);
            let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(&bad));
            assert_eq!(verify(KEY, &forged, 0), Err(TokenError::BadSignature));
        }
    }

    #[test]
    fn forged_signatures_are_refused() {
        let token = issue(KEY, &claims());
        let (body, tag) = token.split_once('.').unwrap();
        let sig = URL_SAFE_NO_PAD.decode(tag).unwrap();
        for i in 0..sig.len() * 8 {
            let mut bad = sig.clone();
            bad[i / 8] ^= 1 << (i % 8);
            let forged = format!("{body}.{}", URL_SAFE_NO_PAD.encode(&bad));
            assert_eq!(verify(KEY, &forged, 0), Err(TokenError::BadSignature));
        }
        // Another key.
        assert_eq!(verify(b"another key", &token, 0), Err(TokenError::BadSignature));
        // Flipping characters of the token text never verifies.
        let bytes = token.as_bytes();
        for i in 0..bytes.len() {
            let mut bad = bytes.to_vec();
            bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
            let bad = String::from_utf8(bad).unwrap();
            if bad != token {
                assert!(verify(KEY, &bad, 0).is_err(), "position {i}");
            }
        }
    }

    #[test]
    fn malformed() {
        let token = issue(KEY, &claims());
        for bad in [
            "",
            ".",
            "abc",
            "a.b.c",
            &format!("{token}.x"),
            &format!("{token}="),
            &token.replace('.', ":"),
        ] {
            assert_eq!(verify(KEY, bad, 0), Err(TokenError::Malformed), "{bad:?}");
        }
        // Authentic but not claims.
        let raw = issue_raw(KEY, b"not json");
        assert_eq!(verify(KEY, &raw, 0), Err(TokenError::Malformed));
        assert_eq!(verify_raw(KEY, &raw).unwrap(), b"not json");
    }
}
