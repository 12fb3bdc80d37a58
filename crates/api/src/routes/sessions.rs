//! Chat sessions and their history.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, web};
use paas_auth::{Action, authorize};
use paas_core::{Error, SessionId};
use paas_models::ChatSession;
use paas_persistence::Page;

use crate::dto::{
    CreateSessionRequest, ExportQuery, ListSessionsQuery, MessageList, PageQuery, SessionList,
    UpdateSessionRequest,
};
use crate::error::{ApiResult, ErrorBody};
use crate::extract::Auth;
use crate::idempotency::{self, IdempotencyKeyHeader, Keyed};
use crate::services::sessions::{self, ExportFormat};
use crate::state::AppState;

/// The caller's sessions, most recently active first.
#[utoipa::path(tag = "sessions", params(ListSessionsQuery),
    responses((status = 200, body = SessionList), (status = 403, body = ErrorBody)),
    security(("bearer" = []), ("api_key" = [])))]
#[get("/sessions")]
pub async fn list_sessions(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    query: web::Query<ListSessionsQuery>,
) -> ApiResult<web::Json<SessionList>> {
    authorize(&principal, Action::ReadSessions)?;
    let query = query.into_inner();
    let page = Page::new(query.limit, query.offset);
    let items = sessions::list(&state, &principal, query.q, query.agent_id, page).await?;
    Ok(web::Json(SessionList {
        items,
        limit: page.limit,
        offset: page.offset,
    }))
}

/// Starts an empty session with an agent (chatting without `session_id` does this too).
#[utoipa::path(tag = "sessions", request_body = CreateSessionRequest, params(IdempotencyKeyHeader),
    responses((status = 201, body = ChatSession), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "idempotency_request_in_progress: a request with this Idempotency-Key is still running; Retry-After"),
        (status = 422, body = ErrorBody, description = "idempotency_key_reused: the Idempotency-Key was used for another request")),
    security(("bearer" = []), ("api_key" = [])))]
#[post("/sessions")]
pub async fn create_session(
    req: HttpRequest,
    state: web::Data<AppState>,
    Auth(principal): Auth,
    Keyed { body, key }: Keyed<web::Json<CreateSessionRequest>>,
) -> ApiResult<HttpResponse> {
    authorize(&principal, Action::WriteSessions)?;
    idempotency::once(&req, &principal, key, move || async move {
        let body = body.into_inner();
        let session = sessions::create(&state, &principal, &body.agent, body.title).await?;
        Ok(HttpResponse::Created().json(session))
    })
    .await
}

/// One of the caller's sessions.
#[utoipa::path(tag = "sessions", params(("id" = SessionId, Path)),
    responses((status = 200, body = ChatSession), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("api_key" = [])))]
#[get("/sessions/{id}")]
pub async fn get_session(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    id: web::Path<SessionId>,
) -> ApiResult<web::Json<ChatSession>> {
    authorize(&principal, Action::ReadSessions)?;
    Ok(web::Json(
        sessions::get(&state, &principal, id.into_inner()).await?,
    ))
}

/// Renames a session.
#[utoipa::path(tag = "sessions", params(("id" = SessionId, Path)), request_body = UpdateSessionRequest,
    responses((status = 200, body = ChatSession), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("api_key" = [])))]
#[patch("/sessions/{id}")]
pub async fn update_session(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    id: web::Path<SessionId>,
    body: web::Json<UpdateSessionRequest>,
) -> ApiResult<web::Json<ChatSession>> {
    authorize(&principal, Action::WriteSessions)?;
    Ok(web::Json(
        sessions::rename(&state, &principal, id.into_inner(), &body.title).await?,
    ))
}

/// Deletes a session and its messages (its runs stay, for usage).
#[utoipa::path(tag = "sessions", params(("id" = SessionId, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("api_key" = [])))]
#[delete("/sessions/{id}")]
pub async fn delete_session(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    id: web::Path<SessionId>,
) -> ApiResult<HttpResponse> {
    authorize(&principal, Action::WriteSessions)?;
    sessions::delete(&state, &principal, id.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// A session's messages, oldest first: role, content, reasoning, tool calls and results,
/// token counts, times.
#[utoipa::path(tag = "sessions", params(("id" = SessionId, Path), PageQuery),
    responses((status = 200, body = MessageList), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("api_key" = [])))]
#[get("/sessions/{id}/messages")]
pub async fn list_messages(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    id: web::Path<SessionId>,
    query: web::Query<PageQuery>,
) -> ApiResult<web::Json<MessageList>> {
    authorize(&principal, Action::ReadSessions)?;
    let page = Page::new(query.limit, query.offset);
    let items = sessions::messages(&state, &principal, id.into_inner(), page).await?;
    Ok(web::Json(MessageList {
        items,
        limit: page.limit,
        offset: page.offset,
    }))
}

/// The whole session as a JSON or Markdown download.
#[utoipa::path(tag = "sessions", params(("id" = SessionId, Path), ExportQuery),
    responses((status = 200, description = "The export, as an attachment"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("api_key" = [])))]
#[get("/sessions/{id}/export")]
pub async fn export_session(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    id: web::Path<SessionId>,
    query: web::Query<ExportQuery>,
) -> ApiResult<HttpResponse> {
    authorize(&principal, Action::ReadSessions)?;
    let format = match query.format.as_deref() {
        None | Some("json") => ExportFormat::Json,
        Some("markdown") | Some("md") => ExportFormat::Markdown,
        Some(_) => {
            return Err(Error::validation("format", "format must be json or markdown").into());
        }
    };
    let id = id.into_inner();
    let (content_type, extension, body) = sessions::export(&state, &principal, id, format).await?;
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"session-{id}.{extension}\""),
        ))
        .body(body))
}
