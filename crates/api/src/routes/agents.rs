//! Agents.

use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, web};
use paas_auth::{Action, authorize};
use paas_core::AgentId;
use paas_models::Agent;

use crate::dto::{AgentList, CreateAgentRequest, UpdateAgentRequest};
use crate::error::{ApiResult, ErrorBody};
use crate::extract::Auth;
use crate::idempotency::{self, IdempotencyKeyHeader, Keyed};
use crate::services::ClientInfo;
use crate::services::agents::{self, AgentInput};
use crate::state::AppState;

/// The tenant's agents, by name.
#[utoipa::path(tag = "agents", responses((status = 200, body = AgentList), (status = 403, body = ErrorBody)),
    security(("bearer" = []), ("api_key" = [])))]
#[get("/agents")]
pub async fn list_agents(
    state: web::Data<AppState>,
    Auth(principal): Auth,
) -> ApiResult<web::Json<AgentList>> {
    authorize(&principal, Action::ReadAgents)?;
    Ok(web::Json(AgentList {
        items: agents::list(&state, &principal).await?,
    }))
}

/// Creates an agent (admins, or keys with `agents:write`).
#[utoipa::path(tag = "agents", request_body = CreateAgentRequest, params(IdempotencyKeyHeader),
    responses((status = 201, body = Agent), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "agent_name_taken, or idempotency_request_in_progress (a request with this Idempotency-Key is still running; Retry-After)", body = ErrorBody),
        (status = 422, body = ErrorBody, description = "idempotency_key_reused: the Idempotency-Key was used for another request")),
    security(("bearer" = []), ("api_key" = [])))]
#[post("/agents")]
pub async fn create_agent(
    req: HttpRequest,
    state: web::Data<AppState>,
    Auth(principal): Auth,
    client: ClientInfo,
    Keyed { body, key }: Keyed<web::Json<CreateAgentRequest>>,
) -> ApiResult<HttpResponse> {
    authorize(&principal, Action::WriteAgents)?;
    idempotency::once(&req, &principal, key, move || async move {
        let b = body.into_inner();
        let input = AgentInput {
            name: Some(b.name),
            display_name: b.display_name,
            description: b.description,
            system_prompt: b.system_prompt,
            provider_id: b.provider_id,
            model: b.model,
            temperature: b.temperature.map(Some),
            max_tokens: b.max_tokens,
            tools: b.tools,
            max_steps: b.max_steps,
            timeout_seconds: b.timeout_seconds,
        };
        Ok(HttpResponse::Created().json(agents::create(&state, &principal, input, &client).await?))
    })
    .await
}

/// One agent.
#[utoipa::path(tag = "agents", params(("id" = AgentId, Path)),
    responses((status = 200, body = Agent), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("api_key" = [])))]
#[get("/agents/{id}")]
pub async fn get_agent(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    id: web::Path<AgentId>,
) -> ApiResult<web::Json<Agent>> {
    authorize(&principal, Action::ReadAgents)?;
    Ok(web::Json(
        agents::get(&state, &principal, id.into_inner()).await?,
    ))
}

/// Changes an agent.
#[utoipa::path(tag = "agents", params(("id" = AgentId, Path)), request_body = UpdateAgentRequest,
    responses((status = 200, body = Agent), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("api_key" = [])))]
#[patch("/agents/{id}")]
pub async fn update_agent(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    client: ClientInfo,
    id: web::Path<AgentId>,
    body: web::Json<UpdateAgentRequest>,
) -> ApiResult<web::Json<Agent>> {
    authorize(&principal, Action::WriteAgents)?;
    let b = body.into_inner();
    let input = AgentInput {
        name: b.name,
        display_name: b.display_name,
        description: b.description,
        system_prompt: b.system_prompt,
        provider_id: b.provider_id,
        model: b.model,
        temperature: b.temperature,
        max_tokens: b.max_tokens,
        tools: b.tools,
        max_steps: b.max_steps,
        timeout_seconds: b.timeout_seconds,
    };
    Ok(web::Json(
        agents::update(&state, &principal, id.into_inner(), input, &client).await?,
    ))
}

/// Deletes an agent. Its sessions and runs stay readable.
#[utoipa::path(tag = "agents", params(("id" = AgentId, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("api_key" = [])))]
#[delete("/agents/{id}")]
pub async fn delete_agent(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    client: ClientInfo,
    id: web::Path<AgentId>,
) -> ApiResult<HttpResponse> {
    authorize(&principal, Action::WriteAgents)?;
    agents::delete(&state, &principal, id.into_inner(), &client).await?;
    Ok(HttpResponse::NoContent().finish())
}
