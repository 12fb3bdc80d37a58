//! The dashboard's chat: a turn answered with Server-Sent Events, and runs that can be
//! followed, resumed and cancelled from any replica.

use std::sync::Arc;

use actix_web::http::header::{self, HeaderMap};
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use futures_util::StreamExt;
use futures_util::stream::LocalBoxStream;
use paas_auth::{Action, authorize};
use paas_core::{Error, Principal, RunId};
use paas_models::Run;
use paas_persistence::runs;

use crate::dto::{ChatRequest, EventsQuery};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Auth, ChatAuth, count_if_uncounted, count_request};
use crate::idempotency::{self, IdempotencyKeyHeader, Keyed, StreamFormat, Streamed};
use crate::services::chat::{ChatInput, start_chat};
use crate::state::AppState;

fn sse_response(
    run: RunId,
    session: Option<paas_core::SessionId>,
) -> actix_web::HttpResponseBuilder {
    let mut response = HttpResponse::Ok();
    response
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("X-Accel-Buffering", "no"))
        .insert_header(("X-Run-Id", run.to_string()));
    if let Some(session) = session {
        response.insert_header(("X-Session-Id", session.to_string()));
    }
    response
}

/// Sends a chat message to an agent and streams the answer as Server-Sent Events: `message`,
/// `thought`, `tool_call`, `tool_result`, `usage`, `limit`, `error` and finally `done`, each with
/// an increasing `id` and JSON data `{"event": ..., "data": ...}`. The run continues if the
/// connection drops: resume with `GET /runs/{id}/events` and `Last-Event-ID`. With an
/// `Idempotency-Key`, a retry follows the same run from its first event instead of starting
/// another.
#[utoipa::path(tag = "chat", request_body = ChatRequest, params(IdempotencyKeyHeader),
    responses(
        (status = 200, description = "text/event-stream of the run's events",
            headers(("X-Run-Id" = String, description = "The run's id (resume with GET /runs/{id}/events)"),
                    ("X-Session-Id" = String, description = "The session the turn belongs to"),
                    ("Idempotent-Replayed" = String, description = "`true` on a retry answered from its Idempotency-Key"))),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody, description = "Not allowed, or plan_limit_reached (sessions per day)"),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "idempotency_request_in_progress: a request with this Idempotency-Key is still running; Retry-After"),
        (status = 422, body = ErrorBody, description = "idempotency_key_reused: the Idempotency-Key was used for another request"),
        (status = 429, body = ErrorBody, description = "rate_limited, token_quota_exceeded or too_many_concurrent_runs; Retry-After says when to retry"),
        (status = 503, body = ErrorBody, description = "quota_unavailable (Redis is down and quotas fail closed); Retry-After")),
    security(("bearer" = []), ("api_key" = [])))]
#[post("/chat/completions")]
pub async fn chat_completions(
    req: HttpRequest,
    state: web::Data<AppState>,
    ChatAuth(principal, plan): ChatAuth,
    Keyed { body, key }: Keyed<Result<web::Json<ChatRequest>, actix_web::Error>>,
) -> Result<HttpResponse, actix_web::Error> {
    let reply = async {
        // The body's shape (400) before the role (403), as on every route.
        let body = body?.into_inner();
        authorize(&principal, Action::Chat).map_err(ApiError)?;
        let (work_req, work_state) = (req.clone(), state.clone());
        let work = move || start(work_req, work_state, principal, plan, body);
        Ok::<_, actix_web::Error>(idempotency::once(&req, &principal, key, work).await?)
    }
    .await;
    if let Some(refused) = count_if_uncounted(&req, &state, &principal, &plan).await {
        return Err(ApiError(refused).into());
    }
    reply
}

/// Starts the turn's run and answers with its events.
async fn start(
    req: HttpRequest,
    state: web::Data<AppState>,
    principal: Principal,
    plan: paas_models::TenantPlan,
    body: ChatRequest,
) -> ApiResult<HttpResponse> {
    let input = ChatInput {
        agent: body.agent.or(body.agent_type),
        message: body.message,
        session_id: body.session_id,
    };
    let mut rate = None;
    let started = start_chat(&state, &principal, &plan, input, &mut rate).await;
    if let Some(refused) = count_request(&req, &state, &principal, &plan, rate).await {
        return Err(ApiError(refused));
    }
    let run = started?.run;
    let mut response =
        sse_response(run.id, run.session_id).streaming(state.runs.sse_started(Arc::clone(&run)));
    Streamed {
        run: run.id,
        format: StreamFormat::RunEvents,
    }
    .mark(&mut response);
    Ok(response)
}

/// Reads a run this caller may see: their own, or any in the tenant for an admin.
/// Reads a run: the caller's own, or — for its status, usage and cancellation only, never its
/// content — any run in the tenant for an admin (`admin_may_see`).
async fn visible_run(
    state: &AppState,
    principal: &Principal,
    id: RunId,
    admin_may_see: bool,
) -> Result<Run, Error> {
    let tenant = principal.tenant_id;
    let run = state
        .db
        .tenant_tx(tenant, move |conn| runs::get(conn, tenant, id))
        .await?
        .filter(|run| run.user_id == principal.user_id || (admin_may_see && principal.is_admin()))
        .ok_or_else(|| Error::not_found("run"))?;
    Ok(run)
}

fn may_follow(principal: &Principal) -> Result<(), Error> {
    authorize(principal, Action::ReadSessions)
        .or_else(|err| authorize(principal, Action::Chat).map_err(|_| err))
}

/// A run: status, usage, error or limit.
#[utoipa::path(tag = "chat", params(("id" = RunId, Path)),
    responses((status = 200, body = Run), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("api_key" = [])))]
#[get("/runs/{id}")]
pub async fn get_run(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    id: web::Path<RunId>,
) -> ApiResult<web::Json<Run>> {
    may_follow(&principal)?;
    Ok(web::Json(
        visible_run(&state, &principal, id.into_inner(), true).await?,
    ))
}

fn last_event_id(headers: &HeaderMap, query: Option<u64>) -> Result<u64, Error> {
    match headers.get("last-event-id") {
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| {
                Error::bad_request(
                    "invalid_last_event_id",
                    "Last-Event-ID must be an event id (a number)",
                )
            }),
        None => Ok(query.unwrap_or(0)),
    }
}

/// A run's events as Server-Sent Events: those after `Last-Event-ID` (header or query), then the
/// live rest until `done`. Works on any replica while the run's events are kept.
#[utoipa::path(tag = "chat", params(("id" = RunId, Path), EventsQuery),
    responses((status = 200, description = "text/event-stream"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("api_key" = [])))]
#[get("/runs/{id}/events")]
pub async fn run_events(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    req: HttpRequest,
    id: web::Path<RunId>,
    query: web::Query<EventsQuery>,
) -> ApiResult<HttpResponse> {
    may_follow(&principal)?;
    let after = last_event_id(req.headers(), query.last_event_id)?;
    // The events hold the conversation: only its own user may read them.
    let run = visible_run(&state, &principal, id.into_inner(), false).await?;
    Ok(sse_response(run.id, run.session_id).streaming(follow(&state, run.id, Some(&run), after)))
}

/// A run's events after `after` as SSE bytes. If they have expired, a finished run (`run`, as
/// stored) still ends the stream with its outcome.
fn follow(
    state: &AppState,
    id: RunId,
    run: Option<&Run>,
    after: u64,
) -> LocalBoxStream<'static, Result<bytes::Bytes, actix_web::Error>> {
    let fallback = run.filter(|run| run.status.is_finished()).map(|run| {
        serde_json::json!({
            "event": "done",
            "data": {
                "status": run.status, "usage": run.usage, "steps": run.steps,
                "run_id": run.id, "session_id": run.session_id, "stored": true,
            }
        })
        .to_string()
    });
    state.runs.sse(id, after, fallback).boxed_local()
}

/// A run's events from the first, for answering a retry of the chat request that started it
/// (see [`crate::idempotency`]).
pub(crate) async fn replay_events(
    state: &AppState,
    principal: &Principal,
    id: RunId,
) -> Result<LocalBoxStream<'static, Result<bytes::Bytes, actix_web::Error>>, Error> {
    let tenant = principal.tenant_id;
    let run = state
        .db
        .tenant_tx(tenant, move |conn| runs::get(conn, tenant, id))
        .await?;
    Ok(follow(state, id, run.as_ref(), 0))
}

/// Stops a running run. It ends with status `cancelled`; what it wrote so far is kept.
#[utoipa::path(tag = "chat", params(("id" = RunId, Path)),
    responses((status = 202, body = Run), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = []), ("api_key" = [])))]
#[post("/runs/{id}/cancel")]
pub async fn cancel_run(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    id: web::Path<RunId>,
) -> ApiResult<HttpResponse> {
    authorize(&principal, Action::Chat)?;
    let run = visible_run(&state, &principal, id.into_inner(), true).await?;
    if run.status.is_finished() {
        return Err(Error::conflict("run_finished", "this run has already finished").into());
    }
    state.runs.request_cancel(run.id).await?;
    Ok(HttpResponse::Accepted().json(run))
}
