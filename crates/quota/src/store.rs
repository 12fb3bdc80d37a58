//! [`Quotas`]: rate limits and token reservations against Redis, with the ledger behind them.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use fred::clients::Client;
use fred::interfaces::ClientLike;
use fred::types::scripts::Script;
use paas_core::{Error, RunId, TenantId};
use paas_persistence::{Db, usage};

use crate::local::LocalLimiter;
use crate::{RateOutcome, RateRequest, RateScope, RateWindow, period, scripts};

/// How long a month's counter outlives the month (so late settlements still find it).
const COUNTER_TTL_SECS: i64 = 62 * 24 * 3600;
/// Expiry of a tenant's reservation hash and run set, renewed by every admission: longer than
/// any run (runs last at most 10 minutes).
const CONTAINER_TTL_MS: i64 = 30 * 60 * 1000;

/// How the quota store behaves.
#[derive(Clone, Debug)]
pub struct QuotaConfig {
    /// Prefix of every Redis key.
    pub prefix: String,
    /// When Redis is unavailable, admit chats without a reservation (true) or refuse them
    /// with 503 (false, the default).
    pub fail_open: bool,
    /// Enforce rate limits, runs in progress and token quotas (true, the default). False: every
    /// request and run is admitted without asking Redis, nothing is reserved or counted there
    /// (usage is still recorded in the ledger), and the rate-limit window reported is a full
    /// one. For a deployment that needs no limits, and to measure what they cost.
    pub enforce: bool,
}

/// A run's claim on its tenant's monthly tokens.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    pub run: RunId,
    /// Tokens to reserve (the worst case of the next model call).
    pub amount: u64,
    /// The tenant's monthly limit.
    pub limit: i64,
    /// When the run started: its tokens count in this month.
    pub started_at: DateTime<Utc>,
    /// Runs in progress the tenant may have (checked when a run is admitted).
    pub max_concurrent: i64,
    /// After this long the reservation is released even if never settled.
    pub ttl: Duration,
}

/// Whether a run may start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead. `reserved` is false only when Redis was down and quotas fail open.
    Admitted { rate: RateOutcome, reserved: bool },
    /// A rate limit refused it.
    RateLimited(RateOutcome),
    /// The month's tokens (used plus reserved by runs in progress) leave no room for it.
    TokensExceeded {
        rate: RateWindow,
        limit: i64,
        used: i64,
        reserved: i64,
    },
    /// The tenant already has its maximum of runs in progress.
    TooManyRuns { rate: RateWindow, limit: i64 },
}

/// A tenant's tokens this month.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenStatus {
    /// Settled: what finished runs used.
    pub used: i64,
    /// Held by runs in progress.
    pub reserved: i64,
    pub active_runs: i64,
}

/// Rate limits and token quotas. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Quotas {
    inner: std::sync::Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: Client,
    db: Db,
    config: QuotaConfig,
    local: LocalLimiter,
    admit: Script,
    settle: Script,
    settle_held: Script,
    status: Script,
    /// When Redis was last found down (ms since `epoch`; 0: not recently).
    down_at: std::sync::atomic::AtomicU64,
    epoch: Instant,
}

struct Keys {
    tenant_rate: String,
    key_rate: String,
    tokens: String,
    reservations: String,
    reserved_sum: String,
    runs: String,
}

impl Keys {
    /// The keys of the settle, settle-held and status scripts, in their order.
    fn run_keys(&self) -> Vec<&str> {
        vec![
            self.tokens.as_str(),
            self.reservations.as_str(),
            self.runs.as_str(),
            self.reserved_sum.as_str(),
        ]
    }
}

/// The script's answer, in order (see [`scripts::ADMIT`]).
struct Answer {
    status: i64,
    tenant: RateWindow,
    key: Option<RateWindow>,
    retry_after: Duration,
    used: i64,
    reserved: i64,
}

fn ms(value: i64) -> Duration {
    Duration::from_millis(u64::try_from(value).unwrap_or(0))
}

fn unavailable(err: impl std::fmt::Display) -> Error {
    Error::unavailable(
        "quota_unavailable",
        "token quotas cannot be checked right now (Redis is unavailable); retry shortly",
        2,
    )
    .with_source(err.to_string())
}

impl Quotas {
    pub fn new(client: Client, db: Db, config: QuotaConfig) -> Self {
        Self {
            inner: std::sync::Arc::new(Inner {
                client,
                db,
                config,
                local: LocalLimiter::default(),
                admit: Script::from_lua(scripts::ADMIT),
                settle: Script::from_lua(scripts::SETTLE),
                settle_held: Script::from_lua(scripts::SETTLE_HELD),
                status: Script::from_lua(scripts::STATUS),
                down_at: std::sync::atomic::AtomicU64::new(0),
                epoch: Instant::now(),
            }),
        }
    }

    fn keys(&self, tenant: TenantId, key: Option<paas_core::ApiKeyId>, month: &str) -> Keys {
        let base = format!("{}q:{{{tenant}}}:", self.inner.config.prefix);
        Keys {
            tenant_rate: format!("{base}rt"),
            key_rate: match key {
                Some(key) => format!("{base}rk:{key}"),
                None => format!("{base}rk:-"),
            },
            tokens: format!("{base}tok:{month}"),
            reservations: format!("{base}res"),
            reserved_sum: format!("{base}resv"),
            runs: format!("{base}runs"),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_admit(
        &self,
        keys: &Keys,
        rate: Option<&RateRequest>,
        mode: i64,
        tokens: Option<&TokenRequest>,
        rebuilt: i64,
    ) -> Result<Answer, fred::error::Error> {
        self.connected().await?;
        let tenant_rpm = rate.map_or(-1, |r| r.tenant_per_minute.max(0));
        let key_rpm = rate.and_then(|r| r.key).map_or(-1, |(_, rpm)| rpm.max(0));
        let (limit, amount, run, ttl, max_concurrent) = match tokens {
            Some(t) => (
                t.limit,
                i64::try_from(t.amount).unwrap_or(i64::MAX),
                t.run.to_string(),
                i64::try_from(t.ttl.as_millis()).unwrap_or(i64::MAX),
                t.max_concurrent,
            ),
            None => (0, 0, String::new(), 0, 0),
        };
        let args: Vec<fred::types::Value> = vec![
            tenant_rpm.into(),
            key_rpm.into(),
            mode.into(),
            limit.into(),
            amount.into(),
            run.into(),
            ttl.into(),
            max_concurrent.into(),
            rebuilt.into(),
            COUNTER_TTL_SECS.into(),
            CONTAINER_TTL_MS.into(),
        ];
        let answer: Vec<i64> = self
            .inner
            .admit
            .evalsha_with_reload(
                &self.inner.client,
                vec![
                    keys.tenant_rate.as_str(),
                    keys.key_rate.as_str(),
                    keys.tokens.as_str(),
                    keys.reservations.as_str(),
                    keys.runs.as_str(),
                    keys.reserved_sum.as_str(),
                ],
                args,
            )
            .await?;
        let get = |i: usize| answer.get(i).copied().unwrap_or(0);
        Ok(Answer {
            status: get(0),
            tenant: RateWindow {
                limit: tenant_rpm,
                remaining: get(1),
                reset: ms(get(2)),
                retry_after: None,
            },
            key: (key_rpm >= 0).then(|| RateWindow {
                limit: key_rpm,
                remaining: get(3),
                reset: ms(get(4)),
                retry_after: None,
            }),
            retry_after: ms(get(5)),
            used: get(6),
            reserved: get(7),
        })
    }

    /// Fails at once while Redis is known to be down (a reconnect found it down in the last
    /// two seconds), so requests do not each wait out a timeout; otherwise waits briefly for a
    /// connection being made (as at start-up).
    async fn connected(&self) -> Result<(), fred::error::Error> {
        let client = &self.inner.client;
        if client.is_connected() {
            return Ok(());
        }
        let down = || fred::error::Error::new(fred::error::ErrorKind::IO, "Redis is not connected");
        let now = self.inner.epoch.elapsed().as_millis() as u64;
        let since = self
            .inner
            .down_at
            .load(std::sync::atomic::Ordering::Relaxed);
        if since != 0 && now.saturating_sub(since) < 2_000 {
            return Err(down());
        }
        match tokio::time::timeout(Duration::from_millis(250), client.wait_for_connect()).await {
            Ok(Ok(())) => Ok(()),
            _ => {
                self.inner
                    .down_at
                    .store(now.max(1), std::sync::atomic::Ordering::Relaxed);
                Err(down())
            }
        }
    }

    fn outcome(answer: &Answer, shared: bool) -> RateOutcome {
        let refused_by = match answer.status {
            1 => Some(RateScope::Tenant),
            2 => Some(RateScope::ApiKey),
            _ => None,
        };
        let mut window = RateOutcome::tighter(answer.tenant, answer.key);
        if refused_by.is_some() {
            window.remaining = 0;
            window.retry_after = Some(answer.retry_after.max(Duration::from_millis(1)));
        }
        RateOutcome {
            window,
            refused_by,
            shared,
        }
    }

    /// The per-process fallback for rate limits.
    fn local_rate(&self, rate: &RateRequest) -> RateOutcome {
        let now = Instant::now();
        let tenant =
            self.inner
                .local
                .check(&format!("t:{}", rate.tenant), rate.tenant_per_minute, now);
        if tenant.retry_after.is_some() {
            return RateOutcome {
                window: tenant,
                refused_by: Some(RateScope::Tenant),
                shared: false,
            };
        }
        let key = rate
            .key
            .map(|(id, rpm)| self.inner.local.check(&format!("k:{id}"), rpm, now));
        let refused_by = key
            .filter(|k| k.retry_after.is_some())
            .map(|_| RateScope::ApiKey);
        RateOutcome {
            window: match key {
                Some(k) if k.retry_after.is_some() => k,
                _ => RateOutcome::tighter(tenant, key),
            },
            refused_by,
            shared: false,
        }
    }

    /// Counts one request against the tenant's (and key's) rate limit. Never fails: without
    /// Redis the per-process limiter decides.
    pub async fn check_rate(&self, rate: &RateRequest) -> RateOutcome {
        if !self.inner.config.enforce {
            return Self::unenforced(rate);
        }
        let keys = self.keys(rate.tenant, rate.key.map(|k| k.0), "-");
        match self.run_admit(&keys, Some(rate), 0, None, -1).await {
            Ok(answer) => Self::outcome(&answer, true),
            Err(err) => {
                tracing::debug!(error = %err, "rate limit: Redis unavailable, limiting per process");
                metrics::counter!("rate_limit_fallbacks_total").increment(1);
                self.local_rate(rate)
            }
        }
    }

    /// A full window: what a request is told when limits are not enforced.
    fn unenforced(rate: &RateRequest) -> RateOutcome {
        let limit = rate.key.map_or(rate.tenant_per_minute, |(_, key)| {
            key.min(rate.tenant_per_minute)
        });
        RateOutcome {
            window: RateWindow {
                limit,
                remaining: limit,
                reset: Duration::ZERO,
                retry_after: None,
            },
            refused_by: None,
            shared: true,
        }
    }

    /// Tokens used by the tenant's runs that started in `[from, to)`, from the ledger.
    async fn ledger_tokens(
        &self,
        tenant: TenantId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<i64, Error> {
        self.inner
            .db
            .tenant_tx(tenant, move |conn| {
                usage::tokens_between(conn, tenant, from, to)
            })
            .await
    }

    /// Runs the admission script, rebuilding the month's counter from the ledger first if
    /// Redis has lost it.
    async fn admit_with_rebuild(
        &self,
        tenant: TenantId,
        rate: Option<&RateRequest>,
        mode: i64,
        tokens: &TokenRequest,
    ) -> Result<Result<Answer, fred::error::Error>, Error> {
        let month = period::month_key(tokens.started_at);
        let keys = self.keys(tenant, rate.and_then(|r| r.key).map(|k| k.0), &month);
        let first = self.run_admit(&keys, rate, mode, Some(tokens), -1).await;
        match first {
            Ok(answer) if answer.status == 5 => {
                let (from, to) = period::month_bounds(tokens.started_at);
                let rebuilt = self.ledger_tokens(tenant, from, to).await?;
                tracing::info!(tenant = %tenant, month, rebuilt, "token counter rebuilt from the ledger");
                Ok(self
                    .run_admit(&keys, rate, mode, Some(tokens), rebuilt)
                    .await)
            }
            other => Ok(other),
        }
    }

    /// Admits a run: rate limits, runs in progress and the month's tokens, all in one atomic
    /// step; on success `tokens.amount` is reserved for the run until [`Self::settle`].
    pub async fn admit(
        &self,
        rate: &RateRequest,
        tokens: &TokenRequest,
    ) -> Result<Admission, Error> {
        if !self.inner.config.enforce {
            return Ok(Admission::Admitted {
                rate: Self::unenforced(rate),
                reserved: false,
            });
        }
        let answer = match self
            .admit_with_rebuild(rate.tenant, Some(rate), 1, tokens)
            .await?
        {
            Ok(answer) => answer,
            Err(err) => {
                let outcome = self.local_rate(rate);
                if outcome.refused_by.is_some() {
                    return Ok(Admission::RateLimited(outcome));
                }
                if self.inner.config.fail_open {
                    tracing::warn!(error = %err, "token quota: Redis unavailable, admitting without a reservation (fail open)");
                    return Ok(Admission::Admitted {
                        rate: outcome,
                        reserved: false,
                    });
                }
                return Err(unavailable(err));
            }
        };
        let outcome = Self::outcome(&answer, true);
        Ok(match answer.status {
            0 => Admission::Admitted {
                rate: outcome,
                reserved: true,
            },
            1 | 2 => Admission::RateLimited(outcome),
            3 => Admission::TokensExceeded {
                rate: outcome.window,
                limit: tokens.limit,
                used: answer.used,
                reserved: answer.reserved,
            },
            4 => Admission::TooManyRuns {
                rate: outcome.window,
                limit: tokens.max_concurrent,
            },
            other => {
                return Err(Error::internal(format!(
                    "quota script answered an unknown status {other}"
                )));
            }
        })
    }

    /// Reserves more tokens for a run in progress (its next model call). `Ok(false)`: the
    /// month has no room for them.
    pub async fn extend(&self, tenant: TenantId, tokens: &TokenRequest) -> Result<bool, Error> {
        if !self.inner.config.enforce {
            return Ok(true);
        }
        match self.admit_with_rebuild(tenant, None, 2, tokens).await? {
            Ok(answer) => Ok(answer.status == 0),
            Err(_) if self.inner.config.fail_open => Ok(true),
            Err(err) => Err(unavailable(err)),
        }
    }

    /// Releases a run's reservation and counts what it used in the month it started.
    pub async fn settle(
        &self,
        tenant: TenantId,
        run: RunId,
        started_at: DateTime<Utc>,
        used: u64,
    ) -> Result<(), Error> {
        self.settle_with(&self.inner.settle, tenant, run, started_at, used)
            .await
            .map(drop)
    }

    /// Settles a run whose process died (its run row was claimed by the orphan sweep): releases
    /// its reservation and counts `used` in the month it started — but only if the reservation
    /// is still held, so a run that was already settled is never counted twice. Returns whether
    /// a reservation was held.
    pub async fn settle_held(
        &self,
        tenant: TenantId,
        run: RunId,
        started_at: DateTime<Utc>,
        used: u64,
    ) -> Result<bool, Error> {
        self.settle_with(&self.inner.settle_held, tenant, run, started_at, used)
            .await
            .map(|settled| settled != 0)
    }

    /// Calls one of the settle scripts (same keys, same arguments) and returns its answer.
    async fn settle_with(
        &self,
        script: &Script,
        tenant: TenantId,
        run: RunId,
        started_at: DateTime<Utc>,
        used: u64,
    ) -> Result<i64, Error> {
        if !self.inner.config.enforce {
            return Ok(0);
        }
        let keys = self.keys(tenant, None, &period::month_key(started_at));
        let used = i64::try_from(used).unwrap_or(i64::MAX);
        self.connected().await.map_err(unavailable)?;
        script
            .evalsha_with_reload(
                &self.inner.client,
                keys.run_keys(),
                vec![fred::types::Value::from(run.to_string()), used.into()],
            )
            .await
            .map_err(unavailable)
    }

    /// The tenant's tokens in the month of `at`: from Redis (rebuilding a lost counter from
    /// the ledger), or — when Redis is unavailable — the ledger alone, with nothing reserved.
    pub async fn token_status(
        &self,
        tenant: TenantId,
        at: DateTime<Utc>,
    ) -> Result<TokenStatus, Error> {
        let keys = self.keys(tenant, None, &period::month_key(at));
        let answer: Result<Vec<i64>, fred::error::Error> = match self.connected().await {
            Err(err) => Err(err),
            Ok(()) => {
                self.inner
                    .status
                    .evalsha_with_reload(
                        &self.inner.client,
                        keys.run_keys(),
                        Vec::<fred::types::Value>::new(),
                    )
                    .await
            }
        };
        let (from, to) = period::month_bounds(at);
        match answer {
            Ok(answer) => {
                let get = |i: usize| answer.get(i).copied().unwrap_or(0);
                let used = match get(0) {
                    -1 => self.ledger_tokens(tenant, from, to).await?,
                    used => used,
                };
                Ok(TokenStatus {
                    used,
                    reserved: get(1),
                    active_runs: get(2),
                })
            }
            Err(_) => Ok(TokenStatus {
                used: self.ledger_tokens(tenant, from, to).await?,
                reserved: 0,
                active_runs: 0,
            }),
        }
    }

    /// Is the shared store answering? (For the metrics of issue-free operation.)
    pub fn is_connected(&self) -> bool {
        self.inner.client.is_connected()
    }
}
