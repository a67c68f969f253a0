//! The pull-through cache in the binary: `kura serve`'s flags for how the
//! upstream client trusts and waits for upstream registries, the rules'
//! credentials read from Secrets Manager, and the registry's fetch-on-miss
//! source.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use kura_ecr::Ecr;
use kura_pullthrough::CredentialSource;
use kura_registry::Registry;
use kura_secrets::SecretReader;

/// The upstream client's flags.
#[derive(clap::Args, Clone, Debug)]
pub struct PullThroughFlags {
    /// PEM file of CA certificates trusted for upstream registries besides
    /// the system's roots (private upstreams over HTTPS).
    #[arg(long, env = "KURA_PULL_THROUGH_CA_BUNDLE")]
    pub pull_through_ca_bundle: Option<PathBuf>,
    /// Connecting to an upstream (TCP and TLS) gives up after this long.
    #[arg(long, env = "KURA_PULL_THROUGH_CONNECT_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub pull_through_connect_timeout: Duration,
    /// An upstream's response headers must arrive within this long.
    #[arg(long, env = "KURA_PULL_THROUGH_RESPONSE_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub pull_through_response_timeout: Duration,
    /// An upstream body that sends nothing for this long fails.
    #[arg(long, env = "KURA_PULL_THROUGH_IDLE_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub pull_through_idle_timeout: Duration,
}

/// A rule's credentials are a Secrets Manager secret of the rule's account.
struct Secrets(SecretReader);

#[async_trait::async_trait]
impl CredentialSource for Secrets {
    async fn secret_string(&self, account: &str, arn: &str) -> Result<Option<String>, String> {
        self.0.read_secret_string(account, arn).await.map_err(|e| e.to_string())
    }
}

/// Configure the upstream client, give the rules their credentials, and
/// the registry its upstreams.
pub fn install(ecr: &Ecr, registry: &Registry, secrets: SecretReader, flags: &PullThroughFlags) -> anyhow::Result<()> {
    let nonzero = |d: Duration| d.max(Duration::from_millis(100));
    let pt = ecr.pull_through().clone();
    pt.set_client_config(kura_pullthrough::ClientConfig {
        connect_timeout: nonzero(flags.pull_through_connect_timeout),
        response_timeout: nonzero(flags.pull_through_response_timeout),
        idle_timeout: nonzero(flags.pull_through_idle_timeout),
        ca_bundle: flags.pull_through_ca_bundle.clone(),
        ..Default::default()
    })
    .map_err(anyhow::Error::msg)
    .context("--pull-through-ca-bundle")?;
    pt.set_credentials(Arc::new(Secrets(secrets)));
    registry.set_pull_through(pt);
    Ok(())
}
