//! Runs whose process died: ownership leases, and the sweep that finishes such runs.
//!
//! Every process takes a random instance id at start. A run's row names its owner and a lease
//! (`lease_owner`, `lease_until`, database time), set by the insert that records the run — no
//! other write on the request path. Each process renews the leases of all its runs in progress
//! in one statement every third of the lease (`PAAS_RUN_LEASE_SECS`, 30 s by default), writing
//! their steps and tokens so far with them.
//!
//! Every replica sweeps at start-up and then every half lease: it claims the runs still
//! `running` whose lease has expired (their process stopped renewing: it died) — or, for rows
//! without a lease, that started longer ago than any run can last — marks them `failed` with
//! `error_code` `interrupted`, and writes their usage-ledger row, in one statement
//! (`paas_claim_orphaned_runs`): a claim is atomic, so two replicas never both handle a run, and
//! a run whose owner still renews its lease is never touched. For each claimed run it then
//! releases the token reservation (counting what the last renewal recorded, only if the
//! reservation is still held, so nothing is counted twice) and ends the run's event stream with
//! `error` (`interrupted`) and `done`, so a client following it — or resuming later — is told.
//!
//! A run's owner that was only cut off (its lease expired while the database was out of reach)
//! finds out at its next renewal and cancels the run; when such a run ends, its outcome is not
//! stored over the claim and it is not billed again.

use std::collections::HashSet;
use std::sync::{Arc, Weak};
use std::time::Duration;

use fred::interfaces::{KeysInterface, StreamsInterface};
use paas_agents::runtime::{RunEvent, UsageTotals};
use paas_core::{Error, RunId, TenantId};
use paas_models::RunStatus;
use paas_persistence::runs::{self, ClaimedRun, RunProgress};

use super::{DoneData, DoneEvent, Inner, LiveRun, RunManager, StreamEntries, parse_entries};

/// Runs claimed per statement.
const CLAIM_BATCH: u32 = 200;
/// The `error` event of an interrupted run (the same words as its row's `error_message`).
const INTERRUPTED_CODE: &str = "interrupted";
const INTERRUPTED_MESSAGE: &str = "the server stopped while this run was in progress";

/// Rows without a lease (started by a version without leases, during a rolling upgrade) are
/// claimed this long after they started: longer than any run can last.
fn unleased_after() -> Duration {
    Duration::from_secs(u64::from(paas_models::agent::AGENT_MAX_TIMEOUT_SECONDS) + 300)
}

/// How often the owner renews its leases: a third of the lease, so two renewals can fail before
/// the lease runs out.
fn renew_every(lease: Duration) -> Duration {
    (lease / 3).max(Duration::from_millis(100))
}

/// How often every replica sweeps for orphaned runs.
fn sweep_every(lease: Duration) -> Duration {
    (lease / 2).max(Duration::from_millis(100))
}

/// Renews the leases of this process's runs for as long as its [`RunManager`] lives.
pub(super) async fn renew_leases(weak: Weak<Inner>) {
    let Some(lease) = weak.upgrade().map(|inner| inner.lease) else {
        return;
    };
    let mut tick = tokio::time::interval(renew_every(lease));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(manager) = RunManager::from_weak(&weak) else {
            return;
        };
        manager.renew_once().await;
    }
}

/// Sweeps for orphaned runs at once, then every half lease, for as long as the manager lives.
async fn sweep_orphans(weak: Weak<Inner>) {
    let Some(lease) = weak.upgrade().map(|inner| inner.lease) else {
        return;
    };
    let mut tick = tokio::time::interval(sweep_every(lease));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(manager) = RunManager::from_weak(&weak) else {
            return;
        };
        match manager.recover_orphans().await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                runs = n,
                "marked runs orphaned by a stopped process as failed"
            ),
            Err(err) => {
                tracing::debug!(code = err.code(), cause = %err.cause_chain(), "could not sweep orphaned runs")
            }
        }
    }
}

/// Releases what a run still holds of its tenant's tokens, counting `used` only if the
/// reservation is still there (see [`paas_quota::Quotas::settle_held`]); retries in the
/// background while Redis is unavailable (safe: a second settlement counts nothing).
pub(super) async fn release(
    quotas: &paas_quota::Quotas,
    tenant: TenantId,
    run: RunId,
    started_at: chrono::DateTime<chrono::Utc>,
    used: u64,
) {
    let Err(err) = quotas.settle_held(tenant, run, started_at, used).await else {
        return;
    };
    tracing::warn!(run = %run, error = %err.cause_chain(), "cannot release an interrupted run's tokens yet; retrying in the background");
    let quotas = quotas.clone();
    tokio::spawn(async move {
        // Reservations expire on their own after the longest run: no use trying longer.
        for _ in 0..144 {
            tokio::time::sleep(Duration::from_secs(5)).await;
            if quotas
                .settle_held(tenant, run, started_at, used)
                .await
                .is_ok()
            {
                return;
            }
        }
        tracing::error!(run = %run, "gave up releasing an interrupted run's tokens; its reservation expires on its own");
    });
}

impl RunManager {
    /// Sweeps for runs orphaned by dead processes now and then every half lease, in the
    /// background (what `serve` runs; see the module doc).
    pub fn spawn_orphan_sweep(&self) {
        self.inner
            .runtime
            .spawn(sweep_orphans(Arc::downgrade(&self.inner)));
    }

    /// Renews the leases of this process's runs in progress, in one statement. A run whose
    /// lease was not renewed (another replica claimed it after it expired) is cancelled here.
    async fn renew_once(&self) {
        let live: Vec<Arc<LiveRun>> = self.runs().values().cloned().collect();
        let progress: Vec<RunProgress> = live.iter().filter_map(|run| run.progress()).collect();
        if progress.is_empty() {
            return;
        }
        let asked: Vec<RunId> = progress.iter().map(|p| p.id).collect();
        let lease = self.lease();
        let renewed = self
            .inner
            .db
            .anonymous_tx(move |conn| runs::renew_leases(conn, lease, &progress))
            .await;
        match renewed {
            Ok(renewed) => {
                let renewed: HashSet<RunId> = renewed.into_iter().collect();
                let lost = live
                    .iter()
                    .filter(|run| asked.contains(&run.id) && !renewed.contains(&run.id));
                for run in lost {
                    // Still in progress here (not merely finished since): another replica
                    // has marked it interrupted and billed it. Stop it.
                    if run.progress().is_some() {
                        tracing::warn!(run = %run.id, "lost a run's lease (another replica marked it interrupted); cancelling it here");
                        run.cancel();
                    }
                }
            }
            Err(err) => tracing::warn!(
                runs = asked.len(),
                code = err.code(),
                cause = %err.cause_chain(),
                "cannot renew the leases of this process's runs; other replicas mark them interrupted if this lasts past their lease"
            ),
        }
    }

    /// Claims every run orphaned by a dead process (see the module doc) and finishes each:
    /// marked `failed` (`interrupted`) and billed in the ledger by the claim, then its token
    /// reservation released and its event stream ended. Returns how many it claimed.
    pub async fn recover_orphans(&self) -> Result<usize, Error> {
        let mut recovered = 0;
        loop {
            let claimed = self
                .inner
                .db
                .anonymous_tx(|conn| runs::claim_orphaned(conn, unleased_after(), CLAIM_BATCH))
                .await?;
            for run in &claimed {
                self.finish_orphan(run).await;
            }
            recovered += claimed.len();
            if claimed.len() < CLAIM_BATCH as usize {
                return Ok(recovered);
            }
        }
    }

    async fn finish_orphan(&self, run: &ClaimedRun) {
        metrics::counter!("runs_interrupted_total").increment(1);
        tracing::info!(
            run = %run.id,
            tenant_id = %run.tenant_id,
            owner = ?run.lease_owner,
            tokens = run.tokens(),
            "run interrupted: its process stopped; marked failed, billed what it is known to have used"
        );
        release(
            &self.inner.quotas,
            run.tenant_id,
            run.id,
            run.started_at,
            run.tokens(),
        )
        .await;
        self.end_stream(run).await;
    }

    /// Appends `error` (`interrupted`) and `done` to the run's event stream, so whoever follows
    /// it (or resumes it later) is told it ended, and gives the stream the finished runs' TTL.
    async fn end_stream(&self, run: &ClaimedRun) {
        let redis = &self.inner.redis;
        let key = super::stream_key(redis, run.id);
        let client = redis.client();
        let last: Result<StreamEntries, _> = client.xrevrange(&key, "+", "-", Some(1)).await;
        let last = match last {
            Ok(entries) => parse_entries(entries).pop(),
            Err(err) => {
                tracing::debug!(run = %run.id, error = %err, "cannot end an interrupted run's event stream (Redis unavailable)");
                return;
            }
        };
        if last.as_ref().is_some_and(|event| &*event.name == "done") {
            return;
        }
        let after = last.map_or(0, |event| event.seq);
        let error = RunEvent::Error {
            code: INTERRUPTED_CODE.to_owned(),
            message: INTERRUPTED_MESSAGE.to_owned(),
        };
        let done = DoneEvent {
            event: "done",
            data: DoneData {
                status: RunStatus::Failed,
                usage: UsageTotals {
                    prompt_tokens: run.prompt_tokens,
                    completion_tokens: run.completion_tokens,
                    total_tokens: run.prompt_tokens.saturating_add(run.completion_tokens),
                    estimated: run.usage_estimated,
                },
                steps: run.steps,
                run_id: run.id,
                session_id: run.session_id,
                stored: true,
            },
        };
        let events = [
            ("error", serde_json::to_string(&error).unwrap_or_default()),
            ("done", serde_json::to_string(&done).unwrap_or_default()),
        ];
        for (seq, (name, json)) in (after + 1..).zip(events) {
            let id = format!("{seq}-0");
            let fields = vec![("n", name.to_owned()), ("e", json)];
            let added: Result<String, _> =
                client.xadd(&key, false, None, id.as_str(), fields).await;
            if let Err(err) = added {
                tracing::debug!(run = %run.id, error = %err, "cannot end an interrupted run's event stream");
                return;
            }
        }
        let secs = i64::try_from(self.inner.ttl.as_secs()).unwrap_or(i64::MAX);
        let _ = client.expire::<i64, _>(&key, secs, None).await;
    }
}
