//! The platform operator's API: every tenant, across tenants. Authenticated by
//! `Authorization: Bearer <PAAS_OPERATOR_TOKEN>`, and off when that is not set.

use actix_web::{get, patch, post, put, web};
use paas_core::TenantId;
use paas_models::{QuotaOverrides, TenantStatus};
use paas_persistence::Page;

use crate::dto::{
    ChangePlanRequest, OperatorTenant, OperatorTenantList, PageQuery, QuotaOverridesRequest,
};
use crate::error::{ApiResult, ErrorBody};
use crate::extract::Operator;
use crate::services::{ClientInfo, operator};
use crate::state::AppState;

/// Every tenant, oldest first.
#[utoipa::path(tag = "operator", params(PageQuery),
    responses((status = 200, body = OperatorTenantList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("operator" = [])))]
#[get("/admin/tenants")]
pub async fn list_tenants(
    state: web::Data<AppState>,
    _operator: Operator,
    query: web::Query<PageQuery>,
) -> ApiResult<web::Json<OperatorTenantList>> {
    let page = Page::new(query.limit, query.offset);
    let items = operator::list(&state, page).await?;
    Ok(web::Json(OperatorTenantList {
        items,
        limit: page.limit,
        offset: page.offset,
    }))
}

/// One tenant with its plan, limits and usage.
#[utoipa::path(tag = "operator",
    responses((status = 200, body = OperatorTenant), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("operator" = [])))]
#[get("/admin/tenants/{id}")]
pub async fn get_tenant(
    state: web::Data<AppState>,
    _operator: Operator,
    id: web::Path<TenantId>,
) -> ApiResult<web::Json<OperatorTenant>> {
    Ok(web::Json(operator::show(&state, id.into_inner()).await?))
}

/// Moves a tenant to another plan (`free`, `pro`, `enterprise`); overrides stay.
#[utoipa::path(tag = "operator", request_body = ChangePlanRequest,
    responses((status = 200, body = OperatorTenant), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("operator" = [])))]
#[patch("/admin/tenants/{id}")]
pub async fn change_plan(
    state: web::Data<AppState>,
    _operator: Operator,
    client: ClientInfo,
    id: web::Path<TenantId>,
    body: web::Json<ChangePlanRequest>,
) -> ApiResult<web::Json<OperatorTenant>> {
    let plan = operator::parse_plan(&body.plan)?;
    Ok(web::Json(
        operator::change_plan(&state, id.into_inner(), plan, &client).await?,
    ))
}

/// Replaces the tenant's quota overrides; fields left out (or `null`) return to the plan's
/// value.
#[utoipa::path(tag = "operator", request_body = QuotaOverridesRequest,
    responses((status = 200, body = OperatorTenant), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("operator" = [])))]
#[put("/admin/tenants/{id}/quota")]
pub async fn set_quota(
    state: web::Data<AppState>,
    _operator: Operator,
    client: ClientInfo,
    id: web::Path<TenantId>,
    body: web::Json<QuotaOverridesRequest>,
) -> ApiResult<web::Json<OperatorTenant>> {
    let b = body.into_inner();
    let overrides = QuotaOverrides {
        max_users: b.max_users,
        max_agents: b.max_agents,
        max_sessions_per_day: b.max_sessions_per_day,
        max_tokens_per_month: b.max_tokens_per_month,
        requests_per_minute: b.requests_per_minute,
        key_requests_per_minute: b.key_requests_per_minute,
        max_concurrent_runs: b.max_concurrent_runs,
    };
    Ok(web::Json(
        operator::set_overrides(&state, id.into_inner(), overrides, &client).await?,
    ))
}

/// Suspends a tenant: its users and keys get 403 `tenant_suspended` from their next request.
#[utoipa::path(tag = "operator",
    responses((status = 200, body = OperatorTenant), (status = 404, body = ErrorBody)),
    security(("operator" = [])))]
#[post("/admin/tenants/{id}/suspend")]
pub async fn suspend_tenant(
    state: web::Data<AppState>,
    _operator: Operator,
    client: ClientInfo,
    id: web::Path<TenantId>,
) -> ApiResult<web::Json<OperatorTenant>> {
    Ok(web::Json(
        operator::set_status(&state, id.into_inner(), TenantStatus::Suspended, &client).await?,
    ))
}

/// Reactivates a suspended tenant.
#[utoipa::path(tag = "operator",
    responses((status = 200, body = OperatorTenant), (status = 404, body = ErrorBody)),
    security(("operator" = [])))]
#[post("/admin/tenants/{id}/reactivate")]
pub async fn reactivate_tenant(
    state: web::Data<AppState>,
    _operator: Operator,
    client: ClientInfo,
    id: web::Path<TenantId>,
) -> ApiResult<web::Json<OperatorTenant>> {
    Ok(web::Json(
        operator::set_status(&state, id.into_inner(), TenantStatus::Active, &client).await?,
    ))
}
