//! Plans, per-tenant overrides (`tenant_quotas`) and the per-day session counter
//! (`tenant_daily_usage`).

use chrono::NaiveDate;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Date, Integer, Uuid as SqlUuid};
use paas_core::TenantId;
use paas_models::{Limits, Plan, QuotaOverrides, TenantPlan};
use serde::Deserialize;

use crate::error::{DbError, parse_stored};
use crate::schema::{tenant_daily_usage, tenant_quotas, tenants};

type OverrideRow = (
    Option<i32>,
    Option<i32>,
    Option<i32>,
    Option<i64>,
    Option<i32>,
    Option<i32>,
    Option<i32>,
);

fn overrides_from(row: OverrideRow) -> QuotaOverrides {
    let (users, agents, sessions, tokens, rpm, key_rpm, concurrent) = row;
    QuotaOverrides {
        max_users: users.map(i64::from),
        max_agents: agents.map(i64::from),
        max_sessions_per_day: sessions.map(i64::from),
        max_tokens_per_month: tokens,
        requests_per_minute: rpm.map(i64::from),
        key_requests_per_minute: key_rpm.map(i64::from),
        max_concurrent_runs: concurrent.map(i64::from),
    }
}

/// The `tenant_quotas` row as `to_jsonb` renders it (what `paas_find_api_key` returns).
#[derive(Deserialize)]
struct OverridesJson {
    max_users: Option<i64>,
    max_agents: Option<i64>,
    max_sessions_per_day: Option<i64>,
    max_tokens_per_month: Option<i64>,
    requests_per_minute: Option<i64>,
    key_requests_per_minute: Option<i64>,
    max_concurrent_runs: Option<i64>,
}

/// Parses the JSON form of a `tenant_quotas` row (`NULL`: no row, no overrides).
pub(crate) fn overrides_from_json(
    value: Option<serde_json::Value>,
) -> Result<QuotaOverrides, DbError> {
    let Some(value) = value else {
        return Ok(QuotaOverrides::default());
    };
    let row: OverridesJson = serde_json::from_value(value)
        .map_err(|err| DbError::Corrupt(format!("tenant_quotas: {err}")))?;
    Ok(QuotaOverrides {
        max_users: row.max_users,
        max_agents: row.max_agents,
        max_sessions_per_day: row.max_sessions_per_day,
        max_tokens_per_month: row.max_tokens_per_month,
        requests_per_minute: row.requests_per_minute,
        key_requests_per_minute: row.key_requests_per_minute,
        max_concurrent_runs: row.max_concurrent_runs,
    })
}

fn override_columns() -> (
    tenant_quotas::max_users,
    tenant_quotas::max_agents,
    tenant_quotas::max_sessions_per_day,
    tenant_quotas::max_tokens_per_month,
    tenant_quotas::requests_per_minute,
    tenant_quotas::key_requests_per_minute,
    tenant_quotas::max_concurrent_runs,
) {
    (
        tenant_quotas::max_users,
        tenant_quotas::max_agents,
        tenant_quotas::max_sessions_per_day,
        tenant_quotas::max_tokens_per_month,
        tenant_quotas::requests_per_minute,
        tenant_quotas::key_requests_per_minute,
        tenant_quotas::max_concurrent_runs,
    )
}

/// The tenant's plan and overrides.
pub fn plan(conn: &mut PgConnection, tenant: TenantId) -> Result<TenantPlan, DbError> {
    let plan: String = tenants::table
        .find(tenant.into_uuid())
        .select(tenants::plan)
        .first(conn)?;
    let overrides = tenant_quotas::table
        .find(tenant.into_uuid())
        .select(override_columns())
        .first::<OverrideRow>(conn)
        .optional()?
        .map(overrides_from)
        .unwrap_or_default();
    Ok(TenantPlan {
        plan: parse_stored("tenants.plan", &plan)?,
        overrides,
    })
}

/// Locks the tenant's quota row until the transaction ends and returns its limits: the mutex
/// that makes "count, compare, insert" race-free for users and agents.
pub fn lock_limits(conn: &mut PgConnection, tenant: TenantId) -> Result<Limits, DbError> {
    diesel::insert_into(tenant_quotas::table)
        .values(tenant_quotas::tenant_id.eq(tenant.into_uuid()))
        .on_conflict_do_nothing()
        .execute(conn)?;
    let overrides = tenant_quotas::table
        .find(tenant.into_uuid())
        .select(override_columns())
        .for_update()
        .first::<OverrideRow>(conn)
        .map(overrides_from)?;
    let plan: String = tenants::table
        .find(tenant.into_uuid())
        .select(tenants::plan)
        .first(conn)?;
    Ok(Limits::resolve(
        parse_stored("tenants.plan", &plan)?,
        &overrides,
    ))
}

/// Replaces the tenant's overrides (every field: `None` clears one).
pub fn set_overrides(
    conn: &mut PgConnection,
    tenant: TenantId,
    overrides: &QuotaOverrides,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), DbError> {
    let narrow = |v: Option<i64>| v.and_then(|v| i32::try_from(v).ok());
    let values = (
        tenant_quotas::tenant_id.eq(tenant.into_uuid()),
        tenant_quotas::max_users.eq(narrow(overrides.max_users)),
        tenant_quotas::max_agents.eq(narrow(overrides.max_agents)),
        tenant_quotas::max_sessions_per_day.eq(narrow(overrides.max_sessions_per_day)),
        tenant_quotas::max_tokens_per_month.eq(overrides.max_tokens_per_month),
        tenant_quotas::requests_per_minute.eq(narrow(overrides.requests_per_minute)),
        tenant_quotas::key_requests_per_minute.eq(narrow(overrides.key_requests_per_minute)),
        tenant_quotas::max_concurrent_runs.eq(narrow(overrides.max_concurrent_runs)),
        tenant_quotas::updated_at.eq(now),
    );
    diesel::insert_into(tenant_quotas::table)
        .values(values)
        .on_conflict(tenant_quotas::tenant_id)
        .do_update()
        .set((
            tenant_quotas::max_users.eq(narrow(overrides.max_users)),
            tenant_quotas::max_agents.eq(narrow(overrides.max_agents)),
            tenant_quotas::max_sessions_per_day.eq(narrow(overrides.max_sessions_per_day)),
            tenant_quotas::max_tokens_per_month.eq(overrides.max_tokens_per_month),
            tenant_quotas::requests_per_minute.eq(narrow(overrides.requests_per_minute)),
            tenant_quotas::key_requests_per_minute.eq(narrow(overrides.key_requests_per_minute)),
            tenant_quotas::max_concurrent_runs.eq(narrow(overrides.max_concurrent_runs)),
            tenant_quotas::updated_at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}

/// Changes the tenant's plan.
pub fn set_plan(
    conn: &mut PgConnection,
    tenant: TenantId,
    plan: Plan,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), DbError> {
    diesel::update(tenants::table.find(tenant.into_uuid()))
        .set((tenants::plan.eq(plan.as_str()), tenants::updated_at.eq(now)))
        .execute(conn)?;
    Ok(())
}

#[derive(QueryableByName)]
struct Counted {
    #[diesel(sql_type = Integer)]
    sessions: i32,
}

/// Counts one new session for `day` if fewer than `limit` were started that day; `false` (and
/// nothing counted) when the limit is reached. One statement, so concurrent calls cannot both
/// take the last place.
pub fn count_session(
    conn: &mut PgConnection,
    tenant: TenantId,
    day: NaiveDate,
    limit: i64,
) -> Result<bool, DbError> {
    if limit <= 0 {
        return Ok(false);
    }
    let counted = diesel::sql_query(
        "INSERT INTO tenant_daily_usage (tenant_id, day, sessions) VALUES ($1, $2, 1) \
         ON CONFLICT (tenant_id, day) DO UPDATE SET sessions = tenant_daily_usage.sessions + 1 \
         WHERE tenant_daily_usage.sessions < $3 RETURNING sessions",
    )
    .bind::<SqlUuid, _>(tenant.into_uuid())
    .bind::<Date, _>(day)
    .bind::<BigInt, _>(limit)
    .get_result::<Counted>(conn)
    .optional()?;
    Ok(counted.is_some_and(|c| i64::from(c.sessions) <= limit))
}

/// Sessions started on `day`.
pub fn sessions_on(
    conn: &mut PgConnection,
    tenant: TenantId,
    day: NaiveDate,
) -> Result<i64, DbError> {
    let found = tenant_daily_usage::table
        .filter(tenant_daily_usage::tenant_id.eq(tenant.into_uuid()))
        .filter(tenant_daily_usage::day.eq(day))
        .select(tenant_daily_usage::sessions)
        .first::<i32>(conn)
        .optional()?;
    Ok(found.map_or(0, i64::from))
}
