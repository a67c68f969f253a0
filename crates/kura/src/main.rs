//! The `kura` binary: `kura serve` runs the registry and the ECR API on
//! embedded storage, and this node's background job runner (`jobs.rs`);
//! `kura gc` and `kura lifecycle run` run the maintenance jobs on demand
//! (also while the server is up, on the same data directory); `kura jobs`
//! lists and retries background jobs.

mod audit;
mod backup;
mod cli;
mod config;
mod datadir;
mod jobs;
mod migrate;
mod observe;
mod progress;
mod pullthrough;
mod replication;
mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use kura_auth::seal::MasterKey;
use kura_ecr::auth::{bootstrap, BootstrapEnv};
use kura_ecr::templates::TemplateProvisioner;
use kura_ecr::{Ecr, EcrConfig};
use kura_gc::GcOptions;
use kura_registry::{Registry, RegistryConfig};
use kura_store::{BlobStore, Dialect, FsBlobStore, S3BlobStore, S3Config, SqlMetaStore};

mod transport;

#[derive(Parser)]
#[command(
    name = "kura",
    version = cli::VERSION,
    about = "A self-hosted container image registry that speaks OCI and ECR"
)]
struct Cli {
    /// A `kura.toml` configuration file (keys: the long flag names; see docs/CONFIG.md).
    #[arg(long, global = true, env = "KURA_CONFIG", value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of the `serve` variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the registry and the ECR API.
    Serve(ServeArgs),
    /// Collect garbage now: unreferenced blobs and abandoned uploads.
    Gc(GcArgs),
    /// Lifecycle policies.
    Lifecycle {
        #[command(subcommand)]
        command: LifecycleCommand,
    },
    /// Background jobs (GC, lifecycle, scans, previews): list them, retry dead ones.
    Jobs {
        #[command(subcommand)]
        command: JobsCommand,
    },
    /// The audit trail (what `aws cloudtrail lookup-events` reads), newest
    /// first, one CloudTrail record per line.
    Audit(AuditArgs),
    /// Vulnerability data for image scanning.
    Vulndb {
        #[command(subcommand)]
        command: VulndbCommand,
    },
    /// Stored images and bytes by storage class (standard, archive), as JSON:
    /// archived bytes are metered apart.
    Usage {
        #[command(flatten)]
        store: StoreArgs,
        /// One account's usage (default: the whole deployment).
        #[arg(long)]
        account: Option<String>,
        #[command(flatten)]
        out: cli::OutputArgs,
    },
    /// Accounts (each is a registry with its own IAM principals).
    Account {
        #[command(subcommand)]
        command: AccountCommand,
    },
    /// The configuration file: its reference, a check of a file.
    Config {
        #[command(subcommand)]
        command: config::ConfigCommand,
    },
    /// Back up a running embedded registry (database snapshot + blobs) into a new directory.
    Backup(backup::BackupArgs),
    /// Restore a backup into a new data directory, verifying every blob.
    Restore(backup::RestoreArgs),
    /// Copy a stopped embedded registry to PostgreSQL + S3 (resumable, verified).
    Migrate(migrate::MigrateArgs),
}

#[derive(Subcommand)]
enum AccountCommand {
    /// Create an account and a root access key for it; prints them as JSON
    /// (the secret is shown only now).
    Create {
        #[command(flatten)]
        store: StoreArgs,
        /// The 12-digit account id (random if omitted).
        #[arg(long)]
        id: Option<String>,
        /// File holding the master key (default: `<data-dir>/master.key`).
        #[arg(long, env = "KURA_MASTER_KEY_FILE")]
        master_key_file: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum JobsCommand {
    /// Jobs as JSON lines, by id.
    List {
        #[command(flatten)]
        store: StoreArgs,
        /// Only jobs in this state: queued, running, done or dead.
        #[arg(long)]
        state: Option<String>,
        /// Only jobs of this kind (gc, lifecycle, lifecycle-preview, scan, …).
        #[arg(long)]
        kind: Option<String>,
        #[command(flatten)]
        out: cli::OutputArgs,
    },
    /// Queue a dead job again with fresh attempts.
    Retry {
        #[command(flatten)]
        store: StoreArgs,
        /// The job's id.
        id: i64,
    },
}

#[derive(Subcommand)]
enum VulndbCommand {
    /// Import a snapshot: OSV JSON (a file, a directory of files, or an ecosystem export zip),
    /// the Debian security tracker JSON, or an Alpine secdb file.
    Import {
        #[command(flatten)]
        store: StoreArgs,
        /// The file or directory to import.
        path: PathBuf,
        #[command(flatten)]
        out: cli::OutputArgs,
    },
    /// List completed imports, newest first (JSON lines, or a table).
    List {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        out: cli::OutputArgs,
    },
}

#[derive(clap::Args)]
struct AuditArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    query: audit::AuditQuery,
}

#[derive(Subcommand)]
enum LifecycleCommand {
    /// Apply every repository's lifecycle policy now.
    Run {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        out: cli::OutputArgs,
    },
}

#[derive(clap::Args, Clone)]
struct StoreArgs {
    /// Directory for the metadata database and blobs.
    #[arg(long, env = "KURA_DATA_DIR", default_value = "./kura-data")]
    data_dir: PathBuf,
    /// Metadata in PostgreSQL (`postgres://user@host:5432/db`), shared by any
    /// number of nodes, instead of SQLite at `<data-dir>/meta.db`.
    #[arg(long, env = "KURA_DATABASE_URL")]
    database_url: Option<String>,
    /// Connections per pool to PostgreSQL (each node has a read and a write pool).
    #[arg(long, env = "KURA_DATABASE_MAX_CONNECTIONS", default_value_t = 16)]
    database_max_connections: u32,
    /// Log format: text or json.
    #[arg(long, env = "KURA_LOG_FORMAT", default_value = "text")]
    log_format: String,
    /// MiB of disk space kept in reserve in the data directory (a file Kura
    /// releases when the disk is full, so deletes and GC can still run; 0: off).
    #[arg(long, env = "KURA_DISK_RESERVE_MIB", default_value_t = 64)]
    disk_reserve_mib: u64,
    #[command(flatten)]
    blob: BlobArgs,
}

/// Where blobs live: `<data-dir>/blobs`, or an S3 bucket when one is named.
#[derive(clap::Args, Clone)]
struct BlobArgs {
    /// Keep blobs in this S3 bucket instead of `<data-dir>/blobs`.
    #[arg(long, env = "KURA_S3_BUCKET")]
    s3_bucket: Option<String>,
    /// Prefix for every object Kura writes in the bucket.
    #[arg(long, env = "KURA_S3_PREFIX", default_value = "")]
    s3_prefix: String,
    /// S3 endpoint URL for S3-compatible services (default: AWS); http:// is allowed.
    #[arg(long, env = "KURA_S3_ENDPOINT")]
    s3_endpoint: Option<String>,
    /// The bucket's region.
    #[arg(long, env = "KURA_S3_REGION", default_value = "us-east-1")]
    s3_region: String,
    /// S3 access key id (default: the instance's credentials).
    #[arg(long, env = "KURA_S3_ACCESS_KEY_ID")]
    s3_access_key_id: Option<String>,
    /// S3 secret access key.
    #[arg(long, env = "KURA_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    s3_secret_access_key: Option<String>,
    /// Virtual-hosted-style requests (default: path style with a custom endpoint, virtual-hosted on AWS).
    #[arg(long, env = "KURA_S3_VIRTUAL_HOSTED", value_parser = clap::builder::BoolishValueParser::new())]
    s3_virtual_hosted: Option<bool>,
    /// MiB of upload part buffers all S3 uploads may hold at once.
    #[arg(long, env = "KURA_S3_BUFFER_MIB", default_value_t = 256)]
    s3_buffer_mib: usize,
}

#[derive(clap::Args, Clone)]
struct GcTuning {
    /// How long an unreferenced blob is kept after its last upload, mount or HEAD.
    #[arg(long, env = "KURA_GC_GRACE", default_value = "1h", value_parser = humantime::parse_duration)]
    gc_grace: Duration,
    /// Uploads untouched this long are purged.
    #[arg(long, env = "KURA_UPLOAD_MAX_AGE", default_value = "24h", value_parser = humantime::parse_duration)]
    upload_max_age: Duration,
}

#[derive(clap::Args)]
struct GcArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    tuning: GcTuning,
    /// Report what would be collected; delete nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    out: cli::OutputArgs,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "KURA_LISTEN", default_value = "127.0.0.1:5000")]
    listen: SocketAddr,
    #[command(flatten)]
    store: StoreArgs,
    /// This deployment's region.
    #[arg(long, env = "KURA_REGION", default_value = "us-east-1")]
    region: String,
    /// File holding the master key that seals secrets at rest (created if missing).
    #[arg(long, env = "KURA_MASTER_KEY_FILE")]
    master_key_file: Option<PathBuf>,
    #[command(flatten)]
    gc: GcTuning,
    /// How often garbage collection runs in the background ("0s" turns it
    /// off): one `gc` job per interval across all nodes.
    #[arg(long, env = "KURA_GC_INTERVAL", default_value = "1h", value_parser = humantime::parse_duration)]
    gc_interval: Duration,
    /// How often lifecycle policies are applied in the background ("0s"
    /// turns it off): one `lifecycle` job per interval across all nodes.
    #[arg(long, env = "KURA_LIFECYCLE_INTERVAL", default_value = "1h", value_parser = humantime::parse_duration)]
    lifecycle_interval: Duration,
    /// The longest session `sts:AssumeRole` hands out (IAM's ceiling is 12h).
    #[arg(long, env = "KURA_STS_MAX_SESSION", default_value = "12h", value_parser = seconds_or_duration)]
    sts_max_session: Duration,
    /// How long restoring an image from the archive storage class takes at
    /// least: the restore job runs no earlier (the image is ACTIVATING meanwhile).
    #[arg(long, env = "KURA_ARCHIVE_RESTORE_DELAY", default_value = "0s", value_parser = seconds_or_duration)]
    archive_restore_delay: Duration,
    /// Answer blob GETs with a 307 redirect to a presigned URL of the blob
    /// store (S3 only), so layer bytes skip Kura; HEAD is still answered here.
    #[arg(long, env = "KURA_BLOB_REDIRECT", value_parser = clap::builder::BoolishValueParser::new())]
    blob_redirect: bool,
    /// How long a redirect's presigned URL stays valid.
    #[arg(long, env = "KURA_BLOB_REDIRECT_TTL", default_value = "15m", value_parser = humantime::parse_duration)]
    blob_redirect_ttl: Duration,
    /// Open upload sessions one repository may have at once ("0": no cap);
    /// more answer 429 TOOMANYREQUESTS.
    #[arg(long, env = "KURA_MAX_UPLOADS_PER_REPO", default_value_t = 1000)]
    max_uploads_per_repo: u64,
    /// Open upload sessions one principal (user, role session, root) may
    /// have at once ("0": no cap); more answer 429 TOOMANYREQUESTS.
    #[arg(long, env = "KURA_MAX_UPLOADS_PER_PRINCIPAL", default_value_t = 1000)]
    max_uploads_per_principal: u64,
    /// How often a pull-through cache checks a cached tag against its
    /// upstream (a HEAD; the manifest is fetched only when the tag moved).
    #[arg(long, env = "KURA_PULL_THROUGH_REFRESH", default_value = "24h", value_parser = humantime::parse_duration)]
    pull_through_refresh: Duration,
    /// Image scans running at once.
    #[arg(long, env = "KURA_SCAN_WORKERS", default_value_t = 2)]
    scan_workers: usize,
    /// A scan running longer than this fails.
    #[arg(long, env = "KURA_SCAN_TIMEOUT", default_value = "15m", value_parser = humantime::parse_duration)]
    scan_timeout: Duration,
    /// How often the scanner looks for new vulnerability data (continuous
    /// scanning) and for scans left without a job (a `scan-sweep` job).
    #[arg(long, env = "KURA_SCAN_POLL_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    scan_poll_interval: Duration,
    /// Background jobs this node runs at once (GC, lifecycle, scans, previews, …).
    #[arg(long, env = "KURA_JOB_WORKERS", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    job_workers: u32,
    /// How often this node looks for due jobs (jobs it enqueues itself start at once).
    #[arg(long, env = "KURA_JOB_POLL_INTERVAL", default_value = "1s", value_parser = nonzero_duration)]
    job_poll_interval: Duration,
    /// EventBridge delivery: the first retry of a failed delivery waits this long, doubling
    /// up to an hour; after 24 hours of failures the delivery is a dead letter
    /// (`kura jobs list --state dead --kind events.deliver`).
    #[arg(long, env = "KURA_EVENTS_RETRY_BASE", default_value = "30s", value_parser = nonzero_duration)]
    events_retry_base: Duration,
    /// EventBridge delivery: the HTTP timeout of one attempt.
    #[arg(long, env = "KURA_EVENTS_TIMEOUT", default_value = "5s", value_parser = nonzero_duration)]
    events_timeout: Duration,
    /// The longest a client may take to send a request's headers (on HTTP/1.1
    /// also the longest a keep-alive connection waits for its next request).
    #[arg(long, env = "KURA_HEADER_TIMEOUT", default_value = "30s", value_parser = nonzero_duration)]
    header_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    #[arg(long, env = "KURA_IDLE_TIMEOUT", default_value = "90s", value_parser = nonzero_duration)]
    idle_timeout: Duration,
    /// A request body that sends no byte for this long fails (an upload
    /// answers BLOB_UPLOAD_INVALID and can be resumed at once).
    #[arg(long, env = "KURA_BODY_IDLE_TIMEOUT", default_value = "60s", value_parser = nonzero_duration)]
    body_idle_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog.
    #[arg(long, env = "KURA_MAX_CONNECTIONS", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// Proxies whose X-Forwarded-For and X-Forwarded-Proto are believed: a
    /// comma-separated list of CIDRs or addresses (default: none).
    #[arg(long, env = "KURA_TRUSTED_PROXIES", default_value = "", value_parser = |s: &str| s.parse::<kura_ecr::client::TrustedProxies>())]
    trusted_proxies: kura_ecr::client::TrustedProxies,
    /// MiB of API request bodies (`POST /`) held in memory at once, across
    /// all requests; a request that finds no room waits, then gets 503.
    #[arg(long, env = "KURA_API_BODY_BUDGET_MIB", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    api_body_budget_mib: u64,
    #[command(flatten)]
    audit: audit::AuditFlags,
    #[command(flatten)]
    pull_through: pullthrough::PullThroughFlags,
    #[command(flatten)]
    replication: replication::ReplicationFlags,
    #[command(flatten)]
    tls: tls::TlsFlags,
    #[command(flatten)]
    obs: observe::ObsFlags,
}

/// A duration (humantime, e.g. `30s`) that is not zero.
fn nonzero_duration(v: &str) -> Result<Duration, String> {
    match humantime::parse_duration(v) {
        Ok(d) if d.is_zero() => Err("must be longer than zero".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    // Colour only on a terminal: logs written to a file stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn open_stores(store: &StoreArgs) -> anyhow::Result<(Arc<SqlMetaStore>, Arc<dyn BlobStore>)> {
    let data_dir = store.data_dir.as_path();
    let url = store.database_url.as_deref().filter(|u| !u.is_empty());
    datadir::prepare(data_dir, url.is_none())?;
    let meta = match url {
        Some(url) => SqlMetaStore::connect(url, store.database_max_connections)
            .await
            .context("connecting to the PostgreSQL metadata database")?,
        None => {
            let reserve = datadir::reserve(data_dir, store.disk_reserve_mib);
            let path = data_dir.join("meta.db");
            let meta = match SqlMetaStore::open(&path).await {
                // Opening writes (migrations): on a full disk, free the reserve.
                Err(e) if e.is_disk_full() && reserve.release() => SqlMetaStore::open(&path).await,
                other => other,
            };
            meta.context("opening the metadata database")?.with_reserve(reserve)
        }
    };
    let blobs = open_blob_store(store).await?;
    Ok((Arc::new(meta), blobs))
}

async fn open_blob_store(store: &StoreArgs) -> anyhow::Result<Arc<dyn BlobStore>> {
    let b = &store.blob;
    let Some(bucket) = b.s3_bucket.clone().filter(|s| !s.is_empty()) else {
        let fs = FsBlobStore::open(store.data_dir.join("blobs"))
            .await
            .context("opening the blob store")?
            .with_reserve(datadir::reserve(&store.data_dir, store.disk_reserve_mib));
        return Ok(Arc::new(fs));
    };
    let config = S3Config {
        bucket,
        prefix: b.s3_prefix.clone(),
        endpoint: b.s3_endpoint.clone().filter(|s| !s.is_empty()),
        region: b.s3_region.clone(),
        access_key_id: b.s3_access_key_id.clone().filter(|s| !s.is_empty()),
        secret_access_key: b.s3_secret_access_key.clone().filter(|s| !s.is_empty()),
        virtual_hosted: b.s3_virtual_hosted,
        buffer_budget: b.s3_buffer_mib.saturating_mul(1 << 20),
    };
    let s3 = S3BlobStore::new(&config).context("configuring the S3 blob store")?;
    Ok(Arc::new(s3))
}

fn gc_options(t: &GcTuning, dry_run: bool) -> GcOptions {
    GcOptions {
        grace: t.gc_grace,
        upload_max_age: t.upload_max_age,
        dry_run,
        ..GcOptions::default()
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut obs = observe::init(&args.store.log_format, &args.obs)?;
    let _lock = backup::serve_lock_for(&args.store)?;
    let tls = tls::Tls::load(&args.tls)?;
    tls::warn_if_cleartext(args.listen, tls.is_some());
    let (meta, blobs) = open_stores(&args.store).await?;
    let blobs = obs.blobs(blobs);
    // Embedded mode is one serving process: no upload can be mid-write at
    // start-up. With a shared database other nodes may be writing: their
    // leases lapse on their own if they die.
    if meta.dialect() == Dialect::Sqlite {
        meta.clear_upload_leases().await?;
        // A GC or lifecycle run of a process that died must not hold its
        // lease until it lapses (a `kura gc` still running keeps its own).
        for lease in meta.clear_dead_job_leases().await? {
            tracing::info!(lease = %lease, "cleared the lease of a process that is no longer running");
        }
    }
    let key_file = args
        .master_key_file
        .clone()
        .unwrap_or_else(|| args.store.data_dir.join("master.key"));
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
        blob_redirect: args.blob_redirect.then_some(args.blob_redirect_ttl),
        max_uploads_per_repo: args.max_uploads_per_repo,
        max_uploads_per_principal: args.max_uploads_per_principal,
        pull_through_refresh: args.pull_through_refresh,
        pull_through_prefetch: true,
    };
    let registry = Arc::new(Registry::new(meta.clone(), blobs.clone(), config).with_provisioner(provisioner));
    let events = kura_events::Events::new(meta.clone(), master.clone(), &args.region);
    // Secrets Manager (values sealed with the master key). `secrets.reader()` is the handle
    // the pull-through cache reads its rules' credentials with.
    let secrets = kura_secrets::Secrets::new(meta.clone(), master.clone(), &args.region);
    let ecr = Arc::new(Ecr::new(
        kura_ecr::Stores::all(meta.clone()),
        registry.clone(),
        master,
        boot.token_key,
        EcrConfig {
            max_session_secs: args.sts_max_session.as_secs().max(1),
            api_body_budget: usize::try_from(args.api_body_budget_mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX),
            trusted_proxies: args.trusted_proxies.clone(),
            archive_restore_delay: args.archive_restore_delay,
            ..EcrConfig::new(&args.region, &boot.default_account)
        },
        kura_ecr::scanning::ScanSettings {
            workers: args.scan_workers,
            timeout: args.scan_timeout,
            poll_every: args.scan_poll_interval,
            ..Default::default()
        },
    ));
    // ECR's events to EventBridge rules: one delivery job per matching target, enqueued before
    // the change is answered.
    registry.subscribe(kura_events::listener::EventBridgeListener::new(
        events.clone(),
        ecr.jobs().clone(),
    ));
    let events_api = kura_events::service::EventsService::new(events.clone(), ecr.authz().clone());
    // Pull-through cache rules: their credentials from Secrets Manager; a pull of a name a rule
    // covers fetches what is missing from the upstream.
    pullthrough::install(&ecr, &registry, secrets.reader(), &args.pull_through)?;
    let secrets_api = kura_secrets::service::SecretsService::new(secrets.clone(), ecr.authz().clone());
    let mut options = kura_ecr::AppOptions {
        services: vec![Arc::new(events_api), Arc::new(secrets_api)],
        ..Default::default()
    };
    // The audit trail: every API call recorded by the pipeline, the data
    // plane's writes by the guard, and CloudTrail's LookupEvents.
    if let Some(trail) = audit::install(&ecr, meta.clone(), &args.audit, &boot.default_account, &args.region) {
        // The pull-through cache's imports, as service events of the repository's account.
        registry.subscribe(Arc::new(audit::PullThroughTrail {
            store: meta.clone(),
            region: args.region.clone(),
        }));
        options.recorder = Some(trail.recorder);
        options.services.push(Arc::new(trail.cloudtrail));
    }
    // Replication: pushes become replicate jobs; other regions call the federation routes.
    let repl = replication::context(replication::install(
        &ecr,
        &registry,
        meta.clone(),
        &args.replication,
        &args.region,
        args.audit.enabled,
    ))?;
    options.routes = Some(repl.routes);
    let ptc_stats = registry.pull_through_stats().clone();
    let app = kura_ecr::app_with(ecr.clone(), registry, options);
    let data_dir = args.store.data_dir.clone();
    let app = obs
        .serve_with(app, &args.obs, meta.clone(), blobs.clone(), data_dir, ptc_stats)
        .await?;
    if let Some((id, secret)) = &boot.created_root_key {
        print_first_start(
            &boot.default_account,
            id,
            secret,
            &args.region,
            &args.listen.to_string(),
            tls.is_some(),
        );
    }

    let runner = jobs::start(
        meta.clone(),
        &ecr,
        jobs::GcJob {
            meta: meta.clone(),
            blobs: blobs.clone(),
            opts: gc_options(&args.gc, false),
        },
        jobs::Background {
            runner: kura_jobs::RunnerConfig {
                workers: args.job_workers as usize,
                poll: args.job_poll_interval,
                ..Default::default()
            },
            gc_every: args.gc_interval,
            lifecycle_every: args.lifecycle_interval,
            scan_sweep_every: args.scan_poll_interval,
            extra: vec![
                Arc::new(kura_events::job::DeliveryHandler::new(
                    events.clone(),
                    kura_events::deliver::Sender::new(args.events_timeout),
                    kura_jobs::RetryPolicy {
                        base: args.events_retry_base,
                        ..kura_jobs::RetryPolicy::for_a_day()
                    },
                )),
                repl.replicator.clone(),
                repl.backfill.clone(),
                Arc::new(kura_secrets::purge::PurgeJob { store: meta.clone() }),
            ],
            audit_retention: audit::retention_job(meta.clone(), &args.audit),
        },
    )
    .await
    .context("starting the job runner")?;

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(
        listen = %args.listen,
        data_dir = %args.store.data_dir.display(),
        account = %boot.default_account,
        region = %args.region,
        "kura is serving the registry and the ECR API"
    );
    let limits = transport::Limits {
        header_timeout: args.header_timeout,
        idle_timeout: args.idle_timeout,
        body_idle_timeout: args.body_idle_timeout,
        max_connections: args.max_connections as usize,
    };
    if let Some(t) = &tls {
        t.watch();
    }
    transport::serve(listener, app, limits, tls, shutdown_signal()).await?;
    runner.shutdown().await;
    tracing::info!("kura stopped");
    obs.shutdown().await;
    Ok(())
}

async fn gc(args: GcArgs) -> anyhow::Result<()> {
    init_logging(&args.store.log_format);
    let (meta, blobs) = open_stores(&args.store).await?;
    let (progress, opts) = cli::progress::gc(gc_options(&args.tuning, args.dry_run));
    let report = kura_gc::collect(meta.as_ref(), meta.as_ref(), blobs.as_ref(), &opts).await;
    progress.finish(report.is_ok());
    let report = report.context("garbage collection")?;
    datadir::restore_reserve().await;
    cli::output::report(args.out.output, &report)
}

async fn lifecycle_run(args: StoreArgs, out: cli::Output) -> anyhow::Result<()> {
    init_logging(&args.log_format);
    let (meta, blobs) = open_stores(&args).await?;
    // A one-off process: its expiries are recorded in the audit log
    // (PolicyExecutionEvent), but no event listeners are subscribed here.
    let registry = Arc::new(Registry::new(meta.clone(), blobs, Default::default()));
    let report = kura_ecr::lifecycle::run_all(registry, meta)
        .await
        .context("lifecycle run")?;
    cli::output::report(out, &report)
}

async fn usage(args: StoreArgs, account: Option<String>, out: cli::Output) -> anyhow::Result<()> {
    init_logging(&args.log_format);
    let (meta, _) = open_stores(&args).await?;
    let u = kura_store::MetaStore::storage_usage(meta.as_ref(), account.as_deref())
        .await
        .context("storage usage")?;
    let report = serde_json::json!({
        "account": account,
        "standard": {"images": u.standard_images, "bytes": u.standard_bytes},
        "archive": {"images": u.archive_images, "bytes": u.archive_bytes},
    });
    cli::output::report(out, &report)
}

async fn vulndb_import(store: StoreArgs, path: PathBuf, out: cli::Output) -> anyhow::Result<()> {
    init_logging(&store.log_format);
    let (meta, _) = open_stores(&store).await?;
    cli::progress::vulndb_import(meta.as_ref(), &path, out).await
}

async fn vulndb_list(store: StoreArgs, out: cli::Output) -> anyhow::Result<()> {
    init_logging(&store.log_format);
    let (meta, _) = open_stores(&store).await?;
    let rows = kura_store::ScanStore::vuln_imports(meta.as_ref()).await?;
    let items: Vec<_> = rows.iter().map(cli::progress::vuln_import_json).collect();
    cli::output::list(
        out,
        &items,
        &["id", "origin", "completedAt", "kinds", "records", "advisories"],
    )
}

/// A duration: plain seconds (`3600`) or humantime (`1h`, `90s`).
fn seconds_or_duration(v: &str) -> Result<Duration, String> {
    match v.parse::<u64>() {
        Ok(secs) => Ok(Duration::from_secs(secs)),
        Err(_) => humantime::parse_duration(v).map_err(|e| e.to_string()),
    }
}

async fn account_create(store: StoreArgs, id: Option<String>, key_file: Option<PathBuf>) -> anyhow::Result<()> {
    init_logging(&store.log_format);
    let (meta, _) = open_stores(&store).await?;
    let key_file = key_file.unwrap_or_else(|| store.data_dir.join("master.key"));
    let master = MasterKey::load_or_create(&key_file)
        .with_context(|| format!("loading the master key {}", key_file.display()))?;
    let (account, key, secret) = kura_ecr::auth::create_account(meta.as_ref(), &master, id.as_deref()).await?;
    println!(
        "{}",
        serde_json::json!({"accountId": account, "accessKeyId": key, "secretAccessKey": secret})
    );
    Ok(())
}

async fn jobs_command(command: JobsCommand) -> anyhow::Result<()> {
    match command {
        JobsCommand::List {
            store,
            state,
            kind,
            out,
        } => {
            init_logging(&store.log_format);
            let (meta, _) = open_stores(&store).await?;
            jobs::list(meta.as_ref(), state.as_deref(), kind.as_deref(), out.output).await
        }
        JobsCommand::Retry { store, id } => {
            init_logging(&store.log_format);
            let (meta, _) = open_stores(&store).await?;
            jobs::retry(meta.as_ref(), id).await
        }
    }
}

async fn audit(args: AuditArgs) -> anyhow::Result<()> {
    init_logging(&args.store.log_format);
    let (meta, _) = open_stores(&args.store).await?;
    audit::command(meta, args.query).await
}

/// Shown once, on the start that created the root key: the secret is never
/// printed or logged again.
fn print_first_start(account: &str, id: &str, secret: &str, region: &str, listen: &str, tls: bool) {
    let (scheme, verify) = if tls {
        ("https", "")
    } else {
        ("http", " --tls-verify=false")
    };
    println!(
        "\nKura created account {account} and its root access key. The secret is shown only now; keep it safe.\n\n\
         \x20 AWS_ACCESS_KEY_ID={id}\n\
         \x20 AWS_SECRET_ACCESS_KEY={secret}\n\n\
         Use it with the aws CLI and a container client:\n\n\
         \x20 aws configure set aws_access_key_id {id}\n\
         \x20 aws configure set aws_secret_access_key {secret}\n\
         \x20 aws configure set region {region}\n\
         \x20 aws ecr create-repository --endpoint-url {scheme}://{listen} --repository-name my/app\n\
         \x20 aws ecr get-login-password --endpoint-url {scheme}://{listen} | podman login{verify} --username AWS --password-stdin {listen}\n"
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
async fn main() -> std::process::ExitCode {
    // Flags > environment > `kura.toml` (--config / KURA_CONFIG) > defaults.
    let parsed: Cli = config::parse();
    // Exit codes: cli/exit.rs (2 for usage errors, from clap or the file).
    cli::exit::finish(run(parsed).await)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Config { command } => config::command(&command, Cli::command(), cli.config.as_deref()),
        Command::Serve(args) => serve(args).await,
        Command::Gc(args) => gc(args).await,
        Command::Lifecycle {
            command: LifecycleCommand::Run { store, out },
        } => lifecycle_run(store, out.output).await,
        Command::Audit(args) => audit(args).await,
        Command::Usage { store, account, out } => usage(store, account, out.output).await,
        Command::Jobs { command } => jobs_command(command).await,
        Command::Vulndb {
            command: VulndbCommand::Import { store, path, out },
        } => vulndb_import(store, path, out.output).await,
        Command::Vulndb {
            command: VulndbCommand::List { store, out },
        } => vulndb_list(store, out.output).await,
        Command::Account {
            command:
                AccountCommand::Create {
                    store,
                    id,
                    master_key_file,
                },
        } => account_create(store, id, master_key_file).await,
        Command::Backup(args) => backup::backup(args).await,
        Command::Restore(args) => backup::restore(args).await,
        Command::Migrate(args) => migrate::migrate(args).await,
    }
}
