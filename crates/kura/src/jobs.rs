//! Background work on the durable job queue (`kura-jobs`): the node's
//! runner with its handlers and schedules, the GC job, and `kura jobs`.

use std::sync::Arc;
use std::time::Duration;

use kura_gc::GcOptions;
use kura_jobs::{Job, JobError, JobHandler, JobState, Runner, RunnerConfig, RunnerHandle};
use kura_store::{BlobStore, JobStore, SqlMetaStore};

/// The job kind of garbage collection (`--gc-interval`).
pub const GC_JOB: &str = "gc";

/// One GC run (`gc` jobs). `kura_gc::collect` takes the `gc` lease, so one
/// GC runs at a time across nodes and beside a `kura gc`.
pub struct GcJob {
    pub meta: Arc<SqlMetaStore>,
    pub blobs: Arc<dyn BlobStore>,
    pub opts: GcOptions,
}

#[async_trait::async_trait]
impl JobHandler for GcJob {
    fn kind(&self) -> &str {
        GC_JOB
    }

    async fn run(&self, _job: &Job) -> Result<(), JobError> {
        let res = kura_gc::collect(self.meta.as_ref(), self.meta.as_ref(), self.blobs.as_ref(), &self.opts).await;
        crate::datadir::restore_reserve().await;
        res?;
        Ok(())
    }
}

/// What the node runs in the background, and how often.
pub struct Background {
    pub runner: RunnerConfig,
    pub gc_every: Duration,
    pub lifecycle_every: Duration,
    pub scan_sweep_every: Duration,
    /// Handlers of other crates' job kinds (e.g. EventBridge delivery).
    pub extra: Vec<Arc<dyn JobHandler>>,
    /// The audit trail's retention job, when on.
    pub audit_retention: Option<kura_audit::retention::RetentionJob>,
}

/// Start this node's runner: every handler, and the periodic schedules.
pub async fn start(
    meta: Arc<SqlMetaStore>,
    ecr: &kura_ecr::Ecr,
    gc: GcJob,
    plan: Background,
) -> anyhow::Result<RunnerHandle> {
    if meta.dialect() == kura_store::Dialect::Sqlite {
        // A job cut off by a crash of the previous process runs again now.
        for id in kura_jobs::release_orphans(meta.as_ref()).await? {
            tracing::info!(job = id, "released the job of a process that is no longer running");
        }
    }
    let mut runner = Runner::new(ecr.jobs().clone(), plan.runner);
    for h in ecr.job_handlers() {
        runner.register(h);
    }
    runner.register(Arc::new(gc));
    for h in plan.extra {
        runner.register(h);
    }
    // A schedule's slot key must outlive its slot, or a node starting late in
    // a long slot would run it again: done jobs are kept a day, or longer
    // than the longest schedule.
    let longest = [plan.gc_every, plan.lifecycle_every, plan.scan_sweep_every]
        .into_iter()
        .max()
        .unwrap_or_default();
    runner.register(Arc::new(kura_jobs::PurgeJob {
        store: meta.clone(),
        keep_done: Duration::from_secs(24 * 3600).max(longest * 2),
        keep_dead: Duration::from_secs(30 * 24 * 3600),
    }));
    let empty = serde_json::json!({});
    if let Some(job) = plan.audit_retention {
        runner.register(Arc::new(job)).every(
            kura_audit::retention::RETENTION_JOB,
            crate::audit::RETENTION_EVERY,
            &empty,
        );
    }
    runner
        .every(GC_JOB, plan.gc_every, &empty)
        .every(kura_ecr::lifecycle::RUN_JOB, plan.lifecycle_every, &empty)
        .every(kura_ecr::scanning::SWEEP_JOB, plan.scan_sweep_every, &empty)
        .every(kura_jobs::PURGE_JOB, Duration::from_secs(3600), &empty)
        .every(kura_secrets::purge::PURGE_JOB, Duration::from_secs(3600), &empty);
    Ok(runner.start())
}

/// One job as a JSON line.
fn job_json(j: &Job) -> serde_json::Value {
    serde_json::json!({
        "id": j.id, "kind": j.kind, "state": j.state,
        "payload": serde_json::from_str::<serde_json::Value>(&j.payload).unwrap_or(serde_json::Value::Null),
        "uniqueKey": j.unique_key, "lane": j.lane, "attempts": j.attempts, "maxAttempts": j.max_attempts,
        "runAfter": j.run_after, "leaseOwner": j.lease_owner, "leaseUntil": j.lease_until,
        "lastError": j.last_error, "createdAt": j.created_at, "updatedAt": j.updated_at, "finishedAt": j.finished_at,
    })
}

/// `kura jobs list`: jobs by id, as JSON lines or a table.
pub async fn list(
    store: &dyn JobStore,
    state: Option<&str>,
    kind: Option<&str>,
    out: crate::cli::Output,
) -> anyhow::Result<()> {
    let state = match state {
        Some(s) => Some(JobState::parse(s).ok_or_else(|| {
            crate::cli::Failure::usage(format!("unknown job state {s:?} (queued, running, done or dead)"))
        })?),
        None => None,
    };
    let mut after = 0;
    let mut items = Vec::new();
    loop {
        let page = store.job_list(state, kind, after, 500).await?;
        items.extend(page.iter().map(job_json));
        match page.last() {
            Some(l) if page.len() == 500 => after = l.id,
            _ => break,
        }
    }
    crate::cli::output::list(
        out,
        &items,
        &[
            "id",
            "kind",
            "state",
            "attempts",
            "maxAttempts",
            "runAfter",
            "lastError",
        ],
    )
}

/// `kura jobs retry ID`: queue a dead job again; prints it.
pub async fn retry(store: &dyn JobStore, id: i64) -> anyhow::Result<()> {
    if !store.job_retry(id).await? {
        match store.job_get(id).await? {
            None => return Err(crate::cli::Failure::not_found(format!("no job {id}"))),
            Some(j) if j.state != "dead" => {
                return Err(crate::cli::Failure::conflict(format!(
                    "job {id} is {}, not dead",
                    j.state
                )))
            }
            Some(_) => {
                return Err(crate::cli::Failure::conflict(format!(
                    "job {id} was not retried: another job with its unique key is queued or running"
                )))
            }
        }
    }
    if let Some(j) = store.job_get(id).await? {
        println!("{}", job_json(&j));
    }
    Ok(())
}
