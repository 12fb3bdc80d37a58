//! The caller's tenant.

use actix_web::{get, patch, web};
use paas_auth::{Action, authorize};
use paas_models::Tenant;

use crate::dto::UpdateTenantRequest;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::Auth;
use crate::services::{ClientInfo, tenant};
use crate::state::AppState;

/// The caller's tenant.
#[utoipa::path(
    tag = "tenant",
    responses((status = 200, body = Tenant), (status = 401, body = ErrorBody)),
    security(("bearer" = []), ("api_key" = []))
)]
#[get("/tenant")]
pub async fn get_tenant(
    state: web::Data<AppState>,
    Auth(principal): Auth,
) -> ApiResult<web::Json<Tenant>> {
    authorize(&principal, Action::ReadProfile)?;
    Ok(web::Json(tenant::get(&state, &principal).await?))
}

/// Changes the tenant's display name or settings (admins).
#[utoipa::path(
    tag = "tenant",
    request_body = UpdateTenantRequest,
    responses((status = 200, body = Tenant), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []), ("api_key" = []))
)]
#[patch("/tenant")]
pub async fn update_tenant(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    client: ClientInfo,
    body: web::Json<UpdateTenantRequest>,
) -> ApiResult<web::Json<Tenant>> {
    authorize(&principal, Action::UpdateTenant)?;
    let body = body.into_inner();
    let update = tenant::TenantUpdate {
        display_name: body.display_name,
        settings: body.settings,
    };
    Ok(web::Json(
        tenant::update(&state, &principal, update, &client).await?,
    ))
}
