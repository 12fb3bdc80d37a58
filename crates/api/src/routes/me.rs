//! The caller's own account.

use actix_web::{HttpResponse, get, patch, post, web};
use paas_auth::{Action, authorize};
use paas_core::Credential;
use paas_models::User;

use crate::dto::{AuthInfo, ChangePasswordRequest, MeResponse, UpdateMeRequest};
use crate::error::{ApiResult, ErrorBody};
use crate::extract::Auth;
use crate::services::{ClientInfo, accounts};
use crate::state::AppState;

/// The caller: user, role, tenant, and how they authenticated.
#[utoipa::path(
    tag = "me",
    responses((status = 200, body = MeResponse), (status = 401, body = ErrorBody)),
    security(("bearer" = []), ("api_key" = []))
)]
#[get("/me")]
pub async fn get_me(
    state: web::Data<AppState>,
    Auth(principal): Auth,
) -> ApiResult<web::Json<MeResponse>> {
    authorize(&principal, Action::ReadProfile)?;
    let (user, tenant) = accounts::me(&state, &principal).await?;
    let auth = match principal.credential {
        Credential::Session { .. } => AuthInfo {
            method: "session",
            api_key_id: None,
            scopes: None,
        },
        Credential::ApiKey { id, scopes } => AuthInfo {
            method: "api_key",
            api_key_id: Some(id),
            scopes: Some(scopes.to_vec()),
        },
    };
    Ok(web::Json(MeResponse {
        role: principal.role,
        user,
        tenant,
        auth,
    }))
}

/// Changes the caller's display name.
#[utoipa::path(
    tag = "me",
    request_body = UpdateMeRequest,
    responses((status = 200, body = User), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []))
)]
#[patch("/me")]
pub async fn update_me(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    client: ClientInfo,
    body: web::Json<UpdateMeRequest>,
) -> ApiResult<web::Json<User>> {
    authorize(&principal, Action::ManageOwnAccount)?;
    Ok(web::Json(
        accounts::update_profile(&state, &principal, &body.display_name, &client).await?,
    ))
}

/// Changes the caller's password; the caller's other sessions are ended.
#[utoipa::path(
    tag = "me",
    request_body = ChangePasswordRequest,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []))
)]
#[post("/me/password")]
pub async fn change_password(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    client: ClientInfo,
    body: web::Json<ChangePasswordRequest>,
) -> ApiResult<HttpResponse> {
    authorize(&principal, Action::ManageOwnAccount)?;
    let body = body.into_inner();
    accounts::change_password(
        &state,
        &principal,
        body.current_password,
        body.new_password,
        &client,
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}
