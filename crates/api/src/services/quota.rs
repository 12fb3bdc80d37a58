//! Quota decisions as the API answers them: rate limits, run admission (token reservation and
//! runs in progress), the count limits checked at creation, and the errors each one gives.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use paas_core::{Credential, Error, Principal, RunId, TenantId};
use paas_models::{Limits, TenantPlan};
use paas_quota::{Admission, Quotas, RateOutcome, RateRequest, RateScope, TokenRequest, period};

use crate::state::AppState;

/// How to raise a limit, said in every refusal.
const RAISE_HINT: &str =
    "a platform operator can raise it (a larger plan or a quota override for this tenant)";

/// The rate limits that apply to `principal`.
pub fn rate_request(principal: &Principal, limits: &Limits) -> RateRequest {
    RateRequest {
        tenant: principal.tenant_id,
        tenant_per_minute: limits.requests_per_minute,
        key: match principal.credential {
            Credential::ApiKey { id, .. } => Some((id, limits.key_requests_per_minute)),
            Credential::Session { .. } => None,
        },
    }
}

fn secs_ceil(duration: Duration) -> u64 {
    duration.as_millis().div_ceil(1000).max(1) as u64
}

/// The 429 for a request a rate limit refused.
pub fn rate_limited(outcome: &RateOutcome) -> Error {
    let window = outcome.window;
    let retry = secs_ceil(window.retry_after.unwrap_or(Duration::from_secs(1)));
    let whose = match outcome.refused_by {
        Some(RateScope::ApiKey) => "this API key's",
        _ => "this tenant's",
    };
    Error::rate_limited(
        "rate_limited",
        format!(
            "{whose} rate limit of {} requests per minute is reached; retry in {retry} s, or {RAISE_HINT}",
            window.limit
        ),
        retry,
    )
}

/// Counts a request against the caller's rate limits (the extractor's check for every route
/// but the two that start runs, which count it in their admission).
pub async fn check_rate(
    state: &AppState,
    principal: &Principal,
    plan: &TenantPlan,
) -> Result<RateOutcome, (Error, RateOutcome)> {
    let outcome = state
        .quotas
        .check_rate(&rate_request(principal, &plan.limits()))
        .await;
    if outcome.refused_by.is_some() {
        metrics::counter!("quota_rejections_total", "reason" => "rate_limited").increment(1);
        return Err((rate_limited(&outcome), outcome));
    }
    Ok(outcome)
}

/// What a started run is billed against.
#[derive(Clone, Debug)]
pub struct RunQuota {
    pub started_at: DateTime<Utc>,
    /// Tokens reserved when the run was admitted.
    pub reserved: u64,
    /// False when Redis was down and quotas fail open: nothing to release.
    pub held: bool,
    pub limit: i64,
}

/// Admits a run: the caller's rate limits, the tenant's runs in progress and its month's
/// tokens in one atomic step, reserving `amount` tokens. The rate-limit window (for the
/// response headers) is written to `rate` whatever the answer.
#[tracing::instrument(name = "quota.admit", skip_all, fields(tenant_id = %principal.tenant_id, tokens = amount))]
pub async fn admit_run(
    state: &AppState,
    principal: &Principal,
    plan: &TenantPlan,
    run: RunId,
    amount: u64,
    rate: &mut Option<RateOutcome>,
    agent_type: &'static str,
) -> Result<RunQuota, Error> {
    let admitted = admit(state, principal, plan, run, amount, rate).await;
    if admitted.is_err() {
        metrics::counter!("chat_requests_total", "tenant_id" => principal.tenant_id.to_string(), "agent_type" => agent_type, "status" => "rejected")
            .increment(1);
    }
    admitted
}

async fn admit(
    state: &AppState,
    principal: &Principal,
    plan: &TenantPlan,
    run: RunId,
    amount: u64,
    rate: &mut Option<RateOutcome>,
) -> Result<RunQuota, Error> {
    let limits = plan.limits();
    let started_at = state.clock.now();
    let tokens = TokenRequest {
        run,
        amount,
        limit: limits.max_tokens_per_month,
        started_at,
        max_concurrent: limits.max_concurrent_runs,
        ttl: reservation_ttl(),
    };
    let admission = state
        .quotas
        .admit(&rate_request(principal, &limits), &tokens)
        .await;
    let admission = match admission {
        Ok(admission) => admission,
        Err(err) => {
            metrics::counter!("quota_rejections_total", "reason" => "quota_unavailable")
                .increment(1);
            return Err(err);
        }
    };
    let rejected = |reason: &'static str| {
        metrics::counter!("quota_rejections_total", "reason" => reason).increment(1);
    };
    match admission {
        Admission::Admitted {
            rate: outcome,
            reserved,
        } => {
            *rate = Some(outcome);
            Ok(RunQuota {
                started_at,
                reserved: amount,
                held: reserved,
                limit: limits.max_tokens_per_month,
            })
        }
        Admission::RateLimited(outcome) => {
            *rate = Some(outcome);
            rejected("rate_limited");
            Err(rate_limited(&outcome))
        }
        Admission::TokensExceeded {
            rate: window,
            limit,
            used,
            reserved,
        } => {
            *rate = Some(RateOutcome {
                window,
                refused_by: None,
                shared: true,
            });
            rejected("token_quota_exceeded");
            Err(tokens_exceeded(started_at, limit, used, reserved, amount))
        }
        Admission::TooManyRuns {
            rate: window,
            limit,
        } => {
            *rate = Some(RateOutcome {
                window,
                refused_by: None,
                shared: true,
            });
            rejected("too_many_concurrent_runs");
            Err(Error::rate_limited(
                "too_many_concurrent_runs",
                format!(
                    "this tenant already has its limit of {limit} runs in progress; retry when one ends, or {RAISE_HINT}"
                ),
                1,
            ))
        }
    }
}

/// A run's reservation is released after this even if it is never settled (its process died):
/// longer than the longest run.
fn reservation_ttl() -> Duration {
    Duration::from_secs(u64::from(paas_models::agent::AGENT_MAX_TIMEOUT_SECONDS) + 120)
}

fn tokens_exceeded(now: DateTime<Utc>, limit: i64, used: i64, reserved: i64, asked: u64) -> Error {
    let (_, resets) = period::month_bounds(now);
    let asked = i64::try_from(asked).unwrap_or(i64::MAX);
    // Spent for the month: nothing frees up before it resets. Held by runs in progress: their
    // settlement gives back what they did not use, soon.
    let retry = if used.saturating_add(asked) > limit {
        u64::try_from((resets - now).num_seconds())
            .unwrap_or(1)
            .max(1)
    } else {
        5
    };
    Error::rate_limited(
        "token_quota_exceeded",
        format!(
            "this tenant's monthly token quota (max_tokens_per_month = {limit}) has no room for this request: \
             {used} used and {reserved} reserved by runs in progress, and this request may use up to {asked}; \
             it resets at {} — ask for fewer max_tokens, or {RAISE_HINT}",
            resets.to_rfc3339()
        ),
        retry,
    )
}

/// Gives a run's reservation back (it never started, or it has ended and used `used`).
pub async fn settle(
    quotas: &Quotas,
    tenant: TenantId,
    run: RunId,
    quota: &RunQuota,
    used: u64,
) -> Result<(), Error> {
    let mut attempt = 0;
    loop {
        match quotas.settle(tenant, run, quota.started_at, used).await {
            Ok(()) => return Ok(()),
            Err(err) if attempt < 3 => {
                attempt += 1;
                tracing::debug!(run = %run, error = %err.cause_chain(), "settling a run: retrying");
                tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
            }
            Err(err) => return Err(err),
        }
    }
}

/// Asks the tenant's quota for more tokens on behalf of a run in progress.
#[derive(Debug)]
pub struct RunBudget {
    pub quotas: Quotas,
    pub tenant: TenantId,
    pub run: RunId,
    pub quota: RunQuota,
}

impl paas_agents::runtime::TokenBudget for RunBudget {
    fn reserve(&self, tokens: u64) -> futures_util::future::BoxFuture<'_, bool> {
        Box::pin(async move {
            let request = TokenRequest {
                run: self.run,
                amount: tokens,
                limit: self.quota.limit,
                started_at: self.quota.started_at,
                max_concurrent: i64::MAX,
                ttl: reservation_ttl(),
            };
            match self.quotas.extend(self.tenant, &request).await {
                Ok(granted) => granted,
                Err(err) => {
                    tracing::warn!(run = %self.run, error = %err.cause_chain(), "cannot reserve more tokens for a run");
                    false
                }
            }
        })
    }
}

/// The 403 for a count limit (users, agents, sessions per day).
pub fn plan_limit(what: &str, field: &str, limit: i64) -> Error {
    Error::forbidden(
        "plan_limit_reached",
        format!("this tenant has reached its limit of {limit} {what} ({field}); {RAISE_HINT}"),
    )
}

/// Counts a new chat session against the tenant's sessions per (UTC) day, or refuses it. For
/// use inside the transaction that creates the session, so a refusal leaves nothing behind.
pub fn count_new_session(
    conn: &mut paas_persistence::PgConnection,
    tenant: TenantId,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<(), paas_persistence::DbError> {
    let (day, _) = period::day_bounds(now);
    if paas_persistence::quotas::count_session(conn, tenant, day, limit)? {
        Ok(())
    } else {
        Err(plan_limit("new chat sessions per day", "max_sessions_per_day", limit).into())
    }
}

/// Refuses when `count` already reached `limit`.
pub fn ensure_below(count: i64, limit: i64, what: &str, field: &str) -> Result<(), Error> {
    if count >= limit {
        return Err(plan_limit(what, field, limit));
    }
    Ok(())
}

/// Shared handle type for the budget.
pub fn budget(state: &AppState, tenant: TenantId, run: RunId, quota: &RunQuota) -> Arc<RunBudget> {
    Arc::new(RunBudget {
        quotas: state.quotas.clone(),
        tenant,
        run,
        quota: quota.clone(),
    })
}
