//! Another region: a Kura deployment named by `--peer-region NAME=URL`,
//! reached over the federation protocol ([`crate::server`]) with a fresh
//! token per request ([`crate::federation`]).

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use kura_registry::service::Body;
use serde_json::{json, Value};

use crate::federation::{now_secs, FederationKey, SCHEME};
use crate::sink::{self, ReplError, Sink};

/// The federation protocol's path prefix.
pub const PREFIX: &str = "/kura/federation/v1";

/// The deployments this one knows: region → base URL, and the shared key.
#[derive(Clone)]
pub struct Peers {
    urls: BTreeMap<String, String>,
    key: Option<FederationKey>,
    client: reqwest::Client,
    region: String,
}

impl Peers {
    /// Peers of the deployment serving `region`. `timeout` bounds each
    /// request's connect and each wait for bytes (a large layer may take
    /// longer as a whole, as long as it keeps moving).
    pub fn new(region: &str, urls: BTreeMap<String, String>, key: Option<FederationKey>, timeout: Duration) -> Peers {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .connect_timeout(timeout)
            .read_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client with the process's crypto provider");
        Peers {
            urls: urls
                .into_iter()
                .map(|(r, u)| (r, u.trim_end_matches('/').to_string()))
                .collect(),
            key,
            client,
            region: region.to_string(),
        }
    }

    /// Parse `NAME=URL` settings (flags, or one comma-separated variable).
    pub fn parse_settings(values: &[String]) -> Result<BTreeMap<String, String>, String> {
        let mut out = BTreeMap::new();
        for v in values
            .iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
        {
            let (name, url) = v
                .split_once('=')
                .ok_or_else(|| format!("--peer-region {v:?}: expected NAME=URL"))?;
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return Err(format!("--peer-region {v:?}: {name:?} is not a region name"));
            }
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!(
                    "--peer-region {v:?}: the URL must start with http:// or https://"
                ));
            }
            out.insert(name.to_string(), url.to_string());
        }
        Ok(out)
    }

    /// This deployment's region.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The regions it knows.
    pub fn regions(&self) -> impl Iterator<Item = &str> {
        self.urls.keys().map(String::as_str)
    }

    /// A sink for `account` in region `region`, replicating from `source_account`.
    pub fn sink(&self, region: &str, account: &str, source_account: &str) -> Result<PeerSink, ReplError> {
        let Some(base) = self.urls.get(region) else {
            return Err(ReplError::failed(
                sink::REGION_UNKNOWN,
                format!(
                    "this deployment ({}) knows no region {region} (--peer-region {region}=URL)",
                    self.region
                ),
            ));
        };
        let Some(key) = self.key.clone() else {
            return Err(ReplError::failed(
                sink::AUTH_FAILED,
                "replication to another region needs the federation key (--federation-key-file)",
            ));
        };
        Ok(PeerSink {
            client: self.client.clone(),
            base: base.clone(),
            key,
            source: (self.region.clone(), source_account.to_string()),
            region: region.to_string(),
            account: account.to_string(),
        })
    }
}

/// One destination registry in another region.
pub struct PeerSink {
    client: reqwest::Client,
    base: String,
    key: FederationKey,
    source: (String, String),
    region: String,
    account: String,
}

/// A failure code the destination may answer, as the constant.
fn code(c: &str) -> &'static str {
    match c {
        sink::PERMISSION_DENIED => sink::PERMISSION_DENIED,
        sink::TAG_IMMUTABLE => sink::TAG_IMMUTABLE,
        sink::REGISTRY_NOT_FOUND => sink::REGISTRY_NOT_FOUND,
        sink::AUTH_FAILED => sink::AUTH_FAILED,
        _ => sink::REJECTED,
    }
}

impl PeerSink {
    fn url(&self, path: &str) -> String {
        format!("{}{PREFIX}{path}", self.base)
    }

    fn authorization(&self, repository: &str) -> String {
        let token = self.key.issue(
            (&self.source.0, &self.source.1),
            (&self.region, &self.account, repository),
            now_secs(),
        );
        format!("{SCHEME} {token}")
    }

    /// `path` with the account, the repository and `extra` as its query.
    fn url_with(&self, path: &str, repository: &str, extra: &[(&str, &str)]) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("account", &self.account);
        q.append_pair("repository", repository);
        for (k, v) in extra {
            q.append_pair(k, v);
        }
        format!("{}?{}", self.url(path), q.finish())
    }

    /// Send one request and read its JSON answer, classifying failures.
    async fn send(&self, req: reqwest::RequestBuilder, repository: &str) -> Result<Value, ReplError> {
        let resp = req
            .header("authorization", self.authorization(repository))
            .send()
            .await
            .map_err(|e| ReplError::Retry(format!("{} ({}): {e}", self.region, self.base)))?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        let c = body["code"].as_str().unwrap_or_default().to_string();
        let message = body["message"]
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| format!("HTTP {status}"));
        let message = format!("{}: {message}", self.region);
        if c == "UPLOAD_UNKNOWN" {
            return Err(ReplError::UploadLost(message));
        }
        if status.as_u16() == 401 {
            return Err(ReplError::failed(sink::AUTH_FAILED, message));
        }
        if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 || c == "RETRY" {
            return Err(ReplError::Retry(message));
        }
        Err(ReplError::failed(code(&c), message))
    }
}

#[async_trait]
impl Sink for PeerSink {
    async fn prepare(&self, repository: &str) -> Result<(), ReplError> {
        let req = self
            .client
            .post(self.url("/prepare"))
            .json(&json!({"account": self.account, "repository": repository}));
        self.send(req, repository).await.map(|_| ())
    }

    async fn missing_blobs(&self, repository: &str, blobs: &[String]) -> Result<Vec<String>, ReplError> {
        let mut missing = Vec::new();
        // Bounded requests: at most 1,000 digests each.
        for chunk in blobs.chunks(1000) {
            let req = self.client.post(self.url("/blobs/missing")).json(&json!({
                "account": self.account, "repository": repository, "digests": chunk,
            }));
            let v = self.send(req, repository).await?;
            missing.extend(
                v["missing"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|d| d.as_str())
                    .filter(|d| chunk.iter().any(|c| c == d))
                    .map(String::from),
            );
        }
        Ok(missing)
    }

    async fn upload_start(&self, repository: &str) -> Result<String, ReplError> {
        let req = self
            .client
            .post(self.url("/uploads"))
            .json(&json!({"account": self.account, "repository": repository}));
        let v = self.send(req, repository).await?;
        v["uploadId"]
            .as_str()
            .map(String::from)
            .ok_or_else(|| ReplError::Retry(format!("{}: no upload id in the answer", self.region)))
    }

    async fn upload_offset(&self, repository: &str, id: &str) -> Result<u64, ReplError> {
        let req = self
            .client
            .get(self.url_with(&format!("/uploads/{id}"), repository, &[]));
        let v = self.send(req, repository).await?;
        v["offset"]
            .as_u64()
            .ok_or_else(|| ReplError::Retry(format!("{}: no offset in the answer", self.region)))
    }

    async fn upload_append(
        &self,
        repository: &str,
        id: &str,
        offset: u64,
        len: u64,
        body: Body,
    ) -> Result<u64, ReplError> {
        let off = offset.to_string();
        let req = self
            .client
            .patch(self.url_with(&format!("/uploads/{id}"), repository, &[("offset", &off)]))
            .header("content-length", len)
            .body(reqwest::Body::wrap_stream(body));
        let v = self.send(req, repository).await?;
        v["offset"]
            .as_u64()
            .ok_or_else(|| ReplError::Retry(format!("{}: no offset in the answer", self.region)))
    }

    async fn upload_finish(&self, repository: &str, id: &str, digest: &str) -> Result<(), ReplError> {
        let req = self
            .client
            .put(self.url_with(&format!("/uploads/{id}"), repository, &[("digest", digest)]));
        self.send(req, repository).await.map(|_| ())
    }

    async fn put_manifest(
        &self,
        repository: &str,
        digest: &str,
        media_type: &str,
        body: Vec<u8>,
        tags: &[String],
    ) -> Result<(), ReplError> {
        let mut extra = vec![("digest", digest)];
        extra.extend(tags.iter().map(|t| ("tag", t.as_str())));
        let req = self
            .client
            .put(self.url_with("/manifests", repository, &extra))
            .header("content-type", media_type)
            .body(body);
        self.send(req, repository).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_settings() {
        let m = Peers::parse_settings(&["eu-west-1=http://a:1, ap-northeast-1=https://b".into()]).unwrap();
        assert_eq!(m["eu-west-1"], "http://a:1");
        assert_eq!(m["ap-northeast-1"], "https://b");
        assert!(Peers::parse_settings(&["eu-west-1".into()]).is_err());
        assert!(Peers::parse_settings(&["EU=http://a".into()]).is_err());
        assert!(Peers::parse_settings(&["eu-west-1=ftp://a".into()]).is_err());
    }
}
