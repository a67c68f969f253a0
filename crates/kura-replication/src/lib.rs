//! Replication across regions and accounts, as ECR does it.
//!
//! * [`config`]: the registry's replication configuration (ECR's shape and
//!   validation), and which destinations a repository's pushes go to.
//! * A listener of image pushes and tag moves ([`listener`]) queues one
//!   durable [`REPLICATE_JOB`] per image and destination, before the push
//!   is answered, and marks the image `IN_PROGRESS` there.
//! * The job ([`job`]) copies the image: for an index its children first,
//!   then every blob the destination lacks, then the manifest byte-exact
//!   under its tags, then the referrers that point at it. It goes through
//!   a [`sink::Sink`]: [`sink::LocalSink`] for another account of this
//!   deployment, [`peer::PeerSink`] for another region (another Kura
//!   deployment, over the federation protocol of [`server`]).
//! * [`federation`]: the short-lived tokens deployments of one federation
//!   sign with keys derived from their shared secret.

pub mod backfill;
pub mod config;
pub mod federation;
pub mod job;
pub mod listener;
pub mod peer;
pub mod server;
pub mod sink;

use kura_jobs::{NewJob, Queue};
use kura_store::replication::{ReplKey, ReplicationStore};
use kura_store::StoreError;
use serde::{Deserialize, Serialize};

pub use config::{Destination, ReplicationConfiguration};

/// The job kind that replicates one image to one destination.
pub const REPLICATE_JOB: &str = "replicate";

/// The service principal replication acts as in the destination (its
/// actor on the destination's image events and audit records).
pub const REPLICATION_SERVICE: &str = "replication.ecr.amazonaws.com";

/// `IN_PROGRESS`.
pub const IN_PROGRESS: &str = "IN_PROGRESS";
/// `COMPLETE`.
pub const COMPLETE: &str = "COMPLETE";
/// `FAILED`.
pub const FAILED: &str = "FAILED";

/// What a [`REPLICATE_JOB`] carries: one image of a source repository and
/// one destination.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicateRequest {
    /// The source account.
    pub account: String,
    /// The source repository's name (the destination repository has the same name).
    pub repository: String,
    /// The source repository's id (status rows hang off it).
    pub repo_id: i64,
    /// The image's manifest digest.
    pub digest: String,
    /// Tags to set in the destination (those the push named; the job adds
    /// the tags the image has in the source when it runs).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Where to.
    pub destination: Destination,
    /// The backfill this replication belongs to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backfill: Option<String>,
}

impl ReplicateRequest {
    /// The key of its status row.
    pub fn key(&self) -> ReplKey<'_> {
        ReplKey {
            repo_id: self.repo_id,
            digest: &self.digest,
            region: &self.destination.region,
            registry_id: &self.destination.registry_id,
        }
    }

    /// The job's unique key: one queued replication per image, tag set and
    /// destination (a second push of the same image while one is queued
    /// adds nothing; a tag move is a new job).
    pub fn unique_key(&self) -> String {
        let mut tags = self.tags.clone();
        tags.sort();
        format!(
            "replicate:{}:{}:{}:{}:{}",
            self.repo_id,
            self.digest,
            self.destination.region,
            self.destination.registry_id,
            tags.join(",")
        )
    }
}

/// Mark the image `IN_PROGRESS` for its destination and queue the job that
/// replicates it. Durable once this returns.
pub async fn enqueue(queue: &Queue, store: &dyn ReplicationStore, req: &ReplicateRequest) -> Result<i64, StoreError> {
    store.repl_status_set(req.key(), IN_PROGRESS, None, false).await?;
    queue
        .enqueue(
            NewJob::new(REPLICATE_JOB, req)
                .unique_key(req.unique_key())
                .max_attempts(u32::MAX),
        )
        .await
}
