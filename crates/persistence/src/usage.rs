//! The usage ledger (`usage_records`): one row per finished run.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use paas_core::{TenantId, UserId};
use paas_models::UsageRecord;

use crate::error::DbError;
use crate::schema::usage_records;

/// Writes ledger rows (all of one tenant). A row already written (same run) is left alone, so a
/// retried batch never counts a run twice.
pub fn insert(
    conn: &mut PgConnection,
    tenant: TenantId,
    records: &[UsageRecord],
) -> Result<usize, DbError> {
    let rows: Vec<_> = records
        .iter()
        .filter(|r| r.tenant_id == tenant)
        .map(|r| {
            (
                usage_records::run_id.eq(r.run_id.into_uuid()),
                usage_records::tenant_id.eq(r.tenant_id.into_uuid()),
                usage_records::user_id.eq(r.user_id.into_uuid()),
                usage_records::api_key_id.eq(r.api_key_id.map(|k| k.into_uuid())),
                usage_records::agent_id.eq(r.agent_id.into_uuid()),
                usage_records::source.eq(r.source.as_str()),
                usage_records::provider.eq(r.provider.as_str()),
                usage_records::model.eq(r.model.as_str()),
                usage_records::status.eq(r.status.as_str()),
                usage_records::prompt_tokens.eq(r.prompt_tokens),
                usage_records::completion_tokens.eq(r.completion_tokens),
                usage_records::usage_estimated.eq(r.usage_estimated),
                usage_records::duration_ms.eq(r.duration_ms),
                usage_records::started_at.eq(r.started_at),
                usage_records::finished_at.eq(r.finished_at),
            )
        })
        .collect();
    if rows.is_empty() {
        return Ok(0);
    }
    Ok(diesel::insert_into(usage_records::table)
        .values(&rows)
        .on_conflict(usage_records::run_id)
        .do_nothing()
        .execute(conn)?)
}

#[derive(QueryableByName)]
struct Total {
    #[diesel(sql_type = BigInt)]
    tokens: i64,
}

/// Tokens (prompt + completion) of the runs that started in `[from, to)`.
pub fn tokens_between(
    conn: &mut PgConnection,
    tenant: TenantId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<i64, DbError> {
    let total = diesel::sql_query(
        "SELECT coalesce(sum(prompt_tokens::bigint + completion_tokens), 0)::bigint AS tokens \
         FROM usage_records WHERE tenant_id = $1 AND started_at >= $2 AND started_at < $3",
    )
    .bind::<SqlUuid, _>(tenant.into_uuid())
    .bind::<Timestamptz, _>(from)
    .bind::<Timestamptz, _>(to)
    .get_result::<Total>(conn)?;
    Ok(total.tokens)
}

/// How a usage report groups runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupBy {
    Day,
    Agent,
    Model,
    User,
    ApiKey,
}

impl GroupBy {
    /// (key expression, label expression, join) — fixed SQL per variant, never from input.
    fn sql(self) -> (&'static str, &'static str, &'static str) {
        match self {
            GroupBy::Day => (
                "to_char(r.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
                "NULL::text",
                "",
            ),
            GroupBy::Agent => (
                "r.agent_id::text",
                "a.name::text",
                "LEFT JOIN agents a ON a.tenant_id = r.tenant_id AND a.id = r.agent_id",
            ),
            GroupBy::Model => ("r.model::text", "r.provider::text", ""),
            GroupBy::User => (
                "r.user_id::text",
                "u.email::text",
                "LEFT JOIN users u ON u.tenant_id = r.tenant_id AND u.id = r.user_id",
            ),
            GroupBy::ApiKey => (
                "coalesce(r.api_key_id::text, 'none')",
                "k.name::text",
                "LEFT JOIN api_keys k ON k.tenant_id = r.tenant_id AND k.id = r.api_key_id",
            ),
        }
    }
}

/// One group of a usage report.
#[derive(Debug, QueryableByName, PartialEq, Eq)]
pub struct UsageGroup {
    #[diesel(sql_type = Text)]
    pub key: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub label: Option<String>,
    #[diesel(sql_type = BigInt)]
    pub runs: i64,
    #[diesel(sql_type = BigInt)]
    pub prompt_tokens: i64,
    #[diesel(sql_type = BigInt)]
    pub completion_tokens: i64,
    #[diesel(sql_type = Bool)]
    pub estimated: bool,
}

/// Usage of the runs that started in `[from, to)`, grouped, optionally of one user only.
pub fn report(
    conn: &mut PgConnection,
    tenant: TenantId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    group_by: GroupBy,
    user: Option<UserId>,
) -> Result<Vec<UsageGroup>, DbError> {
    let (key, label, join) = group_by.sql();
    let sql = format!(
        "SELECT {key} AS key, {label} AS label, count(*)::bigint AS runs, \
         coalesce(sum(r.prompt_tokens), 0)::bigint AS prompt_tokens, \
         coalesce(sum(r.completion_tokens), 0)::bigint AS completion_tokens, \
         bool_or(r.usage_estimated) AS estimated \
         FROM usage_records r {join} \
         WHERE r.tenant_id = $1 AND r.started_at >= $2 AND r.started_at < $3 \
           AND ($4::uuid IS NULL OR r.user_id = $4) \
         GROUP BY 1, 2 ORDER BY 1 LIMIT 10000"
    );
    Ok(diesel::sql_query(sql)
        .bind::<SqlUuid, _>(tenant.into_uuid())
        .bind::<Timestamptz, _>(from)
        .bind::<Timestamptz, _>(to)
        .bind::<Nullable<SqlUuid>, _>(user.map(|u| u.into_uuid()))
        .load::<UsageGroup>(conn)?)
}
