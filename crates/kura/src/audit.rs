//! The audit trail in the binary: `kura serve`'s flags and start-up, and
//! `kura audit`, which prints the records `LookupEvents` reads.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use kura_audit::lookup;
use kura_audit::{AuditRecorder, RecorderOptions};
use kura_ecr::calls::AuditHook;
use kura_ecr::Ecr;
use kura_store::{AuditStore, SqlMetaStore};
use serde_json::{json, Value};

/// `kura serve`'s audit flags.
#[derive(clap::Args, Clone, Debug)]
pub struct AuditFlags {
    /// Record every API call and the data plane's writes in the audit trail
    /// (CloudTrail's records; `aws cloudtrail lookup-events`, `kura audit`).
    #[arg(long = "audit", env = "KURA_AUDIT", default_value = "true", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub enabled: bool,
    /// Also record the data plane's reads (pulls: BatchGetImage,
    /// GetDownloadUrlForLayer, …), as CloudTrail's data events.
    #[arg(long, env = "KURA_AUDIT_DATA_READS", value_parser = clap::builder::BoolishValueParser::new())]
    pub audit_data_reads: bool,
    /// How long records are kept ("0s": forever).
    #[arg(long, env = "KURA_AUDIT_RETENTION", default_value = "90d", value_parser = humantime::parse_duration)]
    pub audit_retention: Duration,
}

/// How often retention runs (a job on `kura-jobs`).
pub const RETENTION_EVERY: Duration = Duration::from_secs(3600);

/// What the trail adds to the AWS pipeline: the recorder of every call and
/// CloudTrail's `LookupEvents`.
pub struct Installed {
    /// The pipeline's [`kura_aws::CallRecorder`].
    pub recorder: Arc<AuditRecorder>,
    /// `LookupEvents` over the trail.
    pub cloudtrail: kura_audit::CloudTrail,
}

/// Turn the trail on for `ecr` (when enabled): start the recorder, hand it
/// to the data-plane guard, and return what the AWS pipeline registers.
pub fn install(
    ecr: &Ecr,
    store: Arc<SqlMetaStore>,
    flags: &AuditFlags,
    default_account: &str,
    region: &str,
) -> Option<Installed> {
    if !flags.enabled {
        tracing::info!("the audit trail is off");
        return None;
    }
    let trail: Arc<dyn AuditStore> = store;
    let recorder = Arc::new(AuditRecorder::start(
        trail.clone(),
        RecorderOptions::new(default_account),
    ));
    ecr.set_audit(AuditHook {
        recorder: recorder.clone(),
        data_reads: flags.audit_data_reads,
    });
    Some(Installed {
        recorder,
        cloudtrail: kura_audit::CloudTrail::new(trail, ecr.authz().clone(), region),
    })
}

/// The retention job of this node's runner, when the trail is on and keeps
/// records for a limited time.
pub fn retention_job(store: Arc<SqlMetaStore>, flags: &AuditFlags) -> Option<kura_audit::retention::RetentionJob> {
    (flags.enabled && !flags.audit_retention.is_zero()).then(|| kura_audit::retention::RetentionJob {
        store,
        retention: flags.audit_retention,
    })
}

/// `kura audit`'s filters: LookupEvents' attributes and time range.
#[derive(clap::Args, Debug)]
pub struct AuditQuery {
    /// The account whose records to list (default: the deployment's default account).
    #[arg(long, env = "KURA_ACCOUNT_ID")]
    pub account: Option<String>,
    /// The region the records name when they lack one.
    #[arg(long, env = "KURA_REGION", default_value = "us-east-1")]
    pub region: String,
    /// Only this event name (e.g. CreateRepository).
    #[arg(long)]
    pub event_name: Option<String>,
    /// Only this user name (`root`, a user's name, a role session's name).
    #[arg(long)]
    pub username: Option<String>,
    /// Only records naming this resource (e.g. a repository name).
    #[arg(long)]
    pub resource_name: Option<String>,
    /// Only this resource type (e.g. AWS::ECR::Repository).
    #[arg(long)]
    pub resource_type: Option<String>,
    /// Only this event source (e.g. ecr.amazonaws.com).
    #[arg(long)]
    pub event_source: Option<String>,
    /// Only calls signed with this access key.
    #[arg(long)]
    pub access_key_id: Option<String>,
    /// Only read-only (true) or only write (false) calls.
    #[arg(long)]
    pub read_only: Option<bool>,
    /// Only this event id.
    #[arg(long)]
    pub event_id: Option<String>,
    /// Oldest record (RFC 3339, or seconds since the epoch).
    #[arg(long)]
    pub start_time: Option<String>,
    /// Newest record (RFC 3339, or seconds since the epoch).
    #[arg(long)]
    pub end_time: Option<String>,
    /// Print at most this many records (newest first).
    #[arg(long)]
    pub limit: Option<u64>,
}

impl AuditQuery {
    /// The query as LookupEvents' input (one attribute at most).
    fn input(&self) -> anyhow::Result<Value> {
        let attrs: Vec<(&str, String)> = [
            ("EventName", self.event_name.clone()),
            ("Username", self.username.clone()),
            ("ResourceName", self.resource_name.clone()),
            ("ResourceType", self.resource_type.clone()),
            ("EventSource", self.event_source.clone()),
            ("AccessKeyId", self.access_key_id.clone()),
            ("ReadOnly", self.read_only.map(|b| b.to_string())),
            ("EventId", self.event_id.clone()),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect();
        anyhow::ensure!(
            attrs.len() <= 1,
            "give at most one of the attribute filters (as LookupEvents)"
        );
        let mut input = json!({});
        if let Some((k, v)) = attrs.first() {
            input["LookupAttributes"] = json!([{"AttributeKey": k, "AttributeValue": v}]);
        }
        if let Some(t) = &self.start_time {
            input["StartTime"] = json!(t);
        }
        if let Some(t) = &self.end_time {
            input["EndTime"] = json!(t);
        }
        Ok(input)
    }
}

/// `kura audit`: the account's records, newest first, one CloudTrail record
/// (JSON) per line: what `LookupEvents` returns as `CloudTrailEvent`.
pub async fn command(meta: Arc<SqlMetaStore>, q: AuditQuery) -> anyhow::Result<()> {
    let account = match &q.account {
        Some(a) => a.clone(),
        None => match kura_store::ControlStore::server_secret_get(meta.as_ref(), "default-account").await? {
            Some(a) => String::from_utf8(a).context("the default account")?,
            // Never started: no account, no records.
            None => return Ok(()),
        },
    };
    let mut input = q.input()?;
    let mut printed = 0u64;
    loop {
        let parsed = lookup::parse_input(&input, kura_store::now_millis()).map_err(|e| anyhow::anyhow!("{e}"))?;
        let (events, next) = lookup::lookup(meta.as_ref(), &account, &parsed)
            .await?
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        for e in &events {
            if q.limit.is_some_and(|l| printed >= l) {
                return Ok(());
            }
            println!("{}", lookup::record_json(e, &q.region));
            printed += 1;
        }
        match next {
            Some(t) => input["NextToken"] = json!(t),
            None => return Ok(()),
        }
    }
}

/// Records each pull-through cache import (and failed sync) in the trail of the
/// account that owns the repository, as an `AwsServiceEvent` named
/// `BatchImportUpstreamImage` (the action a pull that imports needs; Kura's
/// choice of name): which upstream, which image, and how it went.
pub struct PullThroughTrail {
    /// Where the records go.
    pub store: Arc<dyn AuditStore>,
    /// The deployment's region (for the repository's ARN).
    pub region: String,
}

#[async_trait::async_trait]
impl kura_registry::EventListener for PullThroughTrail {
    async fn on_event(&self, event: &kura_registry::ImageEvent) {
        let kura_registry::EventKind::PullThroughCacheAction {
            digest,
            tag,
            ecr_repository_prefix,
            upstream_registry_url,
            sync_status,
            failure_code,
            failure_reason,
        } = &event.kind
        else {
            return;
        };
        let detail = serde_json::json!({
            "repositoryName": event.repository,
            "ecrRepositoryPrefix": ecr_repository_prefix,
            "upstreamRegistryUrl": upstream_registry_url,
            "imageTag": tag,
            "imageDigest": digest,
            "syncStatus": sync_status,
            "failureCode": failure_code,
            "failureReason": failure_reason,
        });
        let row = kura_store::audit::aws_service_event(kura_store::audit::ServiceEvent {
            account: &event.account,
            at_ms: event.time_ms,
            source: "ecr.amazonaws.com",
            event_name: "BatchImportUpstreamImage",
            region: Some(&self.region),
            repository: Some(&event.repository),
            detail,
        });
        if let Err(e) = self.store.trail_append(&[row]).await {
            tracing::warn!(error = %e, "could not record a pull-through cache import in the audit trail");
        }
    }

    fn wants(&self, ty: kura_registry::EventType) -> bool {
        ty == kura_registry::EventType::PullThroughCacheAction
    }
}
