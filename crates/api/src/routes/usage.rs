//! The tenant's quota and usage reports.

use actix_web::{get, web};
use paas_auth::{Action, authorize};

use crate::dto::{QuotaStatus, UsageQuery, UsageReport};
use crate::error::{ApiResult, ErrorBody};
use crate::extract::Auth;
use crate::services::usage;
use crate::state::AppState;

/// The tenant's plan, its limits (with overrides) and current usage against each: users,
/// agents, sessions today, tokens this month (used and reserved) and runs in progress, with
/// when each window resets.
#[utoipa::path(
    tag = "usage",
    responses((status = 200, body = QuotaStatus), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []), ("api_key" = []))
)]
#[get("/tenant/quota")]
pub async fn get_quota(
    state: web::Data<AppState>,
    Auth(principal): Auth,
) -> ApiResult<web::Json<QuotaStatus>> {
    authorize(&principal, Action::ReadUsage)?;
    Ok(web::Json(
        usage::quota_status(&state, principal.tenant_id, false).await?,
    ))
}

/// Token usage over a period, grouped by day, agent, model, user or API key, from the usage
/// ledger (one row per finished run). Admins see the whole tenant; everyone else their own runs.
#[utoipa::path(
    tag = "usage",
    params(UsageQuery),
    responses((status = 200, body = UsageReport), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []), ("api_key" = []))
)]
#[get("/usage")]
pub async fn get_usage(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    query: web::Query<UsageQuery>,
) -> ApiResult<web::Json<UsageReport>> {
    authorize(&principal, Action::ReadUsage)?;
    let query = query.into_inner();
    Ok(web::Json(
        usage::report(
            &state,
            &principal,
            query.from.as_deref(),
            query.to.as_deref(),
            query.group_by.as_deref(),
        )
        .await?,
    ))
}
