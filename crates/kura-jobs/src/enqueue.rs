//! Group commit for enqueues: one writer task per [`Queue`](crate::Queue)
//! writes every enqueue that arrived while its previous write ran in one
//! store transaction ([`JobStore::job_enqueue_many`]), so a burst of
//! enqueues costs one durable commit instead of one each. No timer: an idle
//! writer takes the next enqueue at once; a batch is whatever queued while
//! the previous one was being written. Each caller is answered only after
//! the transaction holding its job committed.

use std::sync::{Arc, Mutex};

use kura_store::jobs::{JobStore, NewJobRow};
use kura_store::StoreError;
use tokio::sync::{mpsc, oneshot, Notify};

/// At most this many jobs in one transaction.
const MAX_BATCH: usize = 256;

struct Pending {
    row: NewJobRow,
    done: oneshot::Sender<Result<i64, StoreError>>,
}

/// The handle to the writer task, started on the first enqueue (inside the
/// caller's runtime) and again if it stopped with its runtime.
#[derive(Default)]
pub(crate) struct Batcher {
    tx: Mutex<Option<mpsc::UnboundedSender<Pending>>>,
}

impl Batcher {
    /// Enqueue `row` through the writer; its id once its batch committed.
    pub(crate) async fn enqueue(
        &self,
        store: &Arc<dyn JobStore>,
        wake: &Arc<Notify>,
        row: NewJobRow,
    ) -> Result<i64, StoreError> {
        let (done, answer) = oneshot::channel();
        let mut pending = Pending { row, done };
        {
            let mut tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                let sender = match tx.as_ref() {
                    Some(s) if !s.is_closed() => s,
                    _ => tx.insert(spawn_writer(store.clone(), wake.clone())),
                };
                match sender.send(pending) {
                    Ok(()) => break,
                    // The writer stopped between the check and the send: start another.
                    Err(mpsc::error::SendError(p)) => {
                        pending = p;
                        *tx = None;
                    }
                }
            }
        }
        answer
            .await
            .unwrap_or_else(|_| Err(StoreError::Io(std::io::Error::other("the job queue's writer stopped"))))
    }
}

fn spawn_writer(store: Arc<dyn JobStore>, wake: Arc<Notify>) -> mpsc::UnboundedSender<Pending> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Pending>();
    tokio::spawn(async move {
        let mut batch = Vec::new();
        while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
            write(store.as_ref(), &wake, std::mem::take(&mut batch)).await;
        }
    });
    tx
}

/// Write one batch and answer its callers.
async fn write(store: &dyn JobStore, wake: &Notify, batch: Vec<Pending>) {
    let (rows, dones): (Vec<NewJobRow>, Vec<_>) = batch.into_iter().map(|p| (p.row, p.done)).unzip();
    match store.job_enqueue_many(&rows).await {
        Ok(ids) => {
            wake.notify_one();
            for (done, id) in dones.into_iter().zip(ids) {
                let _ = done.send(Ok(id));
            }
        }
        // A failed batch wrote nothing: give each job its own write, so each
        // caller gets its own outcome (one job's error is not the others').
        Err(e) if rows.len() > 1 => {
            tracing::debug!(error = %e, jobs = rows.len(), "batched enqueue failed; enqueueing one by one");
            for (done, row) in dones.into_iter().zip(rows) {
                let r = store.job_enqueue(&row).await;
                if r.is_ok() {
                    wake.notify_one();
                }
                let _ = done.send(r);
            }
        }
        Err(e) => {
            if let Some(done) = dones.into_iter().next() {
                let _ = done.send(Err(e));
            }
        }
    }
}
