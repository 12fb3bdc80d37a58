//! The `runs` table, and the leases that tell a run driven by a live process from one whose
//! process died (see migration `…_run_leases`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, Bool, Integer, Nullable, Timestamptz, Uuid as SqlUuid, Varchar};
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
    /// The process that drives the run and its first lease.
    pub lease: RunLease,
}

/// Who drives a run, and for how long its lease lasts (from the database's clock) unless
/// renewed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunLease {
    /// The driving process's instance id (random per process).
    pub owner: Uuid,
    pub duration: Duration,
}

impl RunLease {
    fn secs(&self) -> i32 {
        i32::try_from(self.duration.as_secs().max(1)).unwrap_or(i32::MAX)
    }
}

/// The columns of a run's row (`$new: &NewRun`, `$outcome: Option<&RunOutcome>`): running
/// (leased from now) without an outcome, else finished. A macro rather than a function, so that
/// each insert gets diesel's concrete column types.
macro_rules! row_values {
    ($new:expr, $outcome:expr) => {{
        let (new, outcome): (&NewRun, Option<&RunOutcome>) = ($new, $outcome);
        let lease_until = diesel::dsl::sql::<Timestamptz>("now() + make_interval(secs => ")
            .bind::<Integer, _>(new.lease.secs())
            .sql(")");
        let (status, steps, prompt, completion, estimated) = match outcome {
            Some(o) => (
                o.status,
                clamp(o.steps),
                clamp(o.prompt_tokens),
                clamp(o.completion_tokens),
                o.usage_estimated,
            ),
            None => (RunStatus::Running, 0, 0, 0, false),
        };
        (
            (
                runs::id.eq(new.id.into_uuid()),
                runs::tenant_id.eq(new.tenant_id.into_uuid()),
                runs::session_id.eq(new.session_id.map(SessionId::into_uuid)),
                runs::user_id.eq(new.user_id.into_uuid()),
                runs::api_key_id.eq(new.api_key_id.map(ApiKeyId::into_uuid)),
                runs::agent_id.eq(new.agent_id.into_uuid()),
                runs::source.eq(new.source.as_str()),
                runs::status.eq(status.as_str()),
                runs::provider.eq(new.provider.clone()),
                runs::model.eq(new.model.clone()),
                runs::started_at.eq(new.started_at),
                runs::lease_owner.eq(Some(new.lease.owner)),
                runs::lease_until.eq(lease_until.nullable()),
            ),
            (
                runs::steps.eq(steps),
                runs::prompt_tokens.eq(prompt),
                runs::completion_tokens.eq(completion),
                runs::usage_estimated.eq(estimated),
                runs::error_code.eq(outcome.and_then(|o| clip(&o.error_code, 64))),
                runs::error_message.eq(outcome.and_then(|o| clip(&o.error_message, 1000))),
                runs::limit_reason.eq(outcome.and_then(|o| clip(&o.limit_reason, 32))),
                runs::finished_at.eq(outcome.map(|o| o.finished_at)),
            ),
        )
    }};
}

/// Records a run as started, owned by `new.lease.owner` with a lease from now.
pub fn insert(conn: &mut PgConnection, new: &NewRun) -> Result<(), DbError> {
    diesel::insert_into(runs::table)
        .values(row_values!(new, None))
        .execute(conn)?;
    Ok(())
}

/// Records runs of one tenant in one statement, each either still running (`outcome` none:
/// owned by `lease.owner` with a lease from now) or already finished — the write-behind of
/// OpenAI-compatible runs, whose rows are written after they start, in batches. A row already
/// there (a retried batch) is left alone.
pub fn insert_many(
    conn: &mut PgConnection,
    tenant: TenantId,
    rows: &[(NewRun, Option<RunOutcome>)],
) -> Result<usize, DbError> {
    let values: Vec<_> = rows
        .iter()
        .filter(|(new, _)| new.tenant_id == tenant)
        .map(|(new, outcome)| row_values!(new, outcome.as_ref()))
        .collect();
    if values.is_empty() {
        return Ok(0);
    }
    Ok(diesel::insert_into(runs::table)
        .values(values)
        .on_conflict(runs::id)
        .do_nothing()
        .execute(conn)?)
}

/// At most `n` characters of a stored text.
fn clip(s: &Option<String>, n: usize) -> Option<String> {
    s.as_ref().map(|s| s.chars().take(n).collect())
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

/// What a run in progress has done so far, written with its lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunProgress {
    pub id: RunId,
    pub steps: u32,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub usage_estimated: bool,
}

#[derive(QueryableByName)]
struct Renewed {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
}

fn clamp(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Renews, in one statement across tenants, the leases of the runs `lease.owner` drives and
/// records their progress (through the `paas_renew_run_leases` security-definer function).
/// Returns the runs renewed: one missing was finished, or claimed by another replica after its
/// lease expired.
pub fn renew_leases(
    conn: &mut PgConnection,
    lease: RunLease,
    runs: &[RunProgress],
) -> Result<Vec<RunId>, DbError> {
    if runs.is_empty() {
        return Ok(Vec::new());
    }
    let renewed =
        diesel::sql_query("SELECT paas_renew_run_leases($1, $2, $3, $4, $5, $6, $7) AS id")
            .bind::<SqlUuid, _>(lease.owner)
            .bind::<Integer, _>(lease.secs())
            .bind::<Array<SqlUuid>, _>(runs.iter().map(|r| r.id.into_uuid()).collect::<Vec<_>>())
            .bind::<Array<Integer>, _>(runs.iter().map(|r| clamp(r.steps)).collect::<Vec<_>>())
            .bind::<Array<Integer>, _>(
                runs.iter()
                    .map(|r| clamp(r.prompt_tokens))
                    .collect::<Vec<_>>(),
            )
            .bind::<Array<Integer>, _>(
                runs.iter()
                    .map(|r| clamp(r.completion_tokens))
                    .collect::<Vec<_>>(),
            )
            .bind::<Array<Bool>, _>(runs.iter().map(|r| r.usage_estimated).collect::<Vec<_>>())
            .load::<Renewed>(conn)?;
    Ok(renewed
        .into_iter()
        .map(|r| RunId::from_uuid(r.id))
        .collect())
}

#[derive(QueryableByName)]
struct ClaimedRow {
    #[diesel(sql_type = SqlUuid)]
    tenant_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    session_id: Option<Uuid>,
    #[diesel(sql_type = SqlUuid)]
    user_id: Uuid,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    api_key_id: Option<Uuid>,
    #[diesel(sql_type = SqlUuid)]
    agent_id: Uuid,
    #[diesel(sql_type = Varchar)]
    source: String,
    #[diesel(sql_type = Varchar)]
    provider: String,
    #[diesel(sql_type = Varchar)]
    model: String,
    #[diesel(sql_type = Integer)]
    steps: i32,
    #[diesel(sql_type = Integer)]
    prompt_tokens: i32,
    #[diesel(sql_type = Integer)]
    completion_tokens: i32,
    #[diesel(sql_type = Bool)]
    usage_estimated: bool,
    #[diesel(sql_type = Timestamptz)]
    started_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    finished_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    lease_owner: Option<Uuid>,
}

/// A run claimed from a process that died: now `failed` (`interrupted`), with its usage-ledger
/// row written. Its steps and tokens are what its owner's last lease renewal recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimedRun {
    pub tenant_id: TenantId,
    pub id: RunId,
    pub session_id: Option<SessionId>,
    pub user_id: UserId,
    pub api_key_id: Option<ApiKeyId>,
    pub agent_id: AgentId,
    pub source: RunSource,
    pub provider: String,
    pub model: String,
    pub steps: u32,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub usage_estimated: bool,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// The process that drove it (none: a run started by a version without leases).
    pub lease_owner: Option<Uuid>,
}

impl ClaimedRun {
    /// Tokens it is known to have used.
    pub fn tokens(&self) -> u64 {
        u64::from(self.prompt_tokens) + u64::from(self.completion_tokens)
    }
}

impl TryFrom<ClaimedRow> for ClaimedRun {
    type Error = DbError;

    fn try_from(row: ClaimedRow) -> Result<Self, DbError> {
        Ok(ClaimedRun {
            tenant_id: TenantId::from_uuid(row.tenant_id),
            id: RunId::from_uuid(row.id),
            session_id: row.session_id.map(SessionId::from_uuid),
            user_id: UserId::from_uuid(row.user_id),
            api_key_id: row.api_key_id.map(ApiKeyId::from_uuid),
            agent_id: AgentId::from_uuid(row.agent_id),
            source: parse_stored::<RunSource>("runs.source", &row.source)?,
            provider: row.provider,
            model: row.model,
            steps: u32::try_from(row.steps).unwrap_or(0),
            prompt_tokens: u32::try_from(row.prompt_tokens).unwrap_or(0),
            completion_tokens: u32::try_from(row.completion_tokens).unwrap_or(0),
            usage_estimated: row.usage_estimated,
            started_at: row.started_at,
            finished_at: row.finished_at,
            lease_owner: row.lease_owner,
        })
    }
}

/// Claims up to `limit` runs orphaned by a dead process, across tenants (through the
/// `paas_claim_orphaned_runs` security-definer function): `running` with an expired lease, or —
/// rows without a lease — started more than `unleased_after` ago. Each is marked failed
/// (`interrupted`) and billed in the usage ledger in the same statement; a run is claimed once,
/// by one caller.
pub fn claim_orphaned(
    conn: &mut PgConnection,
    unleased_after: Duration,
    limit: u32,
) -> Result<Vec<ClaimedRun>, DbError> {
    diesel::sql_query("SELECT * FROM paas_claim_orphaned_runs($1, $2)")
        .bind::<Integer, _>(i32::try_from(unleased_after.as_secs()).unwrap_or(i32::MAX))
        .bind::<Integer, _>(clamp(limit))
        .load::<ClaimedRow>(conn)?
        .into_iter()
        .map(ClaimedRun::try_from)
        .collect()
}
