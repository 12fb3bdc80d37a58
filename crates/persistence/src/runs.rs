//! The `runs` table.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Integer, Timestamptz};
use paas_core::{AgentId, ApiKeyId, RunId, SessionId, TenantId, UserId};
use paas_models::{Run, RunSource, RunStatus, RunUsage};
use uuid::Uuid;

use crate::error::{DbError, parse_stored};
use crate::schema::runs;

#[derive(Queryable, Selectable)]
#[diesel(table_name = runs, check_for_backend(diesel::pg::Pg))]
struct RunRow {
    id: Uuid,
    tenant_id: Uuid,
    session_id: Option<Uuid>,
    user_id: Uuid,
    api_key_id: Option<Uuid>,
    agent_id: Uuid,
    source: String,
    status: String,
    provider: String,
    model: String,
    steps: i32,
    prompt_tokens: i32,
    completion_tokens: i32,
    usage_estimated: bool,
    error_code: Option<String>,
    error_message: Option<String>,
    limit_reason: Option<String>,
    started_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
}

impl TryFrom<RunRow> for Run {
    type Error = DbError;

    fn try_from(row: RunRow) -> Result<Self, DbError> {
        let prompt = u32::try_from(row.prompt_tokens).unwrap_or(0);
        let completion = u32::try_from(row.completion_tokens).unwrap_or(0);
        Ok(Run {
            id: RunId::from_uuid(row.id),
            tenant_id: TenantId::from_uuid(row.tenant_id),
            session_id: row.session_id.map(SessionId::from_uuid),
            user_id: UserId::from_uuid(row.user_id),
            api_key_id: row.api_key_id.map(ApiKeyId::from_uuid),
            agent_id: AgentId::from_uuid(row.agent_id),
            source: parse_stored::<RunSource>("runs.source", &row.source)?,
            status: parse_stored::<RunStatus>("runs.status", &row.status)?,
            provider: row.provider,
            model: row.model,
            steps: u32::try_from(row.steps).unwrap_or(0),
            usage: RunUsage {
                prompt_tokens: prompt,
                completion_tokens: completion,
                total_tokens: prompt.saturating_add(completion),
                estimated: row.usage_estimated,
            },
            error_code: row.error_code,
            error_message: row.error_message,
            limit_reason: row.limit_reason,
            started_at: row.started_at,
            finished_at: row.finished_at,
        })
    }
}

/// A run to record as started.
#[derive(Clone, Debug)]
pub struct NewRun {
    pub id: RunId,
    pub tenant_id: TenantId,
    pub session_id: Option<SessionId>,
    pub user_id: UserId,
    pub api_key_id: Option<ApiKeyId>,
    pub agent_id: AgentId,
    pub source: RunSource,
    pub provider: String,
    pub model: String,
    pub started_at: DateTime<Utc>,
}

pub fn insert(conn: &mut PgConnection, new: &NewRun) -> Result<(), DbError> {
    diesel::insert_into(runs::table)
        .values((
            runs::id.eq(new.id.into_uuid()),
            runs::tenant_id.eq(new.tenant_id.into_uuid()),
            runs::session_id.eq(new.session_id.map(SessionId::into_uuid)),
            runs::user_id.eq(new.user_id.into_uuid()),
            runs::api_key_id.eq(new.api_key_id.map(ApiKeyId::into_uuid)),
            runs::agent_id.eq(new.agent_id.into_uuid()),
            runs::source.eq(new.source.as_str()),
            runs::status.eq(RunStatus::Running.as_str()),
            runs::provider.eq(&new.provider),
            runs::model.eq(&new.model),
            runs::started_at.eq(new.started_at),
        ))
        .execute(conn)?;
    Ok(())
}

/// How a run ended.
#[derive(Clone, Debug)]
pub struct RunOutcome {
    pub status: RunStatus,
    pub steps: u32,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub usage_estimated: bool,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub limit_reason: Option<String>,
    pub finished_at: DateTime<Utc>,
}

/// Records the end of a run that is still running (a run is finished once, never twice).
/// Returns whether it was still running.
pub fn finish(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: RunId,
    outcome: &RunOutcome,
) -> Result<bool, DbError> {
    let clip =
        |s: &Option<String>, n: usize| s.as_ref().map(|s| s.chars().take(n).collect::<String>());
    let updated = diesel::update(
        runs::table
            .filter(runs::tenant_id.eq(tenant.into_uuid()))
            .filter(runs::id.eq(id.into_uuid()))
            .filter(runs::status.eq(RunStatus::Running.as_str())),
    )
    .set((
        runs::status.eq(outcome.status.as_str()),
        runs::steps.eq(i32::try_from(outcome.steps).unwrap_or(i32::MAX)),
        runs::prompt_tokens.eq(i32::try_from(outcome.prompt_tokens).unwrap_or(i32::MAX)),
        runs::completion_tokens.eq(i32::try_from(outcome.completion_tokens).unwrap_or(i32::MAX)),
        runs::usage_estimated.eq(outcome.usage_estimated),
        runs::error_code.eq(clip(&outcome.error_code, 64)),
        runs::error_message.eq(clip(&outcome.error_message, 1000)),
        runs::limit_reason.eq(clip(&outcome.limit_reason, 32)),
        runs::finished_at.eq(outcome.finished_at),
    ))
    .execute(conn)?;
    Ok(updated > 0)
}

pub fn get(conn: &mut PgConnection, tenant: TenantId, id: RunId) -> Result<Option<Run>, DbError> {
    runs::table
        .filter(runs::tenant_id.eq(tenant.into_uuid()))
        .filter(runs::id.eq(id.into_uuid()))
        .select(RunRow::as_select())
        .first(conn)
        .optional()?
        .map(Run::try_from)
        .transpose()
}

#[derive(QueryableByName)]
struct Failed {
    #[diesel(sql_type = Integer)]
    n: i32,
}

/// Marks every run left `running` since before `before` as failed (the process that owned it
/// died), across tenants, through the `paas_fail_orphaned_runs` security-definer function.
pub fn fail_orphaned(conn: &mut PgConnection, before: DateTime<Utc>) -> Result<u32, DbError> {
    let failed = diesel::sql_query("SELECT paas_fail_orphaned_runs($1) AS n")
        .bind::<Timestamptz, _>(before)
        .get_result::<Failed>(conn)?;
    Ok(u32::try_from(failed.n).unwrap_or(0))
}
