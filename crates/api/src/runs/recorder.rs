//! Write-behind of the rows of OpenAI-compatible runs.
//!
//! A dashboard turn's run row is inserted before the run starts (with the user's message), but
//! an OpenAI-compatible request writes nothing to PostgreSQL on its path: its row is queued
//! here when the run starts and its outcome when it ends, and one task writes them in batches,
//! a transaction per tenant.
//!
//! - A run that ends before its row was written (most: a model answers in well under
//!   [`LINGER`]) is inserted once, finished — one row written instead of an insert and an
//!   update.
//! - A run still going after [`LINGER`] is inserted as `running`, owned by this process with a
//!   lease (see [`super::recovery`]); from then on its lease is renewed and, should this
//!   process die, another replica's sweep marks it interrupted and bills it. Its outcome is an
//!   update of that row when it ends (not applied if another replica claimed it meanwhile).
//! - Nothing waits for a timer when the writer is idle: what is ready is written at once, and
//!   what arrives during a write goes in the next batch, so batches grow with the load.
//!
//! What this costs: a process killed (SIGKILL) loses the rows not written yet — runs started
//! within the last [`LINGER`] and outcomes queued in the last moments — as the usage ledger's
//! queue loses its last rows. Such a run's token reservation expires on its own. A graceful
//! stop writes everything ([`Recorder::shutdown`]). While the database is unavailable, writes
//! are retried; rows wait in the queue (bounded: `run_records_dropped_total` counts what a full
//! queue refused).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use paas_core::{RunId, TenantId};
use paas_persistence::Db;
use paas_persistence::runs::{self, NewRun, RunOutcome};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::time::Instant;

use super::LiveRun;

/// How long a run's row may wait for its outcome before it is written as `running`: runs
/// shorter than this are written once, finished.
pub(super) const LINGER: Duration = Duration::from_millis(250);
/// Records the queue holds before it refuses.
const CAPACITY: usize = 20_000;
/// Most records taken from the queue per round.
const BATCH: usize = 1_000;

enum Record {
    /// A run started: its row, and the run (told once the row is written as `running`).
    Start { row: NewRun, live: Weak<LiveRun> },
    /// A run ended.
    Finish {
        tenant: TenantId,
        run: RunId,
        outcome: RunOutcome,
    },
}

/// Queues run rows for the background writer. Cheap to clone.
#[derive(Clone, Debug)]
pub(super) struct Recorder {
    sender: mpsc::Sender<Record>,
    /// Records queued and not written yet (`run_records_queue_depth`).
    depth: Arc<AtomicI64>,
    stop: Arc<Mutex<Option<Stopper>>>,
}

type Stopper = (oneshot::Sender<()>, tokio::task::JoinHandle<()>);

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Start { row, .. } => write!(f, "Start({})", row.id),
            Self::Finish { run, .. } => write!(f, "Finish({run})"),
        }
    }
}

impl Recorder {
    /// Starts the writer on `runtime`.
    pub(super) fn start(db: Db, runtime: &tokio::runtime::Handle) -> Self {
        let (sender, receiver) = mpsc::channel(CAPACITY);
        let (stop_tx, stop_rx) = oneshot::channel();
        let depth = Arc::new(AtomicI64::new(0));
        let task = runtime.spawn(write_loop(db, receiver, stop_rx, Arc::clone(&depth)));
        Self {
            sender,
            depth,
            stop: Arc::new(Mutex::new(Some((stop_tx, task)))),
        }
    }

    /// Queues the row of a run that has just started; never waits.
    pub(super) fn started(&self, row: NewRun, live: &Arc<LiveRun>) {
        let live = Arc::downgrade(live);
        self.send(Record::Start { row, live });
    }

    /// Queues a run's outcome; never waits.
    pub(super) fn finished(&self, tenant: TenantId, run: RunId, outcome: RunOutcome) {
        self.send(Record::Finish {
            tenant,
            run,
            outcome,
        });
    }

    fn send(&self, record: Record) {
        // Counted first, so the writer never takes it below zero.
        let depth = self.depth.fetch_add(1, Ordering::Relaxed) + 1;
        metrics::gauge!("run_records_queue_depth").set(depth as f64);
        if let Err(err) = self.sender.try_send(record) {
            self.depth.fetch_sub(1, Ordering::Relaxed);
            let record = match &err {
                mpsc::error::TrySendError::Full(r) | mpsc::error::TrySendError::Closed(r) => r,
            };
            metrics::counter!("run_records_dropped_total").increment(1);
            tracing::error!(record = ?record, "the run-row queue is full or closed; a run row was dropped (its usage-ledger row is kept)");
        }
    }

    /// Records (starts and outcomes) queued and not written yet.
    pub(super) fn queued(&self) -> i64 {
        self.depth.load(Ordering::Relaxed)
    }

    /// Stops taking rows and writes what is queued (running rows too), waiting at most
    /// `limit`.
    pub(super) async fn shutdown(&self, limit: Duration) {
        let Some((stop, mut task)) = self.stop.lock().await.take() else {
            return;
        };
        let _ = stop.send(());
        if tokio::time::timeout(limit, &mut task).await.is_err() {
            task.abort();
            metrics::counter!("run_records_dropped_total").increment(1);
            tracing::error!("shutdown: run rows could not all be written in time");
        }
    }
}

/// A run whose row is not written yet.
struct Pending {
    row: NewRun,
    live: Weak<LiveRun>,
    outcome: Option<RunOutcome>,
}

/// What is waiting to be written.
#[derive(Default)]
struct Queue {
    pending: HashMap<RunId, Pending>,
    /// Pending runs in the order they started (with when): the oldest is the next due.
    order: VecDeque<(Instant, RunId)>,
    /// Pending runs that have their outcome: written at the next round.
    ended: Vec<RunId>,
    /// Outcomes of runs whose row is written.
    finishes: Vec<(TenantId, RunId, RunOutcome)>,
}

impl Queue {
    fn absorb(&mut self, inbox: &mut Vec<Record>) {
        for record in inbox.drain(..) {
            match record {
                Record::Start { row, live } => {
                    self.order.push_back((Instant::now(), row.id));
                    self.pending.insert(
                        row.id,
                        Pending {
                            row,
                            live,
                            outcome: None,
                        },
                    );
                }
                Record::Finish {
                    tenant,
                    run,
                    outcome,
                } => match self.pending.get_mut(&run) {
                    Some(p) => {
                        p.outcome = Some(outcome);
                        self.ended.push(run);
                    }
                    None => self.finishes.push((tenant, run, outcome)),
                },
            }
        }
    }

    /// When the oldest row still waiting for its outcome is to be written as `running`.
    fn due(&mut self) -> Option<Instant> {
        while let Some((since, run)) = self.order.front() {
            if self.pending.contains_key(run) {
                return Some(*since + LINGER);
            }
            self.order.pop_front();
        }
        None
    }

    /// What is ready, by tenant: every ended run and every row that waited its linger (all of
    /// them when `all`), and the outcomes of runs already written.
    fn take_ready(&mut self, all: bool) -> HashMap<TenantId, Round> {
        let mut rounds: HashMap<TenantId, Round> = HashMap::new();
        let mut insert = |p: Pending| {
            rounds
                .entry(p.row.tenant_id)
                .or_default()
                .inserts
                .push((p.row, p.outcome, p.live));
        };
        for run in self.ended.drain(..) {
            if let Some(p) = self.pending.remove(&run) {
                insert(p);
            }
        }
        let now = Instant::now();
        while let Some((since, run)) = self.order.front() {
            if !all && now < *since + LINGER {
                break;
            }
            if let Some(p) = self.pending.remove(run) {
                insert(p);
            }
            self.order.pop_front();
        }
        for (tenant, run, outcome) in self.finishes.drain(..) {
            rounds
                .entry(tenant)
                .or_default()
                .finishes
                .push((run, outcome));
        }
        rounds
    }
}

/// What one round writes for one tenant.
#[derive(Default)]
struct Round {
    inserts: Vec<(NewRun, Option<RunOutcome>, Weak<LiveRun>)>,
    finishes: Vec<(RunId, RunOutcome)>,
}

async fn write_loop(
    db: Db,
    mut receiver: mpsc::Receiver<Record>,
    mut stop: oneshot::Receiver<()>,
    depth: Arc<AtomicI64>,
) {
    let mut queue = Queue::default();
    let mut inbox = Vec::with_capacity(BATCH);
    let mut stopping = false;
    loop {
        if !stopping {
            let due = queue.due();
            tokio::select! {
                _ = &mut stop => {
                    stopping = true;
                    receiver.close();
                }
                received = receiver.recv_many(&mut inbox, BATCH) => {
                    if received == 0 {
                        stopping = true;
                    }
                }
                () = sleep_until(due) => {}
            }
        }
        queue.absorb(&mut inbox);
        if stopping {
            while receiver.recv_many(&mut inbox, BATCH).await > 0 {
                queue.absorb(&mut inbox);
            }
        }
        for (tenant, round) in queue.take_ready(stopping) {
            // A row with its outcome was two records (its start and its end).
            let records = round.finishes.len()
                + round
                    .inserts
                    .iter()
                    .map(|(_, outcome, _)| if outcome.is_some() { 2 } else { 1 })
                    .sum::<usize>();
            write_round(&db, tenant, round).await;
            let left = depth.fetch_sub(records as i64, Ordering::Relaxed) - records as i64;
            metrics::gauge!("run_records_queue_depth").set(left as f64);
        }
        if stopping && queue.pending.is_empty() && queue.finishes.is_empty() {
            return;
        }
    }
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

/// Writes one tenant's rows and outcomes in one transaction, retrying while the database is
/// unavailable.
async fn write_round(db: &Db, tenant: TenantId, round: Round) {
    let rows: Vec<(NewRun, Option<RunOutcome>)> = round
        .inserts
        .iter()
        .map(|(row, outcome, _)| (row.clone(), outcome.clone()))
        .collect();
    let finishes = Arc::new(round.finishes);
    let rows = Arc::new(rows);
    let mut delay = Duration::from_millis(100);
    let result = loop {
        let (rows, finishes) = (Arc::clone(&rows), Arc::clone(&finishes));
        let written = db
            .tenant_tx_async_commit(tenant, move |conn| {
                runs::insert_many(conn, tenant, &rows)?;
                let mut claimed = Vec::new();
                for (run, outcome) in finishes.iter() {
                    if !runs::finish(conn, tenant, *run, outcome)? {
                        claimed.push(*run);
                    }
                }
                Ok(claimed)
            })
            .await;
        match written {
            Err(err) if err.kind() == paas_core::ErrorKind::Unavailable => {
                tracing::warn!(error = %err.cause_chain(), "run rows: database unavailable; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            other => break other,
        }
    };
    match result {
        Ok(claimed) => {
            for run in claimed {
                // Its lease expired (this process could not renew it) and another replica
                // marked it interrupted and billed it; the run was billed here too, before its
                // answer, and the ledger keeps one row per run (the first written).
                tracing::warn!(run = %run, "a run finished after another replica had marked it interrupted; keeping that outcome");
            }
            for (row, outcome, live) in &round.inserts {
                if outcome.is_none()
                    && let Some(live) = live.upgrade()
                {
                    live.row_written();
                } else if outcome.is_none() {
                    tracing::debug!(run = %row.id, "a run's row was written after the run was gone");
                }
            }
        }
        Err(err) => {
            metrics::counter!("run_records_dropped_total")
                .increment((round.inserts.len() + finishes.len()) as u64);
            tracing::error!(tenant = %tenant, code = err.code(), cause = %err.cause_chain(), "run rows could not be written");
        }
    }
}
