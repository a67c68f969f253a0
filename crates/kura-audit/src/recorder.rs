//! Group commit: records of calls answered concurrently share one
//! transaction.
//!
//! Each call builds its record on its own task and hands it to one writer
//! task through a bounded queue. The writer takes what is queued (up to
//! [`RecorderOptions::max_batch`]), writes it in one transaction
//! ([`AuditStore::trail_append`]) and then releases every caller of that
//! batch; so `record()` returns only once the record is committed, and the
//! call is answered after. While a batch commits the next one gathers: under
//! load, many calls share one commit, and a lone call pays one small
//! transaction. On SQLite the commit is relaxed (no fsync of its own; see
//! `kura_store::audit`), so the request path gains no fsync.
//!
//! A failing store never fails a call: the batch is logged (error, with the
//! count of records lost) and its callers are released. A full queue or a
//! commit slower than [`RecorderOptions::wait`] releases the caller too
//! (logged), so a stalled database cannot stall the API.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kura_store::audit::TrailRow;
use kura_store::AuditStore;
use tokio::sync::{mpsc, oneshot};

use crate::record::{self, CallRecord};

/// How the recorder batches.
#[derive(Clone, Debug)]
pub struct RecorderOptions {
    /// Records waiting for the writer at most (the queue's bound).
    pub queue: usize,
    /// Records in one transaction at most.
    pub max_batch: usize,
    /// How long a call waits for its record to be queued and committed
    /// before it is answered anyway (logged).
    pub wait: Duration,
    /// The account whose trail holds a call no one was identified for
    /// (failed authentication): the deployment's default account.
    pub fallback_account: String,
}

impl RecorderOptions {
    /// Defaults: a queue of 10,000, batches of up to 500, 10 s.
    pub fn new(fallback_account: &str) -> Self {
        RecorderOptions {
            queue: 10_000,
            max_batch: 500,
            wait: Duration::from_secs(10),
            fallback_account: fallback_account.to_string(),
        }
    }
}

/// Counters of the writer.
#[derive(Debug, Default)]
pub struct RecorderStats {
    /// Transactions committed.
    pub batches: AtomicU64,
    /// Records committed.
    pub records: AtomicU64,
    /// Records lost (the store failed, the queue was full, or the wait ran
    /// out).
    pub lost: AtomicU64,
}

struct Pending {
    row: TrailRow,
    done: oneshot::Sender<bool>,
}

/// The audit trail's writer: [`AuditRecorder::record`] returns once the
/// record is committed.
#[derive(Clone)]
pub struct AuditRecorder {
    tx: mpsc::Sender<Pending>,
    opts: Arc<RecorderOptions>,
    stats: Arc<RecorderStats>,
}

impl AuditRecorder {
    /// Start the writer task on the current runtime.
    pub fn start(store: Arc<dyn AuditStore>, opts: RecorderOptions) -> Self {
        let (tx, rx) = mpsc::channel(opts.queue.max(1));
        let stats = Arc::new(RecorderStats::default());
        tokio::spawn(writer(store, rx, opts.max_batch.max(1), stats.clone()));
        AuditRecorder {
            tx,
            opts: Arc::new(opts),
            stats,
        }
    }

    /// The writer's counters.
    pub fn stats(&self) -> &RecorderStats {
        &self.stats
    }

    /// Records queued and not yet taken by the writer.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Record a call (a management event); returns once its record is
    /// committed (or, logged, when it could not be).
    pub async fn record(&self, call: &CallRecord) {
        let row = record::build(call, false, &self.opts.fallback_account);
        self.record_row(row).await;
    }

    /// Record a data event (a data-plane read, e.g. a pull); returns once
    /// its record is committed (or, logged, when it could not be).
    pub async fn record_data(&self, call: &CallRecord) {
        let row = record::build(call, true, &self.opts.fallback_account);
        self.record_row(row).await;
    }

    /// Record a built row; returns once it is committed (true), or when it
    /// could not be (false, logged).
    pub async fn record_row(&self, row: TrailRow) -> bool {
        let (done, committed) = oneshot::channel();
        let name = row.event_name.clone();
        let wait = self.opts.wait;
        let outcome = tokio::time::timeout(wait, async {
            self.tx.send(Pending { row, done }).await.ok()?;
            committed.await.ok()
        })
        .await;
        match outcome {
            Ok(Some(ok)) => ok,
            Ok(None) => {
                self.stats.lost.fetch_add(1, Ordering::Relaxed);
                tracing::error!(event = %name, "audit record lost: the recorder has stopped");
                false
            }
            Err(_) => {
                self.stats.lost.fetch_add(1, Ordering::Relaxed);
                tracing::error!(event = %name, wait_ms = wait.as_millis() as u64, "audit record not committed in time; the call is answered anyway");
                false
            }
        }
    }
}

async fn writer(store: Arc<dyn AuditStore>, mut rx: mpsc::Receiver<Pending>, max: usize, stats: Arc<RecorderStats>) {
    let mut batch: Vec<Pending> = Vec::with_capacity(max);
    while rx.recv_many(&mut batch, max).await > 0 {
        let rows: Vec<TrailRow> = batch.iter().map(|p| p.row.clone()).collect();
        let ok = match store.trail_append(&rows).await {
            Ok(()) => {
                stats.batches.fetch_add(1, Ordering::Relaxed);
                stats.records.fetch_add(rows.len() as u64, Ordering::Relaxed);
                true
            }
            Err(e) => {
                stats.lost.fetch_add(rows.len() as u64, Ordering::Relaxed);
                tracing::error!(error = %e, records = rows.len(), "audit records could not be stored; the calls are answered anyway");
                false
            }
        };
        for p in batch.drain(..) {
            let _ = p.done.send(ok);
        }
    }
}

/// Wait (bounded) until `recorder` has `n` records queued: for tests that
/// hold the writer and need a known batch.
pub async fn wait_queued(recorder: &AuditRecorder, n: usize, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while recorder.queued() < n {
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}

/// A shared recorder.
pub type SharedRecorder = Arc<AuditRecorder>;

/// The protocol pipeline's hook (every `POST /` call of every AWS API):
/// records each call before it is answered. A request that claimed no
/// credentials at all is not recorded (anonymous junk cannot fill the
/// trail); a failed authentication that named an access key is, under the
/// deployment's default account with an `Unknown` identity and that key.
#[async_trait::async_trait]
impl kura_aws::CallRecorder for AuditRecorder {
    async fn record(&self, mut call: CallRecord) {
        if call.caller.is_none() && call.claimed_access_key_id.is_none() {
            return;
        }
        if call.event_name.is_empty() {
            call.event_name = "Unknown".to_string();
        }
        AuditRecorder::record(self, &call).await;
    }
}
