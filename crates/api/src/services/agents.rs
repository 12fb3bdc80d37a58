//! Agents: read by everyone in the tenant, written by admins (and keys with `agents:write`).

use paas_agents::tools::BUILTIN_TOOLS;
use paas_core::{AgentId, Error, Principal};
use paas_models::agent::{
    AGENT_MAX_STEPS, AGENT_MAX_TIMEOUT_SECONDS, AGENT_MAX_TOKENS, validate_agent_display_name,
    validate_bounded, validate_description, validate_model, validate_slug, validate_system_prompt,
    validate_temperature, validate_tools,
};
use paas_models::{Agent, AgentProvider, AuditAction};
use paas_persistence::agents::{self, AgentFields};
use paas_persistence::{audit, providers, quotas};
use serde_json::json;

use crate::services::providers::check_agent_provider;
use crate::services::{AuditContext, ClientInfo, quota};
use crate::state::AppState;

pub const DEFAULT_MAX_TOKENS: u32 = 1024;
pub const DEFAULT_MAX_STEPS: u32 = 8;
pub const DEFAULT_TIMEOUT_SECONDS: u32 = 120;

/// Fields of an agent as a request gives them; `None` means "not given".
#[derive(Debug, Default)]
pub struct AgentInput {
    pub name: Option<String>,
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub system_prompt: Option<String>,
    pub provider_id: Option<AgentProvider>,
    pub model: Option<String>,
    /// `Some(None)` clears it (the provider's default applies).
    pub temperature: Option<Option<f32>>,
    pub max_tokens: Option<u32>,
    pub tools: Option<Vec<String>>,
    pub max_steps: Option<u32>,
    pub timeout_seconds: Option<u32>,
}

/// Validates the merged fields and fills in the model from the provider when none is given.
async fn complete(
    state: &AppState,
    principal: &Principal,
    fields: AgentFields,
    model_given: bool,
) -> Result<AgentFields, Error> {
    let tenant = principal.tenant_id;
    check_agent_provider(state, tenant, fields.provider).await?;
    let model = if model_given || !fields.model.is_empty() {
        validate_model(&fields.model)?
    } else {
        match fields.provider {
            AgentProvider::Mock => "mock".to_owned(),
            AgentProvider::Tenant(id) => state
                .db
                .tenant_tx(tenant, move |conn| providers::get(conn, tenant, id))
                .await?
                .and_then(|p| p.default_model)
                .ok_or_else(|| {
                    Error::validation("model", "give a model: the provider has no default_model")
                })?,
            AgentProvider::Platform(_) => {
                return Err(Error::validation(
                    "model",
                    "give a model for a platform provider",
                ));
            }
        }
    };
    Ok(AgentFields {
        name: validate_slug("name", &fields.name)?,
        display_name: validate_agent_display_name(&fields.display_name)?,
        description: validate_description(&fields.description)?,
        system_prompt: validate_system_prompt(&fields.system_prompt)?,
        provider: fields.provider,
        model,
        temperature: fields.temperature.map(validate_temperature).transpose()?,
        max_tokens: validate_bounded("max_tokens", fields.max_tokens, AGENT_MAX_TOKENS)?,
        tools: validate_tools(&fields.tools, &BUILTIN_TOOLS)?,
        max_steps: validate_bounded("max_steps", fields.max_steps, AGENT_MAX_STEPS)?,
        timeout_seconds: validate_bounded(
            "timeout_seconds",
            fields.timeout_seconds,
            AGENT_MAX_TIMEOUT_SECONDS,
        )?,
    })
}

pub async fn create(
    state: &AppState,
    principal: &Principal,
    input: AgentInput,
    client: &ClientInfo,
) -> Result<Agent, Error> {
    let name = input
        .name
        .ok_or_else(|| Error::validation("name", "name is required"))?;
    let model_given = input.model.is_some();
    let fields = AgentFields {
        display_name: input.display_name.unwrap_or_else(|| name.clone()),
        name,
        description: input.description.unwrap_or_default(),
        system_prompt: input.system_prompt.unwrap_or_default(),
        provider: input.provider_id.unwrap_or(AgentProvider::Mock),
        model: input.model.unwrap_or_default(),
        temperature: input.temperature.flatten(),
        max_tokens: input.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
        tools: input.tools.unwrap_or_default(),
        max_steps: input.max_steps.unwrap_or(DEFAULT_MAX_STEPS),
        timeout_seconds: input.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS),
    };
    let fields = complete(state, principal, fields, model_given).await?;
    let tenant = principal.tenant_id;
    let now = state.clock.now();
    let ctx = AuditContext::for_principal(principal, client, now);
    let result = state
        .db
        .tenant_tx(tenant, move |conn| {
            // Locks the quota row: concurrent creates cannot both take the last place.
            let limits = quotas::lock_limits(conn, tenant)?;
            quota::ensure_below(
                agents::count(conn, tenant)?,
                limits.max_agents,
                "agents",
                "max_agents",
            )?;
            let agent = agents::insert(conn, tenant, AgentId::new(), &fields, now)?;
            audit::insert(
                conn,
                ctx.event(
                    AuditAction::AgentCreated,
                    Some(("agent", agent.id.to_string())),
                    json!({"name": agent.name, "provider_id": agent.provider_id, "model": agent.model}),
                ),
            )?;
            Ok(agent)
        })
        .await;
    state.cache.changed(tenant, result).await
}

pub async fn list(state: &AppState, principal: &Principal) -> Result<Vec<Agent>, Error> {
    let tenant = principal.tenant_id;
    state
        .db
        .tenant_tx(tenant, move |conn| agents::list(conn, tenant))
        .await
}

pub async fn get(state: &AppState, principal: &Principal, id: AgentId) -> Result<Agent, Error> {
    let tenant = principal.tenant_id;
    state
        .db
        .tenant_tx(tenant, move |conn| agents::get(conn, tenant, id))
        .await?
        .ok_or_else(|| Error::not_found("agent"))
}

/// An agent by id or by name (the chat APIs accept either).
pub async fn find(
    state: &AppState,
    principal: &Principal,
    id_or_name: &str,
) -> Result<Agent, Error> {
    let tenant = principal.tenant_id;
    let key = id_or_name.trim().to_owned();
    if let Some(agent) = state.cache.agent(tenant, &key) {
        return Ok(agent);
    }
    let stamp = state.cache.stamp();
    let lookup = key.clone();
    let agent = state
        .db
        .tenant_tx(tenant, move |conn| match lookup.parse::<AgentId>() {
            Ok(id) => agents::get(conn, tenant, id),
            Err(_) => agents::get_by_name(conn, tenant, &lookup),
        })
        .await?
        .ok_or_else(|| Error::not_found("agent"))?;
    state.cache.put_agent(stamp, tenant, &key, &agent);
    Ok(agent)
}

pub async fn update(
    state: &AppState,
    principal: &Principal,
    id: AgentId,
    input: AgentInput,
    client: &ClientInfo,
) -> Result<Agent, Error> {
    let before = get(state, principal, id).await?;
    let provider_changed = input.provider_id.is_some_and(|p| p != before.provider_id);
    let model_given = input.model.is_some();
    let fields = AgentFields {
        name: input.name.unwrap_or(before.name.clone()),
        display_name: input.display_name.unwrap_or(before.display_name.clone()),
        description: input.description.unwrap_or(before.description.clone()),
        system_prompt: input.system_prompt.unwrap_or(before.system_prompt.clone()),
        provider: input.provider_id.unwrap_or(before.provider_id),
        // A new provider without a new model takes the provider's default model.
        model: match input.model {
            Some(model) => model,
            None if provider_changed => String::new(),
            None => before.model.clone(),
        },
        temperature: input.temperature.unwrap_or(before.temperature),
        max_tokens: input.max_tokens.unwrap_or(before.max_tokens),
        tools: input.tools.unwrap_or(before.tools.clone()),
        max_steps: input.max_steps.unwrap_or(before.max_steps),
        timeout_seconds: input.timeout_seconds.unwrap_or(before.timeout_seconds),
    };
    let fields = complete(state, principal, fields, model_given).await?;
    let tenant = principal.tenant_id;
    let now = state.clock.now();
    let ctx = AuditContext::for_principal(principal, client, now);
    let result = state
        .db
        .tenant_tx(tenant, move |conn| {
            let agent = agents::replace(conn, tenant, id, &fields, now)?.ok_or_else(|| Error::not_found("agent"))?;
            audit::insert(
                conn,
                ctx.event(
                    AuditAction::AgentUpdated,
                    Some(("agent", id.to_string())),
                    json!({"name": agent.name, "provider_id": agent.provider_id, "model": agent.model}),
                ),
            )?;
            Ok(agent)
        })
        .await;
    state.cache.changed(tenant, result).await
}

pub async fn delete(
    state: &AppState,
    principal: &Principal,
    id: AgentId,
    client: &ClientInfo,
) -> Result<(), Error> {
    let tenant = principal.tenant_id;
    let now = state.clock.now();
    let ctx = AuditContext::for_principal(principal, client, now);
    let result = state
        .db
        .tenant_tx(tenant, move |conn| {
            let agent = agents::get(conn, tenant, id)?.ok_or_else(|| Error::not_found("agent"))?;
            agents::soft_delete(conn, tenant, id, now)?;
            audit::insert(
                conn,
                ctx.event(
                    AuditAction::AgentDeleted,
                    Some(("agent", id.to_string())),
                    json!({"name": agent.name}),
                ),
            )?;
            Ok(())
        })
        .await;
    state.cache.changed(tenant, result).await
}
