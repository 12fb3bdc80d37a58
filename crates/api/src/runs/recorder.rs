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

use paas_core::{Error, RunId, TenantId};
use paas_persistence::Db;
use paas_persistence::runs::{self, NewRun, RunOutcome};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::time::Instant;

use super::LiveRun;

/// How long a run's row may wait for its outcome before it is written as `running`: runs
/// shorter than this are written once, finished.
const LINGER: Duration = Duration::from_millis(250);
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
    fn take_ready(&mut self, all: bool, now: Instant) -> HashMap<TenantId, Round> {
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
        for (tenant, round) in queue.take_ready(stopping, Instant::now()) {
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
/// unavailable. If the batch fails otherwise, each row and outcome is tried on its own, so one
/// bad row (a run whose agent was deleted meanwhile, say) costs no other its record.
async fn write_round(db: &Db, tenant: TenantId, round: Round) {
    let Round { inserts, finishes } = round;
    let written = write(db, tenant, &inserts, &finishes).await;
    match written {
        Err(err) if inserts.len() + finishes.len() > 1 => {
            tracing::warn!(tenant = %tenant, code = err.code(), cause = %err.cause_chain(), "a batch of run rows could not be written; writing them one by one");
            for insert in inserts {
                let one = [insert];
                let written = write(db, tenant, &one, &[]).await;
                written_or_dropped(tenant, written, &one);
            }
            for finish in finishes {
                let written = write(db, tenant, &[], &[finish]).await;
                written_or_dropped(tenant, written, &[]);
            }
        }
        written => written_or_dropped(tenant, written, &inserts),
    }
}

/// One transaction: the rows, then the outcomes. Returns the runs whose outcome found no row
/// still `running`. Retried while the database is unavailable.
async fn write(
    db: &Db,
    tenant: TenantId,
    inserts: &[(NewRun, Option<RunOutcome>, Weak<LiveRun>)],
    finishes: &[(RunId, RunOutcome)],
) -> Result<Vec<RunId>, Error> {
    let rows: Arc<Vec<(NewRun, Option<RunOutcome>)>> = Arc::new(
        inserts
            .iter()
            .map(|(row, outcome, _)| (row.clone(), outcome.clone()))
            .collect(),
    );
    let finishes = Arc::new(finishes.to_vec());
    let mut delay = Duration::from_millis(100);
    loop {
        let (rows, finishes) = (Arc::clone(&rows), Arc::clone(&finishes));
        let written = db
            .tenant_tx_async_commit(tenant, move |conn| {
                runs::insert_many(conn, tenant, &rows)?;
                let mut stale = Vec::new();
                for (run, outcome) in finishes.iter() {
                    if !runs::finish(conn, tenant, *run, outcome)? {
                        stale.push(*run);
                    }
                }
                Ok(stale)
            })
            .await;
        match written {
            Err(err) if err.kind() == paas_core::ErrorKind::Unavailable => {
                tracing::warn!(error = %err.cause_chain(), "run rows: database unavailable; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            other => return other,
        }
    }
}

/// Tells the runs whose row was written as `running` to renew their lease from now on, or
/// counts what could not be written.
fn written_or_dropped(
    tenant: TenantId,
    written: Result<Vec<RunId>, Error>,
    inserts: &[(NewRun, Option<RunOutcome>, Weak<LiveRun>)],
) {
    match written {
        Ok(stale) => {
            for run in stale {
                // Its lease expired (this process could not renew it) and another replica
                // marked it interrupted and billed it, or it was deleted with its agent. The
                // run was billed here too, before its answer; the ledger keeps one row per run.
                tracing::warn!(run = %run, "a run's row was no longer running when its outcome came (taken over by another replica, or deleted with its agent); keeping it as it is");
            }
            for (row, outcome, live) in inserts {
                if outcome.is_some() {
                    continue;
                }
                match live.upgrade() {
                    Some(live) => live.row_written(),
                    None => {
                        tracing::debug!(run = %row.id, "a run's row was written after the run was gone");
                    }
                }
            }
        }
        Err(err) => {
            metrics::counter!("run_records_dropped_total").increment(1);
            tracing::error!(tenant = %tenant, code = err.code(), cause = %err.cause_chain(), "a run row could not be written");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use diesel::prelude::*;
    use paas_core::{AgentId, UserId};
    use paas_models::{RunSource, RunStatus};
    use paas_persistence::DbConfig;
    use paas_persistence::runs::RunLease;
    use paas_testing::TestDatabase;

    use super::*;

    const TENANT: &str = "00000000-0000-7000-8000-000000000001";
    const USER: &str = "00000000-0000-7000-8000-000000000002";
    const AGENT: &str = "00000000-0000-7000-8000-000000000003";

    fn tenant() -> TenantId {
        TenantId::from_uuid(TENANT.parse().unwrap())
    }

    fn new_run(agent: AgentId) -> NewRun {
        NewRun {
            id: RunId::new(),
            tenant_id: tenant(),
            session_id: None,
            user_id: UserId::from_uuid(USER.parse().unwrap()),
            api_key_id: None,
            agent_id: agent,
            source: RunSource::Openai,
            provider: "mock".into(),
            model: "mock".into(),
            started_at: chrono::Utc::now(),
            lease: RunLease {
                owner: uuid::Uuid::new_v4(),
                duration: Duration::from_secs(30),
            },
        }
    }

    fn outcome() -> RunOutcome {
        RunOutcome {
            status: RunStatus::Completed,
            steps: 1,
            prompt_tokens: 7,
            completion_tokens: 5,
            usage_estimated: false,
            error_code: None,
            error_message: None,
            limit_reason: None,
            finished_at: chrono::Utc::now(),
        }
    }

    fn start(row: NewRun) -> Record {
        Record::Start {
            row,
            live: Weak::new(),
        }
    }

    fn finish(run: RunId) -> Record {
        Record::Finish {
            tenant: tenant(),
            run,
            outcome: outcome(),
        }
    }

    #[test]
    fn a_run_that_ends_within_the_linger_is_one_finished_row() {
        let mut queue = Queue::default();
        let row = new_run(AgentId::new());
        let run = row.id;
        queue.absorb(&mut vec![start(row), finish(run)]);
        let mut rounds = queue.take_ready(false, Instant::now());
        let round = rounds.remove(&tenant()).unwrap();
        assert_eq!(round.inserts.len(), 1);
        assert_eq!(round.inserts[0].0.id, run);
        assert!(round.inserts[0].1.is_some(), "inserted with its outcome");
        assert!(round.finishes.is_empty(), "no update after it");
        assert!(queue.due().is_none(), "nothing left to wait for");
    }

    #[test]
    fn a_run_past_the_linger_is_written_running_and_its_outcome_is_an_update() {
        let mut queue = Queue::default();
        let row = new_run(AgentId::new());
        let run = row.id;
        queue.absorb(&mut vec![start(row)]);
        assert!(
            queue.take_ready(false, Instant::now()).is_empty(),
            "it waits"
        );
        let due = queue.due().unwrap();
        let mut rounds = queue.take_ready(false, due);
        let round = rounds.remove(&tenant()).unwrap();
        assert_eq!(round.inserts.len(), 1);
        assert!(round.inserts[0].1.is_none(), "written as running");
        queue.absorb(&mut vec![finish(run)]);
        let mut rounds = queue.take_ready(false, Instant::now());
        let round = rounds.remove(&tenant()).unwrap();
        assert!(round.inserts.is_empty());
        assert_eq!(round.finishes.len(), 1);
        assert_eq!(round.finishes[0].0, run);
    }

    #[test]
    fn at_shutdown_every_row_is_written_at_once() {
        let mut queue = Queue::default();
        queue.absorb(&mut vec![start(new_run(AgentId::new()))]);
        let rounds = queue.take_ready(true, Instant::now());
        assert_eq!(rounds[&tenant()].inserts.len(), 1);
        assert!(queue.pending.is_empty());
    }

    #[tokio::test]
    async fn a_row_the_database_refuses_costs_no_other_row_its_record() {
        let test_db = TestDatabase::new();
        let db = Db::new(&DbConfig {
            url: test_db.url().to_owned(),
            max_connections: 2,
            acquire_timeout: Duration::from_secs(5),
        })
        .unwrap();
        test_db.seed_tenant(TENANT, "acme", USER, AGENT);
        let mut owner = test_db.owner_connection();
        let agent = AgentId::from_uuid(AGENT.parse().unwrap());
        let (finished, running) = (new_run(agent), new_run(agent));
        // An agent deleted while its run's row waited: the insert breaks its foreign key.
        let orphan = new_run(AgentId::new());
        let round = Round {
            inserts: vec![
                (finished.clone(), Some(outcome()), Weak::new()),
                (orphan.clone(), Some(outcome()), Weak::new()),
                (running.clone(), None, Weak::new()),
            ],
            finishes: Vec::new(),
        };
        write_round(&db, tenant(), round).await;
        use paas_persistence::schema::runs;
        let mut stored: Vec<(uuid::Uuid, String)> = runs::table
            .select((runs::id, runs::status))
            .load(&mut owner)
            .unwrap();
        stored.sort();
        let mut expected = vec![
            (finished.id.into_uuid(), "completed".to_owned()),
            (running.id.into_uuid(), "running".to_owned()),
        ];
        expected.sort();
        assert_eq!(stored, expected);

        // Written again (a retried batch): nothing changes; the running one takes its outcome.
        let round = Round {
            inserts: vec![(finished.clone(), Some(outcome()), Weak::new())],
            finishes: vec![(running.id, outcome())],
        };
        write_round(&db, tenant(), round).await;
        let completed: i64 = runs::table
            .filter(runs::status.eq("completed"))
            .count()
            .get_result(&mut owner)
            .unwrap();
        assert_eq!(completed, 2);
    }
}
