//! `kura serve`'s pull-through cache flags: how the upstream client trusts
//! and waits for upstream registries.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use kura_ecr::Ecr;

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

/// Configure the pull-through cache's upstream client.
pub fn install(ecr: &Ecr, flags: &PullThroughFlags) -> anyhow::Result<()> {
    let nonzero = |d: Duration| d.max(Duration::from_millis(100));
    ecr.pull_through()
        .set_client_config(kura_pullthrough::ClientConfig {
            connect_timeout: nonzero(flags.pull_through_connect_timeout),
            response_timeout: nonzero(flags.pull_through_response_timeout),
            idle_timeout: nonzero(flags.pull_through_idle_timeout),
            ca_bundle: flags.pull_through_ca_bundle.clone(),
            ..Default::default()
        })
        .map_err(anyhow::Error::msg)
        .context("--pull-through-ca-bundle")
}
