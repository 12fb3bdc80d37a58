//! The audit log.

use actix_web::{get, web};
use paas_auth::{Action, authorize};
use paas_core::Error;
use paas_models::AuditAction;

use crate::dto::{AuditList, AuditQuery};
use crate::error::{ApiResult, ErrorBody};
use crate::extract::Auth;
use crate::services::audit;
use crate::state::AppState;

/// Who did what, when, from where — newest first (admins).
#[utoipa::path(
    tag = "audit",
    params(AuditQuery),
    responses((status = 200, body = AuditList), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []), ("api_key" = []))
)]
#[get("/audit-events")]
pub async fn list_audit_events(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    query: web::Query<AuditQuery>,
) -> ApiResult<web::Json<AuditList>> {
    authorize(&principal, Action::ReadAuditLog)?;
    let query = query.into_inner();
    let action = query
        .action
        .as_deref()
        .map(|name| {
            AuditAction::parse(name).ok_or_else(|| {
                Error::validation("action", "unknown action; see the API guide for the list")
            })
        })
        .transpose()?;
    let limit = query.limit.unwrap_or(50).clamp(1, 200);
    let filter = paas_persistence::audit::AuditFilter {
        action,
        actor_user_id: query.actor_user_id,
        before: query.before,
    };
    let items = audit::list(&state, &principal, filter, limit).await?;
    let next_before = if items.len() as i64 == limit {
        items.last().map(|e| e.id)
    } else {
        None
    };
    Ok(web::Json(AuditList { items, next_before }))
}
