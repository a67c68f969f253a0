//! The `kura` binary: `kura serve` runs the registry on embedded storage.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use kura_registry::{Registry, RegistryConfig};
use kura_store::{FsBlobStore, SqliteMetaStore};

#[derive(Parser)]
#[command(
    name = "kura",
    version,
    about = "A self-hosted container image registry that speaks OCI and ECR"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the registry.
    Serve(ServeArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "KURA_LISTEN", default_value = "127.0.0.1:5000")]
    listen: SocketAddr,
    /// Directory for the metadata database and blobs.
    #[arg(long, env = "KURA_DATA_DIR", default_value = "./kura-data")]
    data_dir: PathBuf,
    /// Log format: text or json.
    #[arg(long, env = "KURA_LOG_FORMAT", default_value = "text")]
    log_format: String,
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    init_logging(&args.log_format);
    tokio::fs::create_dir_all(&args.data_dir)
        .await
        .with_context(|| format!("creating data directory {}", args.data_dir.display()))?;
    let meta = SqliteMetaStore::open(args.data_dir.join("meta.db"))
        .await
        .context("opening the metadata database")?;
    // Embedded mode is one process: no upload can be mid-write at start-up.
    meta.clear_upload_leases().await?;
    let blobs = FsBlobStore::open(args.data_dir.join("blobs"))
        .await
        .context("opening the blob store")?;
    let registry = Arc::new(Registry::new(
        Arc::new(meta),
        Arc::new(blobs),
        RegistryConfig::default(),
    ));
    let app = kura_registry::app(registry);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(listen = %args.listen, data_dir = %args.data_dir.display(), "kura is serving the registry");
    eprintln!(
        "Kura registry listening on http://{}  (data: {})",
        args.listen,
        args.data_dir.display()
    );
    eprintln!(
        "  try: skopeo copy --dest-tls-verify=false docker://alpine:latest docker://{}/alpine:latest",
        args.listen
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    tracing::info!("kura stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args).await,
    }
}
