//! The pull-through cache in the binary: `kura serve`'s flags for reaching
//! upstream registries, the rules' credentials read from Secrets Manager, and
//! the registry's fetch-on-miss source.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use kura_ecr::Ecr;
use kura_pullthrough::{ClientConfig, CredentialSource};
use kura_registry::Registry;
use kura_secrets::SecretReader;

/// `kura serve`'s flags for the upstreams of pull-through cache rules.
#[derive(clap::Args, Clone, Debug)]
pub struct PullThroughFlags {
    /// PEM certificates trusted for upstream registries besides the
    /// system's roots (private upstreams with their own CA).
    #[arg(long, env = "KURA_PULL_THROUGH_CA_BUNDLE")]
    pub pull_through_ca_bundle: Option<PathBuf>,
    /// An upstream that does not answer a request (headers, or the next
    /// chunk of a body) within this long fails; cached content is served.
    #[arg(long, env = "KURA_PULL_THROUGH_TIMEOUT", default_value = "30s", value_parser = crate::nonzero_duration)]
    pub pull_through_timeout: Duration,
}

/// A rule's credentials are a Secrets Manager secret of the rule's account.
struct Secrets(SecretReader);

#[async_trait::async_trait]
impl CredentialSource for Secrets {
    async fn secret_string(&self, account: &str, arn: &str) -> Result<Option<String>, String> {
        self.0.read_secret_string(account, arn).await.map_err(|e| e.to_string())
    }
}

/// Give the rules their credentials and client settings, and the registry its upstreams.
pub fn install(ecr: &Ecr, registry: &Registry, secrets: SecretReader, flags: &PullThroughFlags) -> anyhow::Result<()> {
    let pt = ecr.pull_through().clone();
    pt.set_credentials(Arc::new(Secrets(secrets)));
    pt.set_client_config(ClientConfig {
        connect_timeout: flags.pull_through_timeout.min(Duration::from_secs(10)),
        response_timeout: flags.pull_through_timeout,
        idle_timeout: flags.pull_through_timeout,
        ca_bundle: flags.pull_through_ca_bundle.clone(),
        ..ClientConfig::default()
    })
    .map_err(anyhow::Error::msg)
    .context("the pull-through cache's upstream client (--pull-through-ca-bundle)")?;
    registry.set_pull_through(pt);
    Ok(())
}
