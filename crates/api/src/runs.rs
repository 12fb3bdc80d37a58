//! Runs that outlive their connections.
//!
//! A chat turn runs as a task owned by the server. Its events are numbered from 1 and kept in
//! three places: an in-process log that local watchers read without any round trip, a Redis
//! stream (`<prefix>run:<id>:events`, kept for `PAAS_RUN_EVENTS_TTL_SECS` after the run ends) so
//! a watcher on any replica can resume with `Last-Event-ID`, and — for what must last — the
//! database, where the run's messages and usage are written when it ends. The final `done`
//! event is published only after that write, so a client that sees `done` finds the messages
//! stored. A watcher that goes away changes nothing: the run finishes, is saved and billed.
//!
//! A process that dies (SIGKILL, a crash) cannot do any of that: its runs hold ownership leases
//! that it stops renewing, and another replica (or the process itself, restarted) finishes them
//! as `interrupted` — see [`recovery`].

mod recorder;
mod recovery;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use fred::interfaces::{EventInterface, KeysInterface, PubsubInterface, StreamsInterface};
use futures_util::Stream;
use paas_agents::runtime::{self, RunEvent, RunResult, RunSpec};
use paas_agents::tools::ToolRegistry;
use paas_core::{Error, RunId, SessionId, TenantId, UserId};
use paas_llm::{ChatMessage, Provider};
use paas_models::{MessageRole, ToolCallRecord};
use paas_persistence::runs::{NewRun, RunLease, RunOutcome, RunProgress};
use paas_persistence::sessions::NewMessage;
use paas_persistence::{Db, runs, sessions};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::redis::RedisStore;
use crate::services::quota::RunQuota;

/// How long a finished dashboard run's events stay in this process's memory, for a reload that
/// resumes it (Redis keeps them longer). A run of the OpenAI-compatible API, which nobody
/// resumes, leaves memory as soon as it ends: its request follows it through its own handle.
const LOCAL_RETENTION: Duration = Duration::from_secs(30);
/// How often starting a run sweeps finished runs out of memory (a sweep walks every run here,
/// so not on every start).
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Most events one pipelined write to a run's Redis stream carries.
const PUBLISH_BATCH: usize = 64;
/// Expiry of a run's event stream while the run is in progress: longer than any run can last,
/// so the stream of a run whose process died does not stay in Redis for ever.
const ORPHAN_STREAM_TTL_SECS: i64 = 2 * 3600;
/// How long a watcher that sends no pings (the OpenAI-compatible API's) waits before it looks
/// again; a chat's SSE stream pings after `PAAS_SSE_PING_SECS` instead.
const PING_INTERVAL: Duration = Duration::from_secs(15);

/// One event as sent on the wire: its number, its name and its JSON.
#[derive(Clone, Debug)]
pub struct WireEvent {
    pub seq: u64,
    pub name: Arc<str>,
    pub json: Arc<str>,
}

#[derive(Debug, Default)]
struct EventLog {
    events: Vec<WireEvent>,
    finished_at: Option<Instant>,
    /// Model calls made and tokens used so far (written to the run's row with its lease).
    steps: u32,
    usage: runtime::UsageTotals,
    /// The run is over and its outcome is being written: its lease is no longer renewed.
    ended: bool,
}

/// A run this process owns (or owned recently).
#[derive(Debug)]
pub struct LiveRun {
    pub id: RunId,
    pub tenant_id: TenantId,
    pub user_id: UserId,
    pub session_id: Option<SessionId>,
    /// How its row is written (see [`RunRecord`]).
    row: RowKind,
    /// Its row is in the database, holding a lease to renew.
    row_written: AtomicBool,
    cancel: CancellationToken,
    log: Mutex<EventLog>,
    notify: Notify,
    /// Woken once, when `done` is in the log (or the run is over): for a request that wants
    /// only the whole answer, not each event.
    answered: Notify,
}

impl LiveRun {
    fn lock(&self) -> std::sync::MutexGuard<'_, EventLog> {
        self.log
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn push(&self, name: &str, json: String) -> WireEvent {
        let event = {
            let mut log = self.lock();
            let event = WireEvent {
                seq: log.events.len() as u64 + 1,
                name: Arc::from(name),
                json: Arc::from(json),
            };
            log.events.push(event.clone());
            event
        };
        self.notify.notify_waiters();
        if name == "done" {
            self.answered.notify_waiters();
        }
        event
    }

    fn finish(&self) {
        self.lock().finished_at = Some(Instant::now());
        self.notify.notify_waiters();
        self.answered.notify_waiters();
    }

    /// Every event of the run, once its `done` is among them (or the run is over): one wake-up
    /// instead of one per event.
    pub async fn until_done(&self) -> Vec<WireEvent> {
        loop {
            let notified = self.answered.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let log = self.lock();
                if log.finished_at.is_some() || log.events.iter().any(|e| &*e.name == "done") {
                    return log.events.clone();
                }
            }
            notified.await;
        }
    }

    pub fn is_finished(&self) -> bool {
        self.lock().finished_at.is_some()
    }

    /// Counts a model call's usage (the run's totals so far).
    fn record_usage(&self, usage: runtime::UsageTotals) {
        let mut log = self.lock();
        log.steps += 1;
        log.usage = usage;
    }

    /// What to write with the run's lease, while it still needs one.
    fn progress(&self) -> Option<RunProgress> {
        if !self.row_written.load(Ordering::Acquire) {
            return None; // no row (yet) to hold a lease on
        }
        let log = self.lock();
        (!log.ended && log.finished_at.is_none()).then(|| RunProgress {
            id: self.id,
            steps: log.steps,
            prompt_tokens: log.usage.prompt_tokens,
            completion_tokens: log.usage.completion_tokens,
            usage_estimated: log.usage.estimated,
        })
    }

    fn end(&self) {
        self.lock().ended = true;
    }

    /// Its row, written behind it, is in the database: renew its lease from now on.
    fn row_written(&self) {
        self.row_written.store(true, Ordering::Release);
    }

    /// Events after `after` (exclusive), and whether the run has finished.
    fn since(&self, after: u64) -> (Vec<WireEvent>, bool) {
        let log = self.lock();
        let start = usize::try_from(after)
            .unwrap_or(usize::MAX)
            .min(log.events.len());
        (log.events[start..].to_vec(), log.finished_at.is_some())
    }

    pub fn cancel(&self) {
        self.cancel.cancel();
    }
}

/// Everything needed to start a run.
#[derive(Debug)]
pub struct RunStart {
    pub id: RunId,
    pub tenant_id: TenantId,
    pub user_id: UserId,
    pub session_id: Option<SessionId>,
    pub provider: Arc<dyn Provider>,
    pub spec: RunSpec,
    pub history: Vec<ChatMessage>,
    /// What the run is billed against and recorded as in the usage ledger.
    pub metering: Metering,
    /// Whether the run's events are copied to its Redis stream, for whoever follows it from
    /// another replica: a dashboard turn (resumed after a reload) and a streamed OpenAI request
    /// (whose idempotent retry follows the same run). A non-streamed OpenAI request's answer is
    /// one body that nobody follows event by event: it skips those writes.
    pub mirror: bool,
    /// The run's row in `runs`, which holds its lease and takes its outcome.
    pub record: RunRecord,
}

/// How a run's row in `runs` is written.
#[derive(Debug)]
pub enum RunRecord {
    /// Inserted before the run starts (a dashboard turn, with the user's message); its outcome
    /// is written with the answer's messages, before `done`.
    Stored,
    /// Written behind the run, batched (an OpenAI-compatible request): no database write on
    /// its path (see the `recorder` module).
    Deferred(NewRun),
    /// None (`PAAS_RECORD_OPENAI_RUNS=false`): the run is known only by its usage-ledger row.
    Off,
}

/// A [`RunRecord`] without its row: what a [`LiveRun`] keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RowKind {
    Stored,
    Deferred,
    Off,
}

impl RunRecord {
    fn kind(&self) -> RowKind {
        match self {
            RunRecord::Stored => RowKind::Stored,
            RunRecord::Deferred(_) => RowKind::Deferred,
            RunRecord::Off => RowKind::Off,
        }
    }
}

/// A run's billing: its token reservation and the ledger row's attributes.
#[derive(Clone, Debug)]
pub struct Metering {
    pub quota: RunQuota,
    pub api_key_id: Option<paas_core::ApiKeyId>,
    pub agent_id: paas_core::AgentId,
    pub source: paas_models::RunSource,
    pub provider: String,
    pub model: String,
}

/// The last event of every run, sent once its outcome is stored.
#[derive(serde::Serialize)]
struct DoneEvent {
    event: &'static str,
    data: DoneData,
}

#[derive(serde::Serialize)]
struct DoneData {
    status: paas_models::RunStatus,
    usage: runtime::UsageTotals,
    steps: u32,
    run_id: RunId,
    session_id: Option<SessionId>,
    /// False if the outcome could not be stored (the database was down for too long). Always
    /// true for a run without a session, whose `done` comes before its outcome is stored.
    stored: bool,
}

/// Owns the runs of this process. Cheap to clone.
#[derive(Clone, Debug)]
pub struct RunManager {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The runtime runs are spawned on: the process's main one, not the HTTP worker that
    /// happened to receive the request (workers stop before runs are drained at shutdown).
    runtime: tokio::runtime::Handle,
    db: Db,
    redis: RedisStore,
    tools: Arc<ToolRegistry>,
    ttl: Duration,
    quotas: paas_quota::Quotas,
    usage: paas_quota::UsageWriter,
    /// Writes the rows of [`RunRecord::Deferred`] runs.
    recorder: recorder::Recorder,
    /// This process's id in the runs it owns (random, new at every start) and how long their
    /// leases last.
    instance: uuid::Uuid,
    lease: Duration,
    runs: Mutex<HashMap<RunId, Arc<LiveRun>>>,
    /// When finished runs were last swept out of `runs`.
    swept: Mutex<Instant>,
    idle: Notify,
    /// Idle time before a chat's SSE stream sends a comment ping.
    ping: Duration,
    /// Cancelled when the process starts shutting down: open SSE streams end with `shutdown`.
    shutdown: CancellationToken,
}

fn event_name(event: &RunEvent) -> &'static str {
    match event {
        RunEvent::Message(_) => "message",
        RunEvent::Thought(_) => "thought",
        RunEvent::ToolCall { .. } => "tool_call",
        RunEvent::ToolResult { .. } => "tool_result",
        RunEvent::Usage(_) => "usage",
        RunEvent::Limit { .. } => "limit",
        RunEvent::Error { .. } => "error",
        RunEvent::Done { .. } => "done",
    }
}

/// The durations a [`RunManager`] works with.
#[derive(Clone, Copy, Debug)]
pub struct RunTimes {
    /// How long a finished run's events stay in Redis (`PAAS_RUN_EVENTS_TTL_SECS`).
    pub events_ttl: Duration,
    /// A run's ownership lease (`PAAS_RUN_LEASE_SECS`).
    pub lease: Duration,
    /// Idle time before a chat's SSE stream sends a comment ping (`PAAS_SSE_PING_SECS`).
    pub ping: Duration,
}

impl RunManager {
    /// Must be called on the runtime that should own the runs. Starts renewing the leases of
    /// this process's runs every third of a lease (for as long as the manager lives).
    pub fn new(
        db: Db,
        redis: RedisStore,
        tools: Arc<ToolRegistry>,
        quotas: paas_quota::Quotas,
        usage: paas_quota::UsageWriter,
        times: RunTimes,
    ) -> Self {
        let runtime = tokio::runtime::Handle::current();
        let manager = Self {
            inner: Arc::new(Inner {
                recorder: recorder::Recorder::start(db.clone(), &runtime),
                runtime,
                db,
                redis,
                tools,
                ttl: times.events_ttl,
                quotas,
                usage,
                instance: uuid::Uuid::new_v4(),
                lease: times.lease,
                runs: Mutex::new(HashMap::new()),
                swept: Mutex::new(Instant::now()),
                idle: Notify::new(),
                ping: times.ping,
                shutdown: CancellationToken::new(),
            }),
        };
        tracing::debug!(instance = %manager.inner.instance, "run manager started");
        manager
            .inner
            .runtime
            .spawn(recovery::renew_leases(Arc::downgrade(&manager.inner)));
        manager
    }

    fn from_weak(weak: &Weak<Inner>) -> Option<Self> {
        weak.upgrade().map(|inner| Self { inner })
    }

    /// The lease a run this process starts is stored with (its owner: this process).
    pub fn lease(&self) -> RunLease {
        RunLease {
            owner: self.inner.instance,
            duration: self.inner.lease,
        }
    }

    fn runs(&self) -> std::sync::MutexGuard<'_, HashMap<RunId, Arc<LiveRun>>> {
        self.inner
            .runs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts shutting down: every open dashboard stream sends a final `shutdown` event and
    /// ends. Runs go on (see [`Self::drain`]).
    pub fn begin_shutdown(&self) {
        self.inner.shutdown.cancel();
    }

    /// The tools runs can call (to size a run's first reservation exactly as it will run).
    pub fn tools(&self) -> &ToolRegistry {
        &self.inner.tools
    }

    /// A run this process knows about.
    pub fn local(&self, id: RunId) -> Option<Arc<LiveRun>> {
        self.runs().get(&id).cloned()
    }

    /// Runs in progress here now.
    pub fn active(&self) -> usize {
        self.runs().values().filter(|r| !r.is_finished()).count()
    }

    /// Cancels a run wherever it runs: here directly, elsewhere through Redis pub/sub (the
    /// replica that owns it is listening, see [`Self::listen_for_cancels`]).
    pub async fn request_cancel(&self, id: RunId) -> Result<(), Error> {
        if let Some(run) = self.local(id) {
            run.cancel();
            return Ok(());
        }
        let channel = self.inner.redis.key("run-cancel");
        let published: Result<i64, _> = self
            .inner
            .redis
            .client()
            .publish(channel, id.to_string())
            .await;
        published
            .map(|_| ())
            .map_err(|err| crate::redis::unavailable(err).with_retry_after(2))
    }

    /// Listens for cancel requests from other replicas for the runs this one owns.
    pub fn listen_for_cancels(&self) -> Result<(), Error> {
        let subscriber = self.inner.redis.subscriber()?;
        let channel = self.inner.redis.key("run-cancel");
        let manager = self.clone();
        let mut messages = subscriber.message_rx();
        tokio::spawn(async move {
            if let Err(err) = subscriber.subscribe(channel).await {
                tracing::warn!(error = %err, "cannot subscribe to run cancels yet; will retry on reconnect");
            }
            while let Ok(message) = messages.recv().await {
                let id = message
                    .value
                    .as_string()
                    .and_then(|s| s.parse::<RunId>().ok());
                if let Some(run) = id.and_then(|id| manager.local(id)) {
                    run.cancel();
                }
            }
        });
        Ok(())
    }

    /// Starts a run in the background and returns at once. A [`RunRecord::Stored`] run's row
    /// (and the user's message) must already be stored.
    pub fn start(&self, mut start: RunStart) -> Arc<LiveRun> {
        let live = Arc::new(LiveRun {
            id: start.id,
            tenant_id: start.tenant_id,
            user_id: start.user_id,
            session_id: start.session_id,
            row: start.record.kind(),
            // A stored run's row was inserted before it started; a deferred one's comes later.
            row_written: AtomicBool::new(start.record.kind() == RowKind::Stored),
            cancel: CancellationToken::new(),
            log: Mutex::new(EventLog::default()),
            notify: Notify::new(),
            answered: Notify::new(),
        });
        {
            let sweep = {
                let mut swept = self
                    .inner
                    .swept
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                let due = swept.elapsed() >= SWEEP_EVERY;
                if due {
                    *swept = Instant::now();
                }
                due
            };
            let mut runs = self.runs();
            if sweep {
                runs.retain(|_, run| {
                    run.lock()
                        .finished_at
                        .is_none_or(|at| at.elapsed() < LOCAL_RETENTION)
                });
            }
            runs.insert(start.id, Arc::clone(&live));
        }
        if let RunRecord::Deferred(row) = std::mem::replace(&mut start.record, RunRecord::Off) {
            // Queued before the run is spawned, so its outcome always follows it.
            self.inner.recorder.started(row, &live);
        }
        let manager = self.clone();
        let task_live = Arc::clone(&live);
        // The run is part of the request's trace, though it outlives the request.
        let span = tracing::info_span!(
            "agent.run",
            run_id = %start.id,
            tenant_id = %start.tenant_id,
            provider = %start.metering.provider,
        );
        self.inner.runtime.spawn(tracing::Instrument::instrument(
            async move { manager.drive(task_live, start).await },
            span,
        ));
        live
    }

    async fn drive(self, live: Arc<LiveRun>, start: RunStart) {
        let began = Instant::now();
        let tenant_label = live.tenant_id.to_string();
        let provider_label = start.metering.provider.clone();
        metrics::gauge!("active_sessions", "tenant_id" => tenant_label.clone()).increment(1.0);
        let (sender, mut receiver) = mpsc::unbounded_channel();
        let publisher = Publisher::new(self.inner.redis.clone(), start.id, start.mirror);
        let run = runtime::run(
            start.provider,
            &self.inner.tools,
            &start.spec,
            start.history,
            live.cancel.clone(),
            sender,
        );
        let pump = async {
            let mut first_token = true;
            while let Some(event) = receiver.recv().await {
                if matches!(event, RunEvent::Done { .. }) {
                    continue; // published below, after the run is stored
                }
                if let RunEvent::Usage(usage) = &event {
                    live.record_usage(*usage);
                }
                if first_token && matches!(event, RunEvent::Message(_)) {
                    first_token = false;
                    metrics::histogram!("time_to_first_token_seconds", "provider" => provider_label.clone())
                        .record(began.elapsed().as_secs_f64());
                }
                let name = event_name(&event);
                let json = serde_json::to_string(&event).unwrap_or_default();
                publisher.send(live.push(name, json));
            }
        };
        let (result, ()) = tokio::join!(run, pump);

        // Its lease is no longer renewed from here (a renewal that found the row finished
        // would take it for lost): the outcome is written well within what is left of it.
        live.end();
        let done = |stored: bool| {
            let done = DoneEvent {
                event: "done",
                data: DoneData {
                    status: result.status,
                    usage: runtime::UsageTotals::from(result.usage),
                    steps: result.steps,
                    run_id: live.id,
                    session_id: live.session_id,
                    stored,
                },
            };
            serde_json::to_string(&done).unwrap_or_default()
        };
        // An OpenAI-compatible request gets its answer as soon as the run is billed (its
        // reservation settled, so a client's next request sees the tokens it has left); storing
        // the run's outcome follows at once, off its path (the process does not exit before it
        // is done: `active` counts the run until `finish`). A dashboard turn's `done` says
        // whether its messages were stored, so it comes after that.
        let answer_first = live.session_id.is_none();
        if answer_first {
            self.meter(&live, &start.metering, &result, began.elapsed())
                .await;
            publisher.send(live.push("done", done(true)));
        }
        let stored = self.store(&live, &result).await;
        match &stored {
            Ok(true) => {}
            Ok(false) => {
                // Its lease expired (this process could not renew it) and another replica
                // marked it interrupted and billed it. A run answered first was already settled
                // here, so that replica's settle counted nothing and the ledger keeps one row
                // per run; otherwise give back what it still holds, no more.
                tracing::warn!(run = %live.id, "a run finished after another replica had marked it interrupted; keeping that outcome and its billing");
                if !answer_first {
                    recovery::release(
                        &self.inner.quotas,
                        live.tenant_id,
                        live.id,
                        start.metering.quota.started_at,
                        0,
                    )
                    .await;
                }
            }
            Err(err) => {
                tracing::error!(run = %live.id, code = err.code(), cause = %err.cause_chain(), "could not store a finished run");
            }
        }
        if !answer_first {
            if !matches!(stored, Ok(false)) {
                self.meter(&live, &start.metering, &result, began.elapsed())
                    .await;
            }
            publisher.send(live.push("done", done(matches!(stored, Ok(true)))));
        }
        live.finish();
        if answer_first {
            // Nobody resumes it: its request followed it through its own handle.
            self.runs().remove(&live.id);
        }
        metrics::gauge!("active_sessions", "tenant_id" => tenant_label.clone()).decrement(1.0);
        metrics::counter!("chat_requests_total", "tenant_id" => tenant_label.clone(), "agent_type" => start.metering.provider.clone(), "status" => result.status.as_str())
            .increment(1);
        metrics::histogram!("chat_duration_seconds", "tenant_id" => tenant_label.clone(), "agent_type" => start.metering.provider.clone())
            .record(began.elapsed().as_secs_f64());
        metrics::counter!("token_usage_total", "tenant_id" => tenant_label, "model" => start.metering.model.clone())
            .increment(
                u64::from(result.usage.prompt_tokens) + u64::from(result.usage.completion_tokens),
            );
        publisher.finish(self.inner.ttl).await;
        self.inner.idle.notify_waiters();
    }

    /// Bills a finished run: settles its reservation to what it used (retrying in the
    /// background while Redis is unavailable) and queues its usage-ledger row.
    async fn meter(
        &self,
        live: &LiveRun,
        metering: &Metering,
        result: &RunResult,
        elapsed: Duration,
    ) {
        let used =
            u64::from(result.usage.prompt_tokens) + u64::from(result.usage.completion_tokens);
        let quotas = &self.inner.quotas;
        // One attempt before `done` (so the quota shows the run at once); if Redis is away, the
        // retries happen in the background rather than hold the client's last event.
        if let Err(err) = quotas
            .settle(live.tenant_id, live.id, metering.quota.started_at, used)
            .await
        {
            tracing::warn!(run = %live.id, error = %err.cause_chain(), "cannot settle a run's tokens yet; retrying in the background");
            let (quotas, tenant, run, run_quota) = (
                quotas.clone(),
                live.tenant_id,
                live.id,
                metering.quota.clone(),
            );
            tokio::spawn(async move {
                for _ in 0..360 {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    // A reserved run counts only while its reservation is still held: if Redis
                    // came back empty, the month's counter is rebuilt from the ledger, which
                    // has this run's row by now, and counting it again would bill its tokens
                    // twice against the quota. A run admitted without a reservation (fail
                    // open) has nothing to find, so it is counted.
                    let settled = if run_quota.held {
                        quotas
                            .settle_held(tenant, run, run_quota.started_at, used)
                            .await
                            .map(drop)
                    } else {
                        quotas.settle(tenant, run, run_quota.started_at, used).await
                    };
                    if settled.is_ok() {
                        return;
                    }
                }
                tracing::error!(run = %run, "gave up settling a run's tokens; the ledger has its usage");
            });
        }
        let finished_at = metering.quota.started_at
            + chrono::Duration::from_std(elapsed).unwrap_or(chrono::Duration::zero());
        self.inner.usage.record(paas_models::UsageRecord {
            run_id: live.id,
            tenant_id: live.tenant_id,
            user_id: live.user_id,
            api_key_id: metering.api_key_id,
            agent_id: metering.agent_id,
            source: metering.source,
            provider: metering.provider.clone(),
            model: metering.model.clone(),
            status: result.status,
            prompt_tokens: i32::try_from(result.usage.prompt_tokens).unwrap_or(i32::MAX),
            completion_tokens: i32::try_from(result.usage.completion_tokens).unwrap_or(i32::MAX),
            usage_estimated: result.usage.estimated,
            duration_ms: i32::try_from(elapsed.as_millis()).unwrap_or(i32::MAX),
            started_at: metering.quota.started_at,
            finished_at,
        });
    }

    /// Writes the run's messages and outcome in one transaction, retrying briefly if the
    /// database is unavailable. `Ok(false)`: the run was no longer `running` (another replica
    /// claimed it as interrupted), so nothing was written.
    async fn store(&self, live: &LiveRun, result: &RunResult) -> Result<bool, Error> {
        if live.row == RowKind::Off {
            return Ok(true); // nothing to write: its ledger row is its record
        }
        let now = chrono::Utc::now();
        let outcome = RunOutcome {
            status: result.status,
            steps: result.steps,
            prompt_tokens: result.usage.prompt_tokens,
            completion_tokens: result.usage.completion_tokens,
            usage_estimated: result.usage.estimated,
            error_code: result.error.as_ref().map(|(code, _)| code.clone()),
            error_message: result.error.as_ref().map(|(_, message)| message.clone()),
            limit_reason: result.limit.map(|l| l.as_str().to_owned()),
            finished_at: now,
        };
        if live.row == RowKind::Deferred {
            // Written behind, with its row if that is not written yet (see `recorder`).
            self.inner
                .recorder
                .finished(live.tenant_id, live.id, outcome);
            return Ok(true);
        }
        let messages: Vec<NewMessage> = match live.session_id {
            None => Vec::new(),
            Some(session) => result
                .transcript
                .iter()
                .map(|entry| NewMessage {
                    id: paas_core::MessageId::new(),
                    session_id: session,
                    run_id: Some(live.id),
                    role: match entry.message.role {
                        paas_llm::MessageRole::System => MessageRole::System,
                        paas_llm::MessageRole::User => MessageRole::User,
                        paas_llm::MessageRole::Assistant => MessageRole::Assistant,
                        paas_llm::MessageRole::Tool => MessageRole::Tool,
                    },
                    content: entry.message.content.clone(),
                    reasoning: entry.reasoning.clone(),
                    tool_calls: entry
                        .message
                        .tool_calls
                        .iter()
                        .map(|c| ToolCallRecord {
                            id: c.id.clone(),
                            name: c.name.clone(),
                            arguments: c.arguments.clone(),
                        })
                        .collect(),
                    tool_call_id: entry.message.tool_call_id.clone(),
                    tool_name: entry.tool_name.clone(),
                    is_error: entry.is_error,
                    prompt_tokens: entry.usage.prompt_tokens,
                    completion_tokens: entry.usage.completion_tokens,
                    created_at: now,
                })
                .collect(),
        };
        let (tenant, run, session) = (live.tenant_id, live.id, live.session_id);
        let mut attempt = 0u32;
        loop {
            let (messages, outcome) = (messages.clone(), outcome.clone());
            let work = move |conn: &mut paas_persistence::PgConnection| {
                // Claimed by another replica: its outcome stands, and nothing is added.
                if !runs::finish(conn, tenant, run, &outcome)? {
                    return Ok(false);
                }
                // The session may have been deleted while the run was going: then only the
                // run (its outcome and usage) is kept.
                let live_session = match session {
                    Some(s) if sessions::exists(conn, tenant, s)? => Some(s),
                    _ => None,
                };
                if let Some(session) = live_session {
                    if !messages.is_empty() {
                        sessions::insert_messages(conn, tenant, &messages)?;
                    }
                    sessions::touch(conn, tenant, session, outcome.finished_at)?;
                }
                Ok(true)
            };
            match self.inner.db.tenant_tx(tenant, work).await {
                Err(err) if err.kind() == paas_core::ErrorKind::Unavailable && attempt < 10 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                }
                other => return other,
            }
        }
    }

    /// Run rows (starts and outcomes) queued and not written yet (see the `recorder` module).
    pub fn records_queued(&self) -> i64 {
        self.inner.recorder.queued()
    }

    /// Writes the run rows still queued (see the `recorder` module), waiting at most `limit`:
    /// at shutdown, after [`Self::drain`].
    pub async fn flush_records(&self, limit: Duration) {
        self.inner.recorder.shutdown(limit).await;
    }

    /// Waits until no run is in progress here, at most `limit`; then cancels what is left and
    /// waits (briefly) for those to be stored as cancelled.
    pub async fn drain(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.active() > 0 && Instant::now() < deadline {
            let _ = tokio::time::timeout_at(deadline, self.inner.idle.notified()).await;
        }
        if self.active() > 0 {
            for run in self.runs().values() {
                run.cancel();
            }
            let grace = Instant::now() + Duration::from_secs(5);
            while self.active() > 0 && Instant::now() < grace {
                let _ = tokio::time::timeout_at(grace, self.inner.idle.notified()).await;
            }
        }
    }

    /// Events of a run after `after`, then the live rest until `done`, as SSE bytes, with comment
    /// pings when idle. Reads this process's log for local runs and the Redis stream otherwise;
    /// `fallback` answers for a run whose events are gone (a finished run older than the TTL).
    pub fn sse(
        &self,
        run: RunId,
        after: u64,
        fallback: Option<String>,
    ) -> impl Stream<Item = Result<Bytes, actix_web::Error>> + 'static {
        let source = match self.local(run) {
            Some(live) => Source::Local(live),
            None => Source::Redis {
                redis: self.inner.redis.clone(),
                key: stream_key(&self.inner.redis, run),
                fallback,
            },
        };
        events_stream(source, after, self.inner.ping, self.inner.shutdown.clone())
    }

    /// The events of a run after `after` until `done`, as data (for the OpenAI-compatible API).
    pub fn watch(&self, run: RunId, after: u64) -> impl Stream<Item = WireEvent> + 'static {
        let source = match self.local(run) {
            Some(live) => Source::Local(live),
            None => Source::Redis {
                redis: self.inner.redis.clone(),
                key: stream_key(&self.inner.redis, run),
                fallback: None,
            },
        };
        watch_source(source, after)
    }

    /// [`Self::watch`] for a run this request started: followed in memory, even if it has
    /// already ended and left the manager.
    pub fn watch_started(live: Arc<LiveRun>) -> impl Stream<Item = WireEvent> + 'static {
        watch_source(Source::Local(live), 0)
    }

    /// [`Self::sse`] for a run this request started (see [`Self::watch_started`]).
    pub fn sse_started(
        &self,
        live: Arc<LiveRun>,
    ) -> impl Stream<Item = Result<Bytes, actix_web::Error>> + 'static {
        events_stream(
            Source::Local(live),
            0,
            self.inner.ping,
            self.inner.shutdown.clone(),
        )
    }
}

fn watch_source(source: Source, after: u64) -> impl Stream<Item = WireEvent> + 'static {
    futures_util::stream::unfold((source, after, false), |(source, after, done)| async move {
        if done {
            return None;
        }
        let batch = next_batch(&source, after, PING_INTERVAL).await;
        match batch {
            Batch::Events(events) => {
                let last = events.last().map(|e| e.seq).unwrap_or(after);
                let ended = events.iter().any(|e| &*e.name == "done");
                Some((futures_util::stream::iter(events), (source, last, ended)))
            }
            Batch::Ping => Some((
                futures_util::stream::iter(Vec::new()),
                (source, after, false),
            )),
            Batch::End | Batch::Unavailable => None,
        }
    })
    .flatten()
}

use futures_util::StreamExt;

fn stream_key(redis: &RedisStore, run: RunId) -> String {
    redis.key(&format!("run:{run}:events"))
}

/// Copies a run's events to its Redis stream, in order, off the run's path.
struct Publisher {
    /// None when the run is not mirrored (see [`RunStart::mirror`]).
    sender: Option<mpsc::UnboundedSender<WireEvent>>,
    task: Option<tokio::task::JoinHandle<()>>,
    redis: RedisStore,
    key: String,
}

impl Publisher {
    fn new(redis: RedisStore, run: RunId, mirror: bool) -> Self {
        let key = stream_key(&redis, run);
        if !mirror {
            return Self {
                sender: None,
                task: None,
                redis,
                key,
            };
        }
        let (sender, mut receiver) = mpsc::unbounded_channel::<WireEvent>();
        let client = redis.clone();
        let task_key = key.clone();
        let task = tokio::spawn(async move {
            // The stream exists from the run's start, before its first event (a model may think
            // for a while): a follower on another replica can tell a run that has not spoken yet
            // from one whose events have expired. The marker, `0-1`, is not an event. The stream
            // must not outlive its run by much even if the run never finishes (its process
            // died): an expiry from the start, shortened when the run ends.
            let opening = client.client().pipeline();
            let opened = async {
                opening
                    .xadd::<(), _, _, _, _>(
                        &task_key,
                        false,
                        None,
                        "0-1",
                        vec![("n", ""), ("e", "")],
                    )
                    .await?;
                opening
                    .expire::<(), _>(&task_key, ORPHAN_STREAM_TTL_SECS, None)
                    .await?;
                opening.all::<Vec<fred::types::Value>>().await.map(drop)
            }
            .await;
            let mut healthy = match opened {
                Ok(()) => true,
                Err(err) => {
                    tracing::warn!(error = %err, "run events: Redis unavailable, streaming from this process only");
                    false
                }
            };
            let mut batch = Vec::new();
            // Events that are already waiting go out together, in one pipelined write, rather
            // than one round trip each (a fast model sends many small deltas back to back).
            while receiver.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
                if !healthy {
                    batch.clear();
                    continue;
                }
                let pipeline = client.client().pipeline();
                let mut queued: Result<(), fred::error::Error> = Ok(());
                for event in batch.drain(..) {
                    let fields = vec![("n", event.name.to_string()), ("e", event.json.to_string())];
                    let id = format!("{}-0", event.seq);
                    queued = queued.and(
                        pipeline
                            .xadd::<(), _, _, _, _>(&task_key, false, None, id.as_str(), fields)
                            .await,
                    );
                }
                let written = match queued {
                    Ok(()) => pipeline.all::<Vec<fred::types::Value>>().await.map(drop),
                    Err(err) => Err(err),
                };
                if let Err(err) = written {
                    // Local watchers still get every event; resuming elsewhere will not.
                    tracing::warn!(error = %err, "run events: Redis unavailable, streaming from this process only");
                    healthy = false;
                }
            }
        });
        Self {
            sender: Some(sender),
            task: Some(task),
            redis,
            key,
        }
    }

    fn send(&self, event: WireEvent) {
        if let Some(sender) = &self.sender {
            let _ = sender.send(event);
        }
    }

    /// Waits for every event to be written, then sets the stream's expiry.
    async fn finish(mut self, ttl: Duration) {
        if self.sender.take().is_none() {
            return; // not mirrored
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        let secs = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
        let _ = self
            .redis
            .client()
            .expire::<i64, _>(&self.key, secs, None)
            .await;
    }
}

enum Source {
    Local(Arc<LiveRun>),
    Redis {
        redis: RedisStore,
        key: String,
        fallback: Option<String>,
    },
}

enum Batch {
    Events(Vec<WireEvent>),
    Ping,
    End,
    /// The events cannot be read (Redis is down): the watcher gets an `error` event.
    Unavailable,
}

/// How often a watcher on another replica looks for new events in Redis. Polling (rather than
/// `XREAD BLOCK`) keeps the shared Redis connection free for everything else.
const REDIS_POLL: Duration = Duration::from_millis(100);

/// The next events after `after`: waits up to the ping interval for some.
async fn next_batch(source: &Source, after: u64, ping: Duration) -> Batch {
    match source {
        Source::Local(live) => {
            let notified = live.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (events, finished) = live.since(after);
            if !events.is_empty() {
                return Batch::Events(events);
            }
            if finished {
                return Batch::End;
            }
            match tokio::time::timeout(ping, notified).await {
                Ok(()) => {
                    let (events, finished) = live.since(after);
                    match (events.is_empty(), finished) {
                        (false, _) => Batch::Events(events),
                        (true, true) => Batch::End,
                        (true, false) => Batch::Events(Vec::new()),
                    }
                }
                Err(_) => Batch::Ping,
            }
        }
        Source::Redis {
            redis,
            key,
            fallback,
        } => read_redis(redis, key, after, fallback.is_some(), ping).await,
    }
}

type StreamEntries = Vec<(String, HashMap<String, String>)>;

fn parse_entries(entries: StreamEntries) -> Vec<WireEvent> {
    entries
        .into_iter()
        .filter_map(|(id, fields)| {
            let seq = id.split('-').next()?.parse().ok()?;
            if seq == 0 {
                return None; // the opening marker
            }
            Some(WireEvent {
                seq,
                name: Arc::from(fields.get("n")?.as_str()),
                json: Arc::from(fields.get("e")?.as_str()),
            })
        })
        .collect()
}

/// Reads events after `after` from the run's Redis stream, polling for up to the ping interval.
/// A run the database already calls finished (`finished`) gets no more events: what the stream
/// holds is all there is.
async fn read_redis(
    redis: &RedisStore,
    key: &str,
    after: u64,
    finished: bool,
    ping: Duration,
) -> Batch {
    let client = redis.client();
    let start = format!("({after}-0");
    let deadline = Instant::now() + ping;
    loop {
        let entries: Result<StreamEntries, _> =
            client.xrange(key, start.as_str(), "+", Some(1000)).await;
        match entries {
            Ok(entries) => {
                // The opening marker (see `Publisher`) is not an event.
                let events = parse_entries(entries);
                if !events.is_empty() {
                    return Batch::Events(events);
                }
                if finished {
                    return Batch::End;
                }
            }
            Err(_) => return Batch::Unavailable,
        }
        // No stream at all: it has expired (the run ended long ago). A run in progress has one
        // from its start, holding at least the opening marker.
        match client.exists::<i64, _>(key).await {
            Ok(0) => return Batch::End,
            Ok(_) => {}
            Err(_) => return Batch::Unavailable,
        }
        if Instant::now() >= deadline {
            return Batch::Ping;
        }
        tokio::time::sleep(REDIS_POLL).await;
    }
}

fn sse_frame(event: &WireEvent) -> Bytes {
    Bytes::from(format!(
        "id: {}\nevent: {}\ndata: {}\n\n",
        event.seq, event.name, event.json
    ))
}

/// The last frame of a stream that the server ends because it is shutting down.
fn shutdown_frame() -> Bytes {
    Bytes::from_static(
        b"event: shutdown\ndata: {\"event\":\"shutdown\",\"data\":{\"message\":\"this server is shutting down; the run goes on: resume with GET /api/v1/runs/{id}/events and Last-Event-ID\"}}\n\n",
    )
}

fn events_stream(
    source: Source,
    after: u64,
    ping: Duration,
    shutdown: CancellationToken,
) -> impl Stream<Item = Result<Bytes, actix_web::Error>> + 'static {
    futures_util::stream::unfold((source, after, false), move |(source, after, done)| {
        let shutdown = shutdown.clone();
        async move {
        if done {
            return None;
        }
        let batch = tokio::select! {
            biased;
            () = shutdown.cancelled() => {
                return Some((Ok(shutdown_frame()), (source, after, true)));
            }
            batch = next_batch(&source, after, ping) => batch,
        };
        match batch {
            Batch::Events(events) if events.is_empty() => Some((Ok(Bytes::new()), (source, after, false))),
            Batch::Events(events) => {
                let last = events.last().map(|e| e.seq).unwrap_or(after);
                let ended = events.iter().any(|e| &*e.name == "done");
                let mut out = Vec::new();
                for event in &events {
                    out.extend_from_slice(&sse_frame(event));
                }
                Some((Ok(Bytes::from(out)), (source, last, ended)))
            }
            Batch::Ping => Some((Ok(Bytes::from_static(b": ping\n\n")), (source, after, false))),
            Batch::Unavailable => {
                let data = r#"{"event":"error","data":{"code":"events_unavailable","message":"this run's events cannot be read right now (Redis is unavailable); retry shortly"}}"#;
                let frame = format!("event: error\ndata: {data}\n\n");
                Some((Ok(Bytes::from(frame)), (source, after, true)))
            }
            Batch::End => match &source {
                Source::Redis { fallback: Some(done), .. } => {
                    let frame = format!("id: {}\nevent: done\ndata: {done}\n\n", after + 1);
                    Some((Ok(Bytes::from(frame)), (source, after + 1, true)))
                }
                _ => None,
            },
        }
        }
    })
    .filter(|chunk| futures_util::future::ready(!matches!(chunk, Ok(b) if b.is_empty())))
}
