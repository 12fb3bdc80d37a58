//! What a tenant may use and has used: `GET /tenant/quota` and `GET /usage`.

use chrono::{DateTime, NaiveDate, Utc};
use paas_core::{Credential, Error, Principal, Role, Scope, TenantId};
use paas_models::TenantPlan;
use paas_persistence::usage::GroupBy;
use paas_persistence::{agents, quotas, usage, users};
use paas_quota::period;

use crate::dto::{
    CountUsage, QuotaStatus, QuotaUsage, TokenUsage, UsageReport, UsageRow, UsageTotals,
    WindowUsage,
};
use crate::state::AppState;

/// Longest span one usage report covers.
pub const MAX_REPORT_DAYS: i64 = 366;

/// The tenant's plan, limits and usage now. `operator` reads across tenants (the operator API
/// and CLI); otherwise the read is scoped to the tenant like every other.
pub async fn quota_status(
    state: &AppState,
    tenant: TenantId,
    operator: bool,
) -> Result<QuotaStatus, Error> {
    let now = state.clock.now();
    let (today, tomorrow) = period::day_bounds(now);
    let read = move |conn: &mut paas_persistence::PgConnection| {
        let plan = quotas::plan(conn, tenant)?;
        let users = users::count_active(conn, tenant)?;
        let agents = agents::count(conn, tenant)?;
        let sessions = quotas::sessions_on(conn, tenant, today)?;
        Ok((plan, users, agents, sessions))
    };
    let (plan, users, agents, sessions): (TenantPlan, i64, i64, i64) = if operator {
        state.db.operator_tx(read).await?
    } else {
        state.db.tenant_tx(tenant, read).await?
    };
    let tokens = state.quotas.token_status(tenant, now).await?;
    let limits = plan.limits();
    let (_, month_end) = period::month_bounds(now);
    Ok(QuotaStatus {
        tenant_id: tenant,
        plan: plan.plan,
        limits,
        overrides: plan.overrides,
        usage: QuotaUsage {
            users: CountUsage {
                used: users,
                limit: limits.max_users,
            },
            agents: CountUsage {
                used: agents,
                limit: limits.max_agents,
            },
            sessions_today: WindowUsage {
                used: sessions,
                limit: limits.max_sessions_per_day,
                resets_at: tomorrow,
            },
            tokens_this_month: TokenUsage {
                used: tokens.used,
                reserved: tokens.reserved,
                limit: limits.max_tokens_per_month,
                remaining: (limits.max_tokens_per_month - tokens.used - tokens.reserved).max(0),
                resets_at: month_end,
            },
            runs_in_progress: CountUsage {
                used: tokens.active_runs,
                limit: limits.max_concurrent_runs,
            },
        },
    })
}

fn parse_group(value: Option<&str>) -> Result<(GroupBy, &'static str), Error> {
    Ok(match value.unwrap_or("day") {
        "day" => (GroupBy::Day, "day"),
        "agent" => (GroupBy::Agent, "agent"),
        "model" => (GroupBy::Model, "model"),
        "user" => (GroupBy::User, "user"),
        "api_key" => (GroupBy::ApiKey, "api_key"),
        _ => {
            return Err(Error::validation(
                "group_by",
                "group_by must be day, agent, model, user or api_key",
            ));
        }
    })
}

/// An RFC 3339 time, or a `YYYY-MM-DD` date meaning its UTC midnight.
fn parse_time(field: &str, value: &str) -> Result<DateTime<Utc>, Error> {
    if let Ok(at) = DateTime::parse_from_rfc3339(value) {
        return Ok(at.with_timezone(&Utc));
    }
    if let Ok(day) = NaiveDate::parse_from_str(value, "%Y-%m-%d")
        && let Some(midnight) = day.and_hms_opt(0, 0, 0)
    {
        return Ok(midnight.and_utc());
    }
    Err(Error::validation(
        field,
        format!("{field} must be an RFC 3339 time (2026-11-01T00:00:00Z) or a date (2026-11-01)"),
    ))
}

/// May the caller see the whole tenant's usage, or only their own?
fn sees_tenant(principal: &Principal) -> bool {
    if principal.role != Role::Admin {
        return false;
    }
    match principal.credential {
        Credential::Session { .. } => true,
        // An admin's key sees the tenant's usage only with the `admin` scope.
        Credential::ApiKey { scopes, .. } => scopes.contains(Scope::Admin),
    }
}

/// Usage over `[from, to)`, grouped. Admins see the tenant's; everyone else their own.
pub async fn report(
    state: &AppState,
    principal: &Principal,
    from: Option<&str>,
    to: Option<&str>,
    group_by: Option<&str>,
) -> Result<UsageReport, Error> {
    let (group, group_name) = parse_group(group_by)?;
    let to = match to {
        Some(value) => parse_time("to", value)?,
        None => state.clock.now(),
    };
    let from = match from {
        Some(value) => parse_time("from", value)?,
        None => to - chrono::Duration::days(30),
    };
    if from >= to {
        return Err(Error::validation("from", "from must be before to"));
    }
    if to - from > chrono::Duration::days(MAX_REPORT_DAYS) {
        return Err(Error::validation(
            "from",
            format!("a report covers at most {MAX_REPORT_DAYS} days; narrow from and to"),
        ));
    }
    let whole_tenant = sees_tenant(principal);
    let only = (!whole_tenant).then_some(principal.user_id);
    let tenant = principal.tenant_id;
    let groups = state
        .db
        .tenant_tx(tenant, move |conn| {
            usage::report(conn, tenant, from, to, group, only)
        })
        .await?;
    let mut totals = UsageTotals {
        runs: 0,
        prompt_tokens: 0,
        completion_tokens: 0,
        total_tokens: 0,
    };
    let groups = groups
        .into_iter()
        .map(|g| {
            totals.runs += g.runs;
            totals.prompt_tokens += g.prompt_tokens;
            totals.completion_tokens += g.completion_tokens;
            UsageRow {
                total_tokens: g.prompt_tokens + g.completion_tokens,
                key: g.key,
                label: g.label,
                runs: g.runs,
                prompt_tokens: g.prompt_tokens,
                completion_tokens: g.completion_tokens,
                estimated: g.estimated,
            }
        })
        .collect();
    totals.total_tokens = totals.prompt_tokens + totals.completion_tokens;
    Ok(UsageReport {
        from,
        to,
        group_by: group_name.to_owned(),
        scope: if whole_tenant { "tenant" } else { "self" }.to_owned(),
        totals,
        groups,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_or_dates() {
        assert_eq!(
            parse_time("from", "2026-11-01").unwrap().to_rfc3339(),
            "2026-11-01T00:00:00+00:00"
        );
        assert_eq!(
            parse_time("from", "2026-11-01T10:00:00+02:00")
                .unwrap()
                .to_rfc3339(),
            "2026-11-01T08:00:00+00:00"
        );
        let err = parse_time("from", "yesterday").unwrap_err();
        assert_eq!(err.code(), "invalid_from");
        assert!(parse_group(Some("tenant")).is_err());
    }
}
