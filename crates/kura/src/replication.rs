//! Replication in the binary: `kura serve`'s flags, the listener and job
//! handler, and the federation routes other regions call.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use kura_ecr::Ecr;
use kura_registry::Registry;
use kura_replication::federation::FederationKey;
use kura_replication::job::Replicator;
use kura_replication::peer::Peers;
use kura_replication::server::FederationServer;
use kura_store::SqlMetaStore;

/// `kura serve`'s replication flags.
#[derive(clap::Args, Clone, Debug)]
pub struct ReplicationFlags {
    /// Another region of the federation, as NAME=URL (repeatable; the
    /// variable takes a comma-separated list): where images replicate to
    /// when a rule names that region.
    #[arg(long = "peer-region", env = "KURA_PEER_REGIONS", value_delimiter = ',')]
    pub peer_regions: Vec<String>,
    /// The secret every deployment of the federation shares (a file of at
    /// least 32 bytes). Signing keys are derived from it; it never travels.
    #[arg(long, env = "KURA_FEDERATION_KEY_FILE")]
    pub federation_key_file: Option<std::path::PathBuf>,
    /// The first retry of a replication whose destination does not answer
    /// waits this long, doubling up to 5 minutes; after a day it is FAILED.
    #[arg(long, env = "KURA_REPLICATION_RETRY_BASE", default_value = "5s", value_parser = humantime::parse_duration)]
    pub replication_retry_base: Duration,
    /// A request to another region that connects or sends nothing for this long fails (and is retried).
    #[arg(long, env = "KURA_REPLICATION_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub replication_timeout: Duration,
}

/// What serving replication adds: the handler (also the push listener) and the federation routes.
pub struct Installed {
    /// The replicate job's handler.
    pub replicator: Arc<Replicator>,
    /// The backfill job's handler.
    pub backfill: Arc<kura_replication::backfill::BackfillJob>,
    /// `/kura/federation/v1/*`.
    pub routes: axum::Router,
}

/// Subscribe replication to the registry's pushes and build the federation routes.
pub fn install(
    ecr: &Ecr,
    registry: &Arc<Registry>,
    store: Arc<SqlMetaStore>,
    flags: &ReplicationFlags,
    region: &str,
    audit: bool,
) -> anyhow::Result<Installed> {
    let key = match &flags.federation_key_file {
        Some(path) => Some(FederationKey::load(path).map_err(anyhow::Error::msg)?),
        None => None,
    };
    let urls = Peers::parse_settings(&flags.peer_regions).map_err(anyhow::Error::msg)?;
    if urls.contains_key(region) {
        anyhow::bail!("--peer-region names this deployment's own region {region}");
    }
    if !urls.is_empty() && key.is_none() {
        tracing::warn!("peer regions are set but no --federation-key-file: replication to them will fail");
    }
    let peers = Peers::new(
        region,
        urls,
        key.clone(),
        flags.replication_timeout.max(Duration::from_secs(1)),
    );
    // Tests shorten the first retry below the flag's unit.
    let retry_base = std::env::var("KURA_REPLICATION_RETRY_BASE_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_millis)
        .unwrap_or(flags.replication_retry_base)
        .max(Duration::from_millis(10));
    let replicator = Replicator::new(
        registry.clone(),
        ecr.authz().clone(),
        store.clone(),
        store.clone(),
        ecr.jobs().clone(),
        peers,
        retry_base,
    );
    registry.subscribe(replicator.clone());
    if audit {
        replicator.record_to(store.clone());
    }
    let backfill = Arc::new(kura_replication::backfill::BackfillJob::new(
        ecr.jobs().clone(),
        store.clone(),
        store.clone(),
        store.clone(),
    ));
    let server = FederationServer::new(registry.clone(), ecr.authz().clone(), store.clone(), key);
    if audit {
        server.record_to(store);
    }
    Ok(Installed {
        replicator,
        backfill,
        routes: kura_replication::server::router(server),
    })
}

/// Context for errors at start-up.
pub fn context<T>(r: anyhow::Result<T>) -> anyhow::Result<T> {
    r.context("setting up replication")
}
