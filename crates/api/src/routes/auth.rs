//! Sign-up, login, refresh, logout.

use actix_web::{HttpResponse, post, web};
use secrecy::ExposeSecret;

use crate::dto::{
    LoginRequest, LoginResponse, RefreshRequest, SignupRequest, SignupResponse, Tokens,
};
use crate::error::{ApiResult, ErrorBody};
use crate::services::{ClientInfo, accounts};
use crate::state::AppState;

/// Creates a tenant and its first user, who becomes the tenant's admin, and logs them in.
#[utoipa::path(
    tag = "auth",
    request_body = SignupRequest,
    responses(
        (status = 201, body = SignupResponse),
        (status = 400, description = "Invalid field", body = ErrorBody),
        (status = 403, description = "Sign-up disabled", body = ErrorBody),
        (status = 409, description = "Tenant name taken", body = ErrorBody),
    )
)]
#[post("/auth/signup")]
pub async fn signup(
    state: web::Data<AppState>,
    client: ClientInfo,
    body: web::Json<SignupRequest>,
) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    let input = accounts::Signup {
        tenant_name: body.tenant_name,
        tenant_display_name: body.tenant_display_name,
        email: body.email,
        password: body.password,
        display_name: body.display_name,
    };
    let done = accounts::signup(&state, input, &client).await?;
    Ok(HttpResponse::Created().json(SignupResponse {
        tenant: done.tenant,
        user: done.user,
        tokens: done.tokens.into(),
    }))
}

/// Logs in with tenant, email and password. Repeated failures are throttled (429).
#[utoipa::path(
    tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, body = LoginResponse),
        (status = 401, description = "Wrong tenant, email or password", body = ErrorBody),
        (status = 403, description = "User deactivated or tenant suspended", body = ErrorBody),
        (status = 429, description = "Too many failed logins", body = ErrorBody),
    )
)]
#[post("/auth/login")]
pub async fn login(
    state: web::Data<AppState>,
    client: ClientInfo,
    body: web::Json<LoginRequest>,
) -> ApiResult<web::Json<LoginResponse>> {
    let body = body.into_inner();
    let input = accounts::Login {
        tenant: body.tenant,
        email: body.email,
        password: body.password,
    };
    let done = accounts::login(&state, input, &client).await?;
    Ok(web::Json(LoginResponse {
        user: done.user,
        tokens: done.tokens.into(),
    }))
}

/// Exchanges a refresh token for a new pair. The old refresh token is spent; using it again
/// revokes the whole session.
#[utoipa::path(
    tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, body = Tokens),
        (status = 401, description = "Invalid, expired, revoked or reused token", body = ErrorBody),
    )
)]
#[post("/auth/refresh")]
pub async fn refresh(
    state: web::Data<AppState>,
    client: ClientInfo,
    body: web::Json<RefreshRequest>,
) -> ApiResult<web::Json<Tokens>> {
    let pair = accounts::refresh(&state, body.refresh_token.expose_secret(), &client).await?;
    Ok(web::Json(pair.into()))
}

/// Ends the session the refresh token belongs to (its access tokens stop working too).
#[utoipa::path(
    tag = "auth",
    request_body = RefreshRequest,
    responses((status = 204), (status = 401, body = ErrorBody))
)]
#[post("/auth/logout")]
pub async fn logout(
    state: web::Data<AppState>,
    client: ClientInfo,
    body: web::Json<RefreshRequest>,
) -> ApiResult<HttpResponse> {
    accounts::logout(&state, body.refresh_token.expose_secret(), &client).await?;
    Ok(HttpResponse::NoContent().finish())
}
