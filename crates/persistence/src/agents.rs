//! The `agents` table. Deleting an agent marks it deleted (its sessions and runs keep pointing
//! at it); deleted agents are invisible to every query here.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use paas_core::{AgentId, ProviderId, TenantId};
use paas_models::{Agent, AgentProvider};
use uuid::Uuid;

use crate::error::{DbError, parse_stored};
use crate::schema::agents;

#[derive(Queryable, Selectable)]
#[diesel(table_name = agents, check_for_backend(diesel::pg::Pg))]
struct AgentRow {
    id: Uuid,
    tenant_id: Uuid,
    name: String,
    display_name: String,
    description: String,
    system_prompt: String,
    provider_id: Option<Uuid>,
    builtin_provider: Option<String>,
    model: String,
    temperature: Option<f32>,
    max_tokens: i32,
    tools: serde_json::Value,
    max_steps: i32,
    timeout_seconds: i32,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

fn to_u32(column: &str, value: i32) -> Result<u32, DbError> {
    u32::try_from(value).map_err(|_| DbError::Corrupt(format!("{column} = {value}")))
}

impl TryFrom<AgentRow> for Agent {
    type Error = DbError;

    fn try_from(row: AgentRow) -> Result<Self, DbError> {
        let provider = match (row.provider_id, row.builtin_provider.as_deref()) {
            (Some(id), None) => AgentProvider::Tenant(ProviderId::from_uuid(id)),
            (None, Some("mock")) => AgentProvider::Mock,
            (None, Some(kind)) => {
                AgentProvider::Platform(parse_stored("agents.builtin_provider", kind)?)
            }
            _ => {
                return Err(DbError::Corrupt(
                    "agents.provider_id/builtin_provider".into(),
                ));
            }
        };
        let tools = row
            .tools
            .as_array()
            .and_then(|items| {
                items
                    .iter()
                    .map(|t| t.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| DbError::Corrupt(format!("agents.tools = {}", row.tools)))?;
        Ok(Agent {
            id: AgentId::from_uuid(row.id),
            tenant_id: TenantId::from_uuid(row.tenant_id),
            name: row.name,
            display_name: row.display_name,
            description: row.description,
            system_prompt: row.system_prompt,
            provider_id: provider,
            model: row.model,
            temperature: row.temperature,
            max_tokens: to_u32("agents.max_tokens", row.max_tokens)?,
            tools,
            max_steps: to_u32("agents.max_steps", row.max_steps)?,
            timeout_seconds: to_u32("agents.timeout_seconds", row.timeout_seconds)?,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// The two columns that say which provider an agent uses.
fn provider_columns(provider: AgentProvider) -> (Option<Uuid>, Option<&'static str>) {
    match provider {
        AgentProvider::Mock => (None, Some("mock")),
        AgentProvider::Platform(kind) => (None, Some(kind.as_str())),
        AgentProvider::Tenant(id) => (Some(id.into_uuid()), None),
    }
}

fn i32_of(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

/// Everything an agent is made of; used to create one and, whole, to replace one.
#[derive(Clone, Debug)]
pub struct AgentFields {
    pub name: String,
    pub display_name: String,
    pub description: String,
    pub system_prompt: String,
    pub provider: AgentProvider,
    pub model: String,
    pub temperature: Option<f32>,
    pub max_tokens: u32,
    pub tools: Vec<String>,
    pub max_steps: u32,
    pub timeout_seconds: u32,
}

/// The columns an agent's fields are stored in; shared by insert and replace so the two cannot
/// disagree. `None` provider columns are written as NULL.
#[derive(Insertable, AsChangeset)]
#[diesel(table_name = agents, treat_none_as_null = true)]
struct AgentColumns<'a> {
    name: &'a str,
    display_name: &'a str,
    description: &'a str,
    system_prompt: &'a str,
    provider_id: Option<Uuid>,
    builtin_provider: Option<&'static str>,
    model: &'a str,
    temperature: Option<f32>,
    max_tokens: i32,
    tools: serde_json::Value,
    max_steps: i32,
    timeout_seconds: i32,
    updated_at: DateTime<Utc>,
}

impl AgentFields {
    fn columns(&self, now: DateTime<Utc>) -> AgentColumns<'_> {
        let (provider_id, builtin_provider) = provider_columns(self.provider);
        AgentColumns {
            name: &self.name,
            display_name: &self.display_name,
            description: &self.description,
            system_prompt: &self.system_prompt,
            provider_id,
            builtin_provider,
            model: &self.model,
            temperature: self.temperature,
            max_tokens: i32_of(self.max_tokens),
            tools: serde_json::json!(self.tools),
            max_steps: i32_of(self.max_steps),
            timeout_seconds: i32_of(self.timeout_seconds),
            updated_at: now,
        }
    }
}

/// Agents that exist (not deleted).
pub fn count(conn: &mut PgConnection, tenant: TenantId) -> Result<i64, DbError> {
    Ok(agents::table
        .filter(agents::tenant_id.eq(tenant.into_uuid()))
        .filter(agents::deleted_at.is_null())
        .count()
        .get_result(conn)?)
}

pub fn insert(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: AgentId,
    fields: &AgentFields,
    now: DateTime<Utc>,
) -> Result<Agent, DbError> {
    diesel::insert_into(agents::table)
        .values((
            fields.columns(now),
            agents::id.eq(id.into_uuid()),
            agents::tenant_id.eq(tenant.into_uuid()),
            agents::created_at.eq(now),
        ))
        .returning(AgentRow::as_returning())
        .get_result(conn)?
        .try_into()
}

/// Replaces every field of a live agent.
pub fn replace(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: AgentId,
    fields: &AgentFields,
    now: DateTime<Utc>,
) -> Result<Option<Agent>, DbError> {
    diesel::update(
        agents::table
            .filter(agents::tenant_id.eq(tenant.into_uuid()))
            .filter(agents::id.eq(id.into_uuid()))
            .filter(agents::deleted_at.is_null()),
    )
    .set(fields.columns(now))
    .returning(AgentRow::as_returning())
    .get_result(conn)
    .optional()?
    .map(Agent::try_from)
    .transpose()
}

/// A live agent.
pub fn get(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: AgentId,
) -> Result<Option<Agent>, DbError> {
    find(conn, tenant, id, false)
}

/// An agent by id, even if deleted (for showing old sessions and runs).
pub fn get_any(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: AgentId,
) -> Result<Option<Agent>, DbError> {
    find(conn, tenant, id, true)
}

fn find(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: AgentId,
    include_deleted: bool,
) -> Result<Option<Agent>, DbError> {
    let mut query = agents::table
        .filter(agents::tenant_id.eq(tenant.into_uuid()))
        .filter(agents::id.eq(id.into_uuid()))
        .select(AgentRow::as_select())
        .into_boxed();
    if !include_deleted {
        query = query.filter(agents::deleted_at.is_null());
    }
    query
        .first(conn)
        .optional()?
        .map(Agent::try_from)
        .transpose()
}

pub fn get_by_name(
    conn: &mut PgConnection,
    tenant: TenantId,
    name: &str,
) -> Result<Option<Agent>, DbError> {
    agents::table
        .filter(agents::tenant_id.eq(tenant.into_uuid()))
        .filter(agents::name.eq(name))
        .filter(agents::deleted_at.is_null())
        .select(AgentRow::as_select())
        .first(conn)
        .optional()?
        .map(Agent::try_from)
        .transpose()
}

/// Live agents, by name.
pub fn list(conn: &mut PgConnection, tenant: TenantId) -> Result<Vec<Agent>, DbError> {
    agents::table
        .filter(agents::tenant_id.eq(tenant.into_uuid()))
        .filter(agents::deleted_at.is_null())
        .select(AgentRow::as_select())
        .order((agents::name.asc(), agents::id.asc()))
        .load(conn)?
        .into_iter()
        .map(Agent::try_from)
        .collect()
}

/// Marks an agent deleted. Returns whether a live agent was deleted.
pub fn soft_delete(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: AgentId,
    now: DateTime<Utc>,
) -> Result<bool, DbError> {
    let updated = diesel::update(
        agents::table
            .filter(agents::tenant_id.eq(tenant.into_uuid()))
            .filter(agents::id.eq(id.into_uuid()))
            .filter(agents::deleted_at.is_null()),
    )
    .set((agents::deleted_at.eq(now), agents::updated_at.eq(now)))
    .execute(conn)?;
    Ok(updated > 0)
}

/// Whether any live agent uses this provider.
pub fn uses_provider(
    conn: &mut PgConnection,
    tenant: TenantId,
    provider: ProviderId,
) -> Result<bool, DbError> {
    Ok(diesel::select(diesel::dsl::exists(
        agents::table
            .filter(agents::tenant_id.eq(tenant.into_uuid()))
            .filter(agents::provider_id.eq(provider.into_uuid()))
            .filter(agents::deleted_at.is_null()),
    ))
    .get_result(conn)?)
}

/// Points deleted agents that used `provider` at the mock instead, so the provider can be
/// deleted (live agents still block it).
pub fn detach_deleted(
    conn: &mut PgConnection,
    tenant: TenantId,
    provider: ProviderId,
) -> Result<usize, DbError> {
    Ok(diesel::update(
        agents::table
            .filter(agents::tenant_id.eq(tenant.into_uuid()))
            .filter(agents::provider_id.eq(provider.into_uuid()))
            .filter(agents::deleted_at.is_not_null()),
    )
    .set((
        agents::provider_id.eq(None::<Uuid>),
        agents::builtin_provider.eq(Some("mock")),
    ))
    .execute(conn)?)
}
