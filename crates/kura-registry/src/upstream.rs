//! The pull-through cache's seam: where a repository's content comes from
//! when a pull-through cache rule covers its name.
use bytes::Bytes;
use futures::stream::BoxStream;
use kura_oci::RepoName;
use std::sync::Arc;

/// Why the upstream could not answer.
#[derive(Debug, Clone)]
pub enum UpstreamError {
    /// Unreachable, timed out, or answered 5xx: `message` names the upstream and the problem.
    Unavailable { message: String },
    /// 429 from the upstream; `retry_after_secs` from its Retry-After, if any.
    TooManyRequests {
        message: String,
        retry_after_secs: Option<u64>,
    },
    /// 401/403 from the upstream, or the rule's credentials could not be read.
    Denied { message: String },
    /// The upstream answered something invalid (bad digest, bad media type, oversized manifest).
    Invalid { message: String },
}

/// A manifest as the upstream serves it.
pub struct UpstreamManifest {
    pub digest: String,
    pub media_type: String,
    pub body: Bytes,
}
/// What a HEAD of a manifest says.
pub struct UpstreamManifestHead {
    pub digest: String,
    pub media_type: String,
    pub size: u64,
}
/// A blob's bytes as they arrive; `size` from Content-Length when given.
pub struct UpstreamBlob {
    pub size: Option<u64>,
    pub body: BoxStream<'static, std::io::Result<Bytes>>,
}

/// One upstream repository (the rule's upstream registry + the upstream repository name).
#[async_trait::async_trait]
pub trait UpstreamRepo: Send + Sync {
    /// e.g. "registry-1.docker.io/library/nginx", for messages and logs.
    fn describe(&self) -> String;
    /// Ok(None): the upstream says it has no such manifest (404).
    async fn head_manifest(&self, reference: &str) -> Result<Option<UpstreamManifestHead>, UpstreamError>;
    async fn get_manifest(&self, reference: &str) -> Result<Option<UpstreamManifest>, UpstreamError>;
    async fn get_blob(&self, digest: &str) -> Result<Option<UpstreamBlob>, UpstreamError>;
}

/// Finds the upstream for a repository name of an account (the longest matching rule prefix).
#[async_trait::async_trait]
pub trait PullThroughSource: Send + Sync + 'static {
    /// Ok(None): no rule covers `name`.
    async fn upstream_for(
        &self,
        account: &str,
        name: &RepoName,
    ) -> Result<Option<Arc<dyn UpstreamRepo>>, UpstreamError>;
}
