//! The `secrets-purge` job: secrets whose recovery window has passed are removed for good
//! (scheduled hourly by `kura serve`). Until it runs they are already absent to every call
//! (the store treats a passed `purge_at` as gone), so the job only frees the rows.

use std::sync::Arc;

use kura_jobs::{Job, JobError, JobHandler};
use kura_store::SecretsStore;

/// The job kind.
pub const PURGE_JOB: &str = "secrets-purge";

/// Removes the secrets past their recovery window.
pub struct PurgeJob {
    /// The store.
    pub store: Arc<dyn SecretsStore>,
}

#[async_trait::async_trait]
impl JobHandler for PurgeJob {
    fn kind(&self) -> &str {
        PURGE_JOB
    }

    async fn run(&self, _job: &Job) -> Result<(), JobError> {
        let n = self.store.secrets_purge_expired(kura_store::now_millis()).await?;
        if n > 0 {
            tracing::info!(deleted = n, "secrets past their recovery window deleted");
        }
        Ok(())
    }
}
