//! Applying lifecycle policies: the background runner, `kura lifecycle run`,
//! and previews. The rules themselves (validation, evaluation) are in
//! `kura-lifecycle`; this module feeds it a repository's images and carries
//! out its decisions.
//!
//! Expiry deletes the image and all its tags through the registry's one
//! deletion path (`Registry::delete_image`, as the lifecycle service: its
//! listeners get `ImageDeleted` and `LifecycleExpired`), so tag immutability
//! never blocks it; an image that an index in the repository still lists is
//! kept (as ECR does) and reported. Each expiry is recorded as a
//! `PolicyExecutionEvent` audit record. A `transition` action archives the
//! image (ACTIVE → ARCHIVED, as `UpdateImageStorageClass` does; see
//! `crate::archive`); rules of the archive class expire archived images.
//! Runs take the
//! `lifecycle` lease, so one node at a time; re-running is idempotent.

use std::sync::Arc;

use kura_lifecycle::{Action, Decision, Image, Policy, StorageClass};
use kura_registry::error::RegistryError;
use kura_registry::service::DeleteCause;
use kura_registry::{Actor, Registry};
use kura_store::gc::AuditEvent;
use kura_store::meta::{ImageStatus, RepoRow, TagStatus};
use kura_store::{MaintenanceStore, MetaStore, StoreError};
use serde::Serialize;
use serde_json::json;

/// What one run did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LifecycleReport {
    /// Another node held the lease: nothing done.
    pub skipped: bool,
    /// Repositories evaluated.
    pub repositories: u64,
    /// Images expired.
    pub expired: u64,
    /// Images moved to the archive storage class.
    pub transitioned: u64,
    /// Images selected but kept because an index references them.
    pub kept_referenced: u64,
    /// Policies that no longer parse (skipped).
    pub invalid_policies: u64,
}

/// Every image of a repository, as the evaluator sees it.
pub async fn images_of(meta: &dyn MetaStore, repo: i64) -> Result<Vec<Image>, StoreError> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = meta.image_list(repo, TagStatus::Any, after.as_deref(), 1000).await?;
        for i in &page {
            out.push(Image {
                digest: i.digest.clone(),
                tags: i.tags.clone(),
                pushed_at_ms: i.pushed_at,
                last_pulled_at_ms: i.last_pulled_at,
                storage_class: match i.status {
                    ImageStatus::Active => Some(StorageClass::Standard),
                    ImageStatus::Archived => Some(StorageClass::Archive),
                    ImageStatus::Activating => None,
                },
                transitioned_at_ms: i.archived_at,
            });
        }
        match page.last() {
            Some(l) if page.len() == 1000 => after = Some(l.digest.clone()),
            _ => break,
        }
    }
    Ok(out)
}

/// What a policy expires in a repository now, and how many of its selections
/// are kept because an index still lists them (AWS: an image a manifest list
/// references cannot expire before the list). Preview and run share this, so
/// a preview shows exactly what the run that follows it does.
pub async fn decide(meta: &dyn MetaStore, repo: i64, policy: &Policy) -> Result<(Vec<Decision>, u64), StoreError> {
    let images = images_of(meta, repo).await?;
    let mut decisions = kura_lifecycle::evaluate(policy, &images, kura_store::now_millis());
    let children: std::collections::HashSet<String> = meta.manifest_children_of_repo(repo).await?.into_iter().collect();
    let before = decisions.len();
    decisions.retain(|d| !children.contains(&d.digest));
    let kept = (before - decisions.len()) as u64;
    Ok((decisions, kept))
}

/// Apply a repository's policy now.
pub async fn apply(
    registry: &Registry,
    maint: &dyn MaintenanceStore,
    repo: &RepoRow,
    policy: &Policy,
    report: &mut LifecycleReport,
) -> Result<(), StoreError> {
    let (decisions, kept) = decide(registry.meta().as_ref(), repo.id, policy).await?;
    report.kept_referenced += kept;
    let Ok(name) = repo.name.parse::<kura_oci::RepoName>() else {
        tracing::warn!(repository = %repo.name, "a stored repository name no longer parses; lifecycle skips it");
        return Ok(());
    };
    let actor = Actor::lifecycle(repo.account.clone());
    for d in decisions {
        if d.action == Action::Transition {
            transition(registry.meta().as_ref(), maint, repo, &d, report).await?;
            continue;
        }
        let cause = DeleteCause::LifecycleExpiry {
            rule_priority: d.applied_rule_priority as i64,
        };
        let result = registry
            .delete_image(&repo.account, &name, &d.digest, cause, &actor)
            .await;
        let outcome = match result {
            Ok(_) => {
                report.expired += 1;
                "SUCCESS"
            }
            Err(RegistryError::ReferencedBy { .. }) => {
                report.kept_referenced += 1;
                "SKIPPED_REFERENCED_BY_MANIFEST_LIST"
            }
            Err(RegistryError::ManifestUnknown { .. } | RegistryError::RepositoryUnknown { .. }) => continue,
            Err(RegistryError::Store(e)) => return Err(e),
            Err(e) => return Err(StoreError::Corrupt(format!("lifecycle expiry of {}: {e}", d.digest))),
        };
        tracing::info!(
            repository = %repo.name,
            digest = %d.digest,
            rule = d.applied_rule_priority,
            outcome,
            "lifecycle policy expired an image"
        );
        maint
            .audit_append(&AuditEvent {
                id: 0,
                at: kura_store::now_millis(),
                account: repo.account.clone(),
                event_name: "PolicyExecutionEvent".into(),
                source: "ecr.amazonaws.com".into(),
                detail: json!({
                    "eventName": "PolicyExecutionEvent",
                    "repositoryName": repo.name,
                    "imageDigest": d.digest,
                    "imageTags": d.tags,
                    "imagePushedAt": d.pushed_at_ms as f64 / 1000.0,
                    "appliedRulePriority": d.applied_rule_priority,
                    "actionType": "EXPIRE",
                    "result": outcome,
                })
                .to_string(),
            })
            .await?;
    }
    maint.lifecycle_evaluated(repo.id, kura_store::now_millis()).await?;
    report.repositories += 1;
    Ok(())
}

/// Carry out a `transition` decision: archive the image (and the manifests an
/// index lists) if it is still ACTIVE; recorded like an expiry.
async fn transition(
    meta: &dyn MetaStore,
    maint: &dyn MaintenanceStore,
    repo: &RepoRow,
    d: &Decision,
    report: &mut LifecycleReport,
) -> Result<(), StoreError> {
    let moved = meta
        .image_set_status(
            repo.id,
            &d.digest,
            &[ImageStatus::Active],
            ImageStatus::Archived,
            kura_store::now_millis(),
        )
        .await?;
    if moved.is_empty() {
        // Deleted, archived or restored in between: nothing to do.
        return Ok(());
    }
    report.transitioned += 1;
    tracing::info!(
        repository = %repo.name,
        digest = %d.digest,
        rule = d.applied_rule_priority,
        "lifecycle policy archived an image"
    );
    maint
        .audit_append(&AuditEvent {
            id: 0,
            at: kura_store::now_millis(),
            account: repo.account.clone(),
            event_name: "PolicyExecutionEvent".into(),
            source: "ecr.amazonaws.com".into(),
            detail: json!({
                "eventName": "PolicyExecutionEvent",
                "repositoryName": repo.name,
                "imageDigest": d.digest,
                "imageTags": d.tags,
                "imagePushedAt": d.pushed_at_ms as f64 / 1000.0,
                "appliedRulePriority": d.applied_rule_priority,
                "actionType": "TRANSITION",
                "targetStorageClass": "ARCHIVE",
                "result": "SUCCESS",
            })
            .to_string(),
        })
        .await
}

/// A decision as a preview result (`LifecyclePolicyPreviewResult`).
pub fn preview_result(d: &Decision) -> serde_json::Value {
    let action = match d.action {
        Action::Expire => json!({"type": "EXPIRE"}),
        Action::Transition => json!({"type": "TRANSITION", "targetStorageClass": "ARCHIVE"}),
    };
    json!({
        "imageDigest": d.digest,
        "imageTags": d.tags,
        "imagePushedAt": d.pushed_at_ms as f64 / 1000.0,
        "action": action,
        "appliedRulePriority": d.applied_rule_priority,
        "storageClass": match d.storage_class {
            StorageClass::Standard => "STANDARD",
            StorageClass::Archive => "ARCHIVE",
        },
    })
}

/// Apply every repository's policy (the background job and `kura lifecycle run`).
pub async fn run_all(registry: Arc<Registry>, maint: Arc<dyn MaintenanceStore>) -> Result<LifecycleReport, StoreError> {
    let meta = registry.meta().clone();
    let mut report = LifecycleReport::default();
    let job = async {
        let mut after = None;
        loop {
            let page = maint.lifecycle_list(after, 200).await?;
            for row in &page {
                let Some(repo) = meta.repo_by_id(row.repo_id).await? else {
                    continue;
                };
                match kura_lifecycle::parse(&row.policy) {
                    Ok(policy) => apply(&registry, maint.as_ref(), &repo, &policy, &mut report).await?,
                    Err(e) => {
                        report.invalid_policies += 1;
                        tracing::warn!(repository = %repo.name, error = %e, "stored lifecycle policy no longer parses");
                    }
                }
            }
            match page.last() {
                Some(l) if page.len() == 200 => after = Some(l.repo_id),
                _ => break,
            }
        }
        Ok::<(), StoreError>(())
    };
    // A 30 s lease renewed every 10 s: a run killed mid-way blocks the next
    // one for at most 30 s.
    let outcome = kura_store::gc::with_job_lease(maint.as_ref(), "lifecycle", job).await?;
    let report = match outcome {
        kura_store::gc::Leased::Ran(()) => report,
        kura_store::gc::Leased::Held(by, until) => {
            let until = kura_store::gc::format_ms(until);
            tracing::info!(holder = %by, until = %until, "lifecycle run skipped: lease held by {by} until {until}");
            return Ok(LifecycleReport {
                skipped: true,
                ..Default::default()
            });
        }
    };
    tracing::info!(
        repositories = report.repositories,
        expired = report.expired,
        transitioned = report.transitioned,
        kept_referenced = report.kept_referenced,
        "lifecycle run finished"
    );
    Ok(report)
}

/// The job kind of lifecycle policy previews.
pub const PREVIEW_JOB: &str = "lifecycle-preview";

/// Tries a preview gets before it is FAILED.
const PREVIEW_ATTEMPTS: u32 = 5;

/// What a preview job carries.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct PreviewPayload {
    /// The repository's row id.
    pub repo_id: i64,
    /// The policy to preview (already validated).
    pub policy: String,
}

/// Enqueue a repository's preview (after `StartLifecyclePolicyPreview` marked
/// it IN_PROGRESS). One job per repository at a time.
pub async fn enqueue_preview(jobs: &kura_jobs::Queue, repo: i64, policy: &str) -> Result<i64, StoreError> {
    let payload = PreviewPayload {
        repo_id: repo,
        policy: policy.to_string(),
    };
    jobs.enqueue(
        kura_jobs::NewJob::new(PREVIEW_JOB, payload)
            .unique_key(format!("{PREVIEW_JOB}:{repo}"))
            .max_attempts(PREVIEW_ATTEMPTS),
    )
    .await
}

/// Computes previews (`lifecycle-preview` jobs): evaluates the policy over
/// the repository's images and stores the result. Idempotent: a run again
/// after a crash stores the same preview.
pub struct PreviewJob {
    /// Images.
    pub meta: Arc<dyn MetaStore>,
    /// Where previews are kept.
    pub maint: Arc<dyn MaintenanceStore>,
}

#[async_trait::async_trait]
impl kura_jobs::JobHandler for PreviewJob {
    fn kind(&self) -> &str {
        PREVIEW_JOB
    }

    fn retry(&self) -> kura_jobs::RetryPolicy {
        // A person is waiting: retry soon, give up (FAILED) after the job's 5 tries.
        kura_jobs::RetryPolicy {
            base: std::time::Duration::from_secs(2),
            cap: std::time::Duration::from_secs(30),
            max_attempts: PREVIEW_ATTEMPTS,
            max_age: None,
        }
    }

    async fn run(&self, job: &kura_jobs::Job) -> Result<(), kura_jobs::JobError> {
        let p: PreviewPayload = kura_jobs::payload(job)?;
        let Ok(policy) = kura_lifecycle::parse(&p.policy) else {
            self.maint.preview_finish(p.repo_id, "FAILED", None).await?;
            return Err(kura_jobs::JobError::Fatal("the previewed policy does not parse".into()));
        };
        let res = async {
            let (decisions, _) = decide(self.meta.as_ref(), p.repo_id, &policy).await?;
            let results: Vec<serde_json::Value> = decisions.iter().map(preview_result).collect();
            self.maint
                .preview_finish(
                    p.repo_id,
                    "COMPLETE",
                    Some(&serde_json::Value::Array(results).to_string()),
                )
                .await
        }
        .await;
        if let Err(e) = res {
            tracing::error!(error = %e, attempt = job.attempts, "lifecycle preview failed");
            if job.attempts >= job.max_attempts {
                // The last try: the preview says FAILED rather than staying IN_PROGRESS.
                let _ = self.maint.preview_finish(p.repo_id, "FAILED", None).await;
            }
            return Err(e.into());
        }
        Ok(())
    }
}

/// The job kind of the periodic lifecycle run (`--lifecycle-interval`).
pub const RUN_JOB: &str = "lifecycle";

/// Applies every repository's policy (`lifecycle` jobs; also `kura lifecycle run`).
pub struct RunJob {
    /// The image service expiries go through.
    pub registry: Arc<Registry>,
    /// Policies, leases, audit.
    pub maint: Arc<dyn MaintenanceStore>,
}

#[async_trait::async_trait]
impl kura_jobs::JobHandler for RunJob {
    fn kind(&self) -> &str {
        RUN_JOB
    }

    async fn run(&self, _job: &kura_jobs::Job) -> Result<(), kura_jobs::JobError> {
        run_all(self.registry.clone(), self.maint.clone()).await?;
        Ok(())
    }
}
