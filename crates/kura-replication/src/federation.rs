//! How deployments of one federation trust each other.
//!
//! Every deployment is given the same secret (`--federation-key-file`).
//! The secret itself never travels: for each direction (source region →
//! destination region) both sides derive a signing key from it, HMAC-SHA256
//! of the secret over `kura-federation-v1|<source>|<destination>`, and the
//! source signs a fresh short-lived token per request (the signed-token
//! format of `kura_auth::token`). A token names the source region and
//! account, the destination region, account and repository, and expires
//! after [`TOKEN_TTL_SECS`]; the destination accepts it only for that
//! account and repository, and only when it names the destination's own
//! region. A token captured in flight therefore replays for minutes, into
//! one repository, as the source account, which the destination's
//! policies still govern.

use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};

/// How long a token is valid.
pub const TOKEN_TTL_SECS: u64 = 300;
/// Clock skew tolerated between deployments.
pub const MAX_SKEW_SECS: u64 = 300;
/// The `Authorization` scheme.
pub const SCHEME: &str = "KuraFederation";
/// The shortest secret accepted.
pub const MIN_KEY_LEN: usize = 32;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The federation's shared secret.
#[derive(Clone)]
pub struct FederationKey(Vec<u8>);

impl std::fmt::Debug for FederationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FederationKey(..)")
    }
}

/// What a token says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Format version (1).
    pub v: u32,
    /// Source region.
    pub src: String,
    /// Destination region.
    pub dst: String,
    /// Source account.
    pub sa: String,
    /// Destination account.
    pub da: String,
    /// Destination repository.
    pub repo: String,
    /// Issued at (s since the epoch).
    pub iat: u64,
    /// Expires at (s since the epoch).
    pub exp: u64,
    /// A random id (for logs).
    pub jti: String,
}

/// Why a token is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefused {
    /// Not a token, or its signature does not match (another key).
    #[error("the federation token is malformed or not signed with this federation's key")]
    BadSignature,
    /// Expired or issued in the future.
    #[error("the federation token has expired or is not valid yet")]
    Expired,
    /// Meant for another region, account or repository.
    #[error("the federation token was issued for {0}")]
    WrongAudience(String),
}

impl FederationKey {
    /// A key from the file's bytes (trailing whitespace trimmed).
    pub fn from_bytes(bytes: &[u8]) -> Result<FederationKey, String> {
        let trimmed = bytes.trim_ascii_end();
        if trimmed.len() < MIN_KEY_LEN {
            return Err(format!(
                "the federation key must be at least {MIN_KEY_LEN} bytes (got {}); \
                 make one with: head -c 32 /dev/urandom | base64 > federation.key",
                trimmed.len()
            ));
        }
        Ok(FederationKey(trimmed.to_vec()))
    }

    /// Read the key file.
    pub fn load(path: &std::path::Path) -> Result<FederationKey, String> {
        let bytes =
            std::fs::read(path).map_err(|e| format!("cannot read the federation key {}: {e}", path.display()))?;
        FederationKey::from_bytes(&bytes)
    }

    fn direction_key(&self, src: &str, dst: &str) -> Vec<u8> {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(format!("kura-federation-v1|{src}|{dst}").as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    /// A token for one request from `src` (region, account) into `dst`
    /// (region, account, repository), valid from `now` (s).
    pub fn issue(&self, src: (&str, &str), dst: (&str, &str, &str), now: u64) -> String {
        let claims = Claims {
            v: 1,
            src: src.0.to_string(),
            sa: src.1.to_string(),
            dst: dst.0.to_string(),
            da: dst.1.to_string(),
            repo: dst.2.to_string(),
            iat: now,
            exp: now + TOKEN_TTL_SECS,
            jti: uuid::Uuid::new_v4().simple().to_string(),
        };
        let payload = serde_json::to_vec(&claims).expect("claims serialise");
        kura_auth::token::issue_raw(&self.direction_key(&claims.src, &claims.dst), &payload)
    }

    /// Check a token received by region `own_region` at `now` (s): signed
    /// with the key of its (source → this region) direction, within its
    /// lifetime, and naming this region.
    pub fn verify(&self, token: &str, own_region: &str, now: u64) -> Result<Claims, TokenRefused> {
        // The source region is read before the signature is checked, only to
        // pick the key the signature must match.
        let (body, _) = token.split_once('.').ok_or(TokenRefused::BadSignature)?;
        use base64::Engine as _;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| TokenRefused::BadSignature)?;
        let unverified: Claims = serde_json::from_slice(&raw).map_err(|_| TokenRefused::BadSignature)?;
        let payload = kura_auth::token::verify_raw(&self.direction_key(&unverified.src, own_region), token)
            .map_err(|_| TokenRefused::BadSignature)?;
        let claims: Claims = serde_json::from_slice(&payload).map_err(|_| TokenRefused::BadSignature)?;
        if claims.v != 1 {
            return Err(TokenRefused::BadSignature);
        }
        if claims.dst != own_region {
            return Err(TokenRefused::WrongAudience(format!("region {}", claims.dst)));
        }
        if claims.exp <= now || claims.iat > now + MAX_SKEW_SECS || claims.exp - claims.iat > TOKEN_TTL_SECS {
            return Err(TokenRefused::Expired);
        }
        Ok(claims)
    }
}

/// Seconds since the epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> FederationKey {
        FederationKey::from_bytes(&[b; 40]).unwrap()
    }

    #[test]
    fn round_trip_and_refusals() {
        let k = key(7);
        let now = 1_800_000_000;
        let t = k.issue(
            ("us-east-1", "111111111111"),
            ("eu-west-1", "222222222222", "prod/api"),
            now,
        );
        let c = k.verify(&t, "eu-west-1", now + 10).unwrap();
        assert_eq!(
            (c.sa.as_str(), c.da.as_str(), c.repo.as_str()),
            ("111111111111", "222222222222", "prod/api")
        );
        // Another federation's key.
        assert_eq!(key(8).verify(&t, "eu-west-1", now), Err(TokenRefused::BadSignature));
        // Presented to another region: the direction key differs.
        assert_eq!(k.verify(&t, "ap-northeast-1", now), Err(TokenRefused::BadSignature));
        // Expired.
        assert_eq!(
            k.verify(&t, "eu-west-1", now + TOKEN_TTL_SECS),
            Err(TokenRefused::Expired)
        );
        // Claims edited after signing (another source region).
        let (body, sig) = t.split_once('.').unwrap();
        use base64::Engine as _;
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut c2: Claims = serde_json::from_slice(&e.decode(body).unwrap()).unwrap();
        c2.sa = "333333333333".into();
        let forged = format!("{}.{sig}", e.encode(serde_json::to_vec(&c2).unwrap()));
        assert_eq!(k.verify(&forged, "eu-west-1", now), Err(TokenRefused::BadSignature));
        assert!(k.verify("garbage", "eu-west-1", now).is_err());
        assert!(FederationKey::from_bytes(b"short").is_err());
    }
}
