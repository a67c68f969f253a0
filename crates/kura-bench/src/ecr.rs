//! Kura's ECR API (AWS JSON 1.1), signed with SigV4 by `kura_auth::sigv4::sign`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use base64::Engine;
use http::{HeaderMap, HeaderValue};
use kura_auth::sigv4::{self, RequestParts};
use serde_json::Value;
use sha2::{Digest, Sha256};

const TARGET: &str = "AmazonEC2ContainerRegistry_V20150921";

#[derive(Clone)]
pub struct Ecr {
    pub http: reqwest::Client,
    /// `127.0.0.1:PORT`
    pub host: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub region: String,
}

impl Ecr {
    /// Calls one operation; returns the parsed answer and the request's latency
    /// (signing excluded).
    pub async fn call_timed(&self, op: &str, body: &Value) -> anyhow::Result<(Value, Duration)> {
        self.call_service(TARGET, "ecr", op, body).await
    }

    /// Calls one operation of another JSON 1.1 service on the same listener (e.g.
    /// `AWSEvents`, signed for `events`).
    pub async fn call_service(
        &self,
        target: &str,
        service: &str,
        op: &str,
        body: &Value,
    ) -> anyhow::Result<(Value, Duration)> {
        let body = serde_json::to_vec(body)?;
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_str(&self.host)?);
        headers.insert("content-type", HeaderValue::from_static("application/x-amz-json-1.1"));
        headers.insert("x-amz-target", HeaderValue::from_str(&format!("{target}.{op}"))?);
        headers.insert("x-amz-date", HeaderValue::from_str(&amz_date(SystemTime::now()))?);
        let payload = hex::encode(Sha256::digest(&body));
        let auth = sigv4::sign(
            &RequestParts {
                method: "POST",
                path: "/",
                query: None,
                headers: &headers,
                payload_sha256: &payload,
            },
            &self.access_key_id,
            &self.secret_access_key,
            &self.region,
            service,
        )
        .map_err(|e| anyhow!("signing {op}: {e}"))?;
        headers.insert("authorization", HeaderValue::from_str(&auth)?);
        let started = Instant::now();
        let resp = self
            .http
            .post(format!("http://{}/", self.host))
            .headers(headers)
            .body(body)
            .send()
            .await
            .with_context(|| format!("{target}.{op}"))?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        let took = started.elapsed();
        if !status.is_success() {
            bail!("{target}.{op}: {status}: {}", String::from_utf8_lossy(&bytes));
        }
        Ok((serde_json::from_slice(&bytes)?, took))
    }

    pub async fn call(&self, op: &str, body: &Value) -> anyhow::Result<Value> {
        Ok(self.call_timed(op, body).await?.0)
    }

    /// A ROOT creation template with CREATE_ON_PUSH: any push creates its repository.
    pub async fn allow_create_on_push(&self) -> anyhow::Result<()> {
        self.call(
            "CreateRepositoryCreationTemplate",
            &serde_json::json!({"prefix": "ROOT", "appliedFor": ["CREATE_ON_PUSH"], "description": "kura-bench"}),
        )
        .await?;
        Ok(())
    }

    /// The registry password for user `AWS` (GetAuthorizationToken).
    pub async fn registry_token(&self) -> anyhow::Result<String> {
        let v = self.call("GetAuthorizationToken", &serde_json::json!({})).await?;
        let b64 = v
            .pointer("/authorizationData/0/authorizationToken")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("GetAuthorizationToken: no token in {v}"))?;
        let plain = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64)?)?;
        let (user, token) = plain
            .split_once(':')
            .ok_or_else(|| anyhow!("token is not user:password"))?;
        if user != "AWS" {
            bail!("token user is {user}, not AWS");
        }
        Ok(token.to_string())
    }
}

/// `YYYYMMDD'T'HHMMSS'Z'` in UTC.
pub fn amz_date(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s) = civil(t);
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
}

/// `YYYY-MM-DD HH:MM UTC`
pub fn human_date(t: SystemTime) -> String {
    let (y, mo, d, h, mi, _) = civil(t);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02} UTC")
}

/// UTC calendar fields of a time (Howard Hinnant's days-to-civil algorithm).
fn civil(t: SystemTime) -> (i64, u32, u32, u32, u32, u32) {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        ((rem % 3600) / 60) as u32,
        (rem % 60) as u32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_dates() {
        let t = UNIX_EPOCH + Duration::from_secs(1_440_938_160); // 2015-08-30T12:36:00Z
        assert_eq!(amz_date(t), "20150830T123600Z");
        assert_eq!(
            amz_date(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "20000229T000000Z"
        );
        assert_eq!(human_date(t), "2015-08-30 12:36 UTC");
    }
}
