//! The Amazon ECR control plane on Kura, and ECR-style authentication of the
//! data plane.
//!
//! * `POST /` is [`kura_aws::api`], the one AWS pipeline; ECR
//!   (`X-Amz-Target: AmazonEC2ContainerRegistry_V20150921.<Operation>`) is
//!   one [`kura_aws::AwsService`] registered on it ([`service`]), beside
//!   ECR Public ([`public`]) and IAM/STS ([`iamapi`]). The input is validated
//!   against the model ([`model`]) and dispatched to one operation in
//!   [`ops`].
//! * [`auth::data_plane_auth`] guards `/v2/`: Basic `AWS:<token>` from
//!   `GetAuthorizationToken`, or a presigned download URL, and selects the
//!   account from the host name (`<account>.dkr.<rest>`).
//! * [`templates::TemplateProvisioner`] lets a push create a repository when a
//!   creation template with `CREATE_ON_PUSH` covers its name.
//!
//! Layering: handlers call [`Ecr`] operations; operations call the stores
//! and the data-plane [`Registry`] service (for uploads and manifests, so
//! both planes share one set of rules); nothing calls back up.

pub mod archive;
pub mod auth;
pub mod authz;
pub mod calls;
pub mod error;
pub mod lifecycle;
pub mod model;
pub mod ops;
pub mod optable;
pub mod ptc_gate;
pub mod public;
pub mod scanning;
pub mod service;
pub mod templates;

pub use kura_aws::{body, client};
pub use kura_iamapi as iamapi;

use std::sync::Arc;

use axum::routing::post;
use axum::Router;
use kura_auth::seal::MasterKey;
use kura_aws::{AwsService, CallRecorder};
use kura_registry::Registry;
use kura_store::{ControlStore, IamStore, MaintenanceStore, MetaStore, ScanStore};

pub use error::{EcrError, EcrResult};
pub use kura_aws::MAX_API_BODY;

/// Deployment settings of the ECR API.
#[derive(Clone, Debug)]
pub struct EcrConfig {
    /// This deployment's region (`KURA_REGION`).
    pub region: String,
    /// The account used when a host name does not name one.
    pub default_account: String,
    /// The longest session STS hands out, in seconds (`KURA_STS_MAX_SESSION`;
    /// IAM's own ceiling is 12 hours).
    pub max_session_secs: u64,
    /// Bytes of API request bodies held in memory at once, across all
    /// requests (`KURA_API_BODY_BUDGET_MIB`; see [`body::BodyBudget`]).
    pub api_body_budget: usize,
    /// Peers whose `X-Forwarded-For`/`X-Forwarded-Proto` are believed
    /// (`KURA_TRUSTED_PROXIES`); nobody by default.
    pub trusted_proxies: client::TrustedProxies,
    /// How long a restore from the archive storage class takes at least
    /// (`KURA_ARCHIVE_RESTORE_DELAY`; the restore job runs no earlier). The
    /// image is ACTIVATING meanwhile.
    pub archive_restore_delay: std::time::Duration,
}

impl EcrConfig {
    /// A configuration with IAM's defaults.
    pub fn new(region: &str, default_account: &str) -> Self {
        EcrConfig {
            region: region.to_string(),
            default_account: default_account.to_string(),
            max_session_secs: 12 * 3600,
            api_body_budget: body::DEFAULT_BODY_BUDGET,
            trusted_proxies: client::TrustedProxies::default(),
            archive_restore_delay: std::time::Duration::ZERO,
        }
    }
}

/// The stores the service reads and writes. One SQLite (or PostgreSQL)
/// store implements all of them; they are separate traits so each concern
/// stays small.
#[derive(Clone)]
pub struct Stores {
    /// Repositories, images, uploads.
    pub meta: Arc<dyn MetaStore>,
    /// Accounts, keys, tags, templates, settings.
    pub control: Arc<dyn ControlStore>,
    /// Audit, leases, lifecycle, GC.
    pub maint: Arc<dyn MaintenanceStore>,
    /// Vulnerability data and scans.
    pub scans: Arc<dyn ScanStore>,
    /// IAM principals and resource policies.
    pub iam: Arc<dyn IamStore>,
    /// Durable background jobs (scans, lifecycle previews).
    pub jobs: Arc<dyn kura_store::JobStore>,
    /// Replication statuses and backfills.
    pub replication: Arc<dyn kura_store::ReplicationStore>,
    /// Pull-through cache rules.
    pub pull_through: Arc<dyn kura_store::PullThroughRuleStore>,
}

impl Stores {
    /// Every store from one implementation.
    pub fn all<S>(store: Arc<S>) -> Self
    where
        S: MetaStore
            + ControlStore
            + MaintenanceStore
            + ScanStore
            + IamStore
            + kura_store::JobStore
            + kura_store::ReplicationStore
            + kura_store::PullThroughRuleStore,
    {
        Stores {
            meta: store.clone(),
            control: store.clone(),
            maint: store.clone(),
            scans: store.clone(),
            iam: store.clone(),
            jobs: store.clone(),
            replication: store.clone(),
            pull_through: store,
        }
    }
}

/// The ECR service: stores, the data-plane service, and key material.
pub struct Ecr {
    meta: Arc<dyn MetaStore>,
    control: Arc<dyn ControlStore>,
    maint: Arc<dyn MaintenanceStore>,
    iam: Arc<dyn IamStore>,
    replication: Arc<dyn kura_store::ReplicationStore>,
    authz: Arc<authz::Authz>,
    registry: Arc<Registry>,
    scanner: scanning::Scanner,
    jobs: kura_jobs::Queue,
    master: MasterKey,
    token_key: Vec<u8>,
    auth: kura_aws::Authenticator,
    body_budget: Arc<body::BodyBudget>,
    config: EcrConfig,
    audit: std::sync::OnceLock<calls::AuditHook>,
    /// This node's view of the pull-time update exclusions (the data plane asks it).
    pull_exclusions: Arc<ops::exclusions::PullExclusions>,
    /// Serializes this node's read-modify-write of list-valued settings.
    settings_lock: tokio::sync::Mutex<()>,
    /// The pull-through cache's rules, credentials and upstream client.
    pull_through: Arc<kura_pullthrough::PullThrough>,
}

impl Ecr {
    /// Assemble the service. `token_key` signs registry tokens and download URLs.
    /// The scanner subscribes to the registry's `ImagePushed` events (scan on push).
    pub fn new(
        stores: Stores,
        registry: Arc<Registry>,
        master: MasterKey,
        token_key: Vec<u8>,
        config: EcrConfig,
        scan_settings: scanning::ScanSettings,
    ) -> Self {
        let jobs = kura_jobs::Queue::new(stores.jobs.clone());
        let scanner = scanning::Scanner::new(
            jobs.clone(),
            stores.meta.clone(),
            stores.scans,
            stores.control.clone(),
            registry.clone(),
            scan_settings,
        );
        registry.subscribe(Arc::new(scanner.clone()));
        let pull_exclusions = Arc::new(ops::exclusions::PullExclusions::new(stores.control.clone()));
        registry.set_pull_time_filter(pull_exclusions.clone());
        let pull_through = Arc::new(kura_pullthrough::PullThrough::new(stores.pull_through.clone()));
        Ecr {
            authz: Arc::new(authz::Authz::new(
                stores.iam.clone(),
                stores.control.clone(),
                &config.region,
            )),
            auth: kura_aws::Authenticator::new(stores.control.clone(), master.clone(), &config.region),
            meta: stores.meta,
            control: stores.control,
            maint: stores.maint,
            iam: stores.iam,
            replication: stores.replication,
            registry,
            scanner,
            jobs,
            master,
            token_key,
            body_budget: Arc::new(body::BodyBudget::new(config.api_body_budget)),
            config,
            audit: std::sync::OnceLock::new(),
            pull_exclusions,
            settings_lock: tokio::sync::Mutex::new(()),
            pull_through,
        }
    }

    /// The pull-through cache (rules, credentials, upstream client): the
    /// registry's `PullThroughSource`; connect the secrets with
    /// `set_credentials` and the client's flags with `set_client_config`.
    pub fn pull_through(&self) -> &Arc<kura_pullthrough::PullThrough> {
        &self.pull_through
    }

    /// Record the data plane's calls in the audit trail (once, at start-up;
    /// API calls are recorded through [`AppOptions::recorder`]).
    pub fn set_audit(&self, hook: calls::AuditHook) {
        if self.audit.set(hook).is_err() {
            tracing::warn!("the audit trail was already configured");
        }
    }

    /// The data plane's audit trail, when enabled.
    pub fn audit(&self) -> Option<&calls::AuditHook> {
        self.audit.get()
    }

    /// The byte budget of API request bodies.
    pub fn body_budget(&self) -> &body::BodyBudget {
        &self.body_budget
    }

    /// The data plane's service (subscribe event listeners here).
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The image scanner.
    pub fn scanner(&self) -> &scanning::Scanner {
        &self.scanner
    }

    /// The job queue scans and lifecycle previews go through: give it to
    /// this node's [`kura_jobs::Runner`] so they start at once.
    pub fn jobs(&self) -> &kura_jobs::Queue {
        &self.jobs
    }

    /// The job handlers of the ECR service (scans and the scanner's sweep,
    /// lifecycle runs and previews), for this node's runner.
    pub fn job_handlers(&self) -> Vec<Arc<dyn kura_jobs::JobHandler>> {
        vec![
            Arc::new(scanning::ScanJob(self.scanner.clone())),
            Arc::new(scanning::SweepJob(self.scanner.clone())),
            Arc::new(lifecycle::RunJob {
                registry: self.registry.clone(),
                maint: self.maint.clone(),
            }),
            Arc::new(lifecycle::PreviewJob {
                meta: self.meta.clone(),
                maint: self.maint.clone(),
            }),
            Arc::new(archive::RestoreJob {
                meta: self.meta.clone(),
            }),
        ]
    }

    /// The configuration.
    pub fn config(&self) -> &EcrConfig {
        &self.config
    }
}

/// What [`app_with`] adds to the AWS APIs every deployment serves.
#[derive(Default, Clone)]
pub struct AppOptions {
    /// More AWS APIs on `POST /` (EventBridge, CloudTrail, …), after ECR,
    /// ECR Public, IAM and STS.
    pub services: Vec<Arc<dyn AwsService>>,
    /// Receives the record of every API call (the audit trail).
    pub recorder: Option<Arc<dyn CallRecorder>>,
    /// More routes with their own authentication (the federation protocol
    /// replication uses between regions), served before the data plane.
    pub routes: Option<Router>,
}

/// The AWS API pipeline with ECR, ECR Public, IAM and STS registered, then
/// `options`' services and recorder.
pub fn aws_api(ecr: &Arc<Ecr>, options: &AppOptions) -> kura_aws::Api {
    let mut api = kura_aws::Api::new(ecr.auth.clone(), ecr.body_budget.clone());
    let iam = Arc::new(iamapi::IamApi::new(
        ecr.iam.clone(),
        ecr.control.clone(),
        ecr.master.clone(),
        ecr.authz.clone(),
        iamapi::IamConfig {
            max_session_secs: ecr.config.max_session_secs,
        },
    ));
    // The first JSON service answers targets nobody has; the first Query
    // service answers actions nobody has.
    api.register(Arc::new(service::EcrService::new(ecr.clone())))
        .register(Arc::new(public::PublicService::new(Arc::new(public::Public::new(
            ecr.registry.clone(),
            ecr.control.clone(),
            ecr.iam.clone(),
            ecr.authz.clone(),
            ecr.token_key.clone(),
            &ecr.config.default_account,
        )))))
        .register(Arc::new(iamapi::IamService::new(iam.clone())))
        .register(Arc::new(iamapi::StsService::new(iam)));
    for s in &options.services {
        api.register(s.clone());
    }
    if let Some(r) = &options.recorder {
        api.set_recorder(r.clone());
    }
    api
}

/// The whole HTTP application: the AWS APIs on `POST /` and the
/// authenticated data plane everywhere else.
pub fn app(ecr: Arc<Ecr>, registry: Arc<Registry>) -> Router {
    app_with(ecr, registry, AppOptions::default())
}

/// [`app`] with more AWS APIs and an audit recorder.
pub fn app_with(ecr: Arc<Ecr>, registry: Arc<Registry>, options: AppOptions) -> Router {
    let api = Arc::new(aws_api(&ecr, &options));
    let trusted = Arc::new(ecr.config.trusted_proxies.clone());
    let data =
        kura_registry::app(registry).layer(axum::middleware::from_fn_with_state(ecr.clone(), auth::data_plane_auth));
    Router::new()
        .route(
            "/token",
            axum::routing::get(auth::token_service).post(auth::token_service),
        )
        .with_state(ecr)
        .route("/", post(kura_aws::api).with_state(api))
        .merge(options.routes.unwrap_or_default())
        .merge(data)
        // First of all: who the client is (peer, or a trusted proxy's word).
        .layer(axum::middleware::from_fn_with_state(trusted, client::layer))
}
