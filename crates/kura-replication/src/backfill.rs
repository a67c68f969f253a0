//! Replication backfills (`StartReplicationBackfill`): replicate the images an
//! account had before its replication configuration to one destination.
//!
//! [`start`] records the backfill (`PREPARING`; at most one running per
//! account and destination) and queues one durable [`BACKFILL_JOB`]. The job
//! ([`BackfillJob`]) walks the account's repositories that a rule naming the
//! destination covers, page by page, and for each image queues a
//! [`crate::REPLICATE_JOB`] (through [`crate::enqueue`], marked with the
//! backfill's id) and records it as an item; then the backfill is
//! `IN_PROGRESS`. Its progress and results are the items' status rows, which
//! the replicate jobs write; it is `COMPLETE` once every item replicated or
//! failed ([`ReplicationStore::repl_backfill_settle`], run when the backfill
//! is read). Index children and referrers of an image in the same repository
//! are not queued on their own: the replicate job copies them with it.
//!
//! Restarts: the job records after each page where it got to (the cursor),
//! and resumes there; a page queued twice is harmless (the replicate jobs'
//! unique keys, and idempotent items). `StopReplicationBackfill` moves a
//! preparing backfill to `STOPPING`; the job sees it before its next page and
//! makes it `STOPPED` (images already queued still replicate).

use std::collections::HashSet;
use std::sync::Arc;

use kura_jobs::{Job, JobError, JobHandler, NewJob, Queue};
use kura_store::meta::{RepoRow, TagStatus};
use kura_store::replication::{backfill_status as bs, BackfillItem, BackfillRow, ReplicationStore};
use kura_store::{ControlStore, MetaStore, StoreError};
use serde::{Deserialize, Serialize};

use crate::{Destination, ReplicateRequest, ReplicationConfiguration};

/// The job kind that enumerates and queues one backfill's images.
pub const BACKFILL_JOB: &str = "replication.backfill";

/// Images (and repositories) read per page.
const PAGE: i64 = 100;

/// What a [`BACKFILL_JOB`] carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackfillRequest {
    /// The source account.
    pub account: String,
    /// The backfill's id.
    pub backfill_id: String,
}

/// Where the job got to: the last image queued.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Cursor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    repository: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    digest: Option<String>,
}

/// Start a backfill of `account` to `destination`: record it and queue its
/// job. `None` when one is running for that destination already. (Whether a
/// rule names the destination is the caller's check.)
pub async fn start(
    queue: &Queue,
    store: &dyn ReplicationStore,
    account: &str,
    destination: &Destination,
) -> Result<Option<BackfillRow>, StoreError> {
    let id = uuid::Uuid::new_v4().to_string();
    let Some(row) = store
        .repl_backfill_create(&id, account, &destination.region, &destination.registry_id)
        .await?
    else {
        return Ok(None);
    };
    let req = BackfillRequest {
        account: account.to_string(),
        backfill_id: id.clone(),
    };
    if let Err(e) = queue
        .enqueue(NewJob::new(BACKFILL_JOB, &req).unique_key(format!("{BACKFILL_JOB}:{id}")))
        .await
    {
        // Without its job it would hold the destination forever.
        let _ = store
            .repl_backfill_transition(account, &id, bs::RUNNING, bs::FAILED, Some("INTERNAL_ERROR"))
            .await;
        return Err(e);
    }
    Ok(Some(row))
}

/// Runs [`BACKFILL_JOB`]s. Register it with the node's runner.
pub struct BackfillJob {
    queue: Queue,
    meta: Arc<dyn MetaStore>,
    control: Arc<dyn ControlStore>,
    repl: Arc<dyn ReplicationStore>,
}

/// How a pass over a repository ended.
enum Flow {
    Go,
    Stopped,
}

impl BackfillJob {
    /// The handler: replicate jobs go to `queue`; repositories and images
    /// are read from `meta`, the configuration from `control`.
    pub fn new(
        queue: Queue,
        meta: Arc<dyn MetaStore>,
        control: Arc<dyn ControlStore>,
        repl: Arc<dyn ReplicationStore>,
    ) -> Self {
        BackfillJob {
            queue,
            meta,
            control,
            repl,
        }
    }

    /// Stop here if the backfill was asked to stop (`STOPPING` becomes
    /// `STOPPED`) or is no longer preparing.
    async fn stopped(&self, bf: &BackfillRow) -> Result<bool, StoreError> {
        let now = self.repl.repl_backfill_get(&bf.account, &bf.id).await?;
        match now.as_ref().map(|b| b.status.as_str()) {
            Some(bs::PREPARING) => Ok(false),
            Some(bs::STOPPING) => {
                self.repl
                    .repl_backfill_transition(&bf.account, &bf.id, &[bs::STOPPING], bs::STOPPED, None)
                    .await?;
                Ok(true)
            }
            _ => Ok(true),
        }
    }

    /// Queue the images of `repo` after `after`.
    async fn repository(
        &self,
        bf: &BackfillRow,
        dest: &Destination,
        repo: &RepoRow,
        mut after: Option<String>,
    ) -> Result<Flow, StoreError> {
        let children: HashSet<String> = self
            .meta
            .manifest_children_of_repo(repo.id)
            .await?
            .into_iter()
            .collect();
        loop {
            if self.stopped(bf).await? {
                return Ok(Flow::Stopped);
            }
            let page = self
                .meta
                .image_list(repo.id, TagStatus::Any, after.as_deref(), PAGE)
                .await?;
            let mut items = Vec::new();
            for img in &page {
                if children.contains(&img.digest) {
                    continue;
                }
                if let Some(subject) = &img.subject {
                    if self.meta.image_get(repo.id, subject).await?.is_some() {
                        continue;
                    }
                }
                let req = ReplicateRequest {
                    account: bf.account.clone(),
                    repository: repo.name.clone(),
                    repo_id: repo.id,
                    digest: img.digest.clone(),
                    tags: img.tags.clone(),
                    destination: dest.clone(),
                    backfill: Some(bf.id.clone()),
                };
                crate::enqueue(&self.queue, self.repl.as_ref(), &req).await?;
                items.push(BackfillItem {
                    repo_id: repo.id,
                    repository: repo.name.clone(),
                    digest: img.digest.clone(),
                    tag: img.tags.first().cloned(),
                });
            }
            self.repl.repl_backfill_items_add(&bf.id, &items).await?;
            let Some(last) = page.last() else {
                return Ok(Flow::Go);
            };
            let cursor = Cursor {
                repository: Some(repo.name.clone()),
                digest: Some(last.digest.clone()),
            };
            self.repl
                .repl_backfill_cursor_set(&bf.id, &serde_json::to_string(&cursor).unwrap_or_default())
                .await?;
            if (page.len() as i64) < PAGE {
                return Ok(Flow::Go);
            }
            after = Some(last.digest.clone());
        }
    }

    async fn run_backfill(&self, req: &BackfillRequest) -> Result<(), StoreError> {
        let Some(bf) = self.repl.repl_backfill_get(&req.account, &req.backfill_id).await? else {
            return Ok(());
        };
        if self.stopped(&bf).await? {
            return Ok(());
        }
        let dest = Destination {
            region: bf.region.clone(),
            registry_id: bf.registry_id.clone(),
        };
        let config = ReplicationConfiguration::load(self.control.as_ref(), &bf.account).await?;
        let covers = |name: &str| {
            config
                .rules
                .iter()
                .any(|r| r.destinations.contains(&dest) && r.covers(name))
        };
        let cursor: Cursor = serde_json::from_str(&bf.cursor).unwrap_or_default();
        // Resume inside the repository the last run was in.
        let mut repo_after = cursor.repository.clone();
        if let Some(name) = &cursor.repository {
            if let Some(repo) = self.meta.repo_get(&bf.account, name).await? {
                if covers(name) {
                    if let Flow::Stopped = self.repository(&bf, &dest, &repo, cursor.digest.clone()).await? {
                        return Ok(());
                    }
                }
            }
        }
        loop {
            let repos = self
                .meta
                .repo_list_rows(&bf.account, repo_after.as_deref(), PAGE)
                .await?;
            for repo in repos.iter().filter(|r| covers(&r.name)) {
                if let Flow::Stopped = self.repository(&bf, &dest, repo, None).await? {
                    return Ok(());
                }
            }
            match repos.last() {
                Some(last) if repos.len() as i64 == PAGE => repo_after = Some(last.name.clone()),
                _ => break,
            }
        }
        // Everything is queued: in progress until every item is final.
        if !self
            .repl
            .repl_backfill_transition(&bf.account, &bf.id, &[bs::PREPARING], bs::IN_PROGRESS, None)
            .await?
        {
            // Stopped meanwhile.
            self.stopped(&bf).await?;
            return Ok(());
        }
        self.repl.repl_backfill_settle(&bf.account).await?;
        tracing::info!(backfill = %bf.id, account = %bf.account, region = %dest.region,
            registry = %dest.registry_id, "replication backfill queued its images");
        Ok(())
    }
}

#[async_trait::async_trait]
impl JobHandler for BackfillJob {
    fn kind(&self) -> &str {
        BACKFILL_JOB
    }

    async fn run(&self, job: &Job) -> Result<(), JobError> {
        let req: BackfillRequest = kura_jobs::payload(job)?;
        match self.run_backfill(&req).await {
            Ok(()) => Ok(()),
            Err(e) => {
                // The last attempt: the backfill failed (and frees its destination).
                let last = u32::try_from(job.attempts).unwrap_or(u32::MAX) >= self.retry().max_attempts
                    || job.attempts >= job.max_attempts;
                if last {
                    let _ = self
                        .repl
                        .repl_backfill_transition(
                            &req.account,
                            &req.backfill_id,
                            &[bs::PREPARING, bs::STOPPING],
                            bs::FAILED,
                            Some("INTERNAL_ERROR"),
                        )
                        .await;
                }
                Err(e.into())
            }
        }
    }
}
