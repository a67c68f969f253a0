//! The `kura` binary: `kura serve` runs the registry on embedded storage.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use kura_auth::seal::MasterKey;
use kura_ecr::auth::{bootstrap, BootstrapEnv};
use kura_ecr::templates::TemplateProvisioner;
use kura_ecr::{Ecr, EcrConfig};
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
    /// This deployment's region.
    #[arg(long, env = "KURA_REGION", default_value = "us-east-1")]
    region: String,
    /// File holding the master key that seals secrets at rest (created if missing).
    #[arg(long, env = "KURA_MASTER_KEY_FILE")]
    master_key_file: Option<PathBuf>,
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
    let meta = Arc::new(meta);
    let key_file = args
        .master_key_file
        .clone()
        .unwrap_or_else(|| args.data_dir.join("master.key"));
    let master = MasterKey::load_or_create(&key_file)
        .with_context(|| format!("loading the master key {}", key_file.display()))?;
    let env = BootstrapEnv {
        account_id: std::env::var("KURA_ACCOUNT_ID").ok().filter(|v| !v.is_empty()),
        root_access_key_id: std::env::var("KURA_ROOT_ACCESS_KEY_ID").ok().filter(|v| !v.is_empty()),
        root_secret_access_key: std::env::var("KURA_ROOT_SECRET_ACCESS_KEY")
            .ok()
            .filter(|v| !v.is_empty()),
    };
    let boot = bootstrap(meta.as_ref(), &master, &env)
        .await
        .context("bootstrapping the default account")?;
    let provisioner = Arc::new(TemplateProvisioner {
        meta: meta.clone(),
        control: meta.clone(),
        region: args.region.clone(),
    });
    let config = RegistryConfig {
        default_account: boot.default_account.clone(),
        create_on_push: false,
    };
    let registry = Arc::new(Registry::new(meta.clone(), Arc::new(blobs), config).with_provisioner(provisioner));
    let ecr = Arc::new(Ecr::new(
        meta.clone(),
        meta.clone(),
        registry.clone(),
        master,
        boot.token_key,
        EcrConfig {
            region: args.region.clone(),
            default_account: boot.default_account.clone(),
        },
    ));
    let app = kura_ecr::app(ecr, registry);
    if let Some((id, secret)) = &boot.created_root_key {
        print_first_start(
            &boot.default_account,
            id,
            secret,
            &args.region,
            &args.listen.to_string(),
        );
    }
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

/// Shown once, on the start that created the root key: the secret is never
/// printed or logged again.
fn print_first_start(account: &str, id: &str, secret: &str, region: &str, listen: &str) {
    println!(
        "\nKura created account {account} and its root access key. The secret is shown only now; keep it safe.\n\n\
         \x20 AWS_ACCESS_KEY_ID={id}\n\
         \x20 AWS_SECRET_ACCESS_KEY={secret}\n\n\
         Use it with the aws CLI and a container client:\n\n\
         \x20 aws configure set aws_access_key_id {id}\n\
         \x20 aws configure set aws_secret_access_key {secret}\n\
         \x20 aws configure set region {region}\n\
         \x20 aws ecr create-repository --endpoint-url http://{listen} --repository-name my/app\n\
         \x20 aws ecr get-login-password --endpoint-url http://{listen} | podman login --tls-verify=false --username AWS --password-stdin {listen}\n"
    );
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
