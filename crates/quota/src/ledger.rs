//! The write-behind queue of the usage ledger.
//!
//! A finished run's [`UsageRecord`] is queued without waiting (the run's own row is already
//! stored); one task writes queued records in batches, one transaction per tenant, retrying
//! while the database is unavailable. The queue is bounded; `usage_queue_depth` reports how
//! full it is and `usage_records_dropped_total` counts records lost to a full queue or to a
//! shutdown that could not write them (neither should ever move). Writes are idempotent (the
//! run id is the key), so a retried batch never bills a run twice.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use paas_core::TenantId;
use paas_models::UsageRecord;
use paas_persistence::{Db, usage};
use tokio::sync::{Mutex, mpsc, oneshot};

/// Sizes of the queue.
#[derive(Clone, Copy, Debug)]
pub struct LedgerConfig {
    /// Records the queue holds before it drops.
    pub capacity: usize,
    /// Most records written per round.
    pub batch: usize,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            capacity: 10_000,
            batch: 500,
        }
    }
}

/// Queues ledger records for the background writer. Cheap to clone.
#[derive(Clone, Debug)]
pub struct UsageWriter {
    sender: mpsc::Sender<UsageRecord>,
    depth: Arc<AtomicI64>,
    stop: Arc<Mutex<Option<Stopper>>>,
}

/// Tells the writer to stop, and its task.
type Stopper = (oneshot::Sender<()>, tokio::task::JoinHandle<()>);

impl UsageWriter {
    /// Starts the writer task on the current runtime.
    pub fn start(db: Db, config: LedgerConfig) -> Self {
        let (sender, receiver) = mpsc::channel(config.capacity.max(1));
        let (stop_tx, stop_rx) = oneshot::channel();
        let depth = Arc::new(AtomicI64::new(0));
        let task = tokio::spawn(write_loop(
            db,
            receiver,
            stop_rx,
            Arc::clone(&depth),
            config.batch.max(1),
        ));
        Self {
            sender,
            depth,
            stop: Arc::new(Mutex::new(Some((stop_tx, task)))),
        }
    }

    /// Queues a record; never waits.
    pub fn record(&self, record: UsageRecord) {
        match self.sender.try_send(record) {
            Ok(()) => {
                let depth = self.depth.fetch_add(1, Ordering::Relaxed) + 1;
                metrics::gauge!("usage_queue_depth").set(depth as f64);
            }
            Err(err) => {
                let record = match &err {
                    mpsc::error::TrySendError::Full(r) | mpsc::error::TrySendError::Closed(r) => r,
                };
                metrics::counter!("usage_records_dropped_total").increment(1);
                tracing::error!(run = %record.run_id, tenant = %record.tenant_id, "usage ledger queue is full or closed; a usage record was dropped");
            }
        }
    }

    /// Records waiting to be written.
    pub fn depth(&self) -> i64 {
        self.depth.load(Ordering::Relaxed)
    }

    /// Stops taking records and writes what is queued, waiting at most `limit`.
    pub async fn shutdown(&self, limit: Duration) {
        let Some((stop, mut task)) = self.stop.lock().await.take() else {
            return;
        };
        let _ = stop.send(());
        if tokio::time::timeout(limit, &mut task).await.is_err() {
            task.abort();
            let lost = self.depth();
            if lost > 0 {
                metrics::counter!("usage_records_dropped_total")
                    .increment(u64::try_from(lost).unwrap_or(0));
                tracing::error!(lost, "shutdown: usage records could not be written in time");
            }
        }
    }
}

async fn write_loop(
    db: Db,
    mut receiver: mpsc::Receiver<UsageRecord>,
    mut stop: oneshot::Receiver<()>,
    depth: Arc<AtomicI64>,
    batch: usize,
) {
    let mut buffer = Vec::with_capacity(batch);
    let mut stopping = false;
    loop {
        if !stopping {
            tokio::select! {
                _ = &mut stop => {
                    stopping = true;
                    receiver.close();
                }
                received = receiver.recv_many(&mut buffer, batch) => {
                    if received == 0 {
                        return;
                    }
                }
            }
        }
        if stopping && receiver.recv_many(&mut buffer, batch).await == 0 && buffer.is_empty() {
            return;
        }
        if buffer.is_empty() {
            continue;
        }
        let written = write_batch(&db, &buffer).await;
        let left = depth.fetch_sub(buffer.len() as i64, Ordering::Relaxed) - buffer.len() as i64;
        metrics::gauge!("usage_queue_depth").set(left as f64);
        metrics::counter!("usage_records_written_total").increment(written);
        buffer.clear();
    }
}

/// Writes one batch, a transaction per tenant, retrying while the database is unavailable.
/// Returns how many records were written (or were already there).
async fn write_batch(db: &Db, records: &[UsageRecord]) -> u64 {
    let mut written = 0;
    let mut by_tenant: HashMap<TenantId, Vec<UsageRecord>> = HashMap::new();
    for record in records {
        by_tenant
            .entry(record.tenant_id)
            .or_default()
            .push(record.clone());
    }
    for (tenant, rows) in by_tenant {
        let mut delay = Duration::from_millis(100);
        loop {
            let batch = rows.clone();
            match db
                .tenant_tx(tenant, move |conn| usage::insert(conn, tenant, &batch))
                .await
            {
                Ok(_) => {
                    written += rows.len() as u64;
                    break;
                }
                Err(err) if err.kind() == paas_core::ErrorKind::Unavailable => {
                    tracing::warn!(error = %err.cause_chain(), "usage ledger: database unavailable; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(err) => {
                    metrics::counter!("usage_records_dropped_total").increment(rows.len() as u64);
                    tracing::error!(tenant = %tenant, error = %err.cause_chain(), "usage ledger: records could not be written");
                    break;
                }
            }
        }
    }
    written
}
