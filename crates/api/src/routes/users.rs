//! Users of the caller's tenant (admins).

use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, web};
use paas_auth::{Action, authorize};
use paas_core::UserId;
use paas_models::User;
use paas_persistence::Page;
use secrecy::ExposeSecret;

use crate::dto::{
    CreateUserRequest, CreateUserResponse, ListUsersQuery, UpdateUserRequest, UserList,
};
use crate::error::{ApiResult, ErrorBody};
use crate::extract::Auth;
use crate::idempotency::{self, IdempotencyKeyHeader, Keyed};
use crate::services::{ClientInfo, users};
use crate::state::AppState;

/// Lists the tenant's users, oldest first.
#[utoipa::path(
    tag = "users",
    params(ListUsersQuery),
    responses((status = 200, body = UserList), (status = 403, body = ErrorBody)),
    security(("bearer" = []), ("api_key" = []))
)]
#[get("/users")]
pub async fn list_users(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    query: web::Query<ListUsersQuery>,
) -> ApiResult<web::Json<UserList>> {
    authorize(&principal, Action::ManageUsers)?;
    let query = query.into_inner();
    let page = Page::new(query.limit, query.offset);
    let filter = paas_persistence::users::UserFilter {
        role: query.role,
        status: query.status,
    };
    let items = users::list(&state, &principal, filter, page).await?;
    Ok(web::Json(UserList {
        items,
        limit: page.limit,
        offset: page.offset,
    }))
}

/// Creates a user with a role. Without a password, a temporary one is generated and returned
/// once.
#[utoipa::path(
    tag = "users",
    request_body = CreateUserRequest,
    params(IdempotencyKeyHeader),
    responses(
        (status = 201, body = CreateUserResponse),
        (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 409, description = "email_taken, or idempotency_request_in_progress (a request with this Idempotency-Key is still running; Retry-After)", body = ErrorBody),
        (status = 422, body = ErrorBody, description = "idempotency_key_reused: the Idempotency-Key was used for another request"),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
#[post("/users")]
pub async fn create_user(
    req: HttpRequest,
    state: web::Data<AppState>,
    Auth(principal): Auth,
    client: ClientInfo,
    Keyed { body, key }: Keyed<web::Json<CreateUserRequest>>,
) -> ApiResult<HttpResponse> {
    authorize(&principal, Action::ManageUsers)?;
    idempotency::once(&req, &principal, key, move || async move {
        let body = body.into_inner();
        let input = users::NewUserInput {
            email: body.email,
            role: body.role,
            display_name: body.display_name,
            password: body.password,
        };
        let created = users::create(&state, &principal, input, &client).await?;
        Ok(HttpResponse::Created().json(CreateUserResponse {
            user: created.user,
            temporary_password: created
                .temporary_password
                .map(|p| p.expose_secret().to_owned()),
        }))
    })
    .await
}

/// One user of the tenant.
#[utoipa::path(
    tag = "users",
    params(("id" = UserId, Path)),
    responses((status = 200, body = User), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("api_key" = []))
)]
#[get("/users/{id}")]
pub async fn get_user(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    id: web::Path<UserId>,
) -> ApiResult<web::Json<User>> {
    authorize(&principal, Action::ManageUsers)?;
    Ok(web::Json(
        users::get(&state, &principal, id.into_inner()).await?,
    ))
}

/// Changes a user's display name, role or status. The tenant's last active admin cannot be
/// demoted or deactivated (409 `last_admin`).
#[utoipa::path(
    tag = "users",
    params(("id" = UserId, Path)),
    request_body = UpdateUserRequest,
    responses(
        (status = 200, body = User),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Would leave no active admin", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
#[patch("/users/{id}")]
pub async fn update_user(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    client: ClientInfo,
    id: web::Path<UserId>,
    body: web::Json<UpdateUserRequest>,
) -> ApiResult<web::Json<User>> {
    authorize(&principal, Action::ManageUsers)?;
    let body = body.into_inner();
    let update = users::UserUpdate {
        display_name: body.display_name,
        role: body.role,
        status: body.status,
    };
    Ok(web::Json(
        users::update(&state, &principal, id.into_inner(), update, &client).await?,
    ))
}

/// Deactivates a user: their sessions end and their API keys are revoked at once.
#[utoipa::path(
    tag = "users",
    params(("id" = UserId, Path)),
    responses(
        (status = 204),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Would leave no active admin", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
#[delete("/users/{id}")]
pub async fn deactivate_user(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    client: ClientInfo,
    id: web::Path<UserId>,
) -> ApiResult<HttpResponse> {
    authorize(&principal, Action::ManageUsers)?;
    users::deactivate(&state, &principal, id.into_inner(), &client).await?;
    Ok(HttpResponse::NoContent().finish())
}
